#!/usr/bin/env python3
"""Refit the U-Net's isotonic calibration on its own forecasts of a period outside training.

    python calibrate_resunet.py 2024050100 2024083112 6 [--config FILE] [--dry-run]
"""
import sys
from pathlib import Path

from pqpf.cli.calibrate_resunet import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
