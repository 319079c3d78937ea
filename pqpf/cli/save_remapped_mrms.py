"""``save_remapped_mrms.py BEGIN END``: hourly MRMS QPE + quality onto the GRAF grid."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import add_begin_end, load_config_from_args, run_cli
from pqpf.cli.common import build_parser as _common_parser
from pqpf.remap_methods import METHODS

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
For every hour from BEGIN to END (inclusive, YYYYMMDDHH): read the MRMS 1-h
multi-sensor QPE and its radar accumulation quality index from the raw archive
([paths] mrms_raw_dir), remap both to the grid of the terrain file ([paths]
terrain_file, made by terrain_height.py) and write one CF netCDF per hour below
[paths] mrms_remapped_dir with precipitation (mm), quality (0..1) and valid_fraction.

Remapping weights are computed once per (MRMS grid, target grid, method) and cached in
{mrms_remapped_dir}/weights; later runs only load them. Existing outputs are skipped
unless --overwrite. Hours whose input is missing or damaged are reported at the end and
make the exit status 1, after all other hours are done."""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    """The command-line interface of ``save_remapped_mrms.py``."""
    parser = _common_parser("save_remapped_mrms.py", _DESCRIPTION, script_dir)
    add_begin_end(parser)
    parser.add_argument(
        "--method", choices=list(METHODS), default=None,
        help="remapping method (default: [mrms] remap_method of the config, normally conservative)",
    )
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing outputs")
    parser.add_argument(
        "--download", action="store_true",
        help="first fetch missing raw MRMS files from the web archive ([mrms] download_url)",
    )
    parser.add_argument(
        "--download-url", metavar="URL", default=None,
        help="archive root to download from (implies --download; default: [mrms] download_url, "
        "the public NOAA MRMS bucket)",
    )
    return parser


def _body(args: argparse.Namespace) -> int:
    from pqpf.stages.remap import remap_range

    config = load_config_from_args(args)
    report = remap_range(
        config, args.begin, args.end, method=args.method, overwrite=args.overwrite,
        download=args.download or args.download_url is not None, base_url=args.download_url,
    )
    print(f"save_remapped_mrms.py: {report.summary()}", file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 some hour failed, 2 usage)."""
    return run_cli(build_parser(script_dir), _body, argv)
