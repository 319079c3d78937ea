"""Ensemble verification, accumulated streaming: fixed-size sums that merge.

Arrays in, numbers out. Every accumulator takes members ``(M, ...)``, the observation
``(...)`` and optionally a ``mask`` (True where MRMS is present and of good quality, e.g.
:func:`pqpf.quality.good_quality_mask`) and non-negative ``weight`` (e.g.
:func:`pqpf.verify.area.area_weights`). A point counts only where the mask is
True, the weight positive, the observation and every member finite. Each accumulator
keeps a few float64 sums whatever the number of fields, ``merge`` adds two of them
(parallel workers), and ``to_arrays``/``from_arrays`` move them through files.

Scores
------
* Fair CRPS (Ferro 2014), for M >= 2 members ``x_i`` and observation ``y``:
  ``mean_i |x_i - y| - sum_ij |x_i - x_j| / (2 M (M - 1))``, the CRPS an ensemble of
  M members drawn from the forecast distribution has in expectation as M -> inf. The
  usual ensemble CRPS (``properscoring.crps_ensemble``) has ``2 M^2`` instead; the pair
  sum is ``2 sum_i (2i - M - 1) x_(i)`` over the sorted members.
* Like-for-like with the U-Net (:class:`EnsembleCRPS`): the U-Net's CRPS on UNBINNED
  amounts from its continuous distribution (:func:`crps_binned_continuous`: piecewise-
  linear CDF in the closed bins, exponential tail in the open last bin, the first bin a
  point mass at 0 or uniform), in closed form per bin, at exactly the points and
  weights of the ensemble's fair CRPS. Both are then CRPS (mm) of the same
  observations; the fair CRPS removes the ensemble's finite-M penalty, so an
  ensemble sampled from the U-Net's own distribution scores the U-Net's CRPS in
  expectation. (The existing binned CRPS moves amounts to bin lower edges and is not
  comparable with either.)
* Spread-skill ratio (Fortin et al. 2014): ``sqrt((M+1)/M * mean(s^2)) / sqrt(mean((xbar -
  y)^2))`` with ``s^2`` the unbiased member variance; 1 for an ensemble whose members
  and observation are exchangeable, below 1 when under-dispersive.
* Rank histogram: the observation's rank among the members (0..M), ties (several
  exactly dry members and a dry observation) broken at random, seeded: a tie with ``t``
  members below ``y`` by ``b`` counts as rank ``b + U{0..t}``. Values within
  ``tie_atol_mm`` (default :data:`pqpf.ordinal.AMOUNT_ATOL_MM`) of ``y`` are ties.
* Power spectra (:class:`PowerSpectrum`): radially averaged power of 2-D fields.
* Member exceedance probabilities (:func:`member_exceedance_probs`) for the existing
  Brier and reliability machinery (:class:`pqpf.verify.verifier.Verifier`).

References
----------
Ferro, C. A. T. (2014). Fair scores for ensemble forecasts. Q. J. R. Meteorol. Soc.,
140, 1917-1923.
Fortin, V., M. Abaza, F. Anctil and R. Turcotte (2014). Why should ensemble spread match
the RMSE of the ensemble mean? J. Hydrometeor., 15, 1708-1713.
Hamill, T. M. (2001). Interpretation of rank histograms for verifying ensemble forecasts.
Mon. Wea. Rev., 129, 550-560.
Harris, D., E. Foufoula-Georgiou, K. K. Droegemeier and J. J. Levit (2001). Multiscale
statistical properties of a high-resolution precipitation forecast. J. Hydrometeor., 2,
406-418.
Hersbach, H. (2000). Decomposition of the continuous ranked probability score for
ensemble prediction systems. Wea. Forecasting, 15, 559-570.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.ordinal import AMOUNT_ATOL_MM, reaches, validate_bin_edges

__all__ = [
    "fair_crps",
    "crps_binned_continuous",
    "member_exceedance_probs",
    "EnsembleCRPS",
    "SpreadSkill",
    "RankHistogram",
    "PowerSpectrum",
]

logger = logging.getLogger(__name__)

_F64 = NDArray[np.float64]
_Acc = TypeVar("_Acc", bound="_Sums")
#: Points processed at once by the CRPS of binned forecasts (bounds temporaries).
_CHUNK = 1 << 16


def _pair_sum(sorted_members: _F64) -> _F64:
    """``sum_ij |x_i - x_j|`` per column of members sorted along axis 0, shape (M, n)."""
    m = sorted_members.shape[0]
    coef = 2.0 * np.arange(1, m + 1) - m - 1
    return 2.0 * (coef @ sorted_members)


def fair_crps(members: ArrayLike, obs: ArrayLike) -> _F64:
    """Fair CRPS (Ferro 2014) of an M-member ensemble, point by point.

    Parameters
    ----------
    members : float array, shape (M, n), M >= 2
        Member amounts (mm).
    obs : float array, shape (n,)
        Observed amounts (mm).

    Returns
    -------
    float64 array, shape (n,)
        ``mean_i |x_i - y| - sum_ij |x_i - x_j| / (2 M (M - 1))`` (mm); can be slightly
        negative for a single point, unbiased for the CRPS of the members' distribution.
    """
    x = np.sort(np.asarray(members, dtype=np.float64), axis=0)
    y = np.asarray(obs, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or y.shape != x.shape[1:]:
        raise ValueError(f"need members (M >= 2, n) and obs (n,), got {x.shape} and {y.shape}")
    m = x.shape[0]
    return np.abs(x - y).mean(axis=0) - _pair_sum(x) / (2.0 * m * (m - 1))


def _segment_sq(a: _F64, b: _F64, fa: _F64, fb: _F64, y: _F64) -> _F64:
    """``int_a^b (F(x) - 1[x >= y])^2 dx`` for F linear from fa to fb (Simpson is exact)."""
    c = np.clip(y, a, b)
    width = np.where(b > a, b - a, 1.0)
    fc = fa + (fb - fa) * (c - a) / width
    below = (c - a) / 6.0 * (fa**2 + (fa + fc) ** 2 + fc**2)
    above = (b - c) / 6.0 * ((1 - fc) ** 2 + (2 - fc - fb) ** 2 + (1 - fb) ** 2)
    return below + above


def crps_binned_continuous(
    prob_bins: ArrayLike,
    edges_mm: Sequence[float] | NDArray[np.floating],
    obs_mm: ArrayLike,
    tail_scale_mm: float | None = None,
    dry_bin: str = "point",
) -> _F64:
    """CRPS (mm) of the U-Net's continuous distribution on unbinned amounts, closed form.

    Parameters
    ----------
    prob_bins : float array, shape (K, n)
        Bin probabilities, summing to 1 over K.
    edges_mm : sequence of float, length K
        Bin lower edges (mm); bin k is ``[e_k, e_{k+1})``, the last open.
    obs_mm : float array, shape (n,)
        Observed amounts (mm), finite; negative values (round-off) count as 0.
    tail_scale_mm : float, optional
        Mean excess of the exponential in the last bin; default its lower neighbour's
        width, as :func:`pqpf.model.quantiles`.
    dry_bin : {"point", "uniform"}
        First bin as a point mass at 0 mm or uniform over ``[0, e_1)``.

    Returns
    -------
    float64 array, shape (n,)
        ``int_0^inf (F(x) - 1[x >= y])^2 dx``. In closed bins F is linear between the
        cumulative probabilities at the edges, and the squared difference is integrated
        exactly (Simpson's rule on each side of ``y``); in the tail
        ``F = 1 - p exp(-(x - e)/s)`` gives ``p^2 s / 2`` for ``y <= e`` and
        ``d - 2 p s (1 - exp(-d/s)) + p^2 s / 2``, ``d = y - e``, above.
    """
    if dry_bin not in ("point", "uniform"):
        raise ValueError(f"unknown dry_bin {dry_bin!r}; valid: point, uniform")
    e = validate_bin_edges(edges_mm)
    p = np.asarray(prob_bins, dtype=np.float64)
    y_all = np.maximum(np.asarray(obs_mm, dtype=np.float64), 0.0)
    if p.ndim != 2 or p.shape[0] != e.size or y_all.shape != (p.shape[1],):
        raise ValueError(f"need prob_bins (K={e.size}, n) and obs_mm (n,), got {p.shape} and {y_all.shape}")
    scale = float(e[-1] - e[-2]) if tail_scale_mm is None else float(tail_scale_mm)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"tail_scale_mm must be positive, got {tail_scale_mm}")
    out = np.empty(y_all.shape)
    a, b = e[:-1, None], e[1:, None]
    for start in range(0, y_all.size, _CHUNK):
        cols = slice(start, start + _CHUNK)
        pc, y = p[:, cols], y_all[None, cols]
        cdf = np.cumsum(pc, axis=0)
        f_lo = np.concatenate([np.zeros((1, pc.shape[1])), cdf[:-2]], axis=0)
        f_hi = cdf[:-1].copy()
        if dry_bin == "point":
            f_lo[0] = pc[0]
        closed = _segment_sq(a, b, f_lo, f_hi, y).sum(axis=0)
        p_tail, d = pc[-1], np.maximum(y[0] - e[-1], 0.0)
        tail = d - 2 * p_tail * scale * -np.expm1(-d / scale) + p_tail**2 * scale / 2
        out[cols] = closed + tail
    return out


def member_exceedance_probs(members_mm: ArrayLike, thresholds_mm: Sequence[float]) -> NDArray[np.float32]:
    """``P(Y >= t)`` as the fraction of members reaching each threshold.

    Parameters
    ----------
    members_mm : float array, shape (M, ...)
    thresholds_mm : sequence of float, length T

    Returns
    -------
    float32 array, shape (T, ...)
        In [0, 1], multiples of 1/M; "reaching" as :func:`pqpf.ordinal.reaches` (an amount
        within 1e-4 mm below t counts). NaN where any member is NaN.
    """
    x = np.asarray(members_mm, dtype=np.float64)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"members_mm must have shape (M, ...), got {x.shape}")
    missing = np.isnan(x).any(axis=0)
    probs = np.stack([reaches(x, float(t)).mean(axis=0) for t in thresholds_mm]) if len(thresholds_mm) else \
        np.empty((0, *x.shape[1:]))
    return np.where(missing, np.nan, probs).astype(np.float32)


def _points(members: ArrayLike, obs: ArrayLike, mask: ArrayLike | None, weight: ArrayLike | None,
            extra: ArrayLike | None = None) -> tuple[_F64, _F64, _F64, _F64 | None]:
    """Flatten to (M, n), (n,), weights (n,) [, extra (E, n)] at the valid points."""
    x = np.asarray(members, dtype=np.float64)
    y = np.asarray(obs, dtype=np.float64)
    if x.ndim < 1 or x.shape[1:] != y.shape:
        raise ValueError(f"members must have shape (M, *obs.shape) = (M, {y.shape}), got {x.shape}")
    w = np.ones(y.shape) if weight is None else np.broadcast_to(np.asarray(weight, dtype=np.float64), y.shape)
    if not np.all(w[np.isfinite(w)] >= 0):
        raise ValueError("weight must be non-negative")
    ok = np.isfinite(y) & np.isfinite(x).all(axis=0) & np.isfinite(w) & (w > 0)
    if mask is not None:
        ok &= np.broadcast_to(np.asarray(mask, dtype=bool), y.shape)
    ex = None
    if extra is not None:
        e = np.asarray(extra, dtype=np.float64)
        if e.shape[1:] != y.shape:
            raise ValueError(f"prob_bins must have shape (K, *obs.shape), got {e.shape}")
        ok &= np.isfinite(e).all(axis=0)
        ex = e[:, ok]
    return x[:, ok], y[ok], w[ok], ex


class _Sums:
    """Named float64 arrays that add under :meth:`merge`."""

    _names: tuple[str, ...] = ()

    def _config(self) -> tuple[Any, ...]:
        return ()

    def merge(self: _Acc, other: _Acc) -> _Acc:
        """Add ``other``'s sums (same kind and settings) into this one; returns self."""
        if type(other) is not type(self) or repr(other._config()) != repr(self._config()):
            raise ValueError(f"cannot merge {type(other).__name__}{other._config()} into "
                             f"{type(self).__name__}{self._config()}")
        for name in self._names:
            getattr(self, name)[...] += getattr(other, name)
        return self

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The sums by name (copies), for saving."""
        return {name: np.array(getattr(self, name)) for name in self._names}

    def load_arrays(self: _Acc, arrays: dict[str, NDArray[Any]]) -> _Acc:
        """Set the sums from :meth:`to_arrays` output of an accumulator built the same way."""
        for name in self._names:
            getattr(self, name)[...] = arrays[name]
        return self


class EnsembleCRPS(_Sums):
    """Fair and plain ensemble CRPS, and the U-Net's continuous CRPS at the same points.

    Parameters
    ----------
    edges_mm : sequence of float, optional
        The U-Net's bin edges; then every :meth:`update` needs its ``prob_bins``.
    tail_scale_mm, dry_bin
        As in :func:`crps_binned_continuous`.
    """

    _names = ("sums",)

    def __init__(self, edges_mm: Sequence[float] | None = None, tail_scale_mm: float | None = None,
                 dry_bin: str = "point") -> None:
        self.edges_mm = None if edges_mm is None else validate_bin_edges(edges_mm)
        self.tail_scale_mm, self.dry_bin = tail_scale_mm, dry_bin
        self.sums = np.zeros(5)  # n, sum w, sum w fair, sum w plain, sum w unet

    def _config(self) -> tuple[Any, ...]:
        edges = None if self.edges_mm is None else self.edges_mm.tolist()
        return (edges, self.tail_scale_mm, self.dry_bin)

    def update(self, members_mm: ArrayLike, obs_mm: ArrayLike, prob_bins: ArrayLike | None = None,
               mask: ArrayLike | None = None, weight: ArrayLike | None = None) -> None:
        """Add one field: members (M, ...), obs (...), the U-Net's prob_bins (K, ...)."""
        if (prob_bins is None) != (self.edges_mm is None):
            raise ValueError("prob_bins must be given exactly when the accumulator was built with edges_mm")
        x, y, w, p = _points(members_mm, obs_mm, mask, weight, prob_bins)
        if x.shape[0] < 2:
            raise ValueError(f"the fair CRPS needs at least 2 members, got {x.shape[0]}")
        xs = np.sort(x, axis=0)
        m = xs.shape[0]
        mae, pairs = np.abs(xs - y).mean(axis=0), _pair_sum(xs)
        unet = 0.0
        if p is not None and self.edges_mm is not None:
            unet = float(crps_binned_continuous(p, self.edges_mm, y, self.tail_scale_mm, self.dry_bin) @ w)
        self.sums += [y.size, w.sum(), (mae - pairs / (2.0 * m * (m - 1))) @ w, (mae - pairs / (2.0 * m * m)) @ w,
                      unet]

    def result(self) -> dict[str, float]:
        """``n``, ``weight``, ``crps_fair``, ``crps_plain``, ``crps_unet`` (mm; NaN if absent),
        ``crpss_fair_vs_unet`` (``1 - fair / unet``)."""
        n, wsum, fair, plain, unet = self.sums
        ok = wsum > 0
        fair_m, unet_m = (fair / wsum if ok else math.nan), (unet / wsum if ok and self.edges_mm is not None
                                                              else math.nan)
        return {"n": float(n), "weight": float(wsum), "crps_fair": fair_m, "crps_plain": plain / wsum if ok else
                math.nan, "crps_unet": unet_m,
                "crpss_fair_vs_unet": 1.0 - fair_m / unet_m if unet_m > 0 else math.nan}


class SpreadSkill(_Sums):
    """Spread-skill ratio with the finite-ensemble factor (Fortin et al. 2014)."""

    _names = ("sums",)

    def __init__(self) -> None:
        self.n_members: int | None = None
        self.sums = np.zeros(4)  # n, sum w, sum w var (unbiased), sum w (mean - y)^2

    def _config(self) -> tuple[Any, ...]:
        return (self.n_members,)

    def update(self, members_mm: ArrayLike, obs_mm: ArrayLike, mask: ArrayLike | None = None,
               weight: ArrayLike | None = None) -> None:
        """Add one field: members (M >= 2, ...), obs (...); M must not change."""
        x, y, w, _ = _points(members_mm, obs_mm, mask, weight)
        if x.shape[0] < 2 or self.n_members not in (None, x.shape[0]):
            raise ValueError(f"need the same M >= 2 members in every update, got {x.shape[0]} "
                             f"(before: {self.n_members})")
        self.n_members = x.shape[0]
        self.sums += [y.size, w.sum(), x.var(axis=0, ddof=1) @ w, (x.mean(axis=0) - y) ** 2 @ w]

    def result(self) -> dict[str, float]:
        """``spread`` = sqrt((M+1)/M mean var), ``rmse`` of the ensemble mean, ``ratio`` (mm, mm, -)."""
        n, wsum, var, sq = self.sums
        if wsum <= 0 or self.n_members is None:
            return {"n": float(n), "spread": math.nan, "rmse": math.nan, "ratio": math.nan}
        m = self.n_members
        spread, rmse = math.sqrt((m + 1) / m * var / wsum), math.sqrt(sq / wsum)
        return {"n": float(n), "spread": spread, "rmse": rmse, "ratio": spread / rmse if rmse > 0 else math.nan}


class RankHistogram(_Sums):
    """Weighted counts of the observation's rank among M members, ties broken at random.

    Parameters
    ----------
    n_members : int
        M >= 1; ranks run 0..M.
    seed : int
        Seed of the tie-breaking generator.
    tie_atol_mm : float
        Members within this of the observation tie with it.
    """

    _names = ("counts",)

    def __init__(self, n_members: int, seed: int = 0, tie_atol_mm: float = AMOUNT_ATOL_MM) -> None:
        if n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.n_members, self.tie_atol_mm = int(n_members), float(tie_atol_mm)
        self.rng = np.random.default_rng(seed)
        self.counts = np.zeros(n_members + 1)

    def _config(self) -> tuple[Any, ...]:
        return (self.n_members, self.tie_atol_mm)

    def update(self, members_mm: ArrayLike, obs_mm: ArrayLike, mask: ArrayLike | None = None,
               weight: ArrayLike | None = None) -> None:
        """Add one field: members (M, ...), obs (...)."""
        x, y, w, _ = _points(members_mm, obs_mm, mask, weight)
        if x.shape[0] != self.n_members:
            raise ValueError(f"expected {self.n_members} members, got {x.shape[0]}")
        below = (x < y - self.tie_atol_mm).sum(axis=0)
        ties = (np.abs(x - y) <= self.tie_atol_mm).sum(axis=0)
        rank = below + np.floor(self.rng.random(y.size) * (ties + 1)).astype(np.int64)
        self.counts += np.bincount(rank, weights=w, minlength=self.n_members + 1)

    def result(self) -> dict[str, Any]:
        """``counts`` (weighted, M+1), ``frequency`` (sums to 1), ``flatness`` (max/min ratio)."""
        total = self.counts.sum()
        freq = self.counts / total if total > 0 else np.full(self.counts.shape, math.nan)
        low = freq.min()
        return {"counts": self.counts.tolist(), "frequency": freq.tolist(),
                "flatness": float(freq.max() / low) if low > 0 else math.inf}


def _hann(n: int) -> _F64:
    """Symmetric Hann taper of n points (all ones for n < 3)."""
    return np.hanning(n) if n >= 3 else np.ones(n)


class PowerSpectrum(_Sums):
    """Radially averaged power spectrum of 2-D fields on one grid, averaged over fields.

    Each field ``f`` (ny, nx) on a grid of spacing ``dx_km`` is prepared as follows:
    a field with fewer than ``min_valid_fraction`` valid points (finite and inside
    ``mask``) is skipped (counted in ``n_skipped``); ``detrend`` removes the mean
    (``"mean"``) or the least-squares plane (``"plane"``) of the valid points, and the
    invalid points become zero anomalies (with ``detrend=None``: the valid mean); ``window="hann"``
    multiplies by a separable 2-D Hann taper, so the non-periodic domain edges do not
    leak power to high wavenumbers. The 2-D power is
    ``P(kx, ky) = |FFT(f w)|^2 / (ny nx)^2 / mean(w^2)``: without a taper its sum is the
    field's variance (Parseval); the factor ``1/mean(w^2)`` keeps that on average with
    the taper. ``P`` is averaged over annuli of ``|k| = sqrt(kx^2 + ky^2)`` (cycles per
    km) of width ``1 / (L dx_km)``, ``L = max(ny, nx)``, centred on ``j / (L dx_km)``
    for ``j = 1 .. L // 2`` (up to the Nyquist wavenumber ``1 / (2 dx_km)``; the mean
    and the corners beyond Nyquist are left out), and the annulus means are averaged
    over fields. A 2-D power law ``P ~ |k|^-beta`` gives a radial mean with slope
    ``-beta`` (Harris et al. 2001 compare precipitation spectra this way).

    Parameters
    ----------
    shape : (int, int)
        Field shape (ny, nx); every update must match it.
    dx_km : float
        Grid spacing (km), > 0.
    window : {"hann", None}
    detrend : {"mean", "plane", None}
    min_valid_fraction : float
        In (0, 1].
    """

    _names = ("power_sum", "counts")

    def __init__(self, shape: tuple[int, int], dx_km: float, window: str | None = "hann",
                 detrend: str | None = "mean", min_valid_fraction: float = 0.9) -> None:
        ny, nx = (int(s) for s in shape)
        if ny < 2 or nx < 2 or not dx_km > 0 or not 0 < min_valid_fraction <= 1:
            raise ValueError(f"need shape >= (2, 2), dx_km > 0, min_valid_fraction in (0, 1]; "
                             f"got {shape}, {dx_km}, {min_valid_fraction}")
        if window not in ("hann", None) or detrend not in ("mean", "plane", None):
            raise ValueError(f"window must be 'hann' or None and detrend 'mean', 'plane' or None; "
                             f"got {window!r}, {detrend!r}")
        self.shape, self.dx_km = (ny, nx), float(dx_km)
        self.window, self.detrend, self.min_valid_fraction = window, detrend, float(min_valid_fraction)
        size = max(ny, nx)
        self.dk = 1.0 / (size * self.dx_km)
        k = np.hypot(*np.meshgrid(np.fft.fftfreq(ny, self.dx_km), np.fft.fftfreq(nx, self.dx_km), indexing="ij"))
        self._bin = np.rint(k / self.dk).astype(np.int64)
        self._n_bins = size // 2
        self._in_range = (self._bin >= 1) & (self._bin <= self._n_bins)
        self._cells = np.bincount(self._bin[self._in_range] - 1, minlength=self._n_bins).astype(np.float64)
        taper = np.outer(_hann(ny), _hann(nx)) if window == "hann" else np.ones((ny, nx))
        self._taper, self._taper_power = taper, float(np.mean(taper**2))
        self.power_sum = np.zeros(self._n_bins)
        self.counts = np.zeros(2)  # fields used, fields skipped

    def _config(self) -> tuple[Any, ...]:
        return (self.shape, self.dx_km, self.window, self.detrend, self.min_valid_fraction)

    @property
    def wavelength_km(self) -> _F64:
        """Centre wavelength of each annulus (km), long to short, shape (L // 2,)."""
        return np.asarray(1.0 / (self.dk * np.arange(1, self._n_bins + 1)), dtype=np.float64)

    def _prepare(self, field: _F64, valid: NDArray[np.bool_]) -> _F64:
        f = np.where(valid, field, np.mean(field[valid]))
        if self.detrend == "mean":
            f = f - f[valid].mean()
        elif self.detrend == "plane":
            jj, ii = np.nonzero(valid)
            design = np.column_stack([np.ones(jj.size), jj, ii])
            coef, *_ = np.linalg.lstsq(design, f[valid], rcond=None)
            yy, xx = np.indices(f.shape)
            f = np.where(valid, f - (coef[0] + coef[1] * yy + coef[2] * xx), 0.0)
        return f * self._taper

    def update(self, fields: ArrayLike, mask: ArrayLike | None = None) -> None:
        """Add one field (ny, nx) or a stack (n, ny, nx), e.g. all members of one forecast."""
        f_all = np.asarray(fields, dtype=np.float64)
        f_all = f_all[None] if f_all.ndim == 2 else f_all
        if f_all.ndim != 3 or f_all.shape[1:] != self.shape:
            raise ValueError(f"fields must have shape {self.shape} or (n, *{self.shape}), got {f_all.shape}")
        keep = np.ones(self.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), self.shape)
        n_px = self.shape[0] * self.shape[1]
        for field in f_all:
            valid = np.isfinite(field) & keep
            if valid.sum() < self.min_valid_fraction * n_px:
                self.counts[1] += 1
                continue
            power = np.abs(np.fft.fft2(self._prepare(field, valid))) ** 2 / (n_px**2 * self._taper_power)
            self.power_sum += np.bincount(self._bin[self._in_range] - 1, weights=power[self._in_range],
                                          minlength=self._n_bins) / self._cells
            self.counts[0] += 1

    def result(self) -> dict[str, Any]:
        """``wavelength_km``, ``power`` (mean over fields of the annulus means, units^2),
        ``n_fields``, ``n_skipped``."""
        used = self.counts[0]
        power = self.power_sum / used if used > 0 else np.full(self._n_bins, math.nan)
        return {"wavelength_km": self.wavelength_km.tolist(), "power": power.tolist(),
                "n_fields": int(used), "n_skipped": int(self.counts[1])}
