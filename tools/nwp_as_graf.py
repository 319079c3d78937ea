#!/usr/bin/env python3
"""Stage another model's 1-h precipitation (HRRR, a new GRAF domain, ...) as a GRAF file.

``resunet_inference.py`` reads GRAF from the site's layout. To try a trained model on
another NWP grid, this writes the source file's 1-h precipitation ending at LEAD, values
unchanged (CCSDS-packed at 0.001 mm), into the site's laptop GRAF directory under the
GRAF name of the source's own INIT and LEAD, and prints INIT. With ``--flat-terrain`` it
also writes a zero-height terrain GRIB2 on that grid at ``[paths] graf_terrain_grib``
unless one exists there, for a grid whose orography you do not have (the terrain
features are then zero: the probabilities show what the rain alone gives). Then::

    python terrain_height.py --config CFG
    python resunet_inference.py INIT LEAD --config CFG --allow-other-grid

Inference uses the registry's model of LEAD, else the nearest lead's (with a warning).

Example (the real HRRR file of the test data, 11-12 h precipitation)::

    python tools/nwp_as_graf.py subset_20201214_hrrr.t00z.wrfsfcf12.grib2 12 \\
        --flat-terrain --config site/config.ini
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pqpf.cli.common import build_parser, lead_arg, load_config_from_args, run_cli
from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh
from pqpf.errors import InputFileError
from pqpf.io.atomic import atomic_write_bytes
from pqpf.io.grib import read_graf
from pqpf.io.grib_write import encode_graf_grib2, write_terrain_grib2
from pqpf.layout import graf_laptop_path

logger = logging.getLogger("nwp_as_graf")


def stage(config: Config, source: Path, lead_h: int, flat_terrain: bool) -> tuple[str, Path]:
    """Write the staged GRAF file (and, if asked, flat terrain); return (INIT, its path)."""
    field = read_graf(source, lead_h)
    if field.init_time is None:
        raise InputFileError(source, "has no initialisation time")
    values = np.nan_to_num(field.values, nan=0.0)
    if np.isnan(field.values).any():
        logger.warning("%s: %d missing points written as 0 mm", source, int(np.isnan(field.values).sum()))
    out = graf_laptop_path(config, field.init_time, lead_h)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, encode_graf_grib2(field.grid, values, field.init_time, lead_h))
    logger.info("wrote %s (%s, at most %.3g mm)", out, field.grid.describe(), float(values.max()))
    terrain = config.paths.graf_terrain_grib
    if flat_terrain and not terrain.exists():
        terrain.parent.mkdir(parents=True, exist_ok=True)
        write_terrain_grib2(terrain, field.grid, np.zeros(field.grid.shape))
        logger.info("wrote %s: zero height on %s", terrain, field.grid.describe())
    return format_yyyymmddhh(field.init_time), out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("nwp_as_graf.py", __doc__.split("\n\n")[0])
    parser.add_argument("source", metavar="SOURCE", type=Path, help="GRIB file with a 1-h precipitation message")
    parser.add_argument("lead", metavar="LEAD", type=lead_arg, help="hour the 1-h accumulation ends at")
    parser.add_argument("--flat-terrain", action="store_true",
                        help="write a zero-height terrain GRIB2 on the source grid unless one exists")

    def body(args: argparse.Namespace) -> int:
        init, _ = stage(load_config_from_args(args), args.source, args.lead, args.flat_terrain)
        print(init)
        return 0

    return run_cli(parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
