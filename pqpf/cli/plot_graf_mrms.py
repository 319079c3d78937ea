"""plot_graf_mrms.py INIT LEAD: GRAF forecast and remapped MRMS side by side on a map."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import add_init_lead, build_parser as _base_parser, check_lead, load_config_from_args, run_cli

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
    return parser


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from pqpf.errors import InputFileError
    from pqpf.io.grib import read_graf
    from pqpf.io.netcdf import read_grid_netcdf
    from pqpf.layout import graf_archive_path, graf_mrms_png_path, locate_graf, mrms_remapped_path
    from pqpf.plotting import forecast_title, plot_fields_side_by_side

    config = load_config_from_args(args)
    lead = check_lead(config, args.lead)
    graf_path = locate_graf(config, args.init, lead)
    if graf_path is None:
        raise InputFileError(graf_archive_path(config, args.init, lead), "GRAF forecast not found (nor the laptop copy)")
    graf = read_graf(graf_path, lead, init=args.init)
    valid = args.init + dt.timedelta(hours=lead)
    mrms = read_grid_netcdf(mrms_remapped_path(config, valid), ["precipitation", "quality"])
    if not mrms.grid.same_as(graf.grid):
        raise InputFileError(mrms.source, "remapped MRMS grid differs from the GRAF grid")
    out = plot_fields_side_by_side(
        graf_mrms_png_path(config, args.init, lead), graf.grid, np.asarray(graf.values),
        mrms.data["precipitation"], mrms.data["quality"],
        forecast_title("GRAF vs MRMS 1-h precipitation", args.init, lead),
        min_quality=config.mrms.min_quality,
    )
    print(out)
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
