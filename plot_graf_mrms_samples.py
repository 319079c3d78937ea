#!/usr/bin/env python3
"""See --help: a grid of sampled training patches for one INIT and LEAD.

    python plot_graf_mrms_samples.py 2025120100 12 [--config FILE]
"""
import sys
from pathlib import Path

from pqpf.cli.plot_graf_mrms_samples import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
