"""The command line: ``python -m pqpf.synthetic`` and the ``pqpf-synthetic`` entry point."""

from __future__ import annotations

import datetime as dt
import importlib
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from pqpf.config import load_config
from pqpf.grid import graf_like_grid
from pqpf.io.grib import read_graf
from pqpf.layout import graf_archive_path, mrms_raw_path
from pqpf.synthetic import main

QPE = "MultiSensor_QPE_01H_Pass2_00.00"


def test_module_writes_the_archive(tmp_path):
    out = tmp_path / "cli"
    status = subprocess.run(
        [sys.executable, "-m", "pqpf.synthetic", "--out", str(out), "--start", "2024060100",
         "--end", "2024060102", "--leads", "1,6", "--patches-per-init", "12", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert status.returncode == 0, status.stderr
    config = load_config(out / "config.ini")
    assert config.patches.patches_per_init == 12
    assert "--seed 0 --patches-per-init 12\n" in (out / "config.ini").read_text()  # how it was made
    init = dt.datetime(2024, 6, 1, 0)
    for lead in (1, 6):
        field = read_graf(graf_archive_path(config, init, lead), lead, init)
        assert field.grid.same_as(graf_like_grid("demo"))
    for hour in range(3):
        assert mrms_raw_path(config, QPE, init + dt.timedelta(hours=hour)).is_file()
    assert not mrms_raw_path(config, QPE, init + dt.timedelta(hours=3)).exists()


@pytest.mark.parametrize("argv, words", [
    (["--start", "2024023000", "--end", "2024030100"], "2024023000"),
    (["--start", "2024030200", "--end", "2024030100"], "before start"),
    (["--start", "2024030100", "--end", "2024030100", "--leads", "0"], "leads must be"),
    (["--start", "2024030100", "--end", "2024030100", "--leads", "a,b"], "comma-separated"),
    (["--start", "2024030100", "--end", "2024030100", "--patches-per-init", "0"], "--patches-per-init"),
])
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as exc:
        status = main(["--out", str(tmp_path / "x"), *argv])
        raise SystemExit(status)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err
    assert not (tmp_path / "x").exists()


def test_entry_point_runs_the_command_line(capsys):
    # pyproject.toml's [project.scripts] pqpf-synthetic names the package's main
    found = re.search(r'^pqpf-synthetic = "([\w.]+):(\w+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert found is not None
    module, attr = found.groups()
    entry = getattr(importlib.import_module(module), attr)
    assert entry is main
    with pytest.raises(SystemExit) as exc:
        entry(["--help"])
    assert exc.value.code == 0
    assert "--out DIR" in capsys.readouterr().out


def test_api_refuses_a_bad_patches_per_init_before_writing(tmp_path):
    from pqpf.errors import UsageError
    from pqpf.synthetic import generate_archive

    with pytest.raises(UsageError, match="patches_per_init must be >= 1, got 0"):
        generate_archive(tmp_path / "x", dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 1), (1,), patches_per_init=0)
    assert not (tmp_path / "x").exists()
