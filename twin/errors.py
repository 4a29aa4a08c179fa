"""The model's error tree; the API maps these to HTTP statuses in one place."""

from __future__ import annotations

from layers.errors import (
    BadObservation,
    EmptySource,
    InvalidAttribute,
    InvalidGeometry,
    InvalidRaster,
    MissingCRS,
    SourceError,
    SourceNotFound,
    SpecError,
    UnknownFormat,
    UnsupportedCRS,
    WrongGeometryType,
)

__all__ = [
    "TwinError", "NotACity", "CityExists", "UnknownLayer", "UnknownKind", "StoreError",
    "SourceError", "SourceNotFound", "UnknownFormat", "MissingCRS", "UnsupportedCRS",
    "InvalidGeometry", "WrongGeometryType", "EmptySource", "SpecError", "InvalidRaster",
    "InvalidAttribute", "BadObservation", "UnknownSensor",
]


class TwinError(Exception):
    """Base of the model's own errors (source errors come from `layers.errors`)."""


class NotACity(TwinError):
    """A folder is not a city workspace."""


class CityExists(TwinError):
    """`init` on a folder that already holds a city."""


class UnknownLayer(TwinError):
    """No layer of that name in the city."""


class UnknownKind(TwinError):
    """No layer kind of that name."""


class StoreError(TwinError):
    """The store could not complete an operation; the previous state is kept."""


class UnknownSensor(TwinError):
    """No sensor of that id in the city's sensor layers."""
