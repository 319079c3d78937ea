"""Probabilities from the raw GRAF forecast: exceedance and the smoothed-GRAF reference.

The raw GRAF "probability" of exceeding a threshold is 0 or 1 at each grid point. The
reference forecast the U-Net must beat is that exceedance field smoothed with a Gaussian
whose width grows with lead time, a neighbourhood probability in the spirit of
Theis et al. (2005) and Schwartz and Sobash (2017). Both are computed on the full GRAF
field; patch extraction cuts patches from the result afterwards, so patches near each
other see the same reference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from pqpf.config import ProbabilityConfig
from pqpf.ordinal import reaches

__all__ = ["reference_sigma_px", "exceedance", "smoothed_exceedance"]

logger = logging.getLogger(__name__)

#: Gaussian kernels are cut at this many standard deviations.
_TRUNCATE = 4.0
#: Below this share of in-domain, non-missing kernel weight a smoothed value is missing.
_MIN_WEIGHT = 1e-6


def reference_sigma_px(probability_config: ProbabilityConfig, lead_h: int) -> float:
    """Standard deviation (grid points) of the reference smoothing at a lead time.

    ``sigma = reference_sigma_px + reference_sigma_px_per_h * lead_h``, from the
    ``[probability]`` section of the configuration.

    Raises
    ------
    ValueError
        For a negative lead or a resulting negative sigma.
    """
    if lead_h < 0:
        raise ValueError(f"lead_h must be >= 0, got {lead_h}")
    sigma = (probability_config.reference_sigma_px
             + probability_config.reference_sigma_px_per_h * lead_h)
    if sigma < 0:
        raise ValueError(f"reference sigma must be >= 0, got {sigma} for lead {lead_h} h")
    return float(sigma)


def _check_thresholds(thresholds_mm: Sequence[float]) -> NDArray[np.float64]:
    t = np.asarray(thresholds_mm, dtype=np.float64).ravel()
    if t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"thresholds_mm must be a non-empty list of finite values, got {thresholds_mm!r}")
    return t


def exceedance(graf_mm: NDArray[np.floating], thresholds_mm: Sequence[float]) -> NDArray[np.float32]:
    """0/1 fields of ``graf_mm >= threshold`` (up to :data:`pqpf.ordinal.AMOUNT_ATOL_MM`).

    Parameters
    ----------
    graf_mm : float array, shape (ny, nx)
        Forecast 1-h amount (mm); NaN where missing.
    thresholds_mm : sequence of float, length T
        Thresholds (mm).

    Returns
    -------
    float32 array, shape (T, ny, nx)
        1 where the amount reaches the threshold, 0 where not, NaN where ``graf_mm``
        is NaN (missing stays missing).
    """
    g = np.asarray(graf_mm)
    if g.ndim != 2:
        raise ValueError(f"graf_mm must be 2-D (ny, nx), got shape {g.shape}")
    t = _check_thresholds(thresholds_mm)
    out = reaches(g[None, :, :], t[:, None, None]).astype(np.float32)
    out[:, np.isnan(g)] = np.nan
    return out


def smoothed_exceedance(
    graf_mm: NDArray[np.floating], thresholds_mm: Sequence[float], sigma_px: float
) -> NDArray[np.float32]:
    """The smoothed-GRAF reference: Gaussian-smoothed exceedance fields.

    Parameters
    ----------
    graf_mm : float array, shape (ny, nx)
        Forecast 1-h amount (mm) on the full grid; NaN where missing.
    thresholds_mm : sequence of float, length T
        Thresholds (mm).
    sigma_px : float
        Standard deviation of the Gaussian, grid points (>= 0; 0 returns the raw
        exceedance). See :func:`reference_sigma_px`.

    Returns
    -------
    float32 array, shape (T, ny, nx), values in [0, 1]
        Probability of reaching each threshold; NaN where ``graf_mm`` is NaN.

    Notes
    -----
    Normalised convolution (Knutsson and Westin 1993): the smoothed value is
    ``G * (v e) / G * v`` with ``v`` the indicator of valid (non-missing) points and
    ``e`` the 0/1 exceedance. Points outside the grid count as missing (``mode =
    "constant"``, 0, for both numerator and denominator), so near an edge or a hole
    the kernel is truncated and renormalised over real data only. This neither
    invents values beyond the edge (as ``"nearest"`` does, repeating the edge row
    many times over) nor dilutes the probability towards 0 (as plain zero padding
    would); a constant field stays exactly constant up to the edge. The result is a
    weighted mean of 0/1 values, so it lies in [0, 1] (clipped against rounding).
    Kernels are cut at 4 sigma.

    References
    ----------
    Knutsson, H. and Westin, C.-F. (1993). Normalized and differential convolution.
    Proc. IEEE CVPR, 515-523.
    Theis, S. E., Hense, A. and Damrath, U. (2005). Probabilistic precipitation
    forecasts from a deterministic model: a pragmatic approach. Meteorol. Appl., 12,
    257-268.
    """
    from scipy.ndimage import gaussian_filter

    if not np.isfinite(sigma_px) or sigma_px < 0:
        raise ValueError(f"sigma_px must be a finite number >= 0, got {sigma_px}")
    raw = exceedance(graf_mm, thresholds_mm)
    if sigma_px == 0:
        return raw
    valid = ~np.isnan(np.asarray(graf_mm))
    kw = dict(sigma=float(sigma_px), mode="constant", cval=0.0, truncate=_TRUNCATE)
    weight = gaussian_filter(valid.astype(np.float64), **kw)
    ok = weight > _MIN_WEIGHT
    out = np.empty_like(raw)
    for k in range(raw.shape[0]):
        num = gaussian_filter(np.where(valid, raw[k], 0.0), **kw)
        smoothed = np.full(num.shape, np.nan)
        np.divide(num, weight, out=smoothed, where=ok)
        np.clip(smoothed, 0.0, 1.0, out=smoothed)
        smoothed[~valid] = np.nan
        out[k] = smoothed
    logger.debug("smoothed exceedance for %d thresholds, sigma %.2f px", raw.shape[0], sigma_px)
    return out
