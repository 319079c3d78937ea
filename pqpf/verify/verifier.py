"""The streaming verification accumulator: Brier, reliability and CRPS sums over many fields.

:class:`Verifier` keeps only fixed-size sums, so verifying a year of hourly fields takes
the same memory as verifying one, and accumulators built by parallel workers (or
training processes) combine with :meth:`Verifier.merge` / :meth:`Verifier.to_arrays`.
Conventions and references: :mod:`pqpf.verify.scores`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.io.jsonio import to_plain
from pqpf.ordinal import bin_index, reaches, validate_bin_edges
from pqpf.verify.reliability import ReliabilityTable
from pqpf.verify.scores import (
    PROB_TOL,
    brier_skill_score,
    check_probabilities,
    check_weights,
    crps_bins_from_index,
    crps_onehot,
)

__all__ = ["Verifier", "CSV_COLUMNS"]

logger = logging.getLogger(__name__)

#: A bin forecast's probabilities must sum to 1 within this.
_SUM_TOL = 1e-3
#: Points processed at once by :meth:`Verifier.update` (bounds its temporary memory).
_CHUNK = 1 << 18


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
        self.bin_edges_mm = None if bin_edges_mm is None else validate_bin_edges(bin_edges_mm)
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
        w = check_weights(weight, n_shape).reshape(-1)
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
            check_probabilities(name, p)

        use = (w > 0) & np.isfinite(y)
        for p in probs:
            use &= np.isfinite(p).all(axis=0)
        if bins is not None and graf is not None:
            use &= np.isfinite(bins).all(axis=0)
            use &= np.isfinite(graf)
        index = np.flatnonzero(use)
        chunks = [index[i:i + _CHUNK] for i in range(0, index.size, _CHUNK)]
        if bins is not None:  # validate everything before accumulating anything
            for idx in chunks:
                pb = bins[:, idx]
                if pb.min() < -PROB_TOL or np.abs(pb.sum(axis=0, dtype=np.float64) - 1.0).max() > _SUM_TOL:
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
            self.rel_model[k].accumulate(p_model[k], events[k], w)
            self.rel_ref[k].accumulate(p_ref[k], events[k], w)
        if bins is not None and graf is not None and self.bin_edges_mm is not None:
            e = self.bin_edges_mm
            k_obs = bin_index(y, e)
            g = graf[idx].astype(np.float64)
            self.crps_sums += np.array([
                idx.size,
                w.sum(),
                crps_bins_from_index(bins[:, idx].astype(np.float64), e, k_obs) @ w,
                crps_onehot(bin_index(g, e), e, k_obs) @ w,
                np.abs(g - y) @ w,
            ])

    def merge(self, other: Verifier) -> Verifier:
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
            out[name] = np.stack([np.vstack([t.count.astype(np.float64)[None], t.sums]) for t in tables])
        return {k: np.array(v, copy=True) for k, v in out.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]]) -> Verifier:
        """Rebuild an accumulator saved with :meth:`to_arrays`."""
        edges = np.asarray(arrays["bin_edges_mm"])
        v = cls(np.asarray(arrays["thresholds_mm"]).tolist(), edges.tolist() if edges.size else None,
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
                t.sums[:] = rows[1:]
        return v

    # -- results --

    def threshold_scores(self, k: int) -> dict[str, Any]:
        """Scores of threshold ``k`` as Python numbers (NaN where undefined)."""
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
            row = {key: (to_plain(v) if isinstance(v, float) else v)
                   for key, v in self.threshold_scores(k).items()}
            row["reliability_curve_model"] = self.rel_model[k].as_dict()
            row["reliability_curve_ref"] = self.rel_ref[k].as_dict()
            per_threshold.append(row)
        crps = {key: (to_plain(v) if isinstance(v, float) else v)
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
            row = {**self.threshold_scores(k), **crps}
            rows.append({c: (to_plain(row[c]) if isinstance(row[c], float) else row[c])
                         for c in CSV_COLUMNS})
        return rows
