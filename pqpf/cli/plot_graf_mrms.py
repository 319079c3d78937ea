"""plot_graf_mrms.py INIT LEAD: GRAF forecast and remapped MRMS side by side on a map."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import add_init_lead, check_lead, load_config_from_args, run_cli
from pqpf.cli.common import build_parser as _base_parser

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Draw the GRAF 1-h precipitation of INIT + LEAD next to the remapped MRMS analysis of the
same hour and its radar quality, to check that the data look realistic. Writes
{plots_dir}/graf_mrms_{INIT}_{LEAD}h.png.

example: plot_graf_mrms.py 2025120100 12
"""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = _base_parser("plot_graf_mrms.py", DESCRIPTION, script_dir)
    add_init_lead(parser)
    parser.add_argument("--overwrite", action="store_true", help="redraw an existing PNG")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.stages.plots import plot_graf_mrms

    config = load_config_from_args(args)
    lead = check_lead(config, args.lead)
    print(plot_graf_mrms(config, args.init, lead, overwrite=args.overwrite))
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
