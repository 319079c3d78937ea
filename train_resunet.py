#!/usr/bin/env python3
"""Train the residual U-Net of one lead time on its patch files.

    python train_resunet.py 2025120100 12 [--hparams-name laptop] [--resume] [--device auto]
    torchrun --standalone --nproc_per_node=2 train_resunet.py 2025120100 12
"""
import sys
from pathlib import Path

from pqpf.cli.train_resunet import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
