"""calibrate_resunet.py BEGIN END LEAD: refit the U-Net's calibration on its forecasts of a period."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import add_init_range_lead, checked_range_lead, load_config_from_args, run_cli
from pqpf.cli.common import build_parser as _base_parser

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Fit the isotonic calibration of the U-Net registered for LEAD on its own uncalibrated
probability files (resunet_inference.py --calibrate false) of every init
from BEGIN to END (inclusive) that has remapped MRMS for its valid hour, on the points and
weights of verify_resunet.py, and store it in the checkpoint, where [inference] calibrate
= auto applies it. The period must lie outside the model's training window and should
span a season or more: maps fitted on 56 days moved other periods' reliability either
way (docs/calibration.md, section 14). Prints the period's reliability (bins with >= 1000
points) and what the map makes of 0.1, 0.2, ..., 0.9.

example: calibrate_resunet.py 2024050100 2024083112 6
"""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = _base_parser("calibrate_resunet.py", DESCRIPTION, script_dir)
    add_init_range_lead(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the period's reliability and the map it gives; leave the checkpoint as it is")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.stages.calibrate import calibrate_from_forecasts

    config = load_config_from_args(args)
    lead = checked_range_lead(args, config)
    result = calibrate_from_forecasts(config, args.begin, args.end, lead, dry_run=args.dry_run)
    print(f"+{lead} h, {len(result.used)} inits on {result.n_dates} dates"
          + (f", {len(result.skipped_no_mrms)} skipped (no MRMS)" if result.skipped_no_mrms else ""))
    for line in result.reliability_lines(config.probability.thresholds_mm):
        print(line)
    replaced = f" (replacing the map fitted on {result.replaced})" if result.replaced else ""
    if result.written:
        print(f"calibration stored in {result.checkpoint}{replaced}")
    else:
        print(f"dry run: {result.checkpoint} left as it is")
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
