"""``terrain_height.py``: the GRAF terrain GRIB -> terrain netCDF (see :mod:`pqpf.terrain`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import PqpfArgumentParser, load_config_from_args, run_cli
from pqpf.cli.common import build_parser as _common_parser

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
Read the terrain height from the GRIB file [paths] graf_terrain_grib and write
[paths] terrain_file (CF netCDF on the same grid, with lat/lon and the grid mapping):
height, Gaussian-smoothed height (sigma = [terrain] smoothing_sigma_px grid points),
local difference, slopes (m/m) along the grid axes and along true east/north, their
smoothed versions, the map factor and the convergence angle.
An existing output is kept unless --overwrite is given."""


def build_parser(script_dir: Path | None = None) -> PqpfArgumentParser:
    """The argument parser of ``terrain_height.py``."""
    parser = _common_parser("terrain_height.py", _DESCRIPTION, script_dir)
    parser.add_argument(
        "--overwrite", action="store_true", help="rewrite the terrain file if it exists"
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.stages.terrain import make_terrain_file

    make_terrain_file(load_config_from_args(args), overwrite=args.overwrite)
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 bad input file or config, 2 usage)."""
    return run_cli(build_parser(script_dir), _run, argv)
