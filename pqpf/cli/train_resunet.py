"""train_resunet.py INIT LEAD: train the lead's residual U-Net on its patch files."""

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
Train the residual U-Net for one lead time on the patch files of
save_patched_graf_mrms.py INIT LEAD. Prints one diagnostic row per epoch (training and
validation ranked probability score, validation Brier skill at 1 and 5 mm against the
smoothed-GRAF reference, learning rate, seconds, samples per second), writes a
checkpoint every epoch and best.pt to {trainings_dir}/resunet_{INIT}_{LEAD}h/, stops
early when the validation score stops improving, scores the best model on the held-out
test split, and records it in {trainings_dir}/registry.json for inference.

Hyper-parameters are named sets in a YAML file (--hparams, default the one shipped with
pqpf; --hparams-name, default [training] hparams_name of the config).

examples:
  train_resunet.py 2025120100 12
  train_resunet.py 2025120100 12 --resume
  train_resunet.py 2025120100 18 --init-from nearest
  torchrun --standalone --nproc_per_node=4 train_resunet.py 2025120100 12
"""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = _base_parser("train_resunet.py", DESCRIPTION, script_dir)
    add_init_lead(parser)
    parser.add_argument("--hparams", metavar="FILE", default=None,
                        help="YAML of named hyper-parameter sets (default: [training] hparams_file, else pqpf's)")
    parser.add_argument("--hparams-name", metavar="NAME", default=None,
                        help="which set (default: [training] hparams_name)")
    parser.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, mps, cuda, cuda:N")
    add_threads(parser)
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue exactly from the newest epoch checkpoint")
    start.add_argument("--init-from", metavar="nearest|CKPT", default=None,
                       help="warm start from the nearest registered lead's best model, or a checkpoint file")
    start.add_argument("--overwrite", action="store_true", help="start again, deleting this run's checkpoints")
    parser.add_argument("--max-epochs", type=positive_int, default=None, metavar="N",
                        help="stop after N epochs in total (at least 1)")
    parser.add_argument("--no-register", action="store_true", help="do not update the registry")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.hparams import load_hparams
    from pqpf.stages.train import train_resunet

    config = load_config_from_args(args)
    apply_threads(args, config)
    lead = check_lead(config, args.lead)
    hparams_file = args.hparams or config.training.hparams_file
    hp = load_hparams(args.hparams_name or config.training.hparams_name, hparams_file,
                      thresholds_mm=config.probability.thresholds_mm)
    result = train_resunet(config, args.init, lead, hp, device=args.device, resume=args.resume,
                           init_from=args.init_from, max_epochs=args.max_epochs,
                           register=not args.no_register, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports
        logger.info("run directory %s", result.run_dir)
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
