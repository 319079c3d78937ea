#!/usr/bin/env python3
"""Print, and with --submit run, the sbatch commands of the pqpf Slurm jobs.

    slurm/submit.py remap 2025010100 2025013123 --chunk-hours 24 --partition P --submit
    slurm/submit.py patches 2025120100 --leads 1,6,12 --mem 32G --submit
    slurm/submit.py train 2025120100 12 --gpus 4 --submit

See slurm/README.md for the environment variables the jobs read.
"""
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT))  # this script lives in slurm/, the package beside it

from pqpf.cli.slurm_submit import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(script_dir=CHECKOUT))
