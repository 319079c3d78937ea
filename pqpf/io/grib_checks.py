"""Structural checks of raw GRIB messages, done before any byte reaches the C library.

ecCodes trusts the sizes a message declares: a corrupt header makes it allocate whatever
the header says (issue 11: 21.6 GiB for a 47 kB file), read past the end of the message,
or stop the whole process on an internal assertion (SIGABRT). So every message is checked
here first, from its bytes alone:

- framing: the declared length is at least the smallest message and within the file, and
  ``7777`` is exactly where the length says (:func:`split_messages`, which always moves
  forward);
- GRIB2 sections: each length at least its minimum, the sections in the order the
  standard allows, ending exactly at ``7777``;
- every field: the number of grid points equals Ni x Nj and stays below
  :data:`MAX_GRID_POINTS`; the number of packed values agrees with the bitmap (or equals
  the number of points when there is none); the data section is large enough for what
  simple and complex packing declare (including the group widths and lengths of complex
  packing, whose sum must be the number of values); a PNG stream is whole, ends where the
  section ends, and its image is the field's size and bit depth;
- GRIB1: the section lengths add up and Ni x Nj stays below the cap.

Each refusal is an :class:`~pqpf.errors.InputFileError` naming the file, the message and
the reason in one line. After decoding, :func:`check_plausible_grid` refuses grids with
impossible numbers, and :func:`library_stderr_to_log` keeps the C library's own complaints
about a corrupt file off the terminal (they go to the debug log).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pqpf.errors import InputFileError
from pqpf.grid import Grid

__all__ = [
    "grib2_section","MAX_GRID_POINTS", "check_plausible_grid", "library_stderr_to_log", "split_messages"]

logger = logging.getLogger("pqpf.io.grib")

#: The largest field pqpf reads is MRMS CONUS, 7000 x 3500 = 24.5 million points; a
#: message declaring more than twice that is refused before decoding (decoding costs
#: ~16-24 bytes a point in ecCodes, pygrib and numpy together).
MAX_GRID_POINTS = 50_000_000
#: Widest integer any packing of ours may declare (ecCodes fails hard above 64 bits).
_MAX_BITS = 32
_MIN_LENGTH = {1: 8 + 28 + 11 + 4, 2: 16 + 21 + 4}
_GRIB2_MIN_SECTION = {1: 21, 2: 5, 3: 14, 4: 9, 5: 11, 6: 6, 7: 5}
_GRIB2_NEXT = {0: {1}, 1: {2, 3}, 2: {3}, 3: {4}, 4: {5}, 5: {6}, 6: {7}, 7: {2, 3, 4, 8}}
# Grid templates (3.N) whose Ni/Nj (or Nx/Ny) sit at octets 31-34 / 35-38.
_NI_NJ_TEMPLATES = {0, 1, 2, 3, 10, 20, 30, 31, 40, 41, 42, 43}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Refused(Exception):
    """A structural defect; turned into InputFileError with the message's position."""


def _u32(data: bytes, at: int) -> int:
    value: int = struct.unpack_from(">I", data, at)[0]
    return value


def _need(section: bytes, octets: int, what: str) -> None:
    if len(section) < octets:
        raise _Refused(f"{what} is {len(section)} octets, too short for its template ({octets})")


# --------------------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------------------


def _declared_length(data: bytes, start: int) -> tuple[int, int]:
    """(edition, declared length) of the message starting at ``start``."""
    if start + 16 > len(data):
        raise _Refused("truncated GRIB message (shorter than its 16-octet indicator)")
    edition = data[start + 7]
    if edition == 2:
        length: int = struct.unpack_from(">Q", data, start + 8)[0]
    elif edition == 1:
        length = int.from_bytes(data[start + 4:start + 7], "big")
    else:
        raise _Refused(f"unsupported GRIB edition {edition}")
    if length < _MIN_LENGTH[edition]:
        raise _Refused(f"declares a length of {length} octets, less than the smallest "
                       f"GRIB{edition} message ({_MIN_LENGTH[edition]})")
    if start + length > len(data):
        raise _Refused(f"truncated: declares {length} octets, only {len(data) - start} present")
    if data[start + length - 4:start + length] != b"7777":
        raise _Refused(f"no end marker 7777 where its length ({length}) says it ends")
    return edition, length


def split_messages(data: bytes, path: Path, max_points: int = MAX_GRID_POINTS) -> list[bytes]:
    """Split a file's bytes into GRIB messages, checking each one's structure.

    Bytes outside messages (padding between them) are skipped; a message that is
    truncated, runs past the file end, or is malformed is an error for the whole file.
    The scan always moves forward: each message is at least :data:`_MIN_LENGTH` long.

    Raises
    ------
    InputFileError
        Empty file, no message, or the first defect found, with its byte offset.
    """
    if not data:
        raise InputFileError(path, "file is empty")
    messages: list[bytes] = []
    pos = 0
    while (start := data.find(b"GRIB", pos)) >= 0:
        where = f"GRIB message {len(messages) + 1} at byte {start}"
        try:
            edition, length = _declared_length(data, start)
            raw = data[start:start + length]
            if edition == 2:
                _check_grib2(raw, max_points)
            else:
                _check_grib1(raw, max_points)
        except _Refused as exc:
            raise InputFileError(path, f"corrupt {where}: {exc}") from None
        messages.append(raw)
        pos = start + length
    if not messages:
        raise InputFileError(path, "no GRIB message found (not a GRIB file?)")
    return messages


# --------------------------------------------------------------------------------------
# GRIB2
# --------------------------------------------------------------------------------------


def _grib2_sections(raw: bytes) -> list[tuple[int, bytes]]:
    """(number, bytes) of each section of a framed GRIB2 message, order checked."""
    sections: list[tuple[int, bytes]] = []
    pos, previous, end = 16, 0, len(raw) - 4
    while pos < end:
        if pos + 5 > end:
            raise _Refused(f"a section header at octet {pos + 1} runs into the end marker")
        length, number = _u32(raw, pos), raw[pos + 4]
        if number not in _GRIB2_MIN_SECTION:
            raise _Refused(f"section number {number} at octet {pos + 1} does not exist")
        if number not in _GRIB2_NEXT[previous]:
            raise _Refused(f"section {number} follows section {previous}")
        if length < _GRIB2_MIN_SECTION[number] or pos + length > end:
            raise _Refused(f"section {number} declares {length} octets "
                           f"(at least {_GRIB2_MIN_SECTION[number]}, at most {end - pos} left)")
        sections.append((number, raw[pos:pos + length]))
        pos, previous = pos + length, number
    if previous != 7:
        raise _Refused("ends without a data section" if previous else "has no sections")
    return sections


def grib2_section(message: bytes, number: int) -> bytes:
    """The bytes of section ``number`` of a GRIB2 message that :func:`split_messages`
    accepted (the first one when the section repeats).

    Raises
    ------
    ValueError
        The message has no such section or is malformed.
    """
    try:
        for n, section in _grib2_sections(message):
            if n == number:
                return section
    except _Refused as exc:
        raise ValueError(f"malformed GRIB2 message: {exc}") from None
    raise ValueError(f"GRIB2 message has no section {number}")


def _check_grib2(raw: bytes, max_points: int) -> None:
    current: dict[int, bytes] = {}
    defined: int | None = None  # points marked by the last bitmap defined in the message
    field_bitmap: int | None = None
    for number, section in _grib2_sections(raw):
        current[number] = section
        if number == 6:
            field_bitmap = _bitmap_ones(section, _grid_points(current[3], max_points), defined)
            if section[5] == 0:
                defined = field_bitmap
        elif number == 7:
            _check_field(current[3], current[5], section, field_bitmap, max_points)


def _grid_points(sec3: bytes, max_points: int) -> int:
    """Number of grid points of a section 3, checked against Ni x Nj and the cap."""
    points, template = _u32(sec3, 6), struct.unpack_from(">H", sec3, 12)[0]
    if template in _NI_NJ_TEMPLATES:
        _need(sec3, 38, f"section 3 (template 3.{template})")
        ni, nj = _u32(sec3, 30), _u32(sec3, 34)
        if sec3[10] == 0 and ni * nj != points:
            raise _Refused(f"grid of {ni} x {nj} points but {points} data points declared")
    if not 0 < points <= max_points:
        raise _Refused(f"declares {points} grid points (pqpf reads at most {max_points})")
    return points


def _bitmap_ones(sec6: bytes, points: int, previous: int | None) -> int | None:
    """Number of points the bitmap marks present (None: no bitmap)."""
    indicator = sec6[5]
    if indicator == 255:
        return None
    if indicator == 254:
        if previous is None:
            raise _Refused("refers to a previously defined bitmap, but there is none")
        return previous
    if indicator != 0:
        raise _Refused(f"uses predefined bitmap {indicator} (not supported)")
    if len(sec6) != 6 + (points + 7) // 8:
        raise _Refused(f"bitmap of {len(sec6) - 6} octets for {points} points")
    bits = np.unpackbits(np.frombuffer(sec6, np.uint8, offset=6))[:points]
    return int(np.count_nonzero(bits))


def _check_field(sec3: bytes, sec5: bytes, sec7: bytes, bitmap_ones: int | None,
                 max_points: int) -> None:
    """One field (sections 3, 5, 6 and 7): values, bitmap and packing agree in size."""
    points = _grid_points(sec3, max_points)
    values = _u32(sec5, 5)
    if bitmap_ones is None and values != points:
        raise _Refused(f"{values} packed values for {points} grid points and no bitmap")
    if bitmap_ones is not None and values != bitmap_ones:
        raise _Refused(f"{values} packed values but the bitmap marks {bitmap_ones} points")
    template = struct.unpack_from(">H", sec5, 9)[0]
    if template in (0, 2, 3, 40, 41):
        _need(sec5, 20, f"section 5 (template 5.{template})")
        bits = sec5[19]
        if bits > _MAX_BITS:
            raise _Refused(f"packs values in {bits} bits (at most {_MAX_BITS})")
        if bits == 0:  # a constant field: no data to check
            return
        data = sec7[5:]
        if template == 0:
            _fits(data, values * bits, "simple packing")
        elif template in (2, 3):
            _check_complex(sec5, template, data, values)
        elif template == 41:
            _check_png(data, values, bits)


def _fits(data: bytes, bits: int, what: str) -> None:
    if (bits + 7) // 8 > len(data):
        raise _Refused(f"{what} needs {(bits + 7) // 8} data octets, section 7 has {len(data)}")


def _read_uints(data: bytes, bit_start: int, nbits: int, count: int) -> NDArray[np.int64]:
    """``count`` unsigned integers of ``nbits`` bits (<= 32) from ``bit_start`` on."""
    out = np.zeros(count, dtype=np.int64)
    if nbits == 0:
        return out
    weights = np.left_shift(np.int64(1), np.arange(nbits - 1, -1, -1, dtype=np.int64))
    step = 1 << 16
    for first in range(0, count, step):
        n = min(step, count - first)
        lo = bit_start + first * nbits
        byte_lo, byte_hi = lo // 8, (lo + n * nbits + 7) // 8
        bits = np.unpackbits(np.frombuffer(data, np.uint8, byte_hi - byte_lo, byte_lo))
        rows = bits[lo - 8 * byte_lo:lo - 8 * byte_lo + n * nbits].reshape(n, nbits)
        out[first:first + n] = rows.astype(np.int64) @ weights
    return out


def _check_complex(sec5: bytes, template: int, data: bytes, values: int) -> None:
    """Complex packing (5.2) and with spatial differencing (5.3): every size it declares."""
    _need(sec5, 47 if template == 2 else 49, f"section 5 (template 5.{template})")
    if values == 0:  # every point missing (missing-value management): nothing is unpacked
        return
    bits, groups = sec5[19], _u32(sec5, 31)
    width_ref, width_bits, length_ref = sec5[35], sec5[36], _u32(sec5, 37)
    length_step, last_length, length_bits = sec5[41], _u32(sec5, 42), sec5[46]
    order, extra = (sec5[47], sec5[48]) if template == 3 else (0, 0)
    if max(width_bits, length_bits) > _MAX_BITS:
        raise _Refused(f"group widths in {width_bits} bits, lengths in {length_bits} bits")
    if template == 3 and (order not in (1, 2) or not 1 <= extra <= 4):
        raise _Refused(f"spatial differencing of order {order} with {extra}-octet descriptors")
    if not 0 < groups <= values:
        raise _Refused(f"{groups} groups for {values} values")
    ref_octets = (groups * bits + (order + 1 if order else 0) * extra * 8 + 7) // 8
    width_octets, length_octets = (groups * width_bits + 7) // 8, (groups * length_bits + 7) // 8
    header = ref_octets + width_octets + length_octets
    _fits(data, 8 * header, "complex packing")
    widths = width_ref + _read_uints(data, 8 * ref_octets, width_bits, groups)
    if int(widths.max()) > _MAX_BITS:
        raise _Refused(f"a group of {int(widths.max())}-bit values (at most {_MAX_BITS})")
    lengths = length_ref + length_step * _read_uints(data, 8 * (ref_octets + width_octets),
                                                     length_bits, groups)
    lengths[-1] = last_length
    if int(lengths.sum()) != values:
        raise _Refused(f"groups hold {int(lengths.sum())} values, {values} declared")
    _fits(data[header:], int((lengths * widths).sum()), "complex packing")


def _check_png(data: bytes, values: int, bits: int) -> None:
    """A PNG stream that is whole, ends with the section, and has the field's size/depth."""
    if data[:8] != _PNG_SIGNATURE:
        raise _Refused("PNG packing without a PNG stream")
    pos, header = 8, b""
    while True:
        if pos + 12 > len(data):
            raise _Refused("PNG stream truncated")
        length, kind = _u32(data, pos), data[pos + 4:pos + 8]
        if pos + 12 + length > len(data):
            raise _Refused(f"PNG chunk {kind!r} runs past the data section")
        if pos == 8:
            if kind != b"IHDR" or length != 13:
                raise _Refused("PNG stream does not start with its header")
            header = data[pos + 8:pos + 21]
        pos += 12 + length
        if kind == b"IEND":
            break
    if pos != len(data):
        raise _Refused(f"{len(data) - pos} octets after the end of the PNG stream")
    width, height = _u32(header, 0), _u32(header, 4)
    depth, colour = header[8], header[9]
    depth = {2: 24, 6: 32}.get(colour, depth)
    if width * height != values:
        raise _Refused(f"PNG image of {width} x {height} for {values} values")
    if depth != (bits + 7) // 8 * 8:
        raise _Refused(f"PNG depth {depth} bits for {bits}-bit values")


# --------------------------------------------------------------------------------------
# GRIB1
# --------------------------------------------------------------------------------------


def _check_grib1(raw: bytes, max_points: int) -> None:
    """Section lengths of a GRIB1 message add up; Ni x Nj is below the cap."""
    pos, end = 8, len(raw) - 4
    pds_length = int.from_bytes(raw[pos:pos + 3], "big")
    if pds_length < 28 or pos + pds_length > end:
        raise _Refused(f"product definition section of {pds_length} octets")
    flags = raw[pos + 7]
    pos += pds_length
    for present, name, minimum in ((flags & 0x80, "grid description", 32),
                                   (flags & 0x40, "bitmap", 6), (True, "data", 11)):
        if not present:
            continue
        if pos + 3 > end:
            raise _Refused(f"{name} section missing")
        length = int.from_bytes(raw[pos:pos + 3], "big")
        if length < minimum or pos + length > end:
            raise _Refused(f"{name} section of {length} octets")
        if name == "grid description" and raw[pos + 5] in (0, 1, 3, 4, 5):
            ni = int.from_bytes(raw[pos + 6:pos + 8], "big")
            nj = int.from_bytes(raw[pos + 8:pos + 10], "big")
            if not 0 < ni * nj <= max_points:
                raise _Refused(f"grid of {ni} x {nj} points (pqpf reads at most {max_points})")
        if name == "data" and raw[pos + 10] > _MAX_BITS:
            raise _Refused(f"packs values in {raw[pos + 10]} bits (at most {_MAX_BITS})")
        pos += length
    if pos != end:
        raise _Refused(f"sections end at octet {pos}, the end marker is at {end}")


# --------------------------------------------------------------------------------------
# after decoding
# --------------------------------------------------------------------------------------


def check_plausible_grid(grid: Grid, path: Path) -> None:
    """Refuse a decoded grid with numbers no real grid has (non-finite values, a
    latitude beyond 90 degrees, an earth of another size, spacing beyond 1000 km)."""
    numbers = (grid.x0, grid.y0, grid.dx, grid.dy, grid.lat_1, grid.lat_2, grid.lat_0,
               grid.lon_0, grid.earth_a, grid.earth_b)
    if not all(math.isfinite(v) for v in numbers):
        raise InputFileError(path, f"corrupt grid definition (non-finite numbers in {grid.describe()})")
    bad = []
    if not (6.2e6 <= grid.earth_b <= grid.earth_a <= 6.5e6):
        bad.append(f"earth axes {grid.earth_a:g} / {grid.earth_b:g} m")
    if grid.is_lambert:
        if max(abs(grid.lat_1), abs(grid.lat_2), abs(grid.lat_0)) > 90.0:
            bad.append(f"standard parallels {grid.lat_1:g} / {grid.lat_2:g}")
        if max(abs(grid.dx), abs(grid.dy)) > 1e6:
            bad.append(f"grid spacing {grid.dx:g} x {grid.dy:g} m")
    elif abs(grid.y0) > 90.0 or max(abs(grid.dx), abs(grid.dy)) > 360.0:
        bad.append(f"first latitude {grid.y0:g}, spacing {grid.dx:g} x {grid.dy:g} degrees")
    if bad:
        raise InputFileError(path, f"corrupt grid definition ({'; '.join(bad)})")


@contextlib.contextmanager
def library_stderr_to_log(path: Path) -> Iterator[None]:
    """Send what the C library prints on file descriptor 2 to the debug log.

    ecCodes reports what it dislikes in a corrupt message ("ECCODES ERROR : ...") straight
    to the process's stderr; the reader already turns the failure into one clear error,
    so those lines go to ``logger.debug`` (shown with ``-v``) instead of the terminal.
    Python code inside the block must not log: its output would be captured too (the
    readers log only after it). Not for use while other threads write to stderr.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a daemon): nothing to redirect
        yield
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read(1 << 16).decode(errors="replace").splitlines():
                if line.strip():
                    logger.debug("%s: %s", path, line.strip())
