#!/usr/bin/env python3
"""Train the EDM diffusion model of one lead time on the U-Net's residual.

    python train_diffusion.py 2025120100 12 [--hparams-name diffusion_laptop] [--resume] [--device auto]
    torchrun --standalone --nproc_per_node=2 train_diffusion.py 2025120100 12
"""
import sys
from pathlib import Path

from pqpf.cli.train_diffusion import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
