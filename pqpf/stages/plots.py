"""The looking-at-the-data stages: ``plot_graf_mrms.py`` and ``plot_graf_mrms_samples.py``."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np

from pqpf.config import Config
from pqpf.dates import from_epoch_seconds
from pqpf.errors import InputFileError
from pqpf.io.grib import read_graf
from pqpf.io.mrms_file import read_remapped_mrms
from pqpf.io.patchfile import load_patch_file
from pqpf.layout import (
    graf_mrms_png_path,
    mrms_remapped_path,
    patch_file_path,
    patch_samples_png_path,
    require_graf,
)
from pqpf.plot import forecast_title, plot_fields_side_by_side, plot_patch_samples

__all__ = ["plot_graf_mrms", "plot_patch_file"]

logger = logging.getLogger(__name__)

_GRAF_CHANNEL = "graf_log1p"
_TERRAIN_CHANNEL = "terrain_local_difference"


def plot_graf_mrms(config: Config, init: dt.datetime, lead_h: int, overwrite: bool = False) -> Path:
    """GRAF and the remapped MRMS of its valid hour side by side (with MRMS quality).

    Returns the PNG (an existing one is kept unless ``overwrite``).
    """
    out_path = graf_mrms_png_path(config, init, lead_h)
    if out_path.is_file() and not overwrite:
        logger.info("%s exists; use --overwrite to draw it again", out_path)
        return out_path
    graf = read_graf(require_graf(config, init, lead_h), lead_h, init=init)
    mrms = read_remapped_mrms(mrms_remapped_path(config, init + dt.timedelta(hours=lead_h)), graf.grid)
    return plot_fields_side_by_side(
        out_path, graf.grid, np.asarray(graf.values), mrms.precipitation_mm, mrms.quality,
        forecast_title("GRAF vs MRMS 1-h precipitation", init, lead_h), min_quality=config.mrms.min_quality,
    )


def plot_patch_file(config: Config, init: dt.datetime, lead_h: int, split: str, n: int, seed: int,
                    overwrite: bool = False) -> Path:
    """``n`` random patches (seeded) of one split's patch file: GRAF, MRMS, terrain.

    Returns the PNG (an existing one is kept unless ``overwrite``).

    Raises
    ------
    InputFileError
        An empty split, or a file without the GRAF and terrain channels.
    """
    out_path = patch_samples_png_path(config, split, init, lead_h)
    if out_path.is_file() and not overwrite:
        logger.info("%s exists; use --overwrite to draw it again (e.g. with another --n or --seed)", out_path)
        return out_path
    path = patch_file_path(config, split, init, lead_h)
    data = load_patch_file(path)
    if int(data.get("n_patches", 0)) == 0:
        raise InputFileError(path, f"no patches in the {split} split")
    channels = list(data["channel_names"])
    lacking = [c for c in (_GRAF_CHANNEL, _TERRAIN_CHANNEL) if c not in channels]
    if lacking:
        raise InputFileError(path, f"no feature channel {', '.join(lacking)} (it has {', '.join(channels)})")
    labels = [f"valid {from_epoch_seconds(int(t)):%Y-%m-%d %HZ}" for t in data["valid_time"]]
    return plot_patch_samples(
        out_path, data["features"], channels, data["mrms"], data["quality"], n=n, seed=seed,
        graf_channel=_GRAF_CHANNEL, terrain_channel=_TERRAIN_CHANNEL, graf_to_mm=np.expm1,
        min_quality=config.mrms.min_quality, labels=labels,
        title=f"{split} patches for init {init:%Y%m%d%H} +{lead_h} h",
    )
