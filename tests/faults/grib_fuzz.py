"""A GRIB fuzzer for the one GRIB reader (:mod:`pqpf.io.grib`), over the real files.

Every case is a mutated copy of a real operational file (MRMS, HRRR, NAM, from the
directory ``tests/conftest.py`` finds: ``$PQPF_REAL_DATA``, else ``../shared/data/real``
beside the checkout, else ``/work/shared/data/real``) handed to the reader a stage uses
for that kind of file. The mutations: byte flips in sections 0-5, section and message
length fields set to 0, small, off-by-one or huge values, byte flips in the first 400
octets of the bitmap and data sections (PNG headers, complex-packing group descriptors), grid sizes (Nx, Ny, number of
points, number of packed values) made huge, truncation at many offsets, trailing junk
(including the ``GRIB\\0\\0\\0\\x02`` + zeros of issue 11), duplicated, zeroed, dropped and
swapped sections.

Each case runs in a child forked from this process (which has already imported pygrib,
so a case costs a fork, not an interpreter start), under ``RLIMIT_AS`` (default 2 GiB)
and an alarm (default 10 s), with its C-level stderr captured. Outcomes:

==============  =====================================================================
decoded         the reader returned a field
clean error     a :class:`~pqpf.errors.PqpfError` whose message is one line naming the file
traceback       any other exception (or a PqpfError that is not one line naming the file)
hang            killed by the alarm (or by the parent after the time limit)
over-memory     MemoryError, or the C library died failing to allocate
crash           killed by any other signal (SIGSEGV, SIGABRT, ...)
==============  =====================================================================

The test (``tests/faults/test_grib_fuzz.py``) runs a few hundred cases with a fixed seed
and requires tracebacks = hangs = over-memory = crashes = 0. A longer campaign::

    PQPF_FUZZ_CASES=20000 PQPF_FUZZ_SEED=7 PQPF_FUZZ_BIG=1 \\
        .venv/bin/python tests/faults/grib_fuzz.py

(``PQPF_FUZZ_BIG=1`` adds the full NAM and eta files and the 3500 x 7000 CONUS MRMS
file, ~1.5 s a case.) The same variables apply when the test runs. ``--show N`` prints
the first N cases of each bad category with their mutation, so a failure can be
replayed with ``--only CASE_ID``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import select
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATEGORIES = ("decoded", "clean error", "traceback", "hang", "over-memory", "crash")
BAD = ("traceback", "hang", "over-memory", "crash")

MRMS_CROP = "mrms/MRMS_MultiSensor_QPE_01H_Pass2_00.00_20220809-150000_crop_848x590.grib2.gz"
MRMS_CARIB = "mrms/CARIB_MRMS_MultiSensor_QPE_01H_Pass2_00.00_20220809-150000.grib2.gz"
MRMS_CONUS = "mrms/MRMS_MultiSensor_QPE_01H_Pass2_00.00_20220809-150000.grib2.gz"
HRRR_CROP = "nwp/hrrr_20201214_t00z_f12_APCP_11-12h_crop_200x150_i1282_j432.grib2"
HRRR_FULL = "nwp/subset_20201214_hrrr.t00z.wrfsfcf12.grib2"
NAM_ETA = "nwp/eta.grb"
NAM_TERRAIN = "terrain/nam.t00z.awp21100.tm00.grib2"


@dataclass(frozen=True)
class Source:
    """A real file (or some of its messages) and the reader a stage uses for it."""

    name: str
    relative: str
    reader: str
    weight: float
    messages: tuple[int, ...] | None = None  # keep only these messages (0-based)
    big: bool = False


SOURCES = (
    Source("mrms_crop", MRMS_CROP, "mrms_qpe", 3.0),
    Source("mrms_carib", MRMS_CARIB, "mrms_quality", 1.0),
    Source("hrrr_crop", HRRR_CROP, "graf", 3.0),
    Source("hrrr_full", HRRR_FULL, "graf", 1.0),
    Source("eta_orog_tp", NAM_ETA, "terrain", 1.5, messages=(8, 13)),
    Source("nam_orog_tp", NAM_TERRAIN, "terrain", 1.5, messages=(123, 128)),
    Source("eta_all", NAM_ETA, "terrain", 0.5, big=True),
    Source("nam_all", NAM_TERRAIN, "terrain", 0.5, big=True),
    Source("mrms_conus", MRMS_CONUS, "mrms_qpe", 0.3, big=True),
)


# --------------------------------------------------------------------------------------
# GRIB structure (the fuzzer's own parser, independent of the code under test)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    number: int  # 0 = indicator, 8 = end marker
    start: int
    length: int


def split_messages(data: bytes) -> list[tuple[int, int]]:
    """(start, length) of each GRIB2 message of a well-formed file."""
    out = []
    pos = data.find(b"GRIB")
    while pos >= 0:
        (length,) = struct.unpack(">Q", data[pos + 8:pos + 16])
        out.append((pos, length))
        pos = data.find(b"GRIB", pos + length)
    return out


def sections(data: bytes, start: int, length: int) -> list[Section]:
    """The sections of the well-formed GRIB2 message at ``start``."""
    out = [Section(0, start, 16)]
    pos = start + 16
    while pos < start + length - 4:
        (size,) = struct.unpack(">I", data[pos:pos + 4])
        out.append(Section(data[pos + 4], pos, size))
        pos += size
    out.append(Section(8, start + length - 4, 4))
    return out


def mutated(raw: bytes, changes: dict[tuple[int, int], bytes]) -> bytes:
    """``raw`` (one GRIB2 message first) with ``{(section, octet): bytes}`` written in place.

    Octets are 1-based within their section, as the GRIB2 tables number them.
    """
    start, length = split_messages(raw)[0]
    starts: dict[int, int] = {}
    for sec in sections(raw, start, length):
        starts.setdefault(sec.number, sec.start)
    out = bytearray(raw)
    for (section, octet), value in changes.items():
        at = starts[section] + octet - 1
        out[at:at + len(value)] = value
    return bytes(out)


def load_source(base: Path, source: Source) -> bytes:
    raw = (base / source.relative).read_bytes()
    if source.relative.endswith(".gz"):
        raw = gzip.decompress(raw)
    if source.messages is None:
        return raw
    spans = split_messages(raw)
    return b"".join(raw[s:s + n] for s, n in (spans[i] for i in source.messages))


# --------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------

_HUGE = (2**31, 2**32 - 1, 2**24 + 7, 10**9)


def _set_u32(data: bytearray, at: int, value: int) -> None:
    data[at:at + 4] = struct.pack(">I", value % 2**32)


def _fix_total(data: bytearray, start: int, delta: int) -> None:
    (length,) = struct.unpack(">Q", data[start + 8:start + 16])
    data[start + 8:start + 16] = struct.pack(">Q", length + delta)


def _flip(rng: random.Random, data: bytearray, secs: list[Section]) -> str:
    choices = [s for s in secs if s.number <= 5]
    sec = rng.choice(choices)
    n = rng.randint(1, 4)
    where = []
    for _ in range(n):
        at = sec.start + rng.randrange(sec.length)
        data[at] ^= rng.randint(1, 255)
        where.append(at - sec.start)
    return f"flip section {sec.number} octets {sorted(o + 1 for o in where)}"


def _flip_data(rng: random.Random, data: bytearray, secs: list[Section]) -> str:
    """Flips in the bitmap and data sections (PNG streams, complex-packing groups)."""
    sec = rng.choice([s for s in secs if s.number in (6, 7)])
    where = []
    for _ in range(rng.randint(1, 4)):
        at = sec.start + rng.randrange(min(sec.length, 400))  # the descriptive part first
        data[at] ^= rng.randint(1, 255)
        where.append(at - sec.start + 1)
    return f"flip section {sec.number} octets {sorted(where)}"


def _message_length(rng: random.Random, data: bytearray, secs: list[Section]) -> str:
    start, length = secs[0].start, secs[-1].start + 4 - secs[0].start
    value = rng.choice([0, 1, 8, 15, 16, 19, 20, length - 1, length + 1, length - 5, 2 * length,
                        2**32, 2**63, 2**64 - 1, rng.randrange(length)])
    data[start + 8:start + 16] = struct.pack(">Q", value)
    return f"message length {length} -> {value}"


def _section_length(rng: random.Random, data: bytearray, secs: list[Section]) -> str:
    sec = rng.choice([s for s in secs if 1 <= s.number <= 7])
    value = rng.choice([0, 1, 4, 5, 6, sec.length - 1, sec.length + 1, sec.length * 3,
                        rng.randrange(2 * sec.length + 8), *_HUGE])
    _set_u32(data, sec.start, value)
    return f"section {sec.number} length {sec.length} -> {value}"


def _grid_size(rng: random.Random, data: bytearray, secs: list[Section]) -> str:
    """Nx, Ny, the number of points, the number of packed values: huge, some consistent."""
    s3 = next(s for s in secs if s.number == 3)
    s5 = next(s for s in secs if s.number == 5)
    nx, ny = rng.choice([(2**16, 2**16), (50000, 40000), (7000, 3500), (1, 2**31), (0, 0),
                         (1308, 1524), (65535, 65535)])
    kind = rng.choice(["nx", "ny", "nxny", "npts", "nvals", "all", "all_but_nvals"])
    if kind in ("nx", "nxny", "all", "all_but_nvals"):
        _set_u32(data, s3.start + 30, nx)
    if kind in ("ny", "nxny", "all", "all_but_nvals"):
        _set_u32(data, s3.start + 34, ny)
    if kind in ("npts", "all", "all_but_nvals"):
        _set_u32(data, s3.start + 6, nx * ny)
    if kind in ("nvals", "all"):
        _set_u32(data, s5.start + 5, nx * ny)
    return f"grid size {kind} -> {nx} x {ny}"


def _truncate(rng: random.Random, data: bytearray, secs: list[Section]) -> str:
    if rng.random() < 0.5:
        sec = rng.choice(secs)
        cut = sec.start + rng.choice([0, 1, 4, 5, sec.length - 1])
    else:
        cut = rng.randrange(1, len(data))
    del data[cut:]
    return f"truncated at byte {cut}"


def _junk(rng: random.Random, data: bytearray, secs: list[Section]) -> str:
    kind = rng.choice(["random", "grib0", "grib_random", "header_copy", "grib1_zero"])
    if kind == "random":
        tail = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == "grib0":  # issue 11 item 2: a message declaring length 0
        tail = b"GRIB\0\0\0\x02" + bytes(8)
    elif kind == "grib_random":
        tail = b"GRIB" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
    elif kind == "grib1_zero":
        tail = b"GRIB\0\0\0\x01" + bytes(8)
    else:
        tail = bytes(data[:rng.randint(8, 200)])
    data += tail
    return f"trailing junk ({kind}, {len(tail)} bytes)"


def _restructure(rng: random.Random, data: bytearray, secs: list[Section]) -> str:
    body = [s for s in secs if 3 <= s.number <= 7]
    sec = rng.choice(body)
    chunk = bytes(data[sec.start:sec.start + sec.length])
    kind = rng.choice(["duplicate", "zero_body", "zero_all", "drop", "swap"])
    start = secs[0].start
    if kind == "duplicate":
        data[sec.start + sec.length:sec.start + sec.length] = chunk
        _fix_total(data, start, len(chunk))
    elif kind == "zero_body":
        data[sec.start + 5:sec.start + sec.length] = bytes(sec.length - 5)
    elif kind == "zero_all":
        data[sec.start:sec.start + sec.length] = bytes(sec.length)
    elif kind == "drop":
        del data[sec.start:sec.start + sec.length]
        _fix_total(data, start, -len(chunk))
    else:
        other = rng.choice([s for s in body if s != sec] or [sec])
        a, b = sorted((sec, other), key=lambda s: s.start)
        block_a = bytes(data[a.start:a.start + a.length])
        block_b = bytes(data[b.start:b.start + b.length])
        middle = bytes(data[a.start + a.length:b.start])
        data[a.start:b.start + b.length] = block_b + middle + block_a
        return f"swap sections {a.number} and {b.number}"
    return f"{kind} section {sec.number}"


MUTATIONS: dict[str, tuple[float, Callable[[random.Random, bytearray, list[Section]], str]]] = {
    "flip": (5.0, _flip),
    "flip_data": (1.0, _flip_data),
    "message_length": (1.0, _message_length),
    "section_length": (1.5, _section_length),
    "grid_size": (1.5, _grid_size),
    "truncate": (1.0, _truncate),
    "junk": (1.0, _junk),
    "restructure": (1.5, _restructure),
}


@dataclass(frozen=True)
class Case:
    case_id: int
    source: str
    reader: str
    mutation: str
    data: bytes


def make_cases(base: Path, n_cases: int, seed: int, big: bool) -> list[Case]:
    """``n_cases`` mutated files, the same for the same seed."""
    rng = random.Random(seed)
    sources = [s for s in SOURCES if big or not s.big]
    originals = {s.name: load_source(base, s) for s in sources}
    names = list(MUTATIONS)
    cases = []
    for case_id in range(n_cases):
        source = rng.choices(sources, weights=[s.weight for s in sources])[0]
        data = bytearray(originals[source.name])
        spans = split_messages(bytes(data))
        start, length = rng.choice(spans)
        secs = sections(bytes(data), start, length)
        kind = rng.choices(names, weights=[MUTATIONS[k][0] for k in names])[0]
        what = MUTATIONS[kind][1](rng, data, secs)
        if len(spans) > 1:
            what += f" (message at byte {start})"
        cases.append(Case(case_id, source.name, source.reader, what, bytes(data)))
    return cases


# --------------------------------------------------------------------------------------
# Running a case in a child
# --------------------------------------------------------------------------------------


def _readers() -> dict[str, Callable[[Path], Any]]:
    from pqpf.io import grib

    return {
        "graf": lambda p: grib.read_graf(p, 12),
        "mrms_qpe": lambda p: grib.read_mrms_qpe(p, expected_id=None),
        "mrms_quality": grib.read_mrms_quality,
        "terrain": grib.read_terrain_grib,
    }


def _classify_in_child(path: Path, reader: Callable[[Path], Any]) -> tuple[str, str]:
    from pqpf.errors import PqpfError

    try:
        reader(path)
    except PqpfError as exc:
        text = str(exc)
        if "\n" in text or not text.startswith(str(path)):
            return "traceback", f"unclear {type(exc).__name__}: {text!r}"
        return "clean error", text[len(str(path)) + 2:]
    except MemoryError as exc:
        return "over-memory", f"MemoryError: {exc}"
    except BaseException as exc:  # noqa: BLE001 - the point is to see every escape
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return "traceback", f"{type(exc).__name__}: {exc} ({Path(frame.filename).name}:{frame.lineno})"
    return "decoded", ""


def run_case(case: Case, workdir: Path, readers: dict[str, Callable[[Path], Any]],
             mem_limit: int, time_limit: float) -> dict[str, Any]:
    """Run one case in a forked child; return its outcome as a dict."""
    path = workdir / f"case{case.case_id}.grib2"
    path.write_bytes(case.data)
    err_path = workdir / f"case{case.case_id}.stderr"
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(err_fd, 2)
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
            signal.alarm(max(1, int(time_limit)))
            category, detail = _classify_in_child(path, readers[case.reader])
            os.write(write_fd, json.dumps([category, detail]).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    deadline = start + time_limit + 5
    killed = False
    while True:
        ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            killed = True
            break
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    elapsed = time.monotonic() - start
    stderr = err_path.read_text(errors="replace") if err_path.exists() else ""
    path.unlink(missing_ok=True)
    err_path.unlink(missing_ok=True)
    if chunks:
        category, detail = json.loads(b"".join(chunks))
    elif killed or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM):
        category, detail = "hang", f"no result after {elapsed:.1f} s"
    elif "alloc" in stderr.lower():
        category, detail = "over-memory", stderr.strip().splitlines()[0]
    elif os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        category, detail = "crash", f"{sig}: {stderr.strip()[:200]}"
    else:
        category, detail = "crash", f"child exited {status} without a result: {stderr.strip()[:200]}"
    return {"case": case.case_id, "source": case.source, "mutation": case.mutation,
            "category": category, "detail": detail, "seconds": round(elapsed, 3),
            "stderr_lines": len(stderr.strip().splitlines()), "stderr": stderr.strip()[:300]}


def run_campaign(base: Path, n_cases: int, seed: int, big: bool = False,
                 mem_limit: int = 2 << 30, time_limit: float = 10.0,
                 only: int | None = None) -> dict[str, Any]:
    """Run the cases one after the other; counts per category and every result."""
    readers = _readers()
    import pygrib  # noqa: F401 - loaded once here, inherited by every child

    cases = make_cases(base, n_cases, seed, big)
    if only is not None:
        cases = [c for c in cases if c.case_id == only]
    start = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="pqpf-fuzz-") as tmp:
        for case in cases:
            results.append(run_case(case, Path(tmp), readers, mem_limit, time_limit))
    counts = Counter(r["category"] for r in results)
    return {"cases": len(results), "seed": seed, "seconds": round(time.monotonic() - start, 1),
            "counts": {c: counts.get(c, 0) for c in CATEGORIES},
            "noisy": sum(1 for r in results if r["stderr_lines"]), "results": results}


def table(report: dict[str, Any]) -> str:
    """The counts as a small text table."""
    lines = [f"GRIB fuzzer: {report['cases']} cases, seed {report['seed']}, "
             f"{report['seconds']} s"]
    lines += [f"  {name:<12} {report['counts'][name]:>6}" for name in CATEGORIES]
    lines.append(f"  (cases with C-library output on stderr: {report['noisy']})")
    return "\n".join(lines)


def default_data_dir() -> Path | None:
    """The real-data directory, found the way tests/conftest.py finds it."""
    root = Path(__file__).resolve().parents[2]
    for candidate in (os.environ.get("PQPF_REAL_DATA"), root.parent / "shared" / "data" / "real",
                      Path("/work/shared/data/real")):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=int(os.environ.get("PQPF_FUZZ_CASES", "300")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("PQPF_FUZZ_SEED", "11")))
    parser.add_argument("--big", action="store_true", default=os.environ.get("PQPF_FUZZ_BIG") == "1")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--mem-limit-mb", type=int, default=2048)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--only", type=int, default=None, help="run this case id only")
    parser.add_argument("--show", type=int, default=5, help="cases shown per bad category")
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    args = parser.parse_args(argv)
    base = args.data or default_data_dir()
    if base is None:
        parser.error("real data directory not found (set PQPF_REAL_DATA)")
    report = run_campaign(base, args.cases, args.seed, args.big, args.mem_limit_mb << 20,
                          args.time_limit, args.only)
    print(table(report))
    for category in ("clean error", *BAD) if args.only is not None else BAD:
        shown = [r for r in report["results"] if r["category"] == category][:args.show]
        for r in shown:
            print(f"  [{category}] case {r['case']} {r['source']}: {r['mutation']}: {r['detail']}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 1 if any(report["counts"][c] for c in BAD) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
