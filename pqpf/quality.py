"""Which MRMS points may be learnt from and scored: the one quality mask.

A point is usable when its MRMS amount is present (finite) and its remapped radar
quality index is at least ``[mrms] min_quality``; optionally also when enough of its
area was observed (``valid_fraction``). Patch sampling, the training loss, training
evaluation and verification all call :func:`good_quality_mask`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pqpf.ordinal import ArrayOrTensor

__all__ = ["good_quality_mask"]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def good_quality_mask(
    obs_mm: ArrayOrTensor,
    quality: ArrayOrTensor,
    min_quality: float,
    valid_fraction: ArrayLike | None = None,
    min_valid_fraction: float = 0.0,
) -> ArrayOrTensor:
    """Points whose MRMS analysis may be used for training and verification.

    Parameters
    ----------
    obs_mm : array or tensor of float
        Observed (MRMS) amount, mm; NaN where missing.
    quality : array or tensor of float, same shape
        MRMS radar quality index in [0, 1]; NaN counts as poor.
    min_quality : float
        Points with ``quality < min_quality`` are excluded (``config.mrms.min_quality``).
    valid_fraction : array of float, optional (numpy only)
        Share of the point's area covered by valid MRMS cells (from the remapping).
    min_valid_fraction : float
        Points with ``valid_fraction < min_valid_fraction`` are excluded.

    Returns
    -------
    bool array (or bool tensor for tensor inputs), same shape
        True where the observation is present, its quality is good enough and (if given)
        enough of the cell was observed.
    """
    if not 0.0 <= min_quality <= 1.0:
        raise ValueError(f"min_quality must lie in [0, 1], got {min_quality}")
    if _is_torch(obs_mm):
        import torch

        return torch.isfinite(obs_mm) & (torch.nan_to_num(quality, nan=-1.0) >= min_quality)
    obs = np.asarray(obs_mm)
    q = np.asarray(quality)
    if obs.shape != q.shape:
        raise ValueError(f"obs_mm shape {obs.shape} differs from quality shape {q.shape}")
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(obs) & np.isfinite(q) & (q >= min_quality)
        if valid_fraction is not None:
            vf = np.asarray(valid_fraction)
            if vf.shape != obs.shape:
                raise ValueError(f"valid_fraction shape {vf.shape} differs from obs_mm shape {obs.shape}")
            mask &= np.isfinite(vf) & (vf >= min_valid_fraction)
    return mask
