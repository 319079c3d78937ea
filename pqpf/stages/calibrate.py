"""The ``calibrate_resunet.py`` stage: refit a U-Net's isotonic calibration on its own
full-field forecasts of a past period.

Training fits the calibration on the validation split, optionally pooled with cross-fitted
out-of-fold predictions (:mod:`pqpf.train.calibrate`). Both are short: a few dozen inits
of the training window. The reliability of a period depends on the errors of its NWP runs
and on its regimes, which the inputs do not show: on the demo's synthetic archive the
worst gap of one network moved from 0.04 to 0.27 between four 56-day periods, around a
long-run over-confidence of up to 0.08 in its upper bins (docs/calibration.md, section 14). A map
that removes the long-run part needs many runs; this stage fits it as reliability-table
calibration is fitted in post-processing suites: on the model's raw probability files of
any period outside its training window, on the same points and with the same weights as
verification.

For every init in ``BEGIN..END`` (any hour) that has a probabilities file and remapped
MRMS for its valid hour, the file's exceedance probabilities at the model's bin edges and
the MRMS events are added to fine-binned sums (:class:`pqpf.calibration.CalibrationFit`),
on good-quality points (:func:`pqpf.quality.good_quality_mask`) weighted by true cell area
(:func:`pqpf.verify.area.area_weights`). The map (PAV per threshold, the cumulative minimum
over thresholds at inference) replaces the checkpoint's with ``fitted_on = "forecasts"``,
which ``[inference] calibrate = auto`` applies. The map stored at training is kept in the
record as ``calibration_at_training`` (a later refit replaces an earlier forecasts map,
which its files can make again). The write is refused if the checkpoint changed since it
was read.

Refused, with one line and nothing written:

* files that were calibrated already (``calibrated = 1``: rerun the inference with
  ``--calibrate false --overwrite``), or made by another network (the weights' digest in
  the file; for older files the training's INIT, lead and hparams);
* inits inside the periods the model's training drew from (:func:`pqpf.sampling.training_windows`,
  with the ``[patches]`` settings the checkpoint recorded, else the configuration's), at
  any hour: their forecasts are in-sample.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pqpf.calibration import FITTED_ON_FORECASTS, MIN_BLOCK_SHARE, Calibration, CalibrationFit, reliability_rows
from pqpf.config import Config
from pqpf.config_sections import PatchesConfig
from pqpf.dates import format_yyyymmddhh, parse_yyyymmddhh
from pqpf.errors import InputFileError, PqpfError
from pqpf.io.checkpoint import Checkpoint, ModelRecord, load_checkpoint, save_checkpoint
from pqpf.io.registry import Registry
from pqpf.layout import mrms_remapped_path, probs_path, registry_path
from pqpf.ordinal import reaches
from pqpf.progress import Progress
from pqpf.sampling import training_windows
from pqpf.stages.common import ScoringWeights, inits_with_probabilities, read_probabilities_and_mrms
from pqpf.verify.report import RELIABILITY_MIN_POINTS

__all__ = ["MIN_DATES_ADVISED", "CalibrationFromForecasts", "calibrate_from_forecasts", "forecast_sums"]

logger = logging.getLogger(__name__)

#: Below this many init dates the stage warns: maps fitted on one 56-day period (112 inits)
#: of the demo's archive moved the reliability of other periods either way
#: (docs/calibration.md, section 14).
MIN_DATES_ADVISED = 60
#: The steps of a forecasts-fitted map hold :data:`pqpf.calibration.MIN_BLOCK_SHARE` of the
#: weight of the forecasts from this probability up (:meth:`CalibrationFit.fit`).
STEP_SHARE_OF_FORECASTS_FROM = 0.05


@dataclass
class CalibrationFromForecasts:
    """What :func:`calibrate_from_forecasts` fitted, and on what."""

    checkpoint: Path
    fit: CalibrationFit
    calibration: Calibration
    used: list[str] = field(default_factory=list)
    skipped_no_mrms: list[str] = field(default_factory=list)
    replaced: str | None = None
    written: bool = False

    @property
    def n_dates(self) -> int:
        return len({u[:8] for u in self.used})

    def reliability_lines(self, thresholds_mm: tuple[float, ...]) -> list[str]:
        """Per threshold: the fitting period's reliability (forecast -> observed per tenth
        with >= RELIABILITY_MIN_POINTS points, area weight ~1 per point) with its worst
        gap, and what the map makes of 0.1, 0.2, ..., 0.9."""
        lines = []
        for t in thresholds_mm:
            if t not in self.fit.thresholds_mm:
                continue
            k = self.fit.thresholds_mm.index(t)
            rows = [(p, o) for p, o, w in reliability_rows(self.fit, k) if w >= RELIABILITY_MIN_POINTS]
            worst = max((abs(o - p) for p, o in rows), default=float("nan"))
            lines.append(f"{t:5g} mm reliability (worst {worst:.3f}): "
                         + "  ".join(f"{p:.2f}->{o:.2f}" for p, o in rows))
            j = self.calibration.index(t)
            tenths = np.linspace(0.1, 0.9, 9)
            mapped = np.interp(tenths, self.calibration.knots_x[j], self.calibration.knots_y[j])
            lines.append(f"{t:5g} mm map: " + "  ".join(f"{a:.1f}->{b:.2f}" for a, b in zip(tenths, mapped)))
        return lines


def _model_checkpoint(config: Config, lead_h: int) -> Path:
    path = Registry(registry_path(config)).checkpoint("resunet", lead_h)
    if path is None:
        raise PqpfError(f"no U-Net registered for lead {lead_h} h in {config.paths.trainings_dir}; "
                        f"run train_resunet.py INIT {lead_h} first")
    return path


def _check_made_by(path: Path, attrs: dict[str, Any], checkpoint: Path, record: ModelRecord, digest: str) -> None:
    """The file must come from the registered network: by its weights' digest, or for files
    written before the digest was recorded, by the training's INIT, lead and hparams. The
    path may differ: trainings directories are copied between machines."""
    made_by = str(attrs.get("checkpoint_weights_sha256", ""))
    if made_by:
        if made_by != digest:
            raise InputFileError(path, f"made by another network (weights {made_by[:12]}), not by the registered "
                                       f"{checkpoint} (weights {digest[:12]})")
        return
    made = (str(attrs.get("checkpoint_init", "?")), str(attrs.get("checkpoint_lead_h", "?")),
            str(attrs.get("hparams", "?")))
    model = (record.init, str(record.lead_h), str(record.hparams.get("name")))
    if made != model:
        raise InputFileError(path, f"made by the model of INIT {made[0]}, lead {made[1]} h, hparams {made[2]}, "
                                   f"not by the registered {checkpoint} ({', '.join(model)})")


def forecast_sums(config: Config, inits: list[dt.datetime], lead_h: int, checkpoint: Path, record: ModelRecord,
                  digest: str) -> tuple[CalibrationFit, list[str], list[str]]:
    """Fine-binned sums of the raw probabilities of ``inits`` made by the network of
    ``record`` (stored in ``checkpoint``, weights digest ``digest``) at its bin edges, on
    the points and weights of verification (:class:`pqpf.stages.common.ScoringWeights`) and
    with its event rule (:func:`pqpf.ordinal.reaches`).

    Returns the sums, the inits used and those skipped for want of remapped MRMS.

    Raises
    ------
    InputFileError
        A file that is calibrated already, made by another network, lacks a threshold, or
        whose MRMS lies on another grid.
    """
    thresholds_mm = tuple(float(t) for t in record.bin_edges_mm[1:])
    fit = CalibrationFit(thresholds_mm)
    weights = ScoringWeights(config.mrms.min_quality)
    used: list[str] = []
    skipped: list[str] = []
    progress = Progress(len(inits), "inits", logger)
    for init in inits:
        if not mrms_remapped_path(config, init + dt.timedelta(hours=lead_h)).is_file():
            skipped.append(format_yyyymmddhh(init))
            progress.step(note="no MRMS")
            continue
        path = probs_path(config, init, lead_h)
        probs, mrms = read_probabilities_and_mrms(config, init, lead_h)
        if int(probs.attrs.get("calibrated", 0)):
            raise InputFileError(path, "these probabilities are calibrated already; rerun resunet_inference.py "
                                       "--calibrate false --overwrite over the fitting period")
        _check_made_by(path, probs.attrs, checkpoint, record, digest)
        try:
            prob = probs.prob[probs.index(thresholds_mm)]
        except ValueError as exc:
            raise InputFileError(path, str(exc)) from None
        weight, _ = weights(probs.grid, mrms.precipitation_mm, mrms.quality)
        events = np.stack([reaches(mrms.precipitation_mm, t) for t in thresholds_mm])
        fit.update(np.clip(prob, 0.0, 1.0), events, weight)  # NaN (missing GRAF) is left out there
        used.append(format_yyyymmddhh(init))
        progress.step()
    return fit, used, skipped


def _training_patches(config: Config, record: ModelRecord) -> tuple[PatchesConfig, str]:
    """The ``[patches]`` settings the model was trained with (recorded since 2026-12-06), else
    the configuration's; and which of the two."""
    recorded = record.extra.get("sampling") or {}
    names = {f.name for f in dataclasses.fields(PatchesConfig)}
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in names}
    if values:
        try:
            return dataclasses.replace(config.patches, **values), "the training's"
        except (TypeError, ValueError):
            pass
    return config.patches, "the configuration's"


def _in_training_window(config: Config, inits: list[dt.datetime], lead_h: int, checkpoint: Path,
                        record: ModelRecord) -> None:
    """Refuse inits in the periods the training drew from (any hour, not only its cycles)."""
    cfg, whose = _training_patches(config, record)
    windows = training_windows(parse_yyyymmddhh(record.init), lead_h, cfg)
    inside = [t for t in inits if any(lo <= t <= hi for lo, hi in windows)]
    if inside:
        spans = ", ".join(f"{format_yyyymmddhh(lo)}..{format_yyyymmddhh(hi)}" for lo, hi in windows)
        first, last = format_yyyymmddhh(inside[0]), format_yyyymmddhh(inside[-1])
        raise PqpfError(
            f"{len(inside)} of the {len(inits)} inits ({first}..{last}) "
            f"lie in the training window of {checkpoint} ({spans}; INIT {record.init}, {whose} [patches] "
            f"ndays_train = {cfg.ndays_train}): their forecasts are in-sample; choose a period outside it")


def _store(checkpoint_path: Path, checkpoint: Checkpoint, digest: str, result: CalibrationFromForecasts) -> None:
    """Write the map into the checkpoint, unless the file changed since it was read (a
    training finished meanwhile: its weights would be replaced by stale ones)."""
    record = checkpoint.model
    if load_checkpoint(checkpoint_path).weights_digest() != digest:
        raise PqpfError(f"{checkpoint_path} changed while the map was fitted (retrained?); nothing written, "
                        f"rerun calibrate_resunet.py on forecasts of the new network")
    extra = dict(record.extra)
    previous = record.extra.get("calibration")
    if previous is not None and previous.get("fitted_on") != FITTED_ON_FORECASTS:
        extra["calibration_at_training"] = previous  # kept: refitting it needs the training's data
    extra["calibration"] = {**result.calibration.to_dict(), "fitted_on": FITTED_ON_FORECASTS,
                            "period": f"{result.used[0]}..{result.used[-1]}", "n_inits": len(result.used),
                            "n_dates": result.n_dates}
    save_checkpoint(checkpoint_path, dataclasses.replace(checkpoint, model=dataclasses.replace(record, extra=extra)))


def calibrate_from_forecasts(config: Config, begin: dt.datetime, end: dt.datetime, lead_h: int,
                             dry_run: bool = False) -> CalibrationFromForecasts:
    """Fit the isotonic calibration of the lead's registered U-Net on its probability files
    of ``begin..end`` and store it in the checkpoint (not with ``dry_run``).

    Raises
    ------
    PqpfError
        No probability files in the range, none with MRMS, or inits in the training window;
        InputFileError for a file that cannot serve (see :func:`forecast_sums`).
    """
    checkpoint_path = _model_checkpoint(config, lead_h)
    checkpoint = load_checkpoint(checkpoint_path)
    record = checkpoint.model
    digest = checkpoint.weights_digest()
    inits = inits_with_probabilities(config, begin, end, lead_h)
    _in_training_window(config, inits, lead_h, checkpoint_path, record)
    fit, used, skipped = forecast_sums(config, inits, lead_h, checkpoint_path, record, digest)
    if not used:
        raise PqpfError(f"none of the {len(inits)} inits with probabilities has remapped MRMS for its valid hour "
                        f"in {config.paths.mrms_remapped_dir} (run save_remapped_mrms.py first)")
    calibration = fit.fit(MIN_BLOCK_SHARE, STEP_SHARE_OF_FORECASTS_FROM)
    result = CalibrationFromForecasts(checkpoint_path, fit, calibration, used, skipped)
    if result.n_dates < MIN_DATES_ADVISED:
        logger.warning("the map rests on %d init dates; on the demo's archive maps fitted on 56 dates moved the "
                       "reliability of other periods either way (docs/calibration.md, section 14)", result.n_dates)
    previous = record.extra.get("calibration")
    result.replaced = None if previous is None else str(previous.get("fitted_on", "?"))
    if dry_run:
        return result
    _store(checkpoint_path, checkpoint, digest, result)
    result.written = True
    logger.info("isotonic calibration fitted on %d forecasts (%d dates, %s..%s) stored in %s", len(used),
                result.n_dates, used[0], used[-1], checkpoint_path)
    return result
