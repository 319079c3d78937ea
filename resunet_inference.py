#!/usr/bin/env python3
"""Probabilistic forecast for one INIT and LEAD: netCDF of exceedance probabilities + PNG maps.

    python resunet_inference.py 2025120412 12 [--config FILE] [--device auto] [--overwrite]
"""
import sys
from pathlib import Path

from pqpf.cli.resunet_inference import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
