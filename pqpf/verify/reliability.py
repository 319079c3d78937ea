"""Reliability tables accumulated streaming, with the Brier decomposition exact to round-off.

The table of a reliability diagram (mean forecast and observed frequency per
probability bin, frequency of use) and the Brier score partition come from the same
per-bin sums.

Murphy's (1973) partition ``BS = REL - RES + UNC`` holds exactly only when every
forecast in a probability bin equals the bin's mean forecast. With binned continuous
probabilities two more terms appear (Stephenson et al. 2008): the within-bin variance of
the forecasts (WBV) and their within-bin covariance with the outcomes (WBC),

``BS = REL - RES + UNC + WBV - 2 WBC``.

With ``W_b = sum w``, ``pbar_b = sum w p / W_b`` and ``obar_b = sum w o / W_b`` in bin b,
``W = sum_b W_b`` and ``obar = sum w o / W``:

* ``REL = sum_b W_b (pbar_b - obar_b)^2 / W``
* ``RES = sum_b W_b (obar_b - obar)^2 / W``
* ``UNC = obar (1 - obar)``
* ``WBV = sum_b (sum w p^2 - W_b pbar_b^2) / W``
* ``WBC = sum_b (sum w p o - W_b pbar_b obar_b) / W``

Proof sketch: in bin b write ``p - o = (p - pbar_b) + (pbar_b - obar_b) + (obar_b - o)``
and square; the cross terms with a constant factor vanish, ``sum w (o - obar_b)^2 =
W_b obar_b (1 - obar_b)`` for 0/1 outcomes, and ``sum_b W_b obar_b (1 - obar_b) / W =
UNC - RES``. So the table keeps, per bin, ``sum w``, ``sum w p``, ``sum w o``,
``sum w p^2`` and ``sum w p o`` (all float64, fixed size): five numbers per bin per
threshold, mergeable across workers.

References
----------
Murphy, A. H. (1973). A new vector partition of the probability score. J. Appl.
Meteor., 12, 595-600.
Stephenson, D. B., C. A. S. Coelho, and I. T. Jolliffe (2008). Two extra components in
the Brier score decomposition. Wea. Forecasting, 23, 752-757.
Wilks, D. S. (2011). Statistical Methods in the Atmospheric Sciences, 3rd ed., 8.4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.verify.scores import check_probabilities, check_weights

__all__ = ["BRIER_COMPONENTS", "DEFAULT_PROB_BIN_EDGES", "ReliabilityTable"]

#: Forecast-probability bins of a reliability table unless given: tenths.
DEFAULT_PROB_BIN_EDGES: tuple[float, ...] = tuple(np.linspace(0.0, 1.0, 11).tolist())

#: Keys of :meth:`ReliabilityTable.components`, in the order tables print them.
BRIER_COMPONENTS: tuple[str, ...] = (
    "brier_score", "reliability", "resolution", "uncertainty",
    "within_bin_variance", "within_bin_covariance",
)

#: Sums kept per bin, in the order of :attr:`ReliabilityTable.sums`.
_SUMS = ("weight", "sum_wp", "sum_wo", "sum_wpp", "sum_wpo")


class ReliabilityTable:
    """Streaming reliability table with the sums for an exact Brier decomposition.

    Parameters
    ----------
    prob_bin_edges : array of float, shape (B + 1,), optional
        Edges of the forecast-probability bins, strictly increasing from 0 to 1; bin b
        holds ``edges[b] <= p < edges[b + 1]`` and p = 1 falls in the last bin.
        Default 0, 0.1, ..., 1.

    Attributes
    ----------
    count : int64 array, shape (B,)
        Points per bin.
    sums : float64 array, shape (5, B)
        Per bin: ``sum w``, ``sum w p``, ``sum w o``, ``sum w p^2``, ``sum w p o``.

    Examples
    --------
    >>> table = ReliabilityTable()
    >>> table.update(np.array([0.05, 0.95, 0.9]), np.array([0, 1, 0]))
    >>> c = table.components()
    >>> round(c["reliability"] - c["resolution"] + c["uncertainty"]
    ...       + c["within_bin_variance"] - 2 * c["within_bin_covariance"] - c["brier_score"], 12)
    0.0
    """

    def __init__(self, prob_bin_edges: ArrayLike | None = None) -> None:
        edges = np.asarray(DEFAULT_PROB_BIN_EDGES if prob_bin_edges is None else prob_bin_edges,
                           dtype=np.float64).ravel()
        if edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] != 0.0 or edges[-1] != 1.0:
            raise ValueError(f"prob_bin_edges must increase strictly from 0 to 1, got {edges.tolist()}")
        self.edges = edges
        self.count = np.zeros(edges.size - 1, dtype=np.int64)
        self.sums = np.zeros((len(_SUMS), edges.size - 1))

    def update(self, prob: ArrayLike, event: ArrayLike, weight: ArrayLike | None = None) -> None:
        """Add points.

        Parameters
        ----------
        prob : array of float
            Forecast probability of the event, in [0, 1], no NaN.
        event : array of bool or 0/1, same shape
            Whether the event happened.
        weight : array of float, same shape, optional
            Non-negative weights (e.g. true-area weights); default 1.
        """
        p = np.asarray(prob, dtype=np.float64).ravel()
        o = np.asarray(event, dtype=np.float64).ravel()
        if p.shape != o.shape:
            raise ValueError(f"prob has {p.size} points but event has {o.size}")
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(o))):
            raise ValueError("prob and event must be finite; mask missing points first")
        check_probabilities("prob", p)
        if np.any((o != 0) & (o != 1)):
            raise ValueError("event must be 0/1 (the decomposition assumes binary outcomes)")
        w = check_weights(None if weight is None else np.asarray(weight).ravel(), p.shape)
        self.accumulate(p, o, w)

    def accumulate(self, p: NDArray[np.float64], o: NDArray[np.float64], w: NDArray[np.float64]) -> None:
        """Add validated 1-D float64 points (the fast path for an accumulator that already
        checked its inputs, as :class:`pqpf.verify.verifier.Verifier` does)."""
        b = np.clip(np.searchsorted(self.edges, p, side="right") - 1, 0, self.count.size - 1)
        n = self.count.size
        self.count += np.bincount(b, minlength=n)
        wp = w * p
        for row, values in enumerate((w, wp, w * o, wp * p, wp * o)):
            self.sums[row] += np.bincount(b, weights=values, minlength=n)

    def merge(self, other: ReliabilityTable) -> ReliabilityTable:
        """Add another table's sums (same bin edges) into this one; returns self."""
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge Brier tables with different bin edges")
        self.count += other.count
        self.sums += other.sums
        return self

    @property
    def weight(self) -> NDArray[np.float64]:
        """``sum w`` per bin."""
        return self.sums[0]

    @property
    def sum_wp(self) -> NDArray[np.float64]:
        """``sum w p`` per bin."""
        return self.sums[1]

    @property
    def sum_wo(self) -> NDArray[np.float64]:
        """``sum w o`` per bin."""
        return self.sums[2]

    def arrays(self) -> list[NDArray[Any]]:
        """The arrays this table holds (its whole state)."""
        return [self.edges, self.count, self.sums]

    def decomposition(self) -> dict[str, float]:
        """Same as :meth:`components`."""
        return self.components()

    def curve(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """``(mean_forecast, observed_frequency, weight)`` per bin, shape (B,) each; NaN
        for empty bins."""
        w, wp, wo = self.sums[0], self.sums[1], self.sums[2]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (np.where(w > 0, wp / w, np.nan), np.where(w > 0, wo / w, np.nan), w.copy())

    def components(self) -> dict[str, float]:
        """The Brier score and its five components (:data:`BRIER_COMPONENTS`).

        ``brier_score = reliability - resolution + uncertainty + within_bin_variance -
        2 * within_bin_covariance`` to round-off (~1e-16). ``brier_score`` itself is
        ``(sum w p^2 - 2 sum w p o + sum w o) / W``, exact for 0/1 outcomes. All NaN when
        the table is empty.
        """
        w, wp, wo, wpp, wpo = self.sums
        total = w.sum()
        if total <= 0:
            return dict.fromkeys(BRIER_COMPONENTS, math.nan)
        used = w > 0
        pbar = wp[used] / w[used]
        obar_b = wo[used] / w[used]
        obar = wo.sum() / total
        return {
            "brier_score": float((wpp.sum() - 2.0 * wpo.sum() + wo.sum()) / total),
            "reliability": float(np.sum(w[used] * (pbar - obar_b) ** 2) / total),
            "resolution": float(np.sum(w[used] * (obar_b - obar) ** 2) / total),
            "uncertainty": float(obar * (1.0 - obar)),
            "within_bin_variance": float(np.sum(wpp[used] - wp[used] * pbar) / total),
            "within_bin_covariance": float(np.sum(wpo[used] - wp[used] * obar_b) / total),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready curve and components: bin edges, counts, weights, means, frequency of
        use, and the :data:`BRIER_COMPONENTS` (NaN becomes None)."""
        mean_fcst, obs_freq, w = self.curve()
        total = w.sum()
        freq = w / total if total > 0 else np.full_like(w, np.nan)
        return {
            "prob_bin_edges": self.edges.tolist(),
            "count": self.count.tolist(),
            "weight": w.tolist(),
            "mean_forecast": _none_for_nan(mean_fcst),
            "observed_frequency": _none_for_nan(obs_freq),
            "frequency_of_use": _none_for_nan(freq),
            **{k: (v if math.isfinite(v) else None) for k, v in self.components().items()},
        }

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The state as plain arrays (for ``np.savez``); see :meth:`from_arrays`."""
        return {"edges": self.edges.copy(), "count": self.count.copy(), "sums": self.sums.copy()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> ReliabilityTable:
        """Rebuild a table saved with :meth:`to_arrays`."""
        table = cls(arrays["edges"])
        if np.shape(arrays["sums"]) != table.sums.shape or np.shape(arrays["count"]) != table.count.shape:
            raise ValueError(f"sums/count of shapes {np.shape(arrays['sums'])}/{np.shape(arrays['count'])} do "
                             f"not fit {table.count.size} bins")
        table.count[:] = arrays["count"]
        table.sums[:] = arrays["sums"]
        return table


def _none_for_nan(values: NDArray[np.float64]) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]
