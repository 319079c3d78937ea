"""Remapping fields between grids through a sparse weight matrix built once and cached.

A :class:`RegridWeights` holds a sparse matrix ``W`` (``n_out x n_in``, float32 values,
int32 indices) whose rows are normalised to sum to one (or are empty where no source
cell contributes). Applying it to an hourly field is a pass of the matrix over the
source values; building it (projecting 24.5 M MRMS cell centres onto a Lambert grid) is
done once per (source grid, target grid, method) and stored on disk with the
definitions and fingerprints of both grids, so later runs only load it.

``W`` is kept in compressed sparse *column* layout: a product then walks the source
field in memory order and scatters into the (much smaller) target field, which for
MRMS onto a 4 km grid is about twice as fast as the row layout (33 ms instead of
60 ms per CONUS field on one core), and lets each quantity be a contiguous vector.

Methods (``METHODS``):

``conservative``
    Each source cell of a regular latitude/longitude grid belongs to the target cell that
    contains its centre (the centre projected with the target grid's projection); its
    weight is its exact area on the earth model of the source grid. A target value is
    the area-weighted mean over the valid source cells assigned to it (missing cells
    excluded, weights renormalised). This conserves ``sum(area * value)`` exactly over
    the assigned cells: ``sum_t row_sums[t] * out[t] == sum_s area[s] * in[s]`` when
    nothing is missing. When the source is not much finer than the target, the
    assignment by centres is a coarse approximation of polygon overlap; ``subsample=s``
    splits every source cell into ``s x s`` sub-cells (each assigned by its own centre,
    each weighted by its own area), which converges to the exact overlap as ``s`` grows.
    MRMS (0.01 degree, about 1 km) onto a 4 km grid puts about 16 source cells into each
    target cell, where ``s = 1`` is adequate.
``nearest``
    The source cell that contains the target cell's centre.
``bilinear``
    The four source cells around the target cell's centre with bilinear weights in the
    source grid's index space; missing (or off-grid) neighbours are excluded and the rest
    renormalised.

Target cells whose centre lies outside the source domain (or, for ``conservative``, to
which no source centre belongs) get ``valid_fraction = 0``, quality 0 and NaN.

References
----------
Jones, P. W. (1999). First- and second-order conservative remapping schemes for grids in
spherical coordinates. Mon. Wea. Rev., 127, 2204-2210.
Snyder, J. P. (1987). Map projections: a working manual. USGS Professional Paper 1395
(authalic latitude and the area of an ellipsoidal zone, pp. 16 and 187).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from pqpf import __version__
from pqpf.errors import GridMismatchError, InputFileError
from pqpf.grid import Grid
from pqpf.io.atomic import atomic_path

__all__ = [
    "METHODS",
    "RegridWeights",
    "Remapped",
    "cached_weights",
    "latlon_cell_area_m2",
]

logger = logging.getLogger(__name__)

#: Version of the on-disk weight format; files of another version are rebuilt.
_FORMAT_VERSION = 1
#: Source points projected per block while building (bounds memory to ~100 MB a block).
_BLOCK_POINTS = 1_000_000
#: Extra source rows/columns kept around the target domain's bounding box.
_WINDOW_MARGIN = 2


class Remapped(NamedTuple):
    """What :meth:`RegridWeights.apply` returns; all float32, shape of the target grid."""

    #: Area (weight) mean of the valid source values; NaN where ``valid_fraction == 0``.
    precipitation: NDArray[np.float32]
    #: Mean source quality with missing source cells counted as 0, in [0, 1]; None when
    #: no quality was given.
    quality: NDArray[np.float32] | None
    #: Share of the assigned source area (weight) that holds valid data, in [0, 1].
    valid_fraction: NDArray[np.float32]


# --------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------


def _zone_area_per_radian(lat_deg: NDArray[np.float64], a: float, b: float) -> NDArray[np.float64]:
    """Area (m^2) between the equator and latitude ``lat_deg`` per radian of longitude.

    Sphere: ``a^2 sin(phi)``. Ellipsoid: ``(b^2 / 2) [sin(phi) / (1 - e^2 sin^2 phi) +
    artanh(e sin phi) / e]`` (Snyder 1987, eq. 3-12 times ``a^2 (1 - e^2) / 2``).
    """
    s = np.sin(np.radians(lat_deg))
    e2 = 1.0 - (b * b) / (a * a)
    if e2 < 1e-14:
        return a * a * s
    e = math.sqrt(e2)
    return 0.5 * b * b * (s / (1.0 - e2 * s * s) + np.arctanh(e * s) / e)


def latlon_cell_area_m2(
    grid: Grid, rows: slice | None = None, subsample: int = 1
) -> NDArray[np.float64]:
    """Exact area of the cells of a regular latitude/longitude grid, one value per row.

    Parameters
    ----------
    grid : Grid
        A latitude/longitude grid; cells extend half a step either side of the centres,
        clipped at the poles.
    rows : slice, optional
        Rows to compute (default all).
    subsample : int
        Split every cell into ``subsample x subsample`` sub-cells and return the area of
        one sub-cell per sub-row (the output then has ``subsample`` values per row).

    Returns
    -------
    float64 array, shape (n_rows * subsample,)
        Area in m^2 on the grid's earth model (sphere or ellipsoid: the ellipsoidal zone
        area through the authalic latitude, exact).
    """
    if grid.is_lambert:
        raise ValueError(f"need a latitude/longitude grid, got {grid.describe()}")
    if subsample < 1:
        raise ValueError(f"subsample must be a positive integer, got {subsample}")
    rows = rows if rows is not None else slice(0, grid.ny)
    lat_c = grid.y[rows]
    step = abs(grid.dy) / subsample
    offsets = (np.arange(subsample) + 0.5) * step - 0.5 * abs(grid.dy)
    lat_sub = (lat_c[:, None] + offsets[None, :]).ravel()
    top = np.clip(lat_sub + 0.5 * step, -90.0, 90.0)
    bottom = np.clip(lat_sub - 0.5 * step, -90.0, 90.0)
    dlon_rad = math.radians(abs(grid.dx)) / subsample
    zone = _zone_area_per_radian(top, grid.earth_a, grid.earth_b) - _zone_area_per_radian(
        bottom, grid.earth_a, grid.earth_b
    )
    return dlon_rad * zone


def _source_window(grid_in: Grid, grid_out: Grid) -> tuple[int, int, int, int]:
    """Rows ``j0:j1`` and columns ``i0:i1`` of ``grid_in`` that can meet ``grid_out``.

    The target domain's outline (every cell edge of its border) and a coarse sample of
    its interior are mapped into the source grid's index space; the window is their
    bounding box plus a margin, clipped to the source grid. A window that wraps the
    source's longitude seam comes out as the full width (correct, only slower).
    """
    xe = grid_out.x0 + grid_out.dx * (np.arange(grid_out.nx + 1) - 0.5)
    ye = grid_out.y0 + grid_out.dy * (np.arange(grid_out.ny + 1) - 0.5)
    step_y = max(1, grid_out.ny // 64)
    step_x = max(1, grid_out.nx // 64)
    xi, yi = np.meshgrid(grid_out.x[::step_x], grid_out.y[::step_y])
    px = np.concatenate([xe, xe, np.full(ye.size, xe[0]), np.full(ye.size, xe[-1]), xi.ravel()])
    py = np.concatenate([np.full(xe.size, ye[0]), np.full(xe.size, ye[-1]), ye, ye, yi.ravel()])
    lon, lat = grid_out.to_lonlat(px, py)
    fj, fi = grid_in.fractional_index(lon, lat)
    ok = np.isfinite(fj) & np.isfinite(fi)
    if not ok.any():
        return 0, 0, 0, 0
    j0 = max(0, int(np.floor(fj[ok].min())) - _WINDOW_MARGIN)
    j1 = min(grid_in.ny, int(np.ceil(fj[ok].max())) + _WINDOW_MARGIN + 1)
    i0 = max(0, int(np.floor(fi[ok].min())) - _WINDOW_MARGIN)
    i1 = min(grid_in.nx, int(np.ceil(fi[ok].max())) + _WINDOW_MARGIN + 1)
    return j0, max(j0, j1), i0, max(i0, i1)


def _containing_cell(grid: Grid, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.int64]:
    """Flat index of the cell of ``grid`` containing each point given in grid
    coordinates, -1 outside the grid (cell = centre +- half a step)."""
    i = np.floor((x - grid.x0) / grid.dx + 0.5)
    j = np.floor((y - grid.y0) / grid.dy + 0.5)
    inside = (i >= 0) & (i < grid.nx) & (j >= 0) & (j < grid.ny)
    flat = np.where(inside, j * grid.nx + i, -1.0)
    return flat.astype(np.int64)


# --------------------------------------------------------------------------------------
# builders: each returns (rows, cols, raw weights) of the triplets of W
# --------------------------------------------------------------------------------------

_Triplets = tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float64]]


def _concat(parts: list[_Triplets]) -> _Triplets:
    if not parts:
        return (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float64))
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _build_conservative(grid_in: Grid, grid_out: Grid, subsample: int) -> _Triplets:
    if grid_in.is_lambert:
        raise ValueError(
            f"conservative remapping needs a latitude/longitude source grid, got {grid_in.describe()}"
        )
    s = int(subsample)
    j0, j1, i0, i1 = _source_window(grid_in, grid_out)
    if j1 <= j0 or i1 <= i0:
        return _concat([])
    offsets = (np.arange(s) + 0.5) / s - 0.5  # sub-cell centres in cell units
    sub_x = (grid_in.x[i0:i1, None] + offsets[None, :] * grid_in.dx).ravel()
    sub_col = np.repeat(np.arange(i0, i1, dtype=np.int64), s)
    rows_per_block = max(1, _BLOCK_POINTS // (sub_x.size * s))
    parts: list[_Triplets] = []
    for b0 in range(j0, j1, rows_per_block):
        b1 = min(j1, b0 + rows_per_block)
        sub_y = (grid_in.y[b0:b1, None] + offsets[None, :] * grid_in.dy).ravel()
        sub_row = np.repeat(np.arange(b0, b1, dtype=np.int64), s)
        area = latlon_cell_area_m2(grid_in, slice(b0, b1), s)
        xx, yy = np.meshgrid(sub_x, sub_y)
        tx, ty = grid_out.to_xy(xx, yy)
        target = _containing_cell(grid_out, tx, ty)
        del xx, yy, tx, ty
        jj, ii = np.nonzero(target >= 0)
        if jj.size == 0:
            continue
        rows = target[jj, ii].astype(np.int32)
        cols = (sub_row[jj] * grid_in.nx + sub_col[ii]).astype(np.int32)
        parts.append((rows, cols, area[jj]))
    return _concat(parts)


def _target_centre_blocks(
    grid_in: Grid, grid_out: Grid
) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]]:
    """Blocks of target cells whose centre lies inside the source domain: their flat
    indices and the fractional source indices ``(fj, fi)`` of their centres."""
    rows_per_block = max(1, _BLOCK_POINTS // grid_out.nx)
    for b0 in range(0, grid_out.ny, rows_per_block):
        b1 = min(grid_out.ny, b0 + rows_per_block)
        lon, lat = grid_out.lonlat(slice(b0, b1))
        fj, fi = grid_in.fractional_index(lon, lat)
        fj, fi = fj.ravel(), fi.ravel()
        tgt = np.arange(b0 * grid_out.nx, b1 * grid_out.nx, dtype=np.int64)
        inside = (fj >= -0.5) & (fj < grid_in.ny - 0.5) & (fi >= -0.5) & (fi < grid_in.nx - 0.5)
        yield tgt[inside], fj[inside], fi[inside]


def _build_nearest(grid_in: Grid, grid_out: Grid, subsample: int) -> _Triplets:
    parts: list[_Triplets] = []
    for tgt, fj, fi in _target_centre_blocks(grid_in, grid_out):
        j = np.minimum(np.floor(fj + 0.5), grid_in.ny - 1)
        i = np.minimum(np.floor(fi + 0.5), grid_in.nx - 1)
        src = (j * grid_in.nx + i).astype(np.int32)
        parts.append((tgt.astype(np.int32), src, np.ones(tgt.size)))
    return _concat(parts)


def _build_bilinear(grid_in: Grid, grid_out: Grid, subsample: int) -> _Triplets:
    parts: list[_Triplets] = []
    for tgt, fj, fi in _target_centre_blocks(grid_in, grid_out):
        ja, ia = np.floor(fj), np.floor(fi)
        tj, ti = fj - ja, fi - ia
        for dj, di, w in (
            (0, 0, (1 - tj) * (1 - ti)),
            (0, 1, (1 - tj) * ti),
            (1, 0, tj * (1 - ti)),
            (1, 1, tj * ti),
        ):
            j, i = ja + dj, ia + di
            ok = (j >= 0) & (j < grid_in.ny) & (i >= 0) & (i < grid_in.nx) & (w > 0)
            src = (j[ok] * grid_in.nx + i[ok]).astype(np.int32)
            parts.append((tgt[ok].astype(np.int32), src, w[ok]))
    return _concat(parts)


#: Remapping methods by name: builder(grid_in, grid_out, subsample) -> triplets.
METHODS: dict[str, Callable[[Grid, Grid, int], _Triplets]] = {
    "conservative": _build_conservative,
    "nearest": _build_nearest,
    "bilinear": _build_bilinear,
}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown remapping method {method!r}; valid methods: {', '.join(METHODS)}")


# --------------------------------------------------------------------------------------
# the weights
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class RegridWeights:
    """Sparse remapping weights from ``grid_in`` to ``grid_out``, built once, applied often.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`.
    grid_in, grid_out : Grid
    matrix : scipy.sparse.csc_matrix, shape (grid_out.size, grid_in.size)
        float32 weights, int32 indices, column (source-major) layout; each non-empty
        row sums to 1.
    row_sums : float64 array, shape (grid_out.size,)
        Raw total weight of each target row before normalisation: for ``conservative``
        the area (m^2) of the source cells assigned to the target cell, for ``nearest``
        1 or 0, for ``bilinear`` the bilinear weight of the on-grid neighbours.
    subsample : int
        Sub-cells per source cell and direction (``conservative`` only).
    """

    method: str
    grid_in: Grid
    grid_out: Grid
    matrix: Any
    row_sums: NDArray[np.float64]
    subsample: int = 1
    #: Sums of the stored float32 weights of each row (1 up to rounding, 0 for empty
    #: rows); computed when not given.
    norm: NDArray[np.float32] | None = field(default=None, repr=False)
    _covered: NDArray[np.bool_] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n_out, n_in = self.grid_out.ny * self.grid_out.nx, self.grid_in.ny * self.grid_in.nx
        if self.matrix.shape != (n_out, n_in):
            raise ValueError(f"matrix shape {self.matrix.shape} does not match grids ({n_out}, {n_in})")
        if self.norm is None:
            # Exact sums of the stored weights: dividing by them keeps a constant field
            # constant to float32 rounding.
            self.norm = np.bincount(
                self.matrix.indices, weights=self.matrix.data, minlength=n_out
            ).astype(np.float32)
        elif self.norm.shape != (n_out,):
            raise ValueError(f"norm has shape {self.norm.shape}, expected ({n_out},)")
        self._covered = self.norm > 0  # every stored weight is positive

    # ---- identity ------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """Hash of method, sub-sampling and both grids: names the weights' provenance."""
        key = f"{self.method}|{self.subsample}|{self.grid_in.fingerprint()}|{self.grid_out.fingerprint()}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def covered(self) -> NDArray[np.bool_]:
        """Target cells that at least one source cell contributes to, shape of ``grid_out``."""
        return self._covered.reshape(self.grid_out.shape)

    # ---- building --------------------------------------------------------------------------

    @classmethod
    def build(
        cls, grid_in: Grid, grid_out: Grid, method: str = "conservative", subsample: int = 1
    ) -> "RegridWeights":
        """Compute the weights (seconds for MRMS CONUS onto a 4 km CONUS grid).

        Parameters
        ----------
        grid_in : Grid
            Source grid; a latitude/longitude grid for ``conservative``.
        grid_out : Grid
            Target grid (any :class:`Grid`).
        method : str
            ``"conservative"``, ``"nearest"`` or ``"bilinear"``.
        subsample : int
            Sub-cells per source cell and direction for ``conservative`` (>= 1).

        Raises
        ------
        ValueError
            Unknown method (the message lists the valid ones) or a bad ``subsample``.
        """
        import scipy.sparse as sp

        _check_method(method)
        if int(subsample) != subsample or subsample < 1:
            raise ValueError(f"subsample must be a positive integer, got {subsample}")
        if method != "conservative" and subsample != 1:
            raise ValueError(f"subsample applies to conservative remapping only, got {method!r}")
        n_out, n_in = grid_out.ny * grid_out.nx, grid_in.ny * grid_in.nx
        if n_in >= 2**31 or n_out >= 2**31:
            raise ValueError(f"grids too large for int32 indices ({n_in} and {n_out} points)")
        logger.info("building %s weights %s -> %s", method, grid_in.describe(), grid_out.describe())
        rows, cols, w = METHODS[method](grid_in, grid_out, int(subsample))
        row_sums = np.bincount(rows, weights=w, minlength=n_out)
        data = (w / row_sums[rows]).astype(np.float32)
        del w
        matrix = sp.csc_matrix((data, (rows, cols)), shape=(n_out, n_in))  # sums duplicates
        del rows, cols, data
        matrix.sum_duplicates()
        matrix.indices = matrix.indices.astype(np.int32, copy=False)
        matrix.indptr = matrix.indptr.astype(np.int32, copy=False)
        weights = cls(method, grid_in, grid_out, matrix, row_sums, int(subsample))
        logger.info("weights built: %d non-zeros, %d of %d target cells covered",
                    matrix.nnz, int(weights._covered.sum()), n_out)
        return weights

    # ---- applying ----------------------------------------------------------------------------

    def apply(
        self,
        values_in: NDArray[np.floating],
        quality_in: NDArray[np.floating] | None = None,
    ) -> Remapped:
        """Remap one field (and optionally its quality) to the target grid.

        Parameters
        ----------
        values_in : float array, shape of ``grid_in``
            Source values (e.g. precipitation in mm); NaN marks missing cells.
        quality_in : float array, shape of ``grid_in``, optional
            Source quality in [0, 1]; NaN counts as 0. Where ``values_in`` is missing the
            quality is taken as 0.

        Returns
        -------
        Remapped
            ``precipitation`` (weighted mean over valid cells, NaN where none),
            ``quality`` (weighted mean with missing cells as 0) and ``valid_fraction``
            (valid share of the weight), float32 arrays of the target grid's shape.
        """
        shape_in = self.grid_in.shape
        v = np.asarray(values_in)
        if v.shape != shape_in:
            raise ValueError(f"values have shape {v.shape}, the source grid is {shape_in}")
        v = v.astype(np.float32, copy=False).ravel()
        q = None
        if quality_in is not None:
            q = np.asarray(quality_in)
            if q.shape != shape_in:
                raise ValueError(f"quality has shape {q.shape}, the source grid is {shape_in}")
            q = q.astype(np.float32, copy=False).ravel()
        invalid = ~np.isfinite(v)
        any_missing = bool(invalid.any())
        if q is not None and not np.isfinite(q).all():
            q = np.nan_to_num(q, nan=0.0, posinf=0.0, neginf=0.0)
        w = self.matrix
        covered = self._covered
        norm = np.where(covered, self.norm, np.float32(1.0))  # 1 avoids 0/0 on empty rows
        if not any_missing:
            # Nothing missing: the valid weight of every row is its norm.
            precip = w @ v
            quality = None if q is None else w @ q
            valid_fraction = covered.astype(np.float32)
            weight_valid = norm
        else:
            # Sums of value * valid, valid and quality * valid; one contiguous vector each
            # (with the column layout this is as fast as one pass over an (n, 3) block,
            # without the cost of interleaving the block).
            precip = w @ np.where(invalid, np.float32(0.0), v)
            weight_valid = w @ np.logical_not(invalid).astype(np.float32)
            quality = None if q is None else w @ np.where(invalid, np.float32(0.0), q)
            valid_fraction = np.minimum(weight_valid / norm, np.float32(1.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            precip = precip / weight_valid
        precip[~(weight_valid > 0)] = np.nan
        precip[~covered] = np.nan
        valid_fraction[~covered] = 0.0
        shape_out = self.grid_out.shape
        if quality is not None:
            quality = np.clip(quality / norm, 0.0, 1.0)
            quality[~covered] = 0.0
            quality = quality.astype(np.float32, copy=False).reshape(shape_out)
        return Remapped(
            precip.astype(np.float32, copy=False).reshape(shape_out),
            quality,
            valid_fraction.astype(np.float32, copy=False).reshape(shape_out),
        )

    # ---- storage -------------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {
            "format_version": _FORMAT_VERSION,
            "method": self.method,
            "subsample": self.subsample,
            "grid_in": asdict(self.grid_in),
            "grid_out": asdict(self.grid_out),
            "grid_in_fingerprint": self.grid_in.fingerprint(),
            "grid_out_fingerprint": self.grid_out.fingerprint(),
            "fingerprint": self.fingerprint,
            "pqpf_version": __version__,
        }

    def save(self, path: str | Path) -> Path:
        """Write the weights atomically as an ``.npz`` of plain arrays plus JSON metadata
        (method, both grid definitions and fingerprints, pqpf version); no pickle."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:  # a file object: np.savez adds no suffix
                np.savez(
                    fh,
                    data=self.matrix.data,
                    indices=self.matrix.indices,
                    indptr=self.matrix.indptr,
                    row_sums=self.row_sums,
                    norm=self.norm,
                    meta=np.array(json.dumps(self._meta(), sort_keys=True)),
                )
        return path

    @classmethod
    def load(
        cls, path: str | Path, grid_in: Grid, grid_out: Grid, method: str = "conservative",
        subsample: int = 1,
    ) -> "RegridWeights":
        """Read weights written by :meth:`save`, checking they are the ones asked for.

        Raises
        ------
        GridMismatchError
            The file was built for another source grid, target grid, method or
            sub-sampling.
        InputFileError
            The file is missing, unreadable or inconsistent.
        """
        import scipy.sparse as sp

        _check_method(method)
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "file not found")
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"][()]))
                arrays = {k: npz[k] for k in ("data", "indices", "indptr", "row_sums", "norm")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise InputFileError(path, f"not a readable weights file ({type(exc).__name__}: {exc})") from None
        if meta.get("format_version") != _FORMAT_VERSION:
            raise InputFileError(path, f"weights format {meta.get('format_version')}, expected {_FORMAT_VERSION}")
        try:
            stored_in, stored_out = Grid(**meta["grid_in"]), Grid(**meta["grid_out"])
        except (TypeError, ValueError, KeyError) as exc:
            raise InputFileError(path, f"bad grid definition in weights file ({exc})") from None
        problems = []
        if meta.get("method") != method or int(meta.get("subsample", 1)) != int(subsample):
            problems.append(
                f"method {meta.get('method')} (subsample {meta.get('subsample')}), "
                f"asked for {method} (subsample {subsample})"
            )
        if not stored_in.same_as(grid_in):
            problems.append(f"source grid {stored_in.describe()}, asked for {grid_in.describe()}")
        if not stored_out.same_as(grid_out):
            problems.append(f"target grid {stored_out.describe()}, asked for {grid_out.describe()}")
        if problems:
            raise GridMismatchError(f"{path}: weights were built for " + "; ".join(problems))
        n_out, n_in = grid_out.ny * grid_out.nx, grid_in.ny * grid_in.nx
        indptr, indices, data = arrays["indptr"], arrays["indices"], arrays["data"]
        if (
            indptr.shape != (n_in + 1,) or arrays["row_sums"].shape != (n_out,)
            or arrays["norm"].shape != (n_out,)
            or indices.shape != data.shape or int(indptr[-1]) != data.size
            or (indices.size and (int(indices.min()) < 0 or int(indices.max()) >= n_out))
        ):
            raise InputFileError(path, "inconsistent sparse matrix arrays (damaged file?)")
        matrix = sp.csc_matrix((data, indices, indptr), shape=(n_out, n_in))
        return cls(method, grid_in, grid_out, matrix, arrays["row_sums"], int(subsample),
                   arrays["norm"].astype(np.float32, copy=False))


def _cache_name(grid_in: Grid, grid_out: Grid, method: str, subsample: int) -> str:
    sub = f"_s{subsample}" if subsample != 1 else ""
    return f"remap_{method}{sub}_{grid_in.fingerprint()}_to_{grid_out.fingerprint()}.npz"


def cached_weights(
    cache_dir: str | Path, grid_in: Grid, grid_out: Grid, method: str = "conservative",
    subsample: int = 1,
) -> RegridWeights:
    """Load the weights for (``grid_in``, ``grid_out``, ``method``) from ``cache_dir``,
    or build and store them there.

    A cache file that is unreadable or was built for other grids is reported with a
    warning and replaced. If the cache directory is not writable the weights are still
    returned (with a warning), only not stored.
    """
    _check_method(method)
    path = Path(cache_dir) / _cache_name(grid_in, grid_out, method, subsample)
    if path.is_file():
        try:
            weights = RegridWeights.load(path, grid_in, grid_out, method, subsample)
            logger.debug("remap weights loaded from %s", path)
            return weights
        except (InputFileError, GridMismatchError) as exc:
            warnings.warn(f"rebuilding remap weights: {exc}", stacklevel=2)
    weights = RegridWeights.build(grid_in, grid_out, method, subsample)
    try:
        weights.save(path)
        logger.info("remap weights stored in %s", path)
    except OSError as exc:
        warnings.warn(f"cannot store remap weights in {path} ({exc}); they will be rebuilt next time",
                      stacklevel=2)
    return weights
