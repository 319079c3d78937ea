"""The ``save_remapped_mrms.py`` stage: raw MRMS QPE + quality -> one netCDF per hour on the GRAF grid.

For every hour of a range, the MRMS 1-h multi-sensor QPE and its radar accumulation
quality index are read from the raw archive (:func:`pqpf.layout.mrms_raw_path`),
remapped to the grid of the terrain file (``[paths] terrain_file``) with weights that
are built once per (source grid, target grid, method) and cached on disk
(:func:`pqpf.remapping.cached_weights`), and written atomically to
:func:`pqpf.layout.mrms_remapped_path` (the format: :mod:`pqpf.io.mrms_file`).
Existing outputs are skipped unless ``overwrite``; an hour whose input is missing or
damaged is counted as failed with its reason and the loop goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
from numpy.typing import NDArray

from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh, hour_range
from pqpf.errors import GridMismatchError, InputFileError, PqpfError
from pqpf.grid import Grid
from pqpf.io.grib import read_mrms_qpe, read_mrms_quality
from pqpf.io.mrms_file import write_remapped_mrms
from pqpf.io.terrain_file import read_terrain_grid
from pqpf.layout import mrms_raw_path, mrms_remapped_path, remap_weights_dir
from pqpf.progress import Progress
from pqpf.remap_methods import METHODS
from pqpf.remapping import RegridWeights, cached_weights
from pqpf.stages.common import clean_temporaries
from pqpf.stages.download import download_hour

__all__ = ["HourResult", "RangeReport", "WeightsProvider", "remap_hour", "remap_range"]

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


def has_quality(config: Config) -> bool:
    """Whether the archive has a quality product (``[mrms] quality_product`` not empty)."""
    return bool(config.mrms.quality_product.strip())


def remap_hour(
    config: Config,
    valid: dt.datetime,
    weights_provider: Callable[[Grid], RegridWeights],
    lonlat: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
) -> HourResult:
    """Remap one hour of MRMS QPE and quality and write its netCDF (an existing one is
    replaced: :func:`remap_range` decides what to skip).

    Parameters
    ----------
    config : Config
    valid : datetime
        End of the 1-h accumulation (UTC).
    weights_provider : callable
        ``grid_in -> RegridWeights`` onto the target grid (e.g. :class:`WeightsProvider`).
    lonlat : (lon, lat), optional
        2-D coordinates of the target grid, computed once per run by the caller.

    Returns
    -------
    HourResult
        ``failed`` with the reason when an input is missing, damaged, or on another grid.
    """
    out = mrms_remapped_path(config, valid)
    qpe_path = mrms_raw_path(config, config.mrms.qpe_product, valid)
    quality_path = mrms_raw_path(config, config.mrms.quality_product, valid) if has_quality(config) else None
    try:
        for path in (qpe_path, quality_path):  # both must exist before any decoding
            if path is not None and not path.is_file():
                raise InputFileError(path, "file not found")
        qpe = read_mrms_qpe(qpe_path, config.mrms.qpe_grib_id, valid)
        if quality_path is None:  # every cell with a QPE value counts; missing cells get 0
            quality_values = np.ones(qpe.values.shape, np.float32)
        else:
            quality = read_mrms_quality(quality_path, valid)
            if not quality.grid.same_as(qpe.grid):
                raise GridMismatchError(
                    f"{quality_path}: grid {quality.grid.describe()} differs from the QPE's "
                    f"{qpe.grid.describe()}"
                )
            quality_values = quality.values
        weights = weights_provider(qpe.grid)
        result = weights.apply(qpe.values, quality_values)
    except PqpfError as exc:
        return HourResult(valid, FAILED, out, str(exc))
    quality_out = cast(NDArray[np.float32], result.quality)  # given a quality field, apply returns one
    write_remapped_mrms(
        out, weights.grid_out, result.precipitation, quality_out, result.valid_fraction, valid, weights.method,
        provenance={
            "source": (f"MRMS files {qpe_path.name} and {quality_path.name}" if quality_path is not None
                       else f"MRMS file {qpe_path.name} (no quality product: quality 1 wherever it has data)"),
            "remap_method": weights.method,
            "remap_weights_fingerprint": weights.fingerprint,
            "source_grid": weights.grid_in.describe(),
            "source_qpe_file": qpe_path.name,
            "source_quality_file": quality_path.name if quality_path is not None else "none",
        },
        lonlat=lonlat,
    )
    return HourResult(valid, WRITTEN, out)


def _fetch_missing(config: Config, valid: dt.datetime, base_url: str | None) -> str:
    """Download the raw files of ``valid`` that are not there; a reason when one could
    not be had, else ''."""
    missing = []
    for product in (config.mrms.qpe_product, *((config.mrms.quality_product,) if has_quality(config) else ())):
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
    ValueError
        Unknown ``method`` argument.
    """
    hours = list(hour_range(begin, end))
    method = config.mrms.remap_method if method is None else method  # the config checked its own
    grid_out = read_terrain_grid(config.paths.terrain_file)
    provider = WeightsProvider(remap_weights_dir(config), grid_out, method)
    lonlat: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None
    report = RangeReport()
    progress = Progress(len(hours), "hours", logger)
    logger.info("remapping %d hour(s) of MRMS onto %s (%s)", len(hours), grid_out.describe(), method)
    if not has_quality(config):
        logger.info("[mrms] quality_product is empty: every cell with a %s value counts (quality 1), "
                    "cells without data are missing", config.mrms.qpe_product)
    cleaned: set[Path] = set()
    for valid in hours:
        out = mrms_remapped_path(config, valid)
        if out.parent not in cleaned:
            clean_temporaries(out.parent)
            cleaned.add(out.parent)
        reason = ""
        if not overwrite and out.is_file():  # the one skip check: outputs are complete (atomic)
            result = HourResult(valid, SKIPPED, out)
        elif download and (reason := _fetch_missing(config, valid, base_url)):
            result = HourResult(valid, FAILED, out, reason)
        else:
            if lonlat is None:
                lonlat = grid_out.lonlat()
            result = remap_hour(config, valid, provider, lonlat=lonlat)
        if result.status == FAILED:
            logger.warning("%s failed: %s", format_yyyymmddhh(valid), result.reason)
        report.add(result)
        progress.step(note=f"{len(report.failed)} failed" if report.failed else "")
    return report
