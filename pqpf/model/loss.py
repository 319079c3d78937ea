"""Proper scoring loss over ordinal bins: the (weighted) ranked probability score, plus the log score.

With bin lower edges ``e_0 = 0 < e_1 < ... < e_{K-1}`` (last bin open), forecast bin
probabilities ``p_k`` and an observed amount ``y``, the score at one point is

    S = sum_{k=1}^{K-1} w_k (F_k - O_k)^2,   F_k = sum_{j<k} p_j = P(obs < e_k),
                                           O_k = 1[y < e_k],

a weighted sum of Brier scores of the events ``obs < e_k``, hence proper for any
weights ``w_k >= 0`` (Epstein 1969; Gneiting and Raftery 2007). Schemes
(:data:`pqpf.ordinal.EDGE_WEIGHT_SCHEMES`):

* ``"rps"``: ``w_k = 1`` (the ranked probability score, unnormalised).
* ``"crps"``: ``w_k = e_k - e_{k-1}`` (mm), the width of the bin BELOW edge k. Then S is
  exactly the CRPS (mm) between the discretised forecast, which puts mass ``p_k`` at
  the bin's lower edge ``e_k``, and the observation moved to the lower edge of its bin:
  both CDFs are steps at the edges, equal to ``F_k`` and ``O_k`` on ``[e_{k-1}, e_k)``
  and equal to each other beyond ``e_{K-1}``.
* ``"threshold"``: RPS with weight :data:`THRESHOLD_EDGE_WEIGHT` (3) on the edges that
  are probability thresholds and 1 on the others; with the default 14 bins and 6
  thresholds, the thresholds carry 18/25 of the total weight, so the network spends its
  capacity on the probabilities that are issued while the other edges keep the
  distribution coherent.

Optionally the log score of the observed bin is added (``log_weight`` lambda >= 0):

    S = sum_k w_k (F_k - O_k)^2 + lambda * (-log p_{k(y)}),

still proper (a sum of proper scores). Why (docs/calibration.md, section 11): under a
softmax head the RPS does not pin the frequency of rare bins. The derivative of the
summed RPS with respect to the head bias of bin j weighs every point by its own ``p_j``,
so at the RPS's optimum the heavy bins are calibrated only where the network already
forecasts heavy rain, and a Brier score barely sees a small probability that is two or
three times too high. The log score's derivative is ``p_j - 1[y in bin j]`` at every
point, so where it is stationary the bins' forecast frequencies equal their observed
ones: with only the head biases refitted on the demo's training patches, the RPS optimum
forecast 2.7 times the observed events of 5 mm or more, the log score's exactly 1.

Points where the MRMS quality is below the configured minimum or the amount is missing
are masked: they contribute exactly zero to the loss and to every gradient.

References
----------
Epstein, E. S. (1969). A scoring system for probability forecasts of ranked categories.
J. Appl. Meteor., 8, 985-987.
Gneiting, T. and A. E. Raftery (2007). Strictly proper scoring rules, prediction, and
estimation. J. Amer. Stat. Assoc., 102, 359-378.
Good, I. J. (1952). Rational decisions. J. Roy. Stat. Soc. B, 14, 107-114.
Hersbach, H. (2000). Decomposition of the continuous ranked probability score for
ensemble prediction systems. Wea. Forecasting, 15, 559-570.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from pqpf.ordinal import bin_index, cdf_at_edges, edge_weights, reaches, validate_bin_edges

__all__ = ["rps_per_pixel", "log_score_per_pixel", "masked_rps_loss"]


def rps_per_pixel(
    logits: torch.Tensor,
    obs_mm: torch.Tensor,
    edges_mm: Sequence[float],
    weights: NDArray[np.floating] | Sequence[float],
) -> torch.Tensor:
    """Weighted ranked probability score at every point.

    Parameters
    ----------
    logits : tensor, shape (B, K, H, W)
        Network output; the score is computed in float32 even under mixed precision
        (float64 logits stay float64).
    obs_mm : tensor, shape (B, H, W)
        Observed amounts (mm). Must be finite where the result is used; NaN simply
        gives ``O_k = 0`` (use :func:`masked_rps_loss` to exclude such points).
    edges_mm : sequence of float, length K
        Bin lower edges.
    weights : sequence of float, length K-1
        Edge weights from :func:`pqpf.ordinal.edge_weights`.

    Returns
    -------
    float32 (or float64) tensor, shape (B, H, W), >= 0.
    """
    edges = validate_bin_edges(edges_mm)
    w = np.asarray(weights, dtype=np.float64)
    if logits.ndim != 4 or logits.shape[1] != edges.size:
        raise ValueError(f"logits must be (B, {edges.size}, H, W), got {tuple(logits.shape)}")
    if tuple(obs_mm.shape) != (logits.shape[0],) + tuple(logits.shape[2:]):
        raise ValueError(
            f"obs_mm must be (B, H, W) = {(logits.shape[0],) + tuple(logits.shape[2:])}, "
            f"got {tuple(obs_mm.shape)}"
        )
    if w.shape != (edges.size - 1,) or (w < 0).any():
        raise ValueError(f"weights must be {edges.size - 1} non-negative values, got {w.tolist()}")
    z = logits if logits.dtype == torch.float64 else logits.float()
    cdf = cdf_at_edges(torch.softmax(z, dim=1), dim=1)
    inner = torch.as_tensor(edges[1:], dtype=z.dtype, device=z.device).view(1, -1, 1, 1)
    obs_cdf = (~reaches(obs_mm.to(z.dtype).unsqueeze(1), inner)).to(z.dtype)  # O_k = 1{obs < e_k}
    wt = torch.as_tensor(w, dtype=z.dtype, device=z.device).view(1, -1, 1, 1)
    return (wt * (cdf - obs_cdf) ** 2).sum(dim=1)


def log_score_per_pixel(logits: torch.Tensor, obs_mm: torch.Tensor, edges_mm: Sequence[float]) -> torch.Tensor:
    """Log score (ignorance, nats) of the observed amount's bin at every point.

    Parameters
    ----------
    logits : tensor, shape (B, K, H, W)
        Network output; computed in float32 (float64 stays float64).
    obs_mm : tensor, shape (B, H, W)
        Observed amounts (mm); a NaN amount scores bin 0 (use :func:`masked_rps_loss` to
        exclude such points).
    edges_mm : sequence of float, length K
        Bin lower edges.

    Returns
    -------
    tensor, shape (B, H, W): ``-log p_k`` with ``k`` the observation's bin, >= 0.
    """
    edges = validate_bin_edges(edges_mm)
    if logits.ndim != 4 or logits.shape[1] != edges.size:
        raise ValueError(f"logits must be (B, {edges.size}, H, W), got {tuple(logits.shape)}")
    z = logits if logits.dtype == torch.float64 else logits.float()
    k = bin_index(obs_mm, edges).clamp(min=0)
    return -torch.log_softmax(z, dim=1).gather(1, k.unsqueeze(1)).squeeze(1)


def masked_rps_loss(
    logits: torch.Tensor,
    obs_mm: torch.Tensor,
    mask: torch.Tensor,
    edges_mm: Sequence[float],
    scheme: str = "rps",
    sample_weight: torch.Tensor | None = None,
    thresholds_mm: Sequence[float] | None = None,
    log_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean score over valid points, weighted per sample.

    ``loss = sum_b s_b sum_{valid (h,w)} S_bhw / sum_b s_b n_valid_b`` with sample
    weights ``s_b`` (1 when omitted), so a sample of weight 0 is the same as dropping it.
    Points outside ``mask`` or with a non-finite amount are replaced (``torch.where``,
    before any arithmetic) by a dummy forecast and observation and then excluded: they
    contribute exactly 0 to the loss and get exactly 0 gradient, whatever their logits
    or NaN amounts.

    Parameters
    ----------
    logits : tensor, shape (B, K, H, W)
    obs_mm : tensor, shape (B, H, W)
        MRMS amounts (mm), NaN where missing.
    mask : bool tensor, shape (B, H, W)
        True where the point may be used (e.g. :func:`pqpf.quality.good_quality_mask`).
    edges_mm : sequence of float, length K
    scheme : str
        See :func:`pqpf.ordinal.edge_weights`.
    sample_weight : tensor, shape (B,), optional
        Non-negative per-sample weights (the patch sampling weights).
    thresholds_mm : sequence of float, optional
        Needed by the ``"threshold"`` scheme.
    log_weight : float
        Weight lambda >= 0 of the log score of the observed bin added to each point's
        score (:func:`log_score_per_pixel`; 0: the RPS alone).

    Returns
    -------
    loss : 0-d float32 tensor
        The weighted mean score (0, still with a ``grad_fn`` when logits require grad,
        and zero gradients, when no point is valid).
    n_valid : 0-d float32 tensor (detached)
        The denominator: the number of valid points, each counted with its sample's
        weight. Accumulate ``loss * n_valid`` and ``n_valid`` over batches for an exact
        epoch mean.
    """
    weights = edge_weights(edges_mm, scheme, thresholds_mm)
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(obs_mm.shape):
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(obs_mm.shape)}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    valid = mask & torch.isfinite(obs_mm)
    safe_obs = torch.where(valid, obs_mm, torch.zeros_like(obs_mm))
    safe_logits = torch.where(valid.unsqueeze(1), logits, torch.zeros_like(logits))
    if not (math.isfinite(log_weight) and log_weight >= 0):
        raise ValueError(f"log_weight must be finite and >= 0, got {log_weight}")
    score = rps_per_pixel(safe_logits, safe_obs, edges_mm, weights)
    if log_weight > 0:
        score = score + log_weight * log_score_per_pixel(safe_logits, safe_obs, edges_mm)
    b = logits.shape[0]
    if sample_weight is None:
        sw = torch.ones(b, dtype=score.dtype, device=score.device)
    else:
        sw = torch.as_tensor(sample_weight, device=score.device).to(score.dtype)
        if tuple(sw.shape) != (b,):
            raise ValueError(f"sample_weight must have shape ({b},), got {tuple(sw.shape)}")
        if not bool(torch.isfinite(sw).all()) or bool((sw < 0).any()):
            raise ValueError("sample_weight must be finite and non-negative")
    pix_w = torch.where(valid, sw.view(-1, 1, 1).expand_as(score), torch.zeros_like(score))
    numerator = (score * pix_w).sum()
    denominator = pix_w.sum()
    loss = numerator / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return loss, denominator.detach()
