"""Terrain fields on the model grid: height, smoothed height, local difference, slopes.

Arrays in, arrays out: :func:`compute_terrain_fields` makes, from a height field on a
grid, every variable of the terrain file (SPEC section 3; written and read by
:mod:`pqpf.io.terrain_file`, made by the stage :mod:`pqpf.stages.terrain`), all float32 on
``(y, x)``:

``height``, ``height_smoothed``, ``height_local_difference`` (m)
    The terrain height, its Gaussian smoothing (standard deviation in grid points from
    ``[terrain] smoothing_sigma_px``) and ``height - height_smoothed``.
``slope_x``, ``slope_y`` (m/m)
    Slopes along the grid's own axes per metre on the ground: ``slope_x`` is the change
    of height per metre of ground travelled in the direction of increasing column index,
    ``slope_y`` the same for increasing row index (positive when the height increases
    with the index). Map factor applied: a step of one grid spacing covers
    ``|dx| / k`` metres of ground.
``slope_east``, ``slope_north`` (m/m)
    The same gradient along true east and north, rotated by the convergence angle.
``*_smoothed``
    The four slopes of ``height_smoothed``.
``map_factor`` (1), ``convergence_angle`` (radian)
    The projection's scale factor ``k`` and the angle ``gamma`` by which true north is
    rotated counter-clockwise from the grid's +y axis (see
    :meth:`pqpf.grid.Grid.ground_metrics`).

Method
------
Gradients are centred differences in the interior and one-sided differences on the
edges (:func:`numpy.gradient` in index units), divided by the local ground length of one
grid step. With ``s_x = slope_x * sign(dx)`` and ``s_y = slope_y * sign(dy)`` (the
components along the projection's +x and +y axes; ``dx, dy > 0`` on Lambert grids, so
they equal the grid-axis slopes there), ::

    slope_east  =  s_x cos(gamma) + s_y sin(gamma)
    slope_north = -s_x sin(gamma) + s_y cos(gamma)

because true east and north are ``(cos g, sin g)`` and ``(-sin g, cos g)`` in
projection-axis components. A conformal projection keeps right angles, so this is an
exact change of basis of the ground gradient.

Smoothing is a Gaussian of standard deviation ``sigma`` grid points (kernel truncated at
4 sigma, as :func:`scipy.ndimage.gaussian_filter`) made *local-linear* near the edges:
along each axis in turn, the smoothed value is the intercept of a Gaussian-weighted
least-squares line through the points of the kernel that lie inside the domain,
``c0 = (S2 T0 - S1 T1) / (S0 S2 - S1^2)`` with ``S_m = sum w(d) d^m`` and
``T_m = sum w(d) d^m h(p + d)`` over in-domain offsets ``d`` (correlations with
``mode="constant"`` zero padding). More than ``4 sigma`` from an edge ``S1 = 0`` and
this is the ordinary Gaussian filter; near an edge it is a boundary-corrected Gaussian
(local linear regression, Fan and Gijbels 1996). Why not one of SciPy's boundary
modes: ``"reflect"``, ``"mirror"`` and ``"nearest"`` extend the field evenly or flat,
which pulls the smoothed slope normal to the edge towards zero within ~2 sigma of it
(on the edge row of a plane smoothed with sigma = 10 px, ``"reflect"`` keeps 8 % of the
true slope, ``"mirror"`` 4 %, ``"nearest"`` 52 %); ``"constant"`` drops the terrain to
a fill value (a cliff) and ``"wrap"`` glues opposite edges together. An odd (point)
reflection about the edge sample keeps planes but pins the smoothed field to the raw
edge value, so a single noisy edge sample would tilt the smoothed slopes next to it.
The local-linear fit reproduces any plane (indeed any bilinear surface) exactly up to
the edges, so it adds no edge slope, and it uses every in-domain point of the kernel.
Its kernels are mirror symmetric and the two axes are treated alike, so smoothing
commutes with flips and 90-degree rotations.

Slopes under flips and 90-degree rotations
------------------------------------------
Features use the grid-axis slopes because an augmented patch then transforms exactly.
With constant grid spacing, the slopes of the transformed height equal (bit for bit
for the raw height) the transformed slopes below; ``T`` is the same array operation
applied to the slope arrays. ``np.rot90(a, 1)`` turns the first axis towards the
second: the +row (y) direction becomes +column (x) and +column becomes -row, which is
counter-clockwise when row 0 is drawn at the top and clockwise when row 0 is drawn at
the bottom (south, as Lambert GRIB fields scan).

====================================  ==================  ==================
transform ``T`` of the height          new ``slope_x``      new ``slope_y``
====================================  ==================  ==================
``np.rot90(h, 1)``                     ``T(slope_y)``       ``-T(slope_x)``
``np.rot90(h, 2)``                     ``-T(slope_x)``      ``-T(slope_y)``
``np.rot90(h, 3)`` (= ``k=-1``)        ``-T(slope_y)``      ``T(slope_x)``
``np.flip(h, axis=1)`` (x flip)        ``-T(slope_x)``      ``T(slope_y)``
``np.flip(h, axis=0)`` (y flip)        ``T(slope_x)``       ``-T(slope_y)``
``h.T`` (transpose)                    ``T(slope_y)``       ``T(slope_x)``
====================================  ==================  ==================

Rotations compose: ``np.rot90(h, k)`` is ``k`` times the first row. East/north slopes
have no such rule (a rotated patch is no longer oriented to the earth).

References
----------
Snyder, J. P. (1987). Map projections: a working manual. USGS Professional Paper 1395,
chapter 15 (Lambert conformal conic: scale factor and convergence).

Fan, J. and Gijbels, I. (1996). Local polynomial modelling and its applications.
Chapman & Hall (boundary behaviour of local linear fits).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pqpf.grid import Grid

__all__ = ["TERRAIN_VARIABLES", "Terrain", "compute_terrain_fields"]

logger = logging.getLogger(__name__)

#: Names of the terrain variables, in file order.
TERRAIN_VARIABLES: tuple[str, ...] = (
    "height", "height_smoothed", "height_local_difference", "slope_x", "slope_y", "slope_east", "slope_north",
    "slope_x_smoothed", "slope_y_smoothed", "slope_east_smoothed", "slope_north_smoothed", "map_factor",
    "convergence_angle",
)

#: Gaussian kernel half-width in standard deviations (scipy's default).
_TRUNCATE = 4.0


# --------------------------------------------------------------------------------------
# array computations
# --------------------------------------------------------------------------------------


def _smooth_axis(values: NDArray[np.float64], sigma_px: float, axis: int) -> NDArray[np.float64]:
    """Local-linear Gaussian smoothing along one axis (see the module docstring)."""
    from scipy.ndimage import correlate1d

    radius = int(_TRUNCATE * sigma_px + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / sigma_px) ** 2)
    weights /= weights.sum()
    inside = np.ones(values.shape[axis])
    s0 = correlate1d(inside, weights, mode="constant")
    s1 = correlate1d(inside, offsets * weights, mode="constant")
    s2 = correlate1d(inside, offsets**2 * weights, mode="constant")
    t0 = correlate1d(values, weights, axis=axis, mode="constant")
    t1 = correlate1d(values, offsets * weights, axis=axis, mode="constant")
    shape = [1] * values.ndim
    shape[axis] = -1
    det = (s0 * s2 - s1**2).reshape(shape)
    return (s2.reshape(shape) * t0 - s1.reshape(shape) * t1) / det


def _smooth(height_m: NDArray[np.float64], sigma_px: float) -> NDArray[np.float64]:
    """Gaussian smoothing (sigma in grid points), local-linear at the edges."""
    if int(_TRUNCATE * sigma_px + 0.5) == 0:  # kernel of one point: nothing to do
        return height_m.copy()
    return _smooth_axis(_smooth_axis(height_m, sigma_px, 0), sigma_px, 1)


def _axis_slopes(
    height_m: NDArray[np.float64],
    step_x_m: NDArray[np.float64] | float,
    step_y_m: NDArray[np.float64] | float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Slopes along increasing column and row index: index gradient / ground step (m)."""
    d_row, d_col = np.gradient(height_m)
    return np.asarray(d_col / step_x_m, dtype=np.float64), np.asarray(d_row / step_y_m, dtype=np.float64)


def compute_terrain_fields(
    height_m: NDArray[np.floating], grid: Grid, smoothing_sigma_px: float
) -> dict[str, NDArray[np.float32]]:
    """Every terrain variable from a height field, vectorised.

    Parameters
    ----------
    height_m : array, shape (ny, nx)
        Terrain height (m) on ``grid``, in the grid's own array order; all finite.
    grid : Grid
        Lambert conformal (the GRAF case) or latitude/longitude; at least 2 x 2 points.
    smoothing_sigma_px : float
        Standard deviation of the Gaussian smoothing in grid points, >= 0 (0: none).

    Returns
    -------
    dict of str -> float32 array, shape (ny, nx)
        One entry per name in :data:`TERRAIN_VARIABLES` (see the module docstring for
        definitions, signs and the edge treatment). On a latitude/longitude grid
        ``map_factor`` is the plate carree scale along parallels, ``a / (N cos(lat))``.

    Raises
    ------
    ValueError
        Shape differs from the grid, non-finite heights, grid smaller than 2 x 2, or a
        negative or non-finite sigma.
    """
    h = np.asarray(height_m, dtype=np.float64)
    if h.shape != grid.shape:
        raise ValueError(f"height has shape {h.shape}, grid is {grid.shape}")
    if min(grid.shape) < 2:
        raise ValueError(f"need at least 2 x 2 points for slopes, got grid shape {grid.shape}")
    bad = int(np.count_nonzero(~np.isfinite(h)))
    if bad:
        raise ValueError(f"height has {bad} non-finite values; terrain must be complete")
    sigma = float(smoothing_sigma_px)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"smoothing_sigma_px must be finite and >= 0, got {smoothing_sigma_px!r}")

    step_x, step_y, gamma = grid.ground_metrics()
    step_x_abs, step_y_abs = np.abs(step_x), np.abs(step_y)
    sign_x, sign_y = math.copysign(1.0, grid.dx), math.copysign(1.0, grid.dy)
    cos_g, sin_g = np.cos(gamma), np.sin(gamma)

    h_smooth = _smooth(h, sigma)
    h32 = h.astype(np.float32)
    hs32 = h_smooth.astype(np.float32)
    out: dict[str, NDArray[np.float32]] = {
        "height": h32,
        "height_smoothed": hs32,
        # from the stored float32 values, so the file satisfies the identity exactly
        "height_local_difference": h32 - hs32,
    }
    for suffix, field in (("", h), ("_smoothed", h_smooth)):
        sx, sy = _axis_slopes(field, step_x_abs, step_y_abs)
        px, py = sign_x * sx, sign_y * sy  # along the projection's +x / +y axes
        out[f"slope_x{suffix}"] = sx.astype(np.float32)
        out[f"slope_y{suffix}"] = sy.astype(np.float32)
        out[f"slope_east{suffix}"] = (px * cos_g + py * sin_g).astype(np.float32)
        out[f"slope_north{suffix}"] = (py * cos_g - px * sin_g).astype(np.float32)
    if grid.is_lambert:
        proj_step_x = abs(grid.dx)
    else:
        proj_step_x = grid.earth_a * math.radians(abs(grid.dx))
    out["map_factor"] = (proj_step_x / step_x_abs).astype(np.float32)
    out["convergence_angle"] = np.asarray(gamma, dtype=np.float32)
    return {name: out[name] for name in TERRAIN_VARIABLES}


# --------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # fields hold arrays: compare them explicitly
class Terrain:
    """Terrain variables on a grid.

    Attributes
    ----------
    grid : Grid
    fields : dict of str -> float32 array, shape (ny, nx)
        Some or all of :data:`TERRAIN_VARIABLES`.
    smoothing_sigma_px : float
        Gaussian sigma (grid points) the smoothed fields were made with; NaN if unknown.
    """

    grid: Grid
    fields: dict[str, NDArray[np.float32]]
    smoothing_sigma_px: float = math.nan

    def __post_init__(self) -> None:
        for name, values in self.fields.items():
            if np.shape(values) != self.grid.shape:
                raise ValueError(
                    f"terrain field {name!r} has shape {np.shape(values)}, grid is {self.grid.shape}"
                )

    def __getitem__(self, name: str) -> NDArray[np.float32]:
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError(
                f"terrain has no field {name!r}; available: {', '.join(self.fields)}"
            ) from None

    def subset(self, j0: int, j1: int, i0: int, i1: int) -> Terrain:
        """The terrain of ``array[j0:j1, i0:i1]`` (fields are views, not recomputed)."""
        sub = self.grid.subgrid(j0, j1, i0, i1)
        fields = {name: values[j0:j1, i0:i1] for name, values in self.fields.items()}
        return Terrain(sub, fields, self.smoothing_sigma_px)
