"""The one GRIB reader (pygrib): GRAF forecasts, MRMS QPE and quality, terrain.

Every reader returns a :class:`Field`: float32 values with NaN for missing data, the
:class:`~pqpf.grid.Grid` taken from the message's grid definition, and the times the
message carries. Files are read whole into memory and every message's structure is
checked (:mod:`pqpf.io.grib_checks`) before anything is handed to the C library, so a
declared size can neither make it allocate without bound nor read past the message.
Whatever then fails while interpreting a message (pygrib's RuntimeError, a date that
does not parse, a projection pyproj refuses, ...) is caught inside the reader: a missing,
truncated or corrupt file is always one :class:`~pqpf.errors.InputFileError` naming it,
which the stages' error policy counts and skips. Gzipped files (MRMS) are decompressed in
memory: nothing is written next to the archive.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf.errors import InputFileError, PqpfError
from pqpf.grid import EARTH_RADIUS_M, LAMBERT, LATLON, Grid
from pqpf.io.grib_checks import (
    MAX_GRID_POINTS,
    check_plausible_grid,
    library_stderr_to_log,
    split_messages,
)

__all__ = [
    "Field",
    "read_graf",
    "read_mrms_qpe",
    "read_mrms_quality",
    "read_terrain_grib",
    "read_grib_messages",
    "grid_from_message",
    "MAX_GRID_POINTS",
]

logger = logging.getLogger(__name__)

# GRIB2 code table 3.2: shape of the earth -> (a, b) in metres, where fixed.
_EARTH_SHAPES: dict[int, tuple[float, float]] = {
    0: (6367470.0, 6367470.0),
    2: (6378160.0, 6356775.0),
    4: (6378137.0, 6356752.314),
    5: (6378137.0, 6356752.314245),
    6: (EARTH_RADIUS_M, EARTH_RADIUS_M),
    8: (6371200.0, 6371200.0),
}
#: (discipline, category, number) of total precipitation in GRIB2.
_APCP_ID = (0, 1, 8)
#: What pygrib, pyproj and the number/date conversions raise on corrupt content.
_CONTENT_ERRORS = (RuntimeError, ValueError, TypeError, KeyError, IndexError,
                   ArithmeticError, OSError, EOFError)


@dataclass(frozen=True)
class Field:
    """A decoded 2-D field.

    Attributes
    ----------
    values : float32 array, shape (ny, nx)
        Data in the file's scanning order (see :class:`~pqpf.grid.Grid`); NaN = missing.
    grid : Grid
    valid_time : datetime
        End of the accumulation period for accumulated fields.
    init_time : datetime or None
        Reference (initialisation) time of a forecast.
    source : Path
    attrs : dict
        ``name``, ``units`` and the GRIB parameter triple.
    """

    values: NDArray[np.float32]
    grid: Grid
    valid_time: dt.datetime
    init_time: dt.datetime | None
    source: Path
    attrs: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# bytes and framing
# --------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror})") from None
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputFileError(path, f"not a complete gzip file ({exc})") from None
    return data


def _split_messages(data: bytes, path: Path) -> list[bytes]:
    """Split raw GRIB bytes into messages, checking each one's structure."""
    return split_messages(data, path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Report any failure to interpret a file's content as one InputFileError naming it.

    The structural checks run first, so what is left are refusals of the library or of
    the conversions (an unknown key, a date such as 2020-13-45, a projection with a
    latitude of 300 degrees): the file is corrupt, not the program.
    """
    try:
        yield
    except PqpfError:
        raise
    except _CONTENT_ERRORS as exc:
        raise InputFileError(path, f"corrupt GRIB content ({_first_line(exc)})") from None


def read_grib_messages(path: str | Path) -> list[Any]:
    """All messages of a (possibly gzipped) GRIB file as pygrib message objects.

    Raises
    ------
    InputFileError
        Missing, empty, truncated or corrupt file (see :mod:`pqpf.io.grib_checks`).
    """
    path = Path(path)
    with library_stderr_to_log(path):
        return _read_messages(path)


def _read_messages(path: Path) -> list[Any]:
    import pygrib

    out = []
    for raw in _split_messages(_read_bytes(path), path):
        try:
            out.append(pygrib.fromstring(raw))
        except Exception as exc:  # pygrib raises bare RuntimeError/ValueError/OSError
            raise InputFileError(path, f"undecodable GRIB message ({_first_line(exc)})") from None
    return out


# --------------------------------------------------------------------------------------
# message -> grid, values, times
# --------------------------------------------------------------------------------------


def _earth(msg: Any) -> tuple[float, float]:
    shape = int(msg["shapeOfTheEarth"]) if msg.has_key("shapeOfTheEarth") else 6
    if shape in _EARTH_SHAPES:
        return _EARTH_SHAPES[shape]
    if shape == 1:
        radius = float(msg["radius"])
        return radius, radius
    if shape in (3, 7):
        a = float(msg["earthMajorAxis"]) * (1000.0 if shape == 3 else 1.0)
        b = float(msg["earthMinorAxis"]) * (1000.0 if shape == 3 else 1.0)
        return a, b
    return EARTH_RADIUS_M, EARTH_RADIUS_M


def grid_from_message(msg: Any, path: Path | None = None) -> Grid:
    """The :class:`Grid` of a pygrib message (Lambert conformal or regular lat/lon).

    Raises
    ------
    InputFileError
        An unsupported grid type, metadata the library cannot interpret, or numbers no
        real grid has (non-finite, a latitude beyond 90 degrees, an earth of another size).
    """
    where = path if path is not None else Path("<message>")
    with _reading(where):
        grid = _grid(msg, where)
    check_plausible_grid(grid, where)
    return grid


def _grid(msg: Any, where: Path) -> Grid:
    grid_type = msg["gridType"]
    a, b = _earth(msg)
    if grid_type == "lambert":
        nx, ny = int(msg["Nx"]), int(msg["Ny"])
        lat_1 = float(msg["Latin1InDegrees"])
        lat_2 = float(msg["Latin2InDegrees"])
        lon_0 = float((float(msg["LoVInDegrees"]) + 180.0) % 360.0 - 180.0)
        lat_0 = float(msg["LaDInDegrees"]) if msg.has_key("LaDInDegrees") else lat_1
        dx = float(msg["DxInMetres"]) * (-1.0 if int(msg["iScansNegatively"]) else 1.0)
        dy = float(msg["DyInMetres"]) * (1.0 if int(msg["jScansPositively"]) else -1.0)
        proto = Grid(LAMBERT, ny, nx, 0.0, 0.0, dx, dy, lat_1, lat_2, lat_0, lon_0, a, b)
        check_plausible_grid(proto, where)  # before pyproj sees its numbers
        x0, y0 = proto.to_xy(
            np.array(float(msg["longitudeOfFirstGridPointInDegrees"])),
            np.array(float(msg["latitudeOfFirstGridPointInDegrees"])),
        )
        return Grid(LAMBERT, ny, nx, float(x0), float(y0), dx, dy, lat_1, lat_2, lat_0, lon_0, a, b)
    if grid_type == "regular_ll":
        ni, nj = int(msg["Ni"]), int(msg["Nj"])
        dlon = float(msg["iDirectionIncrementInDegrees"])
        dlat = float(msg["jDirectionIncrementInDegrees"])
        dlon = -dlon if int(msg["iScansNegatively"]) else dlon
        dlat = dlat if int(msg["jScansPositively"]) else -dlat
        lon0 = float((float(msg["longitudeOfFirstGridPointInDegrees"]) + 180.0) % 360.0 - 180.0)
        lat0 = float(msg["latitudeOfFirstGridPointInDegrees"])
        return Grid(LATLON, nj, ni, lon0, lat0, dlon, dlat, earth_a=a, earth_b=b)
    raise InputFileError(where, f"unsupported grid type {grid_type!r} (need lambert or regular_ll)")


def _values(msg: Any, path: Path, grid: Grid,
            expected_shape: tuple[int, int] | None = None) -> NDArray[np.float32]:
    """Decode a message's values (NaN where missing), after checking the grid's size."""
    if expected_shape is not None and grid.shape != tuple(expected_shape):
        raise InputFileError(path, f"grid of {grid.shape[0]} x {grid.shape[1]} points, expected "
                             f"{expected_shape[0]} x {expected_shape[1]}")
    try:
        raw = msg.values
    except Exception as exc:  # the C library's refusals come as assorted exceptions
        raise InputFileError(path, f"cannot decode values ({_first_line(exc)})") from None
    if np.ma.isMaskedArray(raw):
        values = np.ma.filled(raw.astype(np.float32), np.nan)
    else:
        values = np.asarray(raw, dtype=np.float32)
    if values.shape != grid.shape:
        raise InputFileError(path, f"values have shape {values.shape}, grid says {grid.shape}")
    return values


def _datetime(date: int, time: int) -> dt.datetime:
    return dt.datetime.strptime(f"{int(date):08d}{int(time):04d}", "%Y%m%d%H%M")


def _times(msg: Any) -> tuple[dt.datetime, dt.datetime]:
    """(reference time, validity time) of a message."""
    init = _datetime(msg["dataDate"], msg["dataTime"])
    valid = _datetime(msg["validityDate"], msg["validityTime"])
    return init, valid


def _accumulation_hours(msg: Any) -> float | None:
    """Length of the accumulation period of a message in hours (None if not stated)."""
    if msg.has_key("lengthOfTimeRange") and msg.has_key("indicatorOfUnitForTimeRange"):
        factor = {0: 1.0 / 60.0, 1: 1.0, 2: 24.0}.get(int(msg["indicatorOfUnitForTimeRange"]))
        if factor is not None:
            return float(msg["lengthOfTimeRange"]) * factor
    if msg.has_key("startStep") and msg.has_key("endStep") and msg.has_key("stepUnits"):
        factor = {0: 1.0 / 60.0, 1: 1.0, 2: 24.0}.get(int(msg["stepUnits"]))
        if factor is not None:
            return (float(msg["endStep"]) - float(msg["startStep"])) * factor
    return None


def _param_id(msg: Any) -> tuple[int, int, int]:
    if not all(msg.has_key(k) for k in ("discipline", "parameterCategory", "parameterNumber")):
        return (-1, -1, -1)  # GRIB1 has no such keys
    return (int(msg["discipline"]), int(msg["parameterCategory"]), int(msg["parameterNumber"]))


def _describe(msg: Any) -> str:
    try:
        init, valid = _times(msg)
        lead = (valid - init).total_seconds() / 3600.0
        return f"{msg['shortName']} {_param_id(msg)} ending at +{lead:g} h"
    except Exception:
        return str(msg)


# --------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------


def read_graf(path: str | Path, lead_h: int, init: dt.datetime | None = None,
              expected_shape: tuple[int, int] | None = None) -> Field:
    """The 1-h accumulated precipitation ending at ``lead_h`` from a GRAF GRIB2 file.

    Parameters
    ----------
    path : str or Path
        A GRAF (or other NWP) GRIB file.
    lead_h : int
        Forecast hour the accumulation ends at (the message whose end step is LEAD).
    init : datetime, optional
        Expected initialisation time; a file holding another init is an error.
    expected_shape : (ny, nx), optional
        The grid the caller needs (e.g. the terrain file's); another size is refused
        before the values are decoded.

    Returns
    -------
    Field
        Precipitation in mm (kg m-2), float32, NaN where the bitmap says missing.

    Raises
    ------
    InputFileError
        Missing/corrupt file, no precipitation message ending at ``lead_h``, wrong init
        or grid size.
    """
    path = Path(path)
    with library_stderr_to_log(path), _reading(path):
        msg, msg_init, msg_valid = _hourly_precipitation(_read_messages(path), path, lead_h)
        if init is not None and msg_init != init:
            raise InputFileError(
                path, f"holds the forecast initialised {msg_init:%Y%m%d%H}, expected {init:%Y%m%d%H}"
            )
        grid = grid_from_message(msg, path)
        values = _values(msg, path, grid, expected_shape)
        return Field(values, grid, msg_valid, msg_init, path,
                     {"name": "precipitation", "units": "mm", "grib_id": _param_id(msg)})


def _hourly_precipitation(messages: list[Any], path: Path,
                          lead_h: int) -> tuple[Any, dt.datetime, dt.datetime]:
    """(message, init, valid) of the 1-h precipitation ending at ``lead_h``."""
    found = []
    for msg in messages:
        if _param_id(msg) != _APCP_ID and msg["shortName"] not in ("tp", "apcp"):
            continue
        msg_init, msg_valid = _times(msg)
        if msg_valid - msg_init != dt.timedelta(hours=lead_h):
            continue
        length_h = _accumulation_hours(msg)
        found.append(length_h)
        if length_h == 1.0:
            return msg, msg_init, msg_valid
    if found:
        lengths = ", ".join("unknown" if x is None else f"{x:g} h" for x in found)
        raise InputFileError(
            path, f"the precipitation ending at lead {lead_h} h is accumulated over {lengths}, "
            "not 1 h (pqpf needs the 1-h amount)"
        )
    have = "; ".join(_describe(m) for m in messages[:8])
    raise InputFileError(path, f"no precipitation message ending at lead {lead_h} h (file has: {have})")


def _first_message(path: Path) -> tuple[Any, int]:
    """The first message of a file meant to hold one, and how many there are."""
    messages = _read_messages(path)
    return messages[0], len(messages)


def _warn_if_several(path: Path, count: int) -> None:
    if count != 1:
        logger.warning("%s: %d messages, using the first", path, count)


def _check_valid(path: Path, msg_valid: dt.datetime, valid: dt.datetime | None) -> None:
    if valid is not None and msg_valid != valid:
        raise InputFileError(path, f"valid at {msg_valid:%Y%m%d%H}, expected {valid:%Y%m%d%H}")


def read_mrms_qpe(
    path: str | Path,
    expected_id: tuple[int, ...] | None = (209, 6, 37),
    valid: dt.datetime | None = None,
    expected_shape: tuple[int, int] | None = None,
) -> Field:
    """An MRMS 1-h QPE file (gzipped GRIB2): precipitation in mm, NaN where missing.

    Negative values are sentinels (-3 no coverage, -999/-99 missing), not rain; they
    become NaN. The product is checked by (discipline, category, number): 209/6/37 is
    the pass-2 multi-sensor QPE. ``expected_shape`` (ny, nx), when given, is checked
    before the values are decoded.

    Raises
    ------
    InputFileError
        Missing/corrupt file, a different product, valid time or grid size.
    """
    path = Path(path)
    with library_stderr_to_log(path), _reading(path):
        msg, count = _first_message(path)
        pid = _param_id(msg)
        if expected_id is not None and pid != tuple(expected_id):
            raise InputFileError(
                path, f"holds product {pid[0]}/{pid[1]}/{pid[2]}, expected "
                f"{'/'.join(str(v) for v in expected_id)} (discipline/category/number)"
            )
        _, msg_valid = _times(msg)
        _check_valid(path, msg_valid, valid)
        grid = grid_from_message(msg, path)
        values = _values(msg, path, grid, expected_shape)
        values[values < 0] = np.nan
    _warn_if_several(path, count)
    return Field(values, grid, msg_valid, None, path,
                 {"name": "precipitation", "units": "mm", "grib_id": pid})


def read_mrms_quality(path: str | Path, valid: dt.datetime | None = None,
                      expected_shape: tuple[int, int] | None = None) -> Field:
    """An MRMS radar-accumulation quality index file: values in [0, 1].

    The product is recognised by its file name only; its parameter numbers are not
    assumed. Negative sentinels and missing points become quality 0.

    Raises
    ------
    InputFileError
        Missing/corrupt file, a different valid time or grid size.
    """
    path = Path(path)
    with library_stderr_to_log(path), _reading(path):
        msg, count = _first_message(path)
        _, msg_valid = _times(msg)
        _check_valid(path, msg_valid, valid)
        grid = grid_from_message(msg, path)
        values = _values(msg, path, grid, expected_shape)
        np.nan_to_num(values, copy=False, nan=0.0)
        np.clip(values, 0.0, 1.0, out=values)
        grib_id = _param_id(msg)
    _warn_if_several(path, count)
    return Field(values, grid, msg_valid, None, path,
                 {"name": "quality", "units": "1", "grib_id": grib_id})


def read_terrain_grib(path: str | Path, expected_shape: tuple[int, int] | None = None) -> Field:
    """Terrain height (m) from a GRIB file: the orography message (shortName ``orog``,
    or geopotential height ``gh``/``h`` at the surface).

    Raises
    ------
    InputFileError
        Missing/corrupt file, no orography message, missing points, another grid size.
    """
    path = Path(path)
    with library_stderr_to_log(path), _reading(path):
        messages = _read_messages(path)
        chosen = None
        for msg in messages:
            short = msg["shortName"]
            level_type = msg["typeOfLevel"] if msg.has_key("typeOfLevel") else ""
            if short == "orog" or (short in ("gh", "h", "hgt", "z") and level_type == "surface"):
                chosen = msg
                break
        if chosen is None:
            have = ", ".join(sorted({m["shortName"] for m in messages}))
            raise InputFileError(path, f"no terrain height (orog) message (file has: {have})")
        grid = grid_from_message(chosen, path)
        values = _values(chosen, path, grid, expected_shape)
        if chosen["shortName"] == "z":  # geopotential -> height
            values = values / np.float32(9.80665)
        init, valid = _times(chosen)
        if not np.isfinite(values).all():
            raise InputFileError(path, "terrain height has missing points")
        return Field(values, grid, valid, init, path,
                     {"name": "height", "units": "m", "grib_id": _param_id(chosen)})
