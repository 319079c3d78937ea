#!/usr/bin/env python3
"""Ensemble scores (fair CRPS against the U-Net's, spread-skill, rank histogram, FSS, spectra,
Brier skill of member probabilities) over a range of inits.

    python verify_ensemble.py 2025120100 2025123112 12 [--config FILE]
"""
import sys
from pathlib import Path

from pqpf.cli.verify_ensemble import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
