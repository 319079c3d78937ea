"""The archive writer: GRAF, MRMS and terrain GRIB2 files and the archive's ``config.ini``.

:func:`generate_archive` writes into ``DIR``

* GRAF-like forecasts: GRIB2 on the Lambert conformal model grid, 1-h accumulated
  precipitation ending at each lead, WINC names and directory layout (the old
  ``hdo-graflr_conus`` archive for inits up to 2024040512, the new one after);
* MRMS: gzipped GRIB2 ``MultiSensor_QPE_01H_Pass2_00.00`` (209/6/37, packed to 0.1 mm)
  and ``RadarAccumulationQualityIndex_01H_00.00`` (packed to 0.01) for every hour of
  the range, on the 0.01 degree grid in the public archive's layout, -3 outside radar
  coverage;
* the terrain height as GRIB2 orography;
* ``DIR/config.ini`` with every ``[paths]`` key inside ``DIR``, written relative to
  ``DIR`` so the archive can be moved.

The configuration's choices: ``[paths]`` below ``DIR``
(``graf_dir = graf/hdo-graf_conus``, ``graf_dir_old = graf/hdo-graflr_conus``,
``graf_laptop_dir = graf`` so the laptop layout equals the archive, terrain GRIB in
``static/``, terrain netCDF in ``terrain/``, ``mrms_raw``, ``mrms_remapped``, ``patches``,
``trainings``, ``probs``, ``plots``); ``[graf] lead_max_h = max(48, largest lead)``;
``[terrain] smoothing_sigma_px = 8`` (32 km at 4 km spacing); ``[training]
hparams_name = tiny``; ``[patches] ndays_train = max(1, min(60, floor(D) - 3))`` with
``D = (end - start)`` in days, ``previous_year`` only when ``D > 396`` (13 months),
``cycles`` = the cycles generated; an archive with ``D < 90`` gets 2-day split blocks and
a 0.6/0.2/0.2 split (else 5 days and 0.7/0.15/0.15) so that wet and dry spells reach
every split; ``patches_per_init`` as asked (else the configuration's default).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pqpf.config import (
    Config,
    GrafConfig,
    PatchesConfig,
    TerrainConfig,
    TrainingConfig,
    config_to_ini,
    load_config,
    paths_below,
)
from pqpf.dates import format_yyyymmddhh, hour_range
from pqpf.errors import UsageError
from pqpf.grid import Grid, graf_like_grid
from pqpf.io.atomic import atomic_write_bytes, atomic_write_text
from pqpf.io.grib_write import (
    MRMS_QPE_PASS2_ID,
    MRMS_QUALITY_ID,
    encode_mrms_grib2,
    gzip_deterministic,
    static_product_gzipper,
    write_graf_grib2,
    write_terrain_grib2,
)
from pqpf.layout import graf_archive_path, mrms_raw_path
from pqpf.progress import Progress
from pqpf.synthetic.grids import ExtendedDomain, extended_domain, mrms_grid_for
from pqpf.synthetic.params import WeatherParams
from pqpf.synthetic.radar import Observer, build_observer
from pqpf.synthetic.terrain import synthetic_terrain
from pqpf.synthetic.weather import Weather

__all__ = ["generate_archive"]

logger = logging.getLogger(__name__)

# The archive's config.ini (see the module docstring).
_MIN_LEAD_MAX_H = 48
_TERRAIN_SIGMA_PX = 8.0
_HPARAMS_NAME = "tiny"
_MAX_TRAIN_DAYS = 60
#: The training window is this many days shorter than the archive.
_TRAIN_WINDOW_SHORTFALL_DAYS = 3
#: Archives shorter than this (days) count as short: shorter split blocks, larger held-out shares.
_SHORT_ARCHIVE_DAYS = 90
_SPLIT_SHORT = (2, (0.6, 0.2, 0.2))
_SPLIT_LONG = (5, (0.7, 0.15, 0.15))
#: Archives longer than this (days, 13 months) also train on the same season a year earlier.
_PREVIOUS_YEAR_MIN_DAYS = 396
_SECONDS_PER_DAY = 86400.0


def _site_config(out_dir: Path, start: dt.datetime, end: dt.datetime, leads_h: Sequence[int],
                 cycles: Sequence[int], patches_per_init: int | None) -> Config:
    """The configuration of the archive in ``out_dir`` (absolute paths)."""
    paths = paths_below(out_dir)
    days = (end - start).total_seconds() / _SECONDS_PER_DAY
    # A short archive has few weather regimes: shorter blocks and larger held-out
    # shares keep wet and dry spells in every split.
    block_days, fractions = _SPLIT_SHORT if days < _SHORT_ARCHIVE_DAYS else _SPLIT_LONG
    patches = PatchesConfig(
        ndays_train=int(max(1, min(_MAX_TRAIN_DAYS, math.floor(days) - _TRAIN_WINDOW_SHORTFALL_DAYS))),
        previous_year=days > _PREVIOUS_YEAR_MIN_DAYS,
        cycles=tuple(int(c) for c in cycles),
        split_block_days=block_days,
        split_fractions=fractions,
    )
    if patches_per_init is not None:
        patches = replace(patches, patches_per_init=patches_per_init)
    return Config(
        source=out_dir / "config.ini",
        paths=paths,
        graf=GrafConfig(lead_min_h=1, lead_max_h=max(_MIN_LEAD_MAX_H, max(leads_h))),
        terrain=TerrainConfig(smoothing_sigma_px=_TERRAIN_SIGMA_PX),
        patches=patches,
        training=TrainingConfig(hparams_name=_HPARAMS_NAME),
    )


def _validate(start: dt.datetime, end: dt.datetime, leads_h: Sequence[int], grid_name: str,
              cycles: Sequence[int], patches_per_init: int | None) -> tuple[list[int], list[int]]:
    """Sorted unique leads and cycle hours; UsageError for anything out of range."""
    if patches_per_init is not None and patches_per_init < 1:
        raise UsageError(f"patches_per_init must be >= 1, got {patches_per_init}")
    if end < start:
        raise UsageError(f"end {format_yyyymmddhh(end)} is before start {format_yyyymmddhh(start)}")
    leads = sorted({int(v) for v in leads_h})
    if not leads or leads[0] < 1:
        raise UsageError(f"leads must be whole hours >= 1, got {list(leads_h)}")
    hours = sorted({int(c) for c in cycles})
    if not hours or hours[0] < 0 or hours[-1] > 23:
        raise UsageError(f"cycles must be hours 0..23, got {list(cycles)}")
    if grid_name not in ("demo", "conus"):
        raise UsageError(f"grid must be demo or conus, got {grid_name!r}")
    return leads, hours


def generate_archive(
    out_dir: Path,
    start: dt.datetime,
    end: dt.datetime,
    leads_h: Sequence[int],
    grid_name: str = "demo",
    seed: int = 0,
    cycles: Sequence[int] = (0, 12),
    overwrite: bool = False,
    *,
    model_grid: Grid | None = None,
    params: WeatherParams | None = None,
    patches_per_init: int | None = None,
) -> Config:
    """Write a synthetic GRAF + MRMS archive and its ``config.ini`` into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Archive directory (created).
    start, end : datetime
        First and last hour (inclusive, UTC) of MRMS and of GRAF inits.
    leads_h : sequence of int
        GRAF lead times (h, >= 1) written for every init.
    grid_name : str
        ``"demo"`` (200 x 250 at 4 km) or ``"conus"`` (1308 x 1524 and the real MRMS grid).
    seed : int
        Random seed; with ``start`` it determines every file.
    cycles : sequence of int
        Init hours (UTC) of the GRAF runs.
    overwrite : bool
        Rewrite files that exist; otherwise they are kept (a rerun after a kill completes
        the archive: all files are written atomically).
    model_grid : Grid, optional
        A model grid to use instead of the named one (e.g. a piece of it, for tests);
        the MRMS grid and radar spacing still follow ``grid_name``.
    params : WeatherParams, optional
        The weather, radar and forecast-error parameters (default ``WeatherParams()``).
    patches_per_init : int, optional
        ``[patches] patches_per_init`` of the written configuration (default: the
        configuration's own default).

    Returns
    -------
    Config
        ``load_config(out_dir / "config.ini")``.

    Raises
    ------
    UsageError
        For a reversed range, bad leads, cycles, grid name or ``patches_per_init``, or an
        output path that is a file.
    """
    leads, cycle_hours = _validate(start, end, leads_h, grid_name, cycles, patches_per_init)
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output {out_dir} exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    config = _site_config(out_dir, start, end, leads, cycle_hours, patches_per_init)
    world = _World.build(grid_name, seed, params if params is not None else WeatherParams(), model_grid)
    logger.info("synthetic archive in %s: model %s; MRMS %s", out_dir, world.model.describe(),
                world.mrms.describe())
    terrain_path = config.paths.graf_terrain_grib
    if overwrite or not terrain_path.exists():
        write_terrain_grib2(terrain_path, world.model, world.terrain_ext[world.dom.inner])
    _write_hours(config, world, start, end, leads, cycle_hours, overwrite)
    atomic_write_text(out_dir / "config.ini", _config_header(start, end, leads, grid_name, seed, patches_per_init)
                      + config_to_ini(config, relative_to=out_dir))
    return load_config(out_dir / "config.ini")


@dataclass
class _World:
    """What the archive is made of: the grids, the terrain, the weather and the radar
    network (built on first use: an archive whose MRMS files all exist needs none)."""

    grid_name: str
    seed: int
    params: WeatherParams
    model: Grid
    mrms: Grid
    dom: ExtendedDomain
    terrain_ext: NDArray[np.float32]
    weather: Weather
    _observer: Observer | None = None

    @classmethod
    def build(cls, grid_name: str, seed: int, params: WeatherParams, model_grid: Grid | None) -> _World:
        """Grids, terrain and weather of a named grid (or of ``model_grid``)."""
        model = model_grid if model_grid is not None else graf_like_grid(grid_name)
        mrms = mrms_grid_for(grid_name, model)
        dom = extended_domain(model, mrms)
        terrain_ext = synthetic_terrain(dom.grid, seed)
        weather = Weather(dom, terrain_ext, seed, params)
        return cls(grid_name, seed, params, model, mrms, dom, terrain_ext, weather)

    def observer(self) -> Observer:
        """The MRMS observer (radar sites and quality index computed on the first call)."""
        if self._observer is None:
            self._observer = build_observer(self.mrms, self.dom.grid, self.terrain_ext, self.grid_name,
                                            self.seed, self.params)
        return self._observer


def _write_hours(config: Config, world: _World, start: dt.datetime, end: dt.datetime, leads: Sequence[int],
                 cycle_hours: Sequence[int], overwrite: bool) -> None:
    """Step the weather through every hour; write the MRMS files of ``start..end`` and
    the GRAF forecasts of every init in it."""
    qpe_product, quality_product = config.mrms.qpe_product, config.mrms.quality_product
    inits = {t for t in hour_range(start, end) if t.hour in cycle_hours}
    last = end + dt.timedelta(hours=leads[-1])
    hours = list(hour_range(start, last))
    progress = Progress(len(hours), "hours", logger)
    quality_gz: Callable[[dt.datetime], bytes] | None = None
    written = 0
    weather = world.weather
    weather.start(start - dt.timedelta(hours=1))
    for when in hours:
        weather.step()
        todo_graf = [(when - dt.timedelta(hours=lead), lead) for lead in leads
                     if when - dt.timedelta(hours=lead) in inits]
        todo_graf = [(i, ld) for i, ld in todo_graf
                     if overwrite or not graf_archive_path(config, i, ld).exists()]
        qpe_path = mrms_raw_path(config, qpe_product, when)
        quality_path = mrms_raw_path(config, quality_product, when)
        if when <= end and (overwrite or not (qpe_path.exists() and quality_path.exists())):
            observer = world.observer()
            qpe = observer.observe(weather.truth(), when)
            atomic_write_bytes(qpe_path, gzip_deterministic(
                encode_mrms_grib2(world.mrms, qpe, when, MRMS_QPE_PASS2_ID, decimals=1)))
            if quality_gz is None:
                quality_gz = static_product_gzipper(
                    encode_mrms_grib2(world.mrms, observer.quality, when, MRMS_QUALITY_ID, decimals=2))
            atomic_write_bytes(quality_path, quality_gz(when))
            written += 2
        for init, lead in todo_graf:
            write_graf_grib2(graf_archive_path(config, init, lead), world.model, weather.forecast(init, lead),
                             init, lead)
            written += 1
        progress.step()
    logger.info("wrote %d files (%d hours, %d inits x %d leads)", written, len(hours), len(inits), len(leads))


def _config_header(start: dt.datetime, end: dt.datetime, leads: Sequence[int], grid_name: str,
                   seed: int, patches_per_init: int | None) -> str:
    """Comment lines that open the archive's config.ini: how it was made."""
    per_init = "" if patches_per_init is None else f" --patches-per-init {patches_per_init}"
    return (
        "# pqpf site configuration of a synthetic archive, written by\n"
        f"# python -m pqpf.synthetic --start {format_yyyymmddhh(start)} --end {format_yyyymmddhh(end)} "
        f"--leads {','.join(str(v) for v in leads)} --grid {grid_name} --seed {seed}{per_init}\n"
        "# Paths are relative to this file, so the archive can be moved.\n\n"
    )
