"""Verification scores for probabilistic precipitation forecasts, accumulated streaming.

Arrays in, numbers out. Scores are weighted means over grid points restricted to points
where MRMS is present and of good quality (:func:`good_quality_mask`); the weights asked
for are ``cos(latitude)`` (:func:`cos_lat_weights`). On a regular latitude/longitude
grid that is the cell area; on the GRAF Lambert grid, whose cells are nearly equal in
area, it gives southern points somewhat more weight than northern ones. :class:`Verifier`
keeps only fixed-size sums, so verifying a year of hourly fields takes the same memory
as verifying one, and accumulators built by parallel workers combine with
:meth:`Verifier.merge`.

Conventions
-----------
* Events are ``obs >= threshold`` (the probabilities are P(obs >= t)), up to
  :data:`pqpf.bins.AMOUNT_ATOL_MM` so that float32 round-off cannot move an amount that
  is exactly a threshold below it (:func:`pqpf.bins.reaches`).
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

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.bins import bin_index_numpy, edge_widths_mm, reaches, validate_bin_edges

__all__ = [
    "cos_lat_weights",
    "good_quality_mask",
    "brier_score",
    "brier_skill_score",
    "crps_bins",
    "crps_deterministic",
    "ReliabilityTable",
    "Verifier",
    "CSV_COLUMNS",
]

logger = logging.getLogger(__name__)

#: Probabilities may exceed [0, 1] by this much (float32 rounding) before being refused.
_PROB_TOL = 1e-5
#: A bin forecast's probabilities must sum to 1 within this.
_SUM_TOL = 1e-3
#: Points processed at once by :meth:`Verifier.update` (bounds its temporary memory).
_CHUNK = 1 << 18


# ---- masks and weights ------------------------------------------------------------------


def cos_lat_weights(lat_deg: ArrayLike) -> NDArray[np.float32]:
    """Area weights ``cos(latitude)``.

    Parameters
    ----------
    lat_deg : array of float
        Latitude (degrees north), any shape, within [-90, 90].

    Returns
    -------
    float32 array, same shape
        Weights in [0, 1]; NaN latitude gives NaN.
    """
    lat = np.asarray(lat_deg, dtype=np.float64)
    finite = lat[np.isfinite(lat)]
    if finite.size and (finite.min() < -90.0 or finite.max() > 90.0):
        raise ValueError(
            f"latitudes must lie in [-90, 90] degrees, got [{finite.min()}, {finite.max()}]")
    return np.clip(np.cos(np.radians(lat)), 0.0, 1.0).astype(np.float32)


def good_quality_mask(
    obs_mm: ArrayLike,
    quality: ArrayLike,
    min_quality: float,
    valid_fraction: ArrayLike | None = None,
    min_valid_fraction: float = 0.0,
) -> NDArray[np.bool_]:
    """Points whose MRMS analysis may be used for verification.

    Parameters
    ----------
    obs_mm : array of float
        Observed (MRMS) amount, mm; NaN where missing.
    quality : array of float, same shape
        MRMS radar quality index in [0, 1]; NaN counts as poor.
    min_quality : float
        Points with ``quality < min_quality`` are excluded (``config.mrms.min_quality``).
    valid_fraction : array of float, optional
        Share of the point's area covered by valid MRMS cells (from the remapping).
    min_valid_fraction : float
        Points with ``valid_fraction < min_valid_fraction`` are excluded.

    Returns
    -------
    bool array
        True where the observation is present, its quality is good enough and (if given)
        enough of the cell was observed.
    """
    obs = np.asarray(obs_mm)
    q = np.asarray(quality)
    if obs.shape != q.shape:
        raise ValueError(f"obs_mm shape {obs.shape} differs from quality shape {q.shape}")
    if not 0.0 <= min_quality <= 1.0:
        raise ValueError(f"min_quality must lie in [0, 1], got {min_quality}")
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(obs) & np.isfinite(q) & (q >= min_quality)
        if valid_fraction is not None:
            vf = np.asarray(valid_fraction)
            if vf.shape != obs.shape:
                raise ValueError(
                    f"valid_fraction shape {vf.shape} differs from obs_mm shape {obs.shape}")
            mask &= np.isfinite(vf) & (vf >= min_valid_fraction)
    return mask


# ---- scores --------------------------------------------------------------------------------


def _check_prob(name: str, prob: NDArray[np.floating]) -> None:
    if prob.size == 0:
        return
    lo, hi = np.nanmin(prob), np.nanmax(prob)
    if lo < -_PROB_TOL or hi > 1.0 + _PROB_TOL:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{lo}, {hi}]")


def _weights(weight: ArrayLike | None, n_shape: tuple[int, ...]) -> NDArray[np.float64]:
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
        Non-negative weights (e.g. :func:`cos_lat_weights`); default equal.

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
    _check_prob("prob", p)
    w = _weights(weight, p.shape)
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


def _check_edges(edges_mm: ArrayLike) -> NDArray[np.float64]:
    return validate_bin_edges(edges_mm)


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
    e = _check_edges(edges_mm)
    y = np.asarray(obs_mm, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != e.size:
        raise ValueError(f"prob_bins must have shape (K={e.size}, n), got {p.shape}")
    if y.shape != (p.shape[1],):
        raise ValueError(f"obs_mm must have shape ({p.shape[1]},), got {y.shape}")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(p)):
        raise ValueError("prob_bins and obs_mm must be finite; mask missing points first")
    return _crps_bins_unchecked(p, e, bin_index_numpy(y, e))


def _crps_bins_unchecked(
    p: NDArray[np.float64], e: NDArray[np.float64], k_obs: NDArray[np.int64]
) -> NDArray[np.float64]:
    if e.size == 1:
        return np.zeros(p.shape[1])
    widths = edge_widths_mm(e)
    cdf = np.cumsum(p, axis=0)[:-1]  # F_m for m = 1..K-1
    below = k_obs[None, :] < np.arange(1, e.size)[:, None]
    return widths @ (cdf - below) ** 2


def _crps_onehot(k_fcst: NDArray[np.int64], e: NDArray[np.float64],
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


# ---- reliability -----------------------------------------------------------------------------


def _nan_to_none(values: NDArray[np.float64]) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class ReliabilityTable:
    """Streaming reliability table: weighted sums of forecasts and outcomes per bin.

    Parameters
    ----------
    prob_bin_edges : array of float, shape (B + 1,)
        Edges of the forecast-probability bins, from 0 to 1, strictly increasing.
        Bin b holds ``edges[b] <= p < edges[b + 1]``; p = 1 falls in the last bin.

    Examples
    --------
    >>> table = ReliabilityTable()
    >>> table.update(np.array([0.05, 0.95]), np.array([False, True]))
    >>> mean_fcst, obs_freq, weight = table.curve()

    References
    ----------
    Wilks, D. S. (2011). Statistical Methods in the Atmospheric Sciences, 3rd ed., 8.4.4.
    """

    def __init__(self, prob_bin_edges: ArrayLike | None = None) -> None:
        edges = (np.linspace(0.0, 1.0, 11) if prob_bin_edges is None
                 else np.asarray(prob_bin_edges, dtype=np.float64).ravel())
        if (edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] != 0.0
                or edges[-1] != 1.0):
            raise ValueError(
                f"prob_bin_edges must increase strictly from 0 to 1, got {edges.tolist()}")
        self.edges = edges
        nbin = edges.size - 1
        self.count = np.zeros(nbin, dtype=np.int64)
        self.weight = np.zeros(nbin, dtype=np.float64)
        self.sum_wp = np.zeros(nbin, dtype=np.float64)
        self.sum_wo = np.zeros(nbin, dtype=np.float64)

    def _bins(self, p: NDArray[np.float64]) -> NDArray[np.int64]:
        return np.clip(np.searchsorted(self.edges, p, side="right") - 1, 0, self.count.size - 1)

    def update(self, prob: ArrayLike, event: ArrayLike, weight: ArrayLike | None = None) -> None:
        """Add points: forecast probability, outcome (bool or 0/1), optional weight."""
        p = np.asarray(prob, dtype=np.float64).ravel()
        o = np.asarray(event, dtype=np.float64).ravel()
        if p.shape != o.shape:
            raise ValueError(f"prob has {p.size} points but event has {o.size}")
        if np.isnan(p).any() or np.isnan(o).any():
            raise ValueError("prob and event must not contain NaN; mask missing points first")
        _check_prob("prob", p)
        w = _weights(None if weight is None else np.asarray(weight).ravel(), p.shape)
        self._accumulate(p, o, w)

    def _accumulate(self, p: NDArray[np.float64], o: NDArray[np.float64],
                    w: NDArray[np.float64]) -> None:
        b = self._bins(p)
        n = self.count.size
        self.count += np.bincount(b, minlength=n)
        self.weight += np.bincount(b, weights=w, minlength=n)
        self.sum_wp += np.bincount(b, weights=w * p, minlength=n)
        self.sum_wo += np.bincount(b, weights=w * o, minlength=n)

    def merge(self, other: "ReliabilityTable") -> "ReliabilityTable":
        """Add another table's sums (same bin edges) into this one; returns self."""
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge reliability tables with different bin edges")
        self.count += other.count
        self.weight += other.weight
        self.sum_wp += other.sum_wp
        self.sum_wo += other.sum_wo
        return self

    def curve(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """``(mean_forecast, observed_frequency, weight_per_bin)``, each shape (B,).

        The first two are weighted means within each bin, NaN for empty bins.
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_fcst = np.where(self.weight > 0, self.sum_wp / self.weight, np.nan)
            obs_freq = np.where(self.weight > 0, self.sum_wo / self.weight, np.nan)
        return mean_fcst, obs_freq, self.weight.copy()

    def decomposition(self) -> dict[str, float]:
        """Murphy (1973) partition from the binned sums.

        Returns ``reliability = sum W_b (pbar_b - obar_b)^2 / W``, ``resolution =
        sum W_b (obar_b - obar)^2 / W`` and ``uncertainty = obar (1 - obar)``; the Brier
        score is ``reliability - resolution + uncertainty`` up to the spread of the
        forecasts within each bin. NaN when the table is empty.
        """
        total = self.weight.sum()
        if total <= 0:
            return {"reliability": math.nan, "resolution": math.nan, "uncertainty": math.nan}
        mean_fcst, obs_freq, w = self.curve()
        used = w > 0
        obar = self.sum_wo.sum() / total
        rel = float(np.sum(w[used] * (mean_fcst[used] - obs_freq[used]) ** 2) / total)
        res = float(np.sum(w[used] * (obs_freq[used] - obar) ** 2) / total)
        return {"reliability": rel, "resolution": res, "uncertainty": float(obar * (1 - obar))}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready curve: bin edges, counts, weights, means, frequency of use."""
        mean_fcst, obs_freq, w = self.curve()
        total = w.sum()
        freq = w / total if total > 0 else np.full_like(w, np.nan)
        return {
            "prob_bin_edges": self.edges.tolist(),
            "count": self.count.tolist(),
            "weight": w.tolist(),
            "mean_forecast": _nan_to_none(mean_fcst),
            "observed_frequency": _nan_to_none(obs_freq),
            "frequency_of_use": _nan_to_none(freq),
            **{k: _num(v) for k, v in self.decomposition().items()},
        }

    def arrays(self) -> list[NDArray[Any]]:
        """The arrays this table holds (its whole state)."""
        return [self.edges, self.count, self.weight, self.sum_wp, self.sum_wo]


# ---- the accumulator ----------------------------------------------------------------------

#: Sums kept per threshold, in the order of the state array's rows.
_THRESHOLD_SUMS = ("n", "weight", "sum_wo", "sse_model", "sse_ref", "sse_raw")
#: Sums kept for the CRPS.
_CRPS_SUMS = ("n", "weight", "model", "raw_binned", "raw_mae")

#: Columns of :meth:`Verifier.to_csv_rows`, in order.
CSV_COLUMNS = (
    "threshold_mm", "n", "weight", "base_rate",
    "bs_model", "bs_ref", "bs_raw", "bs_clim",
    "bss_vs_ref", "bss_vs_clim", "bss_vs_raw", "bss_ref_vs_clim", "bss_raw_vs_clim",
    "reliability_model", "resolution_model", "reliability_ref", "resolution_ref",
    "crps_n", "crps_weight", "crps_model", "crps_raw_binned", "mae_raw", "crpss_vs_raw_binned",
)


class Verifier:
    """Streaming accumulator of Brier, reliability and CRPS statistics.

    Parameters
    ----------
    thresholds_mm : sequence of float, length T
        Thresholds of the exceedance probabilities (``config.probability.thresholds_mm``).
    bin_edges_mm : sequence of float, length K, optional
        Lower edges of the model's ordinal bins (see :func:`crps_bins`); needed only to
        accumulate the CRPS.
    prob_bin_edges : sequence of float, optional
        Edges of the reliability-diagram bins; default 0, 0.1, ..., 1.

    Notes
    -----
    A point enters the scores when its weight is positive and the observation and
    every forecast given for it (all thresholds, and the bin probabilities and GRAF
    amount when given) are finite; other points with positive weight are counted in
    ``n_excluded_missing``. Pass a weight of 0 for points to leave out (poor MRMS
    quality, see :func:`good_quality_mask`). The CRPS sums have their own count and
    weight since updates may come without bin probabilities. All sums are float64 and
    the state has a fixed size: memory does not grow with the number of updates.

    Examples
    --------
    >>> v = Verifier(thresholds_mm=(1.0, 5.0), bin_edges_mm=(0, 1, 5))   # doctest: +SKIP
    >>> for case in cases:                                                # doctest: +SKIP
    ...     v.update(case.p_model, case.p_raw, case.p_ref, case.obs, case.w)
    >>> scores = v.result()                                               # doctest: +SKIP
    """

    def __init__(
        self,
        thresholds_mm: Sequence[float],
        bin_edges_mm: Sequence[float] | None = None,
        prob_bin_edges: ArrayLike | None = None,
    ) -> None:
        t = np.asarray(thresholds_mm, dtype=np.float64).ravel()
        if t.size == 0 or not np.all(np.isfinite(t)):
            raise ValueError(f"thresholds_mm must be non-empty and finite, got {thresholds_mm!r}")
        self.thresholds_mm = t
        self.bin_edges_mm = None if bin_edges_mm is None else _check_edges(bin_edges_mm)
        self.sums = np.zeros((len(_THRESHOLD_SUMS), t.size), dtype=np.float64)
        self.crps_sums = np.zeros(len(_CRPS_SUMS), dtype=np.float64)
        self.counters = np.zeros(2, dtype=np.int64)  # updates, excluded (missing) points
        self.rel_model = [ReliabilityTable(prob_bin_edges) for _ in t]
        self.rel_ref = [ReliabilityTable(prob_bin_edges) for _ in t]

    # -- accumulation --

    def _flat_probs(self, name: str, prob: ArrayLike, n_shape: tuple[int, ...]) -> NDArray[np.float64]:
        p = np.asarray(prob)
        if p.shape != (self.thresholds_mm.size, *n_shape):
            raise ValueError(
                f"{name} must have shape (T={self.thresholds_mm.size}, {', '.join(map(str, n_shape))}),"
                f" got {p.shape}")
        return p.reshape(self.thresholds_mm.size, -1)

    def update(
        self,
        prob_model: ArrayLike,
        prob_raw: ArrayLike,
        prob_ref: ArrayLike,
        obs_mm: ArrayLike,
        weight: ArrayLike,
        model_bin_probs: ArrayLike | None = None,
        graf_mm: ArrayLike | None = None,
    ) -> int:
        """Add one case (e.g. one init's field).

        Parameters
        ----------
        prob_model, prob_raw, prob_ref : arrays of float, shape (T, *S)
            P(obs >= t) from the model, the raw GRAF (0/1) and the smoothed-GRAF
            reference, for every threshold; ``S`` any point shape, e.g. (n,) or (ny, nx).
        obs_mm : array of float, shape S
            Observed amount (mm); NaN where missing.
        weight : array of float, shape S
            Non-negative weights, 0 for points to leave out.
        model_bin_probs : array of float, shape (K, *S), optional
            The model's bin probabilities, for the CRPS (needs ``bin_edges_mm``).
        graf_mm : array of float, shape S, optional
            The GRAF amount, for its CRPS (absolute error, and binned like the model).

        Returns
        -------
        int
            Number of points used.
        """
        obs = np.asarray(obs_mm)
        n_shape = obs.shape
        y = obs.reshape(-1).astype(np.float64)
        w = _weights(weight, n_shape).reshape(-1)
        probs = [self._flat_probs(name, p, n_shape) for name, p in
                 (("prob_model", prob_model), ("prob_raw", prob_raw), ("prob_ref", prob_ref))]
        bins = None
        if model_bin_probs is not None:
            if self.bin_edges_mm is None:
                raise ValueError("model_bin_probs given but the Verifier has no bin_edges_mm")
            bins = np.asarray(model_bin_probs)
            if bins.shape != (self.bin_edges_mm.size, *n_shape):
                raise ValueError(f"model_bin_probs must have shape (K={self.bin_edges_mm.size}, "
                                 f"{', '.join(map(str, n_shape))}), got {bins.shape}")
            bins = bins.reshape(self.bin_edges_mm.size, -1)
        graf = None
        if graf_mm is not None:
            graf = np.asarray(graf_mm)
            if graf.shape != n_shape:
                raise ValueError(f"graf_mm shape {graf.shape} differs from obs_mm shape {n_shape}")
            graf = graf.reshape(-1)

        if (bins is None) != (graf is None):
            raise ValueError("the CRPS needs both model_bin_probs and graf_mm (or neither)")
        for name, p in zip(("prob_model", "prob_raw", "prob_ref"), probs):
            _check_prob(name, p)

        use = (w > 0) & np.isfinite(y)
        for p in probs:
            use &= np.isfinite(p).all(axis=0)
        if bins is not None:
            use &= np.isfinite(bins).all(axis=0)
            use &= np.isfinite(graf)
        index = np.flatnonzero(use)
        chunks = [index[i:i + _CHUNK] for i in range(0, index.size, _CHUNK)]
        if bins is not None:  # validate everything before accumulating anything
            for idx in chunks:
                pb = bins[:, idx]
                if pb.min() < -_PROB_TOL or np.abs(pb.sum(axis=0, dtype=np.float64) - 1.0).max() > _SUM_TOL:
                    raise ValueError("model_bin_probs must be >= 0 and sum to 1 over the bins")
        self.counters[0] += 1
        self.counters[1] += int(np.count_nonzero((w > 0) & ~use))
        for idx in chunks:
            self._accumulate(idx, y, w, probs, bins, graf)
        return int(index.size)

    def _accumulate(self, idx: NDArray[np.int64], y_all: NDArray[np.float64],
                    w_all: NDArray[np.float64], probs: list[NDArray[Any]],
                    bins: NDArray[Any] | None, graf: NDArray[Any] | None) -> None:
        """Add the points ``idx`` (all valid) to the sums."""
        y = y_all[idx]
        w = w_all[idx]
        p_model, p_raw, p_ref = (p[:, idx].astype(np.float64) for p in probs)
        events = reaches(y[None, :], self.thresholds_mm[:, None]).astype(np.float64)
        self.sums[0] += idx.size
        self.sums[1] += w.sum()
        self.sums[2] += events @ w
        self.sums[3] += ((p_model - events) ** 2) @ w
        self.sums[4] += ((p_ref - events) ** 2) @ w
        self.sums[5] += ((p_raw - events) ** 2) @ w
        for k in range(self.thresholds_mm.size):
            self.rel_model[k]._accumulate(p_model[k], events[k], w)
            self.rel_ref[k]._accumulate(p_ref[k], events[k], w)
        if bins is not None and graf is not None and self.bin_edges_mm is not None:
            e = self.bin_edges_mm
            k_obs = bin_index_numpy(y, e)
            g = graf[idx].astype(np.float64)
            self.crps_sums += np.array([
                idx.size,
                w.sum(),
                _crps_bins_unchecked(bins[:, idx].astype(np.float64), e, k_obs) @ w,
                _crps_onehot(bin_index_numpy(g, e), e, k_obs) @ w,
                np.abs(g - y) @ w,
            ])

    def merge(self, other: "Verifier") -> "Verifier":
        """Add the sums of another accumulator (same thresholds and bins); returns self."""
        if not np.array_equal(self.thresholds_mm, other.thresholds_mm):
            raise ValueError(f"cannot merge: thresholds {self.thresholds_mm.tolist()} vs "
                             f"{other.thresholds_mm.tolist()}")
        same_bins = (self.bin_edges_mm is None and other.bin_edges_mm is None) or (
            self.bin_edges_mm is not None and other.bin_edges_mm is not None
            and np.array_equal(self.bin_edges_mm, other.bin_edges_mm))
        if not same_bins:
            raise ValueError("cannot merge accumulators with different bin_edges_mm")
        self.sums += other.sums
        self.crps_sums += other.crps_sums
        self.counters += other.counters
        for mine, theirs in zip(self.rel_model + self.rel_ref, other.rel_model + other.rel_ref):
            mine.merge(theirs)
        return self

    # -- state --

    def state_nbytes(self) -> int:
        """Bytes of all arrays held: the accumulator's whole state (constant in time)."""
        arrays = [self.thresholds_mm, self.sums, self.crps_sums, self.counters]
        if self.bin_edges_mm is not None:
            arrays.append(self.bin_edges_mm)
        for table in self.rel_model + self.rel_ref:
            arrays.extend(table.arrays())
        return int(sum(a.nbytes for a in arrays))

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The state as plain arrays (for ``np.savez``), restorable by :meth:`from_arrays`."""
        out: dict[str, NDArray[Any]] = {
            "thresholds_mm": self.thresholds_mm,
            "bin_edges_mm": (self.bin_edges_mm if self.bin_edges_mm is not None
                             else np.zeros(0)),
            "prob_bin_edges": self.rel_model[0].edges,
            "sums": self.sums,
            "crps_sums": self.crps_sums,
            "counters": self.counters,
        }
        for name, tables in (("rel_model", self.rel_model), ("rel_ref", self.rel_ref)):
            out[name] = np.stack([np.stack([t.count.astype(np.float64), t.weight, t.sum_wp,
                                            t.sum_wo]) for t in tables])
        return {k: np.array(v, copy=True) for k, v in out.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]]) -> "Verifier":
        """Rebuild an accumulator saved with :meth:`to_arrays`."""
        edges = np.asarray(arrays["bin_edges_mm"])
        v = cls(arrays["thresholds_mm"], edges if edges.size else None,
                arrays["prob_bin_edges"])
        if np.shape(arrays["sums"]) != v.sums.shape:
            raise ValueError(f"sums have shape {np.shape(arrays['sums'])}, expected {v.sums.shape}")
        v.sums[:] = arrays["sums"]
        v.crps_sums[:] = arrays["crps_sums"]
        v.counters[:] = arrays["counters"]
        for name, tables in (("rel_model", v.rel_model), ("rel_ref", v.rel_ref)):
            stacked = np.asarray(arrays[name])
            for t, rows in zip(tables, stacked):
                t.count[:] = np.rint(rows[0]).astype(np.int64)
                t.weight[:], t.sum_wp[:], t.sum_wo[:] = rows[1], rows[2], rows[3]
        return v

    # -- results --

    def _threshold_scores(self, k: int) -> dict[str, Any]:
        n, wsum, wo, sse_model, sse_ref, sse_raw = self.sums[:, k]
        nan = math.nan
        base = wo / wsum if wsum > 0 else nan
        bs_model = sse_model / wsum if wsum > 0 else nan
        bs_ref = sse_ref / wsum if wsum > 0 else nan
        bs_raw = sse_raw / wsum if wsum > 0 else nan
        bs_clim = base * (1.0 - base) if wsum > 0 else nan
        dec_model = self.rel_model[k].decomposition()
        dec_ref = self.rel_ref[k].decomposition()
        return {
            "threshold_mm": float(self.thresholds_mm[k]),
            "n": int(n),
            "weight": float(wsum),
            "base_rate": base,
            "bs_model": bs_model,
            "bs_ref": bs_ref,
            "bs_raw": bs_raw,
            "bs_clim": bs_clim,
            "bss_vs_ref": brier_skill_score(bs_model, bs_ref),
            "bss_vs_clim": brier_skill_score(bs_model, bs_clim),
            "bss_vs_raw": brier_skill_score(bs_model, bs_raw),
            "bss_ref_vs_clim": brier_skill_score(bs_ref, bs_clim),
            "bss_raw_vs_clim": brier_skill_score(bs_raw, bs_clim),
            "reliability_model": dec_model["reliability"],
            "resolution_model": dec_model["resolution"],
            "reliability_ref": dec_ref["reliability"],
            "resolution_ref": dec_ref["resolution"],
        }

    def _crps_scores(self) -> dict[str, Any]:
        n, wsum, model, raw_binned, raw_mae = self.crps_sums
        ok = wsum > 0
        crps_model = model / wsum if ok else math.nan
        crps_raw = raw_binned / wsum if ok else math.nan
        return {
            "crps_n": int(n),
            "crps_weight": float(wsum),
            "crps_model": crps_model,
            "crps_raw_binned": crps_raw,
            "mae_raw": raw_mae / wsum if ok else math.nan,
            "crpss_vs_raw_binned": (1.0 - crps_model / crps_raw
                                    if ok and crps_raw > 0 else math.nan),
        }

    def result(self) -> dict[str, Any]:
        """All scores as a JSON-ready dict (NaN becomes None).

        Keys: ``thresholds_mm``, ``n_updates``, ``n_excluded_missing``, ``per_threshold``
        (list with, per threshold, ``threshold_mm, n, weight, base_rate, bs_model,
        bs_ref, bs_raw, bs_clim, bss_vs_ref, bss_vs_clim, bss_vs_raw, bss_ref_vs_clim,
        bss_raw_vs_clim``, the Murphy reliability/resolution terms, and the curves
        ``reliability_curve_model`` / ``reliability_curve_ref`` of
        :meth:`ReliabilityTable.as_dict`), and ``crps`` (``crps_n, crps_weight,
        crps_model`` (mm), ``crps_raw_binned`` (GRAF as a one-bin forecast scored
        like the model), ``mae_raw`` (the CRPS of GRAF as a continuous deterministic
        forecast), ``crpss_vs_raw_binned``, ``bin_edges_mm``).
        """
        per_threshold = []
        for k in range(self.thresholds_mm.size):
            row = {key: (_num(v) if isinstance(v, float) else v)
                   for key, v in self._threshold_scores(k).items()}
            row["reliability_curve_model"] = self.rel_model[k].as_dict()
            row["reliability_curve_ref"] = self.rel_ref[k].as_dict()
            per_threshold.append(row)
        crps = {key: (_num(v) if isinstance(v, float) else v)
                for key, v in self._crps_scores().items()}
        crps["bin_edges_mm"] = (None if self.bin_edges_mm is None
                                else self.bin_edges_mm.tolist())
        return {
            "thresholds_mm": self.thresholds_mm.tolist(),
            "n_updates": int(self.counters[0]),
            "n_excluded_missing": int(self.counters[1]),
            "per_threshold": per_threshold,
            "crps": crps,
        }

    def to_csv_rows(self) -> list[dict[str, float | int | None]]:
        """One row per threshold with the columns :data:`CSV_COLUMNS` (for ``csv.DictWriter``).

        The CRPS columns are the same in every row (CRPS does not depend on a threshold).
        NaN becomes None (an empty cell).
        """
        crps = self._crps_scores()
        rows = []
        for k in range(self.thresholds_mm.size):
            row = {**self._threshold_scores(k), **crps}
            rows.append({c: (_num(row[c]) if isinstance(row[c], float) else row[c])
                         for c in CSV_COLUMNS})
        return rows
