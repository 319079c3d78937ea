"""plot_graf_mrms.py INIT LEAD: GRAF forecast and remapped MRMS side by side on a map."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
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
    import numpy as np

    from pqpf.io.grib import read_graf
    from pqpf.layout import graf_mrms_png_path, require_graf
    from pqpf.mrms import read_remapped_mrms
    from pqpf.plot import forecast_title, plot_fields_side_by_side

    config = load_config_from_args(args)
    lead = check_lead(config, args.lead)
    out_path = graf_mrms_png_path(config, args.init, lead)
    if out_path.is_file() and not args.overwrite:
        logging.getLogger(__name__).info("%s exists; use --overwrite to draw it again", out_path)
        print(out_path)
        return 0
    graf = read_graf(require_graf(config, args.init, lead), lead, init=args.init)
    mrms = read_remapped_mrms(config, args.init + dt.timedelta(hours=lead), graf.grid)
    out = plot_fields_side_by_side(
        out_path, graf.grid, np.asarray(graf.values),
        mrms.data["precipitation"], mrms.data["quality"],
        forecast_title("GRAF vs MRMS 1-h precipitation", args.init, lead),
        min_quality=config.mrms.min_quality,
    )
    print(out)
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
