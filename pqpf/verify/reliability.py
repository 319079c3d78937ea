"""Reliability tables accumulated streaming (reliability diagrams and the Murphy partition).

References
----------
Murphy, A. H. (1973). A new vector partition of the probability score. J. Appl.
Meteor., 12, 595-600.
Wilks, D. S. (2011). Statistical Methods in the Atmospheric Sciences, 3rd ed., 8.4.4.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.io.jsonio import to_plain
from pqpf.verify.scores import check_probabilities, check_weights

__all__ = ["ReliabilityTable"]


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
        check_probabilities("prob", p)
        w = check_weights(None if weight is None else np.asarray(weight).ravel(), p.shape)
        self._accumulate(p, o, w)

    def _accumulate(self, p: NDArray[np.float64], o: NDArray[np.float64],
                    w: NDArray[np.float64]) -> None:
        b = self._bins(p)
        n = self.count.size
        self.count += np.bincount(b, minlength=n)
        self.weight += np.bincount(b, weights=w, minlength=n)
        self.sum_wp += np.bincount(b, weights=w * p, minlength=n)
        self.sum_wo += np.bincount(b, weights=w * o, minlength=n)

    def merge(self, other: ReliabilityTable) -> ReliabilityTable:
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
            "mean_forecast": to_plain(mean_fcst),
            "observed_frequency": to_plain(obs_freq),
            "frequency_of_use": to_plain(freq),
            **to_plain(self.decomposition()),
        }

    def arrays(self) -> list[NDArray[Any]]:
        """The arrays this table holds (its whole state)."""
        return [self.edges, self.count, self.weight, self.sum_wp, self.sum_wo]
