"""The hourly MRMS stage: raw QPE + quality -> one CF netCDF per hour on the GRAF grid.

For every hour of a range, the MRMS 1-h multi-sensor QPE and its radar accumulation
quality index are read from the raw archive (:func:`pqpf.layout.mrms_raw_path`),
remapped to the grid of the terrain file (``[paths] terrain_file``) with weights that
are built once per (source grid, target grid, method) and cached on disk
(:func:`pqpf.remapping.cached_weights`), and written atomically to
:func:`pqpf.layout.mrms_remapped_path` with ``precipitation`` (mm), ``quality``
(0..1) and ``valid_fraction``. Existing outputs are skipped unless ``overwrite``; an hour
whose input is missing or damaged is counted as failed with its reason and the loop goes
on.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh, hour_range
from pqpf.download import download_hour
from pqpf.errors import ConfigError, GridMismatchError, InputFileError, PqpfError
from pqpf.grid import Grid
from pqpf.io.grib import read_mrms_qpe, read_mrms_quality
from pqpf.io.netcdf import NcVar, read_grid_netcdf, write_grid_netcdf
from pqpf.layout import mrms_raw_path, mrms_remapped_path, remap_weights_dir
from pqpf.progress import Progress
from pqpf.remapping import METHODS, RegridWeights, cached_weights

__all__ = ["HourResult", "RangeReport", "WeightsProvider", "target_grid", "remap_hour", "remap_range",
           "read_remapped_mrms"]

logger = logging.getLogger(__name__)

WRITTEN, SKIPPED, FAILED = "written", "skipped", "failed"


@dataclass(frozen=True)
class HourResult:
    """Outcome of one hour: ``status`` is ``"written"``, ``"skipped"`` (output existed)
    or ``"failed"`` (``reason`` says why)."""

    valid: dt.datetime
    status: str
    path: Path
    reason: str = ""


@dataclass
class RangeReport:
    """Counts of a range run, with the reasons of the failed hours."""

    written: list[dt.datetime] = field(default_factory=list)
    skipped: list[dt.datetime] = field(default_factory=list)
    failed: list[HourResult] = field(default_factory=list)

    def add(self, result: HourResult) -> None:
        if result.status == WRITTEN:
            self.written.append(result.valid)
        elif result.status == SKIPPED:
            self.skipped.append(result.valid)
        else:
            self.failed.append(result)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self, max_failed: int = 5) -> str:
        """One line: counts, then the first few failed hours with their reasons."""
        line = (
            f"{len(self.written)} written, {len(self.skipped)} skipped (already there), "
            f"{len(self.failed)} failed"
        )
        if self.failed:
            shown = "; ".join(
                f"{format_yyyymmddhh(r.valid)}: {r.reason}" for r in self.failed[:max_failed]
            )
            more = f"; and {len(self.failed) - max_failed} more" if len(self.failed) > max_failed else ""
            line += f" ({shown}{more})"
        return line


class WeightsProvider:
    """Remap weights for the run's target grid and method, per source grid: loaded from
    (or built into) the on-disk cache the first time a source grid is seen, then kept
    in memory, so they are never rebuilt per hour."""

    def __init__(self, cache_dir: Path, grid_out: Grid, method: str) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown remapping method {method!r}; valid methods: {', '.join(METHODS)}")
        self.cache_dir = Path(cache_dir)
        self.grid_out = grid_out
        self.method = method
        self._by_source: dict[str, RegridWeights] = {}

    def __call__(self, grid_in: Grid) -> RegridWeights:
        key = grid_in.fingerprint()
        if key not in self._by_source:
            self._by_source[key] = cached_weights(self.cache_dir, grid_in, self.grid_out, self.method)
        return self._by_source[key]


def target_grid(config: Config) -> Grid:
    """The GRAF grid, read from the terrain file.

    Raises
    ------
    InputFileError
        The terrain file is missing (run ``terrain_height.py`` first) or unreadable.
    """
    path = config.paths.terrain_file
    if not path.is_file():
        raise InputFileError(path, "terrain file not found; run terrain_height.py first")
    return read_grid_netcdf(path, names=[]).grid


def _variables(
    precip: NDArray[np.float32], quality: NDArray[np.float32], valid_fraction: NDArray[np.float32],
    method: str,
) -> dict[str, NcVar]:
    cell = "area: mean" if method == "conservative" else "area: point"
    return {
        "precipitation": NcVar(precip, {
            "long_name": "MRMS 1-h multi-sensor precipitation amount remapped to the model grid",
            "standard_name": "lwe_thickness_of_precipitation_amount", "units": "mm",
            "cell_methods": f"time: sum {cell}",
            "comment": "mean over the valid MRMS cells of each grid cell; NaN where none is valid",
        }),
        "quality": NcVar(quality, {
            "long_name": "MRMS radar accumulation quality index remapped to the model grid",
            "units": "1", "valid_range": np.array([0.0, 1.0], np.float32),
            "comment": "mean over the MRMS cells of each grid cell, missing precipitation counted as 0",
        }),
        "valid_fraction": NcVar(valid_fraction, {
            "long_name": "fraction of the grid cell's MRMS cells (by area) with valid precipitation",
            "units": "1", "valid_range": np.array([0.0, 1.0], np.float32),
        }),
    }


def remap_hour(
    config: Config,
    valid: dt.datetime,
    weights_provider: Callable[[Grid], RegridWeights],
    overwrite: bool = False,
    lonlat: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
) -> HourResult:
    """Remap one hour of MRMS QPE and quality and write its netCDF.

    Parameters
    ----------
    config : Config
    valid : datetime
        End of the 1-h accumulation (UTC).
    weights_provider : callable
        ``grid_in -> RegridWeights`` onto the target grid (e.g. :class:`WeightsProvider`).
    overwrite : bool
        Rewrite an existing output.
    lonlat : (lon, lat), optional
        2-D coordinates of the target grid, computed once per run by the caller.

    Returns
    -------
    HourResult
        ``failed`` with the reason when an input is missing, damaged, or on another grid.
    """
    out = mrms_remapped_path(config, valid)
    if out.is_file() and not overwrite:
        return HourResult(valid, SKIPPED, out)
    qpe_path = mrms_raw_path(config, config.mrms.qpe_product, valid)
    quality_path = mrms_raw_path(config, config.mrms.quality_product, valid)
    try:
        for path in (qpe_path, quality_path):  # both must exist before any decoding
            if not path.is_file():
                raise InputFileError(path, "file not found")
        qpe = read_mrms_qpe(qpe_path, config.mrms.qpe_grib_id, valid)
        quality = read_mrms_quality(quality_path, valid)
        if not quality.grid.same_as(qpe.grid):
            raise GridMismatchError(
                f"{quality_path}: grid {quality.grid.describe()} differs from the QPE's "
                f"{qpe.grid.describe()}"
            )
        weights = weights_provider(qpe.grid)
        result = weights.apply(qpe.values, quality.values)
    except PqpfError as exc:
        return HourResult(valid, FAILED, out, str(exc))
    quality_out = cast(NDArray[np.float32], result.quality)  # given a quality field, apply returns one
    write_grid_netcdf(
        out, weights.grid_out,
        _variables(result.precipitation, quality_out, result.valid_fraction, weights.method),
        time=valid, lonlat=lonlat,
        global_attrs={
            "title": "MRMS 1-h QPE and quality remapped to the model grid",
            "source": f"MRMS files {qpe_path.name} and {quality_path.name}",
            "remap_method": weights.method,
            "remap_weights_fingerprint": weights.fingerprint,
            "source_grid": weights.grid_in.describe(),
            "source_qpe_file": qpe_path.name,
            "source_quality_file": quality_path.name,
        },
    )
    return HourResult(valid, WRITTEN, out)


def _fetch_missing(config: Config, valid: dt.datetime, base_url: str | None) -> str:
    """Download the raw files of ``valid`` that are not there; a reason when one could
    not be had, else ''."""
    missing = []
    for product in (config.mrms.qpe_product, config.mrms.quality_product):
        if mrms_raw_path(config, product, valid).is_file():
            continue
        try:
            got = download_hour(config, product, valid, base_url=base_url)
        except PqpfError as exc:
            return str(exc)
        if got is None:
            missing.append(product)
    if missing:
        return f"not on the server: {', '.join(missing)}"
    return ""


def remap_range(
    config: Config,
    begin: dt.datetime,
    end: dt.datetime,
    method: str | None = None,
    overwrite: bool = False,
    download: bool = False,
    base_url: str | None = None,
) -> RangeReport:
    """Remap every hour from ``begin`` to ``end`` (inclusive) onto the terrain file's grid.

    Parameters
    ----------
    config : Config
    begin, end : datetime
        First and last valid hour (UTC).
    method : str, optional
        ``conservative``, ``nearest`` or ``bilinear``; ``[mrms] remap_method`` when omitted.
    overwrite : bool
        Rewrite existing outputs (otherwise they are skipped).
    download : bool
        Fetch missing raw files from ``base_url`` (default ``[mrms] download_url``) first.

    Returns
    -------
    RangeReport
        Hours written, skipped and failed (with reasons). Failed hours do not stop the
        run.

    Raises
    ------
    UsageError
        ``end`` before ``begin``.
    InputFileError
        The terrain file is missing or unreadable.
    ConfigError
        ``[mrms] remap_method`` names no known method.
    ValueError
        Unknown ``method`` argument.
    """
    hours = list(hour_range(begin, end))
    if method is None:
        method = config.mrms.remap_method
        if method not in METHODS:
            raise ConfigError(
                f"{config.source}: [mrms] remap_method {method!r} is not one of {', '.join(METHODS)}"
            )
    grid_out = target_grid(config)
    provider = WeightsProvider(remap_weights_dir(config), grid_out, method)
    lonlat: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None
    report = RangeReport()
    progress = Progress(len(hours), "hours", logger)
    logger.info("remapping %d hour(s) of MRMS onto %s (%s)", len(hours), grid_out.describe(), method)
    for valid in hours:
        out = mrms_remapped_path(config, valid)
        if out.is_file() and not overwrite:
            result = HourResult(valid, SKIPPED, out)
        else:
            reason = _fetch_missing(config, valid, base_url) if download else ""
            if reason:
                result = HourResult(valid, FAILED, out, reason)
            else:
                if lonlat is None:
                    lonlat = grid_out.lonlat()
                result = remap_hour(config, valid, provider, overwrite=overwrite, lonlat=lonlat)
        if result.status == FAILED:
            logger.warning("%s failed: %s", format_yyyymmddhh(valid), result.reason)
        report.add(result)
        progress.step(note=f"{len(report.failed)} failed" if report.failed else "")
    return report


def read_remapped_mrms(
    config: Config,
    valid: dt.datetime,
    grid: Grid | None = None,
    names: tuple[str, ...] = ("precipitation", "quality"),
) -> Any:
    """The remapped MRMS of one hour (a :class:`~pqpf.io.netcdf.GridDataset`).

    Raises
    ------
    InputFileError
        Missing or unreadable file, or (``grid`` given) a file on another grid.
    """
    path = mrms_remapped_path(config, valid)
    if not path.is_file():
        raise InputFileError(path, "remapped MRMS not found (run save_remapped_mrms.py for this hour)")
    ds = read_grid_netcdf(path, list(names))
    if grid is not None and not ds.grid.same_as(grid):
        raise InputFileError(path, f"remapped MRMS grid ({ds.grid.describe()}) differs from {grid.describe()}")
    return ds
