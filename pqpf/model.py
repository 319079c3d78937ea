"""Residual U-Net that forecasts the 1-h amount over ordinal bins, and bin helpers.

The network maps features (B, C, H, W) to logits (B, K, H, W) over K ordinal amount
bins. Bin edges are LOWER edges in mm, the first is 0 and the last bin is open-ended:
a value ``v`` is in bin ``k`` when ``edges[k] <= v < edges[k+1]``. Every probability
threshold must be an edge, so ``P(obs >= t)`` is an exact sum of bin probabilities
(:func:`exceedance_matrix`).

Architecture (:class:`ResUNet`)
-------------------------------
* Residual block: ``conv3x3-norm-act, conv3x3-norm``, plus the shortcut (identity, or a
  1x1 conv + norm when the channel count changes), then the activation (SiLU), as in
  He et al. (2016). Optional ``Dropout2d`` between the two convolutions.
* Encoder: ``depth`` levels of (residual block, 2x2 max-pool); widths
  ``base_width * 2**level``; a residual block at the bottom (``base_width * 2**depth``).
* Decoder: 2x2 stride-2 transposed convolution, an additive attention gate on the skip
  (Oktay et al. 2018) when ``attention`` is true, concatenation, residual block. The
  gate is driven by the up-sampled decoder feature at the skip's resolution (Oktay et
  al. gate on the coarser grid and up-sample the coefficients; same idea, one
  resampling fewer).
* Head: a 1x1 convolution to K logits, initialised with tiny weights (std 1e-3) and zero
  bias, so the first forecast is (nearly) the uniform distribution over bins while
  gradients still reach every layer; :meth:`ResUNet.set_prior` sets the bias to the log
  of climatological bin frequencies instead.
* Any H, W: the input is padded by edge replication (``mode="replicate"``, which, unlike
  reflection, works for any size), split evenly between the two sides of each axis, to a
  multiple of ``2**depth``; the output is cropped back. Inside, 3x3 convolutions pad
  with zeros.

References
----------
He, K., X. Zhang, S. Ren and J. Sun (2016). Deep residual learning for image
recognition. CVPR, 770-778.
Oktay, O. and co-authors (2018). Attention U-Net: learning where to look for the
pancreas. MIDL, arXiv:1804.03999.
Ronneberger, O., P. Fischer and T. Brox (2015). U-Net: convolutional networks for
biomedical image segmentation. MICCAI, 234-241.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from pqpf.bins import AMOUNT_ATOL_MM, bin_index_numpy, validate_bin_edges
from pqpf.bins import EDGE_ATOL_MM as _EDGE_ATOL_MM

if TYPE_CHECKING:
    from pqpf.config import ModelHParams

__all__ = [
    "ResUNet",
    "build_model",
    "count_parameters",
    "validate_bin_edges",
    "bin_index",
    "probs_from_logits",
    "cdf_at_edges",
    "exceedance_matrix",
    "exceedance_probs",
    "quantiles",
]

logger = logging.getLogger(__name__)

_Array = TypeVar("_Array", NDArray[Any], torch.Tensor)
#: Edges and thresholds are matched to within this (mm).


# --------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------


def _group_norm(channels: int) -> nn.Module:
    """GroupNorm with up to 8 groups of at least 2 channels (Wu and He 2018)."""
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0 and (channels // g >= 2 or g == 1))
    return nn.GroupNorm(groups, channels)


_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "group": _group_norm,
    "instance": lambda c: nn.InstanceNorm2d(c, affine=True),
}


def _make_norm(name: str, channels: int) -> nn.Module:
    try:
        return _NORMS[name](channels)
    except KeyError:
        raise ValueError(f"unknown norm {name!r}; valid names: {', '.join(sorted(_NORMS))}") from None


class _ResBlock(nn.Module):
    """conv3x3-norm-act, conv3x3-norm, + shortcut, act."""

    def __init__(self, c_in: int, c_out: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm1 = _make_norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _make_norm(norm, c_out)
        self.act = nn.SiLU()
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        if c_in == c_out:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, bias=False), _make_norm(norm, c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.norm1(self.conv1(x))))
        h = self.norm2(self.conv2(h))
        return self.act(h + self.shortcut(x))


class _AttentionGate(nn.Module):
    """Additive attention gate: ``skip * sigmoid(psi(relu(theta(skip) + phi(gate))))``.

    The gating signal is the up-sampled decoder feature at the skip's resolution.
    """

    def __init__(self, c_skip: int, c_gate: int) -> None:
        super().__init__()
        c_int = max(c_skip // 2, 1)
        self.theta = nn.Conv2d(c_skip, c_int, 1, bias=False)
        self.phi = nn.Conv2d(c_gate, c_int, 1)
        self.psi = nn.Conv2d(c_int, 1, 1)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.psi(F.relu(self.theta(skip) + self.phi(gate))))
        return skip * alpha


class ResUNet(nn.Module):
    """Residual U-Net with optional attention gates; logits over ordinal amount bins.

    Parameters
    ----------
    in_channels : int
        Number of input feature channels C.
    n_bins : int
        Number of amount bins K (>= 2).
    base_width : int
        Channels at the first level; each deeper level doubles them.
    depth : int
        Number of 2x down-sampling steps (>= 1).
    attention : bool
        Additive attention gates on the skip connections.
    norm : str
        ``"batch"``, ``"group"`` or ``"instance"``.
    dropout : float
        ``Dropout2d`` rate inside each residual block, in [0, 1).

    Notes
    -----
    ``forward`` accepts any H, W >= 1: the input is padded by edge replication, split
    evenly between the two sides of each axis, to a multiple of ``2**depth``, and the
    output is cropped back to (H, W).
    """

    def __init__(
        self,
        in_channels: int,
        n_bins: int,
        base_width: int = 32,
        depth: int = 4,
        attention: bool = True,
        norm: str = "group",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if in_channels < 1 or n_bins < 2 or base_width < 1 or depth < 1:
            raise ValueError(
                "need in_channels >= 1, n_bins >= 2, base_width >= 1, depth >= 1; got "
                f"{in_channels}, {n_bins}, {base_width}, {depth}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        _make_norm(norm, 2)  # unknown names fail here, before any layer is built
        self.in_channels = in_channels
        self.n_bins = n_bins
        self.depth = depth
        widths = [base_width * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList()
        c_prev = in_channels
        for level in range(depth):
            self.encoders.append(_ResBlock(c_prev, widths[level], norm, dropout))
            c_prev = widths[level]
        self.bottom = _ResBlock(c_prev, widths[depth], norm, dropout)
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            self.gates.append(
                _AttentionGate(widths[level], widths[level]) if attention else nn.Identity()
            )
            self.decoders.append(_ResBlock(2 * widths[level], widths[level], norm, dropout))
        self.head = nn.Conv2d(widths[0], n_bins, 1)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)
        self.attention = attention

    @torch.no_grad()
    def set_prior(self, prob_bins: Sequence[float]) -> None:
        """Set the head bias so the initial forecast is ``prob_bins`` everywhere.

        Parameters
        ----------
        prob_bins : sequence of K floats
            Climatological bin frequencies (>= 0; floored at 1e-6 and renormalised).
        """
        p = np.asarray(prob_bins, dtype=np.float64)
        if p.shape != (self.n_bins,) or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"prob_bins must be {self.n_bins} non-negative values, got {prob_bins!r}")
        p = np.maximum(p / p.sum(), 1e-6)
        logp = np.log(p / p.sum())
        self.head.bias.copy_(torch.as_tensor(logp - logp.mean(), dtype=self.head.bias.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) for features (B, C, H, W)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        h_in, w_in = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = (-h_in) % m, (-w_in) % m
        top, left = pad_h // 2, pad_w // 2
        if pad_h or pad_w:
            x = F.pad(x, (left, pad_w - left, top, pad_h - top), mode="replicate")
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, gate, dec, skip in zip(self.ups, self.gates, self.decoders, reversed(skips)):
            x = up(x)
            s = gate(skip, x) if self.attention else skip
            x = dec(torch.cat([s, x], dim=1))
        logits = self.head(x)
        return logits[..., top : top + h_in, left : left + w_in]


def build_model(model_hparams: "ModelHParams", in_channels: int) -> ResUNet:
    """The :class:`ResUNet` described by ``model_hparams`` for ``in_channels`` features.

    The number of bins is ``len(model_hparams.bin_edges_mm)``.
    """
    return ResUNet(
        in_channels=in_channels,
        n_bins=len(model_hparams.bin_edges_mm),
        base_width=model_hparams.base_width,
        depth=model_hparams.depth,
        attention=model_hparams.attention,
        norm=model_hparams.norm,
        dropout=model_hparams.dropout,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------
# Ordinal bins
# --------------------------------------------------------------------------------------


def _threshold_indices(edges: NDArray[np.float64], thresholds_mm: Sequence[float]) -> list[int]:
    validate_bin_edges(edges, thresholds_mm)
    return [int(np.argmin(np.abs(edges - t))) for t in thresholds_mm]


def bin_index(obs_mm: _Array, edges_mm: Sequence[float]) -> _Array:
    """Bin of each observed amount.

    Parameters
    ----------
    obs_mm : float array or tensor, any shape
        Amounts (mm). Values below 0 (round-off) go to bin 0; NaN gives -1.
    edges_mm : sequence of float
        Bin lower edges (see :func:`validate_bin_edges`).

    Returns
    -------
    int64 array or tensor, same shape: ``k`` with ``edges[k] <= v < edges[k+1]``, each edge
    up to :data:`pqpf.bins.AMOUNT_ATOL_MM` (see :func:`pqpf.bins.reaches`).
    """
    edges = validate_bin_edges(edges_mm)
    if isinstance(obs_mm, torch.Tensor):
        e = torch.as_tensor(edges - AMOUNT_ATOL_MM, dtype=obs_mm.dtype, device=obs_mm.device)
        nan = torch.isnan(obs_mm)
        idx = torch.bucketize(torch.where(nan, torch.zeros_like(obs_mm), obs_mm), e, right=True) - 1
        return torch.where(nan, torch.full_like(idx, -1), idx.clamp_min(0))
    return bin_index_numpy(obs_mm, edges)


def probs_from_logits(logits: _Array, dim: int = 1) -> _Array:
    """Bin probabilities: softmax of ``logits`` along ``dim``."""
    if isinstance(logits, torch.Tensor):
        return torch.softmax(logits, dim=dim)
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=dim, keepdims=True))
    return (z / z.sum(axis=dim, keepdims=True)).astype(np.float32)


def cdf_at_edges(probs: _Array, dim: int = 1) -> _Array:
    """``P(obs < edges[k])`` for k = 1..K-1 (length K-1 along ``dim``).

    The values are cumulative sums, non-decreasing along ``dim``; they may exceed 1 by
    rounding (~1e-7 in float32).
    """
    if isinstance(probs, torch.Tensor):
        return torch.cumsum(probs, dim=dim).narrow(dim, 0, probs.shape[dim] - 1)
    p = np.asarray(probs)
    return np.take(np.cumsum(p, axis=dim), np.arange(p.shape[dim] - 1), axis=dim)


def exceedance_matrix(
    edges_mm: Sequence[float], thresholds_mm: Sequence[float]
) -> NDArray[np.float32]:
    """Matrix M (T, K) of 0/1 with ``P(obs >= t_i) = sum_k M[i, k] p_k``.

    ``M[i, k] = 1`` when bin k lies wholly at or above threshold i (``edges[k] >= t_i``).
    """
    edges = validate_bin_edges(edges_mm, thresholds_mm)
    idx = _threshold_indices(edges, thresholds_mm)
    m = np.zeros((len(idx), edges.size), dtype=np.float32)
    for i, k in enumerate(idx):
        m[i, k:] = 1.0
    return m


def exceedance_probs(
    probs: _Array, edges_mm: Sequence[float], thresholds_mm: Sequence[float], dim: int = 1
) -> _Array:
    """``P(obs >= t)`` for each threshold (length T along ``dim``, in [0, 1]).

    Computed from a reverse cumulative sum, so the result is non-increasing in the
    threshold even after rounding.
    """
    edges = validate_bin_edges(edges_mm, thresholds_mm)
    idx = _threshold_indices(edges, thresholds_mm)
    if probs.shape[dim] != edges.size:
        raise ValueError(f"probs have {probs.shape[dim]} bins along dim {dim}, edges give {edges.size}")
    if isinstance(probs, torch.Tensor):
        tail = torch.flip(torch.cumsum(torch.flip(probs, dims=(dim,)), dim=dim), dims=(dim,))
        sel = torch.as_tensor(idx, dtype=torch.long, device=probs.device)
        return torch.index_select(tail, dim, sel).clamp(0.0, 1.0)
    p = np.asarray(probs)
    tail = np.flip(np.cumsum(np.flip(p, axis=dim), axis=dim), axis=dim)
    return np.clip(np.take(tail, idx, axis=dim), 0.0, 1.0)


def quantiles(
    probs: NDArray[np.floating] | torch.Tensor,
    edges_mm: Sequence[float],
    q: float | Sequence[float],
    dim: int = 1,
    tail_scale_mm: float | None = None,
) -> NDArray[np.float32]:
    """Quantiles (mm) of the binned forecast distribution.

    Inside a closed bin the distribution is uniform (the CDF is interpolated linearly
    between edges). In the open last bin ``[e_{K-1}, inf)`` it is exponential with mean
    excess ``tail_scale_mm`` (default: the width of the bin below, ``e_{K-1} - e_{K-2}``),
    i.e. ``x = e_{K-1} - tail_scale_mm * log((1 - q) / p_{K-1})``.

    Parameters
    ----------
    probs : float array or tensor, with K bins along ``dim``
        Bin probabilities (summing to 1).
    edges_mm : sequence of float
        Bin lower edges.
    q : float or sequence of float
        Probability levels in [0, 1).
    dim : int
        The bin axis.
    tail_scale_mm : float, optional
        Mean excess over the last edge in the open last bin.

    Returns
    -------
    float32 array
        The bin axis replaced by one axis of len(q) (dropped when ``q`` is a scalar).
    """
    edges = validate_bin_edges(edges_mm)
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().cpu().numpy()
    p = np.moveaxis(np.asarray(probs, dtype=np.float64), dim, -1)
    if p.shape[-1] != edges.size:
        raise ValueError(f"probs have {p.shape[-1]} bins along dim {dim}, edges give {edges.size}")
    scalar = np.ndim(q) == 0
    levels = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if levels.ndim != 1 or not ((levels >= 0) & (levels < 1)).all():
        raise ValueError(f"quantile levels must be in [0, 1), got {q!r}")
    scale = float(edges[-1] - edges[-2]) if tail_scale_mm is None else float(tail_scale_mm)
    if not scale > 0:
        raise ValueError(f"tail_scale_mm must be positive, got {tail_scale_mm}")
    n_bins = edges.size
    cdf_lower = np.concatenate([np.zeros(p.shape[:-1] + (1,)), np.cumsum(p, axis=-1)[..., :-1]], axis=-1)
    widths = np.append(np.diff(edges), 0.0)
    out = np.empty(p.shape[:-1] + (levels.size,), dtype=np.float64)
    for i, level in enumerate(levels):
        k = np.clip((cdf_lower <= level).sum(axis=-1) - 1, 0, n_bins - 1)
        f_k = np.take_along_axis(cdf_lower, k[..., None], axis=-1)[..., 0]
        p_k = np.take_along_axis(p, k[..., None], axis=-1)[..., 0]
        safe_p = np.where(p_k > 0, p_k, 1.0)
        frac = np.where(p_k > 0, np.clip((level - f_k) / safe_p, 0.0, 1.0), 0.0)
        inner = edges[k] + frac * widths[k]
        ratio = np.clip((1.0 - level) / safe_p, 1e-300, 1.0)
        tail = edges[-1] - scale * np.log(ratio)
        out[..., i] = np.where(k == n_bins - 1, np.where(p_k > 0, tail, edges[-1]), inner)
    out = np.moveaxis(out, -1, dim)
    return (np.take(out, 0, axis=dim) if scalar else out).astype(np.float32)
