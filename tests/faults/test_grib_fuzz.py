"""The GRIB fuzzer (tests/faults/grib_fuzz.py) keeps issue 11's table true: every mutated
real file either decodes or fails with one line naming it; no traceback, hang, runaway
allocation or crash. ``PQPF_FUZZ_CASES``/``PQPF_FUZZ_SEED``/``PQPF_FUZZ_BIG`` make the
campaign longer (see the fuzzer's docstring)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HRRR_CROP, HRRR_FULL, MRMS_CARIB, MRMS_CROP, NAM_ETA, NAM_TERRAIN

FUZZER = Path(__file__).with_name("grib_fuzz.py")


@pytest.mark.slow  # ~25 s for 300 cases on 2 shared cores
def test_fuzzed_grib_files_decode_or_fail_in_one_line(real_data, tmp_path):
    for name in (MRMS_CROP, MRMS_CARIB, HRRR_CROP, HRRR_FULL, NAM_ETA, NAM_TERRAIN):
        real_data(name)  # present and matching the pinned checksums
    report_path = tmp_path / "fuzz.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(FUZZER), "--data", str(real_data.base), "--json", str(report_path)],
        capture_output=True, text=True, timeout=1800, env=env,
        cwd=Path(__file__).resolve().parents[2])
    print(proc.stdout)  # the counts table (shown with pytest -s or on failure)
    report = json.loads(report_path.read_text())
    counts = report["counts"]
    assert report["cases"] == int(os.environ.get("PQPF_FUZZ_CASES", "300"))
    bad = {k: counts[k] for k in ("traceback", "hang", "over-memory", "crash")}
    assert bad == dict.fromkeys(bad, 0), proc.stdout
    assert counts["decoded"] + counts["clean error"] == report["cases"]
    assert counts["decoded"] > 0 and counts["clean error"] > 0  # both kinds of mutation occur
    assert report["noisy"] == 0, proc.stdout  # nothing from the C library reached stderr
    assert proc.returncode == 0, proc.stderr[-2000:]
