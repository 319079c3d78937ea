"""EDM preconditioning, the denoiser wrapper, training noise levels and the masked loss.

Karras et al. (2022) write the denoiser that maps a noisy sample ``x = y + sigma * n``
(clean ``y`` with second moment ``sigma_data**2`` per element, ``n ~ N(0, I)``) back to
an estimate of ``y`` as

    D(x; sigma, cond) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma), cond)

with (their Table 1, "EDM" column)

    c_skip  = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out   = sigma * sigma_data / sqrt(sigma**2 + sigma_data**2)
    c_in    = 1 / sqrt(sigma**2 + sigma_data**2)
    c_noise = ln(sigma) / 4

so that the network ``F`` sees inputs and targets of unit variance at every noise
level. Training draws ``ln(sigma) ~ N(P_mean, P_std**2)`` (defaults -1.2 and 1.2) and
minimises ``lambda(sigma) * |D(y + sigma n; sigma) - y|**2`` with

    lambda(sigma) = (sigma**2 + sigma_data**2) / (sigma * sigma_data)**2,

which makes the effective loss of ``F`` ``|F - F_target|**2`` with unit weight.

Here ``y`` is the residual of :func:`pqpf.diffusion.target.residual_target` (the
log1p amount minus the U-Net's central estimate). ``sigma_data`` is a hyper-parameter;
:func:`estimate_sigma_data` gives the masked root mean square of the training
residuals, the quantity the preconditioning assumes (EDM's 0.5 was chosen for images
scaled to [-1, 1]). The training noise levels are absolute, so when ``sigma_data``
differs much from 0.5, shift ``P_mean`` by ``ln(sigma_data / 0.5)`` to keep them where
the data's structure is (tests/diffusion/test_training.py: a mixture with
``sigma_data = 1.4`` learns its weights to 0.01-0.02 with ``P_mean = -0.2``, to 0.05 with
-1.2).

References
----------
Karras, T., M. Aittala, T. Aila and S. Laine (2022). Elucidating the design space of
diffusion-based generative models. NeurIPS 35, arXiv:2206.00364.
Pathak, J. and co-authors (2024). Kilometer-scale convection allowing model emulation
using generative diffusion modeling. arXiv:2408.10958 (StormCast).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Protocol, TypeVar

import torch
from torch import nn

__all__ = [
    "SIGMA_DATA",
    "P_MEAN",
    "P_STD",
    "DenoiserNetwork",
    "edm_preconditioning",
    "edm_loss_weight",
    "EDMDenoiser",
    "sample_training_sigma",
    "masked_edm_loss",
    "estimate_sigma_data",
]

logger = logging.getLogger(__name__)

#: EDM's defaults (Karras et al. 2022, Table 1).
SIGMA_DATA = 0.5
P_MEAN = -1.2
P_STD = 1.2

_Sigma = TypeVar("_Sigma", float, torch.Tensor)


class DenoiserNetwork(Protocol):
    """The raw network ``F(c_in x, c_noise, cond)``: shapes (B, C, ...), (B,), (B, C_cond, ...)."""

    def __call__(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        ...  # pragma: no cover - protocol


def _check_sigma_data(sigma_data: float) -> None:
    if not (isinstance(sigma_data, (int, float)) and math.isfinite(sigma_data) and sigma_data > 0):
        raise ValueError(f"sigma_data must be a positive finite number, got {sigma_data!r}")


def _sqrt(value: _Sigma) -> _Sigma:
    return torch.sqrt(value) if isinstance(value, torch.Tensor) else math.sqrt(value)


def edm_preconditioning(sigma: _Sigma, sigma_data: float = SIGMA_DATA) -> tuple[_Sigma, _Sigma, _Sigma, _Sigma]:
    """EDM's ``c_skip, c_out, c_in, c_noise`` at noise level ``sigma``.

    Parameters
    ----------
    sigma : float or tensor, any shape
        Noise standard deviation, > 0, in the units of the data (here: log1p mm).
    sigma_data : float
        Root mean square of the clean data, > 0.

    Returns
    -------
    c_skip, c_out, c_in, c_noise : same type and shape as ``sigma``
        ``sd^2/(s^2+sd^2)``, ``s sd/sqrt(s^2+sd^2)``, ``1/sqrt(s^2+sd^2)``, ``ln(s)/4``.

    References
    ----------
    Karras et al. (2022), Table 1 and Appendix B.6.
    """
    _check_sigma_data(sigma_data)
    total = sigma**2 + sigma_data**2
    root = _sqrt(total)
    c_noise = torch.log(sigma) / 4 if isinstance(sigma, torch.Tensor) else math.log(sigma) / 4
    return sigma_data**2 / total, sigma * sigma_data / root, 1 / root, c_noise


def edm_loss_weight(sigma: _Sigma, sigma_data: float = SIGMA_DATA) -> _Sigma:
    """EDM's loss weighting ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``.

    Equal to ``1 / c_out(sigma)**2``, so the weighted denoiser error is the unit-weight
    error of the raw network (Karras et al. 2022, eq. 8 and Table 1).
    """
    _check_sigma_data(sigma_data)
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


class EDMDenoiser(nn.Module):
    """The preconditioned denoiser ``D(x; sigma, cond) = c_skip x + c_out F(c_in x, c_noise, cond)``.

    Parameters
    ----------
    net : nn.Module
        The raw network ``F`` (see :class:`DenoiserNetwork`), e.g.
        :class:`pqpf.diffusion.network.DiffusionUNet`.
    sigma_data : float
        Root mean square of the clean data (the residual), > 0.
    """

    def __init__(self, net: nn.Module, sigma_data: float = SIGMA_DATA) -> None:
        super().__init__()
        _check_sigma_data(sigma_data)
        self.net = net
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise.

        Parameters
        ----------
        x : tensor, shape (B, C, ...)
            Noisy data.
        sigma : float or tensor of shape () or (B,)
            Noise level of each sample, > 0.
        cond : tensor, shape (B, C_cond, ...), optional
            Conditioning channels, passed to ``F`` unchanged.

        Returns
        -------
        tensor, shape (B, C, ...)
            The estimate of the clean data; computed in ``x``'s dtype.
        """
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if sig.numel() == 1:
            sig = sig.expand(x.shape[0])
        if sig.shape != (x.shape[0],):
            raise ValueError(f"sigma must be a scalar or have shape ({x.shape[0]},), got {tuple(sig.shape)}")
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sig, self.sigma_data)
        view = (-1,) + (1,) * (x.ndim - 1)
        f = self.net(x * c_in.reshape(view), c_noise, cond)
        return c_skip.reshape(view) * x + c_out.reshape(view) * f.to(x.dtype)


def sample_training_sigma(
    n: int,
    p_mean: float = P_MEAN,
    p_std: float = P_STD,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Training noise levels, log-normal: ``ln(sigma) ~ N(p_mean, p_std**2)``, shape (n,).

    References
    ----------
    Karras et al. (2022), section 5 and Table 1 (``P_mean = -1.2``, ``P_std = 1.2``).
    """
    if not p_std >= 0:
        raise ValueError(f"p_std must be >= 0, got {p_std}")
    z = torch.randn(n, generator=generator, dtype=dtype, device=device or "cpu")
    return torch.exp(p_mean + p_std * z)


def masked_edm_loss(
    denoiser: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    clean: torch.Tensor,
    weight: torch.Tensor,
    cond: torch.Tensor | None = None,
    *,
    sigma_data: float = SIGMA_DATA,
    p_mean: float = P_MEAN,
    p_std: float = P_STD,
    generator: torch.Generator | None = None,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted-mean EDM loss over the points with positive weight.

    ``loss = sum(w * lambda(sigma) * (D(y + sigma n; sigma, cond) - y)**2) / sum(w)``.

    Points with zero weight (poor or missing MRMS) contribute exactly zero to the loss
    and to every gradient: their clean value is replaced by 0 (the neutral residual)
    before the noise is added, so a NaN there never reaches the network, and their
    squared error is dropped with ``torch.where``, not multiplied by zero.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma, cond)``, e.g. an :class:`EDMDenoiser`.
    clean : tensor, shape (B, C, ...)
        The clean data ``y`` (residual in log1p mm); may be NaN where ``weight`` is 0.
    weight : tensor, same shape as ``clean``
        Non-negative point weights (bool is taken as 0/1), e.g. the quality mask times
        the patch sampling weight.
    cond : tensor, shape (B, C_cond, ...), optional
    sigma_data, p_mean, p_std : float
        As in :func:`edm_loss_weight` and :func:`sample_training_sigma`.
    generator : torch.Generator, optional
        Source of ``sigma`` and ``n`` (drawn in that order) when they are not given.
    sigma : tensor, shape (B,), optional
        Noise levels to use instead of drawing them.
    noise : tensor, same shape as ``clean``, optional
        Standard normal noise ``n`` to use instead of drawing it.

    Returns
    -------
    loss : 0-d tensor
        Weighted mean; 0 (with a ``grad_fn``, zero gradients) when no weight is positive.
    weight_sum : 0-d tensor (detached)
        The denominator; accumulate ``loss * weight_sum`` and ``weight_sum`` over
        batches for an exact epoch mean.
    """
    if tuple(weight.shape) != tuple(clean.shape):
        raise ValueError(f"weight must have the shape of clean {tuple(clean.shape)}, got {tuple(weight.shape)}")
    w = weight.to(clean.dtype)
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError("weight must be finite and non-negative")
    valid = w > 0
    y = torch.where(valid, clean, torch.zeros_like(clean))
    if sigma is None:
        sigma = sample_training_sigma(clean.shape[0], p_mean, p_std, generator, clean.device, clean.dtype)
    if noise is None:
        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
    view = (-1,) + (1,) * (clean.ndim - 1)
    sig = sigma.to(clean.dtype).reshape(view)
    denoised = denoiser(y + sig * noise, sigma.to(clean.dtype), cond)
    sq_error = edm_loss_weight(sig, sigma_data) * (denoised - y) ** 2
    per_point = torch.where(valid, sq_error * w, torch.zeros_like(sq_error))
    weight_sum = w.sum().detach()
    return per_point.sum() / weight_sum.clamp_min(torch.finfo(clean.dtype).tiny), weight_sum


def estimate_sigma_data(residual: torch.Tensor, weight: torch.Tensor) -> float:
    """Weighted root mean square of the clean residual, ``sqrt(sum w y^2 / sum w)``.

    The EDM preconditioning assumes ``E[y^2] = sigma_data^2`` (second moment about 0,
    not the variance), so this is the value to pass as ``sigma_data``. Points with zero
    weight (and NaN there) are ignored.

    Raises
    ------
    ValueError
        If no weight is positive.
    """
    w = weight.to(torch.float64)
    valid = w > 0
    if not bool(valid.any()):
        raise ValueError("no point with positive weight to estimate sigma_data from")
    y = torch.where(valid, residual.to(torch.float64), torch.zeros_like(w))
    return float(torch.sqrt((w * y**2).sum() / w.sum()))
