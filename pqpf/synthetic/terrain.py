"""Synthetic terrain: plateaus, ridge lines and fractal hills."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from pqpf.grid import Grid
from pqpf.synthetic.spectral import gaussian_random_field
from pqpf.synthetic.streams import STREAM_TERRAIN, random_stream

__all__ = ["synthetic_terrain", "terrain_gradient"]


def synthetic_terrain(grid: Grid, seed: int) -> NDArray[np.float32]:
    """Terrain height (m) on ``grid``: plateaus, ridge lines and fractal hills."""
    rng = random_stream(seed, STREAM_TERRAIN)
    dx_km = abs(grid.dx) / 1000.0
    ny, nx = grid.shape
    plateau = gaussian_random_field(grid.shape, dx_km, 4.5, 1500.0, rng)
    plateau = 1600.0 * np.clip((plateau - plateau.min()) / (np.ptp(plateau) + 1e-9) - 0.15, 0, None) / 0.85

    area_km2 = ny * nx * dx_km * dx_km
    n_ridges = 4 + int(round(area_km2 / 0.8e6))
    crest = np.zeros(grid.shape, dtype=bool)
    crest_h = np.zeros(grid.shape, dtype=np.float32)
    crest_w = np.zeros(grid.shape, dtype=np.float32)
    for _ in range(n_ridges):
        length_km = rng.uniform(250.0, 800.0)
        heading = math.radians(90.0 + rng.normal(0.0, 35.0))
        y, x = rng.uniform(0, ny), rng.uniform(0, nx)
        top_m = rng.uniform(1400.0, 3000.0)
        width_km = rng.uniform(12.0, 40.0)
        n_steps = int(length_km / (0.5 * dx_km))
        phase = rng.uniform(0, 2 * np.pi)
        for step in range(n_steps):
            frac = step / max(n_steps - 1, 1)
            taper = math.sin(math.pi * frac) ** 0.5
            j, i = int(round(y)), int(round(x))
            if 0 <= j < ny and 0 <= i < nx:
                height = top_m * taper * (0.75 + 0.25 * math.sin(6.0 * frac + phase))
                if height > crest_h[j, i]:
                    crest_h[j, i] = height
                    crest_w[j, i] = width_km
                    crest[j, i] = True
            heading += math.radians(rng.normal(0.0, 4.0))
            y += 0.5 * math.sin(heading)
            x += 0.5 * math.cos(heading)
    ridges = np.zeros(grid.shape, dtype=np.float32)
    if crest.any():
        dist_px, (cj, ci) = ndimage.distance_transform_edt(~crest, return_indices=True)
        dist_km = dist_px * dx_km
        rel = dist_km / crest_w[cj, ci]
        ridges = crest_h[cj, ci] * (0.6 * np.exp(-(rel**2)) + 0.4 * np.exp(-((rel / 3.0) ** 2)))
    hills = gaussian_random_field(grid.shape, dx_km, 3.2, 200.0, rng)
    rough = hills * (120.0 + 0.35 * ridges)
    height = plateau + ridges + rough
    height = np.where(height > 3000.0, 3000.0 + 600.0 * np.tanh((height - 3000.0) / 600.0), height)
    return np.clip(height, 0.0, None).astype(np.float32)


def terrain_gradient(height_m: NDArray[np.float32], grid: Grid, smooth_km: float
                     ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Gradient (m/m, along +x and +y of the grid) of the terrain smoothed by a Gaussian."""
    d_m = abs(grid.dx)
    smooth = ndimage.gaussian_filter(height_m.astype(np.float64), smooth_km * 1000.0 / d_m, mode="nearest")
    gy, gx = np.gradient(smooth, grid.dy, grid.dx)
    return gx.astype(np.float32), gy.astype(np.float32)
