"""The MRMS-like grid of a named model grid, and the extended domain the weather lives on.

``demo`` (200 x 250 points at 4 km over Colorado, :func:`pqpf.grid.graf_like_grid`): its
MRMS grid is the 0.01 degree lattice (cell centres at x.xx5 degrees, first row north,
longitudes written 0..360) covering the model domain's bounding box plus 0.25 degree.
``conus`` (1308 x 1524 at 4 km): its MRMS grid is exactly the real CONUS grid (3500 x 7000
from 54.995N 230.005E). The weather is simulated on the model grid extended by a margin
that covers the MRMS grid (:class:`ExtendedDomain`), inside a periodic FFT domain at
least 1.5 times larger in each direction, so that the periodic wrap-around stays outside.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from pqpf.grid import LATLON, Grid, graf_like_grid

__all__ = ["ExtendedDomain", "extended_domain", "mrms_grid_for"]

#: The real MRMS CONUS grid and earth (GRIB2 shape of the earth 2).
_MRMS_EARTH = (6378160.0, 6356775.0)
_MRMS_CONUS = (3500, 7000, -129.995, 54.995)
_MRMS_STEP_DEG = 0.01
_MRMS_MARGIN_DEG = 0.25
#: Largest margin (model grid points) of the extended domain, and the points added to
#: the distance the MRMS grid reaches beyond the model grid.
_MAX_MARGIN_PX = 64
_MARGIN_EXTRA_PX = 3
#: Points sampled along each MRMS edge to find how far it reaches.
_EDGE_SAMPLES = 64
#: The periodic FFT domain is at least this many times the extended grid (each axis).
_FFT_PAD_FACTOR = 1.5


def mrms_grid_for(grid_name: str, model_grid: Grid | None = None) -> Grid:
    """The MRMS-like 0.01 degree latitude/longitude grid of a named model grid.

    Parameters
    ----------
    grid_name : str
        ``"conus"``: the real MRMS CONUS grid. Otherwise (``"demo"``): the 0.01 degree
        lattice (centres on x.xx5 degrees) covering the bounding box of ``model_grid``
        plus 0.25 degree, first row north, on the MRMS earth (GRIB2 shape 2).
    model_grid : Grid, optional
        The model grid (default: the named one).

    Returns
    -------
    Grid
        Latitude/longitude grid, ``dx = 0.01``, ``dy = -0.01`` degrees.
    """
    a, b = _MRMS_EARTH
    if grid_name == "conus":
        ny, nx, lon0, lat0 = _MRMS_CONUS
        return Grid(LATLON, ny, nx, lon0, lat0, _MRMS_STEP_DEG, -_MRMS_STEP_DEG, earth_a=a, earth_b=b)
    grid = model_grid if model_grid is not None else graf_like_grid(grid_name)
    rows, cols = np.arange(grid.ny), np.arange(grid.nx)
    jj = np.concatenate([rows, rows, np.zeros(grid.nx), np.full(grid.nx, grid.ny - 1)])  # the edges
    ii = np.concatenate([np.zeros(grid.ny), np.full(grid.ny, grid.nx - 1), cols, cols])
    lon, lat = grid.to_lonlat(grid.x0 + ii * grid.dx, grid.y0 + jj * grid.dy)
    step = _MRMS_STEP_DEG
    north = math.ceil((lat.max() + _MRMS_MARGIN_DEG - step / 2) / step) * step + step / 2
    south = math.floor((lat.min() - _MRMS_MARGIN_DEG - step / 2) / step) * step + step / 2
    west = math.floor((lon.min() - _MRMS_MARGIN_DEG - step / 2) / step) * step + step / 2
    east = math.ceil((lon.max() + _MRMS_MARGIN_DEG - step / 2) / step) * step + step / 2
    ny = int(round((north - south) / step)) + 1
    nx = int(round((east - west) / step)) + 1
    return Grid(LATLON, ny, nx, round(west, 3), round(north, 3), step, -step, earth_a=a, earth_b=b)


@dataclass(frozen=True)
class ExtendedDomain:
    """The model grid extended by ``margin`` points on each side, inside a periodic
    FFT domain of ``fft_shape``; element ``[margin, margin]`` is the model's ``[0, 0]``."""

    grid: Grid
    margin: int
    fft_shape: tuple[int, int]

    @property
    def inner(self) -> tuple[slice, slice]:
        """Index of the model grid within the extended grid."""
        m = self.margin
        return slice(m, self.grid.ny - m), slice(m, self.grid.nx - m)


def extended_domain(model: Grid, mrms: Grid, max_margin: int = _MAX_MARGIN_PX) -> ExtendedDomain:
    """The model grid extended to cover the MRMS grid, inside a periodic FFT domain.

    Parameters
    ----------
    model : Grid
        The model grid.
    mrms : Grid
        The MRMS grid to cover.
    max_margin : int
        Largest margin (points on each side).

    Returns
    -------
    ExtendedDomain
        Margin: the farthest the MRMS edges reach beyond the model grid (points, rounded
        up) plus 3, at most ``max_margin``. FFT shape: the next fast FFT length of 1.5
        times each extended axis.
    """
    from scipy.fft import next_fast_len  # deferred: --help stays instant

    rows = np.unique(np.r_[0, mrms.ny - 1, np.linspace(0, mrms.ny - 1, _EDGE_SAMPLES).astype(int)])
    cols = np.unique(np.r_[0, mrms.nx - 1, np.linspace(0, mrms.nx - 1, _EDGE_SAMPLES).astype(int)])
    jj, ii = np.meshgrid(rows, cols, indexing="ij")
    edge = (jj == 0) | (jj == mrms.ny - 1) | (ii == 0) | (ii == mrms.nx - 1)
    lon, lat = mrms.to_lonlat(mrms.x0 + ii[edge] * mrms.dx, mrms.y0 + jj[edge] * mrms.dy)
    fj, fi = model.fractional_index(lon, lat)
    outside = max(0.0, float(-fj.min()), float(fj.max() - (model.ny - 1)),
                  float(-fi.min()), float(fi.max() - (model.nx - 1)))
    margin = int(min(max_margin, math.ceil(outside) + _MARGIN_EXTRA_PX))
    ext = Grid(**{
        **dataclasses.asdict(model),
        "ny": model.ny + 2 * margin, "nx": model.nx + 2 * margin,
        "x0": model.x0 - margin * model.dx, "y0": model.y0 - margin * model.dy,
    })
    fft_shape = (next_fast_len(int(ext.ny * _FFT_PAD_FACTOR)), next_fast_len(int(ext.nx * _FFT_PAD_FACTOR)))
    return ExtendedDomain(ext, margin, fft_shape)
