"""resunet_inference.py INIT LEAD: GRAF forecast -> probability netCDF + map PNG."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import (
    add_init_lead,
    add_threads,
    add_until_every,
    apply_threads,
    check_lead,
    inits_from_args,
    load_config_from_args,
    run_cli,
)
from pqpf.cli.common import build_parser as _base_parser
from pqpf.config_sections import CALIBRATE_SETTINGS

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Turn the GRAF forecast of INIT + LEAD into calibrated probabilities of the 1-h amount
exceeding 0.25, 1, 2.5, 5, 10 and 25 mm (and the other bin edges), with the model the
registry names for LEAD (the nearest lead's, with a warning, if LEAD has none). Reads the
laptop copy of the GRAF file (copy_graf_to_laptop.py), else the archive copy. Writes
  {probs_dir}/{INIT}_{LEAD}h_probs.nc   (with raw- and smoothed-GRAF probabilities)
  {plots_dir}/{INIT}_{LEAD}h_probs.png  (maps)

example: resunet_inference.py 2025120412 12
"""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = _base_parser("resunet_inference.py", DESCRIPTION, script_dir)
    add_init_lead(parser)
    parser.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, mps, cuda, cuda:N")
    add_threads(parser)
    parser.add_argument("--overwrite", action="store_true", help="redo an existing output")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    add_until_every(parser, "the model and terrain are")
    parser.add_argument("--allow-other-grid", action="store_true",
                        help="apply a model trained on another grid (a warning names both grids)")
    parser.add_argument("--calibrate", choices=CALIBRATE_SETTINGS, default=None,
                        help="apply the checkpoint's isotonic calibration: auto (a cross-fitted or forecasts-fitted "
                             "map), true (any), false (none: raw probabilities, e.g. for calibrate_resunet.py); "
                             "default [inference] calibrate")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.stages.inference import run_inference, run_inference_range

    inits = inits_from_args(args)
    config = load_config_from_args(args)
    if args.calibrate is not None:
        config = dataclasses.replace(config, inference=dataclasses.replace(config.inference, calibrate=args.calibrate))
    apply_threads(args, config)
    lead = check_lead(config, args.lead)
    if inits is None:
        result = run_inference(config, args.init, lead, device=args.device, overwrite=args.overwrite,
                               plot=not args.no_plot, allow_other_grid=args.allow_other_grid)
        print(result.nc_path)
        if result.png_path:
            print(result.png_path)
        return 0
    report = run_inference_range(config, inits, lead, device=args.device, overwrite=args.overwrite,
                                 plot=not args.no_plot, allow_other_grid=args.allow_other_grid)
    print(report.summary("resunet_inference.py"))
    return 1 if report.failed else 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
