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

from pqpf.ordinal import quantiles, validate_bin_edges

__all__ = [
    "octave_bands_km",
    "spectral_octave_ratios",
    "DEFAULT_SPREAD_EDGES_MM",
    "unet_mean_amount",
    "unet_median_amount",
    "spectral_band_ratio",
    "fair_brier_penalty",
    "BinnedSpreadSkill",
]

#: Classes of ensemble spread (standard deviation, mm) of the spread-error diagram.
DEFAULT_SPREAD_EDGES_MM: tuple[float, ...] = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)


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
    centre = np.append(0.5 * (e[:-1] + e[1:]), e[-1] + _tail_scale(e, tail_scale_mm))
    if dry_bin == "point":
        centre[0] = 0.0
    return np.tensordot(centre, p, axes=(0, 0)).astype(np.float32)


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


def spectral_octave_ratios(wavelength_km: ArrayLike, power: ArrayLike, power_ref: ArrayLike, dx_km: float,
                           longest_km: float) -> list[dict[str, Any]]:
    """:func:`spectral_band_ratio` in each of :func:`octave_bands_km`, every annulus in
    exactly one octave: bands are ``[lo, hi)``, the last one ``[lo, hi]``, with a relative
    tolerance of 1e-6 (computed wavelengths such as 5.999999999 km belong to the 6-km edge).

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
    bands = octave_bands_km(dx_km, longest_km)
    tol = 1e-6
    out = []
    for n, (lo, hi) in enumerate(bands):
        top = lam <= hi * (1 + tol) if n == len(bands) - 1 else lam < hi * (1 - tol)
        sel = (lam >= lo * (1 - tol)) & top & np.isfinite(a) & np.isfinite(b)
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
