"""Exceedance probabilities as GRIB2, in the form the National Blend of Models distributes them.

One message per threshold, each a WMO product definition template 4.9 ("probability
forecasts at a horizontal level or in a horizontal layer in a continuous or non-continuous
time interval") of total precipitation (discipline 0, category 1, number 8, kg m-2, as the
GRAF APCP field is) at the surface:

=====================  ==============================================================
section / key          value
=====================  ==============================================================
1  reference time      the forecast's initialisation (significance 1, start of
                       forecast, Code table 1.2); type of data 1, forecast products
                       (Code table 1.4), as the NBM writes; centre, sub-centre and
                       production status from the template unless given
2  local use           none
3  grid                the template's section 3, byte for byte (checked after encoding)
4  product             template 4.9; probability type 3, "probability of event above
                       lower limit" (Code table 4.9; pqpf's P(amount >= t) is the same
                       event for a continuous amount), the threshold in mm (= kg m-2) in
                       ``scaleFactorOfLowerLimit`` / ``scaledValueOfLowerLimit`` (value =
                       scaled value x 10^-scale factor, the smallest non-negative scale
                       factor that is exact), upper limit missing;
                       forecast probability number k of N thresholds;
                       type of generating process 5, probability forecast (Code table 4.3)
                       unless given; forecast time LEAD - 1 h; one time range: statistical
                       process 1, accumulation (Code table 4.10), time increment type 2
                       (Code table 4.11), length 1 h; end of the overall time interval =
                       the valid time (init + LEAD)
5-7  data              probability in percent, kept to 0.1 %: decimal scale factor 1,
                       binary scale factor 0, so the decoded values are the input rounded
                       to 0.1 % exactly; missing points (NaN) through a bitmap (section 6),
                       written only when a point is missing
=====================  ==============================================================

Percent, not fraction: the code tables give no unit for the data of a probability
template, but the WMO parameter definitions that ecCodes generates for probability
products (e.g. "Total precipitation of at least 1 mm", template 4.9, probability type 3)
state ``%``, and the NBM, NCEP's other probability products and the tools that read them
(wgrib2, AWIPS) use 0-100. :func:`read_probability_grib2` turns them back into [0, 1].

Packing (``packing=``): file sizes (kB = 1000 bytes) for six thresholds, 0.25-25 mm:

==========  ===================================  ===========  ============
name        data representation template         200 x 250    1308 x 1524
==========  ===================================  ===========  ============
complex     5.3, complex packing and 2nd-order   159 (194)    497 (1992)
            spatial differencing (default)
ccsds       5.42, CCSDS lossless                 129 (164)    731 (2225)
simple      5.0, simple packing                  295 (328)    14453 (15915)
==========  ===================================  ===========  ============

In brackets: with three rows of missing points, i.e. with a bitmap, which costs
``ny * nx / 8`` bytes per message (249 kB at 1308 x 1524). The 200 x 250 fields are U-Net
probabilities of the demo (small non-zero values almost everywhere), the 1308 x 1524 ones
the smoothed exceedance of a real HRRR hour (dry over most of the domain). Complex packing
is the default: NCEP writes it (HRRR, NBM), every GRIB2 decoder reads it (wgrib2, AWIPS,
ecCodes, pygrib), and it is the smallest on the full domain; CCSDS is 20 % smaller on the
demo grid but needs libaec in the reader.

ecCodes' complex packer ignores the decimal scale factor unless ``optimizeScaleFactor`` is
set and silently loses the data if it is set in the wrong order, so every message is
decoded again after encoding and compared with what was meant (values, missing points,
section 3); a mismatch raises instead of writing a wrong file.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.errors import InputFileError, PqpfError
from pqpf.grid import Grid
from pqpf.io.atomic import atomic_path
from pqpf.io.grib import grid_from_message, read_grib_messages
from pqpf.io.grib_checks import grib2_section, split_messages

__all__ = [
    "PACKINGS",
    "ProbabilityGrib",
    "ProbabilityGribError",
    "encode_probability_grib2",
    "read_probability_grib2",
    "scaled_threshold",
    "write_probability_grib2",
]

logger = logging.getLogger(__name__)

#: Packing name -> (ecCodes ``packingType``, order of spatial differencing or 0).
PACKINGS: dict[str, tuple[str, int]] = {
    "complex": ("grid_complex_spatial_differencing", 2),
    "ccsds": ("grid_ccsds", 0),
    "simple": ("grid_simple", 0),
}

_APCP_ID = (0, 1, 8)  # discipline, parameter category, parameter number
_PROB_ABOVE_LOWER_LIMIT = 3  # Code table 4.9
_PROBABILITY_FORECAST = 5  # Code table 4.3
_ACCUMULATION = 1  # Code table 4.10
_HOUR = 1  # Code table 4.4
_DECIMALS = 1  # percent kept to 0.1 %
_MISSING = 9999.0  # stands for a missing point when values are handed to ecCodes
_MAX_SCALE = 4  # thresholds are exact to 0.0001 mm or refused
_UINT32_MISSING = 0xFFFFFFFF


class ProbabilityGribError(PqpfError, ValueError):
    """Input the probability GRIB2 writer cannot encode (shape, range, threshold, template)."""


class ProbabilityGrib(NamedTuple):
    """What :func:`read_probability_grib2` returns.

    Attributes
    ----------
    thresholds_mm : float64 array, shape (T,)
        Lower limits of the events, mm (kg m-2), in file order.
    prob : float32 array, shape (T, ny, nx)
        P(1-h amount > threshold) in [0, 1], NaN where missing, in the grid's scanning order.
    grid : Grid
        The grid of section 3; ``grid.lonlat()`` gives the coordinates of every point.
    init : datetime
        Reference (initialisation) time, UTC, naive.
    lead_h : int
        End of the 1-h accumulation, hours after ``init``.
    """

    thresholds_mm: NDArray[np.float64]
    prob: NDArray[np.float32]
    grid: Grid
    init: dt.datetime
    lead_h: int


@dataclass(frozen=True)
class _Producer:
    """Who made the product: section 1 and 4 keys; None keeps the template's value."""

    centre: int | None = None  # Common Code table C-11 (2 octets)
    sub_centre: int | None = None  # 2 octets
    production_status: int | None = None  # Code table 1.3
    type_of_generating_process: int | None = _PROBABILITY_FORECAST  # Code table 4.3
    background_process: int | None = None  # defined by the centre
    generating_process_identifier: int | None = None  # defined by the centre (NCEP: ON388 Table A)

    def keys(self, section: int) -> list[tuple[str, int]]:
        """``(ecCodes key, value)`` of the options given for section 1 or 4."""
        names = _PRODUCER_KEYS[section]
        return [(names[f.name], int(v)) for f in fields(self)
                if f.name in names and (v := getattr(self, f.name)) is not None]

    def check(self) -> None:
        for f in fields(self):
            value, limit = getattr(self, f.name), 65535 if f.name in ("centre", "sub_centre") else 255
            if value is not None and not 0 <= int(value) <= limit:
                raise ProbabilityGribError(f"{f.name} must be in 0..{limit}, got {value}")


_PRODUCER_KEYS: dict[int, dict[str, str]] = {
    1: {"centre": "centre", "sub_centre": "subCentre", "production_status": "productionStatusOfProcessedData"},
    4: {"type_of_generating_process": "typeOfGeneratingProcess", "background_process": "backgroundProcess",
        "generating_process_identifier": "generatingProcessIdentifier"},
}


def _eccodes() -> Any:
    """ecCodes, imported after pygrib and pyproj (the other order can break loading)."""
    import pygrib  # noqa: F401  (import order only)
    import pyproj  # noqa: F401

    # isort: split
    import eccodes

    return eccodes


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------


def scaled_threshold(threshold_mm: float) -> tuple[int, int]:
    """``(scale factor, scaled value)`` of a threshold for the GRIB2 limit keys.

    The value is ``scaled value * 10**-scale factor``; the smallest scale factor in
    0..4 that represents the threshold exactly is used (0.25 -> (2, 25), 1 -> (0, 1),
    2.5 -> (1, 25), 10 -> (0, 10)). A float32 threshold (0.1 as 0.100000001) counts as
    exact when it is within a few float32 rounding steps of the decimal.

    Parameters
    ----------
    threshold_mm : float
        Non-negative threshold, mm (kg m-2).

    Raises
    ------
    ProbabilityGribError
        Negative, non-finite, too large for 4 octets, or not a multiple of 0.0001 mm.
    """
    t = float(threshold_mm)
    if not math.isfinite(t) or t < 0:
        raise ProbabilityGribError(f"threshold {threshold_mm!r} mm: must be finite and >= 0")
    for scale in range(_MAX_SCALE + 1):
        scaled = round(t * 10**scale)
        if scaled >= _UINT32_MISSING:
            break
        if abs(scaled / 10**scale - t) <= 1e-6 * max(t, 1e-3):
            return scale, int(scaled)
    raise ProbabilityGribError(
        f"threshold {threshold_mm!r} mm cannot be written exactly as a GRIB2 scaled value "
        f"(needs a multiple of 10^-{_MAX_SCALE} mm below {_UINT32_MISSING - 1})"
    )


def _check_prob(prob: ArrayLike, n_thresholds: int, shape: tuple[int, int]) -> NDArray[np.floating]:
    """The probabilities as an array, after checking shape and range (one clear error)."""
    arr = np.asarray(prob)
    want = (n_thresholds, *shape)
    if arr.shape != want:
        raise ProbabilityGribError(
            f"prob has shape {arr.shape}, expected (thresholds, ny, nx) = {want} for "
            f"{n_thresholds} thresholds on the template's grid"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise ProbabilityGribError(f"prob must be floating point (NaN = missing), got dtype {arr.dtype}")
    bad, lo, hi = 0, math.inf, -math.inf
    for field in arr:  # one threshold at a time: no full-size temporaries
        finite = field[np.isfinite(field)]
        bad += int(np.isinf(field).sum() + (finite < 0).sum() + (finite > 1).sum())
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if bad:
        raise ProbabilityGribError(
            f"prob must lie in [0, 1] (NaN = missing): {bad} values outside, finite range {lo:g} to {hi:g}"
        )
    return arr


def _percent(field: NDArray[np.floating]) -> NDArray[np.float64]:
    """Probability in [0, 1] -> percent rounded to 0.1 % (the packing step), NaN kept."""
    return np.round(field.astype(np.float64) * 100.0, _DECIMALS)


def _check_thresholds(thresholds_mm: Sequence[float] | NDArray[np.floating]) -> list[tuple[int, int]]:
    values = np.asarray(thresholds_mm, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ProbabilityGribError(f"thresholds_mm must be a non-empty 1-D sequence, got shape {values.shape}")
    if values.size > 255:
        raise ProbabilityGribError(f"at most 255 thresholds fit template 4.9, got {values.size}")
    if values.size > 1 and not np.all(np.diff(values) > 0):
        raise ProbabilityGribError(f"thresholds_mm must increase strictly, got {values.tolist()}")
    return [scaled_threshold(t) for t in values]


def _utc_naive(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when


# --------------------------------------------------------------------------------------
# the template
# --------------------------------------------------------------------------------------


def _template_message(grid_template: bytes | str | Path) -> bytes:
    """The first message of the template (raw message bytes, or a GRIB2 file), framing and
    structure checked by the one GRIB reader's checks."""
    if isinstance(grid_template, (bytes, bytearray, memoryview)):
        try:
            message = split_messages(bytes(grid_template), Path("grid_template"))[0]
        except InputFileError:
            raise ProbabilityGribError("grid_template: no GRIB2 message found") from None
        if message[7] != 2:
            raise ProbabilityGribError(f"grid_template: GRIB edition {message[7]}, need GRIB2")
        return message
    path = Path(grid_template)
    if not path.is_file():
        raise InputFileError(path, "grid template not found")
    message = split_messages(path.read_bytes(), path)[0]
    if message[7] != 2:
        raise InputFileError(path, f"GRIB edition {message[7]} at byte 0, need GRIB2")
    return message


def _section(message: bytes, number: int) -> bytes:
    try:
        return grib2_section(message, number)
    except ValueError as exc:
        raise ProbabilityGribError(str(exc)) from None


def _grid_shape(ec: Any, h: Any) -> tuple[int, int]:
    """(ny, nx) of the template, after checking its grid and scanning mode."""
    grid_type = ec.codes_get(h, "gridType")
    if grid_type not in ("lambert", "regular_ll"):
        raise ProbabilityGribError(f"grid_template has grid type {grid_type!r}; need lambert or regular_ll")
    if ec.codes_get(h, "jPointsAreConsecutive") or ec.codes_get(h, "alternativeRowScanning"):
        raise ProbabilityGribError(
            "grid_template must scan row by row (jPointsAreConsecutive = 0, no alternating rows)")
    if grid_type == "lambert":
        return int(ec.codes_get(h, "Ny")), int(ec.codes_get(h, "Nx"))
    return int(ec.codes_get(h, "Nj")), int(ec.codes_get(h, "Ni"))


# --------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------


def _set_identification(ec: Any, h: Any, init: dt.datetime, producer: _Producer) -> None:
    """Section 1 (reference time = init, forecast products) and no section 2."""
    for key, value in producer.keys(1):
        ec.codes_set(h, key, value)
    if not 1 <= int(ec.codes_get(h, "tablesVersion")) <= 254:
        ec.codes_set(h, "tablesVersion", 2)  # every code used here exists since version 1
    ec.codes_set(h, "localTablesVersion", 0)  # no local code is used
    ec.codes_set(h, "significanceOfReferenceTime", 1)  # start of forecast (Code table 1.2)
    ec.codes_set(h, "typeOfProcessedData", 1)  # forecast products (Code table 1.4), as NBM
    for key, value in (("year", init.year), ("month", init.month), ("day", init.day),
                       ("hour", init.hour), ("minute", init.minute), ("second", init.second)):
        ec.codes_set(h, key, value)
    if ec.codes_get(h, "section2Used"):  # (grib2LocalSectionPresent only switches it)
        ec.codes_set(h, "grib2LocalSectionPresent", 0)


def _set_product(ec: Any, h: Any, valid: dt.datetime, lead_h: int, n_thresholds: int,
                 producer: _Producer) -> None:
    """Section 4: template 4.9, APCP at the surface, the hour ending at ``lead_h``."""
    ec.codes_set(h, "productDefinitionTemplateNumber", 9)
    ec.codes_set(h, "discipline", _APCP_ID[0])
    ec.codes_set(h, "parameterCategory", _APCP_ID[1])
    ec.codes_set(h, "parameterNumber", _APCP_ID[2])
    for key, value in producer.keys(4):
        ec.codes_set(h, key, value)
    ec.codes_set(h, "typeOfFirstFixedSurface", 1)  # ground or water surface (Code table 4.5)
    ec.codes_set(h, "scaleFactorOfFirstFixedSurface", 0)
    ec.codes_set(h, "scaledValueOfFirstFixedSurface", 0)
    ec.codes_set(h, "typeOfSecondFixedSurface", 255)
    ec.codes_set_missing(h, "scaleFactorOfSecondFixedSurface")
    ec.codes_set_missing(h, "scaledValueOfSecondFixedSurface")
    ec.codes_set(h, "indicatorOfUnitOfTimeRange", _HOUR)
    ec.codes_set(h, "forecastTime", int(lead_h) - 1)
    for key, value in (("year", valid.year), ("month", valid.month), ("day", valid.day),
                       ("hour", valid.hour), ("minute", valid.minute), ("second", valid.second)):
        ec.codes_set(h, f"{key}OfEndOfOverallTimeInterval", value)
    ec.codes_set(h, "numberOfTimeRange", 1)
    ec.codes_set(h, "numberOfMissingInStatisticalProcess", 0)
    ec.codes_set(h, "typeOfStatisticalProcessing", _ACCUMULATION)
    ec.codes_set(h, "typeOfTimeIncrement", 2)  # same start, forecast time incremented (4.11)
    ec.codes_set(h, "indicatorOfUnitForTimeRange", _HOUR)
    ec.codes_set(h, "lengthOfTimeRange", 1)
    ec.codes_set(h, "indicatorOfUnitForTimeIncrement", 255)
    ec.codes_set(h, "timeIncrement", 0)
    ec.codes_set(h, "totalNumberOfForecastProbabilities", n_thresholds)
    ec.codes_set(h, "probabilityType", _PROB_ABOVE_LOWER_LIMIT)
    ec.codes_set_missing(h, "scaleFactorOfUpperLimit")
    ec.codes_set_missing(h, "scaledValueOfUpperLimit")


def _set_packing(ec: Any, h: Any, packing: str) -> None:
    """Replace the template's data by zeros under ``packing`` at binary scale 0.

    Packing zeros makes the binary scale factor 0, from which the per-message packing
    starts (see :func:`_encode_threshold`); it also drops the template's values cheaply.
    """
    packing_type, order = PACKINGS[packing]
    ec.codes_set(h, "packingType", "grid_simple")
    ec.codes_set(h, "bitmapPresent", 0)
    ec.codes_set(h, "decimalScaleFactor", _DECIMALS)
    ec.codes_set(h, "bitsPerValue", 8)
    ec.codes_set_values(h, np.zeros(int(ec.codes_get(h, "numberOfDataPoints"))))
    if packing_type != "grid_simple":
        ec.codes_set(h, "packingType", packing_type)
    if order:
        ec.codes_set(h, "orderOfSpatialDifferencing", order)


def _encode_threshold(ec: Any, base: Any, number: int, limit: tuple[int, int], pct: NDArray[np.float64],
                      packing: str) -> bytes:
    """One message: probability number ``number`` (1-based), percent values ``pct``."""
    missing = np.isnan(pct)
    valid = pct[~missing]
    span = int(round(float(valid.max() - valid.min()) * 10**_DECIMALS)) if valid.size else 0
    h = ec.codes_clone(base)
    try:
        ec.codes_set(h, "forecastProbabilityNumber", number)
        ec.codes_set(h, "scaleFactorOfLowerLimit", limit[0])
        ec.codes_set(h, "scaledValueOfLowerLimit", limit[1])
        if PACKINGS[packing][0] == "grid_complex_spatial_differencing":
            # Use the decimal scale factor (not ECMWF's binary-only scaling); with the
            # width of the decimal-scaled span the packer lands on binary scale 0.
            ec.codes_set(h, "optimizeScaleFactor", 1)
        ec.codes_set(h, "bitmapPresent", int(missing.any()))
        ec.codes_set(h, "missingValue", _MISSING)
        ec.codes_set(h, "decimalScaleFactor", _DECIMALS)
        ec.codes_set(h, "bitsPerValue", max(span.bit_length(), 1))
        ec.codes_set_values(h, np.where(missing, _MISSING, pct).ravel())
        return bytes(ec.codes_get_message(h))
    finally:
        ec.codes_release(h)


def _verify(ec: Any, message: bytes, pct: NDArray[np.float64], section3: bytes, threshold: float) -> None:
    """Decode ``message`` again; raise unless it holds ``pct`` (to 1e-6 %) on the template's grid."""
    if _section(message, 3) != section3:
        raise ProbabilityGribError(f"internal: section 3 of the {threshold:g} mm message differs from the template's")
    h = ec.codes_new_from_message(message)
    try:
        decoded = ec.codes_get_values(h).reshape(pct.shape)
        missing_value = float(ec.codes_get(h, "missingValue"))
    finally:
        ec.codes_release(h)
    # All-missing fields come back without a bitmap (complex packing then marks them by
    # missing-value management); either way the decoder returns missingValue there.
    missing = decoded == missing_value
    ok = np.array_equal(missing, np.isnan(pct)) and bool(
        np.all(np.abs(decoded[~missing] - pct[~missing]) <= 1e-6))
    if not ok:
        raise ProbabilityGribError(
            f"internal: the {threshold:g} mm message does not decode to the values encoded "
            "(ecCodes packing problem); nothing written"
        )


def _messages(
    template: bytes,
    prob: NDArray[np.floating],
    limits: list[tuple[int, int]],
    init: dt.datetime,
    lead_h: int,
    producer: _Producer,
    packing: str,
) -> Iterator[bytes]:
    """Encode and check the messages one threshold at a time."""
    ec = _eccodes()
    section3 = _section(template, 3)
    base = ec.codes_new_from_message(template)
    try:
        _set_identification(ec, base, init, producer)
        _set_product(ec, base, init + dt.timedelta(hours=lead_h), lead_h, len(limits), producer)
        _set_packing(ec, base, packing)
        for k, (limit, field) in enumerate(zip(limits, prob, strict=True)):
            pct = _percent(field)
            message = _encode_threshold(ec, base, k + 1, limit, pct, packing)
            _verify(ec, message, pct, section3, limit[1] / 10 ** limit[0])
            yield message
    finally:
        ec.codes_release(base)


def _prepare(
    grid_template: bytes | str | Path,
    prob: ArrayLike,
    thresholds_mm: Sequence[float] | NDArray[np.floating],
    lead_h: int,
    producer: _Producer,
    packing: str,
) -> tuple[bytes, NDArray[np.floating], list[tuple[int, int]]]:
    """Validate every input before anything is encoded; return template, prob, limits."""
    if packing not in PACKINGS:
        raise ProbabilityGribError(f"unknown packing {packing!r}; valid names: {', '.join(sorted(PACKINGS))}")
    if int(lead_h) != lead_h or int(lead_h) < 1:
        raise ProbabilityGribError(f"lead_h must be a whole number of hours >= 1 (1-h accumulation), got {lead_h}")
    producer.check()
    limits = _check_thresholds(thresholds_mm)
    template = _template_message(grid_template)
    ec = _eccodes()
    h = ec.codes_new_from_message(template)
    try:
        shape = _grid_shape(ec, h)
    finally:
        ec.codes_release(h)
    return template, _check_prob(prob, len(limits), shape), limits


def encode_probability_grib2(
    grid_template: bytes | str | Path,
    prob: ArrayLike,
    thresholds_mm: Sequence[float] | NDArray[np.floating],
    init: dt.datetime,
    lead_h: int,
    *,
    centre: int | None = None,
    sub_centre: int | None = None,
    production_status: int | None = None,
    type_of_generating_process: int = _PROBABILITY_FORECAST,
    background_process: int | None = None,
    generating_process_identifier: int | None = None,
    packing: str = "complex",
) -> bytes:
    """The probability GRIB2 file as bytes (see :func:`write_probability_grib2`)."""
    producer = _Producer(centre, sub_centre, production_status, type_of_generating_process, background_process,
                         generating_process_identifier)
    template, prob_checked, limits = _prepare(grid_template, prob, thresholds_mm, lead_h, producer, packing)
    return b"".join(_messages(template, prob_checked, limits, _utc_naive(init), int(lead_h), producer, packing))


def write_probability_grib2(
    path: str | Path,
    grid_template: bytes | str | Path,
    prob: ArrayLike,
    thresholds_mm: Sequence[float] | NDArray[np.floating],
    init: dt.datetime,
    lead_h: int,
    *,
    centre: int | None = None,
    sub_centre: int | None = None,
    production_status: int | None = None,
    type_of_generating_process: int = _PROBABILITY_FORECAST,
    background_process: int | None = None,
    generating_process_identifier: int | None = None,
    packing: str = "complex",
) -> Path:
    """Write exceedance probabilities as GRIB2, one template-4.9 message per threshold.

    Parameters
    ----------
    path : str or Path
        Output file (``{probs_dir}/{INIT}_{LEAD}h_probs.grib2``); written atomically.
    grid_template : bytes or str or Path
        The GRAF GRIB2 message, or a GRIB2 file whose first message is used: its
        section 3 (grid) is copied unchanged, and its centre, sub-centre, production
        status and generating-process identifiers are kept unless given below.
        Lambert conformal (template 3.30) or regular lat/lon (3.0), scanned row by row.
    prob : float array, shape (T, ny, nx)
        P(1-h amount > ``thresholds_mm[k]``) in [0, 1], NaN where missing, in the
        template's scanning order (as :func:`pqpf.io.grib.read_graf` returns fields).
        Written in percent rounded to 0.1 %.
    thresholds_mm : sequence of float, length T
        Strictly increasing thresholds, mm (kg m-2), each a multiple of 0.0001 mm.
    init : datetime
        Initialisation (reference) time, UTC (naive, or aware and converted).
    lead_h : int
        End of the accumulation hour, hours after ``init`` (>= 1).
    centre, sub_centre : int, optional
        Originating centre (Common Code table C-11) and sub-centre; the template's if omitted.
    production_status : int, optional
        Code table 1.3 (0 operational, 1 operational test, 2 research); the template's if omitted.
    type_of_generating_process : int
        Code table 4.3; 5, probability forecast.
    background_process, generating_process_identifier : int, optional
        Centre-defined process numbers (NCEP: ON388 Table A); the template's if omitted.
    packing : str
        A key of :data:`PACKINGS`: ``"complex"`` (template 5.3, default), ``"ccsds"``
        (5.42) or ``"simple"`` (5.0).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ProbabilityGribError
        Probabilities outside [0, 1], a shape that does not match the thresholds and the
        template's grid, a threshold not representable as a scaled value, an unusable
        template or option. Nothing is written.
    InputFileError
        The template file is missing or not GRIB2.
    """
    producer = _Producer(centre, sub_centre, production_status, type_of_generating_process, background_process,
                         generating_process_identifier)
    template, prob_checked, limits = _prepare(grid_template, prob, thresholds_mm, lead_h, producer, packing)
    path = Path(path)
    size = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        for message in _messages(template, prob_checked, limits, _utc_naive(init), int(lead_h), producer, packing):
            fh.write(message)
            size += len(message)
    logger.info("wrote %s: %d thresholds, %.1f kB (%s packing)", path, len(limits), size / 1024, packing)
    return path


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------


def _message_threshold(msg: Any, path: Path, k: int) -> float:
    """Check one message is a pqpf/NBM-style exceedance probability; return its threshold."""
    pid = tuple(int(msg[key]) for key in ("discipline", "parameterCategory", "parameterNumber"))
    pdt = int(msg["productDefinitionTemplateNumber"])
    if pdt != 9 or pid != _APCP_ID:
        raise InputFileError(path, f"message {k + 1} is template 4.{pdt} of {pid}, not a precipitation "
                             "probability (template 4.9 of 0/1/8)")
    if int(msg["probabilityType"]) != _PROB_ABOVE_LOWER_LIMIT:
        raise InputFileError(path, f"message {k + 1} has probability type {msg['probabilityType']}, "
                             f"expected {_PROB_ABOVE_LOWER_LIMIT} (above lower limit, Code table 4.9)")
    unit_h = {0: 1.0 / 60.0, 1: 1.0, 2: 24.0}.get(int(msg["indicatorOfUnitForTimeRange"]), math.nan)
    if int(msg["typeOfStatisticalProcessing"]) != _ACCUMULATION or int(msg["lengthOfTimeRange"]) * unit_h != 1.0:
        raise InputFileError(path, f"message {k + 1} is not a 1-h accumulation (step range {msg['stepRange']})")
    return int(msg["scaledValueOfLowerLimit"]) / 10 ** int(msg["scaleFactorOfLowerLimit"])


def _message_prob(msg: Any, path: Path, grid: Grid, k: int) -> NDArray[np.float32]:
    raw = msg.values
    values = np.ma.filled(np.ma.asarray(raw, dtype=np.float64), np.nan).reshape(grid.shape)
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 100):
        raise InputFileError(path, f"message {k + 1} holds values {finite.min():g} to {finite.max():g}, "
                             "not percent in 0..100")
    return (values / 100.0).astype(np.float32)


def read_probability_grib2(path: str | Path) -> ProbabilityGrib:
    """Read a file written by :func:`write_probability_grib2` (or one like it).

    Every message must be template 4.9 of total precipitation (0/1/8), probability
    type 3 (above lower limit), a 1-h accumulation, with the same grid, reference time
    and lead; values in percent.

    Returns
    -------
    ProbabilityGrib
        ``(thresholds_mm, prob, grid, init, lead_h)``; ``prob`` in [0, 1], NaN where missing.

    Raises
    ------
    InputFileError
        Missing, truncated or corrupt file, or a message that is not such a probability.
    """
    path = Path(path)
    messages = read_grib_messages(path)
    grid = grid_from_message(messages[0], path)
    thresholds: list[float] = []
    probs: list[NDArray[np.float32]] = []
    times: set[tuple[dt.datetime, dt.datetime]] = set()
    for k, msg in enumerate(messages):
        thresholds.append(_message_threshold(msg, path, k))
        if grid_from_message(msg, path) != grid:
            raise InputFileError(path, f"message {k + 1} is on another grid than message 1")
        times.add((_when(msg["dataDate"], msg["dataTime"]), _when(msg["validityDate"], msg["validityTime"])))
        probs.append(_message_prob(msg, path, grid, k))
    if len(times) != 1:
        raise InputFileError(path, f"messages differ in reference or valid time: {sorted(times)}")
    if len(set(thresholds)) != len(thresholds):
        raise InputFileError(path, f"repeated thresholds {thresholds}")
    ((init, valid),) = times
    lead_h = (valid - init) / dt.timedelta(hours=1)
    if lead_h != int(lead_h):
        raise InputFileError(path, f"valid {valid:%Y-%m-%d %H:%M} is not a whole number of hours after {init}")
    return ProbabilityGrib(np.asarray(thresholds, dtype=np.float64), np.stack(probs), grid, init, int(lead_h))


def _when(date: int, time: int) -> dt.datetime:
    return dt.datetime.strptime(f"{int(date):08d}{int(time):04d}", "%Y%m%d%H%M")
