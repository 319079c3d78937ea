"""The ordinal amount bins, in one place: edges, events, bin indices, probabilities.

Bins are given by their LOWER edges ``e_0 = 0 < e_1 < ... < e_{K-1}`` (mm): bin ``k`` is
``[e_k, e_{k+1})`` and the last bin is open above. ``P(obs >= e_k)`` is the sum of the
probabilities of bins ``k..K-1``, so every probability threshold must be an edge
(:func:`validate_bin_edges`). The network (:mod:`pqpf.model.resunet`), its loss
(:mod:`pqpf.model.loss`), inference and verification all use these definitions.

Functions take numpy arrays or torch tensors (torch is imported only when a tensor is
passed, so this module is usable without it).

Edge weights of the ranked probability score (:data:`EDGE_WEIGHT_SCHEMES`), the one
registry of loss schemes:

* ``"rps"``: ``w_k = 1`` (the ranked probability score, unnormalised).
* ``"crps"``: ``w_k = e_k - e_{k-1}`` (mm), the width of the bin BELOW edge k: the score
  is then exactly the CRPS of the discretised distributions (mass ``p_k`` at the lower
  edge ``e_k``, the observation moved to the lower edge of its bin).
* ``"threshold"``: weight :data:`THRESHOLD_EDGE_WEIGHT` (3) on the edges that are
  probability thresholds and 1 on the others; with the default 14 bins and 6 thresholds
  the thresholds carry 18/25 of the weight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import torch

__all__ = [
    "ArrayOrTensor",
    "EDGE_ATOL_MM",
    "AMOUNT_ATOL_MM",
    "THRESHOLD_EDGE_WEIGHT",
    "EDGE_WEIGHT_SCHEMES",
    "reaches",
    "validate_bin_edges",
    "edge_index",
    "bin_index",
    "edge_widths_mm",
    "edge_weights",
    "pointwise_quantiles",
    "probs_from_logits",
    "cdf_at_edges",
    "exceedance_matrix",
    "exceedance_probs",
    "bin_probs_from_exceedance",
    "quantiles",
    "stratum_means",
]

#: A numpy array or a torch tensor: the functions below take either and return the same
#: kind (the two libraries share no typed interface, hence ``Any``).
ArrayOrTensor: TypeAlias = Any

#: Two edges or an edge and a threshold closer than this (mm) are the same.
EDGE_ATOL_MM = 1e-6

#: An amount this close below a threshold or bin edge (mm) counts as reaching it. Amounts
#: that are exactly a threshold in the data (MRMS stores 0.1 mm steps) can come out one
#: float32 ulp low after averaging (a uniform 2.5 mm area remaps to 2.4999998 in about
#: half of the cells, 25 mm in a quarter); without the tolerance they would miss the
#: event and fall into the bin below. 1e-4 mm is far below any precipitation data's
#: precision and above the round-off of float32 sums at 40 mm.
AMOUNT_ATOL_MM = 1e-4

#: Weight of a threshold edge relative to the other edges in the "threshold" scheme.
THRESHOLD_EDGE_WEIGHT = 3.0


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def reaches(amount_mm: Any, threshold_mm: Any) -> Any:
    """``amount >= threshold`` up to :data:`AMOUNT_ATOL_MM`: the event definition used
    everywhere (training targets, verification, the GRAF reference). Works on numpy arrays,
    torch tensors and floats, with broadcasting; NaN gives False."""
    return amount_mm >= threshold_mm - AMOUNT_ATOL_MM


def validate_bin_edges(edges_mm: Sequence[float] | ArrayLike, thresholds_mm: Sequence[float] = ()
                       ) -> NDArray[np.float64]:
    """Check bin lower edges and return them as a float64 array.

    Parameters
    ----------
    edges_mm : sequence of float, length K >= 2
        Lower edges (mm): finite, strictly increasing, the first 0.
    thresholds_mm : sequence of float
        Probability thresholds (mm) that must each be one of the edges.

    Raises
    ------
    ValueError
        Naming the problem (and a missing threshold).
    """
    edges = np.asarray(edges_mm, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.isfinite(edges).all():
        raise ValueError(f"bin edges must be at least 2 finite values, got {np.ravel(edges).tolist()}")
    if edges[0] != 0.0:
        raise ValueError(f"the first bin edge must be 0 mm, got {edges[0]}")
    if (np.diff(edges) <= 0).any():
        raise ValueError(f"bin edges must be strictly increasing, got {edges.tolist()}")
    for t in thresholds_mm:
        if not np.isclose(edges, t, rtol=0.0, atol=EDGE_ATOL_MM).any():
            raise ValueError(f"threshold {t} mm is not a bin edge; edges are {[float(e) for e in edges]}")
    return edges


def edge_index(edges_mm: Sequence[float] | ArrayLike, threshold_mm: float) -> int:
    """Index of the edge equal to ``threshold_mm`` (within :data:`EDGE_ATOL_MM`).

    Raises
    ------
    ValueError
        When no edge matches.
    """
    edges = np.asarray(edges_mm, dtype=np.float64)
    k = int(np.argmin(np.abs(edges - threshold_mm)))
    if abs(edges[k] - threshold_mm) > EDGE_ATOL_MM:
        raise ValueError(f"threshold {threshold_mm} mm is not one of {[float(e) for e in edges]}")
    return k


def _threshold_indices(edges: NDArray[np.float64], thresholds_mm: Sequence[float]) -> list[int]:
    validate_bin_edges(edges, thresholds_mm)
    return [edge_index(edges, t) for t in thresholds_mm]


def bin_index(obs_mm: ArrayOrTensor, edges_mm: Sequence[float] | ArrayLike) -> ArrayOrTensor:
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
    up to :data:`AMOUNT_ATOL_MM` (see :func:`reaches`).
    """
    edges = validate_bin_edges(edges_mm)
    if _is_torch(obs_mm):
        import torch

        t: torch.Tensor = obs_mm
        e = torch.as_tensor(edges - AMOUNT_ATOL_MM, dtype=t.dtype, device=t.device)
        nan = torch.isnan(t)
        idx = torch.bucketize(torch.where(nan, torch.zeros_like(t), t), e, right=True) - 1
        return torch.where(nan, torch.full_like(idx, -1), idx.clamp_min(0))
    obs = np.asarray(obs_mm)
    nan = np.isnan(obs)
    out = np.searchsorted(edges - AMOUNT_ATOL_MM, np.where(nan, 0.0, obs), side="right").astype(np.int64) - 1
    return np.where(nan, -1, np.maximum(out, 0))


def edge_widths_mm(edges: NDArray[np.float64]) -> NDArray[np.float64]:
    """Weight of each interior edge ``e_m`` (m = 1..K-1) that turns the ranked probability
    score into the CRPS of the discretised distributions: ``e_m - e_{m-1}``."""
    return np.diff(edges)


def _rps_weights(edges: NDArray[np.float64], thresholds_mm: Sequence[float] | None) -> NDArray[np.float64]:
    return np.ones(edges.size - 1)


def _crps_weights(edges: NDArray[np.float64], thresholds_mm: Sequence[float] | None) -> NDArray[np.float64]:
    return edge_widths_mm(edges)


def _threshold_weights(edges: NDArray[np.float64], thresholds_mm: Sequence[float] | None) -> NDArray[np.float64]:
    if not thresholds_mm:
        raise ValueError("the 'threshold' loss scheme needs thresholds_mm")
    validate_bin_edges(edges, thresholds_mm)
    w = np.ones(edges.size - 1)
    for t in thresholds_mm:
        k = edge_index(edges, t)
        if k == 0:
            raise ValueError(f"threshold {t} mm is the first edge (0 mm): P(obs >= 0) is always 1")
        w[k - 1] = THRESHOLD_EDGE_WEIGHT
    return w


#: Scoring schemes of the ordinal loss by name: ``(edges, thresholds) -> weights (K-1,)``.
EDGE_WEIGHT_SCHEMES: dict[str, Callable[[NDArray[np.float64], Sequence[float] | None], NDArray[np.float64]]] = {
    "rps": _rps_weights,
    "crps": _crps_weights,
    "threshold": _threshold_weights,
}


def edge_weights(edges_mm: Sequence[float], scheme: str, thresholds_mm: Sequence[float] | None = None
                 ) -> NDArray[np.float64]:
    """Weights ``w_k`` of the inner edges ``e_1 .. e_{K-1}`` for a scoring scheme.

    Parameters
    ----------
    edges_mm : sequence of float, length K
        Bin lower edges (mm).
    scheme : str
        A name of :data:`EDGE_WEIGHT_SCHEMES` (see the module docstring).
    thresholds_mm : sequence of float, optional
        Probability thresholds (mm); required by ``"threshold"``.

    Returns
    -------
    float64 array, shape (K-1,)
    """
    edges = validate_bin_edges(edges_mm)
    try:
        method = EDGE_WEIGHT_SCHEMES[scheme]
    except KeyError:
        raise ValueError(
            f"unknown loss scheme {scheme!r}; valid names: {', '.join(sorted(EDGE_WEIGHT_SCHEMES))}"
        ) from None
    return method(edges, thresholds_mm)


def probs_from_logits(logits: ArrayOrTensor, dim: int = 1) -> ArrayOrTensor:
    """Bin probabilities: softmax of ``logits`` along ``dim``."""
    if _is_torch(logits):
        import torch

        return torch.softmax(logits, dim=dim)
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=dim, keepdims=True))
    return (z / z.sum(axis=dim, keepdims=True)).astype(np.float32)


def cdf_at_edges(probs: ArrayOrTensor, dim: int = 1) -> ArrayOrTensor:
    """``P(obs < edges[k])`` for k = 1..K-1 (length K-1 along ``dim``).

    The values are cumulative sums, non-decreasing along ``dim``; they may exceed 1 by
    rounding (~1e-7 in float32).
    """
    if _is_torch(probs):
        import torch

        t: torch.Tensor = probs
        return torch.cumsum(t, dim=dim).narrow(dim, 0, t.shape[dim] - 1)
    p = np.asarray(probs)
    return np.take(np.cumsum(p, axis=dim), np.arange(p.shape[dim] - 1), axis=dim)


def exceedance_matrix(edges_mm: Sequence[float], thresholds_mm: Sequence[float]) -> NDArray[np.float32]:
    """Matrix M (T, K) of 0/1 with ``P(obs >= t_i) = sum_k M[i, k] p_k``.

    ``M[i, k] = 1`` when bin k lies wholly at or above threshold i (``edges[k] >= t_i``).
    """
    edges = validate_bin_edges(edges_mm, thresholds_mm)
    idx = _threshold_indices(edges, thresholds_mm)
    m = np.zeros((len(idx), edges.size), dtype=np.float32)
    for i, k in enumerate(idx):
        m[i, k:] = 1.0
    return m


def exceedance_probs(probs: ArrayOrTensor, edges_mm: Sequence[float], thresholds_mm: Sequence[float], dim: int = 1
                     ) -> ArrayOrTensor:
    """``P(obs >= t)`` for each threshold (length T along ``dim``, in [0, 1]).

    Computed from a reverse cumulative sum, so the result is non-increasing in the
    threshold even after rounding.
    """
    edges = validate_bin_edges(edges_mm, thresholds_mm)
    idx = _threshold_indices(edges, thresholds_mm)
    if probs.shape[dim] != edges.size:
        raise ValueError(f"probs have {probs.shape[dim]} bins along dim {dim}, edges give {edges.size}")
    if _is_torch(probs):
        import torch

        t: torch.Tensor = probs
        tail = torch.flip(torch.cumsum(torch.flip(t, dims=(dim,)), dim=dim), dims=(dim,))
        sel = torch.as_tensor(idx, dtype=torch.long, device=t.device)
        return torch.index_select(tail, dim, sel).clamp(0.0, 1.0)
    p = np.asarray(probs)
    tail_np = np.flip(np.cumsum(np.flip(p, axis=dim), axis=dim), axis=dim)
    return np.clip(np.take(tail_np, idx, axis=dim), 0.0, 1.0)


def bin_probs_from_exceedance(prob_exceed: NDArray[np.floating]) -> NDArray[np.float64]:
    """Bin probabilities (K, ...) from P(obs >= e_k) at the K-1 interior edges (K-1, ...).

    ``p_0 = 1 - P(>= e_1)``, ``p_k = P(>= e_k) - P(>= e_k+1)``, ``p_{K-1} = P(>= e_{K-1})``.
    Rounding in a stored file can make a difference slightly negative; those are
    clipped and the bins renormalised.
    """
    e = np.asarray(prob_exceed, dtype=np.float64)
    ones = np.ones((1, *e.shape[1:]))
    zeros = np.zeros((1, *e.shape[1:]))
    padded = np.concatenate([ones, e, zeros], axis=0)
    bins = np.clip(padded[:-1] - padded[1:], 0.0, None)
    total = bins.sum(axis=0, keepdims=True)
    return bins / np.where(total > 0, total, 1.0)


def quantiles(
    probs: Any,
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
    scalar = np.ndim(q) == 0
    levels = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if levels.ndim != 1 or not ((levels >= 0) & (levels < 1)).all():
        raise ValueError(f"quantile levels must be in [0, 1), got {q!r}")
    p, cdf_lower, edges, scale = _binned_cdf(probs, edges_mm, dim, tail_scale_mm)
    out = np.empty(p.shape[:-1] + (levels.size,), dtype=np.float64)
    for i, level in enumerate(levels):
        out[..., i] = _quantile(p, cdf_lower, edges, scale, level)
    out = np.moveaxis(out, -1, dim)
    return (np.take(out, 0, axis=dim) if scalar else out).astype(np.float32)


def _binned_cdf(probs: Any, edges_mm: Sequence[float], dim: int, tail_scale_mm: float | None
                ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float]:
    """Bins moved to the last axis, the CDF at each bin's lower edge, the edges and the
    tail scale, for :func:`_quantile` (shared by :func:`quantiles` and :func:`pointwise_quantiles`)."""
    edges = validate_bin_edges(edges_mm)
    if _is_torch(probs):
        probs = probs.detach().cpu().numpy()
    p = np.moveaxis(np.asarray(probs, dtype=np.float64), dim, -1)
    if p.shape[-1] != edges.size:
        raise ValueError(f"probs have {p.shape[-1]} bins along dim {dim}, edges give {edges.size}")
    scale = float(edges[-1] - edges[-2]) if tail_scale_mm is None else float(tail_scale_mm)
    if not scale > 0:
        raise ValueError(f"tail_scale_mm must be positive, got {tail_scale_mm}")
    cdf_lower = np.concatenate([np.zeros(p.shape[:-1] + (1,)), np.cumsum(p, axis=-1)[..., :-1]], axis=-1)
    return p, cdf_lower, edges, scale


def _quantile(p: NDArray[np.float64], cdf_lower: NDArray[np.float64], edges: NDArray[np.float64], scale: float,
              level: float | NDArray[np.float64]) -> NDArray[np.float64]:
    """Quantile at ``level`` (a number, or one per point: shape ``p.shape[:-1]``) of the
    bins on the last axis of ``p`` (:func:`quantiles` documents the distribution)."""
    n_bins = edges.size
    widths = np.append(np.diff(edges), 0.0)
    level = np.asarray(level, dtype=np.float64)
    k = np.clip((cdf_lower <= level[..., None]).sum(axis=-1) - 1, 0, n_bins - 1)
    f_k = np.take_along_axis(cdf_lower, k[..., None], axis=-1)[..., 0]
    p_k = np.take_along_axis(p, k[..., None], axis=-1)[..., 0]
    safe_p = np.where(p_k > 0, p_k, 1.0)
    frac = np.where(p_k > 0, np.clip((level - f_k) / safe_p, 0.0, 1.0), 0.0)
    inner = edges[k] + frac * widths[k]
    ratio = np.clip((1.0 - level) / safe_p, 1e-300, 1.0)
    tail = edges[-1] - scale * np.log(ratio)
    out: NDArray[np.float64] = np.where(k == n_bins - 1, np.where(p_k > 0, tail, edges[-1]), inner)
    return out


def pointwise_quantiles(probs: Any, edges_mm: Sequence[float], levels: Any,
                        tail_scale_mm: float | None = None) -> NDArray[np.float32]:
    """Quantiles at levels that differ from point to point.

    Parameters
    ----------
    probs : float array, shape (K, ...)
        Bin probabilities, bins first.
    edges_mm : sequence of float
        Bin lower edges (length K).
    levels : float array, shape (L, ...)
        Probability levels in [0, 1), ``L`` of them at each point of ``probs.shape[1:]``.
    tail_scale_mm : float, optional
        As in :func:`quantiles`.

    Returns
    -------
    float32 array, shape (L, ...)
        Level ``l`` at point ``j``: the quantile :func:`quantiles` gives for that level there.
    """
    p, cdf_lower, edges, scale = _binned_cdf(probs, edges_mm, 0, tail_scale_mm)
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim < 1 or lv.shape[1:] != p.shape[:-1]:
        raise ValueError(f"need probs (K={edges.size}, ...) and levels (L, ...) over the same points, "
                         f"got {np.shape(probs)} and {lv.shape}")
    if not ((lv >= 0) & (lv < 1)).all():
        raise ValueError("quantile levels must be in [0, 1)")
    return np.stack([_quantile(p, cdf_lower, edges, scale, level) for level in lv]).astype(np.float32)


def _bin_centres(edges: NDArray[np.float64], zero_first_bin: bool) -> NDArray[np.float64]:
    """Mean of each closed bin (0 for the first one as a point mass); the open bin's is unused."""
    centres = edges + 0.5 * np.append(np.diff(edges), 0.0)
    if zero_first_bin:
        centres[0] = 0.0
    return centres


def _partial_mean(p: NDArray[np.float64], cdf_lower: NDArray[np.float64], below: NDArray[np.float64],
                  edges: NDArray[np.float64], scale: float, level: float, zero_first_bin: bool) -> NDArray[np.float64]:
    """``G(u) = integral_0^u q(v) dv`` at ``u = level`` in [0, 1] (q the quantile function of
    :func:`_quantile`'s distribution; the first bin a point mass at 0 when ``zero_first_bin``);
    ``below`` holds each bin's ``G`` at its lower edge."""
    n_bins = edges.size
    widths = np.append(np.diff(edges), 0.0)
    k = np.clip((cdf_lower <= level).sum(axis=-1) - 1, 0, n_bins - 1)
    f_k, p_k, full = (np.take_along_axis(a, k[..., None], axis=-1)[..., 0] for a in (cdf_lower, p, below))
    safe_p = np.where(p_k > 0, p_k, 1.0)
    frac = np.where(p_k > 0, np.clip((level - f_k) / safe_p, 0.0, 1.0), 0.0)
    inner = p_k * frac * (edges[k] + 0.5 * frac * widths[k])  # uniform density inside bin k
    if zero_first_bin:
        inner = np.where(k == 0, 0.0, inner)
    # exponential open bin: the integral of e_L - s log(t / p_L) over t = 1 - v in [1 - u, p_L]
    t = max(1.0 - level, 0.0)
    t_log = np.where((t > 0) & (p_k > 0), t * np.log(np.maximum(t, 1e-300) / safe_p), 0.0)
    tail = edges[-1] * np.maximum(level - f_k, 0.0) + scale * np.maximum(p_k - t + t_log, 0.0)
    out: NDArray[np.float64] = full + np.where(k == n_bins - 1, tail, inner)
    return out


def stratum_means(probs: Any, edges_mm: Sequence[float], n: int, dim: int = 1,
                  tail_scale_mm: float | None = None, zero_first_bin: bool = False) -> NDArray[np.float32]:
    """Means of the binned distribution over ``n`` equal probability intervals.

    Interval ``r`` (r = 1..n) is ``[(r-1)/n, r/n]`` in probability; its mean is
    ``n * integral q(u) du`` over it, ``q`` the quantile function of :func:`quantiles`
    (uniform in closed bins, exponential in the open last bin). These ``n`` values are the
    equal-weight ``n``-point distribution closest to the binned one in the 2-Wasserstein
    distance (the interval medians, ``q((r - 1/2)/n)``, are the closest in the 1-Wasserstein
    distance); their average is the distribution's mean exactly.

    Parameters
    ----------
    probs : float array or tensor, with K bins along ``dim``
        Bin probabilities (renormalised to sum to 1).
    edges_mm : sequence of float
        Bin lower edges.
    n : int
        Number of intervals, >= 1.
    dim : int
        The bin axis.
    tail_scale_mm : float, optional
        As in :func:`quantiles`.
    zero_first_bin : bool
        The first bin ``[0, e_1)`` as a point mass at 0 mm instead of uniform.

    Returns
    -------
    float32 array
        The bin axis replaced by one of length ``n``, non-decreasing along it.
    """
    if n < 1:
        raise ValueError(f"the number of intervals must be >= 1, got {n}")
    p, _, edges, scale = _binned_cdf(probs, edges_mm, dim, tail_scale_mm)
    # renormalised: with a total short of 1 the tail's partial mean would fall, not rise
    total = p.sum(axis=-1, keepdims=True)
    p = p / np.where(total > 0, total, 1.0)
    cdf_lower = np.concatenate([np.zeros(p.shape[:-1] + (1,)), np.cumsum(p, axis=-1)[..., :-1]], axis=-1)
    partial = np.cumsum(p * _bin_centres(edges, zero_first_bin), axis=-1)[..., :-1]
    below = np.concatenate([np.zeros(p.shape[:-1] + (1,)), partial], axis=-1)  # G at each bin's lower edge
    cumulative = [_partial_mean(p, cdf_lower, below, edges, scale, r / n, zero_first_bin) for r in range(n + 1)]
    out = np.stack([n * (cumulative[r + 1] - cumulative[r]) for r in range(n)], axis=-1)
    return np.moveaxis(np.maximum(out, 0.0), -1, dim).astype(np.float32)
