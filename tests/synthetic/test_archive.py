"""The archive writer: file layout, config.ini, formats read back, determinism, reruns.

Most use ``small_archive``: a 64 x 80 piece of the demo grid over 37 hours across the
2024040512 switch between the old and the new GRAF archive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import shutil
from pathlib import Path

import numpy as np
import pygrib
import pytest

from pqpf.config import PathsConfig, load_config
from pqpf.errors import UsageError
from pqpf.grid import graf_like_grid
from pqpf.io.grib import read_graf, read_grib_messages, read_mrms_qpe, read_mrms_quality, read_terrain_grib
from pqpf.layout import graf_archive_path, graf_laptop_path, mrms_raw_path
from pqpf.synthetic import WeatherParams, generate_archive, mrms_grid_for

QPE = "MultiSensor_QPE_01H_Pass2_00.00"
RQI = "RadarAccumulationQualityIndex_01H_00.00"
# A 64 x 80 piece of the demo grid keeps the archive tests fast. Its first point is not
# on GRIB's micro-degree lattice, so it reads back a few cm off (the named grids are exact).
SMALL = graf_like_grid("demo").subgrid(68, 132, 85, 165)
# Across the 2024040512 archive switch: inits 2024040512 (old), 2024040600, 2024040612 (new).
START, END = dt.datetime(2024, 4, 5, 6), dt.datetime(2024, 4, 6, 18)
LEADS = (1, 6)


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "archive"
    config = generate_archive(out, START, END, LEADS, "demo", seed=3, model_grid=SMALL)
    return out, config


def _same_grid_to_grib_precision(a, b):
    """Equal grids, the first point allowed to differ by GRIB's micro-degree rounding."""
    moved = dataclasses.replace(b, x0=a.x0, y0=a.y0)
    return a.same_as(moved) and abs(a.x0 - b.x0) < 0.1 and abs(a.y0 - b.y0) < 0.1


def _hours(a, b):
    return [a + dt.timedelta(hours=h) for h in range(int((b - a).total_seconds() // 3600) + 1)]


# ---- layout and config ------------------------------------------------------------------


def test_archive_holds_exactly_the_files_layout_names(small_archive):
    out, config = small_archive
    inits = [dt.datetime(2024, 4, 5, 12), dt.datetime(2024, 4, 6, 0), dt.datetime(2024, 4, 6, 12)]
    expected = {out / "config.ini", config.paths.graf_terrain_grib}
    expected |= {graf_archive_path(config, i, lead) for i in inits for lead in LEADS}
    expected |= {mrms_raw_path(config, p, t) for p in (QPE, RQI) for t in _hours(START, END)}
    assert {p for p in out.rglob("*") if p.is_file()} == expected
    # the literal names: old archive up to the switch, unpadded lead, MRMS names
    assert (out / "graf/hdo-graflr_conus/20240405/12/grid.hdo-graflr_conus.20240405T180000Z."
            "20240405T120000Z.PT6H.CONUS@4km.APCP.SFC.grb2").is_file()
    assert (out / "graf/hdo-graf_conus/20240406/00/grid.hdo-graf_conus.20240406T010000Z."
            "20240406T000000Z.PT1H.CONUS@4km.APCP.SFC.grb2").is_file()
    assert (out / "mrms_raw/MultiSensor_QPE_01H_Pass2_00.00/20240405/"
            "MRMS_MultiSensor_QPE_01H_Pass2_00.00_20240405-060000.grib2.gz").is_file()
    assert (out / "mrms_raw/RadarAccumulationQualityIndex_01H_00.00/20240406/"
            "MRMS_RadarAccumulationQualityIndex_01H_00.00_20240406-180000.grib2.gz").is_file()
    # the laptop layout of the config is the archive itself
    assert graf_laptop_path(config, inits[0], 6) == graf_archive_path(config, inits[0], 6)


def test_config_loads_with_every_path_inside_the_archive_and_relative(small_archive, tmp_path):
    out, config = small_archive
    assert load_config(out / "config.ini") == config
    for f in dataclasses.fields(PathsConfig):
        value = getattr(config.paths, f.name)
        if isinstance(value, Path):
            assert value.is_relative_to(out.resolve()), f.name
    assert config.training.hparams_name == "tiny"
    assert config.terrain.smoothing_sigma_px == 8.0
    assert config.patches.cycles == (0, 12) and config.patches.previous_year is False
    assert config.patches.ndays_train == 1 and config.graf.lead_max_h >= max(LEADS)
    assert config.patches.patches_per_init == 40  # the configuration's default unless asked
    assert config.paths.graf_archive_switch == dt.datetime(2024, 4, 5, 12)
    # relative paths: a moved archive's config points into its new place
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(out / "config.ini", moved / "config.ini")
    assert load_config(moved / "config.ini").paths.mrms_raw_dir == moved.resolve() / "mrms_raw"


# ---- formats -------------------------------------------------------------------------------


def test_graf_files_read_back_on_the_model_grid_with_their_times(small_archive):
    _, config = small_archive
    init = dt.datetime(2024, 4, 6, 0)
    for lead in LEADS:
        field = read_graf(graf_archive_path(config, init, lead), lead, init=init)
        assert _same_grid_to_grib_precision(field.grid, SMALL)
        assert field.valid_time == init + dt.timedelta(hours=lead)
        assert np.isfinite(field.values).all() and field.values.min() >= 0.0


def test_mrms_files_read_back_with_product_ids_sentinels_and_quality(small_archive):
    _, config = small_archive
    when = dt.datetime(2024, 4, 6, 3)
    mrms = mrms_grid_for("demo", SMALL)
    qpe = read_mrms_qpe(mrms_raw_path(config, QPE, when), expected_id=(209, 6, 37), valid=when)
    quality = read_mrms_quality(mrms_raw_path(config, RQI, when), valid=when)
    assert qpe.grid.same_as(mrms) and quality.grid.same_as(mrms)
    assert qpe.attrs["grib_id"] == (209, 6, 37)
    raw = pygrib.fromstring(gzip.decompress(mrms_raw_path(config, QPE, when).read_bytes()))
    values = raw.values
    assert raw["longitudeOfFirstGridPointInDegrees"] > 180.0  # written 0..360, like MRMS
    assert round(raw["latitudeOfFirstGridPointInDegrees"] * 1000) % 10 == 5  # x.xx5 lattice
    assert set(np.unique(values[values < 0])) == {-3.0}
    assert (values == -3.0).sum() > 100  # beyond radar range exists
    assert (quality.values[values == -3.0] == 0.0).all()
    assert (values[quality.values > 0.0] >= 0.0).all()
    assert 0.0 <= quality.values.min() and quality.values.max() <= 1.0
    assert np.array_equal(np.isnan(qpe.values), values == -3.0)


def test_terrain_grib_reads_on_the_model_grid(small_archive):
    _, config = small_archive
    terrain = read_terrain_grib(config.paths.graf_terrain_grib)
    assert _same_grid_to_grib_precision(terrain.grid, SMALL)
    assert 0.0 <= terrain.values.min() and terrain.values.max() < 3700.0
    assert read_grib_messages(config.paths.graf_terrain_grib)[0]["shortName"] == "orog"


# ---- determinism and reruns -------------------------------------------------------------


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_identical_bytes_and_a_longer_run_repeats_them(small_archive, tmp_path):
    out, _ = small_archive
    short_end = dt.datetime(2024, 4, 5, 17)
    again = tmp_path / "again"
    generate_archive(again, START, short_end, LEADS, "demo", seed=3, model_grid=SMALL)
    mine, theirs = _files(again), _files(out)
    shared = [k for k in mine if k.name != "config.ini"]
    assert len(shared) == 12 * 2 + 2 + 1  # 12 hours of MRMS, init 12Z x 2 leads, terrain
    for key in shared:
        assert mine[key] == theirs[key], key


def test_another_seed_gives_other_weather(small_archive, tmp_path):
    out, config = small_archive
    other = generate_archive(tmp_path / "other", START, START + dt.timedelta(hours=8), (6,),
                             "demo", seed=4, model_grid=SMALL)
    init = dt.datetime(2024, 4, 5, 12)
    a = read_graf(graf_archive_path(config, init, 6), 6).values
    b = read_graf(graf_archive_path(other, init, 6), 6).values
    assert not np.array_equal(a, b)
    ta = read_terrain_grib(config.paths.graf_terrain_grib).values
    tb = read_terrain_grib(other.paths.graf_terrain_grib).values
    assert np.abs(ta - tb).mean() > 100.0


def test_rerun_keeps_existing_files_and_completes_missing_ones(small_archive, tmp_path):
    out, config = small_archive
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victim = mrms_raw_path(load_config(copy / "config.ini"), QPE, dt.datetime(2024, 4, 6, 2))
    victim.unlink()
    kept = copy / "static" / "GRAF_CONUS_terrain.grb2"
    kept.write_bytes(b"placeholder")
    generate_archive(copy, START, END, LEADS, "demo", seed=3, model_grid=SMALL)
    assert victim.read_bytes() == (out / victim.relative_to(copy)).read_bytes()
    assert kept.read_bytes() == b"placeholder"  # existing files are not rewritten
    generate_archive(copy, START, END, LEADS, "demo", seed=3, overwrite=True, model_grid=SMALL)
    assert kept.read_bytes() == config.paths.graf_terrain_grib.read_bytes()



@pytest.mark.parametrize("kwargs, words", [
    ({"end": START - dt.timedelta(hours=1)}, "before start"),
    ({"leads_h": (0, 6)}, "leads must be"),
    ({"cycles": (24,)}, "cycles must be"),
    ({"grid_name": "europe"}, "grid must be"),
])
def test_bad_arguments_raise_usage_errors_before_writing(tmp_path, kwargs, words):
    args = {"out_dir": tmp_path / "x", "start": START, "end": END, "leads_h": LEADS, **kwargs}
    with pytest.raises(UsageError, match=words):
        generate_archive(**args)
    assert not (tmp_path / "x").exists()


def test_an_output_path_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        generate_archive(tmp_path / "file", START, END, LEADS)


def test_weather_params_reach_the_archive(small_archive, tmp_path):
    # no wet area and no QPE noise: every covered MRMS point of the hour is exactly 0 mm,
    # where the default weather rains on that hour
    out, config = small_archive
    dry = dataclasses.replace(WeatherParams(), wet_fraction_max=0.0, drizzle_max_mm=0.0)
    when = dt.datetime(2024, 4, 5, 9)
    other = generate_archive(tmp_path / "dry", START, when, (1,), "demo", seed=3, model_grid=SMALL, params=dry)
    qpe = read_mrms_qpe(mrms_raw_path(other, QPE, when)).values
    wet = read_mrms_qpe(mrms_raw_path(config, QPE, when)).values
    assert np.nanmax(qpe) == 0.0 and np.nanmax(wet) > 1.0
    assert np.array_equal(np.isnan(qpe), np.isnan(wet))  # same radars
