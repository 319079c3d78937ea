"""save_patched_graf_mrms.py INIT LEAD: training patches of GRAF, MRMS, quality and terrain."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import add_init_lead, check_lead, load_config_from_args, run_cli
from pqpf.cli.common import build_parser as _base_parser

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Cut patches of GRAF forecasts, remapped MRMS, radar quality and terrain features for
training the U-Net of one lead time, and write them to
  {patch_dir}/GRAF_Unet_data_{train,validation,test}_{INIT}_{LEAD}h.cPick

Training inits: the [patches] ndays_train days before INIT whose verifying hour ends
before INIT, plus (previous_year = true) the inits 10-12 months before INIT. Splits are
contiguous date blocks. Missing GRAF or MRMS hours are skipped and counted.

example: save_patched_graf_mrms.py 2025120100 12
"""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = _base_parser("save_patched_graf_mrms.py", DESCRIPTION, script_dir)
    add_init_lead(parser)
    parser.add_argument("--overwrite", action="store_true", help="redo existing patch files")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.stages.patches import make_patch_files

    config = load_config_from_args(args)
    lead = check_lead(config, args.lead)
    summary = make_patch_files(config, args.init, lead, overwrite=args.overwrite)
    if summary.inits_considered:
        logger.info("%s", summary.line())
        for split, path in summary.files.items():
            logger.info("%-10s %s", split, path)
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
