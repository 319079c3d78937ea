#!/usr/bin/env python3
"""See --help: GRAF and remapped MRMS side by side for one INIT and LEAD.

    python plot_graf_mrms.py 2025120100 12 [--config FILE]
"""
import sys
from pathlib import Path

from pqpf.cli.plot_graf_mrms import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
