"""Fractions skill score (Roberts and Lean 2008), accumulated over many fields.

For a threshold ``t`` and an odd window width ``n``, the observed fraction at a point is
the share of the *valid* points of the window where MRMS reaches ``t`` (``obs >= t``,
:func:`pqpf.ordinal.reaches`); the forecast fraction is the mean over the same points of
``P(obs >= t)`` (a probability field) or of the 0/1 event ``amount >= t`` (raw GRAF, an
ensemble member). Missing data and the domain edge are treated alike, ``fraction =
box_sum(value * valid) / box_sum(valid)``, each box sum four look-ups in a summed-area
table (:mod:`pqpf.verify.neighbourhood`): O(1) per point at every width, over strips of
rows with a halo of half the widest window, so memory does not grow with the domain.
Every valid point of positive weight is scored at every width (no interior-only
trimming, which would drop 20 rows and columns on each side at 41 px).

Per source, threshold and width the accumulator keeps ``sum w Pf^2``, ``sum w Pf Po``
and ``sum w Po^2``, pooled over all fields (Mittermaier 2021); FBS, FSS and the useful
scale follow from them (:mod:`pqpf.verify.fss_sums`). Several *sources* (model
probabilities, raw GRAF, ensemble members, pooled) are scored in one pass.

**Member pairs** (``pairs=``): the members of an amount source are also scored against
one another, each in turn in the observation's place, pooled over the ``M (M - 1)``
ordered pairs: the dispersion FSS of Dey et al. (2014), what these members would score
against an observation indistinguishable from one of them. For members exchangeable
with the observation it equals, in expectation, their FSS against the observation;
higher means members closer to one another than to the observation (spatially
under-dispersive, or biased: a frequency bias lowers the FSS against the observation
but not among the members), lower means over-dispersive. With ``B_i`` a member's box
sum and ``q`` the point weight over the squared valid count, only ``sum_i B_i`` per point
is needed: ``sum_{i != j} q B_i^2 = (M - 1) sum_i q B_i^2`` (also the observation side)
and ``sum_{i != j} q B_i B_j = q (sum_i B_i)^2 - sum_i q B_i^2``.

References
----------
Roberts, N. M., and H. W. Lean (2008). Scale-selective verification of rainfall
accumulations from high-resolution forecasts of convective events. Mon. Wea. Rev.,
136, 78-97.
Dey, S. R. A., G. Leoncini, N. M. Roberts, R. S. Plant, and S. Migliorini (2014). A new
method for the characterization and verification of local spatial predictability for
convective-scale ensembles. Quart. J. Roy. Meteor. Soc., 140, 1747-1761.
Mittermaier, M. P. (2021). A "meta" analysis of the fractions skill score: the
limiting case and implications for aggregation. Mon. Wea. Rev., 149, 3491-3504.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.io.jsonio import to_plain
from pqpf.ordinal import reaches
from pqpf.verify.fss_sums import UsefulScale, fbs_sums, fss_from_sums, useful_scale
from pqpf.verify.neighbourhood import any_near, box_sums, check_width, dot, summed_area_table

__all__ = ["DEFAULT_WIDTHS_PX", "DEFAULT_THRESHOLDS_MM", "SOURCE_KINDS", "useful_scale", "UsefulScale",
           "FssAccumulator"]

logger = logging.getLogger(__name__)

#: Neighbourhood widths (grid points): odd, 1 to 41.
DEFAULT_WIDTHS_PX: tuple[int, ...] = tuple(range(1, 42, 2))
#: Thresholds (mm in the hour).
DEFAULT_THRESHOLDS_MM: tuple[float, ...] = (1.0, 5.0, 10.0)
#: ``"prob"``: P(obs >= t) at each threshold, shape (T, ny, nx); ``"amount"``: amount in
#: mm, shape (ny, nx) or (M, ny, nx) for M pooled members.
SOURCE_KINDS: tuple[str, ...] = ("prob", "amount")
#: Output rows per strip of summed-area tables (the halo is added to these), at most.
_STRIP_ROWS = 256
#: Memory for one strip's summed-area tables, bytes (the strip shrinks with many fields).
_TABLE_BYTES = 64 << 20
#: Output rows per block inside a strip (keeps the arithmetic in cache).
_BLOCK_ROWS = 16
#: Probabilities may exceed [0, 1] by this much (float32 rounding) before being refused.
_PROB_TOL = 1e-5


def _scoring_weight(weight: ArrayLike | None, use: NDArray[np.bool_]) -> NDArray[np.float64]:
    """The weight of each point in the sums: ``weight`` (default 1) where used, else 0."""
    if weight is None:
        return use.astype(np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != use.shape:
        raise ValueError(f"weight has shape {w.shape}, expected {use.shape}")
    wt = np.where(use, w, 0.0)
    if not np.all(np.isfinite(wt)) or np.any(wt < 0):
        raise ValueError("weights must be finite and >= 0 at the valid points")
    return wt


def _strip_rows(n_tables: int, width: int, halo: int) -> int:
    """Output rows per strip so that the strip's tables take about :data:`_TABLE_BYTES`."""
    rows = _TABLE_BYTES // (8 * n_tables * width) - 2 * halo
    return int(min(_STRIP_ROWS, max(_BLOCK_ROWS, rows // _BLOCK_ROWS * _BLOCK_ROWS)))


# ---- the accumulator ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """One forecast field of an update: a probability stack or one amount member."""

    source: int
    kind: str
    data: NDArray[Any]  # (T, ny, nx) probabilities or (ny, nx) amount (mm)

    def event_rows(self, k: int, threshold_mm: float, a: int, b: int) -> NDArray[Any]:
        """Rows ``a:b`` of the forecast event at threshold ``k``: probability or 0/1."""
        if self.kind == "prob":
            return self.data[k, a:b]
        return reaches(self.data[a:b], threshold_mm)


class FssAccumulator:
    """Streaming fractions skill score for several forecast sources at once.

    Parameters
    ----------
    sources : mapping of str to str
        Source name -> kind (:data:`SOURCE_KINDS`), e.g. ``{"model": "prob", "graf":
        "amount"}``. Every update gives a forecast for every source.
    thresholds_mm : sequence of float, length T
        Event thresholds (mm); events are ``amount >= t``. A ``"prob"`` source gives
        P(obs >= t) at these thresholds in this order.
    widths_px : sequence of int, length W
        Neighbourhood widths (grid points): odd, strictly increasing.
    grid_spacing_km : float, optional
        Nominal grid spacing, to report widths in km (the ground spacing of a Lambert
        grid is this over the map factor: 1 to 1.10 on the GRAF CONUS grid).
    pairs : sequence of str, optional
        Amount sources whose members are also scored against one another (the
        dispersion FSS, module docstring); results under ``result()["pairs"]``.

    Notes
    -----
    The state is fixed in size, ``(S, T, W, 3)`` float64 sums plus a few counters, so
    memory does not grow with the number of updates; :meth:`merge` adds accumulators
    built by parallel workers. One update of a 1308 x 1524 field costs O(S T W) per
    point (see the module docstring for the method).

    Examples
    --------
    >>> acc = FssAccumulator({"model": "prob", "graf": "amount"}, grid_spacing_km=4.0)
    >>> for case in cases:                                              # doctest: +SKIP
    ...     acc.update({"model": case.prob, "graf": case.graf_mm}, case.obs_mm, case.good)
    >>> acc.result()["sources"]["model"]["per_threshold"][0]["useful_width_km"]  # doctest: +SKIP
    """

    def __init__(
        self,
        sources: Mapping[str, str],
        thresholds_mm: Sequence[float] = DEFAULT_THRESHOLDS_MM,
        widths_px: Sequence[int] = DEFAULT_WIDTHS_PX,
        grid_spacing_km: float | None = None,
        pairs: Sequence[str] = (),
    ) -> None:
        if not sources:
            raise ValueError("at least one forecast source is needed")
        bad = {k: v for k, v in sources.items() if v not in SOURCE_KINDS}
        if bad:
            raise ValueError(f"unknown source kinds {bad}; valid kinds: {', '.join(SOURCE_KINDS)}")
        t = np.asarray(thresholds_mm, dtype=np.float64).ravel()
        if t.size == 0 or not np.all(np.isfinite(t)):
            raise ValueError(f"thresholds_mm must be non-empty and finite, got {thresholds_mm!r}")
        for w in widths_px:
            check_width(w)
        widths = np.asarray(widths_px, dtype=np.int64).ravel()
        if widths.size == 0 or np.any(np.diff(widths) <= 0):
            raise ValueError(f"widths_px must be non-empty and strictly increasing, got {widths_px!r}")
        if grid_spacing_km is not None and not grid_spacing_km > 0:
            raise ValueError(f"grid_spacing_km must be positive, got {grid_spacing_km}")
        self.source_names: tuple[str, ...] = tuple(sources)
        self.source_kinds: tuple[str, ...] = tuple(sources[name] for name in self.source_names)
        not_amounts = [name for name in pairs if sources.get(name) != "amount"]
        if not_amounts or len(set(pairs)) != len(pairs):
            raise ValueError(f"pairs must name distinct amount sources, got {list(pairs)}")
        self.pair_names: tuple[str, ...] = tuple(pairs)
        #: source index -> index into :attr:`pair_sums`
        self._pair_of = {self.source_names.index(name): p for p, name in enumerate(self.pair_names)}
        self.thresholds_mm = t
        self.widths_px = widths
        self.grid_spacing_km = grid_spacing_km
        #: [s, t, w] = (sum w Pf^2, sum w Pf Po, sum w Po^2) over all fields of source s.
        self.sums = np.zeros((len(self.source_names), t.size, widths.size, 3))
        #: Scored weight summed over the fields of each source (members count each).
        self.field_weight = np.zeros(len(self.source_names))
        #: [p, t, w] = the same sums over the ordered member pairs of pair source p.
        self.pair_sums = np.zeros((len(self.pair_names), t.size, widths.size, 3))
        #: Scored weight summed over the ordered member pairs of each pair source.
        self.pair_weight = np.zeros(len(self.pair_names))
        #: (sum w, sum w o_1, ..., sum w o_T) over the scored points of every update.
        self.obs_sums = np.zeros(t.size + 1)
        #: updates, points scored, points given as valid but dropped for a NaN.
        self.counters = np.zeros(3, dtype=np.int64)

    # -- accumulation --

    def _fields(self, forecasts: Mapping[str, ArrayLike], shape: tuple[int, ...]) -> list[_Field]:
        if set(forecasts) != set(self.source_names):
            raise ValueError(f"forecasts must be given for exactly the sources {list(self.source_names)}, "
                             f"got {sorted(forecasts)}")
        fields = []
        for s, (name, kind) in enumerate(zip(self.source_names, self.source_kinds, strict=True)):
            data = np.asarray(forecasts[name])
            if kind == "prob":
                if data.shape != (self.thresholds_mm.size, *shape):
                    raise ValueError(f"{name}: probabilities must have shape "
                                     f"{(self.thresholds_mm.size, *shape)}, got {data.shape}")
                finite = data[np.isfinite(data)]
                if finite.size and (finite.min() < -_PROB_TOL or finite.max() > 1 + _PROB_TOL):
                    raise ValueError(f"{name}: probabilities must lie in [0, 1], got "
                                     f"[{finite.min()}, {finite.max()}]")
                fields.append(_Field(s, kind, data))
                continue
            if data.shape == shape:
                data = data[None]
            if data.ndim != 3 or data.shape[1:] != shape:
                raise ValueError(f"{name}: amounts must have shape {shape} or (M, {shape[0]}, {shape[1]}), "
                                 f"got {data.shape}")
            fields.extend(_Field(s, kind, member) for member in data)
        return fields

    def update(
        self,
        forecasts: Mapping[str, ArrayLike],
        obs_mm: ArrayLike,
        valid: ArrayLike | None = None,
        weight: ArrayLike | None = None,
    ) -> int:
        """Add one field (e.g. one init's hour) of every source.

        Parameters
        ----------
        forecasts : mapping of str to array
            Per source: probabilities, shape (T, ny, nx), in [0, 1]; or amounts (mm),
            shape (ny, nx) or (M, ny, nx).
        obs_mm : array of float, shape (ny, nx)
            Observed (MRMS) amount, mm; NaN where missing.
        valid : array of bool, shape (ny, nx), optional
            Points whose observation may be used (good MRMS quality); default all.
            Points where the observation or any forecast is NaN are dropped as well,
            for every source alike.
        weight : array of float, shape (ny, nx), optional
            Non-negative scoring weight (e.g. true-area weights); default 1. Valid
            points of weight 0 enter the neighbourhood means but are not scored.

        Returns
        -------
        int
            Number of points scored.
        """
        obs = np.asarray(obs_mm)
        if obs.ndim != 2:
            raise ValueError(f"obs_mm must be 2-D (ny, nx), got shape {obs.shape}")
        fields = self._fields(forecasts, obs.shape)
        use = np.ones(obs.shape, dtype=bool)
        if valid is not None:
            use = np.asarray(valid).astype(bool)
            if use.shape != obs.shape:
                raise ValueError(f"valid has shape {use.shape}, expected {obs.shape}")
        given = int(np.count_nonzero(use))
        use &= np.isfinite(obs)
        for f in fields:
            use &= np.isfinite(f.data).all(axis=0) if f.data.ndim == 3 else np.isfinite(f.data)
        wt = _scoring_weight(weight, use)
        n_scored = int(np.count_nonzero(wt > 0))
        self.counters += np.array([1, n_scored, given - int(np.count_nonzero(use))])
        wsum = float(wt.sum())
        self.obs_sums[0] += wsum
        for k, t in enumerate(self.thresholds_mm):
            self.obs_sums[1 + k] += float(wt[reaches(obs, t)].sum())
        for f in fields:
            self.field_weight[f.source] += wsum
        for s, p in self._pair_of.items():
            m = sum(f.source == s for f in fields)
            self.pair_weight[p] += m * (m - 1) * wsum
        if n_scored:
            self._accumulate(fields, obs, use, wt)
        return n_scored

    def _accumulate(self, fields: list[_Field], obs: NDArray[Any], use: NDArray[np.bool_],
                    wt: NDArray[np.float64]) -> None:
        """Add the sums of every strip of rows to :attr:`sums`."""
        halo = int(self.widths_px[-1]) // 2
        ny, nx = obs.shape
        n_tables = 1 + self.thresholds_mm.size * (1 + len(fields))
        step = _strip_rows(n_tables, nx + 2 * halo + 1, halo)
        for j0 in range(0, ny, step):
            j1 = min(ny, j0 + step)
            if not wt[j0:j1].any():
                continue
            a, b = max(0, j0 - halo), min(ny, j1 + halo)
            top, bottom = halo - (j0 - a), halo - (b - j1)
            use_rows = use[a:b]
            sat_n = summed_area_table(use_rows, None, top, bottom, halo)
            sat_o = [summed_area_table(reaches(obs[a:b], t), use_rows, top, bottom, halo) for t in self.thresholds_mm]
            sat_f = [[summed_area_table(f.event_rows(k, float(t), a, b), use_rows, top, bottom, halo) for f in fields]
                     for k, t in enumerate(self.thresholds_mm)]
            self._strip_sums(sat_n, sat_o, sat_f, [f.source for f in fields], wt[j0:j1], halo)

    def _strip_sums(self, sat_n: NDArray[np.float64], sat_o: list[NDArray[np.float64]],
                    sat_f: list[list[NDArray[np.float64]]], src: list[int], wt_strip: NDArray[np.float64],
                    halo: int) -> None:
        """Sums of one strip, every width and threshold, in blocks of rows.

        A block is trimmed to the columns that hold scored points. With ``N`` the valid
        count, ``Bf``/``Bo`` the box sums of forecast and observed events and
        ``q = w / N^2``: ``w Pf^2 = q Bf^2``, ``w Pf Po = q Bf Bo``, ``w Po^2 = q Bo^2``.
        A table with no event within the widest window of the block is skipped there.
        Pair sources (module docstring) add up their members' box sums per point.
        """
        n_members = np.bincount(np.asarray(src, dtype=np.int64), minlength=len(self.source_names))
        pair_of = [self._pair_of.get(s) for s in src]
        for r0 in range(0, wt_strip.shape[0], _BLOCK_ROWS):
            rs = (r0, min(wt_strip.shape[0], r0 + _BLOCK_ROWS))
            cols = np.flatnonzero(wt_strip[rs[0]:rs[1]].any(axis=0))
            if not cols.size:
                continue
            cs = (int(cols[0]), int(cols[-1]) + 1)
            wt = wt_strip[rs[0]:rs[1], cs[0]:cs[1]]
            live_o = [any_near(sat, halo, rs, cs) for sat in sat_o]
            live_f = [[any_near(sat, halo, rs, cs) for sat in per_t] for per_t in sat_f]
            rows = np.empty((wt.shape[0], wt.shape[1] + 2 * halo + 1))
            n, q, qb = (np.empty(wt.shape) for _ in range(3))
            pair = np.empty((2, *wt.shape))  # observed and forecast box sums, side by side
            member_sum = np.empty((len(self.pair_names), *wt.shape))  # sum of B_i per pair source
            member_ff = np.empty(len(self.pair_names))  # sum of q B_i^2 per pair source
            for i, width in enumerate(self.widths_px):
                half = int(width) // 2
                box_sums(sat_n, half, halo, rs, cs, n, rows)
                np.multiply(n, n, out=n)
                np.maximum(n, 1.0, out=n)  # scored points have N >= 1; elsewhere q = 0 / 1
                np.divide(wt, n, out=q)
                for k in range(len(sat_o)):
                    if live_o[k]:
                        box_sums(sat_o[k], half, halo, rs, cs, pair[0], rows)
                        oo = dot(np.multiply(q, pair[0], out=qb), pair[0])
                    else:
                        oo = 0.0
                        pair[0] = 0.0
                    member_sum[...] = 0.0
                    member_ff[...] = 0.0
                    for s, p, sat, live in zip(src, pair_of, sat_f[k], live_f[k], strict=True):
                        if live:
                            box_sums(sat, half, halo, rs, cs, pair[1], rows)
                            fo, ff = np.einsum("ij,kij->k", np.multiply(q, pair[1], out=qb), pair)
                            self.sums[s, k, i] += (ff, fo, oo)
                            if p is not None:
                                member_sum[p] += pair[1]
                                member_ff[p] += ff
                        else:
                            self.sums[s, k, i, 2] += oo
                    for s, p in self._pair_of.items():
                        own = (n_members[s] - 1) * member_ff[p]
                        cross = dot(np.multiply(q, member_sum[p], out=qb), member_sum[p]) - member_ff[p]
                        self.pair_sums[p, k, i] += (own, cross, own)

    # -- combining and saving --

    def merge(self, other: FssAccumulator) -> FssAccumulator:
        """Add the sums of another accumulator (same sources, thresholds, widths); returns self."""
        same = (self.source_names == other.source_names and self.source_kinds == other.source_kinds
                and self.pair_names == other.pair_names
                and np.array_equal(self.thresholds_mm, other.thresholds_mm)
                and np.array_equal(self.widths_px, other.widths_px))
        if not same:
            raise ValueError("cannot merge FSS accumulators with different sources, pairs, thresholds or widths")
        self.sums += other.sums
        self.field_weight += other.field_weight
        self.pair_sums += other.pair_sums
        self.pair_weight += other.pair_weight
        self.obs_sums += other.obs_sums
        self.counters += other.counters
        return self

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The whole state as plain arrays (for ``np.savez``); see :meth:`from_arrays`."""
        return {
            "source_names": np.array(self.source_names, dtype=str),
            "source_kinds": np.array(self.source_kinds, dtype=str),
            "pair_names": np.array(self.pair_names, dtype=str),
            "thresholds_mm": self.thresholds_mm.copy(),
            "widths_px": self.widths_px.copy(),
            "grid_spacing_km": np.array(np.nan if self.grid_spacing_km is None else self.grid_spacing_km),
            "sums": self.sums.copy(),
            "field_weight": self.field_weight.copy(),
            "pair_sums": self.pair_sums.copy(),
            "pair_weight": self.pair_weight.copy(),
            "obs_sums": self.obs_sums.copy(),
            "counters": self.counters.copy(),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> FssAccumulator:
        """Rebuild an accumulator saved with :meth:`to_arrays` (one saved before pairs existed has none)."""
        spacing = float(arrays["grid_spacing_km"])
        names = [str(s) for s in arrays["source_names"]]
        pairs = [str(s) for s in arrays["pair_names"]] if "pair_names" in arrays else []
        acc = cls(dict(zip(names, (str(k) for k in arrays["source_kinds"]), strict=True)),
                  arrays["thresholds_mm"].tolist(), arrays["widths_px"].tolist(),
                  None if math.isnan(spacing) else spacing, pairs=pairs)
        state = ("sums", "field_weight", "obs_sums", "counters") + (("pair_sums", "pair_weight") if pairs else ())
        for name in state:
            target = getattr(acc, name)
            if np.shape(arrays[name]) != target.shape:
                raise ValueError(f"{name} has shape {np.shape(arrays[name])}, expected {target.shape}")
            target[...] = arrays[name]
        return acc

    def state_nbytes(self) -> int:
        """Bytes of the state arrays (constant in the number of updates)."""
        return int(sum(a.nbytes for a in (self.thresholds_mm, self.widths_px, self.sums, self.field_weight,
                                          self.pair_sums, self.pair_weight, self.obs_sums, self.counters)))

    # -- results --

    def base_rate(self) -> NDArray[np.float64]:
        """Observed event frequency ``f0`` per threshold over the scored points, shape (T,)."""
        w = self.obs_sums[0]
        return self.obs_sums[1:] / w if w > 0 else np.full(self.thresholds_mm.size, np.nan)

    def fss(self) -> NDArray[np.float64]:
        """FSS per source, threshold and width, shape (S, T, W); NaN where undefined.

        Undefined means ``FBS_worst = 0``: no event forecast or observed anywhere at
        that threshold.
        """
        return fss_from_sums(self.sums)

    def pair_fss(self) -> NDArray[np.float64]:
        """FSS of the members of each pair source against one another, shape (P, T, W)."""
        return fss_from_sums(self.pair_sums)

    def _fbs_sums(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return fbs_sums(self.sums)

    def _km(self, px: float | None) -> float | None:
        return None if px is None or self.grid_spacing_km is None else px * self.grid_spacing_km

    def result(self) -> dict[str, Any]:
        """All scores as a JSON-ready dict (NaN becomes None).

        Keys: ``thresholds_mm``, ``widths_px``, ``widths_km`` (None without a grid
        spacing), ``n_updates``, ``n_points``, ``n_excluded_missing``, ``base_rate`` (per
        threshold) and ``sources``: name -> ``{"kind", "per_threshold": [...]}`` with, per
        threshold, ``threshold_mm, base_rate, fss_useful, fss`` (list over widths),
        ``fbs`` and ``fbs_worst`` (per unit scored weight), ``useful_width_px`` /
        ``useful_width_km`` (the first listed width reaching ``fss_useful``) and
        ``useful_width_interp_px`` / ``useful_width_interp_km`` (linear interpolation);
        ``pairs``: pair source name -> ``{"per_threshold": [...]}`` with ``threshold_mm``,
        ``fss``, ``fbs`` and ``fbs_worst`` (per unit weight of an ordered member pair).
        """
        fss = self.fss()
        fbs, worst = self._fbs_sums()
        base = self.base_rate()
        sources: dict[str, Any] = {}
        for s, (name, kind) in enumerate(zip(self.source_names, self.source_kinds, strict=True)):
            wsum = self.field_weight[s]
            rows = []
            for k, t in enumerate(self.thresholds_mm):
                u = useful_scale(self.widths_px.tolist(), fss[s, k], float(base[k]))
                rows.append({
                    "threshold_mm": float(t),
                    "base_rate": to_plain(base[k]),
                    "fss_useful": to_plain(u.fss_useful),
                    "fss": [to_plain(v) for v in fss[s, k]],
                    "fbs": [to_plain(v / wsum) if wsum > 0 else None for v in fbs[s, k]],
                    "fbs_worst": [to_plain(v / wsum) if wsum > 0 else None for v in worst[s, k]],
                    "useful_width_px": u.first_px,
                    "useful_width_km": self._km(u.first_px),
                    "useful_width_interp_px": u.interp_px,
                    "useful_width_interp_km": self._km(u.interp_px),
                })
            sources[name] = {"kind": kind, "per_threshold": rows}
        pairs: dict[str, Any] = {}
        pair_fss = self.pair_fss()
        pair_fbs, pair_worst = fbs_sums(self.pair_sums)
        for p, name in enumerate(self.pair_names):
            wsum = self.pair_weight[p]
            pairs[name] = {"per_threshold": [{
                "threshold_mm": float(t),
                "fss": [to_plain(v) for v in pair_fss[p, k]],
                "fbs": [to_plain(v / wsum) if wsum > 0 else None for v in pair_fbs[p, k]],
                "fbs_worst": [to_plain(v / wsum) if wsum > 0 else None for v in pair_worst[p, k]],
            } for k, t in enumerate(self.thresholds_mm)]}
        return {
            "thresholds_mm": self.thresholds_mm.tolist(),
            "widths_px": self.widths_px.tolist(),
            "widths_km": [self._km(float(w)) for w in self.widths_px],
            "n_updates": int(self.counters[0]),
            "n_points": int(self.counters[1]),
            "n_excluded_missing": int(self.counters[2]),
            "base_rate": [to_plain(v) for v in base],
            "sources": sources,
            "pairs": pairs,
        }
