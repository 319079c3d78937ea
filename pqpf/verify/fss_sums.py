"""The fractions skill score from its pooled sums, and the useful scale of an FSS curve.

:class:`pqpf.verify.fss.FssAccumulator` keeps, per source, threshold and width, the
sums ``sum w Pf^2``, ``sum w Pf Po`` and ``sum w Po^2``; :func:`fbs_sums` and
:func:`fss_from_sums` turn any array of such sums (last axis 3) into ``FBS``,
``FBS_worst`` and ``FSS = 1 - FBS / FBS_worst``. :func:`useful_scale` finds the smallest
width whose FSS reaches ``0.5 + f0 / 2`` (Roberts and Lean 2008).

References
----------
Roberts, N. M., and H. W. Lean (2008). Scale-selective verification of rainfall
accumulations from high-resolution forecasts of convective events. Mon. Wea. Rev.,
136, 78-97.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["UsefulScale", "useful_scale", "fbs_sums", "fss_from_sums"]


@dataclass(frozen=True)
class UsefulScale:
    """Smallest useful scale of one FSS curve.

    Attributes
    ----------
    fss_useful : float
        ``0.5 + f0 / 2``.
    first_px : float or None
        The smallest width in the list whose FSS reaches ``fss_useful``; None if none does.
    interp_px : float or None
        The width where the FSS curve, linear between the listed widths, first reaches
        ``fss_useful``: between ``first_px`` and the width before it; equals ``first_px``
        when that is the first width. None if no width reaches it.
    """

    fss_useful: float
    first_px: float | None
    interp_px: float | None


def useful_scale(widths_px: Sequence[int], fss: ArrayLike, base_rate: float) -> UsefulScale:
    """The smallest neighbourhood width at which the FSS is "useful".

    Parameters
    ----------
    widths_px : sequence of int, increasing
        Neighbourhood widths (grid points).
    fss : array of float, shape (len(widths_px),)
        FSS at each width; NaN entries never count as reaching the level.
    base_rate : float
        Observed event frequency ``f0`` over the verified points, in [0, 1].

    Returns
    -------
    UsefulScale
        Level ``0.5 + f0 / 2`` (Roberts and Lean 2008): halfway between the FSS of a
        random forecast with the observed frequency (``f0``, at the grid scale) and a
        perfect score.
    """
    w = np.asarray(widths_px, dtype=np.float64)
    s = np.asarray(fss, dtype=np.float64)
    if s.shape != w.shape:
        raise ValueError(f"fss has shape {s.shape}, expected ({w.size},)")
    level = 0.5 + 0.5 * float(base_rate) if math.isfinite(base_rate) else math.nan
    with np.errstate(invalid="ignore"):
        hit = np.flatnonzero(s >= level) if math.isfinite(level) else np.zeros(0, dtype=np.int64)
    if hit.size == 0:
        return UsefulScale(level, None, None)
    k = int(hit[0])
    if k == 0 or not math.isfinite(s[k - 1]):
        return UsefulScale(level, float(w[k]), float(w[k]))
    frac = (level - s[k - 1]) / (s[k] - s[k - 1])
    return UsefulScale(level, float(w[k]), float(w[k - 1] + frac * (w[k] - w[k - 1])))


# ---- from sums -----------------------------------------------------------------------------


def fbs_sums(sums: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """FBS and FBS_worst sums from (..., 3) sums of Pf^2, Pf Po, Po^2."""
    ff, fo, oo = sums[..., 0], sums[..., 1], sums[..., 2]
    return np.maximum(ff - 2.0 * fo + oo, 0.0), ff + oo  # round-off can dip below 0


def fss_from_sums(sums: NDArray[np.float64]) -> NDArray[np.float64]:
    """``1 - FBS / FBS_worst`` from (..., 3) sums; NaN where ``FBS_worst = 0`` (no event
    forecast or observed)."""
    fbs, worst = fbs_sums(sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(worst > 0, 1.0 - fbs / np.where(worst > 0, worst, 1.0), np.nan)
