"""What ensemble verification compares the members with, and two summaries of its own.

Arrays in, arrays out:

* :func:`unet_mean_amount`: the U-Net's conditional mean amount (mm), the mean of its
  binned distribution: the first bin a point mass at 0 mm (``dry_bin="point"``, as the
  diffusion target and ensemble copula coupling take it) or uniform, closed bins
  uniform (mean at the midpoint), the open last bin exponential with mean excess ``s``
  (mean ``e_{K-1} + s``), as :func:`pqpf.ordinal.quantiles`. It is the forecast that
  minimises the squared error, hence smooth: the field whose power spectrum shows what
  a per-pixel forecast lacks at small scales.
* :func:`unet_median_amount`: the median amount (mm) of the same distribution, the
  U-Net's deterministic field for neighbourhood scores (0 where it gives dry >= 50 %).
* :func:`spectral_band_ratio`: how the power of one spectrum compares with another's
  in a band of wavelengths (the members' or the U-Net mean's against MRMS).
* :class:`BinnedSpreadSkill`: the spread-error diagram (Fortin et al. 2014): RMSE of
  the ensemble mean against the ensemble spread, in classes of spread, streaming.
* :func:`fair_brier_penalty`: the term that turns the Brier score of an M-member
  ensemble's probabilities into the fair Brier score (Ferro 2014).
* :class:`UNetDraws`: what M members drawn at random from the U-Net's own distribution
  would score, in expectation: their rank histogram and the distribution's spread-skill
  ratio. Set beside the members' scores, it tells a miss of the U-Net's marginals (both
  fail) from one of the way the members take them (only the members fail): ECC keeps
  the U-Net's values, so its members can be no better calibrated than these draws.

References
----------
Ferro, C. A. T. (2014). Fair scores for ensemble forecasts. Q. J. R. Meteorol. Soc.,
140, 1917-1923.
Fortin, V., M. Abaza, F. Anctil and R. Turcotte (2014). Why should ensemble spread match
the RMSE of the ensemble mean? J. Hydrometeor., 15, 1708-1713.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainc
from scipy.stats import binom

from pqpf.ordinal import AMOUNT_ATOL_MM, quantiles, validate_bin_edges

__all__ = [
    "octave_bands_km",
    "octave_annuli",
    "spectral_octave_ratios",
    "DEFAULT_SPREAD_EDGES_MM",
    "unet_mean_amount",
    "unet_median_amount",
    "spectral_band_ratio",
    "fair_brier_penalty",
    "BinnedSpreadSkill",
    "unet_cdf_interval",
    "unet_variance_amount",
    "UNetDraws",
]

#: Classes of ensemble spread (standard deviation, mm) of the spread-error diagram.
DEFAULT_SPREAD_EDGES_MM: tuple[float, ...] = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)
#: Points processed at once by :class:`UNetDraws` (bounds its (M+1, n) temporaries).
_CHUNK = 1 << 16


def _bins(prob_bins: ArrayLike, edges_mm: Sequence[float] | NDArray[np.floating]
          ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    e = validate_bin_edges(edges_mm)
    p = np.asarray(prob_bins, dtype=np.float64)
    if p.ndim < 1 or p.shape[0] != e.size:
        raise ValueError(f"prob_bins must have K={e.size} bins along axis 0, got shape {p.shape}")
    return p, e


def _tail_scale(e: NDArray[np.float64], tail_scale_mm: float | None) -> float:
    scale = float(e[-1] - e[-2]) if tail_scale_mm is None else float(tail_scale_mm)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"tail_scale_mm must be positive, got {tail_scale_mm}")
    return scale


def unet_mean_amount(prob_bins: ArrayLike, edges_mm: Sequence[float] | NDArray[np.floating],
                     tail_scale_mm: float | None = None, dry_bin: str = "point") -> NDArray[np.float32]:
    """Mean amount (mm) of the U-Net's binned distribution at every point.

    Parameters
    ----------
    prob_bins : float array, shape (K, ...)
        Bin probabilities, summing to 1 over K.
    edges_mm : sequence of float, length K
        Bin lower edges (mm), ``e_0 = 0``.
    tail_scale_mm : float, optional
        Mean excess of the open last bin; default the width of the bin below it.
    dry_bin : {"point", "uniform"}
        First bin as a point mass at 0 mm (mean 0) or uniform over ``[0, e_1)``.

    Returns
    -------
    float32 array, shape (...)
        ``sum_k p_k m_k`` with ``m_0 = 0`` (or ``e_1 / 2``), ``m_k = (e_k + e_{k+1}) / 2``
        and ``m_{K-1} = e_{K-1} + s``. NaN where a probability is NaN.
    """
    if dry_bin not in ("point", "uniform"):
        raise ValueError(f"unknown dry_bin {dry_bin!r}; valid: point, uniform")
    p, e = _bins(prob_bins, edges_mm)
    return np.tensordot(_first_moments(e, tail_scale_mm, dry_bin), p, axes=(0, 0)).astype(np.float32)


def _first_moments(e: NDArray[np.float64], tail_scale_mm: float | None, dry_bin: str) -> NDArray[np.float64]:
    """Each bin's mean: 0 for the dry point mass, the midpoint of a uniform bin, e + s in the tail."""
    out = np.append(0.5 * (e[:-1] + e[1:]), e[-1] + _tail_scale(e, tail_scale_mm))
    if dry_bin == "point":
        out[0] = 0.0
    return out


def _second_moments(e: NDArray[np.float64], tail_scale_mm: float | None, dry_bin: str) -> NDArray[np.float64]:
    """E[x^2] of each bin's distribution: 0 for the dry point mass, (a^2 + ab + b^2)/3 for a
    uniform bin [a, b), (e + s)^2 + s^2 for the exponential tail above e."""
    a, b = e[:-1], e[1:]
    s = _tail_scale(e, tail_scale_mm)
    out = np.append((a * a + a * b + b * b) / 3.0, (e[-1] + s) ** 2 + s * s)
    if dry_bin == "point":
        out[0] = 0.0
    return out


def unet_variance_amount(prob_bins: ArrayLike, edges_mm: Sequence[float] | NDArray[np.floating],
                         tail_scale_mm: float | None = None, dry_bin: str = "point") -> NDArray[np.float64]:
    """Variance (mm^2) of the U-Net's binned distribution at every point.

    Parameters
    ----------
    prob_bins, edges_mm, tail_scale_mm, dry_bin
        As :func:`unet_mean_amount` (the same distribution: point mass or uniform first bin,
        uniform closed bins, exponential tail).

    Returns
    -------
    float64 array, shape (...)
        ``sum_k p_k E_k[x^2] - mean^2``, clipped at 0 against round-off.
    """
    if dry_bin not in ("point", "uniform"):
        raise ValueError(f"unknown dry_bin {dry_bin!r}; valid: point, uniform")
    p, e = _bins(prob_bins, edges_mm)
    mean = np.tensordot(_first_moments(e, tail_scale_mm, dry_bin), p, axes=(0, 0))
    second = np.tensordot(_second_moments(e, tail_scale_mm, dry_bin), p, axes=(0, 0))
    return np.maximum(second - mean * mean, 0.0)


def unet_cdf_interval(prob_bins: ArrayLike, edges_mm: Sequence[float] | NDArray[np.floating], obs_mm: ArrayLike,
                      tail_scale_mm: float | None = None, dry_bin: str = "point", tie_atol_mm: float = AMOUNT_ATOL_MM
                      ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The U-Net's CDF just below and at each observation: ``(F(y-), F(y))``.

    The two are equal except for a dry observation (``y <= tie_atol_mm``) under the
    ``"point"`` dry bin: ``(0, p_0)``, the interval over which a randomised PIT is uniform
    (draws at 0 mm tie with it, broken at random as in the members' rank histogram).

    Parameters
    ----------
    prob_bins : float array, shape (K, n)
    edges_mm : sequence of float, length K
    obs_mm : float array, shape (n,)
        Finite; negative values (round-off) count as 0.
    tail_scale_mm, dry_bin
        As :func:`unet_mean_amount`.
    """
    if dry_bin not in ("point", "uniform"):
        raise ValueError(f"unknown dry_bin {dry_bin!r}; valid: point, uniform")
    p, e = _bins(prob_bins, edges_mm)
    y = np.maximum(np.asarray(obs_mm, dtype=np.float64), 0.0)
    if p.ndim != 2 or y.shape != (p.shape[1],):
        raise ValueError(f"need prob_bins (K, n) and obs_mm (n,), got {p.shape} and {y.shape}")
    lower = np.concatenate([np.zeros((1, p.shape[1])), np.cumsum(p, axis=0)[:-1]], axis=0)  # F at each edge
    k = np.clip(np.searchsorted(e, y, side="right") - 1, 0, e.size - 1)
    cols = np.arange(y.size)
    pk, fk, ek = p[k, cols], lower[k, cols], e[k]
    width = np.append(np.diff(e), 1.0)[k]
    inside = fk + pk * np.clip((y - ek) / width, 0.0, 1.0)
    tail = 1.0 - pk * np.exp(-(y - ek) / _tail_scale(e, tail_scale_mm))
    cdf = np.where(k == e.size - 1, tail, inside)
    if dry_bin == "point":
        cdf = np.where(k == 0, p[0], cdf)
        dry = y <= tie_atol_mm
        return np.where(dry, 0.0, cdf), cdf
    return cdf, cdf


def unet_median_amount(prob_bins: ArrayLike, edges_mm: Sequence[float] | NDArray[np.floating],
                       tail_scale_mm: float | None = None, dry_bin: str = "point") -> NDArray[np.float32]:
    """Median amount (mm) of the U-Net's binned distribution at every point.

    Parameters
    ----------
    prob_bins, edges_mm, tail_scale_mm, dry_bin
        As :func:`unet_mean_amount`.

    Returns
    -------
    float32 array, shape (...)
        :func:`pqpf.ordinal.quantiles` at level 0.5; with ``dry_bin="point"`` a median
        inside the first bin is 0 mm (the point mass holds at least half the probability).
        NaN where a probability is NaN.
    """
    if dry_bin not in ("point", "uniform"):
        raise ValueError(f"unknown dry_bin {dry_bin!r}; valid: point, uniform")
    p, e = _bins(prob_bins, edges_mm)
    missing = ~np.isfinite(p).all(axis=0)
    safe = np.where(missing, 1.0 / e.size, p)
    median = quantiles(safe, e.tolist(), 0.5, dim=0, tail_scale_mm=tail_scale_mm)
    if dry_bin == "point":
        median = np.where(median < e[1], np.float32(0.0), median)
    return np.where(missing, np.float32(np.nan), median).astype(np.float32)


def spectral_band_ratio(wavelength_km: ArrayLike, power: ArrayLike, power_ref: ArrayLike,
                        band_km: tuple[float, float] = (16.0, 128.0)) -> dict[str, Any]:
    """Power of one radially averaged spectrum relative to another in a band of wavelengths.

    Parameters
    ----------
    wavelength_km : float array, shape (L,)
        Centre wavelengths of the annuli (:attr:`pqpf.verify.ensemble.PowerSpectrum.wavelength_km`).
    power, power_ref : float arrays, shape (L,)
        Mean power per annulus of the spectrum and of the reference (e.g. MRMS).
    band_km : (float, float)
        Shortest and longest wavelength of the band (km), inclusive.

    Returns
    -------
    dict
        ``band_km``, ``n_annuli`` in the band, ``ratio`` (band-summed power over the
        reference's), ``min_ratio`` / ``max_ratio`` (over the annuli of the band) and
        ``within_factor_1_5`` (every annulus' ratio within [1/1.5, 1.5]). NaN (and
        False) when the band holds no annulus or the reference has no power there.
    """
    lam = np.asarray(wavelength_km, dtype=np.float64)
    a, b = np.asarray(power, dtype=np.float64), np.asarray(power_ref, dtype=np.float64)
    if not lam.shape == a.shape == b.shape or lam.ndim != 1:
        raise ValueError(f"wavelength_km, power and power_ref must be 1-D of one length, got "
                         f"{lam.shape}, {a.shape}, {b.shape}")
    lo, hi = sorted(band_km)
    sel = (lam >= lo) & (lam <= hi) & np.isfinite(a) & np.isfinite(b)
    if not sel.any() or not b[sel].sum() > 0:
        return {"band_km": [lo, hi], "n_annuli": int(sel.sum()), "ratio": math.nan, "min_ratio": math.nan,
                "max_ratio": math.nan, "within_factor_1_5": False}
    with np.errstate(divide="ignore", invalid="ignore"):
        each = np.where(b[sel] > 0, a[sel] / b[sel], np.nan)
    return {"band_km": [lo, hi], "n_annuli": int(sel.sum()), "ratio": float(a[sel].sum() / b[sel].sum()),
            "min_ratio": float(np.nanmin(each)), "max_ratio": float(np.nanmax(each)),
            "within_factor_1_5": bool(np.all((each >= 1 / 1.5) & (each <= 1.5)))}



def octave_bands_km(dx_km: float, longest_km: float) -> list[tuple[float, float]]:
    """Octaves of wavelength from the grid's shortest resolved one (``2 dx``) up to
    ``longest_km``: ``[(2dx, 4dx), (4dx, 8dx), ...]``, the last one cut at ``longest_km``
    (so the bands cover ``[2dx, longest_km]``); empty when ``longest_km <= 2 dx``."""
    if not dx_km > 0:
        raise ValueError(f"need dx_km > 0, got {dx_km}")
    bands: list[tuple[float, float]] = []
    lo = 2.0 * dx_km
    while lo < longest_km * (1 - 1e-9):
        bands.append((lo, min(2.0 * lo, float(longest_km))))
        lo *= 2.0
    return bands


def octave_annuli(wavelength_km: ArrayLike, dx_km: float, longest_km: float
                  ) -> list[tuple[tuple[float, float], NDArray[np.bool_]]]:
    """Each of :func:`octave_bands_km` with the annuli it holds (a mask over
    ``wavelength_km``), every annulus in at most one octave: bands are ``[lo, hi)``, the last
    one ``[lo, hi]``, with a relative tolerance of 1e-6 (computed wavelengths such as
    5.999999999 km belong to the 6-km edge)."""
    lam = np.asarray(wavelength_km, dtype=np.float64)
    bands = octave_bands_km(dx_km, longest_km)
    tol = 1e-6
    out = []
    for n, (lo, hi) in enumerate(bands):
        top = lam <= hi * (1 + tol) if n == len(bands) - 1 else lam < hi * (1 - tol)
        out.append(((lo, hi), (lam >= lo * (1 - tol)) & top))
    return out


def spectral_octave_ratios(wavelength_km: ArrayLike, power: ArrayLike, power_ref: ArrayLike, dx_km: float,
                           longest_km: float) -> list[dict[str, Any]]:
    """:func:`spectral_band_ratio` in each of :func:`octave_bands_km` (the annuli of
    :func:`octave_annuli`).

    Returns
    -------
    list of dict
        Per octave: ``band_km``, ``n_annuli`` and ``ratio`` (band-summed power over the
        reference's; NaN without annuli or reference power).
    """
    lam = np.asarray(wavelength_km, dtype=np.float64)
    a, b = np.asarray(power, dtype=np.float64), np.asarray(power_ref, dtype=np.float64)
    if not lam.shape == a.shape == b.shape or lam.ndim != 1:
        raise ValueError(f"wavelength_km, power and power_ref must be 1-D of one length, got "
                         f"{lam.shape}, {a.shape}, {b.shape}")
    out = []
    for (lo, hi), in_band in octave_annuli(lam, dx_km, longest_km):
        sel = in_band & np.isfinite(a) & np.isfinite(b)
        ok = sel.any() and b[sel].sum() > 0
        out.append({"band_km": [lo, hi], "n_annuli": int(sel.sum()),
                    "ratio": float(a[sel].sum() / b[sel].sum()) if ok else math.nan})
    return out

def fair_brier_penalty(prob_members: ArrayLike, n_members: int) -> NDArray[np.float64]:
    """``p (1 - p) / (M - 1)``: subtracted from ``(p - o)^2`` it gives the fair Brier score.

    Parameters
    ----------
    prob_members : float array
        Fraction ``p`` of M members reaching a threshold, in [0, 1].
    n_members : int
        M >= 2.

    Returns
    -------
    float64 array, same shape
        The fair Brier score is an unbiased estimate of the Brier score the probabilities
        of infinitely many members from the same distribution would have (Ferro 2014).
    """
    if n_members < 2:
        raise ValueError(f"the fair Brier score needs at least 2 members, got {n_members}")
    p = np.asarray(prob_members, dtype=np.float64)
    return p * (1.0 - p) / (n_members - 1)


class BinnedSpreadSkill:
    """Spread-error diagram: in classes of ensemble spread, the mean spread and the RMSE of
    the ensemble mean, weighted, streaming.

    Parameters
    ----------
    edges_mm : sequence of float
        Class edges of the spread ``s = sqrt(var)`` (unbiased member variance, mm);
        class c is ``[edges[c], edges[c+1])``.

    Notes
    -----
    Per class the sums ``w``, ``w var`` and ``w (xbar - y)^2`` are kept; the class's
    spread is ``sqrt((M+1)/M * sum w var / sum w)`` and its RMSE ``sqrt(sum w (xbar -
    y)^2 / sum w)``: for a calibrated ensemble the two agree in every class.
    """

    def __init__(self, edges_mm: Sequence[float] = DEFAULT_SPREAD_EDGES_MM) -> None:
        e = np.asarray(edges_mm, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0) or e[0] < 0:
            raise ValueError(f"edges_mm must be non-negative and increasing, got {list(edges_mm)}")
        self.edges_mm = e
        self.n_members: int | None = None
        self.sums = np.zeros((e.size - 1, 4))  # count, w, w var, w sq err

    def update(self, members: NDArray[np.float64], obs: NDArray[np.float64], weight: NDArray[np.float64]) -> None:
        """Add points: members (M, n), obs (n,), weight (n,), all finite (the caller masks)."""
        m = members.shape[0]
        if m < 2 or self.n_members not in (None, m) or members.shape[1:] != obs.shape or obs.shape != weight.shape:
            raise ValueError(f"need the same M >= 2 members (M, n) with obs and weight (n,), got {members.shape}, "
                             f"{obs.shape}, {weight.shape}")
        self.n_members = m
        var = members.var(axis=0, ddof=1)
        cls = np.clip(np.searchsorted(self.edges_mm, np.sqrt(var), side="right") - 1, 0, self.edges_mm.size - 2)
        sq = (members.mean(axis=0) - obs) ** 2
        n_cls = self.edges_mm.size - 1
        for col, values in enumerate((np.ones_like(var), weight, weight * var, weight * sq)):
            self.sums[:, col] += np.bincount(cls, weights=values, minlength=n_cls)

    def result(self) -> dict[str, Any]:
        """``edges_mm`` (the last may be inf, written as None), per class ``count``, ``weight``,
        ``spread`` and ``rmse`` (mm; NaN for empty classes)."""
        count, w, var, sq = self.sums.T
        m = self.n_members or 2
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.where(w > 0, np.sqrt((m + 1) / m * var / np.where(w > 0, w, 1.0)), np.nan)
            rmse = np.where(w > 0, np.sqrt(sq / np.where(w > 0, w, 1.0)), np.nan)
        return {"edges_mm": [float(v) if math.isfinite(v) else None for v in self.edges_mm],
                "count": count.astype(np.int64).tolist(), "weight": w.tolist(),
                "spread": spread.tolist(), "rmse": rmse.tolist()}


class UNetDraws:
    """What M members drawn at random from the U-Net's distribution would score, in
    expectation, streaming: the rank histogram (ties with dry draws broken at random, as in
    :class:`pqpf.verify.ensemble.RankHistogram`) and the spread-skill ratio of the
    distribution itself (its standard deviation against the RMSE of its mean: 1 for a
    calibrated one, as an M-member random sample's ratio with the ``(M+1)/M`` factor).

    A random draw's rank among M given the observation's PIT ``u`` is Binomial(M, u);
    over a dry observation's PIT interval ``[0, p_0]`` it is averaged exactly,
    ``int_0^x C(M,r) v^r (1-v)^(M-r) dv = I_x(r+1, M-r+1) / (M+1)`` (the regularised
    incomplete beta function).

    Parameters
    ----------
    n_members : int
        M >= 1.
    edges_mm, tail_scale_mm, dry_bin
        The U-Net's distribution, as :func:`unet_mean_amount`.
    """

    def __init__(self, n_members: int, edges_mm: Sequence[float] | NDArray[np.floating],
                 tail_scale_mm: float | None = None, dry_bin: str = "point") -> None:
        if n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.n_members, self.edges_mm = int(n_members), validate_bin_edges(edges_mm)
        self.tail_scale_mm, self.dry_bin = tail_scale_mm, dry_bin
        self.counts = np.zeros(self.n_members + 1)
        self.sums = np.zeros(3)  # sum w, sum w var, sum w (mean - y)^2

    def update(self, prob_bins: NDArray[np.float64], obs: NDArray[np.float64], weight: NDArray[np.float64]) -> None:
        """Add points: bin probabilities (K, n), obs (n,), weight (n,), all finite (the caller masks)."""
        m, e = self.n_members, self.edges_mm
        r = np.arange(m + 1, dtype=np.float64)[:, None]
        for start in range(0, obs.size, _CHUNK):
            cols = slice(start, start + _CHUNK)
            lo, hi = unet_cdf_interval(prob_bins[:, cols], e, obs[cols], self.tail_scale_mm, self.dry_bin)
            lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
            wide = hi - lo > 1e-12
            integral = betainc(r + 1, m - r + 1, hi) - betainc(r + 1, m - r + 1, lo)
            pmf = np.where(wide, integral / ((m + 1) * np.where(wide, hi - lo, 1.0)), binom.pmf(r, m, hi))
            self.counts += pmf @ weight[cols]
        mean = np.tensordot(_first_moments(e, self.tail_scale_mm, self.dry_bin), prob_bins, axes=(0, 0))
        var = unet_variance_amount(prob_bins, e, self.tail_scale_mm, self.dry_bin)
        self.sums += [weight.sum(), var @ weight, (mean - obs) ** 2 @ weight]

    def result(self) -> dict[str, Any]:
        """``rank_frequency`` (M+1, sums to 1), its ``min_over_uniform``/``max_over_uniform``,
        ``spread`` and ``rmse`` (mm) and their ``ratio``."""
        total = self.counts.sum()
        freq = self.counts / total if total > 0 else np.full(self.counts.shape, math.nan)
        w, var, sq = self.sums
        spread = math.sqrt(var / w) if w > 0 else math.nan
        rmse = math.sqrt(sq / w) if w > 0 else math.nan
        rel = freq * (self.n_members + 1)
        return {"rank_frequency": freq.tolist(), "min_over_uniform": float(np.min(rel)),
                "max_over_uniform": float(np.max(rel)), "spread": spread, "rmse": rmse,
                "ratio": spread / rmse if rmse > 0 else math.nan}

