"""The ordinal amount bins, in one place (numpy only, no torch).

Bins are given by their LOWER edges ``e_0 = 0 < e_1 < ... < e_{K-1}`` (mm): bin ``k`` is
``[e_k, e_{k+1})`` and the last bin is open above. ``P(obs >= e_k)`` is the sum of the
probabilities of bins ``k..K-1``, so every probability threshold must be an edge. The
model (:mod:`pqpf.model`), the loss (:mod:`pqpf.loss`) and verification
(:mod:`pqpf.verification`) all use these definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["EDGE_ATOL_MM", "AMOUNT_ATOL_MM", "reaches", "validate_bin_edges", "bin_index_numpy", "edge_widths_mm"]

#: Two edges or an edge and a threshold closer than this (mm) are the same.
EDGE_ATOL_MM = 1e-6

#: An amount this close below a threshold or bin edge (mm) counts as reaching it. Amounts
#: that are exactly a threshold in the data (MRMS stores 0.1 mm steps) can come out one
#: float32 ulp low after averaging (a uniform 2.5 mm area remaps to 2.4999998 in about
#: half of the cells, 25 mm in a quarter); without the tolerance they would miss the
#: event and fall into the bin below. 1e-4 mm is far below any precipitation data's precision and above the
#: round-off of float32 sums at 40 mm.
AMOUNT_ATOL_MM = 1e-4


def reaches(amount_mm: Any, threshold_mm: Any) -> Any:
    """``amount >= threshold`` up to :data:`AMOUNT_ATOL_MM`: the event definition used
    everywhere (training targets, verification, the GRAF reference). Works on numpy arrays,
    torch tensors and floats, with broadcasting; NaN gives False."""
    return amount_mm >= threshold_mm - AMOUNT_ATOL_MM


def validate_bin_edges(edges_mm: Sequence[float] | ArrayLike, thresholds_mm: Sequence[float] = ()) -> NDArray[np.float64]:
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


def bin_index_numpy(obs_mm: ArrayLike, edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """Bin ``k`` with ``edges[k] <= v < edges[k+1]`` (each edge up to :data:`AMOUNT_ATOL_MM`,
    as in :func:`reaches`) of each amount; values below the first edge (round-off) go to
    bin 0, NaN gives -1. ``edges`` must be validated."""
    obs = np.asarray(obs_mm)
    nan = np.isnan(obs)
    idx = np.searchsorted(edges - AMOUNT_ATOL_MM, np.where(nan, 0.0, obs), side="right").astype(np.int64) - 1
    return np.where(nan, -1, np.maximum(idx, 0))


def edge_widths_mm(edges: NDArray[np.float64]) -> NDArray[np.float64]:
    """Weight of each interior edge ``e_m`` (m = 1..K-1) that turns the ranked probability
    score into the CRPS of the discretised distributions: ``e_m - e_{m-1}``."""
    return np.diff(edges)
