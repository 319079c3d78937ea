"""The remapped MRMS file: one CF netCDF per hour on the model grid.

``{mrms_remapped_dir}/{YYYYMM}/mrms_qpe01h_{YYYYMMDDHH}.nc`` (:func:`pqpf.layout.mrms_remapped_path`)
holds, float32 on ``(y, x)``: ``precipitation`` (mm, the 1-h amount ending at the file's
``time``; NaN where no valid MRMS cell fell in the grid cell), ``quality`` (the radar
accumulation quality index, 0..1) and ``valid_fraction`` (the share of the cell's MRMS
cells, by area, with valid precipitation), with ``lat``/``lon``, the grid mapping and
global attributes naming the source files and the remapping.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf.errors import InputFileError
from pqpf.grid import Grid
from pqpf.io.netcdf import NcVar, read_grid_netcdf, write_grid_netcdf

__all__ = ["RemappedMrms", "write_remapped_mrms", "read_remapped_mrms"]


@dataclass(frozen=True, eq=False)
class RemappedMrms:
    """One hour of remapped MRMS.

    Attributes
    ----------
    grid : Grid
    precipitation_mm : float32 (ny, nx), NaN where missing
    quality : float32 (ny, nx), 0..1
    valid_fraction : float32 (ny, nx) or None when not read
    valid : datetime or None, end of the 1-h accumulation
    source : Path
    """

    grid: Grid
    precipitation_mm: NDArray[np.float32]
    quality: NDArray[np.float32]
    valid_fraction: NDArray[np.float32] | None
    valid: dt.datetime | None
    source: Path


def _variables(precip: NDArray[np.float32], quality: NDArray[np.float32], valid_fraction: NDArray[np.float32],
               method: str) -> dict[str, NcVar]:
    cell = "area: mean" if method == "conservative" else "area: point"
    return {
        "precipitation": NcVar(precip, {
            "long_name": "MRMS 1-h multi-sensor precipitation amount remapped to the model grid",
            "standard_name": "lwe_thickness_of_precipitation_amount", "units": "mm",
            "cell_methods": f"time: sum {cell}",
            "comment": "mean over the valid MRMS cells of each grid cell; NaN where none is valid",
        }),
        "quality": NcVar(quality, {
            "long_name": "MRMS radar accumulation quality index remapped to the model grid",
            "units": "1", "valid_range": np.array([0.0, 1.0], np.float32),
            "comment": "mean over the MRMS cells of each grid cell, missing precipitation counted as 0",
        }),
        "valid_fraction": NcVar(valid_fraction, {
            "long_name": "fraction of the grid cell's MRMS cells (by area) with valid precipitation",
            "units": "1", "valid_range": np.array([0.0, 1.0], np.float32),
        }),
    }


def write_remapped_mrms(
    path: Path,
    grid: Grid,
    precipitation_mm: NDArray[np.float32],
    quality: NDArray[np.float32],
    valid_fraction: NDArray[np.float32],
    valid: dt.datetime,
    method: str,
    provenance: dict[str, Any],
    lonlat: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
) -> Path:
    """Write one hour atomically.

    Parameters
    ----------
    method : str
        The remapping method (sets ``cell_methods``: area mean for conservative).
    provenance : dict
        Global attributes naming the source files and the remap weights.
    lonlat : (lon, lat), optional
        2-D coordinates of ``grid``, computed once per run by the caller.
    """
    return write_grid_netcdf(
        path, grid, _variables(precipitation_mm, quality, valid_fraction, method),
        time=valid, lonlat=lonlat,
        global_attrs={"title": "MRMS 1-h QPE and quality remapped to the model grid", **provenance},
    )


def read_remapped_mrms(path: Path, grid: Grid | None = None, valid_fraction: bool = False) -> RemappedMrms:
    """Read one hour; with ``grid``, refuse a file on another grid.

    Raises
    ------
    InputFileError
        Missing or unreadable file, or (``grid`` given) a file on another grid.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "remapped MRMS not found (run save_remapped_mrms.py for this hour)")
    names = ["precipitation", "quality"] + (["valid_fraction"] if valid_fraction else [])
    ds = read_grid_netcdf(path, names)
    if grid is not None and not ds.grid.same_as(grid):
        raise InputFileError(path, f"remapped MRMS grid ({ds.grid.describe()}) differs from {grid.describe()}")
    return RemappedMrms(
        grid=ds.grid,
        precipitation_mm=ds.data["precipitation"].astype(np.float32, copy=False),
        quality=ds.data["quality"].astype(np.float32, copy=False),
        valid_fraction=ds.data["valid_fraction"].astype(np.float32, copy=False) if valid_fraction else None,
        valid=ds.time,
        source=path,
    )
