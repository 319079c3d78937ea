"""train_diffusion.py INIT LEAD: train the lead's EDM diffusion model on the U-Net's residual."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import (
    add_init_lead,
    add_threads,
    apply_threads,
    check_lead,
    load_config_from_args,
    positive_int,
    run_cli,
)
from pqpf.cli.common import build_parser as _base_parser

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Train the EDM diffusion model of one lead time on the patch files of
save_patched_graf_mrms.py INIT LEAD and the lead's trained U-Net (the registry's
resunet entry, which must have been trained for the same INIT). The model learns the
1-h MRMS amount in log1p minus the U-Net's central estimate, conditioned on the
features and the U-Net's output. Prints one row per epoch (training and validation EDM
loss of the EMA weights at fixed noise levels), checkpoints every epoch and best.pt to
{trainings_dir}/diffusion_{INIT}_{LEAD}h/, and records the best model in the registry
under the kind "diffusion" for ensemble_inference.py.

Hyper-parameter sets: diffusion (GPU), diffusion_laptop, diffusion_demo, diffusion_tiny.

examples:
  train_diffusion.py 2025120100 12 --hparams-name diffusion_laptop
  train_diffusion.py 2025120100 12 --resume
  torchrun --standalone --nproc_per_node=4 train_diffusion.py 2025120100 12
"""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = _base_parser("train_diffusion.py", DESCRIPTION, script_dir)
    add_init_lead(parser)
    parser.add_argument("--hparams", metavar="FILE", default=None,
                        help="YAML of named hyper-parameter sets (default: [training] hparams_file, else pqpf's)")
    parser.add_argument("--hparams-name", metavar="NAME", default="diffusion_laptop",
                        help="which diffusion set (default: diffusion_laptop)")
    parser.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, mps, cuda, cuda:N")
    add_threads(parser)
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue exactly from the newest epoch checkpoint")
    start.add_argument("--overwrite", action="store_true", help="start again, deleting this run's checkpoints")
    parser.add_argument("--max-epochs", type=positive_int, default=None, metavar="N",
                        help="stop after N epochs in total (at least 1)")
    parser.add_argument("--no-register", action="store_true", help="do not update the registry")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.hparams import load_diffusion_hparams
    from pqpf.stages.train_diffusion import train_diffusion

    config = load_config_from_args(args)
    apply_threads(args, config)
    lead = check_lead(config, args.lead)
    hp = load_diffusion_hparams(args.hparams_name, args.hparams or config.training.hparams_file)
    result = train_diffusion(config, args.init, lead, hp, device=args.device, resume=args.resume,
                             max_epochs=args.max_epochs, register=not args.no_register, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        logger.info("run directory %s", result.run_dir)
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
