import datetime as dt
import os

import numpy as np
import pytest
import xarray as xr

from pqpf.errors import InputFileError
from pqpf.grid import LAMBERT, Grid
from pqpf.io.atomic import atomic_path
from pqpf.io.netcdf import NcVar, read_grid_netcdf, write_grid_netcdf

GRID = Grid(LAMBERT, 12, 15, -30000.0, 50000.0, 4000.0, 4000.0, 38.5, 38.5, 38.5, -97.5)


def test_written_file_is_cf_and_roundtrips(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.gamma(0.5, 2.0, GRID.shape).astype(np.float32)
    values[3, 4] = np.nan
    probs = rng.uniform(size=(2, *GRID.shape)).astype(np.float32)
    when = dt.datetime(2025, 1, 2, 3)
    path = write_grid_netcdf(
        tmp_path / "out.nc", GRID,
        {"precipitation": NcVar(values, {"units": "mm"}),
         "prob": NcVar(probs, {"units": "1"}, dims=("threshold", "y", "x"))},
        coords={"threshold": (np.array([1.0, 5.0], np.float32), {"units": "mm"})},
        time=when, global_attrs={"title": "test"},
    )
    back = read_grid_netcdf(path)
    assert back.grid.same_as(GRID) and back.time == when
    assert np.array_equal(back.data["precipitation"], values, equal_nan=True)
    assert np.array_equal(back.data["prob"], probs)
    ds = xr.open_dataset(path)
    assert ds["precipitation"].attrs["grid_mapping"] == "lambert_conformal_conic"
    lon, lat = GRID.lonlat()
    assert np.allclose(ds["lat"].values, lat, atol=1e-5) and np.allclose(ds["lon"].values, lon, atol=1e-5)
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert int(np.isnan(ds["precipitation"].values).sum()) == 1


def test_failed_write_leaves_nothing(tmp_path):
    bad = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError):
        write_grid_netcdf(tmp_path / "out.nc", GRID, {"v": NcVar(bad)})
    assert os.listdir(tmp_path) == []


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        read_grid_netcdf(tmp_path / "none.nc")
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"\x89HDF junk")
    with pytest.raises(InputFileError, match=str(junk)):
        read_grid_netcdf(junk)
