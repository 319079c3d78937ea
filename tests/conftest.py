"""Shared fixtures: the real GRIB2 files, service requirements, small helpers.

The real operational files (MRMS, HRRR, NAM) live outside the repository, in
``../shared/data/real`` beside the checkout or wherever ``$PQPF_REAL_DATA`` points;
their SHA-256 sums are pinned in ``tests/data/real_SHA256SUMS``. Tests that need them
or a real Slurm cluster or sshd skip with a reason when they are absent, except under
CI (``PQPF_CI=1``), where absence is a failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("PQPF_CI") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip the test (fail under CI) when ``condition`` is false."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _real_data_dir() -> Path | None:
    candidates = [os.environ.get("PQPF_REAL_DATA"), ROOT.parent / "shared" / "data" / "real",
                  Path("/work/shared/data/real")]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


_SUMS = dict(
    (line.split()[1], line.split()[0])
    for line in (ROOT / "tests" / "data" / "real_SHA256SUMS").read_text().splitlines()
    if line.strip()
)
_VERIFIED: set[str] = set()


class RealData:
    """Access to the pinned real files; ``real_data("mrms/NAME")`` returns a checked Path."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def __call__(self, relative: str) -> Path:
        path = self.base / relative
        require(path.is_file(), f"real data file {relative} not found under {self.base}")
        if relative not in _VERIFIED:
            want = _SUMS.get(relative)
            assert want is not None, f"{relative} is not pinned in tests/data/real_SHA256SUMS"
            got = hashlib.sha256(path.read_bytes()).hexdigest()
            assert got == want, f"{path}: sha256 {got} does not match the pinned {want}"
            _VERIFIED.add(relative)
        return path


@pytest.fixture(scope="session")
def real_data() -> RealData:
    base = _real_data_dir()
    require(base is not None, "real data directory not found (set PQPF_REAL_DATA)")
    return RealData(base)  # type: ignore[arg-type]


# Names of the real files, so tests do not repeat long strings.
MRMS_CONUS = "mrms/MRMS_MultiSensor_QPE_01H_Pass2_00.00_20220809-150000.grib2.gz"
MRMS_CONUS_PASS1 = "mrms/MRMS_MultiSensor_QPE_01H_Pass1_00.00_20220809-150000.grib2.gz"
MRMS_CARIB = "mrms/CARIB_MRMS_MultiSensor_QPE_01H_Pass2_00.00_20220809-150000.grib2.gz"
MRMS_CROP = "mrms/MRMS_MultiSensor_QPE_01H_Pass2_00.00_20220809-150000_crop_848x590.grib2.gz"
HRRR_FULL = "nwp/subset_20201214_hrrr.t00z.wrfsfcf12.grib2"
HRRR_CROP = "nwp/hrrr_20201214_t00z_f12_APCP_11-12h_crop_200x150_i1282_j432.grib2"
NAM_ETA = "nwp/eta.grb"
NAM_TERRAIN = "terrain/nam.t00z.awp21100.tm00.grib2"


@pytest.fixture(scope="session")
def slurm_available() -> bool:
    ok = shutil.which("sbatch") is not None and shutil.which("squeue") is not None
    if ok:
        import subprocess

        res = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=20)
        ok = res.returncode == 0 and "up" in res.stdout
    require(ok, "no running Slurm cluster (start one with ../shared/ci/slurm_up.sh)")
    return ok


SSHD_DIR = Path(os.environ.get("CI_SSHD_DIR", "/tmp/ci-sshd"))


@pytest.fixture(scope="session")
def sshd_dir() -> Path:
    """The loopback sshd's directory (keys, known_hosts, ssh_config)."""
    import socket

    ok = (SSHD_DIR / "ssh_config").is_file()
    if ok:
        port = int(os.environ.get("CI_SSHD_PORT", "2222"))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
        except OSError:
            ok = False
    require(ok, "no loopback sshd (start one with ../shared/ci/sshd_up.sh)")
    return SSHD_DIR


GOLDEN_DIR = ROOT / "tests" / "data" / "golden"


def assert_matches_golden(output: Path, name: str, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Compare every variable of a netCDF output with the known-good file ``name``.

    With ``PQPF_REGENERATE=<dir>`` the output is copied to ``<dir>/<name>`` for review
    (copy it into tests/data/golden/ to accept it) and the comparison is skipped.
    """
    import netCDF4
    import numpy as np

    regenerate = os.environ.get("PQPF_REGENERATE")
    if regenerate:
        Path(regenerate).mkdir(parents=True, exist_ok=True)
        shutil.copy(output, Path(regenerate) / name)
        pytest.skip(f"PQPF_REGENERATE: wrote {Path(regenerate) / name} for review")
    golden = GOLDEN_DIR / name
    assert golden.is_file(), f"no known-good file {golden}; make one with PQPF_REGENERATE=<dir>"
    with netCDF4.Dataset(output) as got, netCDF4.Dataset(golden) as want:
        assert set(got.variables) == set(want.variables), (set(got.variables) ^ set(want.variables))
        for name_, var in want.variables.items():
            a = np.ma.filled(got.variables[name_][...].astype(np.float64), np.nan)
            b = np.ma.filled(var[...].astype(np.float64), np.nan)
            assert a.shape == b.shape, name_
            np.testing.assert_allclose(a, b, atol=atol, rtol=rtol, equal_nan=True, err_msg=name_)
