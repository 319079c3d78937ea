"""The synthetic MRMS: radar sites, the quality index, and the QPE observed from the truth."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from pqpf.grid import Grid
from pqpf.synthetic.params import WeatherParams
from pqpf.synthetic.streams import STREAM_NOISE, STREAM_RADAR, hour_key, random_stream

__all__ = ["Observer", "RadarQuality", "build_observer", "radar_quality", "radar_sites", "site_on_hills"]

_EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class RadarQuality:
    """Quality index on the MRMS grid (float32, 0 outside coverage) and, optionally,
    diagnostics: distance to the nearest radar (km) and the beam blockage of the radar
    that gives the best quality."""

    quality: NDArray[np.float32]
    sites_lonlat: NDArray[np.float64]
    nearest_km: NDArray[np.float32] | None = None
    blockage: NDArray[np.float32] | None = None


def radar_sites(mrms: Grid, spacing_km: float, seed: int) -> NDArray[np.float64]:
    """Jittered lattice of radar sites (lon, lat) over the MRMS grid's extent."""
    rng = random_stream(seed, STREAM_RADAR)
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


def site_on_hills(sites: NDArray[np.float64], ext: Grid, terrain_ext: NDArray[np.float32],
                  radius_km: float = 12.0) -> NDArray[np.float64]:
    """Move every site to the highest terrain within ``radius_km`` (radars are sited for
    a clear view); sites outside the terrain grid stay where they are."""
    out = sites.copy()
    if sites.size == 0:
        return out
    r_px = max(1, int(round(radius_km * 1000.0 / abs(ext.dx))))
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


def radar_quality(mrms: Grid, ext: Grid, terrain_ext: NDArray[np.float32], sites: NDArray[np.float64],
                  params: WeatherParams, diagnostics: bool = False) -> RadarQuality:
    """Best-radar quality index with range and beam blockage (see module docstring)."""

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
    return RadarQuality(quality, sites, nearest, blockage)




class Observer:
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
        rng = random_stream(seed, STREAM_NOISE)
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
        rng = random_stream(self.seed, STREAM_NOISE, hour_key(valid))
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
    tile = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma_px, mode="wrap")
    return ((tile - tile.mean()) / tile.std()).astype(np.float32)


def build_observer(mrms: Grid, ext: Grid, terrain_ext: NDArray[np.float32], grid_name: str, seed: int,
                   params: WeatherParams) -> Observer:
    """The radar network of a named grid (sites, quality index) and its QPE observer."""
    spacing = params.radar_spacing_conus_km if grid_name == "conus" else params.radar_spacing_demo_km
    sites = site_on_hills(radar_sites(mrms, spacing, seed), ext, terrain_ext)
    rq = radar_quality(mrms, ext, terrain_ext, sites, params)
    return Observer(mrms, ext, rq.quality, seed, params)
