"""Demo cities: a synthetic district of Yantai, and the real KY4 water network.

Each demo writes ordinary source files (GeoPackage, GeoJSON with a CRS, a GeoTIFF DEM and
TOML layer specs) into ``<out>/sources/`` and ingests them through `City.ingest`, the same
path a user's files take. The Yantai district is generated from fixed seeds, so every
build gives the same features.
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import Affine
from shapely import affinity

from layers.spec import LayerSpec
from twin import sheets
from twin.errors import NotACity
from twin.workspace import CONFIG_FILE, City, ProgressFactory

__all__ = [
    "IFC_LOT_M", "IFC_PLACEMENTS", "IfcAnchor", "ifc_lot_centres", "KY4_CRS", "SEED", "YANTAI_CENTRE", "YANTAI_CRS",
    "build_demo", "build_ky4", "build_yantai", "shared_data_folder", "yantai_terrain",
]

SEED = 20221231
YANTAI_CRS = "EPSG:4549"  # CGCS2000 / 3-degree Gauss-Kruger CM 120E
KY4_CRS = "EPSG:3546"  # NAD83(NSRS2007) / Kentucky Single Zone, metres
YANTAI_CENTRE = (121.40, 37.53)  # lon, lat
REPO_ROOT = Path(__file__).resolve().parents[1]
IFC_SAMPLES = REPO_ROOT / "ifc_samples"

# The street grid in metres from the district's south-west corner; indices 0, 4 and 8 are
# main roads. Fixed by hand (not drawn at random) so the IFC lots below are constants.
STREETS_U = (0.0, 240.0, 470.0, 730.0, 1000.0, 1260.0, 1510.0, 1770.0, 2000.0)
STREETS_V = (0.0, 260.0, 500.0, 760.0, 1000.0, 1240.0, 1500.0, 1760.0, 2000.0)
MAIN_STREETS = frozenset({0, 4, 8})
MAIN_WIDTH_M = 30.0
MINOR_WIDTH_M = 18.0
SETBACK_M = 8.0
COAST_V = 2180.0  # the shore line, north of the district
DISTRICT_SIZE_M = 2000.0

# Block uses, north row first, west to east: O old town, R residential, C commercial,
# S school, P plaza (key public area), G park.
BLOCK_LAYOUT = (
    "OPORRRRR",
    "OOOSRRGR",
    "OOORCRRR",
    "RRRCPCSP",
    "RRSCCRRR",
    "RGRRRRSR",
    "RRSRRGRR",
    "GRRRRRRR",
)
MARKET_BLOCK = (1, 6)  # an old-town block with a market square (key area) in its middle

# Street segments whose storm and sewage run in one combined sewer (the old town's
# unfinished 雨污分流): ("h", i, j) is street row j from column i to i + 1, ("v", i, j)
# street column i from row j to j + 1.
COMBINED_SEGMENTS = frozenset({("h", 0, 6), ("h", 1, 6), ("h", 0, 7), ("h", 1, 7), ("v", 1, 5), ("v", 1, 6)})

# Pipe offsets from the street centre line (m), codes and Chinese survey names per utility.
PIPE_OFFSET_M = {"water": -4.0, "gas": -7.0, "storm": 3.0, "sewage": 6.0, "combined": 3.0}
PIPE_PREFIX = {"water": "JS", "storm": "YS", "sewage": "WS", "gas": "RQ", "combined": "HS"}
PIPE_TYPE_ZH = {"water": "给水", "storm": "雨水", "sewage": "污水", "gas": "燃气", "combined": "合流"}
MATERIAL_ZH = {"球墨铸铁": "ductile iron", "灰口铸铁": "cast iron", "钢": "steel", "聚乙烯": "PE",
               "钢筋混凝土": "reinforced concrete", "HDPE双壁波纹管": "HDPE corrugated", "UPVC": "PVC-U",
               "砖砌": "brick"}
IFC_LOT_M = 40.0


class IfcAnchor(NamedTuple):
    """Where an IFC model's site origin goes: WGS 84 lon/lat, ground elevation (m), rotation.

    `rotation_deg` turns the model's x axis counter-clockwise from grid east (the lot's
    rotation); `twin ingest --anchor` takes it clockwise from north, so it is negated there.
    """

    lon: float
    lat: float
    elevation: float
    rotation_deg: float


# IFC lots, in metres from the district's south-west corner, with the model's rotation.
# Each sits in an empty 40 m x 40 m lot; the FZK-Haus lot keeps one GIS footprint for
# BIM-GIS fusion to replace.
_IFC_LOTS: dict[str, tuple[float, float, float]] = {
    "AC20-FZK-Haus.ifc": (1310.0, 1290.0, 0.0),
    "IfcOpenHouse_IFC4.ifc": (688.0, 722.0, 90.0),
    "Duplex_A_20110907.ifc": (1725.0, 1285.0, 30.0),
}
# The centre of each model's plan in its own coordinates (read once from the files), so
# that the model, not its site origin, lands in the middle of its lot.
_IFC_PLAN_CENTRES: dict[str, tuple[float, float]] = {
    "AC20-FZK-Haus.ifc": (6.0, 5.0),
    "IfcOpenHouse_IFC4.ifc": (0.2, 2.5),
    "Duplex_A_20110907.ifc": (4.4, -8.9),
}
FZK_FOOTPRINT_M = (12.0, 10.0)


def yantai_origin() -> tuple[float, float]:
    """South-west corner of the Yantai demo district in EPSG:4549, rounded to 10 m."""
    east, north = Transformer.from_crs("EPSG:4326", YANTAI_CRS, always_xy=True).transform(*YANTAI_CENTRE)
    half = DISTRICT_SIZE_M / 2
    return float(round((east - half) / 10) * 10), float(round((north - half) / 10) * 10)


def yantai_terrain(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Ground elevation (m) of the demo district at local coordinates (m east/north of its corner).

    Hills in the south slope down to the sea north of the district (0 m beyond the shore).

    Examples
    --------
    >>> float(yantai_terrain(np.array([1000.0]), np.array([2500.0]))[0])
    0.0
    """
    u = np.asarray(u, dtype="float64")
    v = np.asarray(v, dtype="float64")
    inland = np.clip((COAST_V - v) / 2400.0, 0.0, None)
    base = 58.0 * inland ** 1.3

    def hill(cu: float, cv: float, height: float, sigma: float) -> np.ndarray:
        return height * np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * sigma ** 2))

    hills = hill(250, 250, 30, 330) + hill(1650, 450, 20, 300) + hill(1050, 1350, 9, 220)
    ripple = 1.5 * np.sin(u / 170.0) * np.cos(v / 210.0)
    shore = np.clip((COAST_V - v) / 220.0, 0.0, 1.0)
    shore = shore * shore * (3 - 2 * shore)
    return np.maximum((base + hills + ripple) * shore, 0.0)


def _ifc_placements() -> dict[str, IfcAnchor]:
    x0, y0 = yantai_origin()
    to_wgs84 = Transformer.from_crs(YANTAI_CRS, "EPSG:4326", always_xy=True)
    placements = {}
    for name, (u, v, rotation) in _IFC_LOTS.items():
        cx, cy = _IFC_PLAN_CENTRES[name]
        turn = np.radians(rotation)
        u -= cx * np.cos(turn) - cy * np.sin(turn)
        v -= cx * np.sin(turn) + cy * np.cos(turn)
        lon, lat = to_wgs84.transform(x0 + u, y0 + v)
        z = float(yantai_terrain(np.array([u]), np.array([v]))[0])
        placements[name] = IfcAnchor(round(lon, 7), round(lat, 7), round(z, 2), rotation)
    return placements


# Anchors for the sample IFC models in `ifc_samples/`, inside empty lots of the Yantai district.
IFC_PLACEMENTS: dict[str, IfcAnchor] = _ifc_placements()


# --------------------------------------------------------------------------------------
# generating the Yantai district (pure: arrays and GeoDataFrames in, GeoDataFrames out)


def _rng(topic: str) -> np.random.Generator:
    """A generator per layer, so a change to one layer leaves the others as they were."""
    return np.random.default_rng([SEED, zlib.crc32(topic.encode())])


@dataclass(frozen=True)
class _Grid:
    """The district's streets in EPSG:4549."""

    x0: float
    y0: float

    @property
    def xs(self) -> np.ndarray:
        return self.x0 + np.array(STREETS_U)

    @property
    def ys(self) -> np.ndarray:
        return self.y0 + np.array(STREETS_V)

    @staticmethod
    def width(index: int) -> float:
        return MAIN_WIDTH_M if index in MAIN_STREETS else MINOR_WIDTH_M

    def parcel(self, i: int, j: int) -> tuple[float, float, float, float]:
        """The land between streets of block (i, j): column i from the west, row j from the south."""
        return (self.xs[i] + self.width(i) / 2, self.ys[j] + self.width(j) / 2,
                self.xs[i + 1] - self.width(i + 1) / 2, self.ys[j + 1] - self.width(j + 1) / 2)

    def buildable(self, i: int, j: int) -> tuple[float, float, float, float]:
        """A block's parcel less the setback from the streets."""
        a, b, c, d = self.parcel(i, j)
        return a + SETBACK_M, b + SETBACK_M, c - SETBACK_M, d - SETBACK_M

    def use(self, i: int, j: int) -> str:
        """The block's use letter from BLOCK_LAYOUT."""
        return BLOCK_LAYOUT[len(BLOCK_LAYOUT) - 1 - j][i]

    def blocks(self, use: str | None = None) -> list[tuple[int, int]]:
        """Blocks (i, j) south row first, optionally of one use."""
        n = len(STREETS_U) - 1
        return [(i, j) for j in range(n) for i in range(n) if use is None or self.use(i, j) == use]

    def local(self, u: float, v: float) -> tuple[float, float]:
        """Map coordinates of a point given in metres from the district's corner."""
        return self.x0 + u, self.y0 + v

    def ifc_lots(self) -> list[shapely.Polygon]:
        """The empty 40 m lots kept for the IFC models."""
        half = IFC_LOT_M / 2
        return [shapely.box(self.x0 + u - half, self.y0 + v - half, self.x0 + u + half, self.y0 + v + half)
                for u, v, _ in _IFC_LOTS.values()]


def _frame(rows: list[dict], geoms: list, crs: str = YANTAI_CRS) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(pd.DataFrame(rows), geometry=geoms, crs=crs)


def _exact_share(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """n flags of which round(share * n), drawn at random, are True (an indicator's numerator)."""
    flags = np.zeros(n, dtype=bool)
    flags[rng.permutation(n)[: int(round(share * n))]] = True
    return flags


def _inset(bounds: tuple[float, float, float, float], d: float) -> shapely.Polygon:
    a, b, c, e = bounds
    return shapely.box(a + d, b + d, c - d, e - d)


def _dem(grid: _Grid, cell: float = 5.0, margin: float = 300.0) -> tuple[np.ndarray, Affine]:
    """The terrain over the district and a margin, north-up, with its transform."""
    west, south = grid.x0 - margin, grid.y0 - margin
    size = int((DISTRICT_SIZE_M + 2 * margin) / cell)
    centres = (np.arange(size) + 0.5) * cell
    u, v = np.meshgrid(centres - margin, (DISTRICT_SIZE_M + margin) - centres)
    z = np.round(yantai_terrain(u, v), 2).astype("float32")
    return z, Affine(cell, 0.0, west, 0.0, -cell, south + size * cell)


def _areas(grid: _Grid) -> dict[str, gpd.GeoDataFrame]:
    """Planning area, districts, urban area, key areas and parks."""
    x0, y0, s = grid.x0, grid.y0, DISTRICT_SIZE_M
    m, cut = 100.0, 160.0
    planning = shapely.Polygon([
        (x0 - m + cut, y0 - m), (x0 + s + m - cut, y0 - m), (x0 + s + m, y0 - m + cut), (x0 + s + m, y0 + s + m),
        (x0 - m, y0 + s + m), (x0 - m, y0 - m + cut)])
    far = 1000.0
    xs, ys = grid.xs, grid.ys
    west_side = shapely.Polygon([(x0 - far, y0 - far), (xs[4], y0 - far), (xs[4], ys[4]), (xs[5], ys[4]),
                                 (xs[5], y0 + s + far), (x0 - far, y0 + s + far)])
    zhifu = shapely.intersection(planning, west_side)
    laishan = shapely.difference(planning, zhifu)
    edge = MAIN_WIDTH_M / 2
    urban = shapely.box(xs[0] - edge, ys[0] - edge, xs[-1] + edge, ys[-1] + edge)

    plaza_names = {(1, 7): "滨海广场", (4, 4): "市民广场", (7, 4): "站前广场"}
    key_rows, key_geoms = [], []
    for block in grid.blocks("P"):
        key_rows.append({"name": plaza_names.get(block, "广场")})
        key_geoms.append(_inset(grid.parcel(*block), 4.0))
    mx0, my0, mx1, my1 = grid.parcel(*MARKET_BLOCK)
    cx, cy = (mx0 + mx1) / 2, (my0 + my1) / 2
    key_rows.append({"name": "所城里集市广场"})
    key_geoms.append(shapely.box(cx - 45, cy - 35, cx + 45, cy + 35))

    park_names = {(0, 0): "毓璜顶公园", (1, 2): "南山公园", (5, 1): "世纪公园", (6, 6): "莱山公园"}
    green_rows = [{"name": park_names.get(b, "公园")} for b in grid.blocks("G")]
    green_geoms = [_inset(grid.parcel(*b), 3.0) for b in grid.blocks("G")]
    green_rows.append({"name": "滨海绿道"})
    green_geoms.append(shapely.intersection(
        planning, shapely.box(x0 - m, ys[-1] + edge + 5, x0 + s + m, y0 + s + m)))
    return {
        "planning_area": _frame([{"name": "烟台市城市规划区（示范片区）"}], [planning]),
        "district": _frame([{"name": "芝罘区"}, {"name": "莱山区"}], [zhifu, laishan]),
        "urban_area": _frame([{"name": "烟台中心城区（示范片区）"}], [urban]),
        "key_area": _frame(key_rows, key_geoms),
        "green": _frame(green_rows, green_geoms),
    }


_COMMUNITY_PREFIX = ("海韵", "福山", "金沙", "滨海", "毓秀", "南山", "东山", "凤凰", "锦绣", "阳光",
                     "幸福", "青年", "海景", "翠苑", "华府", "金港", "松林", "紫薇", "银河", "怡景")
_COMMUNITY_SUFFIX = ("花园", "小区", "家园", "新村")
_SCHOOL_NAMES = {(2, 1): "烟台市第十中学", (6, 2): "莱山区实验小学", (2, 3): "芝罘区实验小学",
                 (6, 4): "滨海中学", (3, 6): "毓璜顶小学"}
_TOWER_NAMES = ("海港中心", "环海大厦", "福海商厦", "金港大厦", "滨海国际", "港城大厦", "仙境大厦",
                "鲁东大厦", "蓬莱阁商厦", "东方广场", "海岸中心", "芝罘大厦", "莱山商务中心", "渔人码头商厦")


def community_name(k: int) -> str:
    """The k-th demo community name (distinct for k < 80)."""
    return _COMMUNITY_PREFIX[k % 20] + _COMMUNITY_SUFFIX[(k // 20 + k) % 4]


def _buildings(grid: _Grid, areas: dict[str, gpd.GeoDataFrame]) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Building footprints by block use, and the residential courtyard greens between them."""
    rng = _rng("building")
    keep_out = list(areas["key_area"].geometry) + [lot.buffer(2.0) for lot in grid.ifc_lots()]
    keep_out_tree = shapely.STRtree(keep_out)
    rows: list[dict] = []
    geoms: list[shapely.Polygon] = []
    courtyards: list[tuple[str, shapely.Geometry]] = []
    community_of = {b: community_name(k) for k, b in enumerate(grid.blocks("R") + grid.blocks("O"))}

    def add(footprint: shapely.Polygon, floors: int, storey_m: float, use: str, name: str | None) -> None:
        if not len(keep_out_tree.query(footprint, predicate="intersects")):
            rows.append({"floors": floors, "storey_m": storey_m, "use": use, "name": name})
            geoms.append(footprint)

    tower_names = iter(_TOWER_NAMES)
    for i, j in grid.blocks():
        use = grid.use(i, j)
        bx0, by0, bx1, by1 = grid.buildable(i, j)
        w, h = bx1 - bx0, by1 - by0
        first = len(geoms)
        if use == "R" and rng.random() < 0.7:  # slab blocks: rows of 6-18 storey slabs
            for r in range(4):
                for c in range(2):
                    cw, ch = w / 2, h / 4
                    length, depth = cw * rng.uniform(0.7, 0.88), rng.uniform(12.0, 15.0)
                    x = bx0 + c * cw + rng.uniform(0, cw - length)
                    y = by0 + r * ch + rng.uniform(0, 6.0)
                    floors = int(rng.choice([6, 6, 7, 11, 12, 18]))
                    if rng.random() < 0.92:
                        add(shapely.box(x, y, x + length, y + depth), floors, rng.uniform(2.8, 3.0), "residential", None)
        elif use == "R":  # point towers
            for r in range(3):
                for c in range(3):
                    cw, ch = w / 3, h / 3
                    side = rng.uniform(22.0, 28.0)
                    x = bx0 + c * cw + rng.uniform(0, cw - side)
                    y = by0 + r * ch + rng.uniform(0, ch - side)
                    if rng.random() < 0.9:
                        add(shapely.box(x, y, x + side, y + side), int(rng.integers(18, 34)), 2.9, "residential", None)
        elif use == "O":  # old town: low, small, irregular houses
            n = 4
            for r in range(n):
                for c in range(n):
                    cw, ch = w / n, h / n
                    bw, bh = rng.uniform(10.0, 22.0), rng.uniform(8.0, 16.0)
                    x = bx0 + c * cw + rng.uniform(3.0, cw - bw - 3.0)
                    y = by0 + r * ch + rng.uniform(3.0, ch - bh - 3.0)
                    house = affinity.rotate(shapely.box(x, y, x + bw, y + bh), rng.uniform(-6, 6))
                    if rng.random() < 0.82:
                        add(house, int(rng.integers(1, 5)), 3.2, "old town", None)
        elif use == "C":  # towers and malls
            for r in range(2):
                for c in range(2):
                    cw, ch = w / 2, h / 2
                    if rng.random() < 0.45:
                        side = rng.uniform(28.0, 36.0)
                        floors = int(rng.integers(25, 46))
                    else:
                        side = rng.uniform(55.0, 80.0)
                        floors = int(rng.integers(3, 7))
                    sx, sy = side, side * rng.uniform(0.75, 1.0)
                    x = bx0 + c * cw + rng.uniform(0, cw - sx)
                    y = by0 + r * ch + rng.uniform(0, ch - sy)
                    add(shapely.box(x, y, x + sx, y + sy), floors, rng.uniform(3.9, 4.5), "commercial",
                        next(tower_names, None))
        elif use == "S":  # teaching buildings on the north side, the sports field south
            school = _SCHOOL_NAMES.get((i, j), "学校")
            add(shapely.box(bx0 + 10, by1 - 30, bx0 + 75, by1 - 14), int(rng.integers(4, 6)), 3.8, "school",
                f"{school}教学楼")
            add(shapely.box(bx1 - 60, by1 - 40, bx1 - 15, by1 - 26), int(rng.integers(3, 6)), 3.8, "school",
                f"{school}实验楼")
        if use == "R":
            community = community_of[(i, j)]
            for k in range(first, len(geoms)):
                if rng.random() < 0.35:
                    rows[k]["name"] = f"{community}{k - first + 1}号楼"
            # the compound's lawns: what the buildings and their paths leave
            built = shapely.union_all([g.buffer(6.0) for g in geoms[first:]] + keep_out)
            lawn = shapely.difference(_inset((bx0, by0, bx1, by1), 4.0), built)
            if not lawn.is_empty:
                courtyards.append((f"{community}绿地", lawn))

    # the one GIS footprint in an IFC lot, for BIM-GIS fusion to replace
    u, v, rotation = _IFC_LOTS["AC20-FZK-Haus.ifc"]
    cx, cy = grid.local(u, v)
    fw, fh = FZK_FOOTPRINT_M
    fzk = affinity.rotate(shapely.box(cx - fw / 2, cy - fh / 2, cx + fw / 2, cy + fh / 2), rotation)
    rows.append({"floors": 2, "storey_m": 3.0, "use": "residential", "name": "FZK-Haus"})
    geoms.append(fzk)

    frame = pd.DataFrame(rows)
    n = len(frame)
    roof = rng.uniform(0.5, 1.5, n)
    height = np.round(frame["floors"].to_numpy() * frame["storey_m"].to_numpy() + roof, 1)
    mode = rng.random(n)
    only_floors = mode < 0.28
    only_height = (mode >= 0.28) & (mode < 0.33)
    height[only_floors] = np.nan
    floors = pd.array(frame["floors"].to_numpy(), dtype="Int64")
    floors[only_height] = pd.NA
    fzk_row = n - 1  # the FZK footprint keeps both, as surveyed
    height[fzk_row], floors[fzk_row] = 8.5, 2
    # Key energy-using buildings (重点用能建筑): the public ones, commercial and school,
    # of 5,000 m² floor area or more; 88% of them metered digitally, just short of the
    # 90% target, so the demo's report has a gap to show.
    floor_area = shapely.area(np.asarray(geoms, dtype=object)) * frame["floors"].to_numpy()
    energy_key = frame["use"].isin(["commercial", "school"]).to_numpy() & (floor_area >= 5000)
    energy_metered = np.zeros(n, dtype=bool)
    energy_metered[np.flatnonzero(energy_key)] = _exact_share(_rng("energy"), int(energy_key.sum()), 0.88)
    buildings = gpd.GeoDataFrame({
        "code": [f"B-{k + 1:04d}" for k in range(n)],
        "name": frame["name"].astype("object").where(frame["name"].notna(), None),
        "floors": floors,
        "height_m": height,
        "use": frame["use"],
        "energy_key": energy_key,
        "energy_metered": energy_metered,
    }, geometry=geoms, crs=YANTAI_CRS)
    green = gpd.GeoDataFrame({"name": [name for name, _ in courtyards]},
                             geometry=[lawn for _, lawn in courtyards], crs=YANTAI_CRS)
    return buildings, green


@dataclass(frozen=True)
class _Segment:
    kind: str  # "h" or "v"
    i: int
    j: int

    def nodes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return ((self.i, self.j), (self.i + 1, self.j)) if self.kind == "h" else ((self.i, self.j), (self.i, self.j + 1))

    @property
    def street(self) -> int:
        return self.j if self.kind == "h" else self.i


def _street_segments() -> list[_Segment]:
    n = len(STREETS_U)
    return ([_Segment("h", i, j) for j in range(n) for i in range(n - 1)]
            + [_Segment("v", i, j) for i in range(n) for j in range(n - 1)])


def _pipes(grid: _Grid) -> gpd.GeoDataFrame:
    """Pipe segments between street intersections, in the columns of a Chinese pipe survey."""
    rng = _rng("pipe")
    old_blocks = set(grid.blocks("O"))
    counters = dict.fromkeys(PIPE_PREFIX, 0)
    rows, geoms = [], []
    for seg in _street_segments():
        (a, b) = seg.nodes()
        main = seg.street in MAIN_STREETS
        beside = ({(seg.i, seg.j), (seg.i, seg.j - 1)} if seg.kind == "h" else {(seg.i, seg.j), (seg.i - 1, seg.j)})
        old = bool(beside & old_blocks)
        combined = (seg.kind, seg.i, seg.j) in COMBINED_SEGMENTS
        utilities = ["water", "gas"] + (["combined"] if combined else ["storm", "sewage"])
        for utility in utilities:
            d = PIPE_OFFSET_M[utility]
            p0 = (grid.xs[a[0]] + d, grid.ys[a[1]] + d)
            p1 = (grid.xs[b[0]] + d, grid.ys[b[1]] + d)
            if utility == "water":
                diameter = rng.choice([400, 500, 600] if main else [150, 200, 300])
                material = "灰口铸铁" if old and rng.random() < 0.6 else ("钢" if diameter >= 500 else
                                                                        "球墨铸铁" if diameter >= 200 else "聚乙烯")
                depth = rng.uniform(1.2, 1.8)
            elif utility == "gas":
                diameter = rng.choice([300, 400] if main else [110, 160, 200])
                material = "钢" if diameter >= 300 else "聚乙烯"
                depth = rng.uniform(1.0, 1.5)
            elif utility == "storm":
                diameter = rng.choice([1000, 1200, 1500] if main else [500, 600, 800])
                material = "钢筋混凝土" if diameter >= 800 else "HDPE双壁波纹管"
                depth = rng.uniform(1.8, 3.0)
            elif utility == "sewage":
                diameter = rng.choice([600, 800] if main else [300, 400, 500])
                material = "钢筋混凝土" if diameter >= 600 else rng.choice(["HDPE双壁波纹管", "UPVC"])
                depth = rng.uniform(2.5, 4.0)
            else:
                diameter = rng.choice([800, 1000])
                material = rng.choice(["砖砌", "钢筋混凝土"])
                depth = rng.uniform(2.5, 3.5)
            if utility == "combined":
                year = int(rng.integers(1968, 1990))
            elif old:
                year = int(rng.integers(1975, 1996))
            else:
                year = int(rng.integers(1995, 2022))
            counters[utility] += 1
            rows.append({"pipe_code": f"{PIPE_PREFIX[utility]}-{counters[utility]:04d}",
                         "管线类型": PIPE_TYPE_ZH[utility], "管径": int(diameter), "材质": str(material),
                         "埋深": round(float(depth), 1), "建设年代": year,
                         "_utility": utility})
            geoms.append(shapely.LineString([p0, p1]))
    return _frame(rows, geoms)


PIPE_SPEC_TOML = """\
# The Yantai demo's pipe survey (管线普查): Chinese column names onto the pipe kind's fields.
kind = "pipe"
id = "pipe_code"          # uids become pipe.JS-0001, pipe.YS-0001, ...

[fields]
utility = "管线类型"        # 给水 / 雨水 / 污水 / 燃气 / 合流 are understood as they are
diameter_mm = "管径"        # millimetres
material = "材质"
depth_m = "埋深"            # cover depth in metres
install_year = "建设年代"

[values.material]
{materials}
"""


def _pipe_spec_text() -> str:
    return PIPE_SPEC_TOML.format(materials="\n".join(f'"{zh}" = "{en}"' for zh, en in MATERIAL_ZH.items()))


def _manholes(pipes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A manhole (or valve chamber) at every junction of each utility's network."""
    deepest: dict[tuple[float, float], dict] = {}
    bottoms = (pipes["埋深"] + pipes["管径"] / 1000.0).to_numpy()
    for utility, bottom, line in zip(pipes["_utility"], bottoms, pipes.geometry):
        for x, y in (line.coords[0], line.coords[-1]):
            key = (round(x, 3), round(y, 3))
            found = deepest.setdefault(key, {"utility": utility, "bottom": bottom})
            found["bottom"] = max(found["bottom"], bottom)
            if utility == "combined":
                found["utility"] = "combined"
    order = {u: k for k, u in enumerate(PIPE_PREFIX)}
    items = sorted(deepest.items(), key=lambda kv: (order[kv[1]["utility"]], kv[0][1], kv[0][0]))
    counters = dict.fromkeys(PIPE_PREFIX, 0)
    rows, geoms = [], []
    for (x, y), info in items:
        utility = info["utility"]
        counters[utility] += 1
        rows.append({"name": f"{PIPE_PREFIX[utility]}-J{counters[utility]:03d}", "utility": utility,
                     "depth_m": round(info["bottom"] + 0.3, 1)})
        geoms.append(shapely.Point(x, y))
    return _frame(rows, geoms)


def _sensors(pipes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Sensors at the midpoints of watched segments: most water and gas pipes, some drains."""
    rng = _rng("sensor")
    share = {"water": 0.86, "gas": 0.8, "storm": 0.35, "sewage": 0.3, "combined": 0.5}
    lengths = pipes.geometry.length.to_numpy()
    watched: list[int] = []
    for utility, target in share.items():
        idx = np.flatnonzero((pipes["_utility"] == utility).to_numpy())
        order = rng.permutation(idx)
        covered = np.cumsum(lengths[order]) / lengths[idx].sum()
        watched.extend(order[: int(np.searchsorted(covered, target)) + 1].tolist())
    watched.sort()
    rows, geoms = [], []
    for k, i in enumerate(watched):
        utility = pipes["_utility"].iloc[i]
        if utility == "water":
            prop = "flow" if rng.random() < 0.25 else "pressure"
        elif utility == "gas":
            prop = "leak" if rng.random() < 0.3 else "pressure"
        else:
            prop = "level"
        unit = {"pressure": "MPa", "flow": "m3/h", "level": "m", "leak": "bool"}[prop]
        rows.append({"sensor_id": f"S-{k + 1:04d}", "property": prop, "unit": unit,
                     "pipe_id": f"pipe.{pipes['pipe_code'].iloc[i]}"})
        geoms.append(pipes.geometry.iloc[i].interpolate(0.5, normalized=True))
    return _frame(rows, geoms)


def _street_furniture(grid: _Grid, key_areas: gpd.GeoDataFrame) -> dict[str, gpd.GeoDataFrame]:
    """Lamps along the streets, cameras, 5G base stations and weather stations."""
    rng = _rng("street")
    lamp_rows, lamp_geoms = [], []
    for seg in _street_segments():
        a, b = seg.nodes()
        w = grid.width(seg.street)
        if seg.kind == "h":
            start = grid.xs[a[0]] + grid.width(a[0]) / 2 + 8
            end = grid.xs[b[0]] - grid.width(b[0]) / 2 - 8
        else:
            start = grid.ys[a[1]] + grid.width(a[1]) / 2 + 8
            end = grid.ys[b[1]] - grid.width(b[1]) / 2 - 8
        count = max(2, int(round((end - start) / 35.0)) + 1)
        along = np.linspace(start, end, count)
        for k, t in enumerate(along):
            sides = (-1, 1) if seg.street in MAIN_STREETS else ((-1,) if k % 2 else (1,))
            for side in sides:
                off = side * (w / 2 - 1.5)
                x, y = (t, grid.ys[seg.j] + off) if seg.kind == "h" else (grid.xs[seg.i] + off, t)
                lamp_rows.append({"name": f"LD-{len(lamp_rows) + 1:04d}"})
                lamp_geoms.append(shapely.Point(x, y))

    for row, smart in zip(lamp_rows, _exact_share(rng, len(lamp_rows), 0.89)):
        row["smart"] = bool(smart)

    cam_rows, cam_geoms = [], []
    n = len(STREETS_U)
    for j in range(n):
        for i in range(n):
            if rng.random() < 0.6:
                cam_rows.append({"name": f"SP-{len(cam_rows) + 1:04d}", "range_m": float(rng.integers(30, 61))})
                cam_geoms.append(shapely.Point(grid.xs[i] + 6, grid.ys[j] + 6))
    for area in key_areas.geometry:
        x0, y0, x1, y1 = area.bounds
        nx, ny = max(1, int(np.ceil((x1 - x0) / 110))), max(1, int(np.ceil((y1 - y0) / 110)))
        for cy in y0 + (np.arange(ny) + 0.5) * (y1 - y0) / ny:
            for cx in x0 + (np.arange(nx) + 0.5) * (x1 - x0) / nx:
                cam_rows.append({"name": f"SP-{len(cam_rows) + 1:04d}", "range_m": float(rng.integers(45, 81))})
                cam_geoms.append(shapely.Point(cx, cy))

    bs_rows, bs_geoms = [], []
    for b in range(3):
        for a in range(3):
            u, v = 300 + 700 * a + rng.uniform(-60, 60), 300 + 700 * b + rng.uniform(-60, 60)
            bs_rows.append({"name": f"5G-{len(bs_rows) + 1:02d}", "range_m": float(rng.integers(200, 401))})
            bs_geoms.append(shapely.Point(*grid.local(u, v)))

    ws_rows = [{"name": "毓璜顶自动气象站"}, {"name": "莱山自动气象站"}, {"name": "滨海自动气象站"}]
    ws_geoms = [shapely.box(*grid.parcel(0, 0)).centroid, shapely.box(*grid.parcel(6, 6)).centroid,
                shapely.Point(*grid.local(1100.0, 2060.0))]
    return {
        "lamp": _frame(lamp_rows, lamp_geoms),
        "camera": _frame(cam_rows, cam_geoms),
        "base_station": _frame(bs_rows, bs_geoms),
        "weather_station": _frame(ws_rows, ws_geoms),
    }


def _communities_and_schools(grid: _Grid) -> dict[str, gpd.GeoDataFrame]:
    rng = _rng("community")
    blocks = grid.blocks("R") + grid.blocks("O")
    # a community's point is its gate, at the south-west corner of its block
    smart = _exact_share(rng, len(blocks), 0.36)
    c_rows = [{"name": community_name(k), "smart": bool(smart[k])} for k in range(len(blocks))]
    c_geoms = [shapely.Point(grid.parcel(*b)[0] + 4, grid.parcel(*b)[1] + 4) for b in blocks]
    s_rows, s_geoms = [], []
    for block in grid.blocks("S"):
        s_rows.append({"name": _SCHOOL_NAMES.get(block, "学校")})
        s_geoms.append(shapely.centroid(shapely.box(*grid.parcel(*block))))
    for name, block in (("海韵幼儿园", (1, 0)), ("南山幼儿园", (3, 2)), ("阳光幼儿园", (5, 6))):
        s_rows.append({"name": name})
        a, b, c, d = grid.buildable(*block)
        s_geoms.append(shapely.Point(a + 15, d - 15))
    for row, flag in zip(s_rows, _exact_share(rng, len(s_rows), 0.625)):
        row["smart"] = bool(flag)
    return {"community": _frame(c_rows, c_geoms), "school": _frame(s_rows, s_geoms)}


def _map_sheets(grid: _Grid, planning: shapely.Geometry) -> gpd.GeoDataFrame:
    """Surveyed 1:1000 sheets over the planning area, less two not yet surveyed."""
    rng = _rng("map_sheet")
    grid_sheets = sheets.sheet_grid(planning.bounds, 1000, crs=YANTAI_CRS)
    geoms = np.asarray(grid_sheets.geometry.values, dtype=object)
    inside = shapely.area(shapely.intersection(geoms, planning)) > 0
    gaps = shapely.points([grid.local(1900.0, 150.0), grid.local(100.0, 1300.0)])
    unsurveyed = np.array([bool(shapely.intersects(g, gaps).any()) for g in geoms])
    keep = geoms[inside & ~unsurveyed]
    start = np.datetime64("2017-03-01")
    days = rng.integers(0, 5 * 365, len(keep))
    dates = [str(start + np.timedelta64(int(d), "D")) for d in days]
    return gpd.GeoDataFrame({"scale": np.full(len(keep), 1000), "survey_date": dates},
                            geometry=list(keep), crs=YANTAI_CRS)


# --------------------------------------------------------------------------------------
# building the cities (I/O)


def _refuse_unless_city(folder: Path) -> None:
    """Raise NotACity if `folder` exists and is not a city workspace (so never delete a user's folder)."""
    if folder.is_symlink() or (folder.exists() and not (folder / CONFIG_FILE).is_file()):
        raise NotACity(f"{folder} exists and is not a city workspace (no {CONFIG_FILE}); the demo only "
                       f"replaces its own cities, so move that folder away or choose another --out")


def _write(frame: gpd.GeoDataFrame, path: Path) -> Path:
    path.unlink(missing_ok=True)
    columns = [c for c in frame.columns if not c.startswith("_")]
    frame[columns].to_file(path, driver="GPKG" if path.suffix == ".gpkg" else "GeoJSON", engine="pyogrio")
    return path


def _write_dem(z: np.ndarray, transform: Affine, path: Path) -> Path:
    path.unlink(missing_ok=True)
    profile = {"driver": "GTiff", "width": z.shape[1], "height": z.shape[0], "count": 1, "dtype": "float32",
               "crs": YANTAI_CRS, "transform": transform, "compress": "deflate", "predictor": 3,
               "tiled": True, "blockxsize": 256, "blockysize": 256}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(z, 1)
    return path


def _steps(progress: ProgressFactory | None, description: str, total: int) -> Callable[[int], None]:
    if progress is None:
        return lambda n: None
    return progress(description, total)


def build_yantai(folder: Path, sources: Path, progress: ProgressFactory | None = None) -> City:
    """Generate the Yantai demo district's source files into `sources` and ingest them as a city in `folder`."""
    grid = _Grid(*yantai_origin())
    areas = _areas(grid)
    buildings, courtyards = _buildings(grid, areas)
    pipes = _pipes(grid)
    green = pd.concat([areas["green"], courtyards], ignore_index=True)
    (sources / "pipe_spec.toml").write_text(_pipe_spec_text(), encoding="utf-8")
    layers: list[tuple[str, Path, LayerSpec | Path | None]] = [
        ("planning_area", _write(areas["planning_area"], sources / "planning_area.geojson"), None),
        ("district", _write(areas["district"], sources / "districts.geojson"), None),
        ("urban_area", _write(areas["urban_area"], sources / "urban_area.geojson"), None),
        ("key_area", _write(areas["key_area"], sources / "key_areas.geojson"), None),
        ("green", _write(gpd.GeoDataFrame(green, crs=YANTAI_CRS), sources / "green.gpkg"), None),
        ("map_sheet", _write(_map_sheets(grid, areas["planning_area"].geometry.iloc[0]),
                             sources / "map_sheets.geojson"), None),
        ("building", _write(buildings, sources / "buildings.gpkg"), LayerSpec(id_column="code")),
        ("pipe", _write(pipes, sources / "pipes.gpkg"), sources / "pipe_spec.toml"),
        ("manhole", _write(_manholes(pipes), sources / "manholes.gpkg"), LayerSpec(id_column="name")),
        ("sensor", _write(_sensors(pipes), sources / "sensors.geojson"), LayerSpec(id_column="sensor_id")),
    ]
    for kind, frame in {**_street_furniture(grid, areas["key_area"]), **_communities_and_schools(grid)}.items():
        stem = "communities" if kind == "community" else f"{kind}s"
        layers.append((kind, _write(frame, sources / f"{stem}.gpkg"), None))
    dem = _write_dem(*_dem(grid), sources / "dem.tif")

    step = _steps(progress, "yantai demo", len(layers) + 1)
    city = City.init(folder, YANTAI_CRS, name="Yantai demo district")
    city.ingest(dem, "dem", progress=progress)  # first, so later layers take their ground z
    step(1)
    for kind, path, spec in layers:
        city.ingest(path, kind, spec=spec, progress=progress)
        step(1)
    _ingest_ifc_samples(city, progress)
    return city


def ifc_lot_centres() -> dict[str, tuple[float, float]]:
    """The centre of each IFC model's lot in the city CRS."""
    x0, y0 = yantai_origin()
    return {name: (x0 + u, y0 + v) for name, (u, v, _) in _IFC_LOTS.items()}


def _ingest_ifc_samples(city: City, progress: ProgressFactory | None) -> None:
    """Ingest the sample IFC models of ifc_samples/ at their anchors in the district."""
    for file_name, anchor in IFC_PLACEMENTS.items():
        path = IFC_SAMPLES / file_name
        if path.is_file():
            city.ingest(path, anchor=f"{anchor.lon},{anchor.lat},{anchor.elevation},{-anchor.rotation_deg}",
                        progress=progress)


KY4_PIPE_SPEC = """\
# KY4 (WNTR) pipes: diameters are in metres, and every pipe carries potable water.
kind = "pipe"
id = "name"

[fields]
utility = { value = "water" }
diameter_mm = { column = "diameter", scale = 1000 }
"""

KY4_SENSOR_SPEC = """\
# KY4 (WNTR) junctions as the pressure sensors they are to become (pressure head in metres).
kind = "sensor"
id = "name"

[fields]
sensor_id = "name"
property = { value = "pressure" }
unit = { value = "m" }
"""


def build_ky4(folder: Path, data: Path, sources: Path, progress: ProgressFactory | None = None) -> City:
    """Ingest the real KY4 water network (DEM, pipes, junctions as sensors) from `data` as a city in `folder`."""
    pipe_spec = sources / "ky4_pipe_spec.toml"
    sensor_spec = sources / "ky4_sensor_spec.toml"
    pipe_spec.write_text(KY4_PIPE_SPEC, encoding="utf-8")
    sensor_spec.write_text(KY4_SENSOR_SPEC, encoding="utf-8")
    step = _steps(progress, "ky4 demo", 3)
    city = City.init(folder, KY4_CRS, name="KY4 water network (Kentucky)")
    city.ingest(data / "dem" / "ky4_elevation.tif", "dem", progress=progress)
    step(1)
    city.ingest(data / "pipes" / "ky4_pipes.geojson", "pipe", spec=pipe_spec, progress=progress)
    step(1)
    city.ingest(data / "pipes" / "ky4_junctions.geojson", "sensor", spec=sensor_spec, progress=progress)
    step(1)
    return city


def shared_data_folder() -> Path | None:
    """The shared real-data folder: $TWIN_SHARED_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("TWIN_SHARED_DATA")
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return folder if folder.is_dir() else None


def build_demo(out: Path, progress: ProgressFactory | None = None, *,
               shared_data: Path | None = None) -> dict[str, City]:
    """Build the demo cities under `out`: "yantai" always, "ky4" when the shared data folder exists.

    An existing demo city is deleted and rebuilt; a folder in its place that is not a
    city workspace is refused (NotACity), and nothing is deleted.
    """
    out = Path(out)
    data = shared_data or shared_data_folder()
    names = ["yantai"] + (["ky4"] if data is not None else [])
    for name in names:
        _refuse_unless_city(out / name)
    sources = out / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (out / name).exists():
            shutil.rmtree(out / name)
    cities = {"yantai": build_yantai(out / "yantai", sources, progress)}
    if data is not None:
        cities["ky4"] = build_ky4(out / "ky4", data, sources, progress)
    return cities
