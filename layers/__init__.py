"""Readers that turn source files (vector GIS, rasters, IFC, sensor feeds) into model layers.

A reader knows files and geometry, never the city store or HTTP: it takes a path and a
target CRS and returns a canonical GeoDataFrame (or a raster), raising `layers.errors`
exceptions that name the file, the feature and what is wrong.
"""
