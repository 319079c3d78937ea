"""The ``verify_resunet.py`` stage: scores of the probability files over a range of inits.

For every init in ``BEGIN..END`` (any hour) that has a probabilities file and whose
verifying hour has remapped MRMS, the model's, the raw GRAF's and the smoothed-GRAF
reference's exceedance probabilities are scored against MRMS at the configured
thresholds, on points whose MRMS quality is good (:func:`pqpf.quality.good_quality_mask`),
weighted by true cell area (:func:`pqpf.verify.area.area_weights`: the map factor on the
Lambert grid, cos(latitude) on latitude/longitude grids), streaming through
:class:`pqpf.verify.verifier.Verifier` (memory does not grow with the number of inits).
The forecast distribution for the CRPS comes from the exceedance probabilities at every
bin edge stored in the file. Alongside: the fractions skill score of the model, the
smoothed-GRAF reference and raw GRAF (:class:`pqpf.verify.fss.FssAccumulator`), and
block-bootstrap intervals by init date for every skill (:mod:`pqpf.verify.bootstrap`),
from per-date sums.

Outputs (:mod:`pqpf.io.scores_file`) in ``{plots_dir}/verification_{BEGIN}_{END}_{LEAD}h/``:
``scores.json``, ``scores.csv``, ``fss_scores.csv`` and ``reliability.png``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf import __version__
from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh
from pqpf.errors import InputFileError, PqpfError
from pqpf.grid import Grid
from pqpf.io.scores_file import SCORES_SCHEMA, read_scores_json, write_scores_csv, write_scores_json
from pqpf.layout import mrms_remapped_path, probs_path, verification_dir
from pqpf.ordinal import bin_probs_from_exceedance
from pqpf.plot import plot_reliability
from pqpf.progress import Progress
from pqpf.stages.common import ScoringWeights, inits_with_probabilities, read_probabilities_and_mrms
from pqpf.verify.bootstrap import (
    DailySums,
    bootstrap_skills,
    brier_crps_day_sums,
    brier_crps_names,
    brier_crps_skills,
    reliability_day_sums,
    reliability_names,
    reliability_skills,
    reliability_sum_name,
    sum_name,
)
from pqpf.verify.fss import FssAccumulator
from pqpf.verify.reliability import DEFAULT_PROB_BIN_EDGES
from pqpf.verify.report import fss_csv_rows
from pqpf.verify.verifier import Verifier

__all__ = ["VerificationReport", "verify_range"]

logger = logging.getLogger(__name__)

#: Probability bins of the reliability tables (the Verifier's default tenths).
N_RELIABILITY_BINS = len(DEFAULT_PROB_BIN_EDGES) - 1


@dataclass
class VerificationReport:
    """What :func:`verify_range` did and found."""

    result: dict[str, Any]
    used: list[str] = field(default_factory=list)
    skipped_no_mrms: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    checkpoints: dict[str, int] = field(default_factory=dict)
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)


@dataclass
class _Case:
    """One init's forecasts and observations, on points (y, x)."""

    model: NDArray[np.float64]
    raw: NDArray[np.float64]
    ref: NDArray[np.float64]
    bins: NDArray[np.float64]
    edges: tuple[float, ...]
    graf: NDArray[np.float64]
    grid: Grid
    obs: NDArray[np.float64]
    quality: NDArray[np.float32]
    fss_model: NDArray[np.float64]
    fss_ref: NDArray[np.float64]
    checkpoint: str
    checkpoint_lead_h: Any


def _read_case(config: Config, init: dt.datetime, lead_h: int, thresholds: tuple[float, ...]) -> _Case:
    probs, mrms = read_probabilities_and_mrms(config, init, lead_h)
    try:
        pick = probs.index(thresholds)
        fss_pick = probs.index(config.verification.fss_thresholds_mm)
    except ValueError as exc:
        raise InputFileError(probs_path(config, init, lead_h), str(exc)) from None
    # stored with 4 significant digits: rounding may step a hair outside [0, 1]
    model = np.clip(probs.prob.astype(np.float64), 0.0, 1.0)
    smoothed = np.clip(probs.prob_smoothed.astype(np.float64), 0.0, 1.0)
    return _Case(
        model=model[pick], raw=probs.prob_raw[pick].astype(np.float64),
        ref=smoothed[pick],
        bins=bin_probs_from_exceedance(model), edges=(0.0, *probs.thresholds_mm),
        graf=probs.graf_mm.astype(np.float64), grid=probs.grid,
        obs=mrms.precipitation_mm.astype(np.float64), quality=mrms.quality,
        fss_model=model[fss_pick], fss_ref=smoothed[fss_pick],
        checkpoint=f"{probs.attrs.get('checkpoint', '?')} (lead {probs.attrs.get('checkpoint_lead_h', '?')} h)",
        checkpoint_lead_h=probs.attrs.get("checkpoint_lead_h"),
    )


def _inputs_digest(config: Config, inits: list[dt.datetime], lead_h: int) -> str:
    """A digest of what the scores depend on: every probabilities and MRMS file (path,
    size, modification time, or absent), the thresholds, the quality minimum, the weights
    and the ``[verification]`` settings. A file
    rewritten, an MRMS hour that has arrived since, or a changed setting changes it."""
    h = hashlib.sha256()
    h.update(repr((SCORES_SCHEMA, tuple(config.probability.thresholds_mm), config.mrms.min_quality, int(lead_h),
                   "area-weights", config.verification)).encode())
    for init in inits:
        for path in (probs_path(config, init, lead_h), mrms_remapped_path(config, init + dt.timedelta(hours=lead_h))):
            try:
                st = path.stat()
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}|absent\n".encode())
    return h.hexdigest()


def _reuse(report: VerificationReport, out_dir: Path, previous: dict[str, Any]) -> VerificationReport:
    logger.info("%s is up to date (use --overwrite to recompute)", out_dir / "scores.json")
    report.result = previous
    report.used = previous["inits_used"]
    report.skipped_no_mrms = previous["inits_skipped_no_mrms"]
    report.failed = [(x["init"], x["error"]) for x in previous.get("inits_failed", [])]
    report.out_dir = out_dir
    report.files = [p for p in (out_dir / "scores.json", out_dir / "scores.csv", out_dir / "reliability.png")
                    if p.is_file()]
    return report


class _Accumulation:
    """The sums of a range: the Verifier, per-date sums for the intervals, the FSS."""

    def __init__(self, config: Config) -> None:
        self.thresholds = tuple(config.probability.thresholds_mm)
        self.settings = config.verification
        self.verifier: Verifier | None = None
        self.daily = DailySums(brier_crps_names(self.thresholds)
                               + reliability_names(self.thresholds, N_RELIABILITY_BINS))
        self.fss: FssAccumulator | None = None
        self.first: tuple[NDArray[np.float64], Grid] | None = None
        self.weights = ScoringWeights(config.mrms.min_quality)

    def mismatch(self, case: _Case) -> str | None:
        if self.first is None:
            return None
        first_edges, first_grid = self.first
        if not case.grid.same_as(first_grid):
            return f"grid {case.grid.describe()} differs from the first file's {first_grid.describe()}"
        if np.asarray(case.edges).shape != first_edges.shape or not np.allclose(case.edges, first_edges):
            return (f"bin edges {list(case.edges)} differ from the first file's {first_edges.tolist()} "
                    "(made by another model): its CRPS would be wrong")
        return None

    def _start(self, case: _Case) -> None:
        """The accumulators, on the bins and grid of the first file."""
        self.verifier = Verifier(self.thresholds, bin_edges_mm=case.edges)
        self.fss = FssAccumulator({"model": "prob", "reference": "prob", "graf": "amount"},
                                  self.settings.fss_thresholds_mm, self.settings.fss_widths_px,
                                  grid_spacing_km=abs(case.grid.dx) / 1000.0 if case.grid.is_lambert else None)
        self.first = (np.asarray(case.edges), case.grid)

    def add(self, init: dt.datetime, case: _Case) -> None:
        if self.verifier is None or self.fss is None:
            self._start(case)
        if self.verifier is None or self.fss is None:  # pragma: no cover - _start set both
            raise PqpfError("verification accumulators missing")
        weight, good = self.weights(case.grid, case.obs, case.quality)
        one = Verifier(self.thresholds, bin_edges_mm=case.edges)
        one.update(case.model, case.raw, case.ref, case.obs, weight, model_bin_probs=case.bins, graf_mm=case.graf)
        self.verifier.merge(one)
        self.daily.add(f"{init:%Y%m%d}", {
            **brier_crps_day_sums(one.sums, one.crps_sums, self.thresholds),
            **reliability_day_sums([table.sums for table in one.rel_model], self.thresholds)})
        self.fss.update({"model": case.fss_model, "reference": case.fss_ref, "graf": case.graf}, case.obs,
                        valid=good & np.isfinite(case.graf), weight=self.weights.area(case.grid))


def _score_inits(config: Config, inits: list[dt.datetime], lead_h: int, report: VerificationReport
                 ) -> _Accumulation:
    acc = _Accumulation(config)
    progress = Progress(len(inits), "inits", logger)
    for init in inits:
        if not mrms_remapped_path(config, init + dt.timedelta(hours=lead_h)).is_file():
            report.skipped_no_mrms.append(format_yyyymmddhh(init))
            progress.step(note="no MRMS")
            continue
        try:
            case = _read_case(config, init, lead_h, acc.thresholds)
            problem = acc.mismatch(case)
            if problem is not None:
                raise InputFileError(probs_path(config, init, lead_h), problem)
        except PqpfError as exc:  # count it, finish the rest, fail at the end
            logger.error("%s", exc)
            report.failed.append((format_yyyymmddhh(init), str(exc)))
            progress.step(note="failed")
            continue
        if case.checkpoint_lead_h is not None and int(case.checkpoint_lead_h) != lead_h:
            logger.warning("%s +%d h was made with the model of lead %s h", format_yyyymmddhh(init), lead_h,
                           case.checkpoint_lead_h)
        report.checkpoints[case.checkpoint] = report.checkpoints.get(case.checkpoint, 0) + 1
        acc.add(init, case)
        report.used.append(format_yyyymmddhh(init))
        progress.step()
    if acc.verifier is None:
        raise PqpfError(f"none of the {len(inits)} inits with probabilities could be verified "
                        f"({len(report.skipped_no_mrms)} without remapped MRMS, {len(report.failed)} unreadable)")
    return acc


def _results(config: Config, acc: _Accumulation) -> dict[str, Any]:
    """The Verifier's scores, the FSS and the bootstrap intervals of every skill."""
    if acc.verifier is None or acc.fss is None:  # pragma: no cover - _score_inits raised already
        raise PqpfError("nothing was verified")
    settings = config.verification
    intervals = {}
    if settings.bootstrap_replicates > 0:
        skills = brier_crps_skills(acc.thresholds) + reliability_skills(acc.thresholds, N_RELIABILITY_BINS)
        found = bootstrap_skills(acc.daily, skills, settings.bootstrap_replicates,
                                 settings.bootstrap_seed, settings.bootstrap_level, settings.bootstrap_block_days)
        intervals = {k: v.as_dict() for k, v in found.items()}
    return {**acc.verifier.result(), "fss": acc.fss.result(), "intervals": intervals,
            "reliability_dates": _dates_per_bin(acc),
            "bootstrap": {"unit": "init date", "replicates": settings.bootstrap_replicates,
                          "seed": settings.bootstrap_seed, "level": settings.bootstrap_level,
                          "block_days": settings.bootstrap_block_days, "n_days": len(acc.daily.days)}}


def _dates_per_bin(acc: _Accumulation) -> dict[str, list[int]]:
    """Per threshold (``"1mm"``), how many init dates put weight in each reliability bin:
    a bin filled on one or two dates has a degenerate bootstrap interval."""
    names = list(acc.daily.names)
    matrix = acc.daily.matrix()
    out = {}
    for t in acc.thresholds:
        cols = [names.index(reliability_sum_name("rel_w", t, b)) for b in range(N_RELIABILITY_BINS)]
        out[f"{t:g}mm"] = [int(np.count_nonzero(matrix[:, c] > 0)) for c in cols]
    return out


def _csv_rows(verifier: Verifier, intervals: dict[str, Any]) -> list[dict[str, Any]]:
    """The Verifier's rows with the interval bounds of each skill (``*_lo``, ``*_hi``)."""
    rows = verifier.to_csv_rows()
    for row in rows:
        t = float(row["threshold_mm"] or 0.0)
        for skill, key in (("bss_vs_ref", sum_name("bss_vs_ref", t)), ("bss_vs_clim", sum_name("bss_vs_clim", t)),
                           ("crpss_vs_raw_binned", "crpss_vs_raw_binned")):
            interval = intervals.get(key) or {}
            row[f"{skill}_lo"], row[f"{skill}_hi"] = interval.get("low"), interval.get("high")
    return rows


def verify_range(config: Config, begin: dt.datetime, end: dt.datetime, lead_h: int,
                 plot: bool = True, overwrite: bool = False) -> VerificationReport:
    """Score every init in ``begin..end`` that has a probabilities file and MRMS.

    An existing ``scores.json`` for the same range is reused (not recomputed) when it was
    computed from exactly the files and settings there are now (:func:`_inputs_digest`)
    and ``overwrite`` is False.

    Raises
    ------
    PqpfError
        When no init in the range could be verified.
    """
    inits = inits_with_probabilities(config, begin, end, lead_h)
    report = VerificationReport(result={})
    out_dir = verification_dir(config, begin, end, lead_h)
    digest = _inputs_digest(config, inits, lead_h)
    previous = None if overwrite else read_scores_json(out_dir / "scores.json")
    if previous is not None and previous.get("inputs_digest") == digest and not previous.get("inits_failed"):
        return _reuse(report, out_dir, previous)
    acc = _score_inits(config, inits, lead_h, report)
    if len(report.checkpoints) > 1:
        logger.warning("the verified files come from %d different models: %s", len(report.checkpoints),
                       "; ".join(f"{k} x{v}" for k, v in report.checkpoints.items()))
    report.result = _results(config, acc)
    report.out_dir = out_dir
    meta = {"begin": format_yyyymmddhh(begin), "end": format_yyyymmddhh(end), "lead_h": int(lead_h),
            "inits_used": report.used, "inits_skipped_no_mrms": report.skipped_no_mrms,
            "inits_failed": [{"init": i, "error": e} for i, e in report.failed],
            "checkpoints": report.checkpoints, "min_quality": config.mrms.min_quality,
            "weights": "true cell area (map factor; cos(latitude) on lat/lon grids) on good-quality MRMS points",
            "pqpf_version": __version__, "inputs_digest": digest}
    if acc.verifier is None:  # pragma: no cover - _score_inits raised already
        raise PqpfError("nothing was verified")
    report.files = [write_scores_json(out_dir / "scores.json", {**meta, **report.result}),
                    write_scores_csv(out_dir / "scores.csv", _csv_rows(acc.verifier, report.result["intervals"])),
                    write_scores_csv(out_dir / "fss_scores.csv", fss_csv_rows(report.result["fss"]))]
    if plot:
        title = (f"+{lead_h} h forecasts initialised {format_yyyymmddhh(begin)}..{format_yyyymmddhh(end)} "
                 f"({len(report.used)} inits)")
        report.files.append(plot_reliability(out_dir / "reliability.png", report.result["per_threshold"], title,
                                             intervals=report.result.get("intervals")))
    return report
