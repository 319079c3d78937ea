"""Ensemble copula coupling: the U-Net's calibrated marginals with the members' spatial ranks.

At each point, the M diffusion members are ranked (``r = 1..M``, ties broken at random
with a seeded generator) and the member of rank ``r`` is replaced by a value of the
U-Net's distribution from the probability interval ``[(r-1)/M, r/M]``: a level drawn
inside it (ECC-S, the default, below), the interval's mean (ECC-M, below) or, in the ECC-Q
of Schefzik et al. (2013), its quantile at the midpoint level

    q_r = (r - 1/2) / M.

So the output keeps the U-Net's per-pixel distribution at every point (as far as M
values can carry it) and exactly the members' ranks (their spatial, dependence
structure): where member m is the wettest at one point and also at its neighbours, it
stays the wettest there.

``levels="stratified"`` ("ECC-S", stratified sampling, Hu et al. 2016) puts rank ``r``
at a level drawn uniformly inside its interval, ``q_r = (r - 1 + U)/M``: the M values are
then a stratified random sample of the U-Net's distribution, each member (its rank uniform
over the points) a random draw from it, tails included, where the midpoints shrink the
spread and the interval means empty the top rank bin (below). The ranks are kept as with
ECC-Q. Where ``U`` comes from is ``level_smoothing_px``:

* ``0``: one ``U`` per point and rank, independent from point to point. The values jump
  inside their intervals from one point to the next, which adds power at the shortest
  wavelengths (about 5x MRMS's at 8-16 km on the demo).
* ``> 0`` (coherent ECC-S, the default, 8): member m's ``U`` is a smooth random field
  (:func:`coherent_uniforms`: white noise Gaussian-filtered over that many grid points,
  mapped to exactly U(0, 1) at every point), so a member sits high or low in its interval
  over areas of that size. At each point the M levels are still independent uniforms
  inside their own intervals (different members' fields), so every point-wise property
  above holds; only the point-scale noise is gone. ``inf``: one ``U`` per member.

``levels="mean"`` ("ECC-M") gives rank ``r`` the mean of the U-Net's distribution over
its interval, ``M * integral q(u) du`` over ``[(r-1)/M, r/M]``
(:func:`pqpf.ordinal.stratum_means`), deterministically. The M values are the equal-weight
M-point distribution closest to the U-Net's in the 2-Wasserstein distance (the midpoints
of ECC-Q are the closest in the 1-Wasserstein distance), so the members' average is the
U-Net's mean amount exactly at every point, where ECC-Q's falls short by the skewed upper
tail that the top midpoint cuts off; there is no point noise as in ECC-S. A mean over an
interval that straddles the dry point mass is a small positive amount, not 0.

Rank template. What the members are ranked by is the caller's choice; the ensemble stage
passes :func:`rank_template`: each member's variable z (the log1p amount before clipping
at 0, :func:`pqpf.diffusion.generate.sample_latent`), Gaussian-smoothed over a couple of
grid points. z ranks wet members as their amounts do (the clip is monotone) and orders
dry members by how far below 0 the model put them, where amounts tie. The smoothing
removes the template's finest rank switches: where two members are close, their order
flips from point to point, and each flip swaps two interval values that can be far apart
(the top interval's mean against the next), which added 4x MRMS's power at 8-16 km on the
demo. Smoothed, members keep the model's structure at larger scales (and become less
alike there); the values at every point are unchanged, so every point-wise score is too.

Quantiles come from :func:`pqpf.model.quantiles` (uniform within closed bins, exponential
in the open last bin). With ``dry_bin="point"`` (default, as the diffusion target,
:mod:`pqpf.diffusion.target`) the first bin ``[0, e_1)`` is a point mass at 0 mm, so a
quantile that falls in it is exactly 0 and a dry member stays dry; ``"uniform"`` keeps
:func:`pqpf.model.quantiles` unchanged. Ties among members (typically several exactly
dry members) are broken at random so that no member is systematically favoured.

References
----------
Hu, Y., M. J. Schmeits, S. J. van Andel, J. S. Verkade, M. Xu, D. P. Solomatine and Z. Liang
(2016). A stratified sampling approach for improved sampling from a calibrated ensemble
forecast distribution. Journal of Hydrometeorology, 17, 2405-2417.
Schefzik, R., T. L. Thorarinsdottir and T. Gneiting (2013). Uncertainty quantification
in complex simulation models using ensemble copula coupling. Statistical Science, 28,
616-640.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.ordinal import pointwise_quantiles, quantiles, stratum_means, validate_bin_edges

__all__ = ["DEFAULT_ECC_LEVELS", "DEFAULT_ECC_LEVEL_SMOOTHING_PX", "DEFAULT_ECC_SMOOTHING_PX", "ECC_LEVELS",
           "coherent_uniforms", "ecc_levels", "member_ranks", "rank_template", "ensemble_copula_coupling"]

#: The value each rank takes (module docstring): the quantile at the interval midpoint
#: (ECC-Q), at a uniform draw inside the interval (ECC-S), or the interval's mean (ECC-M).
ECC_LEVELS = ("quantile", "stratified", "mean")
#: The default, chosen by the demo's scores (docs/diffusion_ensemble.md): ECC-S members
#: are random draws from the U-Net, so their spread and rank histogram follow the U-Net's
#: (up to the stratified sample's own signature: rank-histogram ends near (M+1)/(2M) of
#: uniform, spread-skill about 1.13 at M = 8, for a calibrated U-Net), where ECC-Q's
#: midpoints shrink the spread and ECC-M's top interval mean empties the top rank bin;
#: smooth level fields keep the spectra free of point noise.
DEFAULT_ECC_LEVELS = "stratified"
#: Gaussian smoothing (grid points) of the members' variable z before ranking (module
#: docstring, "Rank template"); chosen on held-out inits other than the ones the demo
#: reports (docs/diffusion_ensemble.md, bench/ecc_smoothing.py).
DEFAULT_ECC_SMOOTHING_PX = 2.0
#: Gaussian smoothing (grid points) of ECC-S's level fields (module docstring), chosen on
#: the ten held-out inits the demo did not report until 2026-12-05, by the median over 20
#: level seeds (bench/ecc_smoothing.py --level-sigmas; docs/diffusion_ensemble.md): every
#: smoothing removes the point noise; of 4-64 px, 8 px came closest to MRMS's power in the
#: worst octave and the worst annulus of 16-128 km, the band the spectra are judged in
#: (32 px, the default until 2026-12-06, left 64-128 km shorter and put rare plateaus
#: deep in the tail).
DEFAULT_ECC_LEVEL_SMOOTHING_PX = 8.0

logger = logging.getLogger(__name__)

#: Points processed at once (bounds the float64 temporaries of the quantile function).
_CHUNK = 1 << 16


def ecc_levels(n_members: int) -> NDArray[np.float64]:
    """The ECC-Q levels ``(r - 1/2) / M`` for ``r = 1..M``, shape (M,)."""
    if n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    return (np.arange(1, n_members + 1) - 0.5) / n_members


def member_ranks(members: ArrayLike, rng: np.random.Generator) -> NDArray[np.int64]:
    """Rank (0 .. M-1) of each member at each point, ties broken at random.

    Parameters
    ----------
    members : float array, shape (M, ...)
        Member values; NaN ranks last (callers mask those points).
    rng : numpy.random.Generator
        Source of the tie-breaking keys (one uniform key per value).

    Returns
    -------
    int64 array, shape (M, ...)
        A permutation of ``0..M-1`` at each point, non-decreasing in the member value.
    """
    x = np.asarray(members)
    keys = rng.random(x.shape[::-1]).T  # point by point (M keys each): the same keys however points are chunked
    order = np.lexsort((keys, x), axis=0)  # by value, then by the random key
    ranks = np.empty(x.shape, dtype=np.int64)
    expand = (slice(None),) + (None,) * (x.ndim - 1)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(x.shape[0])[expand], x.shape), axis=0)
    return ranks


def rank_template(latent: ArrayLike, smoothing_px: float) -> NDArray[np.float32]:
    """The field the members are ranked by: each member's z, Gaussian-smoothed with standard
    deviation ``smoothing_px`` grid points (edges: nearest; 0: z itself).

    Parameters
    ----------
    latent : float array, shape (M, ny, nx)
        The members' z. A non-finite value stays NaN in the template (that point gets no
        ECC value) and is left out of its neighbours' averages (normalised convolution),
        so it costs one point, not a smoothing window of them.
    smoothing_px : float
        >= 0.
    """
    from scipy.ndimage import gaussian_filter

    z = np.asarray(latent, dtype=np.float32)
    if not (np.isfinite(smoothing_px) and smoothing_px >= 0):
        raise ValueError(f"smoothing_px must be finite and >= 0, got {smoothing_px}")
    if smoothing_px == 0:
        return z
    finite = np.isfinite(z)
    if finite.all():
        return np.stack([gaussian_filter(member, smoothing_px, mode="nearest") for member in z])
    out = np.full(z.shape, np.nan, dtype=np.float32)
    for m in range(z.shape[0]):
        weight = gaussian_filter(finite[m].astype(np.float32), smoothing_px, mode="nearest")
        total = gaussian_filter(np.where(finite[m], z[m], 0.0).astype(np.float32), smoothing_px, mode="nearest")
        out[m] = np.where(finite[m], total / np.maximum(weight, np.float32(1e-12)), np.nan)
    return out


def coherent_uniforms(n_members: int, space: tuple[int, ...], smoothing_px: float,
                      rng: np.random.Generator) -> NDArray[np.float32]:
    """M independent smooth random fields over ``space``, each exactly U(0, 1) at every point.

    White Gaussian noise filtered in Fourier space by a Gaussian kernel of standard
    deviation ``smoothing_px`` grid points (periodic, so every point sees the whole kernel
    and the field is stationary), scaled to unit variance (Parseval: the variance is the
    mean of the squared gain) and mapped through the normal CDF. Two points ``d`` grid
    points apart have Gaussian correlation ``exp(-d^2 / (4 s^2))`` before the mapping (for
    ``s`` of a grid point or more; the field wraps around, so opposite edges are
    correlated too). ``inf`` gives one uniform per member, the same at every point.
    Values are below 1 (float32 would round the largest up to 1, the top rank's level to
    the end of the tail).

    Returns
    -------
    float32 array, shape (M, *space)
    """
    from scipy.special import ndtr

    below_one = np.nextafter(np.float32(1.0), np.float32(0.0))
    if math.isinf(smoothing_px) or not space or 0 in space:
        one_each = np.minimum(rng.random(n_members).astype(np.float32), below_one)
        return np.broadcast_to(one_each.reshape((n_members,) + (1,) * len(space)), (n_members, *space)).copy()
    out = np.empty((n_members, *space), dtype=np.float32)
    axes = tuple(range(len(space)))
    # the Gaussian gain is separable: per axis on the rfft grid, and the mean of its square
    # over the full grid (the filtered white noise's variance) is the product of the axes'
    def axis_gain(f: NDArray[np.floating]) -> NDArray[np.float64]:
        return np.exp(-2.0 * (np.pi * smoothing_px * np.asarray(f, dtype=np.float64)) ** 2)

    per_axis = [axis_gain(np.fft.fftfreq(n)) for n in space[:-1]] + [axis_gain(np.fft.rfftfreq(space[-1]))]
    gain = per_axis[0]
    for g in per_axis[1:]:
        gain = np.multiply.outer(gain, g)
    norm = math.sqrt(float(np.prod([np.mean(axis_gain(np.fft.fftfreq(n)) ** 2) for n in space])))
    for m in range(n_members):
        field = np.fft.irfftn(np.fft.rfftn(rng.standard_normal(space)) * gain, s=space, axes=axes) / norm
        out[m] = np.minimum(ndtr(field).astype(np.float32), below_one)
    return out


def ensemble_copula_coupling(
    members_mm: ArrayLike,
    prob_bins: ArrayLike,
    edges_mm: Sequence[float] | NDArray[np.floating],
    rng: np.random.Generator | int,
    tail_scale_mm: float | None = None,
    dry_bin: str = "point",
    levels: str = DEFAULT_ECC_LEVELS,
    level_smoothing_px: float = DEFAULT_ECC_LEVEL_SMOOTHING_PX,
) -> NDArray[np.float32]:
    """Give the members the U-Net's marginals in their own ranks (ECC-M, ECC-Q or ECC-S).

    Parameters
    ----------
    members_mm : float array, shape (M, ...)
        Diffusion members, e.g. (M, H, W): only their ranks are used, so amounts (mm), any
        increasing function of them, or the model's unclipped variable z (module docstring).
    prob_bins : float array, shape (K, ...)
        The U-Net's bin probabilities at the same points.
    edges_mm : sequence of float, length K
        Bin lower edges (mm).
    rng : numpy.random.Generator or int
        Tie-breaking randomness (an int seeds a new generator); the result is
        deterministic given it.
    tail_scale_mm : float, optional
        Mean excess of the open last bin, as in :func:`pqpf.model.quantiles`.
    dry_bin : {"point", "uniform"}
        The first bin as a point mass at 0 mm or uniform over ``[0, e_1)`` (module
        docstring).
    levels : {"quantile", "stratified", "mean"}
        Value of rank ``r``: the quantile at ``(r - 1/2)/M`` (ECC-Q) or ``(r - 1 + U)/M``
        (ECC-S, :data:`DEFAULT_ECC_LEVELS`), or the mean over ``[(r-1)/M, r/M]`` (ECC-M).
    level_smoothing_px : float
        With ECC-S, where ``U`` comes from (module docstring): independent at every point
        (0) or member m's smooth field over this many grid points (``inf``: one per member).

    Returns
    -------
    float32 array, shape (M, ...)
        At each point, member m holds the value of its rank ``r_m`` (``levels``). NaN at
        points where a member or a probability is not finite.
    """
    if dry_bin not in ("point", "uniform"):
        raise ValueError(f"unknown dry_bin {dry_bin!r}; valid: point, uniform")
    if levels not in ECC_LEVELS:
        raise ValueError(f"unknown ECC levels {levels!r}; valid: {', '.join(ECC_LEVELS)}")
    if math.isnan(level_smoothing_px) or level_smoothing_px < 0:
        raise ValueError(f"level_smoothing_px must be >= 0, got {level_smoothing_px}")
    edges = validate_bin_edges(edges_mm)
    x = np.asarray(members_mm, dtype=np.float64)
    p = np.asarray(prob_bins, dtype=np.float64)
    if x.ndim < 1 or p.ndim != x.ndim or p.shape[0] != edges.size or p.shape[1:] != x.shape[1:]:
        raise ValueError(f"need members (M, ...) and prob_bins (K={edges.size}, ...) over the same points, "
                         f"got {x.shape} and {p.shape}")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n_members, space = x.shape[0], x.shape[1:]
    x_flat = x.reshape(n_members, -1)
    p_flat = p.reshape(edges.size, -1)
    edge_list, level_list = edges.tolist(), ecc_levels(n_members).tolist()
    out = np.full(x_flat.shape, np.nan, dtype=np.float32)
    # ECC-S's uniforms from a child stream: the tie-breaking keys stay ECC-Q's; drawn point
    # by point (M at a time), so the levels do not depend on the chunk size
    level_rng = generator.spawn(1)[0] if levels == "stratified" else None
    coherent = None
    if level_rng is not None and level_smoothing_px > 0:
        coherent = coherent_uniforms(n_members, space, level_smoothing_px, level_rng).reshape(n_members, -1)
    for start in range(0, x_flat.shape[1], _CHUNK):
        cols = slice(start, start + _CHUNK)
        xs, ps = x_flat[:, cols], p_flat[:, cols]
        ok = np.isfinite(xs).all(axis=0) & np.isfinite(ps).all(axis=0)
        ranks = member_ranks(xs, generator)  # drawn for every point: masking-invariant stream
        safe = np.where(ok, ps, 1.0 / edges.size)
        if levels == "mean":  # exact interval means: nothing to round to the dry point mass
            q = stratum_means(safe, edge_list, n_members, dim=0, tail_scale_mm=tail_scale_mm,
                              zero_first_bin=dry_bin == "point")
        elif level_rng is None:
            q = quantiles(safe, edge_list, level_list, dim=0, tail_scale_mm=tail_scale_mm)
        elif coherent is not None:  # member m's level: (its rank + its own smooth U) / M, by member
            level = np.minimum((ranks + coherent[:, cols]) / n_members, np.nextafter(1.0, 0.0))
            q = pointwise_quantiles(safe, edge_list, level, tail_scale_mm=tail_scale_mm)
        else:  # the level of rank r: (r + U) / M, one U per rank and point
            strata = np.arange(n_members, dtype=np.float64)[:, None]
            uniform = level_rng.random(xs.shape[::-1]).T
            level = np.minimum((strata + uniform) / n_members, np.nextafter(1.0, 0.0))
            q = pointwise_quantiles(safe, edge_list, level, tail_scale_mm=tail_scale_mm)
        if dry_bin == "point" and levels != "mean":
            q = np.where(q < edges[1], np.float32(0.0), q)
        coupled = q if coherent is not None else np.take_along_axis(q, ranks, axis=0)  # by rank -> by member
        out[:, cols] = np.where(ok, coupled, np.nan)
    logger.debug("ECC (%s levels): %d members at %d points", levels, n_members, x_flat.shape[1])
    return out.reshape((n_members, *space))
