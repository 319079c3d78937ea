"""Augmentation of training patches by the dihedral group D4 (flips and quarter turns).

The 8 elements of the dihedral group D4 are indexed ``0..7``: ``k = transform_id % 4``
quarter turns of ``np.rot90(..., axes=(-2, -1))`` applied AFTER a west-east mirror
(``np.flip(..., axis=-1)``) when ``transform_id >= 4``. Arrays run south->north along
rows (y grows with the row index) and west->east along columns. The terrain slope is a
vector ``(slope_x, slope_y)`` of derivatives along the column and row index, so a
spatial transform also maps the components:

* mirror (columns reversed): ``(sx, sy) -> (-sx, sy)``
* one quarter turn of ``np.rot90`` (``out[r, c] = in[c, W-1-r]``):
  ``(sx, sy) -> (sy, -sx)``

Both rules hold exactly for centred finite differences (``np.gradient``), which the
tests prove for all 8 transforms. They assume ``dx == dy`` on the ground (true for the
conformal GRAF grid, whose map factor is isotropic). The scalar channels only move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pqpf.features import N_TRANSFORMS, VECTOR_PAIRS
from pqpf.ordinal import ArrayOrTensor

__all__ = ["augment_spatial", "augment_features", "augment_batch_torch"]



def _check_transform(transform_id: int) -> tuple[int, bool]:
    t = int(transform_id)
    if t != transform_id or not 0 <= t < N_TRANSFORMS:
        raise ValueError(f"transform_id must be an integer in 0..{N_TRANSFORMS - 1}, got {transform_id!r}")
    return t % 4, t >= 4


def _vector_rule(transform_id: int) -> tuple[tuple[int, float], tuple[int, float]]:
    """Signed permutation of a grid vector ``(v_x, v_y)`` under a transform.

    Returns ``((src, sign) for the new x component, (src, sign) for the new y
    component)`` with ``src`` 0 for x and 1 for y: ``new_x = sign * old[src]``.
    """
    k, flip = _check_transform(transform_id)
    # Track (source index, sign) of the current x and y components.
    x, y = (0, 1.0), (1, 1.0)
    if flip:  # columns reversed: d/dx changes sign
        x = (x[0], -x[1])
    for _ in range(k):  # out[r, c] = in[c, W-1-r]: (vx, vy) -> (vy, -vx)
        x, y = y, (x[0], -x[1])
    return x, y


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def augment_spatial(x: ArrayOrTensor, transform_id: int) -> ArrayOrTensor:
    """Apply dihedral transform ``transform_id`` to the last two axes.

    Parameters
    ----------
    x : numpy array or torch tensor, shape (..., H, W)
        Any gridded quantity that is a scalar per point (targets, quality, masks).
    transform_id : int
        0..7: ``k = transform_id % 4`` quarter turns of ``rot90`` on axes (-2, -1)
        after a mirror of the last axis when ``transform_id >= 4``.

    Returns
    -------
    Same type, shape (..., H, W) or (..., W, H) for odd ``k``; always a new array
    (C-contiguous for numpy), never a view of ``x``.
    """
    k, flip = _check_transform(transform_id)
    if _is_torch(x):
        import torch

        out = torch.flip(x, dims=(-1,)) if flip else x
        return torch.rot90(out, k, dims=(-2, -1)) if k else (out if flip else out.clone())
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"expected an array of shape (..., H, W), got shape {arr.shape}")
    out = np.flip(arr, axis=-1) if flip else arr
    return np.array(np.rot90(out, k, axes=(-2, -1)), order="C", copy=True)


def augment_features(x: ArrayOrTensor, transform_id: int, channel_names: Sequence[str]) -> ArrayOrTensor:
    """Transform feature channels: spatial transform plus the slope-vector rule.

    Parameters
    ----------
    x : numpy array or torch tensor, shape (..., C, H, W)
        Features (raw or normalised with a :class:`Normalisation` from
        :func:`compute_normalisation`: the result is the same either way).
    transform_id : int
        0..7, see :func:`augment_spatial`.
    channel_names : sequence of str
        Names of the C channels; each :data:`VECTOR_PAIRS` pair present has its
        components permuted and sign-flipped (see the module docstring).

    Returns
    -------
    Same type and dtype, the transformed features.
    """
    names = tuple(channel_names)
    if len(x.shape) < 3 or x.shape[-3] != len(names):
        raise ValueError(f"expected features (..., {len(names)}, H, W), got shape {tuple(x.shape)}")
    out = augment_spatial(x, transform_id)
    rule = _vector_rule(transform_id)
    if rule == ((0, 1.0), (1, 1.0)):
        return out
    for pair in VECTOR_PAIRS:
        if pair[0] not in names and pair[1] not in names:
            continue
        if pair[0] not in names or pair[1] not in names:
            raise ValueError(f"vector channels {pair} must both be present, got {names}")
        idx = (names.index(pair[0]), names.index(pair[1]))
        comps = [out[..., idx[0], :, :], out[..., idx[1], :, :]]
        if _is_torch(out):
            comps = [c.clone() for c in comps]
        else:
            comps = [c.copy() for c in comps]
        for dest, (src, sign) in zip(idx, rule):
            out[..., dest, :, :] = comps[src] if sign > 0 else -comps[src]
    return out


def augment_batch_torch(
    features: Any,
    targets: Sequence[Any],
    transform_ids: Any,
    channel_names: Sequence[str],
) -> tuple[Any, list[Any]]:
    """Per-sample dihedral augmentation of a training batch.

    Samples are grouped by transform so each group costs one flip/rot90 call.

    Parameters
    ----------
    features : tensor, shape (B, C, H, W)
        Features (raw or normalised).
    targets : sequence of tensors, each shape (B, ..., H, W)
        Per-point quantities transformed spatially only (MRMS amount, quality, mask).
    transform_ids : int tensor or array, shape (B,)
        0..7 per sample (draw them from a seeded generator for reproducibility).
    channel_names : sequence of str
        Names of the C feature channels.

    Returns
    -------
    features, targets
        New tensors of the same shapes (H must equal W when any transform rotates by
        an odd number of quarter turns).
    """
    import torch

    ids = torch.as_tensor(np.asarray(transform_ids) if not _is_torch(transform_ids) else transform_ids)
    ids = ids.to(device="cpu", dtype=torch.int64)
    b = features.shape[0]
    if ids.shape != (b,):
        raise ValueError(f"transform_ids must have shape ({b},), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= N_TRANSFORMS):
        raise ValueError(f"transform_ids must be in 0..{N_TRANSFORMS - 1}, got {ids.tolist()}")
    for t in targets:
        if t.shape[0] != b or tuple(t.shape[-2:]) != tuple(features.shape[-2:]):
            raise ValueError(
                f"targets must be (B={b}, ..., {features.shape[-2]}, {features.shape[-1]}), "
                f"got {tuple(t.shape)}"
            )
    odd = bool(((ids % 2) == 1).any())
    if odd and features.shape[-2] != features.shape[-1]:
        raise ValueError(
            f"odd quarter turns need square patches, got {tuple(features.shape[-2:])}"
        )
    out_f = torch.empty_like(features)
    out_t = [torch.empty_like(t) for t in targets]
    for tid in torch.unique(ids).tolist():
        sel = torch.nonzero(ids == tid).flatten()
        sel_f = sel.to(features.device)
        out_f[sel_f] = augment_features(features[sel_f], tid, channel_names)
        for src, dst in zip(targets, out_t):
            sel_t = sel.to(src.device)
            dst[sel_t] = augment_spatial(src[sel_t], tid)
    return out_f, out_t
