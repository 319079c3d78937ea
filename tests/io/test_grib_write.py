import datetime as dt
import gzip

import numpy as np
import pygrib
import pytest

from pqpf.grid import LATLON, Grid, graf_like_grid
from pqpf.io.grib import read_graf, read_grib_messages, read_mrms_qpe, read_mrms_quality, read_terrain_grib
from pqpf.io.grib_write import (
    MRMS_QPE_PASS2_ID,
    MRMS_QUALITY_ID,
    encode_mrms_grib2,
    static_product_gzipper,
    write_graf_grib2,
    write_mrms_grib2_gz,
    write_terrain_grib2,
)

INIT = dt.datetime(2024, 6, 1, 12)
# A 0.01 degree MRMS-like grid (first row north, centres on x.xx5) on the MRMS earth.
MRMS_SMALL = Grid(LATLON, 300, 400, -108.995, 41.995, 0.01, -0.01,
                  earth_a=6378160.0, earth_b=6356775.0)


def _rain(shape, seed=0):
    rng = np.random.default_rng(seed)
    rain = np.where(rng.random(shape) < 0.2, rng.gamma(0.5, 4.0, shape), 0.0)
    return rain.astype(np.float32)


@pytest.mark.parametrize("name", ["demo", "conus"])
def test_graf_file_round_trips_grid_times_and_values(tmp_path, name):
    grid = graf_like_grid(name)
    rain = _rain(grid.shape)
    rain[0, 0], rain[-1, -1] = 55.0, 0.001
    path = tmp_path / "graf.grb2"
    write_graf_grib2(path, grid, rain, INIT, 6)
    field = read_graf(path, 6, init=INIT)
    assert field.grid.same_as(grid)  # default tolerance: the grid survives exactly
    assert field.init_time == INIT and field.valid_time == INIT + dt.timedelta(hours=6)
    # rounded to 0.001 mm, then packed with a step of at most 0.001 mm
    np.testing.assert_allclose(field.values, rain, rtol=0, atol=1e-3)
    assert field.values[0, 0] == pytest.approx(55.0, abs=5e-4)
    assert field.attrs["grib_id"] == (0, 1, 8)


def test_graf_message_is_a_one_hour_accumulation_on_lambert_3_30(tmp_path):
    grid = graf_like_grid("demo")
    path = tmp_path / "graf.grb2"
    write_graf_grib2(path, grid, _rain(grid.shape), INIT, 12)
    (msg,) = read_grib_messages(path)
    assert msg["gridDefinitionTemplateNumber"] == 30
    assert msg["productDefinitionTemplateNumber"] == 8
    assert msg["typeOfStatisticalProcessing"] == 1 and msg["lengthOfTimeRange"] == 1
    assert msg["forecastTime"] == 11 and msg["stepRange"] == "11-12"
    assert (msg["Latin1InDegrees"], msg["Latin2InDegrees"], msg["LaDInDegrees"]) == (38.5, 38.5, 38.5)
    assert msg["LoVInDegrees"] == 262.5
    assert (msg["DxInMetres"], msg["DyInMetres"]) == (4000, 4000)
    assert msg["jScansPositively"] == 1 and msg["iScansNegatively"] == 0
    assert msg["shapeOfTheEarth"] == 6
    assert msg["typeOfLevel"] == "surface"


def test_mrms_file_keeps_sentinels_grid_and_product(tmp_path):
    qpe = np.round(_rain(MRMS_SMALL.shape, 1), 1)
    qpe[:20] = -3.0
    qpe[50, 60] = 87.3
    path = tmp_path / "MRMS_MultiSensor_QPE_01H_Pass2_00.00_20240601-120000.grib2.gz"
    write_mrms_grib2_gz(path, MRMS_SMALL, qpe, INIT, MRMS_QPE_PASS2_ID)
    raw = gzip.decompress(path.read_bytes())
    msg = pygrib.fromstring(raw)
    assert msg["longitudeOfFirstGridPointInDegrees"] == pytest.approx(251.005, abs=1e-6)  # 0..360
    assert msg["latitudeOfFirstGridPointInDegrees"] == pytest.approx(41.995, abs=1e-6)
    assert msg["jScansPositively"] == 0 and msg["shapeOfTheEarth"] == 2
    assert msg["gridDefinitionTemplateNumber"] == 0
    assert np.array_equal(msg.values == -3.0, qpe == -3.0)  # sentinels are exact values
    field = read_mrms_qpe(path, expected_id=(209, 6, 37), valid=INIT)
    assert field.grid.same_as(MRMS_SMALL)
    assert np.isnan(field.values[:20]).all()
    # values already at 0.1 mm decode within half a packing step (<= 0.05 mm)
    np.testing.assert_allclose(field.values[20:], qpe[20:], rtol=0, atol=0.05)
    assert field.values[50, 60] == pytest.approx(87.3, abs=0.05)


def test_static_product_gzipper_changes_only_the_reference_time(tmp_path):
    quality = np.clip(np.linspace(-0.2, 1.2, MRMS_SMALL.nx)[None, :].repeat(MRMS_SMALL.ny, 0), 0, 1)
    message = encode_mrms_grib2(MRMS_SMALL, quality, INIT, MRMS_QUALITY_ID, decimals=2)
    gzipped = static_product_gzipper(message)
    later = INIT + dt.timedelta(days=40, hours=7)
    path = tmp_path / "MRMS_RadarAccumulationQualityIndex_01H_00.00_20240711-190000.grib2.gz"
    path.write_bytes(gzipped(later))
    # a two-member gzip stream that decompresses to the message encoded at that time
    assert gzip.decompress(path.read_bytes()) == encode_mrms_grib2(
        MRMS_SMALL, quality, later, MRMS_QUALITY_ID, decimals=2)
    field = read_mrms_quality(path, valid=later)
    assert field.grid.same_as(MRMS_SMALL)
    np.testing.assert_allclose(field.values, quality, rtol=0, atol=0.01)
    assert field.values.min() == 0.0 and field.values.max() == pytest.approx(1.0, abs=0.005)


def test_terrain_is_written_as_orography(tmp_path):
    grid = graf_like_grid("demo")
    height = np.random.default_rng(2).uniform(0.0, 3600.0, grid.shape)
    path = tmp_path / "terrain.grb2"
    write_terrain_grib2(path, grid, height)
    (msg,) = read_grib_messages(path)
    assert msg["shortName"] == "orog" and msg["typeOfLevel"] == "surface"
    assert (msg["discipline"], msg["parameterCategory"], msg["parameterNumber"]) == (0, 3, 5)
    field = read_terrain_grib(path)
    assert field.grid.same_as(grid)
    np.testing.assert_allclose(field.values, height, rtol=0, atol=0.1)


def test_writers_are_deterministic_and_leave_no_temporaries(tmp_path):
    grid = graf_like_grid("demo")
    rain = _rain(grid.shape, 4)
    a, b = tmp_path / "a.grb2", tmp_path / "b.grb2"
    write_graf_grib2(a, grid, rain, INIT, 1)
    write_graf_grib2(b, grid, rain, INIT, 1)
    write_graf_grib2(b, grid, rain, INIT, 1)  # replaces an existing file
    assert a.read_bytes() == b.read_bytes()
    write_mrms_grib2_gz(tmp_path / "m1.gz", MRMS_SMALL, np.zeros(MRMS_SMALL.shape), INIT, MRMS_QPE_PASS2_ID)
    write_mrms_grib2_gz(tmp_path / "m2.gz", MRMS_SMALL, np.zeros(MRMS_SMALL.shape), INIT, MRMS_QPE_PASS2_ID)
    assert (tmp_path / "m1.gz").read_bytes() == (tmp_path / "m2.gz").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.grb2", "b.grb2", "m1.gz", "m2.gz"]


def test_writers_reject_bad_input_with_what_they_got(tmp_path):
    grid = graf_like_grid("demo")
    with pytest.raises(ValueError, match=r"shape \(10, 10\), the grid is \(200, 250\)"):
        write_graf_grib2(tmp_path / "x.grb2", grid, np.zeros((10, 10)), INIT, 1)
    bad = np.zeros(grid.shape)
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        write_graf_grib2(tmp_path / "x.grb2", grid, bad, INIT, 1)
    with pytest.raises(ValueError, match="must not be negative"):
        write_graf_grib2(tmp_path / "x.grb2", grid, np.full(grid.shape, -1.0), INIT, 1)
    with pytest.raises(ValueError, match="lead_h must be at least 1"):
        write_graf_grib2(tmp_path / "x.grb2", grid, np.zeros(grid.shape), INIT, 0)
    with pytest.raises(ValueError, match="need a Lambert"):
        write_terrain_grib2(tmp_path / "x.grb2", MRMS_SMALL, np.zeros(MRMS_SMALL.shape))
    with pytest.raises(ValueError, match="need a latitude/longitude"):
        write_mrms_grib2_gz(tmp_path / "x.gz", grid, np.zeros(grid.shape), INIT, MRMS_QPE_PASS2_ID)
    assert not any(tmp_path.iterdir())
