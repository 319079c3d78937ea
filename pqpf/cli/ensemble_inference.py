"""ensemble_inference.py INIT LEAD: U-Net + diffusion -> ensemble members (zarr), stamps PNG, GIF."""

from __future__ import annotations

import argparse
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
    non_negative_float,
    non_negative_int,
    positive_int,
    run_cli,
    smoothing_px,
)
from pqpf.cli.common import build_parser as _base_parser
from pqpf.diffusion.ecc import DEFAULT_ECC_LEVEL_SMOOTHING_PX, DEFAULT_ECC_LEVELS, DEFAULT_ECC_SMOOTHING_PX, ECC_LEVELS
from pqpf.errors import UsageError

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Sample an ensemble of 1-h amounts for INIT + LEAD: the lead's U-Net (registry kind
"resunet") gives the conditioning and the central estimate, the lead's diffusion model
(kind "diffusion", trained against that U-Net) samples the residual over the full grid
(Heun EDM sampler, denoiser on tent-blended windows, EMA weights). By default (--ecc)
the members take the U-Net's calibrated per-pixel distribution in their own ranks
(ensemble copula coupling: rank r takes a value of the U-Net's distribution drawn inside
[(r-1)/M, r/M], at a level that varies smoothly over the grid, --ecc-levels and
--ecc-level-smoothing); --no-ecc keeps the raw diffusion members. Also writes the U-Net
probabilities file if missing (verification compares the two). Writes
  {probs_dir}/{INIT}_{LEAD}h_ensemble.zarr   (member, y, x; member probabilities; CF)
  {plots_dir}/{INIT}_{LEAD}h_ensemble_stamps.png and ..._members.gif

examples:
  ensemble_inference.py 2025120412 12 --members 16 --seed 1
  ensemble_inference.py 2025120412 12 --no-ecc --netcdf
  ensemble_inference.py 2025120412 12 --steps 32 --churn 10   # another sampler, same model
  ensemble_inference.py 2025120400 12 --until 2025120712 --members 8   # every 00/12 UTC init
"""


def build_parser(script_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = _base_parser("ensemble_inference.py", DESCRIPTION, script_dir)
    add_init_lead(parser)
    parser.add_argument("--members", type=positive_int, default=16, metavar="N", help="ensemble size (default 16)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="S", help="sampler seed >= 0 (default 0)")
    parser.add_argument("--ecc", action=argparse.BooleanOptionalAction, default=True,
                        help="ensemble copula coupling onto the U-Net's per-pixel distributions (default: on; "
                        "docs/diffusion_ensemble.md has the scores that chose it)")
    parser.add_argument("--ecc-levels", choices=ECC_LEVELS, default=None,
                        help="with ECC, each rank's value: the quantile at the midpoint of its probability "
                        "interval (quantile, ECC-Q), at a level drawn inside it (stratified, ECC-S: every member "
                        "a random draw from the U-Net's distribution, tails included, see --ecc-level-smoothing) "
                        "or the interval's mean "
                        f"(mean, ECC-M: the members average to the U-Net's mean amount); default {DEFAULT_ECC_LEVELS}")
    parser.add_argument("--ecc-smoothing", type=non_negative_float, default=None, metavar="PX",
                        help="with ECC, rank the members by their log1p amount before clipping at 0, Gaussian-"
                        "smoothed over PX grid points (0: unsmoothed): larger values arrange the same point "
                        f"values in larger coherent areas; default {DEFAULT_ECC_SMOOTHING_PX:g}")
    parser.add_argument("--ecc-level-smoothing", type=smoothing_px, default=None, metavar="PX",
                        help="with ECC-S, each member's level inside its interval comes from a random field "
                        "Gaussian-smoothed over PX grid points (0: drawn independently at every point, which adds "
                        "point-scale noise; inf: one level per member); default "
                        f"{DEFAULT_ECC_LEVEL_SMOOTHING_PX:g}")
    parser.add_argument("--steps", type=positive_int, default=None, metavar="N",
                        help="Heun steps (default: the model's hyper-parameter set, sampler.n_steps)")
    parser.add_argument("--churn", type=non_negative_float, default=None, metavar="S",
                        help="stochastic churn S_churn (0: the deterministic ODE; default: the model's "
                        "sampler.s_churn)")
    parser.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, mps, cuda, cuda:N")
    add_threads(parser)
    parser.add_argument("--netcdf", action="store_true", help="also write the store as netCDF")
    parser.add_argument("--overwrite", action="store_true", help="redo existing outputs")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG and GIF")
    add_until_every(parser, "the models are")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pqpf.stages.ensemble_inference import run_ensemble_inference, run_ensemble_range

    for option, value in (("--ecc-levels", args.ecc_levels), ("--ecc-smoothing", args.ecc_smoothing),
                          ("--ecc-level-smoothing", args.ecc_level_smoothing)):
        if value is not None and not args.ecc:
            raise UsageError(f"{option} applies to ECC members; it cannot be combined with --no-ecc")
    levels = args.ecc_levels or DEFAULT_ECC_LEVELS
    if args.ecc_level_smoothing is not None and levels != "stratified":
        raise UsageError(f"--ecc-level-smoothing applies to --ecc-levels stratified, not {levels}")
    inits = inits_from_args(args)
    config = load_config_from_args(args)
    apply_threads(args, config)
    lead = check_lead(config, args.lead)
    options = dict(members=args.members, seed=args.seed, ecc=args.ecc, device=args.device, overwrite=args.overwrite,
                   plot=not args.no_plot, netcdf=args.netcdf, steps=args.steps, churn=args.churn, ecc_levels=levels,
                   ecc_smoothing_px=DEFAULT_ECC_SMOOTHING_PX if args.ecc_smoothing is None else args.ecc_smoothing,
                   ecc_level_smoothing_px=DEFAULT_ECC_LEVEL_SMOOTHING_PX if args.ecc_level_smoothing is None
                   else args.ecc_level_smoothing)
    if inits is not None:
        report = run_ensemble_range(config, inits, lead, **options)
        print(report.summary("ensemble_inference.py"))
        return 1 if report.failed else 0
    result = run_ensemble_inference(config, args.init, lead, **options)
    print(result.store)
    for path in (result.stamps_png, result.gif):
        if path:
            print(path)
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
