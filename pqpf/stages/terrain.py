"""The ``terrain_height.py`` stage: the GRAF terrain GRIB -> the terrain netCDF."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from pqpf.config import Config
from pqpf.errors import InputFileError
from pqpf.io.grib import read_terrain_grib
from pqpf.io.terrain_file import write_terrain
from pqpf.stages.common import kept
from pqpf.terrain import Terrain, compute_terrain_fields

__all__ = ["make_terrain_file"]

logger = logging.getLogger(__name__)


def make_terrain_file(config: Config, overwrite: bool = False) -> Path | None:
    """Read ``[paths] graf_terrain_grib``, compute every terrain variable with
    ``[terrain] smoothing_sigma_px`` and write ``[paths] terrain_file``.

    Returns
    -------
    Path or None
        The file written, or None when it already existed and ``overwrite`` is false.

    Raises
    ------
    InputFileError
        The terrain GRIB is missing, corrupt or holds no terrain height.
    """
    out = Path(config.paths.terrain_file)
    if kept(out, overwrite=overwrite):
        return None
    start = time.perf_counter()
    src = Path(config.paths.graf_terrain_grib)
    field = read_terrain_grib(src)
    logger.info("read terrain height from %s (%s)", src, field.grid.describe())
    sigma = config.terrain.smoothing_sigma_px
    try:
        fields = compute_terrain_fields(field.values, field.grid, sigma)
    except ValueError as exc:
        raise InputFileError(src, str(exc)) from None
    write_terrain(out, Terrain(field.grid, fields, float(sigma)), source=str(src))
    steepest = float(np.hypot(fields["slope_x"], fields["slope_y"]).max())
    logger.info(
        "wrote %s: height %.0f..%.0f m, max slope %.4f m/m, smoothing sigma %g px, %.1f s",
        out, float(fields["height"].min()), float(fields["height"].max()), steepest, sigma,
        time.perf_counter() - start,
    )
    return out
