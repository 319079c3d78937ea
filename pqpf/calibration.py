"""Monotone post-hoc calibration of exceedance probabilities (isotonic regression).

Fitted on the validation split after training, stored in the checkpoint, applied at
inference after the stitching reduction (issue 10 item 1).

* **Fit** (:class:`CalibrationFit`): for every threshold ``t`` the validation points are
  accumulated in :data:`N_FINE_BINS` equal bins of the forecast ``P(>= t)``, with their
  sampling weight (Horvitz-Thompson, so the fit describes full fields, not the
  wet-favouring patch sample) times the quality mask: per bin the weight, the weighted
  forecast and the weighted event count. Weighted pool-adjacent-violators (:func:`pav`)
  over the bins (x = the bin's mean forecast, y = its event frequency) gives the
  non-decreasing least-squares fit, i.e. the isotonic regression that minimises the
  Brier score among monotone maps (Zadrozny and Elkan 2002). Binning at 1/1000 costs at
  most that much resolution and keeps the fit O(bins) whatever the number of points.
* **Regularisation**: blocks holding less than :data:`MIN_BLOCK_SHARE` of the weight are
  pooled with their closer-valued neighbour (the result stays monotone).
* **Knots**: each pooled block contributes its first and last x with the block's value;
  between knots the map is linear, outside it is constant (:func:`numpy.interp`).
  A threshold without validation data keeps the identity.
* **Apply** (:meth:`Calibration.apply`): the map of each threshold, then the cumulative
  minimum over increasing thresholds, so ``P(>= t)`` stays non-increasing in ``t`` (the
  per-threshold maps are fitted independently and could otherwise cross).
* **Storage**: plain lists of floats in ``ModelRecord.extra["calibration"]``, which
  ``torch.load(weights_only=True)`` reads.

Zadrozny, B. and C. Elkan (2002). Transforming classifier scores into accurate multiclass
probability estimates. KDD, 694-699.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["FITTED_ON_VALIDATION", "FITTED_ON_CROSSFIT", "FITTED_ON_FORECASTS", "N_FINE_BINS", "MIN_BLOCK_SHARE",
           "pav", "isotonic_knots", "Calibration", "CalibrationFit", "reliability_rows"]

#: What a stored calibration was fitted on (its record's ``fitted_on``): the validation
#: split alone, with the cross-fitted out-of-fold predictions (hparams
#: ``calibration_folds``), or the model's full-field forecasts of a period outside its
#: training window (``calibrate_resunet.py``); ``[inference] calibrate = auto`` applies
#: the last two.
FITTED_ON_VALIDATION = "validation"
FITTED_ON_CROSSFIT = "validation + out-of-fold"
FITTED_ON_FORECASTS = "forecasts"

#: Bins of the forecast probability in which validation points are accumulated.
N_FINE_BINS = 1000
#: Least share of a threshold's validation weight in one step of its map: PAV alone makes
#: a step of every local rise of the observed frequency, which on a few dozen correlated
#: inits would be noise; 1/200 keeps at most 200 steps, each on >= 0.5 % of the points.
MIN_BLOCK_SHARE = 0.005


def pav(y: ArrayLike, w: ArrayLike | None = None) -> NDArray[np.float64]:
    """Weighted pool-adjacent-violators: the non-decreasing ``f`` minimising ``sum w (y - f)**2``.

    Parameters
    ----------
    y : 1-D array of float, in the order of increasing x
    w : 1-D array of float >= 0, optional (ones)
        Points of weight 0 take the value of their pooled neighbours.
    """
    yv = np.asarray(y, dtype=np.float64).ravel()
    wv = np.ones_like(yv) if w is None else np.asarray(w, dtype=np.float64).ravel()
    if wv.shape != yv.shape or (wv < 0).any() or not np.isfinite(yv).all():
        raise ValueError("y and w must have the same length, w >= 0 and y finite")
    # Blocks as a stack: value, weight, length.
    vals: list[float] = []
    wts: list[float] = []
    lens: list[int] = []
    for yi, wi in zip(yv, wv):
        vals.append(float(yi))
        wts.append(float(wi))
        lens.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, n2 = vals.pop(), wts.pop(), lens.pop()
            v1, w1 = vals[-1], wts[-1]
            total = w1 + w2
            vals[-1] = (v1 * w1 + v2 * w2) / total if total > 0 else min(v1, v2)
            wts[-1] = total
            lens[-1] += n2
    return np.repeat(np.asarray(vals), np.asarray(lens, dtype=np.int64))


def _blocks(fitted: NDArray[np.float64]) -> list[tuple[int, int]]:
    """(start, end) of the runs of equal values."""
    edges = np.flatnonzero(np.diff(fitted) != 0) + 1
    bounds = [0, *edges.tolist(), fitted.size]
    return list(zip(bounds, bounds[1:]))


def _merge_small_blocks(y: NDArray[np.float64], w: NDArray[np.float64], blocks: list[tuple[int, int]],
                        min_weight: float) -> list[tuple[int, int, float]]:
    """Pool the lightest block with its closer-valued neighbour until every block weighs
    ``min_weight`` (or one block is left); pooled values stay non-decreasing."""
    out = [(a, b, float(np.average(y[a:b], weights=w[a:b]))) for a, b in blocks]
    weights = [float(w[a:b].sum()) for a, b in blocks]
    while len(out) > 1 and min(weights) < min_weight:
        i = int(np.argmin(weights))
        if i == 0:
            j = 1
        elif i == len(out) - 1:
            j = i - 1
        else:
            j = i - 1 if out[i][2] - out[i - 1][2] <= out[i + 1][2] - out[i][2] else i + 1
        lo, hi = min(i, j), max(i, j)
        total = weights[lo] + weights[hi]
        value = (out[lo][2] * weights[lo] + out[hi][2] * weights[hi]) / total
        out[lo:hi + 1] = [(out[lo][0], out[hi][1], value)]
        weights[lo:hi + 1] = [total]
    return out


def isotonic_knots(x: ArrayLike, y: ArrayLike, w: ArrayLike,
                   min_block_weight: float = 0.0) -> tuple[list[float], list[float]]:
    """Knots (x, y) of the interpolated isotonic regression of y on x (x increasing).

    Points of zero weight are ignored; without any point the identity ``[0, 1] -> [0, 1]``.
    Pooled blocks lighter than ``min_block_weight`` are pooled further with a neighbour
    (:meth:`CalibrationFit.fit` sets it), so that no step of the map rests on a handful of
    (spatially correlated) points.
    """
    xv, yv, wv = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, w))
    keep = wv > 0
    xv, yv, wv = xv[keep], yv[keep], wv[keep]
    if xv.size == 0:
        return [0.0, 1.0], [0.0, 1.0]
    fitted = pav(yv, wv)
    blocks = _merge_small_blocks(yv, wv, _blocks(fitted), min_block_weight)
    kx: list[float] = []
    ky: list[float] = []
    for start, end, value in blocks:
        for xi in (xv[start], xv[end - 1]) if end - 1 > start else (xv[start],):
            kx.append(float(xi))
            ky.append(float(np.clip(value, 0.0, 1.0)))
    return kx, ky


@dataclass(frozen=True)
class Calibration:
    """Per-threshold monotone maps (knots) of ``P(>= t)``."""

    thresholds_mm: tuple[float, ...]
    knots_x: tuple[tuple[float, ...], ...]
    knots_y: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        t = self.thresholds_mm
        if not (len(t) == len(self.knots_x) == len(self.knots_y)) or any(a >= b for a, b in zip(t, t[1:])):
            raise ValueError("calibration needs increasing thresholds and one knot list each")
        for x, y in zip(self.knots_x, self.knots_y):
            if len(x) != len(y) or not x or any(a > b for a, b in zip(x, x[1:])) or any(
                    a > b for a, b in zip(y, y[1:])):
                raise ValueError("calibration knots must be non-empty, x and y non-decreasing")

    def apply(self, prob: NDArray[np.floating], thresholds_mm: Sequence[float]) -> NDArray[np.float32]:
        """Calibrated ``P(>= t)`` for a (T, ...) field at ``thresholds_mm`` (each must be fitted).

        Then the cumulative minimum over the thresholds (in increasing order); NaN stays NaN.
        """
        p = np.asarray(prob, dtype=np.float64)
        out = np.empty_like(p)
        for k, t in enumerate(thresholds_mm):
            j = self.index(t)
            out[k] = np.interp(p[k], self.knots_x[j], self.knots_y[j])
        order = np.argsort(np.asarray(thresholds_mm, dtype=np.float64), kind="stable")
        out[order] = np.fmin.accumulate(out[order], axis=0)  # fmin: a NaN does not spread
        out[np.isnan(p)] = np.nan
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def index(self, threshold_mm: float) -> int:
        for j, t in enumerate(self.thresholds_mm):
            if abs(t - threshold_mm) <= 1e-9:
                return j
        raise ValueError(f"no calibration for {threshold_mm:g} mm (have {list(self.thresholds_mm)})")

    def digest(self) -> str:
        """A short SHA-256 of the map (thresholds and knots): which map a file was made with."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists of floats (a checkpoint loads them with ``weights_only=True``)."""
        return {"method": "isotonic", "thresholds_mm": [float(t) for t in self.thresholds_mm],
                "knots_x": [[float(v) for v in x] for x in self.knots_x],
                "knots_y": [[float(v) for v in y] for y in self.knots_y]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; ValueError for a malformed record."""
        try:
            if data.get("method") != "isotonic":
                raise ValueError(f"unknown calibration method {data.get('method')!r}")
            return cls(tuple(float(t) for t in data["thresholds_mm"]),
                       tuple(tuple(float(v) for v in x) for x in data["knots_x"]),
                       tuple(tuple(float(v) for v in y) for y in data["knots_y"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed calibration record ({exc})") from None


class CalibrationFit:
    """Weighted fine-binned sums of forecast and event per threshold; :meth:`fit` gives a :class:`Calibration`."""

    def __init__(self, thresholds_mm: Sequence[float]) -> None:
        self.thresholds_mm = tuple(float(t) for t in thresholds_mm)
        self.sums = np.zeros((len(self.thresholds_mm), 3, N_FINE_BINS), dtype=np.float64)  # w, w*p, w*o

    def update(self, prob: ArrayLike, event: ArrayLike, weight: ArrayLike) -> None:
        """``prob`` and ``event`` (T, ...), ``weight`` broadcastable to one threshold's shape (0 = unused)."""
        p = np.asarray(prob, dtype=np.float64)
        o = np.asarray(event, dtype=np.float64)
        w = np.broadcast_to(np.asarray(weight, dtype=np.float64), p.shape[1:])
        for k in range(len(self.thresholds_mm)):
            ok = (w > 0) & np.isfinite(p[k]) & np.isfinite(o[k])
            pk, ok_w = np.clip(p[k][ok], 0.0, 1.0), w[ok]
            idx = np.minimum((pk * N_FINE_BINS).astype(np.int64), N_FINE_BINS - 1)
            for j, values in enumerate((ok_w, ok_w * pk, ok_w * o[k][ok])):
                self.sums[k, j] += np.bincount(idx, weights=values, minlength=N_FINE_BINS)

    def add(self, other: CalibrationFit) -> None:
        """Pool ``other``'s sums (same thresholds) into these."""
        if other.thresholds_mm != self.thresholds_mm:
            raise ValueError(f"cannot pool calibration sums of thresholds {list(other.thresholds_mm)} into "
                             f"{list(self.thresholds_mm)}")
        self.sums += other.sums

    def fit(self, min_block_share: float = MIN_BLOCK_SHARE, share_of_forecasts_from: float = 0.0) -> Calibration:
        """Per threshold, the isotonic map whose steps hold at least ``min_block_share`` of the
        weight of the forecasts >= ``share_of_forecasts_from`` (:func:`isotonic_knots`).

        The training's fits count every point (0). On full fields, mostly dry, that share
        of all points pooled every forecast above 0.4 at 2.5 mm into one step; a share of
        the forecasts >= 0.05 (``calibrate_resunet.py``) scales with the rain instead."""
        xs, ys = [], []
        first = int(round(share_of_forecasts_from * N_FINE_BINS))
        for w, wp, wo in self.sums:
            safe = np.where(w > 0, w, 1.0)
            kx, ky = isotonic_knots(wp / safe, wo / safe, w, min_block_share * float(w[first:].sum()))
            xs.append(tuple(kx))
            ys.append(tuple(ky))
        return Calibration(self.thresholds_mm, tuple(xs), tuple(ys))


def reliability_rows(fit: CalibrationFit, k: int, calibration: Calibration | None = None,
                     n_bins: int = 10) -> list[tuple[float, float, float]]:
    """(mean forecast, observed frequency, weight) in ``n_bins`` probability bins at threshold k,
    of the raw forecasts or, given ``calibration``, of the calibrated ones (each fine bin
    moved to the calibrated value of its mean forecast)."""
    w, wp, wo = fit.sums[k]
    p = wp / np.where(w > 0, w, 1.0)
    if calibration is not None:
        j = calibration.index(fit.thresholds_mm[k])
        p = np.interp(p, calibration.knots_x[j], calibration.knots_y[j])
    coarse = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = (coarse == b) & (w > 0)
        total = float(w[sel].sum())
        if total > 0:
            rows.append((float((w[sel] * p[sel]).sum() / total), float(wo[sel].sum() / total), total))
    return rows
