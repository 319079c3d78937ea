"""CF netCDF files on a :class:`~pqpf.grid.Grid`: one writer and one reader for every
gridded product (terrain, remapped MRMS, probabilities).

Files carry 1-D projection coordinates ``x``/``y``, 2-D ``lat``/``lon``, a CF
grid-mapping variable (so later stages and other tools know the projection), optional
extra dimensions such as ``threshold``, and a scalar ``time`` in seconds since 1970.
Variables are compressed (zlib + shuffle) and written atomically.
"""

from __future__ import annotations

import datetime as dt
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from pqpf import __version__
from pqpf.dates import from_epoch_seconds, to_epoch_seconds
from pqpf.errors import InputFileError
from pqpf.grid import Grid
from pqpf.io.atomic import atomic_path

__all__ = ["NcVar", "GridDataset", "write_grid_netcdf", "read_grid_netcdf"]

_TIME_UNITS = "seconds since 1970-01-01 00:00:00"
_Level = Literal[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
_LEVELS: dict[int, _Level] = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9}


@dataclass
class NcVar:
    """One variable to write.

    ``dims`` ends with ``("y", "x")`` for gridded data; leading dimensions (e.g.
    ``"threshold"``) need a matching entry in ``coords`` of :func:`write_grid_netcdf`.
    """

    data: NDArray[Any]
    attrs: dict[str, Any] = field(default_factory=dict)
    dims: tuple[str, ...] = ("y", "x")
    dtype: str | None = None
    fill_value: float | None = None
    #: Keep this many significant decimal digits and compress the rest away (lossy,
    #: relative precision, so small values keep their precision too). None keeps every bit.
    significant_digits: int | None = None


@dataclass
class GridDataset:
    """What :func:`read_grid_netcdf` returns."""

    grid: Grid
    data: dict[str, NDArray[Any]]
    var_attrs: dict[str, dict[str, Any]]
    attrs: dict[str, Any]
    coords: dict[str, NDArray[Any]]
    time: dt.datetime | None
    source: Path


def write_grid_netcdf(
    path: str | Path,
    grid: Grid,
    variables: dict[str, NcVar],
    *,
    global_attrs: dict[str, Any] | None = None,
    coords: dict[str, tuple[NDArray[Any], dict[str, Any]]] | None = None,
    time: dt.datetime | None = None,
    lonlat: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
    complevel: int = 4,
) -> Path:
    """Write a CF-1.8 netCDF file of gridded variables, atomically.

    Parameters
    ----------
    path : str or Path
        Output file; written under a temporary name and renamed when complete.
    grid : Grid
        The grid every ``(..., y, x)`` variable lies on.
    variables : dict of str -> NcVar
    global_attrs : dict, optional
        Added to ``Conventions``, ``history`` and ``pqpf_version``.
    coords : dict, optional
        Extra 1-D coordinate variables ``name -> (values, attrs)``; the name is also the
        dimension name.
    time : datetime, optional
        Written as a scalar ``time`` coordinate (int64 seconds since 1970).
    lonlat : (lon, lat), optional
        Precomputed 2-D longitude/latitude; computed from ``grid`` when omitted.
    complevel : int
        zlib compression level.
    """
    import netCDF4

    path = Path(path)
    if complevel not in _LEVELS:
        raise ValueError(f"complevel must be 0..9, got {complevel}")
    level = _LEVELS[complevel]
    gm_name = grid.cf_grid_mapping()[0]
    lonlat = lonlat if lonlat is not None else grid.lonlat()
    with atomic_path(path) as tmp:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            _write_coordinates(nc, grid, coords or {}, lonlat, time, level)
            for name, spec in variables.items():
                _write_variable(nc, name, spec, grid, gm_name, time is not None, level)
            stamp = _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime())
            nc.setncatts(
                {
                    "Conventions": "CF-1.8",
                    "history": f"{stamp} written by pqpf {__version__}",
                    "pqpf_version": __version__,
                    **(global_attrs or {}),
                }
            )
    return path


def _write_coordinates(nc: Any, grid: Grid, coords: dict[str, tuple[NDArray[Any], dict[str, Any]]],
                       lonlat: tuple[NDArray[np.floating], NDArray[np.floating]], time: dt.datetime | None,
                       level: _Level) -> None:
    """Dimensions, x/y, the grid mapping, lat/lon, extra coordinates and the time."""
    nc.createDimension("y", grid.ny)
    nc.createDimension("x", grid.nx)
    for name, (values, attrs) in coords.items():
        values = np.asarray(values)
        nc.createDimension(name, values.size)
        var = nc.createVariable(name, values.dtype, (name,))
        var[:] = values
        var.setncatts(attrs)
    xv = nc.createVariable("x", "f8", ("x",))
    yv = nc.createVariable("y", "f8", ("y",))
    xv[:] = grid.x
    yv[:] = grid.y
    if grid.is_lambert:
        xv.setncatts({"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"})
        yv.setncatts({"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"})
    else:
        xv.setncatts({"long_name": "longitude of grid column", "units": "degrees_east", "axis": "X"})
        yv.setncatts({"long_name": "latitude of grid row", "units": "degrees_north", "axis": "Y"})
    gm_name, gm_attrs = grid.cf_grid_mapping()
    gm = nc.createVariable(gm_name, "i4", ())
    gm.setncatts(gm_attrs)
    lon, lat = lonlat
    for name, values, attrs in (
        ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
        ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
    ):
        v = nc.createVariable(name, "f4", ("y", "x"), zlib=True, complevel=level, shuffle=True)
        v[:] = np.asarray(values, dtype=np.float32)
        v.setncatts(attrs)
    if time is not None:
        tv = nc.createVariable("time", "i8", ())
        tv[...] = to_epoch_seconds(time)
        tv.setncatts({"standard_name": "time", "units": _TIME_UNITS, "calendar": "standard"})


def _write_variable(nc: Any, name: str, spec: NcVar, grid: Grid, gm_name: str, has_time: bool,
                    level: _Level) -> None:
    """One data variable, chunked per 2-D field and compressed."""
    data = np.asarray(spec.data)
    if data.shape[-2:] != grid.shape and spec.dims[-2:] == ("y", "x"):
        raise ValueError(f"variable {name} has shape {data.shape}, grid is {grid.shape}")
    dtype = spec.dtype or ("f4" if np.issubdtype(data.dtype, np.floating) else data.dtype)
    chunks = None
    if spec.dims[-2:] == ("y", "x"):
        chunks = [1] * (len(spec.dims) - 2) + [min(grid.ny, 512), min(grid.nx, 512)]
    fill = spec.fill_value
    if fill is None and np.issubdtype(np.dtype(dtype), np.floating):
        fill = np.float32(np.nan) if np.dtype(dtype) == np.float32 else np.nan
    v = nc.createVariable(
        name, dtype, spec.dims, zlib=True, complevel=level, shuffle=True,
        chunksizes=chunks, fill_value=fill,
        significant_digits=spec.significant_digits,
    )
    v.set_auto_mask(False)
    v[:] = data.astype(dtype, copy=False)
    attrs = dict(spec.attrs)
    if spec.dims[-2:] == ("y", "x"):
        attrs.setdefault("grid_mapping", gm_name)
        attrs.setdefault("coordinates", "lat lon" + (" time" if has_time else ""))
    v.setncatts(attrs)


def read_grid_netcdf(path: str | Path, names: list[str] | None = None) -> GridDataset:
    """Read variables (all gridded ones when ``names`` is None) and the grid of a file
    written by :func:`write_grid_netcdf`.

    Raises
    ------
    InputFileError
        Missing or unreadable file, no grid mapping, or a requested variable absent.
    """
    import netCDF4

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        nc = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise InputFileError(path, f"not a readable netCDF file ({exc})") from None
    try:
        gm_attrs = None
        for var in nc.variables.values():
            if "grid_mapping_name" in var.ncattrs():
                gm_attrs = {k: var.getncattr(k) for k in var.ncattrs()}
                break
        if gm_attrs is None or "x" not in nc.variables or "y" not in nc.variables:
            raise InputFileError(path, "no CF grid mapping with x/y coordinates")
        grid = Grid.from_cf(gm_attrs, nc.variables["x"][:].data, nc.variables["y"][:].data)
        skip = {"x", "y", "time"} | set(nc.dimensions)
        available = [
            n for n, v in nc.variables.items()
            if n not in skip and v.dimensions[-2:] == ("y", "x")
        ]
        wanted = names if names is not None else available
        data: dict[str, NDArray[Any]] = {}
        var_attrs: dict[str, dict[str, Any]] = {}
        for name in wanted:
            if name not in nc.variables:
                raise InputFileError(path, f"variable {name!r} not found (have: {', '.join(available)})")
            var = nc.variables[name]
            var.set_auto_mask(False)
            try:
                data[name] = np.asarray(var[:])
            except (RuntimeError, OSError) as exc:
                raise InputFileError(path, f"cannot read variable {name!r} ({exc})") from None
            var_attrs[name] = {k: var.getncattr(k) for k in var.ncattrs()}
        coords = {
            n: np.asarray(nc.variables[n][:]) for n in nc.dimensions
            if n not in ("x", "y") and n in nc.variables
        }
        when = None
        if "time" in nc.variables:
            when = from_epoch_seconds(int(nc.variables["time"][...]))
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
    finally:
        nc.close()
    return GridDataset(grid, data, var_attrs, attrs, coords, when, path)
