"""The HTTP face of the model: a FastAPI app with thin routers over `twin` and `tiles`."""
