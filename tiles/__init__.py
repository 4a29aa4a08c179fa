"""Tile encoders (vector, terrain, 3D) and their cache; they read the model in `twin`."""
