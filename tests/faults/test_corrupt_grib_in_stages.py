"""Corrupt GRIB inputs met by the stages, through their command-line entry points
(issue 11 items 4 and 13): the error policy of each stage holds.

- remapping a range: a corrupt MRMS hour is counted as failed, the later hours are still
  written, and the command exits 1 (its policy for a range with failures);
- patch extraction: a corrupt GRAF init is skipped and counted, the stage finishes and
  exits 0 (its policy for missing or unreadable inits);
- the plot script: one line on stderr naming the file, exit 1.

The corruptions are ones that escaped the error policy before (a traceback from date
parsing, from pygrib, from pyproj). The archive is a small synthetic one (~10 s to make).
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import struct

import pytest
from conftest import MRMS_CROP
from faults.grib_fuzz import mutated
from mrms_archive import QPE_PRODUCT, small_lambert_grid, write_config, write_hour

from pqpf.cli import plot_graf_mrms, save_patched_graf_mrms, save_remapped_mrms, terrain_height
from pqpf.config import load_config
from pqpf.grid import graf_like_grid
from pqpf.io.patchfile import read_patch_header
from pqpf.layout import graf_archive_path, mrms_raw_path, mrms_remapped_path, patch_file_path

LEAD = 3
INIT = dt.datetime(2025, 7, 4, 12)
BAD_INIT = dt.datetime(2025, 7, 2, 12)
# Metadata corruptions, as {(section, octet): bytes}: each gave a traceback before.
CORRUPTIONS = {
    "date": {(1, 16): b"\xbd"},                                   # hour 189: strptime fails
    "time-ranges": {(4, 42): b"\xfe"},                            # arrays where numbers were
    "projection": {(3, 66): struct.pack(">I", 0), (3, 70): struct.pack(">I", 0)},  # pyproj
}


def _corrupt(path, changes, gzipped=False):
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if gzipped else raw
    out = mutated(raw, changes)
    path.write_bytes(gzip.compress(out) if gzipped else out)


def _one_error_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# --------------------------------------------------------------------------------------
# remapping: count the hour, finish the range
# --------------------------------------------------------------------------------------


def test_a_corrupt_mrms_hour_is_counted_and_the_later_hours_are_remapped(real_data, tmp_path, capfd):
    hours = [dt.datetime(2022, 8, 9, h) for h in (14, 15, 16)]
    config = write_config(tmp_path / "site", small_lambert_grid(36.7, -81.0, ny=24, nx=30))
    for k, valid in enumerate(hours):
        write_hour(config, real_data(MRMS_CROP), valid, seed=k)
    bad = mrms_raw_path(config, QPE_PRODUCT, hours[1])
    _corrupt(bad, CORRUPTIONS["date"], gzipped=True)
    status = save_remapped_mrms.main(["2022080914", "2022080916", "--config", str(config.source), "-q"])
    assert status == 1
    err = capfd.readouterr().err
    reason = f"{bad}: corrupt GRIB content (ValueError: unconverted data remains: 00)"
    warning, summary = err.strip().splitlines()  # the hour as it failed, then the summary
    assert warning.endswith(f" WARNING 2022080915 failed: {reason}")
    assert summary == ("save_remapped_mrms.py: 2 written, 0 skipped (already there), 1 failed "
                       f"(2022080915: {reason})")
    assert mrms_remapped_path(config, hours[0]).is_file()
    assert mrms_remapped_path(config, hours[2]).is_file()  # after the corrupt hour
    assert not mrms_remapped_path(config, hours[1]).exists()


# --------------------------------------------------------------------------------------
# patch extraction and plots on a synthetic archive
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    from pqpf.synthetic import generate_archive

    root = tmp_path_factory.mktemp("corrupt") / "archive"
    small = graf_like_grid("demo").subgrid(60, 140, 70, 170)
    config = generate_archive(root, dt.datetime(2025, 7, 1, 0), INIT, (LEAD,), "demo", seed=1,
                              model_grid=small)
    text = config.source.read_text()
    for key, value in (("ndays_train", 3), ("split_block_days", 1), ("split_gap_h", 0)):
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.MULTILINE)
    config.source.write_text(text)
    cfg = ["--config", str(config.source), "-q"]
    assert terrain_height.main(cfg) == 0
    assert save_remapped_mrms.main(["2025070100", f"{INIT:%Y%m%d%H}", *cfg]) == 0
    return load_config(config.source)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_corrupt_graf_init_is_skipped_and_counted_by_patch_extraction(archive, tmp_path, capfd, kind):
    import shutil

    copy = tmp_path / "archive"
    shutil.copytree(archive.source.parent, copy, ignore=shutil.ignore_patterns("patches", "mrms_raw"))
    config = load_config(copy / "config.ini")
    bad = graf_archive_path(config, BAD_INIT, LEAD)
    _corrupt(bad, CORRUPTIONS[kind])
    assert save_patched_graf_mrms.main([f"{INIT:%Y%m%d%H}", str(LEAD), "--config", str(config.source)]) == 0
    err = capfd.readouterr().err
    assert "inits used 5/6 (skipped: 1 graf)" in err, err
    assert f"WARNING skipping {BAD_INIT:%Y%m%d%H}: {bad}: corrupt GRIB content (" in err, err
    assert "Traceback" not in err and "ECCODES" not in err
    used = [read_patch_header(patch_file_path(config, s, INIT, LEAD)).get("inits_planned", [])
            for s in ("train", "validation", "test")]
    assert f"{BAD_INIT:%Y%m%d%H}" not in sum(used, [])


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_plot_script_on_a_corrupt_graf_file_is_one_line_and_exit_1(archive, tmp_path, capfd, kind):
    import shutil

    copy = tmp_path / "archive"
    shutil.copytree(archive.source.parent, copy, ignore=shutil.ignore_patterns("patches", "mrms_raw"))
    config = load_config(copy / "config.ini")
    bad = graf_archive_path(config, BAD_INIT, LEAD)
    _corrupt(bad, CORRUPTIONS[kind])
    status = plot_graf_mrms.main([f"{BAD_INIT:%Y%m%d%H}", str(LEAD), "--config", str(config.source)])
    assert status == 1
    captured = capfd.readouterr()
    line = _one_error_line(captured.err)
    assert line.startswith(f"plot_graf_mrms.py: error: {bad}: corrupt GRIB content ("), line
    assert captured.out == ""
