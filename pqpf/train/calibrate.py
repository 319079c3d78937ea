"""Fit the isotonic calibration (:mod:`pqpf.calibration`) of a trained U-Net on the validation split
(and, with ``calibration_folds``, on out-of-fold predictions of the training split, :mod:`pqpf.train.crossfit`).

The best checkpoint's network is run once over the validation patches; its ``P(>= e)`` at
every interior bin edge (so that every probability inference writes gets a map and the
cumulative minimum covers them all) is accumulated with the patch sampling weights times
the quality mask, exactly the weighting of the training evaluation, so the fit describes
full fields rather than the wet-favouring sample. The map is written into the
checkpoint's record (``extra["calibration"]``) and the validation reliability before and
after is logged. The validation split also selects the epoch; with a few hundred
patches the maps have at most one pooled block per well-populated probability range,
which is the point of isotonic regression over a parametric fit: no shape is assumed,
and nothing is extrapolated beyond the validated range (constant beyond the end knots).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pqpf.calibration import (
    FITTED_ON_CROSSFIT,
    FITTED_ON_FORECASTS,
    FITTED_ON_VALIDATION,
    Calibration,
    CalibrationFit,
    reliability_rows,
)
from pqpf.io.checkpoint import load_checkpoint, save_checkpoint
from pqpf.io.patchfile import PatchSet
from pqpf.ordinal import exceedance_probs, probs_from_logits, reaches
from pqpf.train.batches import BatchSource, plan_evaluation

if TYPE_CHECKING:
    import torch

    from pqpf.train.resunet import ResUNetFamily

__all__ = ["calibrate_checkpoint", "accumulate_calibration", "REPORT_THRESHOLDS_MM"]

logger = logging.getLogger(__name__)

#: Thresholds (mm) whose validation reliability is logged before and after calibration.
REPORT_THRESHOLDS_MM = (0.25, 1.0, 2.5)


def accumulate_calibration(family: ResUNetFamily, net: torch.nn.Module, data: PatchSet, device: torch.device,
                           batch_size: int, thresholds: tuple[float, ...],
                           population: PatchSet | None = None) -> CalibrationFit:
    """The calibration sums of ``net``'s ``P(>= t)`` on ``data`` (sampling weight x quality mask).

    The sampling weights are divided by the mean weight of ``population`` (default
    ``data``): a subset of a split (one cross-fit fold) keeps its share of the split's
    weight (a dry period's patches carry large weights 1/pi).
    """
    import torch

    fit = CalibrationFit(thresholds)
    spec = family.batch_spec(data if population is None else population)
    source = BatchSource(data, plan_evaluation(len(data), batch_size, 0, 1), spec)
    net.eval()
    with torch.inference_mode():
        for k in range(len(source)):
            b = source[k]
            x = family.normalisation.apply_torch(b["features"].to(device))
            exc = exceedance_probs(probs_from_logits(net(x).float(), dim=1), family.edges, thresholds, dim=1)
            obs = b["mrms"].numpy()
            events = np.stack([reaches(obs, t) for t in thresholds], axis=1).astype(np.float64)
            weight = b["mask"].numpy() * b["weights"].numpy()[:, None, None]
            fit.update(exc.cpu().numpy().transpose(1, 0, 2, 3), events.transpose(1, 0, 2, 3), weight)
    return fit


def _log_reliability(fit: CalibrationFit, calibration: Calibration, data: str) -> None:
    for t in REPORT_THRESHOLDS_MM:
        if t not in fit.thresholds_mm:
            continue
        k = fit.thresholds_mm.index(t)
        for label, cal in (("before", None), ("after ", calibration)):
            rows = reliability_rows(fit, k, cal)
            text = "  ".join(f"{p:.2f}->{o:.2f}" for p, o, _ in rows)
            worst = max((abs(p - o) for p, o, _ in rows), default=float("nan"))
            logger.info("%s reliability >= %g mm %s calibration (forecast->observed per bin; worst "
                        "%.3f): %s", data, t, label, worst, text)


def calibrate_checkpoint(family: ResUNetFamily, checkpoint_path: Path, val_set: PatchSet, device: torch.device,
                         batch_size: int, out_of_fold: CalibrationFit | None = None) -> Calibration | None:
    """Fit the calibration of ``checkpoint_path`` on ``val_set`` and store it in that file.

    ``out_of_fold``: sums of cross-fitted predictions on the training split
    (:mod:`pqpf.train.crossfit`), pooled with the validation split's. Returns the
    calibration, or None (nothing written) without validation patches.
    """
    if not len(val_set):
        logger.warning("no validation patches: the probabilities are not calibrated")
        return None
    checkpoint = load_checkpoint(checkpoint_path, map_location=device)
    replaced = checkpoint.model.extra.get("calibration") or {}
    if replaced.get("fitted_on") == FITTED_ON_FORECASTS:
        logger.warning("%s: the map fitted on forecasts %s is replaced by the training's; refit it with "
                       "calibrate_resunet.py on forecasts of this network", checkpoint_path, replaced.get("period", ""))
    net = family.build().to(device)
    net.load_state_dict(checkpoint.inference_weights())  # the weights inference applies
    family.restore(checkpoint)
    fit = accumulate_calibration(family, net, val_set, device, batch_size, tuple(family.edges[1:]))
    data = FITTED_ON_VALIDATION
    if out_of_fold is not None:
        for t in REPORT_THRESHOLDS_MM:  # the out-of-fold predictions on their own, before pooling
            if t in out_of_fold.thresholds_mm:
                rows = reliability_rows(out_of_fold, out_of_fold.thresholds_mm.index(t))
                logger.info("out-of-fold reliability >= %g mm (forecast->observed per bin): %s", t,
                            "  ".join(f"{p:.2f}->{o:.2f}" for p, o, _ in rows))
        fit.add(out_of_fold)
        data = FITTED_ON_CROSSFIT
    calibration = fit.fit()
    _log_reliability(fit, calibration, data)
    record = dataclasses.replace(checkpoint.model, extra={
        **checkpoint.model.extra, "calibration": {**calibration.to_dict(), "fitted_on": data}})
    save_checkpoint(checkpoint_path, dataclasses.replace(checkpoint, model=record))
    logger.info("isotonic calibration of %d thresholds (fitted on %s predictions) stored in %s",
                len(fit.thresholds_mm), data, checkpoint_path)
    return calibration
