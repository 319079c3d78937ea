"""Coastlines, country and US state borders for maps, drawn without any download.

The polylines ship with the package in ``pqpf/data/boundaries_na.npz`` (North America,
10-75N, 170W-45W; built by ``tools/make_boundaries.py`` from Natural Earth and US Census
cartographic boundaries, both public domain; see ``pqpf/data/BOUNDARIES_SOURCES.md``).
:func:`load_boundaries` reads them as longitude/latitude polylines; :func:`project_boundaries`
returns them in a grid's projection coordinates, clipped to the grid, ready to overlay on a
map drawn in the same coordinates; :func:`draw_boundaries` overlays them on a map axes.

File layout (``np.load(..., allow_pickle=False)``): for each kind ``K`` in
:data:`BOUNDARY_KINDS`, ``K_lonlat`` float32 (n, 2) longitude/latitude (degrees) of all
points, and ``K_offsets`` int64 (m + 1,) with polyline ``p`` being
``K_lonlat[K_offsets[p]:K_offsets[p + 1]]``; ``box`` float64 ``[lon_min, lon_max,
lat_min, lat_max]``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from pqpf.grid import Grid
from pqpf.plot.colours import LINE_COLOUR

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "BOUNDARY_KINDS",
    "boundaries_path",
    "clip_polyline",
    "draw_boundaries",
    "load_boundaries",
    "project_boundaries",
]

logger = logging.getLogger(__name__)

#: Kinds of line in the boundaries file: ocean coastline (Natural Earth land outline),
#: US shorelines missing from that outline (Great Lakes, large bays; US Census),
#: international borders (Natural Earth) and borders between US states (US Census).
BOUNDARY_KINDS: tuple[str, ...] = ("coastline", "lake", "country", "state")

#: Longest segment (degrees) left between projected points; long straight state lines
#: along parallels are curves on a Lambert map, so they are densified before projecting.
_MAX_STEP_DEG = 0.05

#: Line width (points) and opacity per boundary kind, drawn in this order (states lowest).
_LINE_STYLE: dict[str, tuple[float, float]] = {
    "state": (0.45, 0.75),
    "lake": (0.6, 0.9),
    "coastline": (0.7, 0.9),
    "country": (0.8, 0.9),
}


def boundaries_path() -> Path:
    """Path of the shipped boundaries file (``pqpf/data/boundaries_na.npz``)."""
    return Path(__file__).resolve().parent.parent / "data" / "boundaries_na.npz"


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> dict[str, tuple[NDArray[np.float64], ...]]:
    with np.load(path, allow_pickle=False) as data:
        missing = [f"{k}_{part}" for k in BOUNDARY_KINDS for part in ("lonlat", "offsets")
                   if f"{k}_{part}" not in data.files]
        if missing:
            raise ValueError(f"{path}: boundaries file lacks arrays {missing}")
        out: dict[str, tuple[NDArray[np.float64], ...]] = {}
        for kind in BOUNDARY_KINDS:
            points = data[f"{kind}_lonlat"].astype(np.float64)
            offsets = data[f"{kind}_offsets"].astype(np.int64)
            lines = []
            for a, b in zip(offsets[:-1], offsets[1:], strict=True):
                line = points[a:b]
                line.flags.writeable = False
                lines.append(line)
            out[kind] = tuple(lines)
    logger.debug("loaded boundaries from %s: %s", path,
                 {k: len(v) for k, v in out.items()})
    return out


def load_boundaries(path: str | Path | None = None) -> dict[str, list[NDArray[np.float64]]]:
    """Longitude/latitude polylines by kind.

    Parameters
    ----------
    path : path, optional
        Boundaries file; default the one shipped with pqpf (:func:`boundaries_path`).

    Returns
    -------
    dict
        ``{kind: [array (n, 2) of (lon, lat) degrees, ...]}`` for every kind in
        :data:`BOUNDARY_KINDS`. Arrays are read-only and shared between calls.
    """
    path = Path(path) if path is not None else boundaries_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: boundaries file not found (it ships with pqpf)")
    return {k: list(v) for k, v in _load_cached(str(path)).items()}


def clip_polyline(
    points: NDArray[np.float64], xmin: float, xmax: float, ymin: float, ymax: float
) -> list[NDArray[np.float64]]:
    """Clip a polyline to a rectangle, breaking it where it leaves and re-enters.

    Every segment is clipped exactly (Liang-Barsky), so the pieces end on the rectangle's
    edge rather than at the last vertex inside.

    Parameters
    ----------
    points : array (n, 2)
        Vertices ``(x, y)``.
    xmin, xmax, ymin, ymax : float
        The rectangle.

    Returns
    -------
    list of arrays (k, 2), k >= 2
        The visible pieces, in order. Empty when nothing is inside.

    References
    ----------
    Liang, Y.-D. and Barsky, B. A. (1984). A new concept and method for line clipping.
    ACM Transactions on Graphics, 3, 1-22.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {p.shape}")
    if len(p) < 2:
        return []
    inside = (p[:, 0] >= xmin) & (p[:, 0] <= xmax) & (p[:, 1] >= ymin) & (p[:, 1] <= ymax)
    if inside.all():
        return [p]
    p0 = p[:-1]
    d = p[1:] - p0
    t0 = np.zeros(len(d))
    t1 = np.ones(len(d))
    visible = np.ones(len(d), dtype=bool)
    for pk, qk in ((-d[:, 0], p0[:, 0] - xmin), (d[:, 0], xmax - p0[:, 0]),
                   (-d[:, 1], p0[:, 1] - ymin), (d[:, 1], ymax - p0[:, 1])):
        parallel = pk == 0
        visible &= ~(parallel & (qk < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = qk / pk
        t0 = np.where((pk < 0), np.maximum(t0, r), t0)
        t1 = np.where((pk > 0), np.minimum(t1, r), t1)
    visible &= t0 <= t1
    idx = np.flatnonzero(visible)
    if idx.size == 0:
        return []
    a = p0 + t0[:, None] * d
    b = p0 + t1[:, None] * d
    b[t1 == 1.0] = p[1:][t1 == 1.0]  # exact vertices, no rounding
    # A visible segment continues the previous one when both meet at an interior vertex.
    cont = np.zeros(idx.size, dtype=bool)
    cont[1:] = (np.diff(idx) == 1) & (t1[idx[:-1]] == 1.0) & (t0[idx[1:]] == 0.0)
    starts = np.flatnonzero(~cont)
    ends = np.append(starts[1:], idx.size)
    pieces = []
    for s, e in zip(starts, ends, strict=True):
        segs = idx[s:e]
        piece = np.vstack([a[segs[0]][None, :], b[segs]])
        pieces.append(piece)
    return pieces


def _densify(line: NDArray[np.float64], max_step: float) -> NDArray[np.float64]:
    """Insert points so that no segment is longer than ``max_step`` (same units)."""
    seg = np.diff(line, axis=0)
    n = np.maximum(np.ceil(np.hypot(seg[:, 0], seg[:, 1]) / max_step).astype(np.int64), 1)
    if (n == 1).all():
        return line
    start = np.repeat(line[:-1], n, axis=0)
    step = np.repeat(seg / n[:, None], n, axis=0)
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    return np.vstack([start + k[:, None] * step, line[-1:]])


@functools.lru_cache(maxsize=16)
def _project_cached(
    grid: Grid, margin_px: float, path: str
) -> dict[str, tuple[NDArray[np.float64], ...]]:
    lines_ll = _load_cached(path)
    half = 0.5 + margin_px
    xs = (grid.x0 - half * grid.dx, grid.x0 + (grid.nx - 1 + half) * grid.dx)
    ys = (grid.y0 - half * grid.dy, grid.y0 + (grid.ny - 1 + half) * grid.dy)
    xmin, xmax = min(xs), max(xs)
    ymin, ymax = min(ys), max(ys)
    out: dict[str, tuple[NDArray[np.float64], ...]] = {}
    for kind, lines in lines_ll.items():
        if not lines:
            out[kind] = ()
            continue
        dense = [_densify(line, _MAX_STEP_DEG) for line in lines]
        sizes = np.array([len(line) for line in dense])
        allpts = np.vstack(dense)
        x, y = grid.to_xy(allpts[:, 0], allpts[:, 1])
        xy = np.column_stack([x, y])
        finite = np.isfinite(xy).all(axis=1)
        pieces: list[NDArray[np.float64]] = []
        for line_xy, ok in zip(np.split(xy, np.cumsum(sizes)[:-1]),
                               np.split(finite, np.cumsum(sizes)[:-1]), strict=True):
            # Quick reject by bounding box before the exact clip.
            if not ok.all():
                line_xy = line_xy[ok]
            if len(line_xy) < 2:
                continue
            lo, hi = line_xy.min(axis=0), line_xy.max(axis=0)
            if lo[0] > xmax or hi[0] < xmin or lo[1] > ymax or hi[1] < ymin:
                continue
            parts = [line_xy]
            if not grid.is_lambert:
                # longitudes wrap onto the grid's branch: a line crossing the branch cut
                # jumps by ~360 degrees and is cut there, not drawn across the map.
                jumps = np.flatnonzero(np.abs(np.diff(line_xy[:, 0])) > 180.0)
                parts = np.split(line_xy, jumps + 1)
            for part in parts:
                for piece in clip_polyline(part, xmin, xmax, ymin, ymax):
                    piece.flags.writeable = False
                    pieces.append(piece)
        out[kind] = tuple(pieces)
    return out


def project_boundaries(
    grid: Grid, margin_px: float = 0.0, path: str | Path | None = None
) -> dict[str, list[NDArray[np.float64]]]:
    """Boundary polylines in ``grid``'s projection coordinates, clipped to its extent.

    Parameters
    ----------
    grid : Grid
        Lambert or latitude/longitude grid; coordinates are those of :meth:`Grid.to_xy`
        (metres for Lambert, degrees for lat/lon).
    margin_px : float
        Extra margin around the grid, in grid points, beyond the outer cell edges
        (the extent ``pcolormesh`` covers). 0 clips exactly at the cell edges.
    path : path, optional
        Boundaries file; default the shipped one.

    Returns
    -------
    dict
        ``{kind: [array (n, 2) of (x, y), ...]}``. Lines are densified to at most
        0.05 degrees between points before projecting (so parallels curve correctly on
        Lambert maps) and cut where they leave the extent. Cached per grid.
    """
    if margin_px < 0:
        raise ValueError(f"margin_px must be >= 0, got {margin_px}")
    path = Path(path) if path is not None else boundaries_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: boundaries file not found (it ships with pqpf)")
    return {k: list(v) for k, v in _project_cached(grid, float(margin_px), str(path)).items()}


def draw_boundaries(ax: Axes, grid: Grid, colour: str = LINE_COLOUR, scale: float = 1.0) -> int:
    """Overlay coastlines, lake shores, country and state borders on a map axes.

    Parameters
    ----------
    ax : matplotlib Axes
        Axes whose data coordinates are ``grid``'s projection coordinates.
    grid : Grid
        The grid of the fields drawn on ``ax``.
    colour : str
        Line colour.
    scale : float
        Multiplier of the line widths (smaller for small panels).

    Returns
    -------
    int
        Number of polylines drawn.
    """
    from matplotlib.collections import LineCollection

    lines = project_boundaries(grid)
    count = 0
    for kind, (width, alpha) in _LINE_STYLE.items():
        pieces = lines.get(kind, [])
        if not pieces:
            continue
        ax.add_collection(LineCollection(pieces, colors=colour, linewidths=width * scale,
                                         alpha=alpha, zorder=3, capstyle="round"),
                          autolim=False)
        count += len(pieces)
    return count
