"""The terrain netCDF file (``[paths] terrain_file``): its variables, writer and reader.

CF-1.8, float32 ``(y, x)`` variables named in :data:`pqpf.terrain.TERRAIN_VARIABLES`
with the units, long names and comments of :data:`VARIABLE_ATTRS`, ``lat``/``lon`` and
the grid mapping; global attributes ``source`` (the terrain GRIB) and
``smoothing_sigma_px``. Written by ``terrain_height.py``; read by patch extraction,
inference and the remap stage (which takes its target grid from it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pqpf.errors import InputFileError
from pqpf.grid import Grid
from pqpf.io.netcdf import NcVar, read_grid_netcdf, write_grid_netcdf
from pqpf.terrain import TERRAIN_VARIABLES, Terrain

__all__ = ["VARIABLE_ATTRS", "write_terrain", "read_terrain", "read_terrain_grid"]

_SLOPE_DOC = "per metre on the ground (map factor applied)"
_SLOPE_X = "positive when height increases with the column index"
_SLOPE_Y = "positive when height increases with the row index"

#: name -> (units, long_name, comment); the order is the order of the file.
VARIABLE_ATTRS: dict[str, tuple[str, str, str]] = {
    "height": ("m", "terrain height above mean sea level", ""),
    "height_smoothed": ("m", "Gaussian-smoothed terrain height", ""),
    "height_local_difference": ("m", "terrain height minus smoothed terrain height", ""),
    "slope_x": ("m m-1", "terrain slope along the grid x axis", f"{_SLOPE_DOC}; {_SLOPE_X}"),
    "slope_y": ("m m-1", "terrain slope along the grid y axis", f"{_SLOPE_DOC}; {_SLOPE_Y}"),
    "slope_east": ("m m-1", "terrain slope towards true east", "positive when height increases eastward"),
    "slope_north": ("m m-1", "terrain slope towards true north", "positive when height increases northward"),
    "slope_x_smoothed": ("m m-1", "smoothed-terrain slope along the grid x axis", f"{_SLOPE_DOC}; {_SLOPE_X}"),
    "slope_y_smoothed": ("m m-1", "smoothed-terrain slope along the grid y axis", f"{_SLOPE_DOC}; {_SLOPE_Y}"),
    "slope_east_smoothed": ("m m-1", "smoothed-terrain slope towards true east", ""),
    "slope_north_smoothed": ("m m-1", "smoothed-terrain slope towards true north", ""),
    "map_factor": ("1", "map scale factor (projection length per ground length)", ""),
    "convergence_angle": (
        "radian", "meridian convergence angle",
        "angle of true north counter-clockwise from the grid +y axis; true east is "
        "(cos a, sin a) and true north (-sin a, cos a) in grid-axis components",
    ),
}

def _check_names(names: Any) -> list[str]:
    unknown = [n for n in names if n not in VARIABLE_ATTRS]
    if unknown:
        raise ValueError(
            f"unknown terrain variable(s) {', '.join(map(repr, unknown))}; "
            f"valid names: {', '.join(TERRAIN_VARIABLES)}"
        )
    return list(names)


def write_terrain(path: str | Path, terrain: Terrain, source: str) -> Path:
    """Write a terrain netCDF file atomically (CF, with lat/lon and the grid mapping).

    Parameters
    ----------
    path : str or Path
        Output file.
    terrain : Terrain
        Fields to write (any subset of :data:`TERRAIN_VARIABLES`).
    source : str
        Where the height came from (the terrain GRIB path); global attribute ``source``.

    Returns
    -------
    Path
        ``path``.
    """
    _check_names(terrain.fields)
    variables = {}
    for name in TERRAIN_VARIABLES:
        if name not in terrain.fields:
            continue
        units, long_name, comment = VARIABLE_ATTRS[name]
        attrs = {"units": units, "long_name": long_name}
        if name == "height":
            attrs["standard_name"] = "surface_altitude"
        if comment:
            attrs["comment"] = comment
        variables[name] = NcVar(np.asarray(terrain.fields[name], dtype=np.float32), attrs)
    global_attrs: dict[str, Any] = {
        "title": "pqpf terrain fields",
        "source": str(source),
        "smoothing_boundary": "local-linear (Gaussian-weighted line fit over in-domain points)",
    }
    if math.isfinite(terrain.smoothing_sigma_px):
        global_attrs["smoothing_sigma_px"] = float(terrain.smoothing_sigma_px)
    return write_grid_netcdf(path, terrain.grid, variables, global_attrs=global_attrs)


def read_terrain(path: str | Path, names: list[str] | tuple[str, ...] | None = None) -> Terrain:
    """Read a terrain netCDF file written by :func:`write_terrain`.

    Parameters
    ----------
    path : str or Path
    names : sequence of str, optional
        Variables to read; all of :data:`TERRAIN_VARIABLES` when omitted.

    Raises
    ------
    InputFileError
        The file is missing or unreadable, has no grid mapping, or lacks a variable.
    ValueError
        A name is not a terrain variable.
    """
    wanted = _check_names(TERRAIN_VARIABLES if names is None else names)
    ds = read_grid_netcdf(path, wanted)
    fields = {}
    for name in wanted:
        values = np.asarray(ds.data[name], dtype=np.float32)
        if values.shape != ds.grid.shape:
            raise InputFileError(path, f"variable {name!r} has shape {values.shape}, grid is {ds.grid.shape}")
        fields[name] = values
    try:
        sigma = float(ds.attrs.get("smoothing_sigma_px", math.nan))
    except (TypeError, ValueError):
        sigma = math.nan
    return Terrain(ds.grid, fields, sigma)


def read_terrain_grid(path: str | Path) -> Grid:
    """Only the grid of a terrain file (the remap stage's target grid).

    Raises
    ------
    InputFileError
        The terrain file is missing (run ``terrain_height.py`` first) or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "terrain file not found; run terrain_height.py first")
    return read_grid_netcdf(path, names=[]).grid
