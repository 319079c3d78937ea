"""Verification scores of probabilistic precipitation forecasts: weights, Brier, CRPS.

Arrays in, numbers out. Scores are weighted means over grid points restricted to points
where MRMS is present and of good quality (:func:`pqpf.quality.good_quality_mask`), with
true cell-area weights (:func:`pqpf.verify.area.area_weights`).
:class:`pqpf.verify.verifier.Verifier` keeps only fixed-size sums, so verifying a year of
hourly fields takes the same memory as verifying one.

Conventions
-----------
* Events are ``obs >= threshold`` (the probabilities are P(obs >= t)), up to
  :data:`pqpf.ordinal.AMOUNT_ATOL_MM` so that float32 round-off cannot move an amount that
  is exactly a threshold below it (:func:`pqpf.ordinal.reaches`).
* Brier score ``BS = sum w (p - o)^2 / sum w`` (Brier 1950). Climatology is the sample
  base rate of the verified period, ``obar = sum w o / sum w``, with
  ``BS_clim = obar (1 - obar)``. Skill ``BSS = 1 - BS / BS_ref``.
* Ordinal-bin forecasts: ``edges_mm`` are the LOWER edges of K bins, ``edges_mm[0]``
  the lowest possible amount (0), the last bin open above. The CRPS of the discretised
  forecast (:func:`crps_bins`) is the CRPS of the discrete distribution with mass
  ``p_k`` at lower edge ``e_k``, scored against the observation moved to the lower edge
  of its bin.

References
----------
Brier, G. W. (1950). Verification of forecasts expressed in terms of probability.
Mon. Wea. Rev., 78, 1-3.
Murphy, A. H. (1973). A new vector partition of the probability score. J. Appl.
Meteor., 12, 595-600.
Hersbach, H. (2000). Decomposition of the continuous ranked probability score for
ensemble prediction systems. Wea. Forecasting, 15, 559-570.
Wilks, D. S. (2011). Statistical Methods in the Atmospheric Sciences, 3rd ed., ch. 8.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.ordinal import bin_index, edge_widths_mm, validate_bin_edges

__all__ = [
    "brier_score",
    "brier_skill_score",
    "crps_bins",
    "crps_bins_from_index",
    "crps_onehot",
    "crps_deterministic",
    "check_probabilities",
    "check_weights",
    "PROB_TOL",
]

#: Probabilities may exceed [0, 1] by this much (float32 rounding) before being refused.
PROB_TOL = 1e-5


def check_probabilities(name: str, prob: NDArray[np.floating]) -> None:
    if prob.size == 0:
        return
    lo, hi = np.nanmin(prob), np.nanmax(prob)
    if lo < -PROB_TOL or hi > 1.0 + PROB_TOL:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{lo}, {hi}]")


def check_weights(weight: ArrayLike | None, n_shape: tuple[int, ...]) -> NDArray[np.float64]:
    if weight is None:
        return np.ones(n_shape, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != n_shape:
        raise ValueError(f"weight shape {w.shape} differs from the data shape {n_shape}")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite and >= 0")
    return w


def brier_score(prob: ArrayLike, event: ArrayLike, weight: ArrayLike | None = None) -> float:
    """Weighted Brier score ``sum w (p - o)^2 / sum w``.

    Parameters
    ----------
    prob : array of float
        Forecast probability of the event, in [0, 1], no NaN.
    event : array of bool or 0/1, same shape
        Whether the event happened.
    weight : array of float, same shape, optional
        Non-negative weights (e.g. :func:`pqpf.verify.area.area_weights`); default equal.

    Returns
    -------
    float
        In [0, 1]; 0 is perfect.
    """
    p = np.asarray(prob, dtype=np.float64)
    o = np.asarray(event, dtype=np.float64)
    if p.shape != o.shape:
        raise ValueError(f"prob shape {p.shape} differs from event shape {o.shape}")
    if np.isnan(p).any() or np.isnan(o).any():
        raise ValueError("prob and event must not contain NaN; mask missing points first")
    check_probabilities("prob", p)
    w = check_weights(weight, p.shape)
    total = w.sum()
    if total <= 0:
        raise ValueError("the weights sum to 0: no points to score")
    return float(np.sum(w * (p - o) ** 2) / total)


def brier_skill_score(bs: float, bs_ref: float) -> float:
    """Skill ``1 - bs / bs_ref`` relative to a reference Brier score.

    1 is perfect, 0 no better than the reference, negative worse. NaN when
    ``bs_ref`` is 0 or not finite (a perfect or undefined reference leaves no room for
    skill).
    """
    if not (math.isfinite(bs) and math.isfinite(bs_ref)) or bs_ref <= 0:
        return math.nan
    return 1.0 - bs / bs_ref


def crps_bins(prob_bins: ArrayLike, edges_mm: ArrayLike, obs_mm: ArrayLike) -> NDArray[np.float64]:
    """CRPS (mm) of ordinal-bin forecasts, point by point.

    Parameters
    ----------
    prob_bins : array of float, shape (K, n)
        Probability of each bin at each point; non-negative, summing to 1 over K.
    edges_mm : array of float, shape (K,)
        Lower edges of the bins (mm), strictly increasing; bin k is
        ``[edges_mm[k], edges_mm[k + 1])`` and the last bin is open above.
    obs_mm : array of float, shape (n,)
        Observed amount (mm), finite. Values below ``edges_mm[0]`` count in bin 0.

    Returns
    -------
    float64 array, shape (n,)
        ``sum_{m=1}^{K-1} (e_m - e_{m-1}) * (F_m - 1[obs < e_m])^2`` with
        ``F_m = sum_{k<m} p_k = P(obs < e_m)``.

    Notes
    -----
    This equals the CRPS ``int (F(x) - 1[x >= y'])^2 dx`` of the discrete distribution
    with mass ``p_k`` at ``e_k`` against ``y'``, the lower edge of the observation's bin:
    both step functions are constant on ``[e_{m-1}, e_m)``, where the forecast CDF is
    ``F_m`` and the observation's step is ``1[obs < e_m]``; beyond the last edge both
    are 1. It is the ranked probability score with each bin step weighted by its width
    (mm), so it is comparable with the MAE of a deterministic forecast. The training
    loss must use this same definition for training and verification scores to agree;
    the tests pin it to ``properscoring.crps_ensemble`` of the weighted ensemble at the
    lower edges.
    """
    p = np.asarray(prob_bins, dtype=np.float64)
    e = validate_bin_edges(edges_mm)
    y = np.asarray(obs_mm, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != e.size:
        raise ValueError(f"prob_bins must have shape (K={e.size}, n), got {p.shape}")
    if y.shape != (p.shape[1],):
        raise ValueError(f"obs_mm must have shape ({p.shape[1]},), got {y.shape}")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(p)):
        raise ValueError("prob_bins and obs_mm must be finite; mask missing points first")
    return crps_bins_from_index(p, e, bin_index(y, e))


def crps_bins_from_index(
    p: NDArray[np.float64], e: NDArray[np.float64], k_obs: NDArray[np.int64]
) -> NDArray[np.float64]:
    if e.size == 1:
        return np.zeros(p.shape[1])
    widths = edge_widths_mm(e)
    cdf = np.cumsum(p, axis=0)[:-1]  # F_m for m = 1..K-1
    below = k_obs[None, :] < np.arange(1, e.size)[:, None]
    return widths @ (cdf - below) ** 2


def crps_onehot(k_fcst: NDArray[np.int64], e: NDArray[np.float64],
                 k_obs: NDArray[np.int64]) -> NDArray[np.float64]:
    """CRPS of a forecast with all its mass in bin ``k_fcst``: the distance of lower edges."""
    return np.abs(e[k_fcst] - e[k_obs])


def crps_deterministic(forecast_mm: ArrayLike, obs_mm: ArrayLike) -> NDArray[np.float64]:
    """CRPS (mm) of a deterministic forecast: the absolute error ``|f - y|``."""
    f = np.asarray(forecast_mm, dtype=np.float64)
    y = np.asarray(obs_mm, dtype=np.float64)
    if f.shape != y.shape:
        raise ValueError(f"forecast_mm shape {f.shape} differs from obs_mm shape {y.shape}")
    return np.abs(f - y)
