"""The raw denoiser network ``F``: a noise-conditioned residual U-Net.

``F(x_in, c_noise, cond)`` maps the scaled noisy residual ``x_in = c_in x`` (B, C, H, W)
and the conditioning channels ``cond`` (B, C_cond, H, W) (normalised features and U-Net
summaries; :mod:`pqpf.diffusion.target`) at noise level ``c_noise = ln(sigma)/4`` (B,)
to (B, C, H, W); :class:`pqpf.diffusion.edm.EDMDenoiser` wraps it with the EDM
preconditioning.

Architecture (:class:`DiffusionUNet`)
-------------------------------------
* Noise embedding: ``[cos(w_j c_noise), sin(w_j c_noise)]`` with fixed angular
  frequencies ``w_j`` geometric from 1 to 128 rad per unit of ``c_noise`` (``c_noise``
  spans about -1.6 to 1.7 between sigma = 0.002 and 800, so every frequency varies over
  the range; Fourier features as in Tancik et al. 2020 and the NCSN++ of Song et al.
  2021, deterministic instead of random), then ``Linear-SiLU-Linear``.
* Residual block: ``norm-SiLU-conv3x3``, then a norm modulated by the embedding
  (``h * (1 + scale) + shift``, one ``Linear`` per block, as the adaptive group norm of
  Dhariwal and Nichol 2021 and the EDM networks), ``SiLU-dropout-conv3x3``; shortcut
  identity or 1x1 conv; sum scaled by ``1/sqrt(2)`` (Karras et al. 2022's networks).
* Norm: by default a layer norm over the channels at each point (as in ConvNeXt, Liu et
  al. 2022), not GroupNorm: GroupNorm's statistics span the whole input, so a window's
  output would depend on everything in the window and two overlapping windows would
  disagree in their common part. With the per-point norm the network is local and
  shift-equivariant (for shifts by multiples of ``2**(levels-1)``) away from the window
  edges, which is what the tent-blended full-field sampler assumes.
* Encoder: ``len(widths)`` levels of ``blocks_per_level`` blocks, 2x2 average pooling
  between levels. Decoder: nearest-neighbour 2x resize then a 3x3 convolution (no
  transposed convolution, hence no checkerboard artefacts; Odena et al. 2016),
  concatenation with the encoder skip, blocks. Head: ``GN-SiLU-conv3x3``, initialised to
  zero, so an untrained ``F`` is 0 and the denoiser starts as ``c_skip x``.
* Fully convolutional; any H, W (padded by edge replication to a multiple of
  ``2**(levels-1)``, cropped back). No attention, no global pooling and no cross-point
  normalisation, so the output at a point depends only on a finite neighbourhood;
  measured receptive radius 12 px (``tiny``), 48 px (``laptop``) and 100 px
  (``default``), so on 64-px windows the two larger sizes see the whole window.

Sizes (:data:`NETWORK_SIZES`, parameters with 1 data and 8 conditioning channels):
``tiny`` 12 k (tests), ``laptop`` 0.31 M (the demo/laptop size) and ``default`` 4.6 M
(GPU). On one CPU thread a 64 x 64 window costs about 2x the laptop ResUNet's
(``laptop``) and 0.9x the default ResUNet's (``default``).

References
----------
Dhariwal, P. and A. Nichol (2021). Diffusion models beat GANs on image synthesis.
NeurIPS 34.
Karras, T., M. Aittala, T. Aila and S. Laine (2022). Elucidating the design space of
diffusion-based generative models. NeurIPS 35.
Liu, Z. and co-authors (2022). A ConvNet for the 2020s. CVPR, 11976-11986.
Odena, A., V. Dumoulin and C. Olah (2016). Deconvolution and checkerboard artifacts.
Distill, doi:10.23915/distill.00003.
Song, Y. and co-authors (2021). Score-based generative modeling through stochastic
differential equations. ICLR.
Tancik, M. and co-authors (2020). Fourier features let networks learn high frequency
functions in low dimensional domains. NeurIPS 33.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NetworkSize", "NETWORK_SIZES", "DiffusionUNet", "build_network", "count_parameters"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkSize:
    """Width and depth of a :class:`DiffusionUNet`.

    Attributes
    ----------
    widths : tuple of int
        Channels per level, finest first; the number of levels is ``len(widths)``.
    blocks_per_level : int
        Residual blocks per level (encoder and decoder each).
    embed_dim : int
        Width of the noise embedding.
    n_frequencies : int
        Fourier frequencies of ``c_noise`` (the embedding input has twice as many).
    dropout : float
        Dropout probability inside each block, in [0, 1).
    norm : {"channel", "group"}
        ``"channel"``: layer norm over the channels at each point, so the network is
        local (module docstring); ``"group"``: GroupNorm, whose statistics span the
        whole input window.
    """

    widths: tuple[int, ...]
    blocks_per_level: int = 1
    embed_dim: int = 64
    n_frequencies: int = 16
    dropout: float = 0.0
    norm: str = "channel"


#: Named sizes; parameter counts for 1 data and 8 conditioning channels in the module
#: docstring and the tests.
NETWORK_SIZES: dict[str, NetworkSize] = {
    "tiny": NetworkSize(widths=(8, 16), blocks_per_level=1, embed_dim=32, n_frequencies=8),
    "laptop": NetworkSize(widths=(16, 32, 64), blocks_per_level=2, embed_dim=64, n_frequencies=16),
    # (64, 128, 192, 256) has 8.8 M parameters but costs 5x a 64-px window of the default
    # ResUNet; this one costs about the same as the ResUNet's window (bench in the report).
    "default": NetworkSize(widths=(32, 64, 128, 256), blocks_per_level=2, embed_dim=128, n_frequencies=32),
}


def _groups(channels: int) -> int:
    """Groups for GroupNorm: the most of (32, 16, 8, 4, 2) with >= 4 channels each, else 1."""
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 4:
            return g
    return 1


class _ChannelNorm(nn.Module):
    """Layer norm over the channels at each point (statistics never cross points)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "channel":
        return _ChannelNorm(channels)
    return nn.GroupNorm(_groups(channels), channels)


class _Block(nn.Module):
    """Residual block with noise-modulated group norm."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, dropout: float, norm: str) -> None:
        super().__init__()
        self.norm1 = _norm(norm, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.modulation = nn.Linear(embed_dim, 2 * c_out)
        self.norm2 = _norm(norm, c_out)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.modulation(emb)[:, :, None, None].chunk(2, dim=1)
        h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        h = self.conv2(self.dropout(F.silu(h)))
        return (h + self.shortcut(x)) * math.sqrt(0.5)


class _Upsample(nn.Module):
    """Nearest-neighbour 2x resize, then a 3x3 convolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DiffusionUNet(nn.Module):
    """Noise-conditioned residual U-Net ``F(x_in, c_noise, cond)`` (module docstring).

    Parameters
    ----------
    data_channels : int
        Channels of the generated field (1: the residual), >= 1.
    cond_channels : int
        Conditioning channels, >= 0.
    size : NetworkSize or str
        A :class:`NetworkSize` or a name in :data:`NETWORK_SIZES`.
    """

    frequencies: torch.Tensor

    def __init__(self, data_channels: int, cond_channels: int, size: NetworkSize | str = "laptop") -> None:
        super().__init__()
        if isinstance(size, str):
            if size not in NETWORK_SIZES:
                raise ValueError(f"unknown network size {size!r}; valid: {', '.join(sorted(NETWORK_SIZES))}")
            size = NETWORK_SIZES[size]
        _check_size(size, data_channels, cond_channels)
        self.data_channels = data_channels
        self.cond_channels = cond_channels
        self.size = size
        widths, n_blocks, emb = size.widths, size.blocks_per_level, size.embed_dim
        self.register_buffer("frequencies", torch.logspace(0.0, math.log10(128.0), size.n_frequencies),
                             persistent=False)
        self.embed = nn.Sequential(nn.Linear(2 * size.n_frequencies, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.stem = nn.Conv2d(data_channels + cond_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        c = widths[0]
        for width in widths:
            level = nn.ModuleList()
            for _ in range(n_blocks):
                level.append(_Block(c, width, emb, size.dropout, size.norm))
                c = width
            self.down.append(level)
        self.ups = nn.ModuleList()
        self.up = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.ups.append(_Upsample(c, width))
            level = nn.ModuleList([_Block(2 * width, width, emb, size.dropout, size.norm)])
            level.extend(_Block(width, width, emb, size.dropout, size.norm) for _ in range(n_blocks - 1))
            self.up.append(level)
            c = width
        self.head_norm = _norm(size.norm, c)
        self.head = nn.Conv2d(c, data_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        if self.head.bias is not None:
            nn.init.zeros_(self.head.bias)

    def _embedding(self, c_noise: torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
        c = c_noise.to(like.dtype).reshape(-1)
        if c.numel() == 1:
            c = c.expand(batch)
        if c.shape != (batch,):
            raise ValueError(f"c_noise must be a scalar or have shape ({batch},), got {tuple(c_noise.shape)}")
        angles = c[:, None] * self.frequencies.to(like.dtype)[None, :]
        return self.embed(torch.cat([torch.cos(angles), torch.sin(angles)], dim=1))

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Raw network output, shape (B, data_channels, H, W), for inputs (B, C, H, W)."""
        if x_in.ndim != 4 or x_in.shape[1] != self.data_channels:
            raise ValueError(f"x_in must have shape (B, {self.data_channels}, H, W), got {tuple(x_in.shape)}")
        if self.cond_channels:
            if cond is None or cond.shape[1] != self.cond_channels or cond.shape[2:] != x_in.shape[2:]:
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"cond must have shape (B, {self.cond_channels}, H, W) like x_in, got {got}")
            x_in = torch.cat([x_in, cond.to(x_in.dtype)], dim=1)
        emb = self._embedding(c_noise, x_in.shape[0], x_in)
        ny, nx = x_in.shape[2:]
        multiple = 2 ** (len(self.size.widths) - 1)
        pad_y, pad_x = -ny % multiple, -nx % multiple
        if pad_y or pad_x:
            padding = (pad_x // 2, pad_x - pad_x // 2, pad_y // 2, pad_y - pad_y // 2)
            x_in = F.pad(x_in, padding, mode="replicate")
        h = self.stem(x_in)
        skips = []
        for i, level in enumerate(self.down):
            if i > 0:
                h = F.avg_pool2d(h, 2)
            for block in cast(nn.ModuleList, level):
                h = block(h, emb)
            skips.append(h)
        skips.pop()
        for upsample, level in zip(self.ups, self.up, strict=True):
            h = torch.cat([upsample(h), skips.pop()], dim=1)
            for block in cast(nn.ModuleList, level):
                h = block(h, emb)
        out = self.head(F.silu(self.head_norm(h)))
        top, left = pad_y // 2, pad_x // 2
        return out[:, :, top : top + ny, left : left + nx]


def _check_size(size: NetworkSize, data_channels: int, cond_channels: int) -> None:
    if data_channels < 1 or cond_channels < 0:
        raise ValueError(f"need data_channels >= 1 and cond_channels >= 0, got {data_channels}, {cond_channels}")
    if not size.widths or any(w < 1 for w in size.widths) or size.blocks_per_level < 1:
        raise ValueError(f"widths must be positive and blocks_per_level >= 1, got {size}")
    if size.embed_dim < 1 or size.n_frequencies < 1 or not 0 <= size.dropout < 1:
        raise ValueError(f"embed_dim and n_frequencies must be >= 1 and dropout in [0, 1), got {size}")
    if size.norm not in ("channel", "group"):
        raise ValueError(f"unknown norm {size.norm!r}; valid: channel, group")


def build_network(data_channels: int, cond_channels: int, size: NetworkSize | str | Sequence[int]) -> DiffusionUNet:
    """A :class:`DiffusionUNet`; ``size`` may also be a sequence of widths (1 block per level)."""
    if not isinstance(size, (NetworkSize, str)):
        size = NetworkSize(widths=tuple(int(w) for w in size))
    net = DiffusionUNet(data_channels, cond_channels, size)
    logger.debug("diffusion U-Net %s: %d parameters", net.size, count_parameters(net))
    return net


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
