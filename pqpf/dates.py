"""Dates as the notes write them (YYYYMMDDHH), lead times and hour ranges.

All times in pqpf are naive :class:`datetime.datetime` objects meaning UTC. In files
they are written as int64 seconds since 1970-01-01 00 UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

from pqpf.errors import UsageError

__all__ = [
    "parse_yyyymmddhh",
    "format_yyyymmddhh",
    "validate_lead",
    "hour_range",
    "to_epoch_seconds",
    "from_epoch_seconds",
]

_EPOCH = dt.datetime(1970, 1, 1)
_PATTERN = re.compile(r"^\d{10}$")


def parse_yyyymmddhh(text: str, what: str = "date") -> dt.datetime:
    """Parse ``YYYYMMDDHH`` into a UTC datetime, rejecting dates that do not exist.

    Parameters
    ----------
    text : str
        Ten digits, e.g. ``"2025120100"``.
    what : str
        Name of the argument, used in the error message.

    Raises
    ------
    UsageError
        If ``text`` is not ten digits or names an impossible date or hour
        (``2025023100``, ``2025010124``).
    """
    text = str(text).strip()
    if not _PATTERN.match(text):
        raise UsageError(f"{what} must be YYYYMMDDHH (10 digits), got {text!r}")
    try:
        return dt.datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]))
    except ValueError as exc:
        raise UsageError(f"{what} {text!r} is not a valid date and hour ({exc})") from None


def format_yyyymmddhh(when: dt.datetime) -> str:
    """Inverse of :func:`parse_yyyymmddhh`."""
    return when.strftime("%Y%m%d%H")


def validate_lead(lead_h: int | str, lead_min_h: int, lead_max_h: int) -> int:
    """Return ``lead_h`` as int if it lies in ``[lead_min_h, lead_max_h]``.

    Raises
    ------
    UsageError
        If the lead is not an integer or is outside the configured range.
    """
    try:
        lead = int(str(lead_h).strip())
    except ValueError:
        raise UsageError(f"lead must be an integer number of hours, got {lead_h!r}") from None
    if not lead_min_h <= lead <= lead_max_h:
        raise UsageError(
            f"lead {lead} h is outside the configured range {lead_min_h}..{lead_max_h} h"
        )
    return lead


def hour_range(begin: dt.datetime, end: dt.datetime, step_h: int = 1) -> Iterator[dt.datetime]:
    """Every ``step_h``-th hour from ``begin`` to ``end`` inclusive.

    Raises
    ------
    UsageError
        If ``end`` precedes ``begin`` or ``step_h`` is not positive.
    """
    if step_h <= 0:
        raise UsageError(f"step must be a positive number of hours, got {step_h}")
    if end < begin:
        raise UsageError(
            f"END {format_yyyymmddhh(end)} is before BEGIN {format_yyyymmddhh(begin)}"
        )
    when = begin
    step = dt.timedelta(hours=step_h)
    while when <= end:
        yield when
        when += step


def to_epoch_seconds(when: dt.datetime) -> int:
    """UTC datetime -> int seconds since 1970-01-01 00 UTC."""
    return int((when - _EPOCH).total_seconds())


def from_epoch_seconds(seconds: int | float) -> dt.datetime:
    """Inverse of :func:`to_epoch_seconds`."""
    return _EPOCH + dt.timedelta(seconds=int(seconds))
