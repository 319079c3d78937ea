#!/usr/bin/env python3
"""Set up .venv (first run) and run every pqpf stage end to end on a synthetic archive.

    python3 run_demo.py            # a few minutes on 2 CPU cores; outputs in ./demo_run
    python3 run_demo.py --fresh    # start again from nothing
    python3 run_demo.py --help     # options (days, lead, hyper-parameter set, work directory)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pqpf._bootstrap import ensure_venv_and_reexec  # noqa: E402

ensure_venv_and_reexec("test")  # same environment as run_tests.py: no reinstall between them

from pqpf.cli.demo import main  # noqa: E402

sys.exit(main(script_dir=Path(__file__).resolve().parent))
