"""Area weights for verification: the true ground area of each grid cell.

Scores are area means, so each point should weigh as much as the ground its cell covers.
On a conformal projection a cell of ``dx`` by ``dy`` metres on the map covers
``dx dy / m^2`` on the earth, ``m`` the map factor at the cell (Snyder 1987, ch. 4);
:meth:`pqpf.grid.Grid.ground_metrics` gives the ground length of both steps, so the
area is their product, on a sphere or an ellipsoid alike. On a regular
latitude/longitude grid the cell area is proportional to ``cos(latitude)`` (exactly so on
a sphere), which is kept there as the weight.

``cos(latitude)`` on a Lambert grid is wrong: its cells are nearly equal in area (the map
factor on the GRAF CONUS grid, tangent at 38.5 N, runs from 1 to 1.104, so cell areas
differ by at most 18 %), while ``cos(latitude)`` falls from 0.98 to 0.48 between its
southern and northern edges (12 N to 61 N): the southern rows get about twice the weight
of their area relative to the northern ones (:func:`cos_lat_bias`).

References
----------
Snyder, J. P. (1987). Map projections: a working manual. USGS Professional Paper 1395.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

from pqpf.grid import Grid

__all__ = ["cell_area_m2", "area_weights", "cos_lat_bias"]

logger = logging.getLogger(__name__)

#: Rows of coordinates computed at once (bounds temporary memory on big grids).
_ROWS = 256


def cell_area_m2(grid: Grid) -> NDArray[np.float64]:
    """True ground area of each cell, m^2.

    Parameters
    ----------
    grid : Grid
        A Lambert conformal or latitude/longitude grid.

    Returns
    -------
    float64 array, shape (ny, nx)
        ``|dx_ground * dy_ground|``: for Lambert ``|dx dy| / m^2``; for latitude/longitude
        ``N cos(phi) |dlon| * M |dlat|`` (radii of curvature; ``R^2 cos(phi) |dlon dlat|``
        on a sphere), radians.

    Notes
    -----
    The area is that of the cell's centre scale; the map factor varies by ~1e-5 across a
    4 km cell, so the error is far below 1e-6.
    """
    out = np.empty(grid.shape)
    for j0 in range(0, grid.ny, _ROWS):
        rows = slice(j0, min(grid.ny, j0 + _ROWS))
        dxg, dyg, _ = grid.ground_metrics(rows)
        out[rows] = np.abs(dxg * dyg)
    return out


def area_weights(grid: Grid) -> NDArray[np.float32]:
    """Verification weights proportional to the true cell area.

    Parameters
    ----------
    grid : Grid
        The grid of the verified fields.

    Returns
    -------
    float32 array, shape (ny, nx)
        Lambert: ``1 / m^2`` (the cell area over the nominal ``|dx dy|``: 1 where the
        map is true to scale). Latitude/longitude: ``cos(latitude)`` (as before, the cell
        area over that of an equatorial cell on a sphere).
    """
    if not grid.is_lambert:
        weights = np.empty(grid.shape, dtype=np.float32)
        for j0 in range(0, grid.ny, _ROWS):
            rows = slice(j0, min(grid.ny, j0 + _ROWS))
            _, lat = grid.lonlat(rows)
            weights[rows] = np.clip(np.cos(np.radians(lat)), 0.0, 1.0)
        return weights
    return (cell_area_m2(grid) / abs(grid.dx * grid.dy)).astype(np.float32)


def cos_lat_bias(grid: Grid) -> dict[str, float]:
    """How far ``cos(latitude)`` weights are from true-area weights on a grid.

    Both weightings are normalised to sum to 1 over the grid; the bias of a point is
    the ratio of its ``cos(latitude)`` weight to its area weight.

    Returns
    -------
    dict
        ``max_over_min``: the largest bias over the smallest (the most over-weighted
        point relative to the most under-weighted); ``south_over_north``: the bias of the
        southern-most row over that of the northern-most (row means); ``south_half_share``
        and ``south_half_area_share``: the weight the southern half of the rows gets with
        ``cos(latitude)`` and its true share of the area; ``lat_min`` and ``lat_max``
        (degrees).
    """
    area = cell_area_m2(grid)
    lat = np.empty(grid.shape)
    for j0 in range(0, grid.ny, _ROWS):
        rows = slice(j0, min(grid.ny, j0 + _ROWS))
        lat[rows] = grid.lonlat(rows)[1]
    cos_w = np.cos(np.radians(lat))
    bias = (cos_w / cos_w.sum()) / (area / area.sum())
    south_first = float(lat[0].mean()) < float(lat[-1].mean())
    south, north = (bias[0], bias[-1]) if south_first else (bias[-1], bias[0])
    half = grid.ny // 2
    south_rows = slice(0, half) if south_first else slice(grid.ny - half, grid.ny)
    result = {
        "max_over_min": float(bias.max() / bias.min()),
        "south_over_north": float(south.mean() / north.mean()),
        "south_half_share": float(cos_w[south_rows].sum() / cos_w.sum()),
        "south_half_area_share": float(area[south_rows].sum() / area.sum()),
        "lat_min": float(lat.min()),
        "lat_max": float(lat.max()),
    }
    logger.debug("cos(lat) bias on %s: %s", grid.describe(), result)
    return result
