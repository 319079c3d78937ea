#!/usr/bin/env python3
"""Set up .venv (first run) and run the whole test suite, slow tests included.

    python3 run_tests.py                 # everything, as CI runs it
    python3 run_tests.py -m "not slow"   # the quick part
    python3 run_tests.py tests/test_grid.py -k lambert

Arguments are passed to pytest.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pqpf._bootstrap import ensure_venv_and_reexec  # noqa: E402

ensure_venv_and_reexec("test")

import pytest  # noqa: E402

sys.exit(pytest.main(["-p", "no:cacheprovider", *sys.argv[1:]]))
