"""Neighbourhood (box) sums and means over valid points, from summed-area tables.

A summed-area table ``S`` of a field ``P`` holds ``S[r, c] = sum P[:r, :c]``; the sum
over any rectangle is then four look-ups, ``S[r1, c1] - S[r0, c1] - S[r1, c0] +
S[r0, c0]``, so a square window costs the same at every width (Crow 1984). Missing data
are excluded by tabulating ``P * valid`` and ``valid`` side by side: their box sums give
the mean over the valid points of each window. The domain edge is handled the same way,
by framing the field with zeros that are not valid.

Tables are float64 (a table of 0/1 values is exact up to 2**53 points; one of
probabilities has a round-off of about 1e-16 times its largest entry, so box sums of
probabilities are good to ~1e-10 on a strip of a few hundred thousand points).

References
----------
Crow, F. C. (1984). Summed-area tables for texture mapping. SIGGRAPH Comput. Graph.,
18, 207-212.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["summed_area_table", "box_sums", "any_near", "dot", "neighbourhood_mean", "check_width"]


def check_width(width_px: int) -> None:
    """Refuse a window width that is not an odd integer >= 1 (``ValueError``)."""
    if int(width_px) != width_px or width_px < 1 or width_px % 2 == 0:
        raise ValueError(f"neighbourhood widths must be odd integers >= 1, got {width_px!r}")


def summed_area_table(block: NDArray[Any], where: NDArray[np.bool_] | None, top: int, bottom: int,
                      halo: int) -> NDArray[np.float64]:
    """Summed-area table of a block of rows framed by zeros.

    Parameters
    ----------
    block : array, shape (rows, nx)
        Values (bool or float); NaN allowed where ``where`` is False.
    where : bool array, shape (rows, nx), or None
        Values enter only where True (elsewhere 0); None takes every value.
    top, bottom : int
        Zero rows framing the block above and below.
    halo : int
        Zero columns framing the block left and right.

    Returns
    -------
    float64 array, shape (rows + top + bottom + 1, nx + 2*halo + 1)
        ``S[r, c]`` is the sum over framed rows ``< r`` and columns ``< c``.
    """
    rows, nx = block.shape
    sat = np.zeros((rows + top + bottom + 1, nx + 2 * halo + 1))
    body = sat[1 + top:1 + top + rows, 1 + halo:1 + halo + nx]
    if where is None:
        body[...] = block
    else:
        np.copyto(body, block, where=where)
    inner = sat[1:, 1:]
    np.cumsum(inner, axis=0, out=inner)
    np.cumsum(inner, axis=1, out=inner)
    return sat


def box_sums(sat: NDArray[np.float64], half: int, halo: int, rows: tuple[int, int], cols: tuple[int, int],
             out: NDArray[np.float64], scratch: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sums over the square windows of width ``2*half + 1`` centred on a block of points.

    Parameters
    ----------
    sat : float64 array
        A :func:`summed_area_table` framed by ``halo`` rows above and ``halo`` columns
        left of the output points (``half <= halo``).
    half : int
        Half width of the window (grid points).
    halo : int
        The table's frame (grid points).
    rows, cols : (int, int)
        Half-open ranges of output rows and columns (0 = first unframed row/column).
    out : float64 array, shape (rows[1] - rows[0], cols[1] - cols[0])
        Receives the sums.
    scratch : float64 array, shape (rows[1] - rows[0], >= cols[1] - cols[0] + 2*half + 1)
        Work space: row differences first (contiguous), then column differences.

    Returns
    -------
    float64 array
        ``out``.
    """
    (r0, r1), (c0, c1) = rows, cols
    lo, hi, k, m = halo - half, halo + half + 1, 2 * half + 1, c1 - c0
    diff = scratch[:, :m + k]
    np.subtract(sat[hi + r0:hi + r1, c0 + lo:c0 + lo + m + k], sat[lo + r0:lo + r1, c0 + lo:c0 + lo + m + k],
                out=diff)
    return np.subtract(diff[:, k:k + m], diff[:, :m], out=out)


def any_near(sat: NDArray[np.float64], halo: int, rows: tuple[int, int], cols: tuple[int, int]) -> bool:
    """Whether a table of non-negative values has a non-zero value within ``halo`` points of
    a block of output points (rows and columns as in :func:`box_sums`). Round-off can
    only turn a "no" into a "yes" (a wasted computation), never the reverse for 0/1
    tables, whose sums are exact."""
    (r0, r1), (c0, c1) = rows, cols
    r1, c1 = r1 + 2 * halo, c1 + 2 * halo
    return bool(sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0] > 0)


def dot(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """``sum(a * b)`` of two 2-D arrays in one pass, without BLAS (whose threads thrash
    when the machine is busy: a 10x slowdown was measured on a loaded 2-core host)."""
    return float(np.einsum("ij,ij->", a, b))


def neighbourhood_mean(field: ArrayLike, valid: ArrayLike, width_px: int) -> NDArray[np.float64]:
    """Mean of ``field`` over the valid points of the square window centred on each point.

    Parameters
    ----------
    field : array of float, shape (ny, nx)
        Values (e.g. a 0/1 event or a probability); ignored where not valid.
    valid : array of bool, shape (ny, nx)
        Points that enter the means. The domain edge clips windows like missing data.
    width_px : int
        Window width in grid points, odd, >= 1.

    Returns
    -------
    float64 array, shape (ny, nx)
        ``sum(field * valid) / sum(valid)`` over each window, NaN where a window has no
        valid point. O(1) per point whatever the width.
    """
    f = np.asarray(field, dtype=np.float64)
    v = np.asarray(valid, dtype=bool)
    if f.ndim != 2 or v.shape != f.shape:
        raise ValueError(f"field and valid must be 2-D of one shape, got {f.shape} and {v.shape}")
    check_width(width_px)
    half = width_px // 2
    ny, nx = f.shape
    scratch = np.empty((ny, nx + 2 * half + 1))
    whole = ((0, ny), (0, nx))
    sums = box_sums(summed_area_table(f, v, half, half, half), half, half, *whole, np.empty((ny, nx)), scratch)
    counts = box_sums(summed_area_table(v, None, half, half, half), half, half, *whole, np.empty((ny, nx)),
                      scratch)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0.5, sums / np.maximum(counts, 1.0), np.nan)
