"""verify_ensemble.py BEGIN END LEAD: ensemble scores over a range of inits, beside the U-Net's."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import (
    add_init_range_lead,
    checked_range_lead,
    load_config_from_args,
    non_negative_int,
    positive_int,
    run_cli,
)
from pqpf.cli.common import build_parser as _base_parser

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Verify the ensembles of every init from BEGIN to END (inclusive) that has an ensemble
store (ensemble_inference.py), the U-Net probabilities file of the same init
(resunet_inference.py) and remapped MRMS for its valid hour. On good-quality MRMS points,
with true-area weights, every forecast on the same points:

  CRPS on unbinned amounts: the members' fair CRPS against the U-Net's CRPS of its
  continuous distribution (and raw GRAF's absolute error); spread-skill ratio and a
  spread-error diagram; rank histogram (ties among equal amounts broken at random);
  Brier scores of the member probabilities and the U-Net's (plain and fair) with
  reliability diagrams; FSS at 1-41 px at 1 and 5 mm for the members, the member and
  U-Net probabilities, the U-Net's median field and raw GRAF, with the useful scale;
  power spectra of members, the U-Net's conditional mean amount, MRMS and GRAF, with
  their power relative to MRMS at 16-128 km. Skills carry 90 % block-bootstrap
  intervals (resampling init dates).

Writes ensemble_scores.json, ensemble_scores.csv and five PNG figures to
{plots_dir}/verification_ensemble_{BEGIN}_{END}_{LEAD}h/ and prints the table.

example: verify_ensemble.py 2025120100 2025123112 12
"""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = _base_parser("verify_ensemble.py", DESCRIPTION, script_dir)
    add_init_range_lead(parser)
    parser.add_argument("--no-plot", action="store_true", help="skip the figures")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute even if ensemble_scores.json already covers the same files")
    parser.add_argument("--replicates", type=positive_int, default=1000, metavar="N",
                        help="bootstrap replicates of the intervals (default 1000)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="S",
                        help="seed of the bootstrap and of the rank histogram's tie-breaking (default 0)")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.stages.verify_ensemble import verify_ensemble_range
    from pqpf.verify.ensemble_report import format_ensemble_table

    config = load_config_from_args(args)
    lead = checked_range_lead(args, config)
    report = verify_ensemble_range(config, args.begin, args.end, lead, plot=not args.no_plot,
                                   overwrite=args.overwrite, n_replicates=args.replicates, seed=args.seed)
    skipped = [f"{len(v)} skipped ({why})" for v, why in ((report.skipped_no_mrms, "no MRMS"),
                                                        (report.skipped_no_unet, "no U-Net file")) if v]
    print(", ".join([f"+{lead} h, {len(report.used)} inits verified", *skipped,
                     *([f"{len(report.failed)} failed"] if report.failed else [])]))
    print(format_ensemble_table(report.result))
    for path in report.files:
        print(path)
    for init, error in report.failed[:5]:
        logger.error("failed %s: %s", init, error)
    return 1 if report.failed else 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
