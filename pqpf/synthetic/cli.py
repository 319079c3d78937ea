"""Command line of the synthetic archive: ``python -m pqpf.synthetic --out DIR ...``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import PqpfArgumentParser, date_arg, positive_int, run_cli
from pqpf.synthetic.archive import generate_archive

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)


def _int_list(text: str) -> list[int]:
    """``"1,6,12"`` -> ``[1, 6, 12]`` (an argparse type)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m pqpf.synthetic`` argument parser."""

    parser = PqpfArgumentParser(
        prog="python -m pqpf.synthetic",
        description=(
            "Write a synthetic GRAF + MRMS archive in the real file formats (GRIB2, WINC "
            "and MRMS names and layouts), a terrain GRIB2 and DIR/config.ini pointing at it."
        ),
    )
    parser.add_argument("--out", metavar="DIR", type=Path, required=True, help="archive directory")
    parser.add_argument("--start", metavar="YYYYMMDDHH", type=date_arg, required=True,
                        help="first hour (MRMS and GRAF inits)")
    parser.add_argument("--end", metavar="YYYYMMDDHH", type=date_arg, required=True,
                        help="last hour, inclusive")
    parser.add_argument("--leads", metavar="H,H,...", type=_int_list, default=[1, 6, 12],
                        help="GRAF lead times in hours (default 1,6,12)")
    parser.add_argument("--cycles", metavar="H,H,...", type=_int_list, default=[0, 12],
                        help="GRAF init hours UTC (default 0,12)")
    parser.add_argument("--grid", choices=("demo", "conus"), default="demo",
                        help="demo: 200x250 at 4 km (minutes); conus: 1308x1524 and the real MRMS grid")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--patches-per-init", metavar="N", type=positive_int, default=None,
                        help="[patches] patches_per_init of the written config.ini "
                             "(default: the configuration's default, 40)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing files")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pqpf.synthetic``; returns the exit status."""

    def body(args: argparse.Namespace) -> int:
        config = generate_archive(args.out, args.start, args.end, args.leads, args.grid, args.seed,
                                  args.cycles, args.overwrite, patches_per_init=args.patches_per_init)
        logger.info("configuration: %s", config.source)
        return 0

    return run_cli(build_parser(), body, list(argv) if argv is not None else None)


