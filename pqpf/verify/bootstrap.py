"""Block-bootstrap confidence intervals of skill scores, resampling whole init dates.

Grid points of one forecast are strongly correlated, and so are the inits of one day
(00 and 12 UTC share weather systems), so the sampling unit is the init *date*: every
score's sums are kept per date (:class:`DailySums`, a few numbers per date), dates are
drawn with replacement, and each replicate's skill is recomputed from the resampled
*sums* (a ratio of sums, exactly as the point estimate is computed, never a mean of
per-date ratios). The interval is the percentile interval of the replicates (Efron and
Tibshirani 1993, ch. 13), 90 % by default: a skill difference of +0.02 whose interval
straddles zero is noise.

Serial correlation between consecutive days (a slow-moving system) can be kept by
resampling blocks of ``block_days`` consecutive dates (circular block bootstrap, Politis
and Romano 1992; Kunsch 1989); consecutive means consecutive in the list of dates that
have data. The default, one-day blocks, assumes days are independent.

A skill is a function of named sums, vectorised over replicates (:class:`RatioSkill`,
:class:`ClimatologySkill`, :class:`FunctionSkill`), so the same machinery serves the
Brier and CRPS skills of the U-Net, the FSS (``1 - FBS / FBS_worst``) and the ensemble
scores (fair CRPS skill, spread-skill ratio from sums of variances and squared errors).

References
----------
Efron, B., and R. J. Tibshirani (1993). An Introduction to the Bootstrap. Chapman & Hall.
Kunsch, H. R. (1989). The jackknife and the bootstrap for general stationary
observations. Ann. Statist., 17, 1217-1241.
Politis, D. N., and J. P. Romano (1992). A circular block-resampling procedure for
stationary data. In Exploring the Limits of Bootstrap, Wiley, 263-270.
Wilks, D. S. (2011). Statistical Methods in the Atmospheric Sciences, 3rd ed., 5.3.5.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "safe_ratio",
    "DailySums",
    "Skill",
    "RatioSkill",
    "ClimatologySkill",
    "FunctionSkill",
    "Interval",
    "resample_counts",
    "bootstrap_skills",
    "sum_name",
    "brier_crps_names",
    "brier_crps_day_sums",
    "brier_crps_skills",
    "reliability_names",
    "reliability_sum_name",
    "reliability_day_sums",
    "reliability_skills",
]

logger = logging.getLogger(__name__)

#: Named sums, each an array over replicates (or a 0-d array for the point estimate).
Sums = Mapping[str, NDArray[np.float64]]


# ---- per-date sums -------------------------------------------------------------------------


class DailySums:
    """Named sums accumulated per init date.

    Parameters
    ----------
    names : sequence of str
        Names of the sums (e.g. :func:`brier_crps_names`).

    Notes
    -----
    Memory is ``len(names)`` float64 per date: a season of 90 dates with 6 thresholds
    is a few kB. Dates are any sortable strings, e.g. ``"20251204"``.
    """

    def __init__(self, names: Sequence[str]) -> None:
        if not names or len(set(names)) != len(names):
            raise ValueError(f"names must be non-empty and unique, got {list(names)}")
        self.names: tuple[str, ...] = tuple(names)
        self._index = {name: i for i, name in enumerate(self.names)}
        self._rows: dict[str, NDArray[np.float64]] = {}

    def add(self, day: str, values: Mapping[str, float] | ArrayLike) -> None:
        """Add sums to ``day``'s row: a mapping by name (missing names add 0, unknown
        names are refused) or an array in the order of :attr:`names`."""
        row = self._rows.setdefault(str(day), np.zeros(len(self.names)))
        if isinstance(values, Mapping):
            unknown = set(values) - set(self._index)
            if unknown:
                raise ValueError(f"unknown sums {sorted(unknown)}; known: {list(self.names)}")
            for name, value in values.items():
                row[self._index[name]] += float(value)
            return
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (len(self.names),):
            raise ValueError(f"values must have shape ({len(self.names)},), got {v.shape}")
        row += v

    def merge(self, other: DailySums) -> DailySums:
        """Add another accumulator's rows (same names) day by day; returns self."""
        if other.names != self.names:
            raise ValueError("cannot merge DailySums with different names")
        for day, row in other._rows.items():
            self.add(day, row)
        return self

    @property
    def days(self) -> tuple[str, ...]:
        """The dates with data, sorted."""
        return tuple(sorted(self._rows))

    def matrix(self) -> NDArray[np.float64]:
        """Sums per date, shape (n_days, n_names), rows in the order of :attr:`days`."""
        if not self._rows:
            return np.zeros((0, len(self.names)))
        return np.stack([self._rows[d] for d in self.days])

    def totals(self) -> dict[str, float]:
        """Sums over all dates by name."""
        return dict(zip(self.names, self.matrix().sum(axis=0).tolist(), strict=True))

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The state as plain arrays (for ``np.savez``); see :meth:`from_arrays`."""
        return {"names": np.array(self.names, dtype=str), "days": np.array(self.days, dtype=str),
                "sums": self.matrix()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> DailySums:
        """Rebuild an accumulator saved with :meth:`to_arrays`."""
        out = cls([str(n) for n in arrays["names"]])
        for day, row in zip(arrays["days"], np.asarray(arrays["sums"]), strict=True):
            out.add(str(day), row)
        return out


# ---- skills as functions of sums -----------------------------------------------------------


class Skill(Protocol):
    """A named skill computed from named sums, vectorised over replicates."""

    @property
    def name(self) -> str: ...

    def __call__(self, sums: Sums) -> NDArray[np.float64]: ...


def safe_ratio(num: Any, den: Any) -> NDArray[np.float64]:
    """``num / den`` where ``den > 0``, NaN elsewhere, without warnings (arrays over
    bootstrap replicates or scalars)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


@dataclass(frozen=True)
class RatioSkill:
    """``1 - sum[score] / sum[reference]``: Brier skill against a reference forecast
    (both Brier scores share the weight sum), CRPS skill, FSS (``1 - FBS / FBS_worst``).
    NaN where the reference sum is 0."""

    name: str
    score: str
    reference: str

    def __call__(self, sums: Sums) -> NDArray[np.float64]:
        return 1.0 - safe_ratio(np.asarray(sums[self.score]), np.asarray(sums[self.reference]))


@dataclass(frozen=True)
class ClimatologySkill:
    """Brier skill against the sample climatology of the (resampled) period:
    ``1 - (sse / W) / (obar (1 - obar))`` with ``obar = sum w o / W``. NaN when no
    event or only events were observed."""

    name: str
    sse: str
    weight: str
    events: str

    def __call__(self, sums: Sums) -> NDArray[np.float64]:
        w = np.asarray(sums[self.weight])
        obar = safe_ratio(np.asarray(sums[self.events]), w)
        return 1.0 - safe_ratio(safe_ratio(np.asarray(sums[self.sse]), w), obar * (1.0 - obar))


@dataclass(frozen=True)
class FunctionSkill:
    """Any other function of the sums (e.g. a spread-skill ratio
    ``sqrt(sum var (M+1)/M / sum sq_err)``); must accept arrays over replicates."""

    name: str
    function: Callable[[Sums], NDArray[np.float64]]

    def __call__(self, sums: Sums) -> NDArray[np.float64]:
        return np.asarray(self.function(sums), dtype=np.float64)


# ---- resampling ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A skill's point estimate and percentile interval.

    ``estimate`` comes from the sums over all dates; ``low``/``high`` are the
    ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the replicates that are finite
    (``n_valid`` of ``n_replicates``); NaN when fewer than half are.
    """

    estimate: float
    low: float
    high: float
    level: float
    n_days: int
    n_replicates: int
    n_valid: int

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-ready (NaN becomes None)."""
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None
        return {"estimate": num(self.estimate), "low": num(self.low), "high": num(self.high),
                "level": self.level, "n_days": self.n_days, "n_replicates": self.n_replicates,
                "n_valid": self.n_valid}


def resample_counts(n_days: int, n_replicates: int, rng: np.random.Generator,
                    block_days: int = 1) -> NDArray[np.int64]:
    """How often each date is drawn in each replicate.

    Parameters
    ----------
    n_days : int
        Number of dates (>= 1).
    n_replicates : int
        Number of bootstrap replicates.
    rng : numpy Generator
        Source of randomness (seeded by the caller).
    block_days : int
        Length of the blocks of consecutive dates (circular); 1 draws single dates.

    Returns
    -------
    int64 array, shape (n_replicates, n_days)
        Each row sums to ``n_days``.
    """
    if n_days < 1 or n_replicates < 1:
        raise ValueError(f"need at least one date and one replicate, got {n_days} and {n_replicates}")
    if block_days < 1:
        raise ValueError(f"block_days must be >= 1, got {block_days}")
    length = min(block_days, n_days)
    n_blocks = -(-n_days // length)
    starts = rng.integers(0, n_days, size=(n_replicates, n_blocks))
    idx = ((starts[:, :, None] + np.arange(length)) % n_days).reshape(n_replicates, -1)[:, :n_days]
    flat = (idx + n_days * np.arange(n_replicates)[:, None]).ravel()
    return np.bincount(flat, minlength=n_replicates * n_days).reshape(n_replicates, n_days)


def bootstrap_skills(daily: DailySums, skills: Sequence[Skill], n_replicates: int = 1000, seed: int = 0,
                     level: float = 0.90, block_days: int = 1) -> dict[str, Interval]:
    """Point estimates and block-bootstrap percentile intervals of skills.

    Parameters
    ----------
    daily : DailySums
        Per-date sums holding every name the skills use.
    skills : sequence of Skill
        The skills, each a function of the (resampled) sums.
    n_replicates : int
        Bootstrap replicates (1000 gives the 5 % and 95 % quantiles to about +-0.01 in
        probability).
    seed : int
        Seed of the resampling: the same seed and data give the same intervals.
    level : float
        Coverage of the interval, in (0, 1).
    block_days : int
        Dates per block (see :func:`resample_counts`).

    Returns
    -------
    dict of str to Interval
        By skill name. Every skill sees the same replicates, so intervals of related
        skills are consistent.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    table = daily.matrix()
    if table.shape[0] == 0:
        raise ValueError("no dates to resample")
    counts = resample_counts(table.shape[0], n_replicates, np.random.default_rng(seed), block_days)
    replicated = counts.astype(np.float64) @ table  # (R, n_names): resampled sums
    total = table.sum(axis=0)
    point = {name: total[i] for i, name in enumerate(daily.names)}
    resampled = {name: replicated[:, i] for i, name in enumerate(daily.names)}
    q = 100.0 * np.array([(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    out = {}
    for skill in skills:
        estimate = float(np.asarray(skill(point)))
        values = np.asarray(skill(resampled), dtype=np.float64)
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, q) if 2 * finite.size >= n_replicates else (math.nan, math.nan)
        out[skill.name] = Interval(estimate, float(low), float(high), level, table.shape[0], n_replicates,
                                   int(finite.size))
    logger.debug("bootstrap: %d dates, %d replicates, %d skills", table.shape[0], n_replicates, len(skills))
    return out


# ---- the U-Net verification's Brier and CRPS skills ---------------------------------------------

#: Per-threshold sums the Brier skills need, named ``{kind}@{threshold}mm``.
_BRIER_KINDS = ("weight", "sum_wo", "sse_model", "sse_ref", "sse_raw")
#: CRPS sums (threshold-independent).
_CRPS_NAMES = ("crps_weight", "crps_model", "crps_raw_binned")


def sum_name(kind: str, threshold_mm: float) -> str:
    """The name of a per-threshold sum, e.g. ``sum_name("sse_model", 2.5) == "sse_model@2.5mm"``."""
    return f"{kind}@{threshold_mm:g}mm"


def brier_crps_names(thresholds_mm: Sequence[float]) -> list[str]:
    """Names of the per-date sums behind every skill the verification table prints."""
    return [sum_name(k, t) for t in thresholds_mm for k in _BRIER_KINDS] + list(_CRPS_NAMES)


def brier_crps_day_sums(threshold_sums: ArrayLike, crps_sums: ArrayLike,
                        thresholds_mm: Sequence[float]) -> dict[str, float]:
    """Named sums from one accumulator's arrays (the Verifier layout).

    Parameters
    ----------
    threshold_sums : array, shape (6, T)
        Rows ``n, weight, sum_wo, sse_model, sse_ref, sse_raw`` (``Verifier.sums``).
    crps_sums : array, shape (5,)
        ``n, weight, model, raw_binned, raw_mae`` (``Verifier.crps_sums``).
    thresholds_mm : sequence of float, length T

    Returns
    -------
    dict
        :func:`brier_crps_names` -> value, for :meth:`DailySums.add`.
    """
    s = np.asarray(threshold_sums, dtype=np.float64)
    c = np.asarray(crps_sums, dtype=np.float64)
    if s.shape != (6, len(thresholds_mm)) or c.shape != (5,):
        raise ValueError(f"expected sums of shape (6, {len(thresholds_mm)}) and (5,), got {s.shape} and {c.shape}")
    out = {sum_name(kind, t): float(s[1 + r, k]) for k, t in enumerate(thresholds_mm)
           for r, kind in enumerate(_BRIER_KINDS)}
    out.update(dict(zip(_CRPS_NAMES, c[1:4].tolist(), strict=True)))
    return out


def brier_crps_skills(thresholds_mm: Sequence[float]) -> list[Skill]:
    """``bss_vs_ref@{t}mm``, ``bss_vs_clim@{t}mm`` per threshold and ``crpss_vs_raw_binned``:
    the skills ``verify_resunet.py`` prints, defined as the Verifier defines them."""
    skills: list[Skill] = []
    for t in thresholds_mm:
        skills.append(RatioSkill(sum_name("bss_vs_ref", t), sum_name("sse_model", t), sum_name("sse_ref", t)))
        skills.append(ClimatologySkill(sum_name("bss_vs_clim", t), sum_name("sse_model", t),
                                       sum_name("weight", t), sum_name("sum_wo", t)))
    skills.append(RatioSkill("crpss_vs_raw_binned", "crps_model", "crps_raw_binned"))
    return skills


# ---- reliability diagrams ------------------------------------------------------------------

_REL_KINDS = ("rel_w", "rel_wp", "rel_wo")


def reliability_sum_name(kind: str, threshold_mm: float, b: int) -> str:
    """``rel_w@1mm@b3``-style names of the per-bin sums and skills."""
    return f"{sum_name(kind, threshold_mm)}@b{b}"


def reliability_names(thresholds_mm: Sequence[float], n_bins: int) -> list[str]:
    """Names of the per-date sums of every probability bin's weight, weighted forecast and
    weighted events (``rel_w@1mm@b3``, ``rel_wp@...``, ``rel_wo@...``)."""
    return [reliability_sum_name(kind, t, b) for t in thresholds_mm for b in range(n_bins) for kind in _REL_KINDS]


def reliability_day_sums(tables: Sequence[ArrayLike], thresholds_mm: Sequence[float]) -> dict[str, float]:
    """Named sums from one date's reliability tables.

    Parameters
    ----------
    tables : sequence of arrays, one per threshold, shape (>= 3, B)
        ``ReliabilityTable.sums``: rows ``weight, sum_wp, sum_wo, ...`` per probability bin.
    thresholds_mm : sequence of float, same length
    """
    if len(tables) != len(thresholds_mm):
        raise ValueError(f"{len(tables)} reliability tables for {len(thresholds_mm)} thresholds")
    out = {}
    for table, t in zip(tables, thresholds_mm, strict=True):
        sums = np.asarray(table, dtype=np.float64)
        for b in range(sums.shape[1]):
            for r, kind in enumerate(_REL_KINDS):
                out[reliability_sum_name(kind, t, b)] = float(sums[r, b])
    return out


def reliability_skills(thresholds_mm: Sequence[float], n_bins: int) -> list[Skill]:
    """Per threshold and probability bin: ``observed_frequency@{t}mm@b{i}`` and
    ``reliability_gap@{t}mm@b{i}`` (observed frequency minus mean forecast), each a ratio
    of sums recomputed per replicate, so their intervals say how far a bin's departure
    from the diagonal is sampling noise of the init dates."""
    skills: list[Skill] = []
    for t in thresholds_mm:
        for b in range(n_bins):
            w, wp, wo = (reliability_sum_name(kind, t, b) for kind in _REL_KINDS)
            skills.append(FunctionSkill(reliability_sum_name("observed_frequency", t, b), _ratio_of(wo, w)))
            skills.append(FunctionSkill(reliability_sum_name("reliability_gap", t, b), _gap_of(wo, wp, w)))
    return skills


def _ratio_of(num: str, den: str) -> Callable[[Sums], NDArray[np.float64]]:
    def ratio(sums: Sums) -> NDArray[np.float64]:
        return safe_ratio(np.asarray(sums[num]), np.asarray(sums[den]))
    return ratio


def _gap_of(wo: str, wp: str, w: str) -> Callable[[Sums], NDArray[np.float64]]:
    def gap(sums: Sums) -> NDArray[np.float64]:
        return safe_ratio(np.asarray(sums[wo]) - np.asarray(sums[wp]), np.asarray(sums[w]))
    return gap
