"""Issue 11 item 6: a full disk or an unwritable folder is one line naming the path and the
cause, never a writer's own traceback ("NetCDF: HDF error", "unexpected pos"), and leaves
no temporary behind. A real 64 kB tmpfs is the full disk (root can mount one; elsewhere
these tests skip, and under CI they fail)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pqpf.errors import OutputWriteError
from pqpf.grid import graf_like_grid
from pqpf.io.atomic import atomic_write_bytes
from pqpf.io.netcdf import NcVar, write_grid_netcdf


@pytest.fixture
def full_disk(tmp_path):
    """A 64 kB tmpfs, already holding a 40 kB file."""
    mount = tmp_path / "small"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if res.returncode != 0:
        if os.environ.get("PQPF_CI") == "1":
            pytest.fail(f"cannot mount a tmpfs under CI: {res.stderr.decode().strip()}")
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        (mount / "ballast").write_bytes(b"\0" * 40_000)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name != "ballast")


def test_bytes_on_a_full_disk(full_disk):
    target = full_disk / "out" / "data.bin"
    with pytest.raises(OutputWriteError) as err:
        atomic_write_bytes(target, b"x" * 200_000)
    assert str(err.value).startswith(f"{target}: cannot write (") and "space" in str(err.value).lower()
    assert _leftovers(full_disk) == ["out"]


def test_netcdf_on_a_full_disk_names_the_file_not_an_hdf_error(full_disk):
    grid = graf_like_grid("demo")
    field = np.random.default_rng(0).random((grid.ny, grid.nx)).astype(np.float32)
    target = full_disk / "probs.nc"
    with pytest.raises(OutputWriteError) as err:
        write_grid_netcdf(target, grid, {"noise": NcVar(field, {"units": "1"})}, time=dt.datetime(2025, 7, 1))
    message = str(err.value)
    assert message.startswith(f"{target}: cannot write (") and "HDF" not in message
    assert _leftovers(full_disk) == []


def test_checkpoint_on_a_full_disk_names_the_file(full_disk):
    import torch

    from pqpf.io.checkpoint import save_checkpoint

    class _Big:  # save_checkpoint only needs to_state()
        def to_state(self):
            return {"net": {"w": torch.zeros(100_000)}}

    target = full_disk / "run" / "epoch_001.pt"
    with pytest.raises(OutputWriteError) as err:
        save_checkpoint(target, _Big())  # type: ignore[arg-type]
    assert str(err.value).startswith(f"{target}: cannot write (") and "unexpected pos" not in str(err.value)
    assert _leftovers(full_disk) == ["run"]


def test_a_folder_that_cannot_be_created_is_one_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputWriteError) as err:
        atomic_write_bytes(blocker / "sub" / "x.bin", b"1")
    assert str(err.value).startswith(f"{blocker / 'sub' / 'x.bin'}: cannot write (cannot create its folder")
