"""twin: a city information model (CIM) that fuses BIM and GIS into one model of a city.

`twin.City` is the entry point: a folder holding the model (a store of layers plus the
topography rasters), created with `City.init` and opened with `City.open`.
"""

from twin.workspace import City

__all__ = ["City"]
__version__ = "0.1.0"
