"""What every stage shares: the rule that finished outputs are kept, the clean-up of what
killed runs left, many inits in one process, and what verification and the calibration
fitted on forecasts read (the same files, points and weights)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh, hour_range
from pqpf.errors import InputFileError, PqpfError
from pqpf.grid import Grid
from pqpf.io.atomic import remove_stale_temporaries
from pqpf.io.mrms_file import RemappedMrms, read_remapped_mrms
from pqpf.io.probs_file import ProbabilityForecast, read_probabilities
from pqpf.layout import mrms_remapped_path, probs_path, registry_path
from pqpf.progress import Progress
from pqpf.quality import good_quality_mask
from pqpf.verify.area import area_weights

__all__ = ["RangeReport", "ScoringWeights", "clean_temporaries", "inits_with_probabilities", "kept",
           "read_probabilities_and_mrms", "run_range", "shared_input"]

logger = logging.getLogger(__name__)


def kept(*outputs: Path, overwrite: bool) -> bool:
    """Whether a stage's outputs are all there and are to be kept (not ``overwrite``).

    Reruns skip finished outputs (SPEC section 7: outputs are written atomically, so an
    existing file is complete), so a Slurm array can be resubmitted safely. Logs the
    skip once, naming the first output.
    """
    # a file or a directory (a zarr store): both are written atomically, so present = complete
    if overwrite or not outputs or not all(p.is_file() or p.is_dir() for p in outputs):
        return False
    logger.info("%s exists; use --overwrite to redo it", outputs[0])
    return True


def clean_temporaries(*folders: Path) -> None:
    """Remove the temporaries killed writers left in ``folders`` (their own host's at once,
    others' after an hour: :func:`pqpf.io.atomic.remove_stale_temporaries`), logging a count."""
    for folder in dict.fromkeys(folders):  # each once, in order
        removed = remove_stale_temporaries(folder)
        if removed:
            logger.info("removed %d temporaries of killed runs from %s", removed, folder)


@dataclass
class RangeReport:
    """What a stage did over many inits (``--until``), init by init."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, prog: str) -> str:
        """The one line a script prints at the end of a range."""
        failed = "; ".join(f"{i}: {why}" for i, why in self.failed)
        return (f"{prog}: {len(self.written)} written, {len(self.skipped)} skipped (already there), "
                f"{len(self.failed)} failed{f' ({failed})' if failed else ''}")


def shared_input(config: Config, exc: InputFileError) -> bool:
    """Whether the input that failed is one every init of a range reads (the terrain file,
    the model registry or a checkpoint), decided by its path alone, whatever is loaded."""
    path = exc.path.resolve()
    shared = {config.paths.terrain_file.resolve(), registry_path(config).resolve()}
    return path in shared or path.suffix == ".pt"


def run_range(config: Config, inits: list[dt.datetime], run_one: Callable[[dt.datetime], tuple[Path, bool]]
              ) -> RangeReport:
    """Run ``run_one(init) -> (output, skipped)`` for every init in one process.

    An init whose own input is missing or damaged (its GRAF file, a kept output of its
    own) is counted as failed and the rest run; an input every init shares
    (:func:`shared_input`) or any other error (a full disk) stops the range.
    """
    report = RangeReport()
    progress = Progress(len(inits), "inits", logger)
    for init in inits:
        try:
            output, skipped = run_one(init)
        except InputFileError as exc:
            if shared_input(config, exc):
                raise
            logger.warning("%s failed: %s", format_yyyymmddhh(init), exc)
            report.failed.append((format_yyyymmddhh(init), str(exc)))
        else:
            (report.skipped if skipped else report.written).append(output)
        progress.step()
    return report


# -- what verification and calibration read: probabilities, MRMS, weights -------------


def inits_with_probabilities(config: Config, begin: dt.datetime, end: dt.datetime, lead_h: int) -> list[dt.datetime]:
    """Every init from ``begin`` to ``end`` (any hour) with a probabilities file for ``lead_h``.

    Raises
    ------
    PqpfError
        When there is none, naming the folder.
    """
    inits = [t for t in hour_range(begin, end) if probs_path(config, t, lead_h).is_file()]
    if not inits:
        raise PqpfError(
            f"no probabilities files for +{lead_h} h between {format_yyyymmddhh(begin)} and "
            f"{format_yyyymmddhh(end)} in {config.paths.probs_dir} (run resunet_inference.py first)"
        )
    return inits


def read_probabilities_and_mrms(config: Config, init: dt.datetime, lead_h: int
                                ) -> tuple[ProbabilityForecast, RemappedMrms]:
    """The probabilities file of ``init`` and the remapped MRMS of its valid hour.

    Raises
    ------
    InputFileError
        Either file missing or unreadable, or MRMS on another grid.
    """
    probs = read_probabilities(probs_path(config, init, lead_h))
    mrms = read_remapped_mrms(mrms_remapped_path(config, init + dt.timedelta(hours=lead_h)))
    if not mrms.grid.same_as(probs.grid):
        raise InputFileError(mrms.source, "remapped MRMS grid differs from the probabilities' grid")
    return probs, mrms


class ScoringWeights:
    """The weight of every point in verification and in the calibration fitted on forecasts:
    the true cell area (:func:`pqpf.verify.area.area_weights`) on points whose MRMS quality
    is good (:func:`pqpf.quality.good_quality_mask`), 0 elsewhere. The area is computed once
    per grid."""

    def __init__(self, min_quality: float) -> None:
        self.min_quality = float(min_quality)
        self._area: dict[str, NDArray[np.float32]] = {}

    def area(self, grid: Grid) -> NDArray[np.float32]:
        key = grid.fingerprint()
        if key not in self._area:
            self._area[key] = area_weights(grid)
        return self._area[key]

    def __call__(self, grid: Grid, obs_mm: NDArray[np.floating], quality: NDArray[np.floating]
                 ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """The weights and the good-quality mask of one field."""
        good = good_quality_mask(obs_mm, quality, self.min_quality)
        return np.where(good, self.area(grid), 0.0), good
