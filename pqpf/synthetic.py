"""A synthetic GRAF + MRMS archive in the real file formats (``python -m pqpf.synthetic``).

The archive lets the whole pipeline run, and its skill numbers mean something, without
access to the real data::

    python -m pqpf.synthetic --out DIR --start 2024060100 --end 2024063023 --leads 1,6,12

writes into ``DIR``

* GRAF-like forecasts: GRIB2, Lambert conformal grid (:func:`pqpf.grid.graf_like_grid`),
  1-h accumulated precipitation ending at each lead, WINC names and directory layout
  (old ``hdo-graflr_conus`` archive for inits up to 2024040512, new one after);
* MRMS: gzipped GRIB2 ``MultiSensor_QPE_01H_Pass2_00.00`` (209/6/37) and
  ``RadarAccumulationQualityIndex_01H_00.00`` for every hour of the range, on a
  0.01 degree latitude/longitude grid in the public archive's layout, -3 outside radar
  coverage;
* the terrain height as GRIB2 orography;
* ``DIR/config.ini`` with every ``[paths]`` key inside ``DIR``, written relative to
  ``DIR`` so the archive can be moved.

Grids
-----
``demo``: 200 x 250 points at 4 km over Colorado; its MRMS grid is the 0.01 degree
lattice (cell centres at x.xx5 degrees, first row north, longitudes written 0..360)
covering the model domain's bounding box plus 0.25 degree. ``conus``: 1308 x 1524 at
4 km; its MRMS grid is exactly the real CONUS grid (3500 x 7000 from 54.995N 230.005E).
The weather is simulated on the model grid extended by a margin that covers the MRMS
grid (``_ExtendedDomain``), inside a larger periodic FFT domain.

Weather model (all numbers in :class:`WeatherParams`)
----------------------------------------------------
*Truth.* A latent Gaussian field ``z`` (unit variance) with power spectrum
``S(k) ~ (k^2 + k0^2)^(-beta/2)``, ``beta = 3.4``, ``k0 = 2 pi / 500 km``, on a periodic
domain 1.5 times the simulated one. Every hour each Fourier mode is advected by the
current flow (an exact phase shift) and follows an AR(1) with lag-1 correlation
``exp(-1 h / T(L))``, lifetime ``T(L) = 2.5 h * L / 100 km`` clipped to 0.75..48 h: small
scales decorrelate fast, large ones persist. Rain falls where ``z + 0.25 s > q``: ``q`` is
the Gaussian quantile of the wet-area fraction ``f`` of the current regime and ``s`` the
orographic forcing ``tanh(w / 0.2 m s-1)`` of the upslope wind ``w = V . grad(h)`` on
terrain smoothed over 12 km (positive on windward slopes, negative in the lee). The
amount at a wet point maps the conditional exceedance probability of ``z`` to a
generalised Pareto distribution (shape 0.2, scale ``sigma``), times ``exp(0.3 s)``,
capped at 120 mm. Measured over 16 days on the demo grid (four seeds, June and
January): hourly wet (>= 0.1 mm) amounts have a median of 0.5-1.1 mm, 70-90 % are below
2 mm, the 99th percentile is 9-11 times the median and the maximum 20-80 mm; the mean
on windward slopes (``s > 0.5``) is 3-4 times that in the lee (``s < -0.5``); the
spectral slope of the hourly amounts (radially averaged power spectral density
``|F(k)|^2``, wavelengths 16-200 km) is -2.75 to -3.0, within the -2.5 to -3 reported
for rain fields.

*Regimes.* Every UTC day has four independent N(0,1) draws, smoothed over five days
(weights 1,2,3,2,1) and interpolated in time, that set the wet fraction
``f = 0.32 u^2.2`` (``u`` their normal CDF: many dry days, up to ~30 % wet area), the
flow speed (12 +- 5 m/s, 3..30) and direction (towards grid east +- 45 degrees) and the
amount scale ``sigma`` (0.6 mm in winter to 1.3 mm in summer, times ``exp(0.35 eta)``).
A diurnal cycle multiplies ``f`` by ``1 + a cos(2 pi (LST - 17 h) / 24 h)``, ``a`` = 0.2
in winter to 0.6 in summer, with local solar time from each point's longitude.

*Terrain.* Plateaus (a random field with spectral exponent 4.5, 0-1600 m) plus ridge
lines (``4 + area / 800 000 km2`` random curved crests of 250-800 km, mostly north-south,
1400-3000 m high, 12-40 km e-folding width on a three times wider base) plus fractal
hills (exponent 3.2) whose amplitude grows near the ridges; softly capped near 3600 m.

*MRMS.* Radar sites on a jittered lattice (300 km apart for ``demo``, 270 km for
``conus``), moved to the highest ground within 12 km, 30 m above it. Along each radial
the quality is ``(1 - blocked fraction) exp(-(beam height above ground / 4 km)^2)``
for a 0.5 degree beam, 0.95 degree wide, with the 4/3 earth radius, the blocked fraction
coming from the terrain horizon seen from the radar; the quality index is the best
radar's value and 0 beyond 230 km (a quarter to a third of the demo model domain is below
0.5). The QPE is the truth interpolated bilinearly to the 0.01 degree grid, times
``1 - 0.35 (1 - Q)`` (an underestimate where quality is poor) and a log-normal
multiplicative noise of standard deviation ``0.1 + 0.4 (1 - Q)``, correlated over a few
km; -3 beyond radar range. The quality index does not change with time.

*GRAF.* For init ``I`` and lead ``L`` (valid ``V``): the truth's latent field at ``V``,
shifted by a position error (``5 + 2.5 L`` km per component; the direction persists
within a run) and a timing error (``0.3 + 0.1 L`` h, as a shift along the flow and the
regime at the shifted time; the diurnal cycle runs 1 h early), with every Fourier mode
mixed with an independent per-init field moving with the flow, weight
``sqrt(1 - rho^2)``, ``rho = exp(-(L + 0.5 h) / (3 T(L)))`` (missed and false cells,
small scales first). Orographic forcing at half the truth's, on terrain smoothed over
32 km; drizzle (up to 0.4 mm) where the latent field is just below the rain threshold
(too much light rain); amounts compressed as ``R (1 + R / 10 mm)^-0.35`` (too little
heavy rain); Gaussian smoothing of ``0.6 + 0.08 L`` grid points. Measured as above: the
gridpoint correlation with the truth is 0.55-0.77 at lead 1 and 0.07-0.38 at lead 12;
the forecast has 1.3-1.65 times the truth's frequency of >= 0.1 mm and 0.4-0.7 times its
frequency of >= 5 mm; its windward/lee ratio is about half the truth's.

Determinism: all random numbers come from :class:`numpy.random.SeedSequence` keyed by
the seed and absolute times (regime days, hours, inits), and the truth state starts at
``start`` from a draw keyed by ``start``. The archive is therefore a function of
``(start, seed)``: the same arguments give byte-identical files (with the same numpy
and ecCodes), and a run with the same start and a later end repeats every file of the
shorter run.

Speed (2 shared cores): ``demo`` over 30 days (1440 MRMS files, 60 inits x 3 leads)
takes about 40 s (31 s of CPU) and 210 MB; ``conus`` takes about 10 s to set up
(radar quality and interpolation weights, 1.9 GB peak memory) and 2.5 s per hour
(QPE files of ~3 MB, quality files of 4.4 MB, GRAF files of 1 MB). Packing: see
:mod:`pqpf.io.grib_write`.

Config written (the choices): ``[paths]`` relative to ``DIR``
(``graf_dir = graf/hdo-graf_conus``, ``graf_dir_old = graf/hdo-graflr_conus``,
``graf_laptop_dir = graf`` so the laptop layout equals the archive, terrain GRIB in
``static/``, terrain netCDF in ``terrain/``, ``mrms_raw``, ``mrms_remapped``, ``patches``,
``trainings``, ``probs``, ``plots``); ``[graf] lead_max_h`` = max(48, largest lead);
``[terrain] smoothing_sigma_px = 8`` (32 km at 4 km spacing); ``[training]
hparams_name = tiny``; ``[patches] ndays_train = min(60, days in range - 3)`` (at least
1), ``previous_year`` only when the range spans more than 13 months, ``cycles`` = the
cycles generated; an archive shorter than 90 days gets 2-day split blocks and a
0.6/0.2/0.2 split so that wet and dry spells reach every split.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pqpf.config import (
    Config, GrafConfig, PatchesConfig, TerrainConfig, TrainingConfig, config_to_ini, load_config,
    paths_below,
)
from pqpf.dates import format_yyyymmddhh, hour_range
from pqpf.errors import UsageError
from pqpf.grid import LATLON, Grid, graf_like_grid
from pqpf.io.atomic import atomic_write_bytes, atomic_write_text
from pqpf.layout import graf_archive_path, mrms_raw_path
from pqpf.progress import Progress

__all__ = ["generate_archive", "main", "mrms_grid_for", "WeatherParams"]

logger = logging.getLogger(__name__)

#: The real MRMS CONUS grid and earth (GRIB2 shape of the earth 2).
_MRMS_EARTH = (6378160.0, 6356775.0)
_MRMS_CONUS = (3500, 7000, -129.995, 54.995)
_MRMS_STEP_DEG = 0.01
_MRMS_MARGIN_DEG = 0.25
_EARTH_RADIUS_KM = 6371.0
#: Random-stream keys count hours and days from here, so that they are non-negative.
_TIME_ZERO = dt.datetime(1800, 1, 1)

# Independent random streams (first key after the seed).
_S_TERRAIN, _S_RADAR, _S_REGIME, _S_START, _S_HOUR, _S_FCST, _S_FCST_LEAD, _S_NOISE = range(1, 9)


@dataclass(frozen=True)
class WeatherParams:
    """Parameters of the synthetic weather (see the module docstring for the model)."""

    # latent field
    spectral_beta: float = 3.4
    outer_scale_km: float = 500.0
    lifetime_ref_h: float = 2.5
    lifetime_ref_km: float = 100.0
    lifetime_min_h: float = 0.75
    lifetime_max_h: float = 48.0
    # amounts
    gpd_shape: float = 0.2
    max_amount_mm: float = 120.0
    # regimes
    wet_fraction_max: float = 0.32
    wet_fraction_power: float = 1.5
    flow_speed_ms: float = 12.0
    flow_speed_sd_ms: float = 5.0
    flow_direction_sd_deg: float = 45.0
    scale_winter_mm: float = 0.6
    scale_summer_mm: float = 1.3
    scale_day_sd: float = 0.35
    diurnal_winter: float = 0.2
    diurnal_summer: float = 0.6
    diurnal_peak_lst_h: float = 17.0
    # orography
    oro_smooth_km: float = 12.0
    oro_w0_ms: float = 0.2
    oro_threshold_shift: float = 0.25
    oro_amount_factor: float = 0.3
    # radar
    radar_spacing_demo_km: float = 300.0
    radar_spacing_conus_km: float = 270.0
    radar_range_km: float = 230.0
    beam_elevation_deg: float = 0.5
    beam_width_deg: float = 0.95
    beam_height_scale_m: float = 4000.0
    qpe_underestimate: float = 0.35
    qpe_noise_sd: float = 0.1
    qpe_noise_sd_poor: float = 0.4
    # forecast errors
    position_error_km: float = 5.0
    position_error_km_per_h: float = 2.5
    timing_error_h: float = 0.3
    timing_error_h_per_h: float = 0.1
    diurnal_timing_bias_h: float = -1.0
    predictability_factor: float = 3.0
    predictability_offset_h: float = 0.5
    fcst_oro_fraction: float = 0.5
    fcst_oro_smooth_km: float = 32.0
    drizzle_band: float = 0.35
    drizzle_max_mm: float = 0.4
    heavy_half_mm: float = 10.0
    heavy_power: float = 0.35
    smooth_px: float = 0.6
    smooth_px_per_h: float = 0.08


# --------------------------------------------------------------------------------------
# random streams and spectral fields
# --------------------------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    """A generator keyed by the seed and non-negative integers (times as hour counts)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) % 2**63, *key]))


def _hour_key(when: dt.datetime) -> int:
    """Whole hours since :data:`_TIME_ZERO`: a non-negative key for any plausible date."""
    return int((when - _TIME_ZERO).total_seconds() // 3600)


class _Spectral:
    """Fourier-space operations on a periodic ``(ny, nx)`` domain of spacing ``dx_km``."""

    def __init__(self, ny: int, nx: int, dx_km: float, params: WeatherParams) -> None:
        self.shape = (ny, nx)
        self.n = ny * nx
        ky = 2.0 * np.pi * np.fft.fftfreq(ny, d=dx_km)[:, None]
        kx = 2.0 * np.pi * np.fft.rfftfreq(nx, d=dx_km)[None, :]
        self.kx = kx.astype(np.float64)
        self.ky = ky.astype(np.float64)
        k = np.hypot(kx, ky)
        k0 = 2.0 * np.pi / params.outer_scale_km
        amp = (k * k + k0 * k0) ** (-params.spectral_beta / 4.0)
        # Hermitian weight of each rfft column in the full spectrum.
        weight = np.full(amp.shape[1], 2.0)
        weight[0] = 1.0
        if nx % 2 == 0:
            weight[-1] = 1.0
        # irfft2 of amp * rfft2(white) has variance sum_full(amp^2) / n.
        amp /= math.sqrt(float((weight[None, :] * amp * amp).sum()) / self.n)
        self.amp = amp.astype(np.float32)
        with np.errstate(divide="ignore"):
            scale_km = np.where(k > 0, 2.0 * np.pi / k, np.inf)
        lifetime = params.lifetime_ref_h * scale_km / params.lifetime_ref_km
        self.lifetime_h = np.clip(lifetime, params.lifetime_min_h, params.lifetime_max_h)
        phi = np.exp(-1.0 / self.lifetime_h)
        self.phi = phi.astype(np.float32)
        self.innovation = (np.sqrt(1.0 - phi * phi) * amp).astype(np.float32)

    def white(self, rng: np.random.Generator) -> NDArray[np.complex64]:
        """Spectrum of unit white noise (E|W_k|^2 = n)."""
        return np.fft.rfft2(rng.standard_normal(self.shape, dtype=np.float32)).astype(np.complex64)

    def phase(self, dx_km: float, dy_km: float) -> NDArray[np.complex64]:
        """Factor that shifts a field by ``(dx, dy)`` km (periodic, exact)."""
        arg = self.kx * dx_km + self.ky * dy_km
        return np.exp(-1j * arg).astype(np.complex64)

    def to_real(self, spectrum: NDArray[np.complex64]) -> NDArray[np.float32]:
        return np.fft.irfft2(spectrum, s=self.shape).astype(np.float32)


def _random_field(shape: tuple[int, int], dx_km: float, beta: float, outer_km: float,
                  rng: np.random.Generator) -> NDArray[np.float32]:
    """A periodic Gaussian field with spectrum ``(k^2 + k0^2)^(-beta/2)``, unit variance."""
    params = dataclasses.replace(WeatherParams(), spectral_beta=beta, outer_scale_km=outer_km)
    spec = _Spectral(shape[0], shape[1], dx_km, params)
    field = spec.to_real(spec.amp * spec.white(rng))
    return (field - field.mean()) / max(float(field.std()), 1e-12)


# --------------------------------------------------------------------------------------
# grids
# --------------------------------------------------------------------------------------


def mrms_grid_for(grid_name: str, model_grid: Grid | None = None) -> Grid:
    """The MRMS-like 0.01 degree latitude/longitude grid of a named model grid.

    ``conus``: the real MRMS CONUS grid. Otherwise: the 0.01 degree lattice (centres on
    x.xx5 degrees) covering the model grid's bounding box plus 0.25 degree, first row
    north, on the MRMS earth.
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
class _ExtendedDomain:
    """The model grid extended by ``margin`` points on each side, inside a periodic
    FFT domain of ``fft_shape``; element ``[margin, margin]`` is the model's ``[0, 0]``."""

    grid: Grid
    margin: int
    fft_shape: tuple[int, int]

    @property
    def inner(self) -> tuple[slice, slice]:
        m = self.margin
        return slice(m, self.grid.ny - m), slice(m, self.grid.nx - m)


def _extended_domain(model: Grid, mrms: Grid, max_margin: int = 64) -> _ExtendedDomain:
    """Enough margin to cover the MRMS grid (at most ``max_margin``), FFT size ~1.5x."""
    from scipy.fft import next_fast_len

    rows = np.unique(np.r_[0, mrms.ny - 1, np.linspace(0, mrms.ny - 1, 64).astype(int)])
    cols = np.unique(np.r_[0, mrms.nx - 1, np.linspace(0, mrms.nx - 1, 64).astype(int)])
    jj, ii = np.meshgrid(rows, cols, indexing="ij")
    edge = (jj == 0) | (jj == mrms.ny - 1) | (ii == 0) | (ii == mrms.nx - 1)
    lon, lat = mrms.to_lonlat(mrms.x0 + ii[edge] * mrms.dx, mrms.y0 + jj[edge] * mrms.dy)
    fj, fi = model.fractional_index(lon, lat)
    outside = max(0.0, float(-fj.min()), float(fj.max() - (model.ny - 1)),
                  float(-fi.min()), float(fi.max() - (model.nx - 1)))
    margin = int(min(max_margin, math.ceil(outside) + 3))
    ext = Grid(**{
        **dataclasses.asdict(model),
        "ny": model.ny + 2 * margin, "nx": model.nx + 2 * margin,
        "x0": model.x0 - margin * model.dx, "y0": model.y0 - margin * model.dy,
    })
    fft_shape = (next_fast_len(int(ext.ny * 1.5)), next_fast_len(int(ext.nx * 1.5)))
    return _ExtendedDomain(ext, margin, fft_shape)


# --------------------------------------------------------------------------------------
# terrain
# --------------------------------------------------------------------------------------


def _synthetic_terrain(grid: Grid, seed: int) -> NDArray[np.float32]:
    """Terrain height (m) on ``grid``: plateaus, ridge lines and fractal hills."""
    from scipy import ndimage

    rng = _rng(seed, _S_TERRAIN)
    dx_km = abs(grid.dx) / 1000.0
    ny, nx = grid.shape
    plateau = _random_field(grid.shape, dx_km, 4.5, 1500.0, rng)
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
    hills = _random_field(grid.shape, dx_km, 3.2, 200.0, rng)
    rough = hills * (120.0 + 0.35 * ridges)
    height = plateau + ridges + rough
    height = np.where(height > 3000.0, 3000.0 + 600.0 * np.tanh((height - 3000.0) / 600.0), height)
    return np.clip(height, 0.0, None).astype(np.float32)


def _terrain_gradient(height_m: NDArray[np.float32], grid: Grid, smooth_km: float
                      ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Gradient (m/m, along +x and +y of the grid) of the terrain smoothed by a Gaussian."""
    from scipy import ndimage

    d_m = abs(grid.dx)
    smooth = ndimage.gaussian_filter(height_m.astype(np.float64), smooth_km * 1000.0 / d_m, mode="nearest")
    gy, gx = np.gradient(smooth, grid.dy, grid.dx)
    return gx.astype(np.float32), gy.astype(np.float32)


# --------------------------------------------------------------------------------------
# radar quality
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RadarQuality:
    """Quality index on the MRMS grid (float32, 0 outside coverage) and, optionally,
    diagnostics: distance to the nearest radar (km) and the beam blockage of the radar
    that gives the best quality."""

    quality: NDArray[np.float32]
    sites_lonlat: NDArray[np.float64]
    nearest_km: NDArray[np.float32] | None = None
    blockage: NDArray[np.float32] | None = None


def _radar_sites(mrms: Grid, spacing_km: float, seed: int) -> NDArray[np.float64]:
    """Jittered lattice of radar sites (lon, lat) over the MRMS grid's extent."""
    rng = _rng(seed, _S_RADAR)
    lat_n, lat_s = mrms.y0, mrms.y0 + (mrms.ny - 1) * mrms.dy
    lon_w, lon_e = mrms.x0, mrms.x0 + (mrms.nx - 1) * mrms.dx
    dlat = spacing_km / 111.2
    sites = []
    lat = min(lat_n, lat_s) + rng.uniform(0.2, 0.8) * dlat
    while lat < max(lat_n, lat_s):
        dlon = dlat / max(math.cos(math.radians(lat)), 0.2)
        lon = lon_w + rng.uniform(0.2, 0.8) * dlon
        while lon < lon_e:
            sites.append((lon + rng.uniform(-0.3, 0.3) * dlon, lat + rng.uniform(-0.3, 0.3) * dlat))
            lon += dlon
        lat += dlat
    return np.asarray(sites, dtype=np.float64).reshape(-1, 2)


def _site_on_hills(sites: NDArray[np.float64], ext: Grid, terrain_ext: NDArray[np.float32],
                   radius_km: float = 12.0) -> NDArray[np.float64]:
    """Move every site to the highest terrain within ``radius_km`` (radars are sited for
    a clear view); sites outside the terrain grid stay where they are."""
    out = sites.copy()
    if sites.size == 0:
        return out
    r_px = max(1, int(round(radius_km * 1000.0 / abs(ext.dx))))
    fj, fi = ext.fractional_index(sites[:, 0], sites[:, 1])
    for n, (j, i) in enumerate(zip(np.rint(fj).astype(int), np.rint(fi).astype(int))):
        j0, j1 = max(0, j - r_px), min(ext.ny, j + r_px + 1)
        i0, i1 = max(0, i - r_px), min(ext.nx, i + r_px + 1)
        if j1 <= j0 or i1 <= i0:
            continue
        jj, ii = np.unravel_index(int(np.argmax(terrain_ext[j0:j1, i0:i1])), (j1 - j0, i1 - i0))
        lon, lat = ext.to_lonlat(np.array(ext.x0 + (i0 + ii) * ext.dx), np.array(ext.y0 + (j0 + jj) * ext.dy))
        out[n] = (float(lon), float(lat))
    return out


def _radar_quality(mrms: Grid, ext: Grid, terrain_ext: NDArray[np.float32], sites: NDArray[np.float64],
                   params: WeatherParams, diagnostics: bool = False) -> _RadarQuality:
    """Best-radar quality index with range and beam blockage (see module docstring)."""
    from scipy import ndimage

    n_az, dr_km = 360, 2.0
    r_km = np.arange(1, int(params.radar_range_km / dr_km) + 2) * dr_km
    az = np.radians(np.arange(n_az) * (360.0 / n_az))
    ke_r_km = 4.0 / 3.0 * _EARTH_RADIUS_KM
    theta = math.radians(params.beam_elevation_deg)
    half_bw = math.radians(params.beam_width_deg) / 2.0
    beam_km = np.sqrt(r_km**2 + ke_r_km**2 + 2 * r_km * ke_r_km * math.sin(theta)) - ke_r_km
    curvature_km = r_km**2 / (2.0 * ke_r_km)

    quality = np.zeros(mrms.shape, dtype=np.float32)
    nearest = np.full(mrms.shape, np.inf, dtype=np.float32) if diagnostics else None
    blockage = np.zeros(mrms.shape, dtype=np.float32) if diagnostics else None
    for lon_r, lat_r in sites:
        coslat = math.cos(math.radians(lat_r))
        # terrain along the radials (flat-earth offsets are accurate enough within 230 km)
        plat = lat_r + np.degrees(np.cos(az)[:, None] * r_km[None, :] / _EARTH_RADIUS_KM)
        plon = lon_r + np.degrees(np.sin(az)[:, None] * r_km[None, :] / (_EARTH_RADIUS_KM * coslat))
        fj, fi = ext.fractional_index(plon.ravel(), plat.ravel())
        h_polar = ndimage.map_coordinates(terrain_ext, [fj, fi], order=1, mode="constant", cval=0.0)
        h_polar = h_polar.reshape(plat.shape).astype(np.float64) / 1000.0
        sj, si = ext.fractional_index(np.array([lon_r]), np.array([lat_r]))
        h_site = float(ndimage.map_coordinates(terrain_ext, [sj, si], order=1, mode="nearest")[0])
        h_site = h_site / 1000.0 + 0.03  # km, antenna 30 m above the ground
        elev = np.arctan2(h_polar - h_site - curvature_km[None, :], r_km[None, :])
        horizon = np.maximum.accumulate(elev, axis=1)
        horizon = np.concatenate([np.full((n_az, 1), -np.inf), horizon[:, :-1]], axis=1)
        blocked = np.clip((horizon - (theta - half_bw)) / (2 * half_bw), 0.0, 1.0)
        agl_km = np.clip(h_site + beam_km[None, :] - h_polar, 0.0, None)
        q_polar = (1.0 - blocked) * np.exp(-((agl_km * 1000.0 / params.beam_height_scale_m) ** 2))
        q_polar = np.concatenate([q_polar, q_polar[:1]], axis=0)  # wrap in azimuth
        b_polar = np.concatenate([blocked, blocked[:1]], axis=0)

        # MRMS points within range
        rng_deg = params.radar_range_km / 111.2
        j0 = max(0, int((lat_r + rng_deg - mrms.y0) / mrms.dy) - 1)
        j1 = min(mrms.ny, int((lat_r - rng_deg - mrms.y0) / mrms.dy) + 2)
        i0 = max(0, int((lon_r - rng_deg / coslat - mrms.x0) / mrms.dx) - 1)
        i1 = min(mrms.nx, int((lon_r + rng_deg / coslat - mrms.x0) / mrms.dx) + 2)
        if j1 <= j0 or i1 <= i0:
            continue
        lats = mrms.y0 + np.arange(j0, j1) * mrms.dy
        lons = mrms.x0 + np.arange(i0, i1) * mrms.dx
        dy_km = np.radians(lats - lat_r)[:, None] * _EARTH_RADIUS_KM
        dx_km = np.radians(lons - lon_r)[None, :] * _EARTH_RADIUS_KM * np.cos(np.radians(lats))[:, None]
        dist = np.hypot(dx_km, dy_km)
        inside = dist <= params.radar_range_km
        az_idx = (np.degrees(np.arctan2(dx_km, dy_km)) % 360.0) / (360.0 / n_az)
        r_idx = dist / dr_km - 1.0
        coords = [az_idx[inside], np.clip(r_idx[inside], 0.0, None)]
        q_block = quality[j0:j1, i0:i1]
        q_new = np.zeros(dist.shape, dtype=np.float32)
        q_new[inside] = ndimage.map_coordinates(q_polar, coords, order=1, mode="nearest")
        better = q_new > q_block
        q_block[better] = q_new[better]
        if nearest is not None and blockage is not None:
            n_block = nearest[j0:j1, i0:i1]
            np.minimum(n_block, dist.astype(np.float32), out=n_block)
            b_new = np.zeros(dist.shape, dtype=np.float32)
            b_new[inside] = ndimage.map_coordinates(b_polar, coords, order=1, mode="nearest")
            blockage[j0:j1, i0:i1][better] = b_new[better]
    return _RadarQuality(quality, sites, nearest, blockage)


# --------------------------------------------------------------------------------------
# regimes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Regime:
    wet_fraction: float
    flow_u_ms: float
    flow_v_ms: float
    scale_mm: float
    diurnal_amplitude: float


_DAY_WEIGHTS = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / math.sqrt(19.0)
#: Correlation of the smoothed draws of consecutive days.
_DAY_CORRELATION = float(_DAY_WEIGHTS[:-1] @ _DAY_WEIGHTS[1:])


@functools.lru_cache(maxsize=256)
def _day_draws(seed: int, day: int) -> tuple[float, ...]:
    """Four N(0,1) draws of one day, smoothed over five days (still unit variance)."""
    draws = np.array([_rng(seed, _S_REGIME, day + k).standard_normal(4) for k in range(-2, 3)])
    return tuple(float(v) for v in _DAY_WEIGHTS @ draws)


def _regime_at(seed: int, when: dt.datetime, params: WeatherParams) -> _Regime:
    """Weather regime at a (possibly fractional-hour) time, interpolated between days."""
    from scipy.special import ndtr

    day_f = (when - _TIME_ZERO).total_seconds() / 86400.0
    day = int(math.floor(day_f))
    w = day_f - day
    w = 0.5 - 0.5 * math.cos(math.pi * w)
    eta = (1.0 - w) * np.array(_day_draws(seed, day)) + w * np.array(_day_draws(seed, day + 1))
    eta /= math.sqrt((1.0 - w) ** 2 + w**2 + 2.0 * w * (1.0 - w) * _DAY_CORRELATION)  # unit variance
    u = float(ndtr(eta[0]))
    wet = params.wet_fraction_max * u ** params.wet_fraction_power
    speed = float(np.clip(params.flow_speed_ms + params.flow_speed_sd_ms * eta[1], 3.0, 30.0))
    direction = math.radians(params.flow_direction_sd_deg * eta[2])
    doy = when.timetuple().tm_yday + when.hour / 24.0
    summer = 0.5 + 0.5 * math.cos(2.0 * math.pi * (doy - 200.0) / 365.25)
    scale = (params.scale_winter_mm + (params.scale_summer_mm - params.scale_winter_mm) * summer) \
        * math.exp(params.scale_day_sd * eta[3])
    diurnal = params.diurnal_winter + (params.diurnal_summer - params.diurnal_winter) * summer
    return _Regime(wet, speed * math.cos(direction), speed * math.sin(direction), scale, diurnal)


# --------------------------------------------------------------------------------------
# the weather
# --------------------------------------------------------------------------------------


def _gpd_amounts(z: NDArray[np.float32], q: NDArray[np.float32], scale_mm: float,
                 params: WeatherParams) -> NDArray[np.float32]:
    """Amounts (mm) where ``z > q``: the conditional exceedance probability of the
    standard normal ``z`` mapped to a generalised Pareto distribution; 0 elsewhere."""
    from scipy.special import ndtr

    out = np.zeros(z.shape, dtype=np.float32)
    wet = z > q
    if not wet.any():
        return out
    p_exceed = ndtr(-z[wet].astype(np.float64)) / np.maximum(ndtr(-q[wet].astype(np.float64)), 1e-300)
    xi = params.gpd_shape
    amount = scale_mm * (np.clip(p_exceed, 1e-12, 1.0) ** (-xi) - 1.0) / xi
    out[wet] = np.minimum(amount, params.max_amount_mm)  # capped again after orography
    return out


class _Weather:
    """The synthetic atmosphere on the extended domain: truth, forecasts, observations."""

    def __init__(self, model: Grid, mrms: Grid, grid_name: str, seed: int,
                 params: WeatherParams | None = None) -> None:
        self.params = params or WeatherParams()
        self.seed = int(seed)
        self.model = model
        self.mrms = mrms
        self.dom = _extended_domain(model, mrms)
        ext = self.dom.grid
        self.dx_km = abs(ext.dx) / 1000.0
        self.spec = _Spectral(*self.dom.fft_shape, self.dx_km, self.params)
        self.terrain_ext = _synthetic_terrain(ext, seed)
        self.grad_truth = _terrain_gradient(self.terrain_ext, ext, self.params.oro_smooth_km)
        self.grad_fcst = _terrain_gradient(self.terrain_ext, ext, self.params.fcst_oro_smooth_km)
        lon, _ = ext.lonlat()
        self.lst_offset_h = (lon / 15.0).astype(np.float32)
        self.state: NDArray[np.complex64] | None = None
        self.time: dt.datetime | None = None
        spacing = (self.params.radar_spacing_conus_km if grid_name == "conus"
                   else self.params.radar_spacing_demo_km)
        self.sites = _site_on_hills(_radar_sites(mrms, spacing, seed), ext, self.terrain_ext)
        self._obs: _Observer | None = None

    @property
    def terrain(self) -> NDArray[np.float32]:
        """Terrain height (m) on the model grid."""
        return self.terrain_ext[self.dom.inner]

    def observer(self) -> "_Observer":
        if self._obs is None:
            rq = _radar_quality(self.mrms, self.dom.grid, self.terrain_ext, self.sites, self.params)
            self._obs = _Observer(self.mrms, self.dom.grid, rq.quality, self.seed, self.params)
        return self._obs

    # ---- truth ---------------------------------------------------------------------

    def start(self, when: dt.datetime) -> None:
        """Stationary initial state at ``when`` (keyed by it)."""
        rng = _rng(self.seed, _S_START, _hour_key(when))
        self.state = (self.spec.amp * self.spec.white(rng)).astype(np.complex64)
        self.time = when

    def step(self) -> None:
        """Advance the latent field by one hour: advection + scale-dependent AR(1)."""
        if self.state is None or self.time is None:
            raise RuntimeError("call start() first")
        regime = _regime_at(self.seed, self.time + dt.timedelta(minutes=30), self.params)
        shift = self.spec.phase(regime.flow_u_ms * 3.6, regime.flow_v_ms * 3.6)
        self.time = self.time + dt.timedelta(hours=1)
        rng = _rng(self.seed, _S_HOUR, _hour_key(self.time))
        self.state = (self.spec.phi * shift * self.state
                      + self.spec.innovation * self.spec.white(rng)).astype(np.complex64)

    def _threshold(self, regime: _Regime, when: dt.datetime) -> NDArray[np.float32]:
        """Rain threshold of the latent field at every point (regime + diurnal cycle)."""
        from scipy.special import ndtri

        lst = (when.hour + when.minute / 60.0 + self.lst_offset_h) % 24.0
        cycle = 1.0 + regime.diurnal_amplitude * np.cos(
            2.0 * np.pi * (lst - self.params.diurnal_peak_lst_h) / 24.0)
        frac = np.clip(regime.wet_fraction * cycle, 1e-5, 0.6)
        return (-ndtri(frac)).astype(np.float32)

    def _orographic(self, regime: _Regime, gradient: tuple[NDArray[np.float32], NDArray[np.float32]]
                    ) -> NDArray[np.float32]:
        gx, gy = gradient
        upslope = regime.flow_u_ms * gx + regime.flow_v_ms * gy
        return np.tanh(upslope / self.params.oro_w0_ms).astype(np.float32)

    def _latent(self, spectrum: NDArray[np.complex64]) -> NDArray[np.float32]:
        ny, nx = self.dom.grid.shape
        return self.spec.to_real(spectrum)[:ny, :nx]

    def truth(self) -> NDArray[np.float32]:
        """Hourly precipitation (mm) ending at the current time, on the extended grid."""
        if self.state is None or self.time is None:
            raise RuntimeError("call start() first")
        mid = self.time - dt.timedelta(minutes=30)
        regime = _regime_at(self.seed, mid, self.params)
        oro = self._orographic(regime, self.grad_truth)
        z = self._latent(self.state) + self.params.oro_threshold_shift * oro
        amounts = _gpd_amounts(z, self._threshold(regime, mid), regime.scale_mm, self.params)
        amounts *= np.exp(self.params.oro_amount_factor * oro)
        return np.minimum(amounts, self.params.max_amount_mm)

    # ---- forecast --------------------------------------------------------------------

    def forecast(self, init: dt.datetime, lead_h: int) -> NDArray[np.float32]:
        """GRAF-like hourly precipitation (mm) on the model grid for ``init + lead_h``.

        Must be called when the truth is at the valid time.
        """
        from scipy import ndimage

        if self.state is None or self.time != init + dt.timedelta(hours=lead_h):
            raise RuntimeError(f"the truth is at {self.time}, not at the valid time of "
                               f"{init:%Y%m%d%H} + {lead_h} h")
        p = self.params
        lead = float(lead_h)
        rng_init = _rng(self.seed, _S_FCST, _hour_key(init))
        e_pos = rng_init.standard_normal(2)
        e_time = rng_init.standard_normal()
        noise = self.spec.white(rng_init)
        rng_lead = _rng(self.seed, _S_FCST_LEAD, _hour_key(init), int(lead_h))
        e_pos = 0.8 * e_pos + 0.6 * rng_lead.standard_normal(2)
        e_time = 0.8 * e_time + 0.6 * rng_lead.standard_normal()

        mid = self.time - dt.timedelta(minutes=30)
        tau_h = (p.timing_error_h + p.timing_error_h_per_h * lead) * e_time
        regime = _regime_at(self.seed, mid + dt.timedelta(hours=tau_h), p)
        sigma_km = p.position_error_km + p.position_error_km_per_h * lead
        shift_x = sigma_km * e_pos[0] + regime.flow_u_ms * 3.6 * tau_h
        shift_y = sigma_km * e_pos[1] + regime.flow_v_ms * 3.6 * tau_h
        rho = np.exp(-(lead + p.predictability_offset_h)
                     / (p.predictability_factor * self.spec.lifetime_h)).astype(np.float32)
        flow_shift = self.spec.phase(regime.flow_u_ms * 3.6 * lead, regime.flow_v_ms * 3.6 * lead)
        spectrum = (rho * self.spec.phase(shift_x, shift_y) * self.state
                    + np.sqrt(1.0 - rho * rho) * self.spec.amp * flow_shift * noise)
        oro = self._orographic(regime, self.grad_fcst)
        z = self._latent(spectrum.astype(np.complex64)) + p.fcst_oro_fraction * p.oro_threshold_shift * oro
        q = self._threshold(regime, mid + dt.timedelta(hours=tau_h + p.diurnal_timing_bias_h))
        amounts = _gpd_amounts(z, q, regime.scale_mm, p)
        amounts *= np.exp(p.fcst_oro_fraction * p.oro_amount_factor * oro)
        amounts = amounts * (1.0 + amounts / p.heavy_half_mm) ** (-p.heavy_power)
        band = (z > q - p.drizzle_band) & (z <= q)
        amounts[band] = p.drizzle_max_mm * ((z[band] - q[band] + p.drizzle_band) / p.drizzle_band) ** 2
        sigma_px = p.smooth_px + p.smooth_px_per_h * lead
        amounts = ndimage.gaussian_filter(amounts, sigma_px, mode="nearest")
        return np.ascontiguousarray(amounts[self.dom.inner], dtype=np.float32)


class _Observer:
    """Turns the truth on the extended grid into MRMS QPE on the 0.01 degree grid."""

    _TILE = 512

    def __init__(self, mrms: Grid, ext: Grid, quality: NDArray[np.float32], seed: int,
                 params: WeatherParams) -> None:
        self.mrms = mrms
        self.params = params
        self.ext_shape = ext.shape
        base = np.full(mrms.shape, -3.0, dtype=np.float32)
        cov_flat: list[NDArray[np.int32]] = []
        k00: list[NDArray[np.int32]] = []
        wj: list[NDArray[np.float32]] = []
        wi: list[NDArray[np.float32]] = []
        block = max(1, 2_000_000 // mrms.nx)
        for r0 in range(0, mrms.ny, block):
            rows = slice(r0, min(mrms.ny, r0 + block))
            lon, lat = mrms.lonlat(rows)
            fj, fi = ext.fractional_index(lon, lat)
            ok = ((quality[rows] > 0) & (fj >= 0) & (fj < ext.ny - 1) & (fi >= 0) & (fi < ext.nx - 1))
            base[rows][ok] = 0.0
            idx = (np.flatnonzero(ok) + r0 * mrms.nx).astype(np.int32)
            j0 = np.floor(fj[ok]).astype(np.int32)
            i0 = np.floor(fi[ok]).astype(np.int32)
            cov_flat.append(idx)
            k00.append(j0 * np.int32(ext.nx) + i0)
            wj.append((fj[ok] - j0).astype(np.float32))
            wi.append((fi[ok] - i0).astype(np.float32))
        self.base = base
        self.quality = np.where(base < 0, np.float32(0.0), quality).astype(np.float32)
        self.cov_flat = np.concatenate(cov_flat)
        self.k00 = np.concatenate(k00)
        self.wj = np.concatenate(wj)
        self.wi = np.concatenate(wi)
        rng = _rng(seed, _S_NOISE)
        self.tiles = [
            _smooth_noise_tile(self._TILE, 1.5, rng) for _ in range(2)
        ]
        self.seed = seed

    def observe(self, truth_ext: NDArray[np.float32], valid: dt.datetime) -> NDArray[np.float32]:
        """MRMS QPE (mm, -3 outside coverage) of the hour ending at ``valid``."""
        p = self.params
        nx = self.ext_shape[1]
        wet = truth_ext > 0
        wet_any = wet.copy()
        wet_any[:, :-1] |= wet[:, 1:]
        wet_any[:-1, :] |= wet_any[1:, :]
        sel = np.flatnonzero(wet_any.ravel()[self.k00])
        out = self.base.copy()
        if sel.size == 0:
            return out
        t = truth_ext.ravel()
        k = self.k00[sel]
        a, b = self.wj[sel], self.wi[sel]
        value = ((1 - a) * ((1 - b) * t[k] + b * t[k + 1])
                 + a * ((1 - b) * t[k + nx] + b * t[k + nx + 1]))
        flat = self.cov_flat[sel]
        qual = self.quality.ravel()[flat]
        rng = _rng(self.seed, _S_NOISE, _hour_key(valid))
        tile = self.tiles[int(rng.integers(2))]
        oj, oi = rng.integers(self._TILE, size=2)
        jj = (flat // self.mrms.nx + oj) % self._TILE
        ii = (flat % self.mrms.nx + oi) % self._TILE
        sd = p.qpe_noise_sd + p.qpe_noise_sd_poor * (1.0 - qual)
        factor = (1.0 - p.qpe_underestimate * (1.0 - qual)) * np.exp(sd * tile[jj, ii] - 0.5 * sd * sd)
        out.ravel()[flat] = value * factor
        return out


def _smooth_noise_tile(size: int, sigma_px: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """A periodic Gaussian noise tile with correlation length ``sigma_px``, unit variance."""
    from scipy import ndimage

    tile = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma_px, mode="wrap")
    return ((tile - tile.mean()) / tile.std()).astype(np.float32)


# --------------------------------------------------------------------------------------
# the archive
# --------------------------------------------------------------------------------------


def _site_config(out_dir: Path, start: dt.datetime, end: dt.datetime, leads_h: Sequence[int],
                 cycles: Sequence[int]) -> Config:
    """The configuration of the archive in ``out_dir`` (absolute paths)."""
    paths = paths_below(out_dir)
    days = (end - start).total_seconds() / 86400.0
    short = days < 90
    patches = PatchesConfig(
        ndays_train=int(max(1, min(60, math.floor(days) - 3))),
        previous_year=days > 396,
        cycles=tuple(int(c) for c in cycles),
        # A short archive has few weather regimes: shorter blocks and larger held-out
        # shares keep wet and dry spells in every split.
        split_block_days=2 if short else 5,
        split_fractions=(0.6, 0.2, 0.2) if short else (0.7, 0.15, 0.15),
    )
    return Config(
        source=out_dir / "config.ini",
        paths=paths,
        graf=GrafConfig(lead_min_h=1, lead_max_h=max(48, max(leads_h))),
        terrain=TerrainConfig(smoothing_sigma_px=8.0),
        patches=patches,
        training=TrainingConfig(hparams_name="tiny"),
    )


def _validate(start: dt.datetime, end: dt.datetime, leads_h: Sequence[int], grid_name: str,
              cycles: Sequence[int]) -> tuple[list[int], list[int]]:
    if end < start:
        raise UsageError(f"end {format_yyyymmddhh(end)} is before start {format_yyyymmddhh(start)}")
    leads = sorted({int(v) for v in leads_h})
    if not leads or leads[0] < 1:
        raise UsageError(f"leads must be whole hours >= 1, got {list(leads_h)}")
    hours = sorted({int(c) for c in cycles})
    if not hours or hours[0] < 0 or hours[-1] > 23:
        raise UsageError(f"cycles must be hours 0..23, got {list(cycles)}")
    if grid_name not in ("demo", "conus"):
        raise UsageError(f"grid must be demo or conus, got {grid_name!r}")
    return leads, hours


def generate_archive(
    out_dir: Path,
    start: dt.datetime,
    end: dt.datetime,
    leads_h: Sequence[int],
    grid_name: str = "demo",
    seed: int = 0,
    cycles: Sequence[int] = (0, 12),
    overwrite: bool = False,
    *,
    _model_grid: Grid | None = None,
    _params: WeatherParams | None = None,
) -> Config:
    """Write a synthetic GRAF + MRMS archive and its ``config.ini`` into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Archive directory (created).
    start, end : datetime
        First and last hour (inclusive, UTC) of MRMS and of GRAF inits.
    leads_h : sequence of int
        GRAF lead times (h, >= 1) written for every init.
    grid_name : str
        ``"demo"`` (200 x 250 at 4 km) or ``"conus"`` (1308 x 1524 and the real MRMS grid).
    seed : int
        Random seed; with ``start`` it determines every file.
    cycles : sequence of int
        Init hours (UTC) of the GRAF runs.
    overwrite : bool
        Rewrite files that exist; otherwise they are kept (a rerun after a kill completes
        the archive: all files are written atomically).

    Returns
    -------
    Config
        ``load_config(out_dir / "config.ini")``.

    Raises
    ------
    UsageError
        For a reversed range, bad leads, cycles or grid name, or an output path that is
        a file.
    """
    from pqpf.io.grib_write import (
        MRMS_QPE_PASS2_ID, MRMS_QUALITY_ID, encode_mrms_grib2, gzip_deterministic,
        static_product_gzipper, write_graf_grib2, write_terrain_grib2,
    )

    leads, cycle_hours = _validate(start, end, leads_h, grid_name, cycles)
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output {out_dir} exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    config = _site_config(out_dir, start, end, leads, cycle_hours)
    qpe_product, quality_product = config.mrms.qpe_product, config.mrms.quality_product

    model = _model_grid if _model_grid is not None else graf_like_grid(grid_name)
    mrms = mrms_grid_for(grid_name, model)
    logger.info("synthetic archive in %s: model %s; MRMS %s", out_dir, model.describe(), mrms.describe())
    weather = _Weather(model, mrms, grid_name, seed, _params)

    terrain_path = config.paths.graf_terrain_grib
    if overwrite or not terrain_path.exists():
        write_terrain_grib2(terrain_path, model, weather.terrain)

    inits = {t for t in hour_range(start, end) if t.hour in cycle_hours}
    last = end + dt.timedelta(hours=leads[-1])
    hours = list(hour_range(start, last))
    progress = Progress(len(hours), "hours", logger)
    quality_gz: Callable[[dt.datetime], bytes] | None = None
    written = 0
    weather.start(start - dt.timedelta(hours=1))
    for when in hours:
        weather.step()
        todo_graf = [(when - dt.timedelta(hours=lead), lead) for lead in leads
                     if when - dt.timedelta(hours=lead) in inits]
        todo_graf = [(i, ld) for i, ld in todo_graf
                     if overwrite or not graf_archive_path(config, i, ld).exists()]
        qpe_path = mrms_raw_path(config, qpe_product, when)
        quality_path = mrms_raw_path(config, quality_product, when)
        do_mrms = when <= end and (overwrite or not (qpe_path.exists() and quality_path.exists()))
        if do_mrms:
            observer = weather.observer()
            truth = weather.truth()
            qpe = observer.observe(truth, when)
            atomic_write_bytes(qpe_path, gzip_deterministic(
                encode_mrms_grib2(mrms, qpe, when, MRMS_QPE_PASS2_ID, decimals=1)))
            if quality_gz is None:
                quality_gz = static_product_gzipper(
                    encode_mrms_grib2(mrms, observer.quality, when, MRMS_QUALITY_ID, decimals=2))
            atomic_write_bytes(quality_path, quality_gz(when))
            written += 2
        for init, lead in todo_graf:
            write_graf_grib2(graf_archive_path(config, init, lead), model,
                             weather.forecast(init, lead), init, lead)
            written += 1
        progress.step()
    atomic_write_text(out_dir / "config.ini", _config_header(start, end, leads, grid_name, seed)
                      + config_to_ini(config, relative_to=out_dir))
    logger.info("wrote %d files (%d hours, %d inits x %d leads)", written, len(hours), len(inits), len(leads))
    return load_config(out_dir / "config.ini")


def _config_header(start: dt.datetime, end: dt.datetime, leads: Sequence[int], grid_name: str,
                   seed: int) -> str:
    return (
        "# pqpf site configuration of a synthetic archive, written by\n"
        f"# python -m pqpf.synthetic --start {format_yyyymmddhh(start)} --end {format_yyyymmddhh(end)} "
        f"--leads {','.join(str(v) for v in leads)} --grid {grid_name} --seed {seed}\n"
        "# Paths are relative to this file, so the archive can be moved.\n\n"
    )


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m pqpf.synthetic`` argument parser."""
    from pqpf.cli.common import PqpfArgumentParser, date_arg

    parser = PqpfArgumentParser(
        prog="python -m pqpf.synthetic",
        description=(
            "Write a synthetic GRAF + MRMS archive in the real file formats (GRIB2, WINC "
            "and MRMS names and layouts), a terrain GRIB2 and DIR/config.ini pointing at it."
        ),
    )
    parser.add_argument("--out", metavar="DIR", type=Path, required=True, help="archive directory")
    parser.add_argument("--start", metavar="YYYYMMDDHH", type=date_arg, required=True,
                        help="first hour (MRMS and GRAF inits)")
    parser.add_argument("--end", metavar="YYYYMMDDHH", type=date_arg, required=True,
                        help="last hour, inclusive")
    parser.add_argument("--leads", metavar="H,H,...", type=_int_list, default=[1, 6, 12],
                        help="GRAF lead times in hours (default 1,6,12)")
    parser.add_argument("--cycles", metavar="H,H,...", type=_int_list, default=[0, 12],
                        help="GRAF init hours UTC (default 0,12)")
    parser.add_argument("--grid", choices=("demo", "conus"), default="demo",
                        help="demo: 200x250 at 4 km (minutes); conus: 1308x1524 and the real MRMS grid")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing files")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pqpf.synthetic``; returns the exit status."""
    from pqpf.cli.common import run_cli

    def body(args: argparse.Namespace) -> int:
        config = generate_archive(args.out, args.start, args.end, args.leads, args.grid, args.seed,
                                  args.cycles, args.overwrite)
        logger.info("configuration: %s", config.source)
        return 0

    return run_cli(build_parser(), body, list(argv) if argv is not None else None)


if __name__ == "__main__":
    sys.exit(main())
