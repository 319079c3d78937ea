"""The synthetic MRMS: radar sites, the quality index, and the QPE observed from the truth.

All numbers are :class:`~pqpf.synthetic.params.WeatherParams` defaults (field names in
parentheses) unless named as module constants here.

Sites
-----
A jittered lattice over the MRMS grid's extent: rows ``300 km`` apart on ``demo``, ``270 km``
on ``conus`` (``radar_spacing_*``; 111.2 km per degree of latitude, and per degree of
longitude times ``cos(latitude)``), the first row and column offset by 0.2-0.8 of a spacing,
every site moved by up to +-0.3 of a spacing in each direction; then moved to the highest
terrain point within 12 km (``radar_siting_radius_km``), the antenna 30 m above the ground
(``antenna_height_m``).

Quality index
-------------
For each radar, on a polar grid of 360 azimuths and 2 km range gates out to 230 km
(``radar_range_km``), with the 4/3 effective earth radius ``R' = 4/3 x 6371 km``
[Doviak and Zrnic 1993]:

* the beam centre height above the radar ``H(r) = sqrt(r^2 + R'^2 + 2 r R' sin(theta)) - R'``,
  ``theta = 0.5`` degree (``beam_elevation_deg``);
* the horizon ``eps(r)``: the largest elevation angle ``atan2(h(r') - h_radar - r'^2 / (2 R'), r')``
  of the terrain ``h`` at the gates ``r' < r``;
* the blocked fraction of the beam ``b = clip((eps - theta + w/2) / w, 0, 1)``, ``w = 0.95``
  degree (``beam_width_deg``);
* ``Q = (1 - b) exp(-(max(h_radar + H(r) - h(r), 0) / 4 km)^2)`` (``beam_height_scale_m``):
  blocked beams and beams high above the ground see little rain.

Each MRMS cell within 230 km takes ``Q`` interpolated bilinearly from the polar grid
(flat-earth distances and azimuths); the quality index is the best radar's ``Q``, and 0
(no coverage) elsewhere. It does not change with time.

QPE
---
Where the quality is positive, the truth interpolated bilinearly from the extended model
grid, times ``(1 - 0.35 (1 - Q)) exp(sigma n - sigma^2 / 2)`` with
``sigma = 0.1 + 0.4 (1 - Q)`` (``qpe_underestimate``, ``qpe_noise_sd``, ``qpe_noise_sd_poor``):
an underestimate where the quality is poor and a mean-one log-normal noise. ``n`` is
standard normal noise smoothed by a Gaussian of 1.5 MRMS cells (``qpe_noise_sigma_px``):
one of two periodic 512 x 512 tiles, at an offset drawn every hour. Dry points (all four
interpolation neighbours dry) are exactly 0. Elsewhere the QPE is -3, MRMS's "no
coverage" sentinel.

References
----------
Doviak, R. J., and D. S. Zrnic (1993). Doppler Radar and Weather Observations, 2nd ed.
Academic Press, section 2.2 (the 4/3 earth model).
Zhang, J., and co-authors (2016). Multi-Radar Multi-Sensor (MRMS) quantitative
precipitation estimation: initial operating capabilities. Bull. Amer. Meteor. Soc., 97,
621-638 (the radar quality index this imitates).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pqpf.grid import Grid
from pqpf.synthetic.params import WeatherParams
from pqpf.synthetic.streams import STREAM_NOISE, STREAM_RADAR, hour_key, random_stream

__all__ = ["Observer", "RadarQuality", "build_observer", "radar_quality", "radar_sites", "site_on_hills",
           "MRMS_NO_COVERAGE"]

#: MRMS's value for "no radar coverage".
MRMS_NO_COVERAGE = -3.0
_M_PER_KM = 1000.0
#: Mean earth radius (km) for distances and offsets near a radar.
_EARTH_RADIUS_KM = 6371.0
#: Standard refraction: the beam travels as if on an earth of 4/3 the radius.
_EFFECTIVE_EARTH_FACTOR = 4.0 / 3.0
#: Length of a degree of latitude (km).
_KM_PER_DEG_LAT = 111.2
#: Smallest cos(latitude) used to space the sites in longitude.
_MIN_COS_LAT = 0.2
#: Offset of the first lattice row and column (fraction of a spacing) and the jitter of a site.
_LATTICE_OFFSET = (0.2, 0.8)
_SITE_JITTER = 0.3
#: Polar grid of the quality computation.
_N_AZIMUTHS = 360
_GATE_KM = 2.0
#: Noise tiles of the QPE: size (MRMS cells) and number.
_NOISE_TILE_PX = 512
_N_NOISE_TILES = 2
#: MRMS points whose coordinates are computed at once (memory of the set-up).
_BLOCK_POINTS = 2_000_000


@dataclass(frozen=True)
class RadarQuality:
    """The quality index of a radar network on the MRMS grid.

    Attributes
    ----------
    quality : float32 array, shape mrms.shape
        Best radar's quality index, in [0, 1]; 0 outside coverage.
    sites_lonlat : float64 array, shape (n_sites, 2)
        Longitude and latitude (degrees) of the radars.
    nearest_km : float32 array, shape mrms.shape, or None
        Distance (km) to the nearest radar (``diagnostics`` only; inf beyond the range
        boxes of all radars).
    blockage : float32 array, shape mrms.shape, or None
        Blocked beam fraction of the radar that gives the best quality (``diagnostics`` only).
    """

    quality: NDArray[np.float32]
    sites_lonlat: NDArray[np.float64]
    nearest_km: NDArray[np.float32] | None = None
    blockage: NDArray[np.float32] | None = None


def radar_sites(mrms: Grid, spacing_km: float, seed: int) -> NDArray[np.float64]:
    """Jittered lattice of radar sites over the MRMS grid's extent.

    Parameters
    ----------
    mrms : Grid
        The MRMS latitude/longitude grid.
    spacing_km : float
        Distance (km) between lattice rows, and between sites along a row.
    seed : int
        Random seed of the archive.

    Returns
    -------
    float64 array, shape (n_sites, 2)
        Longitude and latitude (degrees).
    """
    rng = random_stream(seed, STREAM_RADAR)
    lat_n, lat_s = mrms.y0, mrms.y0 + (mrms.ny - 1) * mrms.dy
    lon_w, lon_e = mrms.x0, mrms.x0 + (mrms.nx - 1) * mrms.dx
    dlat = spacing_km / _KM_PER_DEG_LAT
    sites = []
    lat = min(lat_n, lat_s) + rng.uniform(*_LATTICE_OFFSET) * dlat
    while lat < max(lat_n, lat_s):
        dlon = dlat / max(math.cos(math.radians(lat)), _MIN_COS_LAT)
        lon = lon_w + rng.uniform(*_LATTICE_OFFSET) * dlon
        while lon < lon_e:
            sites.append((lon + rng.uniform(-_SITE_JITTER, _SITE_JITTER) * dlon,
                          lat + rng.uniform(-_SITE_JITTER, _SITE_JITTER) * dlat))
            lon += dlon
        lat += dlat
    return np.asarray(sites, dtype=np.float64).reshape(-1, 2)


def site_on_hills(sites: NDArray[np.float64], ext: Grid, terrain_ext: NDArray[np.float32],
                  radius_km: float) -> NDArray[np.float64]:
    """Move every site to the highest terrain within ``radius_km`` (radars are sited for
    a clear view); sites outside the terrain grid stay where they are.

    Parameters
    ----------
    sites : float64 array, shape (n_sites, 2)
        Longitude and latitude (degrees).
    ext : Grid
        Grid of the terrain.
    terrain_ext : float32 array, shape ext.shape
        Terrain height (m).
    radius_km : float
        Half-width (km) of the square searched around each site.

    Returns
    -------
    float64 array, shape (n_sites, 2)
        The moved sites, at grid-point centres.
    """
    out = sites.copy()
    if sites.size == 0:
        return out
    r_px = max(1, int(round(radius_km * _M_PER_KM / abs(ext.dx))))
    fj, fi = ext.fractional_index(sites[:, 0], sites[:, 1])
    for n, (j, i) in enumerate(zip(np.rint(fj).astype(int), np.rint(fi).astype(int), strict=True)):
        j0, j1 = max(0, j - r_px), min(ext.ny, j + r_px + 1)
        i0, i1 = max(0, i - r_px), min(ext.nx, i + r_px + 1)
        if j1 <= j0 or i1 <= i0:
            continue
        jj, ii = np.unravel_index(int(np.argmax(terrain_ext[j0:j1, i0:i1])), (j1 - j0, i1 - i0))
        lon, lat = ext.to_lonlat(np.array(ext.x0 + (i0 + ii) * ext.dx), np.array(ext.y0 + (j0 + jj) * ext.dy))
        out[n] = (float(lon), float(lat))
    return out


@dataclass(frozen=True)
class _Beam:
    """The beam on the polar grid: gate ranges (km), azimuths (rad), beam centre height
    above the radar and earth curvature drop (km, 4/3 earth), elevation and half width (rad)."""

    r_km: NDArray[np.float64]
    az: NDArray[np.float64]
    height_km: NDArray[np.float64]
    curvature_km: NDArray[np.float64]
    theta: float
    half_bw: float

    @classmethod
    def of(cls, params: WeatherParams) -> _Beam:
        r_km = (np.arange(1, int(params.radar_range_km / _GATE_KM) + 2) * _GATE_KM).astype(np.float64)
        az = np.radians(np.arange(_N_AZIMUTHS) * (360.0 / _N_AZIMUTHS))
        ke_r_km = _EFFECTIVE_EARTH_FACTOR * _EARTH_RADIUS_KM
        theta = math.radians(params.beam_elevation_deg)
        half_bw = math.radians(params.beam_width_deg) / 2.0
        height_km = np.sqrt(r_km**2 + ke_r_km**2 + 2 * r_km * ke_r_km * math.sin(theta)) - ke_r_km
        curvature_km = (r_km**2 / (2.0 * ke_r_km)).astype(np.float64)
        return cls(r_km, az, height_km, curvature_km, theta, half_bw)


def _polar_quality(lon_r: float, lat_r: float, ext: Grid, terrain_ext: NDArray[np.float32], beam: _Beam,
                   params: WeatherParams) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Quality and blocked fraction of one radar on its polar grid, shape (n_az + 1, n_gates)
    (the first azimuth repeated at the end, for interpolation across north)."""
    from scipy import ndimage  # deferred: --help stays instant

    r_km, az = beam.r_km, beam.az
    coslat = math.cos(math.radians(lat_r))
    # terrain along the radials (flat-earth offsets are accurate enough within 230 km)
    plat = lat_r + np.degrees(np.cos(az)[:, None] * r_km[None, :] / _EARTH_RADIUS_KM)
    plon = lon_r + np.degrees(np.sin(az)[:, None] * r_km[None, :] / (_EARTH_RADIUS_KM * coslat))
    fj, fi = ext.fractional_index(plon.ravel(), plat.ravel())
    h_polar = ndimage.map_coordinates(terrain_ext, [fj, fi], order=1, mode="constant", cval=0.0)
    h_polar = h_polar.reshape(plat.shape).astype(np.float64) / _M_PER_KM
    sj, si = ext.fractional_index(np.array([lon_r]), np.array([lat_r]))
    h_site = float(ndimage.map_coordinates(terrain_ext, [sj, si], order=1, mode="nearest")[0])
    h_site = h_site / _M_PER_KM + params.antenna_height_m / _M_PER_KM
    elev = np.arctan2(h_polar - h_site - beam.curvature_km[None, :], r_km[None, :])
    horizon = np.maximum.accumulate(elev, axis=1)
    horizon = np.concatenate([np.full((az.size, 1), -np.inf), horizon[:, :-1]], axis=1)
    blocked = np.clip((horizon - (beam.theta - beam.half_bw)) / (2 * beam.half_bw), 0.0, 1.0)
    agl_km = np.clip(h_site + beam.height_km[None, :] - h_polar, 0.0, None)
    q_polar = (1.0 - blocked) * np.exp(-((agl_km * _M_PER_KM / params.beam_height_scale_m) ** 2))
    return np.concatenate([q_polar, q_polar[:1]], axis=0), np.concatenate([blocked, blocked[:1]], axis=0)


def radar_quality(mrms: Grid, ext: Grid, terrain_ext: NDArray[np.float32], sites: NDArray[np.float64],
                  params: WeatherParams, diagnostics: bool = False) -> RadarQuality:
    """Best-radar quality index with range and beam blockage (see the module docstring).

    Parameters
    ----------
    mrms : Grid
        The MRMS latitude/longitude grid.
    ext : Grid
        Grid of the terrain (the extended model grid).
    terrain_ext : float32 array, shape ext.shape
        Terrain height (m); 0 is assumed beyond it.
    sites : float64 array, shape (n_sites, 2)
        Longitude and latitude (degrees) of the radars.
    params : WeatherParams
        The radar parameters.
    diagnostics : bool
        Also return the distance to the nearest radar and the blockage.
    """
    from scipy import ndimage  # deferred: --help stays instant

    beam = _Beam.of(params)
    quality = np.zeros(mrms.shape, dtype=np.float32)
    nearest = np.full(mrms.shape, np.inf, dtype=np.float32) if diagnostics else None
    blockage = np.zeros(mrms.shape, dtype=np.float32) if diagnostics else None
    for lon_r, lat_r in sites:
        q_polar, b_polar = _polar_quality(lon_r, lat_r, ext, terrain_ext, beam, params)
        # MRMS points within range
        coslat = math.cos(math.radians(lat_r))
        rng_deg = params.radar_range_km / _KM_PER_DEG_LAT
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
        az_idx = (np.degrees(np.arctan2(dx_km, dy_km)) % 360.0) / (360.0 / _N_AZIMUTHS)
        r_idx = dist / _GATE_KM - 1.0
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
    return RadarQuality(quality, sites, nearest, blockage)


class Observer:
    """Turns the truth on the extended grid into MRMS QPE on the 0.01 degree grid.

    Built once (the interpolation weights and noise tiles), used every hour.

    Parameters
    ----------
    mrms : Grid
        The MRMS latitude/longitude grid.
    ext : Grid
        The extended model grid the truth lives on.
    quality : float32 array, shape mrms.shape
        The radar quality index; cells with quality 0 or outside ``ext`` get no QPE.
    seed : int
        Random seed of the archive.
    params : WeatherParams
        The QPE error parameters.

    Attributes
    ----------
    quality : float32 array, shape mrms.shape
        The quality index, 0 wherever the QPE is :data:`MRMS_NO_COVERAGE`.
    """

    def __init__(self, mrms: Grid, ext: Grid, quality: NDArray[np.float32], seed: int,
                 params: WeatherParams) -> None:
        self.mrms = mrms
        self.params = params
        self.ext_shape = ext.shape
        base = np.full(mrms.shape, MRMS_NO_COVERAGE, dtype=np.float32)
        cov_flat: list[NDArray[np.int32]] = []
        k00: list[NDArray[np.int32]] = []
        wj: list[NDArray[np.float32]] = []
        wi: list[NDArray[np.float32]] = []
        block = max(1, _BLOCK_POINTS // mrms.nx)
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
        rng = random_stream(seed, STREAM_NOISE)
        self.tiles = [_smooth_noise_tile(_NOISE_TILE_PX, params.qpe_noise_sigma_px, rng)
                      for _ in range(_N_NOISE_TILES)]
        self.seed = seed

    def observe(self, truth_ext: NDArray[np.float32], valid: dt.datetime) -> NDArray[np.float32]:
        """MRMS QPE of the hour ending at ``valid``.

        Parameters
        ----------
        truth_ext : float32 array, shape of the extended grid
            True precipitation (mm).
        valid : datetime
            End of the hour (keys the noise).

        Returns
        -------
        float32 array, shape mrms.shape
            QPE (mm); :data:`MRMS_NO_COVERAGE` (-3) outside coverage.
        """
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
        rng = random_stream(self.seed, STREAM_NOISE, hour_key(valid))
        tile = self.tiles[int(rng.integers(_N_NOISE_TILES))]
        oj, oi = rng.integers(_NOISE_TILE_PX, size=2)
        jj = (flat // self.mrms.nx + oj) % _NOISE_TILE_PX
        ii = (flat % self.mrms.nx + oi) % _NOISE_TILE_PX
        sd = p.qpe_noise_sd + p.qpe_noise_sd_poor * (1.0 - qual)
        factor = (1.0 - p.qpe_underestimate * (1.0 - qual)) * np.exp(sd * tile[jj, ii] - 0.5 * sd * sd)
        out.ravel()[flat] = value * factor
        return out


def _smooth_noise_tile(size: int, sigma_px: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """A periodic ``(size, size)`` standard normal field smoothed by a Gaussian of ``sigma_px``,
    standardised to sample mean 0 and standard deviation 1 (float32)."""
    from scipy import ndimage  # deferred: --help stays instant

    tile = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma_px, mode="wrap")
    return ((tile - tile.mean()) / tile.std()).astype(np.float32)


def build_observer(mrms: Grid, ext: Grid, terrain_ext: NDArray[np.float32], grid_name: str, seed: int,
                   params: WeatherParams) -> Observer:
    """The radar network of a named grid (sites, quality index) and its QPE observer.

    Parameters
    ----------
    mrms : Grid
        The MRMS grid.
    ext : Grid
        The extended model grid.
    terrain_ext : float32 array, shape ext.shape
        Terrain height (m).
    grid_name : str
        ``"conus"`` or ``"demo"``: chooses the radar spacing.
    seed : int
        Random seed of the archive.
    params : WeatherParams
        The radar and QPE parameters.
    """
    spacing = params.radar_spacing_conus_km if grid_name == "conus" else params.radar_spacing_demo_km
    sites = site_on_hills(radar_sites(mrms, spacing, seed), ext, terrain_ext, params.radar_siting_radius_km)
    rq = radar_quality(mrms, ext, terrain_ext, sites, params)
    return Observer(mrms, ext, rq.quality, seed, params)
