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


# --------------------------------------------------------------------------------------
# patch extraction: empty splits (issue 10 item 4) and killed runs' leftovers (issue 11 item 7)
# --------------------------------------------------------------------------------------


def _copy(archive, tmp_path, **settings):
    import shutil

    copy = tmp_path / "archive"
    shutil.copytree(archive.source.parent, copy, ignore=shutil.ignore_patterns("patches", "mrms_raw"))
    text = (copy / "config.ini").read_text()
    for key, value in settings.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.MULTILINE)
    (copy / "config.ini").write_text(text)
    return load_config(copy / "config.ini")


def test_settings_that_leave_a_split_empty_are_refused_before_anything_is_written(archive, tmp_path, capfd):
    config = _copy(archive, tmp_path, split_block_days=30)  # one block: only train gets inits
    status = save_patched_graf_mrms.main([f"{INIT:%Y%m%d%H}", str(LEAD), "--config", str(config.source), "-q"])
    line = _one_error_line(capfd.readouterr().err)
    assert status == 1
    assert "the validation and test split would be empty" in line and "train 6, validation 0, test 0" in line
    assert "split_block_days" in line and "split_fractions" in line
    assert sorted(p.name for p in config.paths.patch_dir.iterdir()) == []  # no file, no spool


def test_the_summary_counts_inits_per_split(archive, tmp_path, capfd):
    config = _copy(archive, tmp_path)
    assert save_patched_graf_mrms.main([f"{INIT:%Y%m%d%H}", str(LEAD), "--config", str(config.source)]) == 0
    err = capfd.readouterr().err
    found = re.search(r"train \d+ from (\d+) inits .*validation \d+ from (\d+) inits .*test \d+ from (\d+) inits", err)
    assert found and sum(int(n) for n in found.groups()) == 6 and all(int(n) > 0 for n in found.groups()), err


def test_leftovers_of_killed_runs_are_removed_and_a_live_or_foreign_runs_are_kept(archive, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    config = _copy(archive, tmp_path)
    patch_dir = config.paths.patch_dir
    patch_dir.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    dead_spool = patch_dir / f".spool-{host}-{dead.pid}-ab12_c"
    dead_spool.mkdir()
    (dead_spool / "2025070100.pkl").write_bytes(b"\0" * 100_000)
    dead_tmp = patch_dir / f".GRAF_Unet_data_train_x.cPick.tmp-{host}-{dead.pid}-0123abcd"
    dead_tmp.write_bytes(b"\0" * 1000)
    live_tmp = patch_dir / f".other.tmp-{host}-{os.getpid()}-89abcdef"  # this process: alive
    live_tmp.write_bytes(b"1")
    foreign = patch_dir / ".spool-another-node-17-zz9_x"  # another host on a shared file system: fresh
    foreign.mkdir()
    assert save_patched_graf_mrms.main([f"{INIT:%Y%m%d%H}", str(LEAD), "--config", str(config.source), "-q"]) == 0
    assert not dead_spool.exists() and not dead_tmp.exists()
    assert live_tmp.exists() and foreign.exists()
    assert all(patch_file_path(config, s, INIT, LEAD).is_file() for s in ("train", "validation", "test"))


@pytest.mark.slow
def test_a_patch_job_killed_mid_run_leaves_nothing_after_the_rerun(archive, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = _copy(archive, tmp_path)
    patch_dir = config.paths.patch_dir
    cmd = [sys.executable, str(root / "save_patched_graf_mrms.py"), f"{INIT:%Y%m%d%H}", str(LEAD),
           "--config", str(config.source), "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root), PQPF_NO_VENV="1")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    deadline = time.time() + 120
    while not any(patch_dir.glob(".spool-*/*.pkl")):
        assert proc.poll() is None and time.time() < deadline, "the job ended before it could be killed"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(patch_dir.glob(".spool-*"))  # what a killed job leaves
    assert subprocess.run(cmd, env=env).returncode == 0
    assert sorted(p.name for p in patch_dir.iterdir()) == sorted(
        patch_file_path(config, s, INIT, LEAD).name for s in ("train", "validation", "test"))
