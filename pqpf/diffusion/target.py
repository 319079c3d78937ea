"""What the diffusion model generates, and what it is conditioned on from the U-Net.

Transform
---------
Amounts are modelled in ``z = log1p(amount_mm)`` (:func:`transform_amount`), which
compresses heavy rain (40 mm -> 3.7) while keeping light amounts nearly linear; the way
back is ``max(expm1(z), 0)`` (:func:`inverse_transform_amount`), so a member can be
exactly dry.

Central estimate
----------------
The residual target is ``r = log1p(MRMS) - mu`` (:func:`residual_target`), where ``mu`` is
the exact mean of ``log1p(Y)`` under the U-Net's binned distribution of ``Y``
(:func:`central_estimate`). The mean, not the median, because it is linear in the bin
probabilities: ``mu = sum_k p_k m_k`` with per-bin constants ``m_k`` that depend only on
the edges (:func:`bin_log1p_moments`), so it can be blended by the tent-weight stitcher
as a ``reduction`` and computed in torch during training at no cost; and it is the
minimiser of the squared error in the transformed space, which makes the residual
centred wherever the U-Net is calibrated. Within the bins:

* closed bins ``[a, b)``, k >= 1: uniform, as in :func:`pqpf.model.quantiles`;
  ``m_k = [G(b) - G(a)] / (b - a)`` with ``G(y) = (1 + y) ln(1 + y) - y``;
* the open last bin ``[e, inf)``: exponential with mean excess ``s`` (default: the width
  of the bin below, as in :func:`pqpf.model.quantiles`); ``m = ln(1 + e) + exp(x) E1(x)``,
  ``x = (1 + e) / s`` (``E1`` the exponential integral; from ``E ln(1 + E / x)`` for
  ``E ~ Exp(1)``, integrated by parts);
* the first bin ``[0, e_1)``: ``dry_bin="point"`` (default) puts its mass at exactly 0
  mm, so a pixel the U-Net is sure is dry has ``mu = 0`` and, when MRMS is dry, a zero
  residual (the residual field is then sparse, like rain); ``"uniform"`` spreads it
  uniformly over ``[0, e_1)`` like :func:`pqpf.model.quantiles`. Exceedance
  probabilities at every edge >= ``e_1`` are the same under both.

Second moments (for the U-Net's spread in ``z``) use ``H(y) = (1 + y)(L^2 - 2 L + 2)``,
``L = ln(1 + y)``, in closed bins and adaptive quadrature in the tail.

Conditioning summaries
----------------------
:func:`unet_summaries` turns bin probabilities into ``2 + T`` channels: ``mu``, the
standard deviation of ``log1p(Y)``, and ``P(Y >= t)`` for T thresholds. All come from
one linear map (:func:`summary_matrix`, usable as the stitcher's ``reduction``) followed
by :func:`summaries_from_reduced`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import integrate, special

from pqpf.ordinal import exceedance_matrix, validate_bin_edges

__all__ = [
    "DryBin",
    "transform_amount",
    "inverse_transform_amount",
    "bin_log1p_moments",
    "central_estimate",
    "summary_matrix",
    "summaries_from_reduced",
    "unet_summaries",
    "residual_target",
    "amount_from_residual",
]

DryBin = Literal["point", "uniform"]
_DRY_BINS = ("point", "uniform")

_Array = TypeVar("_Array", NDArray[Any], torch.Tensor)


def transform_amount(amount_mm: _Array) -> _Array:
    """``log1p(amount_mm)``, negative amounts (round-off) taken as 0; NaN stays NaN."""
    if isinstance(amount_mm, torch.Tensor):
        return torch.log1p(amount_mm.clamp_min(0.0))
    a = np.asarray(amount_mm)
    return np.log1p(np.where(a < 0, 0.0, a)).astype(a.dtype if a.dtype.kind == "f" else np.float64)


def inverse_transform_amount(z: _Array) -> _Array:
    """``max(expm1(z), 0)`` (mm): the amount of a transformed value; NaN stays NaN."""
    if isinstance(z, torch.Tensor):
        return torch.expm1(z).clamp_min(0.0)
    out = np.expm1(np.asarray(z))
    return np.where(out < 0, np.zeros_like(out), out)


def _check_dry_bin(dry_bin: str) -> None:
    if dry_bin not in _DRY_BINS:
        raise ValueError(f"unknown dry_bin {dry_bin!r}; valid: {', '.join(_DRY_BINS)}")


def _tail_scale(edges: NDArray[np.float64], tail_scale_mm: float | None) -> float:
    scale = float(edges[-1] - edges[-2]) if tail_scale_mm is None else float(tail_scale_mm)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"tail_scale_mm must be positive and finite, got {tail_scale_mm}")
    return scale


def _scaled_exp1(x: float) -> float:
    """``exp(x) E1(x)`` for x > 0, without overflow (asymptotic series beyond 500)."""
    if x > 500.0:
        return (1.0 - 1.0 / x + 2.0 / x**2 - 6.0 / x**3 + 24.0 / x**4) / x
    return float(math.exp(x) * special.exp1(x))


def bin_log1p_moments(
    edges_mm: Sequence[float] | NDArray[np.floating],
    tail_scale_mm: float | None = None,
    dry_bin: DryBin = "point",
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """First and second moments of ``log1p(Y)`` within each bin.

    Parameters
    ----------
    edges_mm : sequence of float, length K
        Bin lower edges (mm), validated by :func:`pqpf.bins.validate_bin_edges`.
    tail_scale_mm : float, optional
        Mean excess (mm) of the exponential in the open last bin; default the width of
        the bin below.
    dry_bin : {"point", "uniform"}
        The first bin as a point mass at 0 mm, or uniform over ``[0, e_1)``.

    Returns
    -------
    mean, second : float64 arrays, shape (K,)
        ``E[log1p(Y) | bin k]`` and ``E[log1p(Y)**2 | bin k]`` (closed forms, module
        docstring; the tail's second moment by adaptive quadrature, ~1e-12 relative).
    """
    _check_dry_bin(dry_bin)
    edges = validate_bin_edges(edges_mm)
    scale = _tail_scale(edges, tail_scale_mm)
    a, b = edges[:-1], edges[1:]
    la, lb = np.log1p(a), np.log1p(b)
    g1 = (1 + b) * lb - b - ((1 + a) * la - a)
    g2 = (1 + b) * (lb**2 - 2 * lb + 2) - (1 + a) * (la**2 - 2 * la + 2)
    mean = np.empty(edges.size)
    second = np.empty(edges.size)
    mean[:-1] = g1 / (b - a)
    second[:-1] = g2 / (b - a)
    x = (1.0 + edges[-1]) / scale
    log_e = math.log1p(edges[-1])
    m1 = _scaled_exp1(x)
    m2, _ = integrate.quad(lambda t: math.log1p(t / x) ** 2 * math.exp(-t), 0.0, math.inf,
                           epsabs=0.0, epsrel=1e-12, limit=200)
    mean[-1] = log_e + m1
    second[-1] = log_e**2 + 2 * log_e * m1 + m2
    if dry_bin == "point":
        mean[0] = second[0] = 0.0
    return mean, second


def _contract(probs: _Array, vectors: NDArray[np.float64], dim: int) -> _Array:
    """``sum_k probs[..., k, ...] * vectors[r, k]`` with the bin axis ``dim`` replaced by r."""
    if isinstance(probs, torch.Tensor):
        mat = torch.as_tensor(vectors, dtype=probs.dtype, device=probs.device)
        return torch.movedim(torch.tensordot(torch.movedim(probs, dim, -1), mat.T, dims=1), -1, dim)
    p = np.asarray(probs)
    out = np.moveaxis(np.tensordot(np.moveaxis(p, dim, -1), vectors.T, axes=1), -1, dim)
    return out.astype(p.dtype if p.dtype.kind == "f" else np.float64)


def _check_bins(probs: _Array, n_bins: int, dim: int) -> None:
    if probs.ndim == 0 or probs.shape[dim] != n_bins:
        raise ValueError(f"probs must have {n_bins} bins along dim {dim}, got shape {tuple(probs.shape)}")


def central_estimate(
    probs: _Array,
    edges_mm: Sequence[float] | NDArray[np.floating],
    dim: int = 1,
    tail_scale_mm: float | None = None,
    dry_bin: DryBin = "point",
) -> _Array:
    """The U-Net's central estimate: the mean of ``log1p(Y)`` under its bin probabilities.

    Parameters
    ----------
    probs : float array or tensor, K bins along ``dim`` (e.g. (B, K, H, W) or (K, H, W))
        Bin probabilities, summing to 1.
    edges_mm, tail_scale_mm, dry_bin
        See :func:`bin_log1p_moments`.
    dim : int
        The bin axis.

    Returns
    -------
    array or tensor (the type of ``probs``)
        ``sum_k p_k m_k`` in log1p mm, with the bin axis kept at length 1.
    """
    mean, _ = bin_log1p_moments(edges_mm, tail_scale_mm, dry_bin)
    _check_bins(probs, mean.size, dim)
    return _contract(probs, mean[None, :], dim)


def summary_matrix(
    edges_mm: Sequence[float] | NDArray[np.floating],
    thresholds_mm: Sequence[float] = (),
    tail_scale_mm: float | None = None,
    dry_bin: DryBin = "point",
) -> NDArray[np.float64]:
    """Linear map (2 + T, K) from bin probabilities to ``E[z], E[z^2], P(Y >= t_1..t_T)``.

    ``z = log1p(Y)``. Pass it as ``reduction`` to :func:`pqpf.stitching.stitch` and
    finish with :func:`summaries_from_reduced`. Every threshold must be a bin edge.
    """
    mean, second = bin_log1p_moments(edges_mm, tail_scale_mm, dry_bin)
    rows = [mean[None, :], second[None, :]]
    if len(thresholds_mm):
        rows.append(exceedance_matrix(list(np.asarray(edges_mm, dtype=float)), thresholds_mm).astype(np.float64))
    return np.concatenate(rows, axis=0)


def summaries_from_reduced(reduced: _Array, dim: int = 1) -> _Array:
    """Turn ``E[z], E[z^2], P...`` along ``dim`` into ``mu, std(z), P...`` (same shape).

    The variance ``E[z^2] - mu^2`` is clipped at 0 (rounding) before the square root;
    probabilities are clipped to [0, 1].
    """
    if reduced.ndim == 0 or reduced.shape[dim] < 2:
        raise ValueError(f"reduced needs at least 2 channels along dim {dim}, got shape {tuple(reduced.shape)}")
    if isinstance(reduced, torch.Tensor):
        mu, m2, probs = torch.split(reduced, [1, 1, reduced.shape[dim] - 2], dim=dim)
        std = torch.sqrt((m2 - mu**2).clamp_min(0.0))
        return torch.cat([mu, std, probs.clamp(0.0, 1.0)], dim=dim)
    r = np.asarray(reduced)
    mu, m2, probs = np.split(r, [1, 2], axis=dim)
    std = np.sqrt(np.maximum(m2 - mu**2, 0.0))
    return np.concatenate([mu, std, np.clip(probs, 0.0, 1.0)], axis=dim).astype(r.dtype)


def unet_summaries(
    probs: _Array,
    edges_mm: Sequence[float] | NDArray[np.floating],
    thresholds_mm: Sequence[float] = (),
    dim: int = 1,
    tail_scale_mm: float | None = None,
    dry_bin: DryBin = "point",
) -> _Array:
    """Conditioning channels from bin probabilities: ``mu, std(log1p Y), P(Y >= t)...``.

    Parameters
    ----------
    probs : float array or tensor, K bins along ``dim``
    edges_mm, thresholds_mm, tail_scale_mm, dry_bin
        See :func:`summary_matrix`.
    dim : int
        The bin axis; replaced by ``2 + T`` channels.
    """
    matrix = summary_matrix(edges_mm, thresholds_mm, tail_scale_mm, dry_bin)
    _check_bins(probs, matrix.shape[1], dim)
    return summaries_from_reduced(_contract(probs, matrix, dim), dim)


def residual_target(amount_mm: _Array, central: _Array) -> _Array:
    """``log1p(amount_mm) - central``: the clean sample the diffusion model learns.

    ``amount_mm`` NaN (missing MRMS) gives NaN; mask it in the loss
    (:func:`pqpf.diffusion.edm.masked_edm_loss` never lets it reach the network).
    """
    return transform_amount(amount_mm) - central


def amount_from_residual(residual: _Array, central: _Array) -> _Array:
    """The amount (mm) of a generated residual: ``max(expm1(residual + central), 0)``."""
    return inverse_transform_amount(residual + central)
