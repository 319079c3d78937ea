#!/usr/bin/env python3
"""Build ``pqpf/data/boundaries_na.npz``: map lines for North America, from TopoJSON.

Inputs are the public-domain boundary data redistributed on the npm registry as
TopoJSON (get them with ``npm pack``, outside the repository):

* ``world-atlas@2``: Natural Earth 1:50m ``land-50m.json`` (coastline = outline of the
  land polygons) and ``countries-50m.json`` (international borders = arcs shared by
  two countries);
* ``us-atlas@3``: US Census cartographic boundaries 2017 ``states-10m.json`` (state
  borders = arcs shared by two states; arcs used by one state are the national outline,
  whose parts farther than ``--lake-min-km`` from the Natural Earth coastline and
  borders become kind ``lake``: the Great Lakes shores and large bays that the 1:50m
  land outline lacks).

Lines are clipped to the box (default 10-75N, 170W-45W), optionally simplified
(Douglas-Peucker, ``--tolerance-deg``), and written as float32 lon/lat plus offsets.
See ``pqpf/data/BOUNDARIES_SOURCES.md`` for the exact command and versions.

Example::

    npm pack world-atlas@2 us-atlas@3           # in a scratch directory
    tar xzf world-atlas-2.0.2.tgz && mv package world-atlas
    tar xzf us-atlas-3.0.1.tgz && mv package us-atlas
    python tools/make_boundaries.py --world-atlas world-atlas --us-atlas us-atlas
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

# A development tool run from a checkout: import the pqpf beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pqpf.io.atomic import atomic_write_bytes  # noqa: E402
from pqpf.plot.basemap import BOUNDARY_KINDS, boundaries_path, clip_polyline  # noqa: E402

logger = logging.getLogger("make_boundaries")

Line = NDArray[np.float64]


# ---- TopoJSON decoding ----------------------------------------------------------------


def decode_arcs(topology: dict) -> list[Line]:
    """Absolute lon/lat of every arc of a TopoJSON topology.

    Quantised topologies store each arc as a first position followed by deltas, in
    integer units; the position is ``q * scale + translate`` after the running sum.
    """
    arcs = topology["arcs"]
    transform = topology.get("transform")
    out = []
    for arc in arcs:
        a = np.asarray(arc, dtype=np.float64)[:, :2]
        if transform is not None:
            q = np.cumsum(a, axis=0)
            a = q * np.asarray(transform["scale"]) + np.asarray(transform["translate"])
        out.append(a)
    return out


def _geometry_rings(geometry: dict) -> list[list[int]]:
    """Arc-index rings of a Polygon/MultiPolygon (or lines of a (Multi)LineString)."""
    kind = geometry.get("type")
    arcs = geometry.get("arcs", [])
    if kind in ("Polygon", "MultiLineString"):
        return list(arcs)
    if kind == "MultiPolygon":
        return [ring for polygon in arcs for ring in polygon]
    if kind == "LineString":
        return [arcs]
    return []


def arc_usage(collection: dict) -> dict[int, set[int]]:
    """For each arc index, the set of geometries (by position) that use it."""
    used: dict[int, set[int]] = {}
    for g_index, geometry in enumerate(collection["geometries"]):
        for ring in _geometry_rings(geometry):
            for ref in ring:
                arc = ref if ref >= 0 else ~ref
                used.setdefault(arc, set()).add(g_index)
    return used


# ---- geometry helpers -------------------------------------------------------------------


def _chain(arcs: list[Line], indices: list[int]) -> list[Line]:
    """Join arcs that follow one another (end == start) into longer polylines."""
    lines: list[Line] = []
    for i in sorted(indices):
        a = arcs[i]
        if lines and np.array_equal(lines[-1][-1], a[0]):
            lines[-1] = np.vstack([lines[-1], a[1:]])
        else:
            lines.append(a)
    return lines


def _simplify(line: Line, tol: float) -> Line:
    """Douglas-Peucker simplification (iterative), keeping both ends."""
    if tol <= 0 or len(line) < 3:
        return line
    keep = np.zeros(len(line), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(line) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        seg = line[j] - line[i]
        rel = line[i + 1:j] - line[i]
        norm = np.hypot(*seg)
        if norm == 0:
            dist = np.hypot(rel[:, 0], rel[:, 1])
        else:
            dist = np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / norm
        k = int(np.argmax(dist))
        if dist[k] > tol:
            m = i + 1 + k
            keep[m] = True
            stack.append((i, m))
            stack.append((m, j))
    return line[keep]


def _split_antimeridian(line: Line) -> list[Line]:
    """Cut a line where it jumps across the 180th meridian (|step in lon| > 180)."""
    jumps = np.flatnonzero(np.abs(np.diff(line[:, 0])) > 180.0)
    return [piece for piece in np.split(line, jumps + 1) if len(piece) >= 2]


def _clip_all(lines: list[Line], box: tuple[float, float, float, float]) -> list[Line]:
    lon0, lon1, lat0, lat1 = box
    out = []
    for line in lines:
        for piece in _split_antimeridian(line):
            out.extend(clip_polyline(piece, lon0, lon1, lat0, lat1))
    return out


def _far_runs(line: Line, tree, min_deg: float) -> list[Line]:
    """Pieces of ``line`` whose points are farther than ``min_deg`` from the tree's points."""
    lat_scale = np.cos(np.radians(line[:, 1]))
    scaled = np.column_stack([line[:, 0] * lat_scale, line[:, 1]])
    dist, _ = tree.query(scaled)
    far = dist > min_deg
    pieces = []
    idx = np.flatnonzero(far)
    if idx.size == 0:
        return pieces
    breaks = np.flatnonzero(np.diff(idx) > 1)
    for run in np.split(idx, breaks + 1):
        if run.size >= 2:
            pieces.append(line[run[0]:run[-1] + 1])
    return pieces


# ---- build -----------------------------------------------------------------------------


def build(world_dir: Path, us_dir: Path, box: tuple[float, float, float, float],
          tolerance_deg: float, lake_min_km: float,
          resolution: str = "10m") -> dict[str, list[Line]]:
    from scipy.spatial import cKDTree

    land = json.loads((world_dir / f"land-{resolution}.json").read_text())
    countries = json.loads((world_dir / f"countries-{resolution}.json").read_text())
    states = json.loads((us_dir / "states-10m.json").read_text())

    land_arcs = decode_arcs(land)
    coast = _chain(land_arcs, list(arc_usage(land["objects"]["land"]).keys()))

    c_arcs = decode_arcs(countries)
    c_used = arc_usage(countries["objects"]["countries"])
    borders = _chain(c_arcs, [a for a, users in c_used.items() if len(users) >= 2])

    s_arcs = decode_arcs(states)
    s_used = arc_usage(states["objects"]["states"])
    state_lines = _chain(s_arcs, [a for a, users in s_used.items() if len(users) >= 2])
    outline = _chain(s_arcs, [a for a, users in s_used.items() if len(users) == 1])

    result: dict[str, list[Line]] = {
        "coastline": _clip_all(coast, box),
        "country": _clip_all(borders, box),
        "state": _clip_all(state_lines, box),
    }
    reference = np.vstack(result["coastline"] + result["country"])
    ref_scaled = np.column_stack(
        [reference[:, 0] * np.cos(np.radians(reference[:, 1])), reference[:, 1]])
    tree = cKDTree(ref_scaled)
    min_deg = lake_min_km / 111.2
    lakes: list[Line] = []
    for line in _clip_all(outline, box):
        lakes.extend(_far_runs(line, tree, min_deg))
    result["lake"] = lakes
    for kind in result:
        simplified = [_simplify(line, tolerance_deg) for line in result[kind]]
        result[kind] = [line for line in simplified if len(line) >= 2]
    return result


def write_npz(path: Path, lines: dict[str, list[Line]], box: tuple[float, ...],
              sources: list[str]) -> int:
    arrays: dict[str, np.ndarray] = {"box": np.asarray(box, dtype=np.float64),
                                     "sources": np.asarray(sources, dtype=np.str_)}
    for kind in BOUNDARY_KINDS:
        kind_lines = lines.get(kind, [])
        sizes = np.array([len(line) for line in kind_lines], dtype=np.int64)
        arrays[f"{kind}_offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        arrays[f"{kind}_lonlat"] = (np.vstack(kind_lines).astype(np.float32)
                                    if kind_lines else np.zeros((0, 2), np.float32))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return len(buf.getvalue())


def _package_version(directory: Path) -> str:
    meta = json.loads((directory / "package.json").read_text())
    return f"{meta['name']}@{meta['version']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-atlas", type=Path, required=True,
                        help="unpacked world-atlas@2 package directory")
    parser.add_argument("--us-atlas", type=Path, required=True,
                        help="unpacked us-atlas@3 package directory")
    parser.add_argument("--out", type=Path, default=boundaries_path())
    parser.add_argument("--box", type=float, nargs=4, default=(-170.0, -45.0, 10.0, 75.0),
                        metavar=("LON_MIN", "LON_MAX", "LAT_MIN", "LAT_MAX"))
    parser.add_argument("--resolution", choices=("110m", "50m", "10m"), default="10m",
                        help="Natural Earth scale of the coastline and country borders")
    parser.add_argument("--tolerance-deg", type=float, default=0.01,
                        help="Douglas-Peucker tolerance in degrees (0: no simplification)")
    parser.add_argument("--lake-min-km", type=float, default=12.0,
                        help="US outline farther than this from coast/borders is kept as 'lake'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    box = tuple(args.box)
    lines = build(args.world_atlas, args.us_atlas, box, args.tolerance_deg, args.lake_min_km,
                  args.resolution)
    sources = [_package_version(args.world_atlas)
               + f" land-{args.resolution}.json countries-{args.resolution}.json",
               _package_version(args.us_atlas) + " states-10m.json"]
    size = write_npz(args.out, lines, box, sources)
    for kind in BOUNDARY_KINDS:
        logger.info("%-9s %5d lines %7d points", kind, len(lines[kind]),
                    sum(len(line) for line in lines[kind]))
    logger.info("wrote %s (%d bytes)", args.out, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
