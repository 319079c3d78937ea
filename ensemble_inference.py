#!/usr/bin/env python3
"""Sample an ensemble for one init and lead: U-Net + diffusion -> zarr members, stamps PNG, GIF.

    python ensemble_inference.py 2025120412 12 [--members 16] [--seed 0] [--ecc/--no-ecc]
"""
import sys
from pathlib import Path

from pqpf.cli.ensemble_inference import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
