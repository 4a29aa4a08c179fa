"""CRS policy: one metric projected CRS per city for every length and area; WGS 84 for the web."""

from __future__ import annotations

import threading

from pyproj import CRS, Transformer

from layers.vector import cached_transformer, parse_crs
from twin.errors import UnsupportedCRS

__all__ = ["WGS84", "WEB_MERCATOR", "CGCS2000", "city_crs", "cgcs2000_gk_zone", "transformer",
           "coordinate_transformer"]

WGS84 = CRS.from_epsg(4326)
WEB_MERCATOR = CRS.from_epsg(3857)
CGCS2000 = CRS.from_epsg(4490)


def cgcs2000_gk_zone(longitude: float) -> str:
    """The CGCS2000 3-degree Gauss-Krüger CRS (by central meridian) for a longitude.

    Examples
    --------
    >>> cgcs2000_gk_zone(121.4)  # Yantai
    'EPSG:4549'
    """
    central = round(longitude / 3) * 3
    if not 75 <= central <= 135:
        raise ValueError(f"longitude {longitude} is outside China's 3-degree zones (CM 75E..135E)")
    return f"EPSG:{4534 + (central - 75) // 3}"


def city_crs(text: str) -> CRS:
    """Parse and check a city CRS: it must be projected, with axes in metres."""
    crs = parse_crs(text)
    if not crs.is_projected:
        raise UnsupportedCRS(None, f"{text} ({crs.name}) is not projected; a city CRS measures lengths and "
                                   f"areas in metres, e.g. EPSG:4549 (CGCS2000 / 3-degree Gauss-Kruger "
                                   f"CM 120E) for Yantai, or the 3-degree zone of your city's longitude")
    units = {axis.unit_name for axis in crs.axis_info}
    if units != {"metre"}:
        raise UnsupportedCRS(None, f"{text} ({crs.name}) has axes in {', '.join(sorted(units))}; a city CRS "
                                   f"must be in metres (the data may stay in feet: it is reprojected)")
    return crs


def transformer(source: CRS, target: CRS) -> Transformer:
    """An always-xy Transformer, built once per pair (building one costs tens of milliseconds)."""
    return cached_transformer(source, target)


_COORDINATE_TRANSFORMERS: dict[tuple[CRS, CRS], Transformer] = {}
_COORDINATE_TRANSFORMERS_LOCK = threading.Lock()


def coordinate_transformer(source: CRS, target: CRS) -> Transformer:
    """An always-xy Transformer of coordinates that is quick to use in any thread.

    pyproj makes a transformer again in each thread that uses it. Made from two CRSs, that is
    PROJ's search for the operation between them: most of a second for a CGCS2000 zone to WGS 84,
    paid by each of the server's worker threads on its first request. When the search finds one
    operation, this transformer is made from that operation's pipeline, which a thread copies in
    microseconds; when the operation depends on the place, it is `transformer`'s. A pipeline knows
    no CRS, so its `transform_bounds` gives inf: take bounds with `transformer`. Made once per pair;
    a thread asking while another makes it waits for that one.
    """
    with _COORDINATE_TRANSFORMERS_LOCK:
        made = _COORDINATE_TRANSFORMERS.get((source, target))
        if made is None:
            made = transformer(source, target)
            if not made.definition.startswith("unavailable"):  # else PROJ chooses point by point
                made = Transformer.from_pipeline(made.definition)
            _COORDINATE_TRANSFORMERS[(source, target)] = made
    return made
