import datetime as dt
import gzip
import os

import numpy as np
import pytest
import xarray as xr
from conftest import MRMS_CROP
from mrms_archive import (
    QPE_PRODUCT,
    QUALITY_PRODUCT,
    count_builds,
    small_lambert_grid,
    write_config,
    write_hour,
)

from pqpf.cli.save_remapped_mrms import main
from pqpf.io.grib import read_mrms_qpe, read_mrms_quality
from pqpf.io.netcdf import read_grid_netcdf
from pqpf.layout import mrms_raw_path, mrms_remapped_path, remap_weights_dir
from pqpf.remapping import RegridWeights, cached_weights
from pqpf.stages.remap import remap_range

HOURS = [dt.datetime(2022, 8, 9, h) for h in (14, 15, 16)]
GRID = small_lambert_grid(36.7, -81.0, ny=24, nx=30)


@pytest.fixture
def archive(real_data, tmp_path):
    crop = real_data(MRMS_CROP)
    config = write_config(tmp_path / "site", GRID)
    for k, valid in enumerate(HOURS):
        write_hour(config, crop, valid, seed=k)
    return config


def _run(config, *args):
    return main([*args, "--config", str(config.source), "-q"])


def _all_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_cli_writes_cf_files_equal_to_direct_remap(archive, capsys):
    assert _run(archive, "2022080914", "2022080916") == 0
    assert "3 written, 0 skipped (already there), 0 failed" in capsys.readouterr().out
    cache = list(remap_weights_dir(archive).glob("*.npz"))
    assert len(cache) == 1
    for valid in HOURS:
        path = mrms_remapped_path(archive, valid)
        ds = xr.open_dataset(path)
        assert set(ds.data_vars) >= {"precipitation", "quality", "valid_fraction"}
        assert ds["lat"].shape == GRID.shape and ds["lon"].shape == GRID.shape
        assert ds["precipitation"].attrs["grid_mapping"] == "lambert_conformal_conic"
        assert ds["lambert_conformal_conic"].attrs["grid_mapping_name"] == "lambert_conformal_conic"
        assert ds["precipitation"].attrs["units"] == "mm"
        assert ds.attrs["remap_method"] == "conservative"
        assert ds.attrs["source_qpe_file"] == mrms_raw_path(archive, QPE_PRODUCT, valid).name
        assert ds["precipitation"].encoding.get("zlib") is True
        assert ds["time"].values == np.datetime64(valid)
        # values: exactly what the weights give when applied directly
        qpe = read_mrms_qpe(mrms_raw_path(archive, QPE_PRODUCT, valid), valid=valid)
        quality = read_mrms_quality(mrms_raw_path(archive, QUALITY_PRODUCT, valid), valid=valid)
        direct = RegridWeights.build(qpe.grid, GRID, "conservative").apply(qpe.values, quality.values)
        back = read_grid_netcdf(path)
        assert back.grid.same_as(GRID)
        assert np.array_equal(back.data["precipitation"], direct.precipitation, equal_nan=True)
        assert np.array_equal(back.data["quality"], direct.quality)
        assert np.array_equal(back.data["valid_fraction"], direct.valid_fraction)
        assert ds.attrs["remap_weights_fingerprint"] == cached_weights(
            remap_weights_dir(archive), qpe.grid, GRID).fingerprint
        ds.close()
    # the re-encoded hours have missing blocks and real rain; the real hour is complete
    hour14 = read_grid_netcdf(mrms_remapped_path(archive, HOURS[0]))
    assert np.isnan(hour14.data["precipitation"]).any() and np.nanmax(hour14.data["precipitation"]) > 5
    assert (hour14.data["valid_fraction"] < 1).any()
    assert 0 <= hour14.data["quality"].min() and hour14.data["quality"].max() <= 1
    hour15 = read_grid_netcdf(mrms_remapped_path(archive, HOURS[1]))
    assert (hour15.data["valid_fraction"] == 1).all()
    assert not [p for p in _all_files(archive.source.parent) if p.name.startswith(".")]


def test_rerun_skips_and_overwrite_rewrites(archive, capsys):
    assert _run(archive, "2022080914", "2022080916") == 0
    paths = [mrms_remapped_path(archive, v) for v in HOURS]
    for p in paths:
        os.utime(p, (1_000_000_000, 1_000_000_000))
    capsys.readouterr()
    assert _run(archive, "2022080914", "2022080916") == 0
    assert "0 written, 3 skipped (already there), 0 failed" in capsys.readouterr().out
    assert all(p.stat().st_mtime == 1_000_000_000 for p in paths)
    assert _run(archive, "2022080915", "2022080915", "--overwrite") == 0
    assert "1 written, 0 skipped" in capsys.readouterr().out
    assert [p.stat().st_mtime > 1_000_000_000 for p in paths] == [False, True, False]


def test_missing_and_corrupt_hours_are_counted_and_named(archive, real_data, capsys):
    crop = real_data(MRMS_CROP)
    # 17Z: no file at all; 18Z: QPE truncated; 19Z: quality missing
    write_hour(archive, crop, dt.datetime(2022, 8, 9, 18), seed=7)
    qpe18 = mrms_raw_path(archive, QPE_PRODUCT, dt.datetime(2022, 8, 9, 18))
    qpe18.write_bytes(qpe18.read_bytes()[:300])
    write_hour(archive, crop, dt.datetime(2022, 8, 9, 19), seed=8, products=(QPE_PRODUCT,))
    status = _run(archive, "2022080914", "2022080919")
    err = capsys.readouterr().err
    assert status == 1
    summary = [line for line in err.splitlines() if line.startswith("save_remapped_mrms.py:")]
    assert len(summary) == 1
    line = summary[0]
    assert "3 written, 0 skipped (already there), 3 failed" in line
    assert "2022080917: " in line and str(mrms_raw_path(archive, QPE_PRODUCT, dt.datetime(2022, 8, 9, 17))) in line
    assert "2022080918: " in line and str(qpe18) in line and "gzip" in line
    assert "2022080919: " in line and QUALITY_PRODUCT in line and "file not found" in line
    for valid in HOURS:
        assert mrms_remapped_path(archive, valid).is_file()
    for h in (17, 18, 19):
        assert not mrms_remapped_path(archive, dt.datetime(2022, 8, 9, h)).exists()
    assert not [p for p in _all_files(archive.source.parent) if p.name.startswith(".")]


def test_weights_are_built_once_per_run_and_reused_by_the_next(archive, monkeypatch):
    calls = count_builds(monkeypatch)
    report = remap_range(archive, HOURS[0], HOURS[-1])
    assert len(report.written) == 3 and len(calls) == 1
    report = remap_range(archive, HOURS[0], HOURS[-1], method="bilinear", overwrite=True)
    assert len(report.written) == 3 and len(calls) == 2
    report = remap_range(archive, HOURS[0], HOURS[-1], overwrite=True)
    assert len(report.written) == 3 and len(calls) == 2  # loaded from the cache
    ds = read_grid_netcdf(mrms_remapped_path(archive, HOURS[0]))
    assert ds.attrs["remap_method"] == "conservative"


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
def test_method_option_is_used(archive, method):
    assert _run(archive, "2022080915", "2022080915", "--method", method) == 0
    ds = read_grid_netcdf(mrms_remapped_path(archive, HOURS[1]))
    assert ds.attrs["remap_method"] == method
    qpe = read_mrms_qpe(mrms_raw_path(archive, QPE_PRODUCT, HOURS[1]))
    direct = RegridWeights.build(qpe.grid, GRID, method).apply(qpe.values)
    assert np.array_equal(ds.data["precipitation"], direct.precipitation, equal_nan=True)


def test_usage_errors_are_one_line(tmp_path, capsys):
    config = write_config(tmp_path / "site", GRID)
    assert _run(config, "2022080916", "2022080914") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "END 2022080914 is before BEGIN 2022080916" in err[0]
    with pytest.raises(SystemExit) as exit_:  # argparse rejects an impossible date itself
        _run(config, "2022023100", "2022030100")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2022023100" in err[0]
    good = config.source.read_text()
    config.source.write_text(good.replace("remap_method = conservative", "remap_method = patchy"))
    assert _run(config, "2022080914", "2022080916") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "[mrms] remap_method must be one of conservative, nearest, bilinear; got 'patchy'" in err[0]
    config.source.write_text(good)
    config.paths.terrain_file.unlink()
    assert _run(config, "2022080914", "2022080916") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "terrain_height.py" in err[0] and str(config.paths.terrain_file) in err[0]


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("BEGIN", "END", "--method", "--overwrite", "--download", "--config", "conservative"):
        assert option in out


def test_quality_sentinels_and_missing_qpe_give_quality_zero(archive):
    remap_range(archive, HOURS[0], HOURS[0])
    qpe = read_mrms_qpe(mrms_raw_path(archive, QPE_PRODUCT, HOURS[0]))
    raw_q = gzip.decompress(mrms_raw_path(archive, QUALITY_PRODUCT, HOURS[0]).read_bytes())
    assert raw_q[:4] == b"GRIB"
    out = read_grid_netcdf(mrms_remapped_path(archive, HOURS[0])).data
    # cells with no valid MRMS at all have quality exactly 0 and NaN precipitation
    none_valid = out["valid_fraction"] == 0
    assert none_valid.sum() > 0
    assert (out["quality"][none_valid] == 0).all() and np.isnan(out["precipitation"][none_valid]).all()
    assert np.isnan(qpe.values).any()


def test_cli_output_matches_the_known_good_file(archive):
    from conftest import assert_matches_golden

    assert _run(archive, "2022080915", "2022080915") == 0
    assert_matches_golden(mrms_remapped_path(archive, HOURS[1]), "mrms_crop_conservative_2022080915.nc")


def test_an_archive_without_a_quality_product_counts_every_cell_with_data(archive, capfd):
    """Issue 10 item 3: an empty quality_product was accepted, then failed on the path
    'mrms_raw/.../MRMS__....grib2.gz'. Now the QPE alone is remapped with quality 1 wherever
    it has data, the same precipitation as with the quality file, and it is said once."""
    from pqpf.config import load_config

    assert _run(archive, "2022080914", "2022080916") == 0
    with_quality = {v: read_grid_netcdf(mrms_remapped_path(archive, v), ["precipitation", "quality"]) for v in HOURS}
    text = archive.source.read_text().replace(f"quality_product = {QUALITY_PRODUCT}", "quality_product =")
    assert text != archive.source.read_text()
    archive.source.write_text(text)
    config = load_config(archive.source)
    for valid in HOURS:  # only the QPE files are there
        mrms_raw_path(archive, QUALITY_PRODUCT, valid).unlink()
    capfd.readouterr()
    assert main(["2022080914", "2022080916", "--config", str(config.source), "--overwrite"]) == 0
    out, err = capfd.readouterr()
    assert "3 written, 0 skipped (already there), 0 failed" in out
    said = [line for line in err.splitlines() if "quality_product is empty" in line]
    assert len(said) == 1 and "every cell with a" in said[0] and "MRMS__" not in err
    for valid in HOURS:
        got = read_grid_netcdf(mrms_remapped_path(config, valid), ["precipitation", "quality", "valid_fraction"])
        np.testing.assert_allclose(got.data["precipitation"], with_quality[valid].data["precipitation"],
                                   rtol=1e-6, equal_nan=True)
        vf = got.data["valid_fraction"]
        np.testing.assert_allclose(got.data["quality"], vf, atol=1e-6)  # 1 where data, 0 where none
        assert got.attrs["source_quality_file"] == "none"
