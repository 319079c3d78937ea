"""Helpers for the remapping tests: a tiny raw MRMS archive built from the real crop,
a site configuration below a temporary directory, and a counter of weight builds.

The valid hour of the real crop (2022-08-09 15Z) is copied unchanged. Other hours and
all quality files are honest re-encodings of the crop's own GRIB2 message with ecCodes:
the same grid and product definition, another valid time, other values (simple packing
while the values are set, then PNG packing as in the real files).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import shutil
from pathlib import Path

import numpy as np

from pqpf.config import Config, MrmsConfig, load_config, paths_below
from pqpf.config import write_config as write_config_file
from pqpf.grid import LAMBERT, Grid
from pqpf.io.netcdf import NcVar, write_grid_netcdf
from pqpf.layout import mrms_raw_path

REAL_HOUR = dt.datetime(2022, 8, 9, 15)
QPE_PRODUCT = "MultiSensor_QPE_01H_Pass2_00.00"
QUALITY_PRODUCT = "RadarAccumulationQualityIndex_01H_00.00"


def small_lambert_grid(lat_c: float = 36.7, lon_c: float = -81.0, ny: int = 24, nx: int = 30,
                       d_m: float = 4000.0) -> Grid:
    """A GRAF-like Lambert grid (lat_1 = lat_2 = 38.5, lon_0 = -97.5) centred at a point."""
    proto = Grid(LAMBERT, ny, nx, 0.0, 0.0, d_m, d_m, 38.5, 38.5, 38.5, -97.5)
    xc, yc = proto.to_xy(np.array(lon_c), np.array(lat_c))
    x0 = float(xc) - d_m * (nx - 1) / 2.0
    y0 = float(yc) - d_m * (ny - 1) / 2.0
    return Grid(LAMBERT, ny, nx, x0, y0, d_m, d_m, 38.5, 38.5, 38.5, -97.5)


def reencode(crop_gz: Path, values: np.ndarray, valid: dt.datetime) -> bytes:
    """The crop's GRIB2 message with new values and valid time, gzipped."""
    import eccodes
    import pyproj  # noqa: F401  (import order: pyproj/pygrib before eccodes)

    raw = gzip.decompress(crop_gz.read_bytes())
    handle = eccodes.codes_new_from_message(raw)
    try:
        eccodes.codes_set(handle, "packingType", "grid_simple")
        eccodes.codes_set(handle, "dataDate", int(f"{valid:%Y%m%d}"))
        eccodes.codes_set(handle, "dataTime", int(f"{valid:%H}00"))
        eccodes.codes_set_values(handle, np.asarray(values, dtype=np.float64).ravel())
        eccodes.codes_set(handle, "packingType", "grid_png")
        message = eccodes.codes_get_message(handle)
    finally:
        eccodes.codes_release(handle)
    return gzip.compress(message)


def crop_values(crop_gz: Path) -> np.ndarray:
    from pqpf.io.grib import read_mrms_qpe

    return read_mrms_qpe(crop_gz).values


def write_hour(config: Config, crop_gz: Path, valid: dt.datetime, seed: int,
               products: tuple[str, ...] = (QPE_PRODUCT, QUALITY_PRODUCT)) -> None:
    """Put the QPE and/or quality file of ``valid`` into the raw layout."""
    rng = np.random.default_rng(seed)
    base = crop_values(crop_gz)
    ny, nx = base.shape
    if QPE_PRODUCT in products:
        target = mrms_raw_path(config, QPE_PRODUCT, valid)
        target.parent.mkdir(parents=True, exist_ok=True)
        if valid == REAL_HOUR:
            shutil.copyfile(crop_gz, target)
        else:
            jj, ii = np.mgrid[0:ny, 0:nx]
            # rain and a missing block where small_lambert_grid() is by default (36.7N 81W)
            blob = 20.0 * np.exp(-(((jj - ny * 0.5) / 40.0) ** 2 + ((ii - nx * 0.51) / 60.0) ** 2))
            qpe = np.round(base + blob * rng.uniform(0.5, 1.0), 1)
            qpe[rng.uniform(size=qpe.shape) < 0.05] = -3.0  # no-coverage sentinels
            qpe[int(ny * 0.53):int(ny * 0.56), int(nx * 0.45):int(nx * 0.5)] = -999.0
            target.write_bytes(reencode(crop_gz, qpe, valid))
    if QUALITY_PRODUCT in products:
        target = mrms_raw_path(config, QUALITY_PRODUCT, valid)
        target.parent.mkdir(parents=True, exist_ok=True)
        quality = np.round(rng.uniform(0.0, 1.0, base.shape), 3)
        quality[rng.uniform(size=base.shape) < 0.03] = -3.0
        target.write_bytes(reencode(crop_gz, quality, valid))


def write_config(root: Path, grid: Grid | None, download_url: str = "http://127.0.0.1:9/none") -> Config:
    """A config whose every path lies below ``root``, and a terrain file on ``grid``."""
    root.mkdir(parents=True, exist_ok=True)
    paths = dataclasses.replace(paths_below(root), terrain_file=root / "terrain.nc",
                                graf_terrain_grib=root / "terrain.grb2", mrms_remapped_dir=root / "MRMS",
                                graf_laptop_dir=root / "graf_laptop")
    write_config_file(Config(source=root / "config.ini", paths=paths, mrms=MrmsConfig(download_url=download_url)))
    config = load_config(root / "config.ini")
    if grid is not None:
        write_grid_netcdf(config.paths.terrain_file, grid,
                          {"height": NcVar(np.zeros(grid.shape, np.float32), {"units": "m"})})
    return config


def count_builds(monkeypatch) -> list:
    """Make ``RegridWeights.build`` record each call; returns the list of calls."""
    from pqpf.remapping import RegridWeights

    calls: list = []
    original = RegridWeights.build.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(RegridWeights, "build", classmethod(counting))
    return calls
