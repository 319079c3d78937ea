"""GRIB2 writers (ecCodes) for the synthetic archive: GRAF forecasts, MRMS products, terrain.

Every message starts from ecCodes' bundled ``GRIB2`` sample, so no template file ships
with pqpf. Values are always set under simple packing first and the packing type is
changed afterwards: setting values after switching to a compressing packing silently
corrupts the message. Writers go through :func:`pqpf.io.atomic.atomic_path`, so a killed
run leaves no half-written file, and produce identical bytes for identical input
(gzip is written with a zero time stamp).

What is written, and how it is packed:

========  ==========================================  =====================================
file      grid / product                              packing (step)
========  ==========================================  =====================================
GRAF      Lambert conformal, template 3.30; 1-h       CCSDS, 16 bits (<= 0.001 mm)
          accumulated precipitation 0/1/8, product
          template 4.8
MRMS      regular lat/lon, template 3.0, first row    CCSDS, 16 bits for QPE (<= 0.1 mm,
          north, gzipped; product template 4.0 at     in practice ~0.001 mm), 8 bits for
          the valid time; no bitmap (-3 is a value)   the quality index (<= 0.01)
terrain   as GRAF; orography 0/3/5 at the surface     simple, 16 bits (<= 0.1 m)
          (``orog``), product template 4.0
========  ==========================================  =====================================

Values are first rounded to the stated decimals, then packed with a step no larger
than that, so they decode within one decimal unit of the input. The real MRMS files use
PNG packing (template 5.41); CCSDS (template 5.42) is chosen because it is faster:
measured on a 1 M point QPE field, setting the values plus packing took ~35 ms with
CCSDS against ~60-85 ms with PNG (sizes after gzip 97 kB and 57 kB), which matters when
writing thousands of hours. Bit widths are 8, 16 or 24: ecCodes sets byte-aligned
widths several times faster (15 ms against ~100 ms for 1 M values). Both decode with
pygrib and ecCodes. The MRMS messages copy the real files' earth (shape 2, the IAU
1965 oblate spheroid), centre 161 and generating-process codes; GRAF and terrain use
the sphere of shape 6 and centre 255 (missing: the producer has no WMO centre code),
so pygrib names the GRAF parameter ``unknown`` (readers select it by 0/1/8).
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf.grid import EARTH_RADIUS_M, Grid
from pqpf.io.atomic import atomic_write_bytes

__all__ = [
    "write_graf_grib2",
    "write_mrms_grib2_gz",
    "write_terrain_grib2",
    "encode_mrms_grib2",
    "static_product_gzipper",
    "gzip_deterministic",
    "MRMS_QPE_PASS2_ID",
    "MRMS_QUALITY_ID",
]

#: (discipline, category, number) of MRMS MultiSensor_QPE_01H_Pass2.
MRMS_QPE_PASS2_ID = (209, 6, 37)
#: Parameter numbers given to the synthetic RadarAccumulationQualityIndex_01H. A
#: synthetic choice in MRMS's local discipline 209: pqpf recognises the quality product
#: by its file name only, never by these numbers.
MRMS_QUALITY_ID = (209, 8, 10)

# The earth of the real MRMS files: GRIB2 shape 2 (a = 6378160 m, b = 6356775 m).
_MRMS_EARTH = (6378160.0, 6356775.0)
_GZIP_LEVEL = 1


def _eccodes() -> Any:
    """ecCodes, imported after pyproj and pygrib (the other order can break loading)."""
    # isort: off
    import pygrib  # noqa: F401  (import order only)
    import pyproj  # noqa: F401

    import eccodes
    # isort: on

    return eccodes


def _check_values(values: NDArray[Any], grid: Grid, what: str) -> NDArray[np.float64]:
    arr = np.asarray(values)
    if arr.shape != grid.shape:
        raise ValueError(f"{what} has shape {arr.shape}, the grid is {grid.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} has {int((~np.isfinite(arr)).sum())} non-finite values")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _lon360(lon: float) -> float:
    return float(lon % 360.0)


def _set_earth(ec: Any, h: Any, grid: Grid) -> None:
    a, b = grid.earth_a, grid.earth_b
    if a == b == EARTH_RADIUS_M:
        ec.codes_set(h, "shapeOfTheEarth", 6)
    elif (a, b) == _MRMS_EARTH:
        ec.codes_set(h, "shapeOfTheEarth", 2)
    elif a == b:
        ec.codes_set(h, "shapeOfTheEarth", 1)
        ec.codes_set(h, "scaleFactorOfRadiusOfSphericalEarth", 0)
        ec.codes_set(h, "scaledValueOfRadiusOfSphericalEarth", int(round(a)))
    else:
        ec.codes_set(h, "shapeOfTheEarth", 7)
        for key, value in (("EarthMajorAxis", a), ("EarthMinorAxis", b)):
            ec.codes_set(h, f"scaleFactorOf{key}", 0)
            ec.codes_set(h, f"scaledValueOf{key}", int(round(value)))


def _set_lambert(ec: Any, h: Any, grid: Grid) -> None:
    """Grid definition template 3.30 for a Lambert grid (any scanning direction)."""
    if not grid.is_lambert:
        raise ValueError(f"need a Lambert conformal grid, got {grid.describe()}")
    ec.codes_set(h, "gridType", "lambert")
    _set_earth(ec, h, grid)
    lon0, lat0 = grid.to_lonlat(np.array(grid.x0), np.array(grid.y0))
    ec.codes_set(h, "Nx", grid.nx)
    ec.codes_set(h, "Ny", grid.ny)
    ec.codes_set(h, "latitudeOfFirstGridPointInDegrees", float(lat0))
    ec.codes_set(h, "longitudeOfFirstGridPointInDegrees", _lon360(float(lon0)))
    ec.codes_set(h, "LaDInDegrees", grid.lat_0)
    ec.codes_set(h, "LoVInDegrees", _lon360(grid.lon_0))
    ec.codes_set(h, "Latin1InDegrees", grid.lat_1)
    ec.codes_set(h, "Latin2InDegrees", grid.lat_2)
    ec.codes_set(h, "latitudeOfSouthernPoleInDegrees", -90.0)
    ec.codes_set(h, "longitudeOfSouthernPoleInDegrees", 0.0)
    ec.codes_set(h, "DxInMetres", abs(grid.dx))
    ec.codes_set(h, "DyInMetres", abs(grid.dy))
    ec.codes_set(h, "iScansNegatively", 1 if grid.dx < 0 else 0)
    ec.codes_set(h, "jScansPositively", 1 if grid.dy > 0 else 0)
    ec.codes_set(h, "resolutionAndComponentFlags", 8)  # winds grid-relative, as NCEP writes


def _set_latlon(ec: Any, h: Any, grid: Grid) -> None:
    """Grid definition template 3.0 for a regular latitude/longitude grid."""
    if grid.is_lambert:
        raise ValueError(f"need a latitude/longitude grid, got {grid.describe()}")
    ec.codes_set(h, "gridType", "regular_ll")
    _set_earth(ec, h, grid)
    ec.codes_set(h, "Ni", grid.nx)
    ec.codes_set(h, "Nj", grid.ny)
    ec.codes_set(h, "iScansNegatively", 1 if grid.dx < 0 else 0)
    ec.codes_set(h, "jScansPositively", 1 if grid.dy > 0 else 0)
    last_x = grid.x0 + (grid.nx - 1) * grid.dx
    last_y = grid.y0 + (grid.ny - 1) * grid.dy
    ec.codes_set(h, "latitudeOfFirstGridPointInDegrees", float(grid.y0))
    ec.codes_set(h, "longitudeOfFirstGridPointInDegrees", _lon360(grid.x0))
    ec.codes_set(h, "latitudeOfLastGridPointInDegrees", float(last_y))
    ec.codes_set(h, "longitudeOfLastGridPointInDegrees", _lon360(last_x))
    ec.codes_set(h, "iDirectionIncrementInDegrees", abs(grid.dx))
    ec.codes_set(h, "jDirectionIncrementInDegrees", abs(grid.dy))
    ec.codes_set(h, "resolutionAndComponentFlags", 48)  # increments given, as MRMS


def _set_reference_time(ec: Any, h: Any, when: dt.datetime) -> None:
    ec.codes_set(h, "dataDate", int(f"{when:%Y%m%d}"))
    ec.codes_set(h, "dataTime", int(f"{when:%H%M}"))


def _pack(ec: Any, h: Any, values: NDArray[np.float64], packing: str, decimals: int,
          bits: int) -> bytes:
    """Round to ``decimals``, set values under simple packing, then switch packing."""
    values = np.round(values, decimals)
    ec.codes_set(h, "packingType", "grid_simple")
    ec.codes_set(h, "decimalScaleFactor", int(decimals))
    ec.codes_set(h, "bitsPerValue", int(bits))
    ec.codes_set_values(h, values.ravel())
    if packing != "grid_simple":
        ec.codes_set(h, "packingType", packing)
    return bytes(ec.codes_get_message(h))


def _bits_for(values: NDArray[np.float64], decimals: int) -> int:
    """Bits per value (8, 16 or 24) for a packing step of at most ``10**-decimals``.

    CCSDS and PNG packing keep the width but choose their own binary scale (decimal
    scale 0): the step is the smallest power of two that fits the range into the bits.
    Byte-aligned widths are used because ecCodes sets them several times faster.
    """
    step_exp = math.floor(math.log2(10.0 ** -decimals))
    span = float(values.max() - values.min()) * 2.0 ** -step_exp
    needed = int(math.ceil(math.log2(span + 1.0)))
    return 8 if needed <= 8 else 16 if needed <= 16 else 24


def encode_graf_grib2(
    grid: Grid, precip_mm: NDArray[Any], init: dt.datetime, lead_h: int
) -> bytes:
    """One GRIB2 message of 1-h accumulated precipitation ending at ``lead_h``.

    Parameters
    ----------
    grid : Grid
        Lambert conformal grid of the field.
    precip_mm : array, shape grid.shape
        Precipitation (mm = kg m-2) accumulated from ``lead_h - 1`` to ``lead_h``,
        in the grid's scanning order; non-negative and finite.
    init : datetime
        Initialisation (reference) time, UTC.
    lead_h : int
        End of the accumulation, hours after ``init`` (>= 1).

    Returns
    -------
    bytes
        The message: discipline 0, category 1, number 8, product template 4.8
        (accumulation over one hour), surface, CCSDS packing at 0.001 mm.
    """
    if int(lead_h) < 1:
        raise ValueError(f"lead_h must be at least 1 for a 1-h accumulation, got {lead_h}")
    values = _check_values(precip_mm, grid, "precip_mm")
    if values.min() < 0:
        raise ValueError(f"precip_mm must not be negative, got minimum {values.min():g}")
    ec = _eccodes()
    h = ec.codes_grib_new_from_samples("GRIB2")
    try:
        ec.codes_set(h, "centre", 255)  # no WMO centre code for the model's producer
        ec.codes_set(h, "significanceOfReferenceTime", 1)  # start of forecast
        ec.codes_set(h, "productionStatusOfProcessedData", 0)
        ec.codes_set(h, "typeOfProcessedData", 1)  # forecast
        _set_reference_time(ec, h, init)
        _set_lambert(ec, h, grid)
        ec.codes_set(h, "productDefinitionTemplateNumber", 8)
        ec.codes_set(h, "discipline", 0)
        ec.codes_set(h, "parameterCategory", 1)
        ec.codes_set(h, "parameterNumber", 8)
        ec.codes_set(h, "typeOfGeneratingProcess", 2)  # forecast
        ec.codes_set(h, "typeOfFirstFixedSurface", 1)
        ec.codes_set(h, "typeOfStatisticalProcessing", 1)  # accumulation
        ec.codes_set(h, "stepUnits", 1)
        ec.codes_set(h, "indicatorOfUnitForTimeRange", 1)
        ec.codes_set(h, "stepRange", f"{int(lead_h) - 1}-{int(lead_h)}")
        return _pack(ec, h, values, "grid_ccsds", 3, _bits_for(values, 3))
    finally:
        ec.codes_release(h)


def write_graf_grib2(
    path: str | Path, grid: Grid, precip_mm: NDArray[Any], init: dt.datetime, lead_h: int
) -> None:
    """Write a GRAF-like GRIB2 file (see :func:`encode_graf_grib2`) atomically."""
    atomic_write_bytes(path, encode_graf_grib2(grid, precip_mm, init, lead_h))


def encode_mrms_grib2(
    grid: Grid,
    values: NDArray[Any],
    valid: dt.datetime,
    param_id: Sequence[int],
    decimals: int = 1,
) -> bytes:
    """One MRMS-style GRIB2 message (not yet gzipped).

    Parameters
    ----------
    grid : Grid
        Regular latitude/longitude grid (MRMS: 0.01 degree, first row north).
    values : array, shape grid.shape
        The product in the grid's scanning order; finite. Sentinels (-3 no coverage)
        are ordinary values, as in the real files (no bitmap).
    valid : datetime
        Valid time (the end of the accumulation hour), written as the reference time.
    param_id : (discipline, category, number)
        E.g. :data:`MRMS_QPE_PASS2_ID`.
    decimals : int
        Decimal precision kept: 1 keeps 0.1 mm, like the real QPE files.
    """
    if len(param_id) != 3:
        raise ValueError(f"param_id must be (discipline, category, number), got {param_id!r}")
    arr = _check_values(values, grid, "values")
    ec = _eccodes()
    h = ec.codes_grib_new_from_samples("GRIB2")
    try:
        ec.codes_set(h, "centre", 161)
        ec.codes_set(h, "tablesVersion", 255)
        ec.codes_set(h, "significanceOfReferenceTime", 3)  # observation time
        ec.codes_set(h, "productionStatusOfProcessedData", 2)
        ec.codes_set(h, "typeOfProcessedData", 7)
        _set_reference_time(ec, h, valid)
        _set_latlon(ec, h, grid)
        ec.codes_set(h, "discipline", int(param_id[0]))
        ec.codes_set(h, "parameterCategory", int(param_id[1]))
        ec.codes_set(h, "parameterNumber", int(param_id[2]))
        ec.codes_set(h, "typeOfGeneratingProcess", 8)  # observation
        ec.codes_set(h, "generatingProcessIdentifier", 97)
        ec.codes_set(h, "typeOfFirstFixedSurface", 102)  # altitude above mean sea level
        ec.codes_set(h, "scaleFactorOfFirstFixedSurface", 0)
        ec.codes_set(h, "scaledValueOfFirstFixedSurface", 0)
        ec.codes_set(h, "indicatorOfUnitForForecastTime", 0)  # minutes, forecast time 0
        ec.codes_set(h, "forecastTime", 0)
        return _pack(ec, h, arr, "grid_ccsds", decimals, _bits_for(arr, decimals))
    finally:
        ec.codes_release(h)


def _with_reference_time(message: bytes, when: dt.datetime) -> bytes:
    """``message`` with section 1's reference time replaced (GRIB2 section 1, octets
    13-19: year, month, day, hour, minute, second); the data are not touched."""
    if message[:4] != b"GRIB" or message[7] != 2 or message[20] != 1:
        raise ValueError("not a GRIB2 message starting with section 1")
    stamp = struct.pack(">HBBBBB", when.year, when.month, when.day, when.hour, when.minute, when.second)
    return message[:28] + stamp + message[35:]


def static_product_gzipper(message: bytes) -> Callable[[dt.datetime], bytes]:
    """For a product whose values do not change with time: compress it once.

    Returns a function giving the gzipped ``message`` with another reference time, as a
    two-member gzip stream (sections 0-1, then the compressed-once rest), which gzip,
    zcat and Python's :func:`gzip.decompress` read as one file.
    """
    if message[:4] != b"GRIB" or message[7] != 2 or message[20] != 1:
        raise ValueError("not a GRIB2 message starting with section 1")
    head_end = 16 + int.from_bytes(message[16:20], "big")
    tail_gz = gzip_deterministic(message[head_end:])
    head = message[:head_end]

    def gzipped(when: dt.datetime) -> bytes:
        return gzip_deterministic(_with_reference_time(head, when)) + tail_gz

    return gzipped


def gzip_deterministic(data: bytes) -> bytes:
    """gzip (fast level) with a zero time stamp, so equal input gives equal bytes."""
    return gzip.compress(data, compresslevel=_GZIP_LEVEL, mtime=0)


def write_mrms_grib2_gz(
    path: str | Path,
    grid: Grid,
    values: NDArray[Any],
    valid: dt.datetime,
    param_id: Sequence[int],
    decimals: int = 1,
) -> None:
    """Write an MRMS-style gzipped GRIB2 file atomically (see :func:`encode_mrms_grib2`)."""
    atomic_write_bytes(path, gzip_deterministic(encode_mrms_grib2(grid, values, valid, param_id, decimals)))


def write_terrain_grib2(path: str | Path, grid: Grid, height_m: NDArray[Any]) -> None:
    """Write terrain height as GRIB2 orography (0/3/5 at the surface, ``orog``) atomically.

    Parameters
    ----------
    path : str or Path
    grid : Grid
        The model's Lambert grid.
    height_m : array, shape grid.shape
        Height above mean sea level (m), finite; kept to 0.1 m.
    """
    values = _check_values(height_m, grid, "height_m")
    ec = _eccodes()
    h = ec.codes_grib_new_from_samples("GRIB2")
    try:
        ec.codes_set(h, "centre", 255)
        ec.codes_set(h, "significanceOfReferenceTime", 0)  # analysis
        ec.codes_set(h, "typeOfProcessedData", 0)
        _set_reference_time(ec, h, dt.datetime(2000, 1, 1))
        _set_lambert(ec, h, grid)
        ec.codes_set(h, "productDefinitionTemplateNumber", 0)
        ec.codes_set(h, "discipline", 0)
        ec.codes_set(h, "parameterCategory", 3)
        ec.codes_set(h, "parameterNumber", 5)
        ec.codes_set(h, "typeOfFirstFixedSurface", 1)
        message = _pack(ec, h, values, "grid_simple", 1, _bits_for(values, 1))
    finally:
        ec.codes_release(h)
    atomic_write_bytes(path, message)
