"""verify_resunet.py BEGIN END LEAD: reliability, Brier skill and CRPS over a range of inits."""

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
Verify the probabilities of every init from BEGIN to END (inclusive) that has a
probabilities file (resunet_inference.py) and remapped MRMS for its valid hour: Brier
score and skill against the smoothed-GRAF reference and the sample climatology,
reliability diagrams with frequency of use, and CRPS, at the configured thresholds, on
good-quality MRMS points with cos(latitude) weights. Writes scores.json, scores.csv and
reliability.png to {plots_dir}/verification_{BEGIN}_{END}_{LEAD}h/ and prints the table.

example: verify_resunet.py 2025120100 2025123112 12
"""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = _base_parser("verify_resunet.py", DESCRIPTION, script_dir)
    add_init_range_lead(parser)
    parser.add_argument("--no-plot", action="store_true", help="skip the reliability PNG")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute even if scores.json already covers the same inits")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.stages.verify import verify_range
    from pqpf.verify.report import format_report

    config = load_config_from_args(args)
    lead = checked_range_lead(args, config)
    report = verify_range(config, args.begin, args.end, lead, plot=not args.no_plot, overwrite=args.overwrite)
    print(f"+{lead} h, {len(report.used)} inits verified"
          + (f", {len(report.skipped_no_mrms)} skipped (no MRMS)" if report.skipped_no_mrms else "")
          + (f", {len(report.failed)} failed" if report.failed else ""))
    print(format_report(report.result))
    for path in report.files:
        print(path)
    for init, error in report.failed[:5]:
        logger.error("failed %s: %s", init, error)
    return 1 if report.failed else 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
