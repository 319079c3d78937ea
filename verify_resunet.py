#!/usr/bin/env python3
"""Reliability diagrams, Brier skill and CRPS of the U-Net probabilities over a range of inits.

    python verify_resunet.py 2025120100 2025123112 12 [--config FILE]
"""
import sys
from pathlib import Path

from pqpf.cli.verify_resunet import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
