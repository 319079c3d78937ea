"""The ensemble product: round trip, CF content, the grid, packing, atomic writes, bad input."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pqpf.errors import InputFileError
from pqpf.grid import graf_like_grid
from pqpf.io.ensemble_file import (
    PRECIP_MAX_MM,
    EnsembleProvenance,
    make_ensemble,
    read_ensemble,
    write_ensemble,
)
from pqpf.verify.ensemble import member_exceedance_probs

INIT = dt.datetime(2025, 12, 4, 12)
THRESHOLDS = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)
PROV = EnsembleProvenance("runs/resunet_2025120100_12h/best.pt", "runs/diffusion_2025120100_12h/best.pt", seed=11,
                          ecc=True, sampler={"n_steps": 18, "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0,
                                             "s_churn": 0.0, "window_px": 64, "stride_px": 32},
                          extra={"hparams": "diffusion_demo"})


@pytest.fixture(scope="module")
def grid():
    return graf_like_grid("demo").subgrid(20, 80, 30, 120)  # 60 x 90, still Lambert


@pytest.fixture(scope="module")
def forecast(grid):
    rng = np.random.default_rng(3)
    members = rng.gamma(0.4, 3.0, (5, *grid.shape)) * (rng.random((5, *grid.shape)) > 0.5)
    members[2, 7, 9] = np.nan  # a missing point
    graf = rng.gamma(0.5, 2.0, grid.shape).astype(np.float32)
    return make_ensemble(grid, members, INIT, 12, THRESHOLDS, PROV, graf_mm=graf, unet_mean_mm=graf * 0.5)


@pytest.fixture(scope="module")
def written(tmp_path_factory, forecast):
    out = tmp_path_factory.mktemp("ens")
    paths = write_ensemble(out / "2025120412_12h_ensemble.zarr", forecast,
                           netcdf_path=out / "2025120412_12h_ensemble.nc")
    return out, paths


@pytest.mark.parametrize("which", [0, 1], ids=["zarr", "netcdf"])
def test_round_trip_returns_what_was_written(written, forecast, grid, which):
    back = read_ensemble(written[1][which])
    assert back.grid == grid  # exactly the writer's grid, not only within rounding
    assert back.grid.fingerprint() == grid.fingerprint()
    assert back.members_mm.dtype == np.float32 and back.members_mm.shape == (5, *grid.shape)
    np.testing.assert_array_equal(back.members_mm, forecast.members_mm)  # NaN in the same place
    np.testing.assert_array_equal(back.prob, forecast.prob)
    np.testing.assert_array_equal(back.graf_mm, forecast.graf_mm)
    np.testing.assert_array_equal(back.unet_mean_mm, forecast.unet_mean_mm)
    assert back.thresholds_mm == THRESHOLDS
    assert (back.init, back.lead_h, back.valid) == (INIT, 12, dt.datetime(2025, 12, 5, 0))
    assert back.provenance == PROV
    lon, lat = grid.lonlat()
    np.testing.assert_array_equal(back.lat, lat.astype(np.float32))
    np.testing.assert_array_equal(back.lon, lon.astype(np.float32))
    assert back.source == written[1][which]


def test_members_are_stored_to_a_hundredth_of_a_mm_and_probabilities_agree(grid):
    members = np.zeros((2, *grid.shape))
    members[:, 0, 0] = [0.2449, 0.2451]  # round to 0.24 (misses 0.25 mm) and 0.25 (reaches it)
    members[:, 0, 1] = [1.006, 0.994]  # 1.01 reaches 1 mm, 0.99 does not
    members[:, 0, 2] = [-5e-5, 3.0]  # round-off below zero is zero
    f = make_ensemble(grid, members, INIT, 1, (0.25, 1.0), PROV)
    np.testing.assert_allclose(f.members_mm[:, 0, :3], [[0.24, 1.01, 0.0], [0.25, 0.99, 3.0]], atol=1e-6)
    np.testing.assert_array_equal(f.prob[:, 0, :3], [[0.5, 1.0, 0.5], [0.0, 0.5, 0.5]])
    np.testing.assert_array_equal(f.prob, member_exceedance_probs(f.members_mm, (0.25, 1.0)))
    steps = f.members_mm / 0.01
    assert np.abs(steps - np.round(steps)).max() < 1e-3


def test_missing_members_are_nan_with_nan_probability(forecast, written):
    back = read_ensemble(written[1][0])
    assert np.isnan(back.members_mm).sum() == 1 and np.isnan(back.members_mm[2, 7, 9])
    assert np.isnan(back.prob[:, 7, 9]).all() and np.isnan(back.prob).sum() == len(THRESHOLDS)


def test_amounts_beyond_the_packing_range_are_clipped_with_a_warning(grid, caplog):
    members = np.zeros((2, *grid.shape))
    members[0, 3, 3] = 900.0
    with caplog.at_level(logging.WARNING, logger="pqpf.io.ensemble_file"):
        f = make_ensemble(grid, members, INIT, 1, (1.0,), PROV)
    assert f.members_mm[0, 3, 3] == pytest.approx(PRECIP_MAX_MM, abs=1e-3) and PRECIP_MAX_MM == pytest.approx(655.34)
    assert "1 member amounts above 655.34 mm clipped (largest 900 mm)" in caplog.text


def test_store_carries_cf_attributes_packing_and_the_grid_mapping(written):
    store = written[1][0]
    ds = xr.open_zarr(store, decode_times=False, mask_and_scale=False)
    assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["init"] == "2025120412" and ds.attrs["lead_h"] == 12
    assert ds.attrs["ecc"] == "on" and ds.attrs["seed"] == 11 and ds.attrs["sampler_n_steps"] == 18
    assert ds.attrs["unet_checkpoint"].endswith("resunet_2025120100_12h/best.pt")
    p = ds["precipitation"]
    assert p.dims == ("member", "y", "x") and p.dtype == np.uint16
    assert p.attrs["units"] == "mm" and p.attrs["standard_name"] == "lwe_thickness_of_precipitation_amount"
    assert p.attrs["scale_factor"] == pytest.approx(0.01) and p.attrs["_FillValue"] == 65535
    assert p.attrs["grid_mapping"] == "lambert_conformal_conic"
    gm = ds["lambert_conformal_conic"].attrs
    assert gm["grid_mapping_name"] == "lambert_conformal_conic" and gm["standard_parallel"] == [38.5]  # tangent cone
    assert gm["longitude_of_central_meridian"] == -97.5 and "crs_wkt" in gm
    assert ds["member"].attrs["standard_name"] == "realization" and ds["member"].values.tolist() == [0, 1, 2, 3, 4]
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate" and ds["x"].attrs["units"] == "m"
    assert ds["time"].attrs["units"] == "seconds since 1970-01-01 00:00:00"
    assert int(ds["time"]) - int(ds["forecast_reference_time"]) == 12 * 3600 and int(ds["forecast_period"]) == 12
    assert ds["prob_exceed"].attrs["units"] == "1" and ds["threshold"].attrs["units"] == "mm"
    meta = json.loads((store / "precipitation" / ".zattrs").read_text())
    assert set(meta["coordinates"].split()) == {"lat", "lon", "time", "forecast_reference_time", "forecast_period"}
    assert (store / ".zmetadata").is_file()  # consolidated: one read opens the store


def test_netcdf_beside_the_store_holds_the_same_cf_dataset(written):
    nc = xr.open_dataset(written[1][1], decode_times=False, mask_and_scale=False)
    p = nc["precipitation"]
    assert p.dtype == np.uint16 and p.attrs["grid_mapping"] == "lambert_conformal_conic"
    assert nc["precipitation"].encoding["zlib"] is True
    assert nc.attrs["sampler_window_px"] == 64 and nc.attrs["hparams"] == "diffusion_demo"


def test_write_is_atomic_and_a_failed_write_keeps_the_old_store(tmp_path, forecast, monkeypatch):
    target = tmp_path / "e.zarr"
    write_ensemble(target, forecast)
    before = read_ensemble(target).members_mm

    def half_then_fail(self, store, **kwargs):
        Path(store).mkdir()
        (Path(store) / ".zgroup").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_zarr", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_ensemble(target, forecast)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.zarr"]  # no temporary left
    np.testing.assert_array_equal(read_ensemble(target).members_mm, before)
    doubled = make_ensemble(forecast.grid, np.nan_to_num(forecast.members_mm) * 2, INIT, 12, THRESHOLDS, PROV)
    write_ensemble(target, doubled)  # overwriting replaces the whole store
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.zarr"]
    np.testing.assert_array_equal(read_ensemble(target).members_mm, doubled.members_mm)


def test_a_killed_writers_store_temporary_is_removed_as_stale(tmp_path, forecast):
    """A writer killed mid-store leaves its hidden temporary directory; its name holds the
    writer's host and pid, so the next run removes it at once instead of after an hour."""
    import subprocess
    import sys

    from pqpf.io.atomic import atomic_directory, remove_stale_temporaries

    target = tmp_path / "e.zarr"
    code = ("import os, sys\nfrom pathlib import Path\nfrom pqpf.io.atomic import atomic_directory\n"
            "with atomic_directory(Path(sys.argv[1])) as tmp:\n    tmp.mkdir(); (tmp / '.zgroup').write_text('{}')\n"
            "    os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code, str(target)]).returncode == 9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".e.zarr.tmp-") and not target.exists()
    assert remove_stale_temporaries(tmp_path) == 1 and not any(tmp_path.iterdir())
    with atomic_directory(target) as tmp:  # a live writer's temporary is kept, even after hours
        tmp.mkdir()
        os.utime(tmp, (time.time() - 7200, time.time() - 7200))
        assert remove_stale_temporaries(tmp_path) == 0 and tmp.is_dir()
    assert target.is_dir()
    # another host's (a shared file system): judged by age only
    young, old = tmp_path / ".a.nc.tmp-elsewhere-12-abcd1234", tmp_path / ".b.nc.tmp-elsewhere-12-abcd1234"
    young.write_text("x")
    old.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temporaries(tmp_path) == 1 and young.exists() and not old.exists()


def test_provenance_and_size_are_read_from_the_attributes(written, forecast, tmp_path):
    from pqpf.io.ensemble_file import read_ensemble_provenance

    for path in written[1]:
        provenance, n = read_ensemble_provenance(path)
        assert provenance == forecast.provenance and n == forecast.n_members
    with pytest.raises(InputFileError) as err:
        read_ensemble_provenance(tmp_path / "none.zarr")
    _one_line(err, tmp_path / "none.zarr", "not found")


def _one_line(exc: pytest.ExceptionInfo[InputFileError], path: Path, text: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(path)) and text in message, message


def test_reading_bad_input_fails_in_one_line_naming_the_file(tmp_path, written, grid):
    missing = tmp_path / "absent.zarr"
    with pytest.raises(InputFileError) as exc:
        read_ensemble(missing)
    _one_line(exc, missing, "ensemble file not found")
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    with pytest.raises(InputFileError) as exc:
        read_ensemble(empty)
    _one_line(exc, empty, "not a readable zarr store")
    other = tmp_path / "other.nc"
    xr.Dataset({"precipitation": (("y", "x"), np.zeros(grid.shape))}).to_netcdf(other)
    with pytest.raises(InputFileError) as exc:
        read_ensemble(other)
    _one_line(exc, other, "not an ensemble file (no prob_exceed, x, y, time")
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"CDF\x01 truncated")
    with pytest.raises(InputFileError) as exc:
        read_ensemble(garbage)
    _one_line(exc, garbage, "not a readable netCDF file")


def test_a_corrupt_chunk_is_one_line_naming_the_store(tmp_path, forecast):
    target = tmp_path / "e.zarr"
    write_ensemble(target, forecast)
    chunk = next(p for p in (target / "precipitation").iterdir() if not p.name.startswith("."))
    chunk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputFileError) as exc:
        read_ensemble(target)
    _one_line(exc, target, "cannot read variable 'precipitation'")


def test_make_ensemble_refuses_bad_members_and_thresholds(grid):
    ok = np.zeros((2, *grid.shape))
    with pytest.raises(ValueError, match=r"members_mm must have shape \(M >= 1, 60, 90\), got \(60, 90\)"):
        make_ensemble(grid, ok[0], INIT, 1, (1.0,), PROV)
    with pytest.raises(ValueError, match="must be >= 0 mm, got a minimum of -0.5 mm"):
        make_ensemble(grid, ok - 0.5, INIT, 1, (1.0,), PROV)
    with pytest.raises(ValueError, match="thresholds_mm must be positive and increasing"):
        make_ensemble(grid, ok, INIT, 1, (1.0, 0.5), PROV)
    with pytest.raises(ValueError, match=r"graf_mm must have the grid's shape"):
        make_ensemble(grid, ok, INIT, 1, (1.0,), PROV, graf_mm=ok[0, :5])
    bad = EnsembleProvenance("u", "d", 1, False, sampler={"steps": [1, 2]})
    with pytest.raises(ValueError, match="attribute 'sampler_steps' must be an int, float or str, got list"):
        bad.to_attrs()


def test_ecc_mode_reads_the_levels_and_old_stores_are_ecc_q():
    assert PROV.ecc_mode == "quantile"  # ECC on, no ecc_levels: a store from before ECC-S
    strat = EnsembleProvenance("a.pt", "b.pt", seed=1, ecc=True, extra={"ecc_levels": "stratified"})
    assert strat.ecc_mode == "stratified"
    back = EnsembleProvenance.from_attrs(strat.to_attrs())
    assert back == strat and back.ecc_mode == "stratified"
    assert EnsembleProvenance("a.pt", "b.pt", seed=1, ecc=False).ecc_mode == "off"
