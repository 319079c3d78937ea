"""plot_graf_mrms_samples.py INIT LEAD: a grid of sampled patches from a patch file."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import add_init_lead, check_lead, load_config_from_args, non_negative_int, positive_int, run_cli
from pqpf.cli.common import build_parser as _base_parser

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Draw randomly chosen patches of one split of the patch files of
save_patched_graf_mrms.py INIT LEAD (GRAF amount, MRMS with poor-quality points shaded,
terrain local difference), to check that the training data look realistic. Writes
{plots_dir}/patch_samples_{split}_{INIT}_{LEAD}h.png.

example: plot_graf_mrms_samples.py 2025120100 12 --split validation --n 12
"""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = _base_parser("plot_graf_mrms_samples.py", DESCRIPTION, script_dir)
    add_init_lead(parser)
    parser.add_argument("--split", choices=("train", "validation", "test"), default="train",
                        help="which patch file (default train)")
    parser.add_argument("--n", type=positive_int, default=8, help="number of patches, at most 48 (default 8)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="which random patches (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="redraw an existing PNG")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.errors import UsageError
    from pqpf.stages.plots import plot_patch_file

    config = load_config_from_args(args)
    lead = check_lead(config, args.lead)
    if args.n > 48:
        raise UsageError(f"--n {args.n}: draw at most 48 patches in one picture")
    print(plot_patch_file(config, args.init, lead, args.split, args.n, args.seed, overwrite=args.overwrite))
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
