"""Errors raised while reading sources; each names the file and, where known, the feature."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "SourceError",
    "SourceNotFound",
    "FeatureError",
    "UnknownFormat",
    "MissingCRS",
    "UnsupportedCRS",
    "InvalidGeometry",
    "WrongGeometryType",
    "EmptySource",
    "SpecError",
    "InvalidRaster",
    "InvalidAttribute",
    "BadObservation",
]


class SourceError(Exception):
    """A source file cannot become a model layer; says which file and why."""

    def __init__(self, path: str | Path | None, message: str) -> None:
        self.path = str(path) if path is not None else None
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class SourceNotFound(SourceError):
    """The file does not exist."""


class UnknownFormat(SourceError):
    """The file is not in a format we can read."""


class MissingCRS(SourceError):
    """The source has no CRS and none was given with --crs."""


class UnsupportedCRS(SourceError):
    """The CRS is not one the model can use for this purpose."""


class FeatureError(SourceError):
    """Something wrong with one feature of a source; `feature_index` is its position in the file."""

    def __init__(self, path: str | Path | None, message: str, feature_index: int | None = None) -> None:
        self.feature_index = feature_index
        super().__init__(path, message)


class InvalidGeometry(FeatureError):
    """A feature's geometry is missing, empty or cannot be repaired."""


class WrongGeometryType(InvalidGeometry):
    """A feature's geometry type does not fit the layer kind (a point in a pipe layer)."""


class EmptySource(SourceError):
    """The source holds no features."""


class SpecError(SourceError):
    """A layer spec is malformed or names a column that the source does not have."""


class InvalidRaster(SourceError):
    """A raster cannot be used as a DEM."""


class InvalidAttribute(FeatureError):
    """A feature's attribute cannot be read as its canonical field (a diameter of 'big')."""


class BadObservation(SourceError):
    """A sensor observation that cannot be stored; `reason` is a short code such as "bad_time",
    `index` its position in the batch, file row or message stream."""

    def __init__(self, source: str | Path | None, reason: str, message: str, index: int | None = None) -> None:
        self.reason = reason
        self.index = index
        super().__init__(source, message if index is None else f"observation {index}: {message}")
