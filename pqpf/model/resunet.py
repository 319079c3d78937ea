"""Residual U-Net that forecasts the 1-h amount over ordinal bins.

The network maps features (B, C, H, W) to logits (B, K, H, W) over K ordinal amount
bins. Bin edges are LOWER edges in mm, the first is 0 and the last bin is open-ended:
a value ``v`` is in bin ``k`` when ``edges[k] <= v < edges[k+1]``. Every probability
threshold must be an edge, so ``P(obs >= t)`` is an exact sum of bin probabilities
(:func:`pqpf.ordinal.exceedance_matrix`).

Architecture (:class:`ResUNet`)
-------------------------------
* Residual block: ``conv3x3-norm-act, conv3x3-norm``, plus the shortcut (identity, or a
  1x1 conv + norm when the channel count changes), then the activation (SiLU), as in
  He et al. (2016). Optional ``Dropout2d`` between the two convolutions.
* Encoder: ``depth`` levels of (residual block, 2x2 max-pool); widths
  ``base_width * 2**level``; a residual block at the bottom (``base_width * 2**depth``).
* Decoder: up-sampling (``upsample="resize"``: nearest-neighbour 2x resize then a 3x3
  convolution, after Odena et al. 2016; ``"transpose"``: a 2x2 stride-2 transposed
  convolution, which checkpoints from before the choice existed use), an additive attention gate on the skip
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
  by edge replication (``padding="replicate"``): with zero padding (``"zeros"``, older
  checkpoints) a window's rim sees an artificial dry, flat, zero-feature border, so even
  a constant field comes out with a rim, and the windows of the stitched field blend
  those rims into a pattern with the stride's period (issue 10's dry-area bands).

References
----------
He, K., X. Zhang, S. Ren and J. Sun (2016). Deep residual learning for image
recognition. CVPR, 770-778.
Odena, A., V. Dumoulin and C. Olah (2016). Deconvolution and checkerboard artifacts.
Distill, doi:10.23915/distill.00003. (A stride-2 transposed convolution gives even and
odd output points different kernels, so even a constant input comes out with a 2-periodic
pattern unless the weights happen to agree: the checkerboard of issue 10.)
Oktay, O. and co-authors (2018). Attention U-Net: learning where to look for the
pancreas. MIDL, arXiv:1804.03999.
Ronneberger, O., P. Fischer and T. Brox (2015). U-Net: convolutional networks for
biomedical image segmentation. MICCAI, 234-241.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pqpf.model.norms import make_norm
from pqpf.model.upsample import PADDING_MODES, UPSAMPLE_MODES, make_upsample

if TYPE_CHECKING:
    from pqpf.hparams import ModelHParams

__all__ = ["ResUNet", "build_resunet", "count_parameters", "fold_batchnorm"]

logger = logging.getLogger(__name__)


class _ResBlock(nn.Module):
    """conv3x3-norm-act, conv3x3-norm, + shortcut, act."""

    def __init__(self, c_in: int, c_out: int, norm: str, dropout: float, padding: str = "zeros") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False, padding_mode=padding)  # type: ignore[arg-type]
        self.norm1 = make_norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False, padding_mode=padding)  # type: ignore[arg-type]
        self.norm2 = make_norm(norm, c_out)
        self.act = nn.SiLU()
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        if c_in == c_out:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, bias=False), make_norm(norm, c_out)
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
    upsample : str
        A name of :data:`pqpf.model.upsample.UPSAMPLE_MODES`.
    padding : str
        Padding of the 3x3 convolutions, a name of :data:`pqpf.model.upsample.PADDING_MODES`.

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
        upsample: str = "resize",
        padding: str = "replicate",
    ) -> None:
        super().__init__()
        if in_channels < 1 or n_bins < 2 or base_width < 1 or depth < 1:
            raise ValueError(
                "need in_channels >= 1, n_bins >= 2, base_width >= 1, depth >= 1; got "
                f"{in_channels}, {n_bins}, {base_width}, {depth}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {', '.join(PADDING_MODES)}, got {padding!r}")
        make_norm(norm, 2)  # unknown names fail here, before any layer is built
        self.in_channels = in_channels
        self.n_bins = n_bins
        self.depth = depth
        widths = [base_width * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList()
        c_prev = in_channels
        for level in range(depth):
            self.encoders.append(_ResBlock(c_prev, widths[level], norm, dropout, padding))
            c_prev = widths[level]
        self.bottom = _ResBlock(c_prev, widths[depth], norm, dropout, padding)
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(make_upsample(upsample, widths[level + 1], widths[level], padding))
            self.gates.append(
                _AttentionGate(widths[level], widths[level]) if attention else nn.Identity()
            )
            self.decoders.append(_ResBlock(2 * widths[level], widths[level], norm, dropout, padding))
        self.head = nn.Conv2d(widths[0], n_bins, 1)
        nn.init.normal_(self.head.weight, std=1e-3)
        self.head_bias: torch.Tensor = self.head.bias  # type: ignore[assignment]  # a Conv2d made with bias
        nn.init.zeros_(self.head_bias)
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
        self.head_bias.copy_(torch.as_tensor(logp - logp.mean(), dtype=self.head_bias.dtype))

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


def build_resunet(model_hparams: ModelHParams, in_channels: int) -> ResUNet:
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
        upsample=model_hparams.upsample,
        padding=model_hparams.padding,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` with every batch norm folded into the convolution before it.

    In eval mode a batch norm is the fixed affine map ``gamma (x - mean) / sqrt(var + eps)
    + beta`` per channel, so ``norm(conv(x))`` is one convolution with scaled weights and a
    bias (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`): the same function, one pass
    over the activations fewer (about 5 % of the full-field time, ``bench/inference_settings.py``).
    ``net`` itself is returned unchanged when it has no batch norm (group or instance norm
    depend on the window and cannot be folded); its own layers are never modified.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if not any(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
        return net
    import copy

    folded = copy.deepcopy(net).eval()
    for block in folded.modules():
        if not isinstance(block, _ResBlock):
            continue
        for conv_name, norm_name in (("conv1", "norm1"), ("conv2", "norm2")):
            conv, norm = getattr(block, conv_name), getattr(block, norm_name)
            if isinstance(norm, nn.BatchNorm2d):
                setattr(block, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(block, norm_name, nn.Identity())
        shortcut = block.shortcut
        if isinstance(shortcut, nn.Sequential) and isinstance(shortcut[0], nn.Conv2d) \
                and isinstance(shortcut[1], nn.BatchNorm2d):
            block.shortcut = fuse_conv_bn_eval(shortcut[0], shortcut[1])
    return folded
