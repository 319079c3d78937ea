#!/usr/bin/env python3
"""Set up .venv (first run), check the code (ruff, mypy) and run the whole test suite,
slow tests included.

    python3 run_tests.py                 # everything, as CI runs it: lint, types, all tests
    python3 run_tests.py -m "not slow"   # the quick tests only (no lint, no type check)
    python3 run_tests.py tests/test_grid.py -k lambert

Arguments are passed to pytest; with arguments the lint and type checks are skipped.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from pqpf._bootstrap import ensure_venv_and_reexec  # noqa: E402

ensure_venv_and_reexec("test")

import pytest  # noqa: E402

if len(sys.argv) == 1:
    for name, cmd in (("ruff", [sys.executable, "-m", "ruff", "check", "pqpf", "tests", "bench", "tools", "slurm",
                                *map(str, sorted(ROOT.glob("*.py")))]),
                      ("mypy", [sys.executable, "-m", "mypy"])):
        print(f"[run_tests] {name}: {' '.join(cmd[2:])}", flush=True)
        if subprocess.run(cmd, cwd=ROOT).returncode:
            print(f"[run_tests] {name} found problems (see above)", file=sys.stderr)
            sys.exit(1)

sys.exit(pytest.main(["-p", "no:cacheprovider", *sys.argv[1:]]))
