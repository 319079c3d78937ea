"""plot_graf_mrms_samples.py INIT LEAD: a grid of sampled patches from a patch file."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from pqpf.cli.common import add_init_lead, check_lead, load_config_from_args, positive_int, run_cli
from pqpf.cli.common import build_parser as _base_parser

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

#: Feature channels drawn: the GRAF amount (stored as log1p of mm) and the terrain local
#: difference (m).
_GRAF_CHANNEL = "graf_log1p"
_TERRAIN_CHANNEL = "terrain_local_difference"

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
    parser.add_argument("--seed", type=int, default=0, help="which random patches (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="redraw an existing PNG")
    return parser


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from pqpf.dates import from_epoch_seconds
    from pqpf.errors import InputFileError, UsageError
    from pqpf.io.patchfile import load_patch_file
    from pqpf.layout import patch_file_path, patch_samples_png_path
    from pqpf.plot import plot_patch_samples

    config = load_config_from_args(args)
    lead = check_lead(config, args.lead)
    if args.n > 48:
        raise UsageError(f"--n {args.n}: draw at most 48 patches in one picture")
    out_path = patch_samples_png_path(config, args.split, args.init, lead)
    if out_path.is_file() and not args.overwrite:
        logger.info("%s exists; use --overwrite to draw it again (e.g. with another --n or --seed)", out_path)
        print(out_path)
        return 0
    path = patch_file_path(config, args.split, args.init, lead)
    data = load_patch_file(path)
    if int(data.get("n_patches", 0)) == 0:
        raise InputFileError(path, f"no patches in the {args.split} split")
    channels = list(data["channel_names"])
    lacking = [c for c in (_GRAF_CHANNEL, _TERRAIN_CHANNEL) if c not in channels]
    if lacking:
        raise InputFileError(path, f"no feature channel {', '.join(lacking)} (it has {', '.join(channels)})")
    labels = [f"valid {from_epoch_seconds(int(t)):%Y-%m-%d %HZ}" for t in data["valid_time"]]
    out = plot_patch_samples(
        out_path, data["features"], channels, data["mrms"], data["quality"], n=args.n, seed=args.seed,
        graf_channel=_GRAF_CHANNEL, terrain_channel=_TERRAIN_CHANNEL, graf_to_mm=np.expm1,
        min_quality=config.mrms.min_quality, labels=labels,
        title=f"{args.split} patches for init {args.init:%Y%m%d%H} +{lead} h",
    )
    print(out)
    return 0


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_cli(build_parser(script_dir), _run, argv)
