"""The remapping methods: which source cells feed each target cell, with which weights.

Each method builds the ``(row, column, weight)`` triplets of the sparse matrix that
:class:`pqpf.remapping.RegridWeights` normalises, stores and applies; :data:`METHODS` is
the one registry of method names (``[mrms] remap_method``, ``--method``).

Methods (:data:`METHODS`):

``conservative``
    Each source cell of a regular latitude/longitude grid belongs to the target cell that
    contains its centre (the centre projected with the target grid's projection); its
    weight is its exact area on the earth model of the source grid. A target value is
    the area-weighted mean over the valid source cells assigned to it (missing cells
    excluded, weights renormalised). This conserves ``sum(area * value)`` exactly over
    the assigned cells: ``sum_t row_sums[t] * out[t] == sum_s area[s] * in[s]`` when
    nothing is missing. When the source is not much finer than the target, the
    assignment by centres is a coarse approximation of polygon overlap; ``subsample=s``
    splits every source cell into ``s x s`` sub-cells (each assigned by its own centre,
    each weighted by its own area), which converges to the exact overlap as ``s`` grows.
    MRMS (0.01 degree, about 1 km) onto a 4 km grid puts about 16 source cells into each
    target cell, where ``s = 1`` is adequate.
``nearest``
    The source cell that contains the target cell's centre.
``bilinear``
    The four source cells around the target cell's centre with bilinear weights in the
    source grid's index space; missing (or off-grid) neighbours are excluded and the rest
    renormalised.

Target cells whose centre lies outside the source domain (or, for ``conservative``, to
which no source centre belongs) get ``valid_fraction = 0``, quality 0 and NaN.

References
----------
Jones, P. W. (1999). First- and second-order conservative remapping schemes for grids in
spherical coordinates. Mon. Wea. Rev., 127, 2204-2210.
Snyder, J. P. (1987). Map projections: a working manual. USGS Professional Paper 1395
(authalic latitude and the area of an ellipsoidal zone, pp. 16 and 187).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import NDArray

from pqpf.grid import Grid

__all__ = ["METHODS", "Triplets", "check_method", "latlon_cell_area_m2"]

#: Source points projected per block while building (bounds memory to ~100 MB a block).
_BLOCK_POINTS = 1_000_000
#: Extra source rows/columns kept around the target domain's bounding box.
_WINDOW_MARGIN = 2


# --------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------


def _zone_area_per_radian(lat_deg: NDArray[np.float64], a: float, b: float) -> NDArray[np.float64]:
    """Area (m^2) between the equator and latitude ``lat_deg`` per radian of longitude.

    Sphere: ``a^2 sin(phi)``. Ellipsoid: ``(b^2 / 2) [sin(phi) / (1 - e^2 sin^2 phi) +
    artanh(e sin phi) / e]`` (Snyder 1987, eq. 3-12 times ``a^2 (1 - e^2) / 2``).
    """
    s = np.sin(np.radians(lat_deg))
    e2 = 1.0 - (b * b) / (a * a)
    if e2 < 1e-14:
        return a * a * s
    e = math.sqrt(e2)
    return 0.5 * b * b * (s / (1.0 - e2 * s * s) + np.arctanh(e * s) / e)


def latlon_cell_area_m2(
    grid: Grid, rows: slice | None = None, subsample: int = 1
) -> NDArray[np.float64]:
    """Exact area of the cells of a regular latitude/longitude grid, one value per row.

    Parameters
    ----------
    grid : Grid
        A latitude/longitude grid; cells extend half a step either side of the centres,
        clipped at the poles.
    rows : slice, optional
        Rows to compute (default all).
    subsample : int
        Split every cell into ``subsample x subsample`` sub-cells and return the area of
        one sub-cell per sub-row (the output then has ``subsample`` values per row).

    Returns
    -------
    float64 array, shape (n_rows * subsample,)
        Area in m^2 on the grid's earth model (sphere or ellipsoid: the ellipsoidal zone
        area through the authalic latitude, exact).
    """
    if grid.is_lambert:
        raise ValueError(f"need a latitude/longitude grid, got {grid.describe()}")
    if subsample < 1:
        raise ValueError(f"subsample must be a positive integer, got {subsample}")
    rows = rows if rows is not None else slice(0, grid.ny)
    lat_c = grid.y[rows]
    step = abs(grid.dy) / subsample
    offsets = (np.arange(subsample) + 0.5) * step - 0.5 * abs(grid.dy)
    lat_sub = (lat_c[:, None] + offsets[None, :]).ravel()
    top = np.clip(lat_sub + 0.5 * step, -90.0, 90.0)
    bottom = np.clip(lat_sub - 0.5 * step, -90.0, 90.0)
    dlon_rad = math.radians(abs(grid.dx)) / subsample
    zone = _zone_area_per_radian(top, grid.earth_a, grid.earth_b) - _zone_area_per_radian(
        bottom, grid.earth_a, grid.earth_b
    )
    return dlon_rad * zone


def _source_window(grid_in: Grid, grid_out: Grid) -> tuple[int, int, int, int]:
    """Rows ``j0:j1`` and columns ``i0:i1`` of ``grid_in`` that can meet ``grid_out``.

    The target domain's outline (every cell edge of its border) and a coarse sample of
    its interior are mapped into the source grid's index space; the window is their
    bounding box plus a margin, clipped to the source grid. A window that wraps the
    source's longitude seam comes out as the full width (correct, only slower).
    """
    xe = grid_out.x0 + grid_out.dx * (np.arange(grid_out.nx + 1) - 0.5)
    ye = grid_out.y0 + grid_out.dy * (np.arange(grid_out.ny + 1) - 0.5)
    step_y = max(1, grid_out.ny // 64)
    step_x = max(1, grid_out.nx // 64)
    xi, yi = np.meshgrid(grid_out.x[::step_x], grid_out.y[::step_y])
    px = np.concatenate([xe, xe, np.full(ye.size, xe[0]), np.full(ye.size, xe[-1]), xi.ravel()])
    py = np.concatenate([np.full(xe.size, ye[0]), np.full(xe.size, ye[-1]), ye, ye, yi.ravel()])
    lon, lat = grid_out.to_lonlat(px, py)
    fj, fi = grid_in.fractional_index(lon, lat)
    ok = np.isfinite(fj) & np.isfinite(fi)
    if not ok.any():
        return 0, 0, 0, 0
    j0 = max(0, int(np.floor(fj[ok].min())) - _WINDOW_MARGIN)
    j1 = min(grid_in.ny, int(np.ceil(fj[ok].max())) + _WINDOW_MARGIN + 1)
    i0 = max(0, int(np.floor(fi[ok].min())) - _WINDOW_MARGIN)
    i1 = min(grid_in.nx, int(np.ceil(fi[ok].max())) + _WINDOW_MARGIN + 1)
    return j0, max(j0, j1), i0, max(i0, i1)


def _containing_cell(grid: Grid, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.int64]:
    """Flat index of the cell of ``grid`` containing each point given in grid
    coordinates, -1 outside the grid (cell = centre +- half a step)."""
    i = np.floor((x - grid.x0) / grid.dx + 0.5)
    j = np.floor((y - grid.y0) / grid.dy + 0.5)
    inside = (i >= 0) & (i < grid.nx) & (j >= 0) & (j < grid.ny)
    flat = np.where(inside, j * grid.nx + i, -1.0)
    return flat.astype(np.int64)


# --------------------------------------------------------------------------------------
# builders: each returns (rows, cols, raw weights) of the triplets of W
# --------------------------------------------------------------------------------------

Triplets = tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float64]]


def _concat(parts: list[Triplets]) -> Triplets:
    if not parts:
        return (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float64))
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _build_conservative(grid_in: Grid, grid_out: Grid, subsample: int) -> Triplets:
    if grid_in.is_lambert:
        raise ValueError(
            f"conservative remapping needs a latitude/longitude source grid, got {grid_in.describe()}"
        )
    s = int(subsample)
    j0, j1, i0, i1 = _source_window(grid_in, grid_out)
    if j1 <= j0 or i1 <= i0:
        return _concat([])
    offsets = (np.arange(s) + 0.5) / s - 0.5  # sub-cell centres in cell units
    sub_x = (grid_in.x[i0:i1, None] + offsets[None, :] * grid_in.dx).ravel()
    sub_col = np.repeat(np.arange(i0, i1, dtype=np.int64), s)
    rows_per_block = max(1, _BLOCK_POINTS // (sub_x.size * s))
    parts: list[Triplets] = []
    for b0 in range(j0, j1, rows_per_block):
        b1 = min(j1, b0 + rows_per_block)
        sub_y = (grid_in.y[b0:b1, None] + offsets[None, :] * grid_in.dy).ravel()
        sub_row = np.repeat(np.arange(b0, b1, dtype=np.int64), s)
        area = latlon_cell_area_m2(grid_in, slice(b0, b1), s)
        xx, yy = np.meshgrid(sub_x, sub_y)
        tx, ty = grid_out.to_xy(xx, yy)
        target = _containing_cell(grid_out, tx, ty)
        del xx, yy, tx, ty
        jj, ii = np.nonzero(target >= 0)
        if jj.size == 0:
            continue
        rows = target[jj, ii].astype(np.int32)
        cols = (sub_row[jj] * grid_in.nx + sub_col[ii]).astype(np.int32)
        parts.append((rows, cols, area[jj]))
    return _concat(parts)


def _target_centre_blocks(
    grid_in: Grid, grid_out: Grid
) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]]:
    """Blocks of target cells whose centre lies inside the source domain: their flat
    indices and the fractional source indices ``(fj, fi)`` of their centres."""
    rows_per_block = max(1, _BLOCK_POINTS // grid_out.nx)
    for b0 in range(0, grid_out.ny, rows_per_block):
        b1 = min(grid_out.ny, b0 + rows_per_block)
        lon, lat = grid_out.lonlat(slice(b0, b1))
        fj, fi = grid_in.fractional_index(lon, lat)
        fj, fi = fj.ravel(), fi.ravel()
        tgt = np.arange(b0 * grid_out.nx, b1 * grid_out.nx, dtype=np.int64)
        inside = (fj >= -0.5) & (fj < grid_in.ny - 0.5) & (fi >= -0.5) & (fi < grid_in.nx - 0.5)
        yield tgt[inside], fj[inside], fi[inside]


def _build_nearest(grid_in: Grid, grid_out: Grid, subsample: int) -> Triplets:
    parts: list[Triplets] = []
    for tgt, fj, fi in _target_centre_blocks(grid_in, grid_out):
        j = np.minimum(np.floor(fj + 0.5), grid_in.ny - 1)
        i = np.minimum(np.floor(fi + 0.5), grid_in.nx - 1)
        src = (j * grid_in.nx + i).astype(np.int32)
        parts.append((tgt.astype(np.int32), src, np.ones(tgt.size)))
    return _concat(parts)


def _build_bilinear(grid_in: Grid, grid_out: Grid, subsample: int) -> Triplets:
    parts: list[Triplets] = []
    for tgt, fj, fi in _target_centre_blocks(grid_in, grid_out):
        ja, ia = np.floor(fj), np.floor(fi)
        tj, ti = fj - ja, fi - ia
        for dj, di, w in (
            (0, 0, (1 - tj) * (1 - ti)),
            (0, 1, (1 - tj) * ti),
            (1, 0, tj * (1 - ti)),
            (1, 1, tj * ti),
        ):
            j, i = ja + dj, ia + di
            ok = (j >= 0) & (j < grid_in.ny) & (i >= 0) & (i < grid_in.nx) & (w > 0)
            src = (j[ok] * grid_in.nx + i[ok]).astype(np.int32)
            parts.append((tgt[ok].astype(np.int32), src, w[ok]))
    return _concat(parts)


#: Remapping methods by name: builder(grid_in, grid_out, subsample) -> triplets.
METHODS: dict[str, Callable[[Grid, Grid, int], Triplets]] = {
    "conservative": _build_conservative,
    "nearest": _build_nearest,
    "bilinear": _build_bilinear,
}


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown remapping method {method!r}; valid methods: {', '.join(METHODS)}")
