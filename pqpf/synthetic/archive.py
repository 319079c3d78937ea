"""The archive writer: GRAF, MRMS and terrain GRIB2 files and the archive's ``config.ini``."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def _site_config(out_dir: Path, start: dt.datetime, end: dt.datetime, leads_h: Sequence[int],
                 cycles: Sequence[int]) -> Config:
    """The configuration of the archive in ``out_dir`` (absolute paths)."""
    paths = paths_below(out_dir)
    days = (end - start).total_seconds() / 86400.0
    short = days < 90
    patches = PatchesConfig(
        ndays_train=int(max(1, min(60, math.floor(days) - 3))),
        previous_year=days > 396,
        cycles=tuple(int(c) for c in cycles),
        # A short archive has few weather regimes: shorter blocks and larger held-out
        # shares keep wet and dry spells in every split.
        split_block_days=2 if short else 5,
        split_fractions=(0.6, 0.2, 0.2) if short else (0.7, 0.15, 0.15),
    )
    return Config(
        source=out_dir / "config.ini",
        paths=paths,
        graf=GrafConfig(lead_min_h=1, lead_max_h=max(48, max(leads_h))),
        terrain=TerrainConfig(smoothing_sigma_px=8.0),
        patches=patches,
        training=TrainingConfig(hparams_name="tiny"),
    )


def _validate(start: dt.datetime, end: dt.datetime, leads_h: Sequence[int], grid_name: str,
              cycles: Sequence[int]) -> tuple[list[int], list[int]]:
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

    Returns
    -------
    Config
        ``load_config(out_dir / "config.ini")``.

    Raises
    ------
    UsageError
        For a reversed range, bad leads, cycles or grid name, or an output path that is
        a file.
    """
    leads, cycle_hours = _validate(start, end, leads_h, grid_name, cycles)
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output {out_dir} exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    config = _site_config(out_dir, start, end, leads, cycle_hours)
    world = _World.build(grid_name, seed, params if params is not None else WeatherParams(), model_grid)
    logger.info("synthetic archive in %s: model %s; MRMS %s", out_dir, world.model.describe(),
                world.mrms.describe())
    terrain_path = config.paths.graf_terrain_grib
    if overwrite or not terrain_path.exists():
        write_terrain_grib2(terrain_path, world.model, world.terrain_ext[world.dom.inner])
    _write_hours(config, world, start, end, leads, cycle_hours, overwrite)
    atomic_write_text(out_dir / "config.ini", _config_header(start, end, leads, grid_name, seed)
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
        model = model_grid if model_grid is not None else graf_like_grid(grid_name)
        mrms = mrms_grid_for(grid_name, model)
        dom = extended_domain(model, mrms)
        terrain_ext = synthetic_terrain(dom.grid, seed)
        weather = Weather(dom, terrain_ext, seed, params)
        return cls(grid_name, seed, params, model, mrms, dom, terrain_ext, weather)

    def observer(self) -> Observer:
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
                   seed: int) -> str:
    return (
        "# pqpf site configuration of a synthetic archive, written by\n"
        f"# python -m pqpf.synthetic --start {format_yyyymmddhh(start)} --end {format_yyyymmddhh(end)} "
        f"--leads {','.join(str(v) for v in leads)} --grid {grid_name} --seed {seed}\n"
        "# Paths are relative to this file, so the archive can be moved.\n\n"
    )
