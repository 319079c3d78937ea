"""Synthetic terrain: plateaus, ridge lines and fractal hills.

The height (m) is the sum of

* plateaus: a Gaussian random field of spectral exponent 4.5 and outer scale 1500 km,
  rescaled to [0, 1], its lowest 15 % set to 0, then stretched to 0..1600 m;
* ridges: ``4 + round(area / 800 000 km^2)`` crests, each a random walk of 250-800 km in
  half-grid-point steps, starting along the grid's y axis (north-south) +- 35 degrees, turning by
  N(0, 4 degrees) per step, with crest height ``H sqrt(sin(pi s)) (0.75 + 0.25 sin(6 s + phase))``
  along the crest (``s`` in [0, 1]; ``H`` 1400-3000 m) and the cross-section
  ``h_c (0.6 exp(-(d/W)^2) + 0.4 exp(-(d/3W)^2))`` about the nearest crest point (``d``
  the distance, ``W`` 12-40 km): a core and a three times wider base;
* hills: a Gaussian random field of spectral exponent 3.2 and outer scale 200 km, times
  ``120 m + 0.35 ridges``, so the hills grow rougher near the ridges;

then softly capped, ``3000 m + 600 m tanh((h - 3000 m) / 600 m)`` above 3000 m (so
below 3600 m), and clipped at 0. All draws come from one stream keyed by the seed.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from pqpf.grid import Grid
from pqpf.synthetic.spectral import gaussian_random_field
from pqpf.synthetic.streams import STREAM_TERRAIN, random_stream

__all__ = ["synthetic_terrain", "terrain_gradient"]

_M_PER_KM = 1000.0
# plateaus
_PLATEAU_BETA = 4.5
_PLATEAU_OUTER_KM = 1500.0
_PLATEAU_TOP_M = 1600.0
#: Share of the plateau field's range, from its minimum, that becomes flat ground at 0 m.
_PLATEAU_FLAT_FRACTION = 0.15
# ridges
_RIDGES_MIN = 4
#: One more ridge per this area (km^2).
_RIDGE_AREA_KM2 = 0.8e6
_RIDGE_LENGTH_KM = (250.0, 800.0)
#: Initial heading (degrees counter-clockwise from grid +x) and its standard deviation.
_RIDGE_HEADING_DEG = 90.0
_RIDGE_HEADING_SD_DEG = 35.0
#: Change of heading per step (standard deviation, degrees).
_RIDGE_TURN_SD_DEG = 4.0
#: Length of a step along the crest (model grid points).
_RIDGE_STEP_PX = 0.5
_RIDGE_TOP_M = (1400.0, 3000.0)
#: e-folding half-width ``W`` of the ridge core (km).
_RIDGE_WIDTH_KM = (12.0, 40.0)
#: Crest height varies as ``1 - depth + depth sin(wave s + phase)`` along the crest.
_CREST_WAVE_DEPTH = 0.25
_CREST_WAVE_RAD = 6.0
#: Cross-section: weight of the core; the base (weight 1 - core) is this many times wider.
_RIDGE_CORE_WEIGHT = 0.6
_RIDGE_BASE_WIDTH_FACTOR = 3.0
# hills
_HILLS_BETA = 3.2
_HILLS_OUTER_KM = 200.0
_HILLS_AMPLITUDE_M = 120.0
_HILLS_RIDGE_FACTOR = 0.35
# soft cap
_SOFT_CAP_START_M = 3000.0
_SOFT_CAP_RANGE_M = 600.0
#: Guard against a constant plateau field.
_MIN_RANGE = 1e-9


def synthetic_terrain(grid: Grid, seed: int) -> NDArray[np.float32]:
    """Terrain height (m) on ``grid``: plateaus, ridge lines and fractal hills.

    Parameters
    ----------
    grid : Grid
        A grid of (nearly) equal spacing in x and y (m), e.g. the extended model grid.
    seed : int
        Random seed of the archive.

    Returns
    -------
    float32 array, shape grid.shape
        Height (m), in [0, 3600); see the module docstring.
    """
    rng = random_stream(seed, STREAM_TERRAIN)
    dx_km = abs(grid.dx) / _M_PER_KM
    plateau = gaussian_random_field(grid.shape, dx_km, _PLATEAU_BETA, _PLATEAU_OUTER_KM, rng)
    rel = (plateau - plateau.min()) / (np.ptp(plateau) + _MIN_RANGE) - _PLATEAU_FLAT_FRACTION
    plateau = _PLATEAU_TOP_M * np.clip(rel, 0, None) / (1.0 - _PLATEAU_FLAT_FRACTION)
    ridges = _ridges(grid.shape, dx_km, rng)
    hills = gaussian_random_field(grid.shape, dx_km, _HILLS_BETA, _HILLS_OUTER_KM, rng)
    rough = hills * (_HILLS_AMPLITUDE_M + _HILLS_RIDGE_FACTOR * ridges)
    height = plateau + ridges + rough
    capped = _SOFT_CAP_START_M + _SOFT_CAP_RANGE_M * np.tanh((height - _SOFT_CAP_START_M) / _SOFT_CAP_RANGE_M)
    height = np.where(height > _SOFT_CAP_START_M, capped, height)
    return np.clip(height, 0.0, None).astype(np.float32)


def _ridges(shape: tuple[int, int], dx_km: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """Ridge heights (m): crests drawn as random walks, widened by a distance transform."""
    from scipy import ndimage  # deferred: --help stays instant

    ny, nx = shape
    area_km2 = ny * nx * dx_km * dx_km
    n_ridges = _RIDGES_MIN + int(round(area_km2 / _RIDGE_AREA_KM2))
    crest = np.zeros(shape, dtype=bool)
    crest_h = np.zeros(shape, dtype=np.float32)
    crest_w = np.zeros(shape, dtype=np.float32)
    for _ in range(n_ridges):
        length_km = rng.uniform(*_RIDGE_LENGTH_KM)
        heading = math.radians(_RIDGE_HEADING_DEG + rng.normal(0.0, _RIDGE_HEADING_SD_DEG))
        y, x = rng.uniform(0, ny), rng.uniform(0, nx)
        top_m = rng.uniform(*_RIDGE_TOP_M)
        width_km = rng.uniform(*_RIDGE_WIDTH_KM)
        n_steps = int(length_km / (_RIDGE_STEP_PX * dx_km))
        phase = rng.uniform(0, 2 * np.pi)
        for step in range(n_steps):
            frac = step / max(n_steps - 1, 1)
            taper = math.sin(math.pi * frac) ** 0.5
            j, i = int(round(y)), int(round(x))
            if 0 <= j < ny and 0 <= i < nx:
                wave = (1.0 - _CREST_WAVE_DEPTH) + _CREST_WAVE_DEPTH * math.sin(_CREST_WAVE_RAD * frac + phase)
                height = top_m * taper * wave
                if height > crest_h[j, i]:
                    crest_h[j, i] = height
                    crest_w[j, i] = width_km
                    crest[j, i] = True
            heading += math.radians(rng.normal(0.0, _RIDGE_TURN_SD_DEG))
            y += _RIDGE_STEP_PX * math.sin(heading)
            x += _RIDGE_STEP_PX * math.cos(heading)
    ridges = np.zeros(shape, dtype=np.float32)
    if crest.any():
        dist_px, (cj, ci) = ndimage.distance_transform_edt(~crest, return_indices=True)
        rel = dist_px * dx_km / crest_w[cj, ci]
        core = _RIDGE_CORE_WEIGHT * np.exp(-(rel**2))
        base = (1.0 - _RIDGE_CORE_WEIGHT) * np.exp(-((rel / _RIDGE_BASE_WIDTH_FACTOR) ** 2))
        ridges = crest_h[cj, ci] * (core + base)
    return ridges


def terrain_gradient(height_m: NDArray[np.float32], grid: Grid, smooth_km: float
                     ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Gradient of the terrain smoothed by a Gaussian.

    Parameters
    ----------
    height_m : float32 array, shape grid.shape
        Terrain height (m).
    grid : Grid
        Its grid (spacing in m).
    smooth_km : float
        Gaussian sigma (km) of the smoothing (boundary mode ``nearest``).

    Returns
    -------
    gx, gy : float32 arrays, shape grid.shape
        Slopes (m/m) along the grid's +x and +y axes (centred differences).
    """
    from scipy import ndimage  # deferred: --help stays instant

    d_m = abs(grid.dx)
    smooth = ndimage.gaussian_filter(height_m.astype(np.float64), smooth_km * _M_PER_KM / d_m, mode="nearest")
    gy, gx = np.gradient(smooth, grid.dy, grid.dx)
    return gx.astype(np.float32), gy.astype(np.float32)
