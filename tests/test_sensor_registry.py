"""The vectorised SensorRegistry.build links every sensor to the pipe the per-sensor loop did.

`reference_build` is the registry build as it was before it was vectorised (one
`query_nearest` per sensor), kept here as the definition the fast one must match.
"""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely

from twin.sensors import SensorInfo, SensorRegistry, link_to_pipes

CRS = "EPSG:4549"
X0, Y0 = 500_000.0, 4_150_000.0


def reference_build(sensor_layers, pipe_layers, snap_m=10.0) -> SensorRegistry:
    """The per-sensor registry build of twin 0.x, before vectorising."""
    pipe_uid, geoms, owners = {}, [], []
    for layer, frame in pipe_layers.items():
        utilities = frame["utility"] if "utility" in frame.columns else [None] * len(frame)
        for uid, utility in zip(frame["uid"].astype(str), utilities):
            pipe_uid[uid] = (layer, None if utility is None or utility is np.nan else str(utility))
        geoms.extend(shapely.force_2d(np.asarray(frame.geometry.values, dtype=object)))
        owners.extend(frame["uid"].astype(str))
    tree = shapely.STRtree(np.asarray(geoms, dtype=object)) if geoms else None
    registry = SensorRegistry()

    def column(frame, name, pos):
        if name not in frame.columns:
            return None
        value = frame[name].iloc[pos]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return str(value)

    for layer, frame in sensor_layers.items():
        ids = frame["sensor_id"] if "sensor_id" in frame.columns else frame["uid"].str.split(".", n=1).str[-1]
        for pos, (sid, uid) in enumerate(zip(ids, frame["uid"].astype(str))):
            if sid is None or (isinstance(sid, float) and math.isnan(sid)):
                continue
            sid = str(sid)
            if sid in registry.sensors:
                continue
            pipe = column(frame, "pipe_id", pos)
            if pipe is not None and pipe not in pipe_uid and f"pipe.{pipe}" in pipe_uid:
                pipe = f"pipe.{pipe}"
            if (pipe is None or pipe not in pipe_uid) and tree is not None and snap_m > 0:
                point = shapely.force_2d(frame.geometry.iloc[pos])
                hit = tree.query_nearest(point, max_distance=snap_m) if point is not None else []
                pipe = owners[int(hit[0])] if len(hit) else None
                registry.snapped += pipe is not None
            elif pipe is not None and pipe not in pipe_uid:
                pipe = None
            pipe_layer, utility = pipe_uid.get(pipe, (None, None)) if pipe else (None, None)
            registry.sensors[sid] = SensorInfo(sid, layer, uid, column(frame, "property", pos),
                                               column(frame, "unit", pos), pipe, pipe_layer, utility)
            if pipe is not None:
                registry.pipe_sensors.setdefault((pipe_layer, pipe), []).append(sid)
    return registry


def random_network(seed: int, n_pipes: int, n_sensors: int):
    rng = np.random.default_rng(seed)
    start = rng.uniform([X0, Y0], [X0 + 3000, Y0 + 3000], size=(n_pipes, 2))
    end = start + rng.uniform(-80, 80, size=(n_pipes, 2))
    long = rng.random(n_pipes) < 0.02  # a few long mains, wider than the snapping grid's cells
    end[long] = start[long] + rng.uniform(-1500, 1500, size=(int(long.sum()), 2))
    pipes = gpd.GeoDataFrame({"uid": [f"pipe.{k + 1}" for k in range(n_pipes)],
                              "utility": rng.choice(["water", "gas", None], n_pipes)},
                             geometry=shapely.linestrings(np.stack([start, end], axis=1)), crs=CRS)
    on = rng.integers(0, n_pipes, n_sensors)
    xy = shapely.get_coordinates(shapely.line_interpolate_point(pipes.geometry.values[on], 0.5, normalized=True))
    xy += rng.uniform(-12, 12, size=xy.shape) * (rng.random(n_sensors) < 0.6)[:, None]
    pipe_id = np.where(rng.random(n_sensors) < 0.4, [f"pipe.{k + 1}" for k in on], None)
    pipe_id[rng.random(n_sensors) < 0.1] = "pipe.none"  # names no pipe: snapped instead
    bare = rng.random(n_sensors) < 0.1
    pipe_id[bare] = [str(k + 1) for k in on[bare]]  # the pipe layer's key without "pipe."
    ids = [f"S{k}" for k in range(n_sensors)]
    ids[3] = ids[2]  # a duplicate: the first wins
    ids[5] = None  # no id: left out
    sensors = gpd.GeoDataFrame({"uid": [f"sensor.{k + 1}" for k in range(n_sensors)], "sensor_id": ids,
                                "pipe_id": pipe_id, "property": "pressure", "unit": rng.choice(["MPa", None],
                                                                                                n_sensors)},
                               geometry=shapely.points(xy), crs=CRS)
    return sensors, pipes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_build_links_every_sensor_as_the_per_sensor_loop_did(seed):
    sensors, pipes = random_network(seed, 3000, 800)
    fast = SensorRegistry.build({"sensor": sensors}, {"pipe": pipes}, 10.0)
    slow = reference_build({"sensor": sensors}, {"pipe": pipes}, 10.0)
    assert fast.sensors == slow.sensors
    assert fast.pipe_sensors == slow.pipe_sensors
    assert fast.snapped == slow.snapped > 0


def test_two_pipe_layers_and_no_snapping():
    sensors, pipes = random_network(4, 500, 200)
    west, east = pipes.iloc[:250].copy(), pipes.iloc[250:].copy()
    east["uid"] = east["uid"].str.replace("pipe.", "mains.")
    for snap in (10.0, 0.0):
        fast = SensorRegistry.build({"sensor": sensors}, {"pipe": west, "mains": east}, snap)
        slow = reference_build({"sensor": sensors}, {"pipe": west, "mains": east}, snap)
        assert fast.sensors == slow.sensors and fast.pipe_sensors == slow.pipe_sensors


def test_link_to_pipes_gives_rows_and_which_were_snapped():
    pipes = shapely.linestrings([[[0, 0], [100, 0]], [[0, 50], [100, 50]]])
    points = shapely.points([[10, 3], [10, 48], [10, 25], [0, 0]])
    rows, snapped = link_to_pipes(points, np.array([None, None, None, "b"], dtype=object), ["a", "b"], pipes, 10.0)
    assert rows.tolist() == [0, 1, -1, 1]
    assert snapped.tolist() == [True, True, False, False]
