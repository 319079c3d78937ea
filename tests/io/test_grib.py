import contextlib
import datetime as dt
import gzip
import os
import signal
import struct
import subprocess
import sys

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
from faults.grib_fuzz import mutated

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


# --------------------------------------------------------------------------------------
# Corrupt files (issue 11 items 2-4): one clear error, no hang, no unbounded allocation
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _deadline(seconds):
    """Fail instead of hanging: SIGALRM interrupts a Python loop that never ends."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _assert_one_line_naming(err, path, *words):
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("tail, words", [
    (b"GRIB\0\0\0\x02" + bytes(8), "declares a length of 0 octets"),        # issue 11 item 2
    (b"GRIB\0\0\0\x02" + struct.pack(">Q", 15), "declares a length of 15 octets"),
    (b"GRIB\0\0\0\x01" + bytes(8), "declares a length of 0 octets"),        # the GRIB1 form
    (b"GRIB\0\0\0\x02" + struct.pack(">Q", 10**6) + bytes(30), "truncated: declares 1000000"),
    (b"GRIB\0\0\0\x02" + struct.pack(">Q", 2**63) + bytes(30), "truncated: declares"),
    (b"GRIB\0\0\0\x07" + bytes(8), "unsupported GRIB edition 7"),
], ids=["zero", "fifteen", "grib1-zero", "beyond-end", "huge", "edition"])
def test_a_bad_length_after_a_good_message_is_one_error_not_a_hang(real_data, tmp_path, tail, words):
    path = tmp_path / "graf.grb2"
    path.write_bytes(real_data(HRRR_CROP).read_bytes() + tail)
    with _deadline(20), pytest.raises(InputFileError) as err:
        read_graf(path, 12)
    _assert_one_line_naming(err, path, "corrupt GRIB message 2 at byte 39010", words)


def test_an_end_marker_not_where_the_length_says_is_an_error(real_data, tmp_path):
    raw = real_data(HRRR_CROP).read_bytes()
    path = tmp_path / "graf.grb2"
    path.write_bytes(raw[:8] + struct.pack(">Q", len(raw) - 1) + raw[16:])
    with pytest.raises(InputFileError) as err:
        read_graf(path, 12)
    _assert_one_line_naming(err, path, "no end marker 7777 where its length (39009) says it ends")


# Each of these made ecCodes allocate gigabytes or abort the process (SIGABRT) before the
# structural checks; now each is refused from the bytes, before decoding. They run in a
# child limited to 1 GiB of address space, so a regression cannot hurt the machine.
_HRRR_HUGE = {(3, 7): struct.pack(">I", 40000 * 40000), (3, 31): struct.pack(">I", 40000),
              (3, 35): struct.pack(">I", 40000), (5, 6): struct.pack(">I", 40000 * 40000)}


@pytest.mark.parametrize("name, changes, words", [
    ("hrrr", {(5, 6): struct.pack(">I", 300_000_000)}, "300000000 packed values for 30000 grid points"),
    ("hrrr", _HRRR_HUGE, "declares 1600000000 grid points (pqpf reads at most 50000000)"),
    ("mrms", {(5, 6): struct.pack(">I", 300_000_000)}, "300000000 packed values for 500320 grid"),
    ("hrrr", {(5, 37): b"\xc8"}, "group widths in 200 bits"),
    ("hrrr", {(5, 36): b"\x50"}, "a group of 94-bit values (at most 32)"),
    ("hrrr", {(5, 47): b"\x02"}, "groups hold"),
    ("mrms", {(5, 20): b"\x03"}, "PNG depth 16 bits for 3-bit values"),
    ("mrms", {(7, 1): struct.pack(">I", 1251)}, "section 7 declares 1251 octets"),
], ids=["values", "grid", "png-values", "width-bits", "width-ref", "length-bits", "png-depth",
        "section-length"])
def test_declared_sizes_are_checked_before_decoding(real_data, tmp_path, name, changes, words):
    source = real_data(HRRR_CROP if name == "hrrr" else MRMS_CROP).read_bytes()
    raw = source if name == "hrrr" else gzip.decompress(source)
    path = tmp_path / "bad.grib2"
    path.write_bytes(mutated(raw, changes))
    reader = "read_graf(path, 12)" if name == "hrrr" else "read_mrms_qpe(path, expected_id=None)"
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from pathlib import Path\n"
        "from pqpf.errors import InputFileError\n"
        "from pqpf.io.grib import read_graf, read_mrms_qpe\n"
        f"path = Path({str(path)!r})\n"
        "try:\n"
        f"    {reader}\n"
        "    print('DECODED')\n"
        "except InputFileError as exc:\n"
        "    print('ERROR', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"child died ({proc.returncode}): {proc.stderr[-500:]}"
    assert proc.stdout.startswith(f"ERROR {path}: corrupt GRIB message 1 at byte 0: "), proc.stdout
    assert words in proc.stdout and proc.stdout.count("\n") == 1
    assert proc.stderr == ""  # nothing from the C library either


def test_a_grid_of_another_size_than_expected_is_refused_before_decoding(real_data):
    path = real_data(HRRR_CROP)
    with pytest.raises(InputFileError) as err:
        read_graf(path, 12, expected_shape=(1059, 1799))
    _assert_one_line_naming(err, path, "grid of 150 x 200 points, expected 1059 x 1799")
    assert read_graf(path, 12, expected_shape=(150, 200)).values.shape == (150, 200)
    with pytest.raises(InputFileError, match="expected 3500 x 7000"):
        read_mrms_qpe(real_data(MRMS_CROP), expected_shape=(3500, 7000))


# Metadata whose interpretation failed outside the error policy before (issue 11 item 4):
# date parsing, pygrib's missing keys, arrays where numbers were expected, pyproj.
@pytest.mark.parametrize("changes, words", [
    ({(1, 16): b"\xbd"}, "corrupt GRIB content (ValueError: unconverted data remains"),
    ({(4, 42): b"\xfe", (4, 57): b"\x90"}, "corrupt GRIB content (TypeError: "),
    ({(3, 66): struct.pack(">I", 0), (3, 70): struct.pack(">I", 0)}, "corrupt GRIB content (CRSError: "),
    ({(3, 66): struct.pack(">I", 200_000_000)}, "corrupt grid definition (standard parallels 200"),
    ({(4, 5): b"\xca"}, "section number 202 at octet"),
    ({(3, 31): struct.pack(">I", 0), (3, 7): struct.pack(">I", 0)}, "declares 0 grid points"),
], ids=["date", "time-ranges", "projection", "latitude", "section-number", "no-points"])
def test_corrupt_metadata_is_one_input_file_error_naming_the_file(real_data, tmp_path, capfd,
                                                                  changes, words):
    path = tmp_path / "graf.grb2"
    path.write_bytes(mutated(real_data(HRRR_CROP).read_bytes(), changes))
    with pytest.raises(InputFileError) as err:
        read_graf(path, 12)
    _assert_one_line_naming(err, path, words)
    assert capfd.readouterr().err == ""  # ecCodes' complaints went to the debug log
