import datetime as dt
import gzip

import numpy as np
import pygrib
import pytest
from conftest import (
    HRRR_CROP,
    HRRR_FULL,
    MRMS_CARIB,
    MRMS_CONUS,
    MRMS_CONUS_PASS1,
    MRMS_CROP,
    NAM_TERRAIN,
)

from pqpf.errors import InputFileError
from pqpf.io.grib import read_graf, read_mrms_qpe, read_mrms_quality, read_terrain_grib


def test_graf_reader_takes_the_message_ending_at_lead(real_data):
    full = read_graf(real_data(HRRR_FULL), 12, init=dt.datetime(2020, 12, 14, 0))
    assert full.values.dtype == np.float32 and full.values.shape == (1059, 1799)
    assert full.valid_time == dt.datetime(2020, 12, 14, 12)
    # Message 2 (11-12 h) is the hourly one; the crop was cut from it at j=432, i=1282.
    crop = read_graf(real_data(HRRR_CROP), 12)
    # (the crop was repacked, so equal to packing precision)
    assert np.allclose(full.values[432:582, 1282:1482], crop.values, atol=2e-3)
    msg1 = pygrib.open(str(real_data(HRRR_FULL)))[1].values.astype(np.float32)
    assert not np.array_equal(full.values, msg1)  # not the 0-12 h total


def test_graf_reader_errors_name_the_file(real_data, tmp_path):
    path = real_data(HRRR_CROP)
    with pytest.raises(InputFileError) as err:
        read_graf(path, 6)
    assert str(path) in str(err.value) and "lead 6 h" in str(err.value)
    with pytest.raises(InputFileError, match="initialised 2020121400, expected 2020121412"):
        read_graf(path, 12, init=dt.datetime(2020, 12, 14, 12))
    with pytest.raises(InputFileError, match="file not found"):
        read_graf(tmp_path / "missing.grb2", 12)


def test_mrms_conus_reads_with_grid_from_definition(real_data):
    field = read_mrms_qpe(real_data(MRMS_CONUS), valid=dt.datetime(2022, 8, 9, 15))
    assert field.values.shape == (3500, 7000)
    assert field.grid.x0 == pytest.approx(-129.995) and field.grid.y0 == pytest.approx(54.995)
    assert field.grid.dx == pytest.approx(0.01) and field.grid.dy == pytest.approx(-0.01)
    assert float(np.nanmax(field.values)) == pytest.approx(65.3, abs=1e-4)
    assert np.nanmin(field.values) == 0.0


def test_mrms_negative_sentinels_become_missing(real_data):
    path = real_data(MRMS_CARIB)
    raw = pygrib.fromstring(gzip.decompress(path.read_bytes())).values
    field = read_mrms_qpe(path)
    assert (raw == -3).sum() > 1000
    assert np.isnan(field.values).sum() == (raw < 0).sum()
    assert np.array_equal(field.values[raw >= 0], raw[raw >= 0].astype(np.float32))
    quality = read_mrms_quality(path)  # read as a quality field: sentinels -> quality 0
    assert quality.values[raw < 0].max() == 0.0 and quality.values.max() <= 1.0


def test_mrms_product_is_checked(real_data):
    path = real_data(MRMS_CONUS_PASS1)
    with pytest.raises(InputFileError, match="holds product 209/6/30, expected 209/6/37"):
        read_mrms_qpe(path)
    assert read_mrms_qpe(path, expected_id=(209, 6, 30)).values.shape == (3500, 7000)
    with pytest.raises(InputFileError, match="valid at 2022080915, expected 2022080916"):
        read_mrms_qpe(real_data(MRMS_CROP), valid=dt.datetime(2022, 8, 9, 16))


@pytest.mark.parametrize("damage", ["truncate_gz", "truncate_grib", "garbage", "empty"])
def test_damaged_files_give_one_clear_error(real_data, tmp_path, damage):
    data = real_data(MRMS_CROP).read_bytes()
    raw = gzip.decompress(data)
    out = tmp_path / "MRMS_bad.grib2.gz"
    if damage == "truncate_gz":
        out.write_bytes(data[: len(data) // 2])
    elif damage == "truncate_grib":
        out.write_bytes(gzip.compress(raw[: len(raw) - 100]))
    elif damage == "garbage":
        out.write_bytes(gzip.compress(b"not grib at all" * 100))
    else:
        out.write_bytes(b"")
    with pytest.raises(InputFileError) as err:
        read_mrms_qpe(out)
    msg = str(err.value)
    assert msg.startswith(str(out)) and "\n" not in msg


def test_terrain_reader_finds_orography(real_data):
    field = read_terrain_grib(real_data(NAM_TERRAIN))
    assert field.values.shape == (65, 93)
    assert -20 < field.values.min() < 10 and 3000 < field.values.max() < 3400


def test_a_run_total_is_never_taken_for_the_hourly_amount(real_data, tmp_path):
    from pqpf.io.grib import _split_messages

    path = real_data(HRRR_FULL)
    first = _split_messages(path.read_bytes(), path)[0]  # the 0-12 h accumulation
    only_total = tmp_path / "total_only.grb2"
    only_total.write_bytes(first)
    with pytest.raises(InputFileError, match="accumulated over 12 h, not 1 h"):
        read_graf(only_total, 12)
