"""A corpus of malicious patch files for the restricted loader (issue 11 item 1).

Each case is a patch file (header, one record, trailer) with something hostile in the
record or the header: code execution through every pickle opcode path (GLOBAL,
STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX, persistent ids, extension
codes, protocol 0 text), numpy's own constructors misused (the V8 structured-dtype trick
that crashed the loader with SIGSEGV, dtypes altered by BUILD, attribute rewriting of
``_frombuffer``, object/structured/sub-array dtypes, arrays whose bytes do not match
their shape), deep and cyclic containers, a deep tuple as a dict key, and lengths or
shapes declaring terabytes. Every payload that runs code would create ``MARKER``.

``run_corpus`` loads each file with :func:`pqpf.io.patchfile.load_patch_file` in a child
forked from this process (RLIMIT_AS 2 GiB, a 20 s alarm) and classifies the outcome:
``refused`` (one-line InputFileError naming the file), ``loaded``, ``traceback``,
``crash`` (a signal), ``hang``, and whether the payload ran. Run it alone with
``.venv/bin/python tests/faults/pickle_corpus.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import select
import signal
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROTO = b"\x80\x04"


# --------------------------------------------------------------------------------------
# opcode builders
# --------------------------------------------------------------------------------------


def s(text: str) -> bytes:
    """A str (SHORT_BINUNICODE or BINUNICODE)."""
    data = text.encode()
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def i(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def g(module: str, name: str) -> bytes:
    """A global by STACK_GLOBAL."""
    return s(module) + s(name) + b"\x93"


def c(module: str, name: str) -> bytes:
    """A global by the text GLOBAL opcode."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def lst(*items: bytes) -> bytes:
    return b"]" + (b"(" + b"".join(items) + b"e" if items else b"")


def call(func: bytes, *args: bytes) -> bytes:
    return func + tup(*args) + b"R"


def np_dtype(code: str) -> bytes:
    return call(g("numpy", "dtype"), s(code), b"\x89", b"\x88")


def record(value: bytes, key: str = "features") -> bytes:
    """A record dict whose ``key`` holds ``value``."""
    return PROTO + b"}(" + s(key) + value + b"u."


def header(value: bytes) -> bytes:
    """A valid-looking header dict with ``value`` under an extra key."""
    return PROTO + b"}(" + s("format") + s("pqpf-patches") + s("schema_version") + b"K\x01" + s(
        "extra") + value + b"u."


# --------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------


def _v8_object_dtype() -> bytes:
    """numpy.dtype('V8') BUILT into a structured dtype with an object field, flags 0."""
    fields = b"}" + s("a") + np_dtype("O") + b"K\x00\x86" + b"s"
    state = tup(b"K\x03", s("|"), b"N", tup(s("a")), fields, b"K\x08", b"K\x01", b"K\x00")
    return np_dtype("V8") + state + b"b"


def _frombuffer(buf: bytes, dtype: bytes, shape: bytes) -> bytes:
    return call(g("numpy._core.numeric", "_frombuffer"), buf, dtype, shape, s("C"))


def _bytes(data: bytes) -> bytes:
    return b"C" + bytes([len(data)]) + data if len(data) < 256 else b"B" + struct.pack("<I", len(data)) + data


def _deep(n: int, opener: bytes, closer: bytes) -> bytes:
    return opener * n + closer * (n - 1)


def build_corpus(marker: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (where the payload sits: "record" or "header", the pickle of that object)."""
    return {**_code_execution(marker), **_numpy_misuse(f"touch {marker}"), **_sizes_and_containers()}


def _code_execution(marker: Path) -> dict[str, tuple[str, bytes]]:
    """Every way pickle can call something, each aimed at creating ``marker``."""
    cmd = f"touch {marker}"
    touch = lst(s("touch"), s(str(marker)))
    return {
        # code execution through every way pickle can call something
        "GLOBAL os.system + REDUCE": ("record", record(call(c("os", "system"), s(cmd)))),
        "STACK_GLOBAL posix.system + REDUCE": ("record", record(call(g("posix", "system"), s(cmd)))),
        "builtins.eval": ("record", record(call(g("builtins", "eval"),
                                                s(f"__import__('os').system('{cmd}')")))),
        "builtins.exec in the header": ("header", header(call(g("builtins", "exec"),
                                                              s(f"import os; os.system('{cmd}')")))),
        "subprocess.call": ("record", record(call(g("subprocess", "call"), touch))),
        "INST os.system": ("record", record(b"(" + s(cmd) + b"ios\nsystem\n")),
        "OBJ os.system": ("record", record(b"(" + g("os", "system") + s(cmd) + b"o")),
        "OBJ numpy.dtype": ("record", record(b"(" + g("numpy", "dtype") + s("f4") + b"o")),
        "NEWOBJ numpy.ndarray": ("record", record(g("numpy", "ndarray") + tup(tup(i(10**9))) + b"\x81")),
        "NEWOBJ subprocess.Popen": ("record", record(g("subprocess", "Popen") + tup(touch) + b"\x81")),
        "NEWOBJ_EX subprocess.Popen": ("record", record(g("subprocess", "Popen") + tup(touch) + b"}" + b"\x92")),
        "PERSID": ("record", record(b"P" + cmd.encode() + b"\n")),
        "BINPERSID": ("record", record(s(cmd) + b"Q")),
        "EXT1 registered as os.system": ("record", record(b"\x82\xf0" + tup(s(cmd)) + b"R")),
        "EXT2": ("record", record(b"\x83\xf0\x00" + tup(s(cmd)) + b"R")),
        "EXT4": ("record", record(b"\x84\xf0\x00\x00\x00" + tup(s(cmd)) + b"R")),
        "protocol 0 text pickle": ("record", f"(dp0\nS'features'\np1\ncos\nsystem\n(S'{cmd}'\ntRs.".encode()),
        "numpy.load with pickles": ("record", record(call(g("numpy", "load"), s(str(marker))))),
        "numpy.ndarray called directly": ("record", record(call(g("numpy", "ndarray"), tup(i(10**9)), s("f8")))),
        "_codecs.encode as rot13": ("record", record(call(g("_codecs", "encode"), s("abc"), s("rot13")))),
    }


def _numpy_misuse(cmd: str) -> dict[str, tuple[str, bytes]]:
    """numpy's own constructors turned against the loader."""
    empty = call(g("numpy._core.multiarray", "_reconstruct"), g("numpy", "ndarray"), tup(b"K\x00"), _bytes(b"b"))
    v8 = _v8_object_dtype()
    evil_v8_array = _frombuffer(_bytes(struct.pack("<Q", 0x4141414141414140)), v8, tup(b"K\x01"))
    return {
        "V8 structured dtype with an object field (SIGSEGV before)": ("record", record(evil_v8_array)),
        "the same array in the header": ("header", header(evil_v8_array)),
        "V8 dtype alone in the header": ("header", header(v8)),
        "structured dtype spec": ("record", record(np_dtype("i4,O"))),
        "sub-array dtype spec": ("record", record(np_dtype("(2,)f4"))),
        "object dtype": ("record", record(np_dtype("O"))),
        "object array via _reconstruct": ("record", record(
            empty + tup(b"K\x01", tup(b"K\x01"), np_dtype("O"), b"\x89", lst(call(c("os", "system"), s(cmd))))
            + b"b")),
        "float dtype BUILT to itemsize 1024": ("record", record(
            np_dtype("f4") + tup(b"K\x03", s("<"), b"N", b"N", b"N", i(1024), b"K\x01", b"K\x00") + b"b")),
        "float dtype BUILT with object flags": ("record", record(
            np_dtype("f4") + tup(b"K\x03", s("<"), b"N", b"N", b"N", i(-1), i(-1), b"K\x3f") + b"b")),
        "BUILD rewriting _frombuffer's attributes": ("record", record(
            g("numpy._core.numeric", "_frombuffer")
            + tup(b"N", b"}" + s("__defaults__") + tup(s(cmd)) + b"s") + b"b")),
        "BUILD on the numpy.ndarray class": ("record", record(
            g("numpy", "ndarray") + tup(b"N", b"}" + s("tolist") + b"K\x01" + b"s") + b"b")),
        "BUILD on a plain dict": ("record", record(b"}" + b"}" + s("x") + b"K\x01s" + b"b")),
        "array bytes shorter than its shape": ("record", record(
            _frombuffer(_bytes(bytes(8)), np_dtype("f8"), tup(i(1_000_000))))),
        "scalar with an object dtype": ("record", record(
            call(g("numpy._core.multiarray", "scalar"), np_dtype("O"), g("os", "system")))),
        "SETITEM on an array": ("record", record(
            _frombuffer(_bytes(bytes(8)), np_dtype("f8"), tup(b"K\x01")) + b"K\x00" + b"K\x01" + b"s")),
        "APPEND on a bytearray": ("record", record(b"\x96" + struct.pack("<Q", 1) + b"x" + b"K\x01a")),
    }


def _sizes_and_containers() -> dict[str, tuple[str, bytes]]:
    """Lengths and shapes that would allocate without bound; deep, cyclic, shared containers."""
    terabyte = b"\x8a\x06" + (10**12).to_bytes(6, "little")  # LONG1 10**12
    empty = call(g("numpy._core.multiarray", "_reconstruct"), g("numpy", "ndarray"), tup(b"K\x00"), _bytes(b"b"))
    return {
        "_reconstruct with a terabyte shape": ("record", record(
            call(g("numpy._core.multiarray", "_reconstruct"), g("numpy", "ndarray"), tup(terabyte), _bytes(b"b")))),
        "array state with a terabyte shape": ("record", record(
            empty + tup(b"K\x01", tup(terabyte), np_dtype("f8"), b"\x89", _bytes(bytes(8))) + b"b")),
        "_frombuffer with a 2**62 shape": ("record", record(
            _frombuffer(_bytes(bytes(8)), np_dtype("f8"), tup(b"\x8a\x08" + (2**62).to_bytes(8, "little"))))),
        "BINBYTES8 of 2**62 bytes": ("record", record(b"\x8e" + struct.pack("<Q", 2**62))),
        "BYTEARRAY8 of 2**40 bytes": ("record", record(b"\x96" + struct.pack("<Q", 2**40))),
        "BINUNICODE8 of 2**50 bytes": ("record", record(b"\x8d" + struct.pack("<Q", 2**50))),
        "LONG4 of 2**31 bytes": ("record", record(b"\x8b" + struct.pack("<i", 2**31 - 1))),
        "FRAME of 2**60 bytes": ("record", PROTO + b"\x95" + struct.pack("<Q", 2**60) + b"}."),
        "list nested 200000 deep": ("record", record(_deep(200_000, b"]", b"a"))),
        "dict nested 200000 deep": ("header", header((b"}" + s("k")) * 199_999 + b"}" + b"s" * 199_999)),
        "tuple nested 200000 deep as a dict key (SIGSEGV before)": (
            "record", PROTO + b"}" + b")" + b"\x85" * 200_000 + b"K\x01s."),
        "list holding itself": ("record", record(b"]\x94h\x00a")),
        "dict holding itself": ("header", header(b"}\x94" + s("me") + b"h\x00s")),
        "shared tuples, 2**40 paths, 40 deep": ("record", record(
            b"K\x01" + b"".join(b"\x94" + b"h" + bytes([k]) + b"\x86" for k in range(40)))),
        "unknown opcode": ("record", PROTO + b"}" + b"\xff."),
        "memo index that was never stored": ("record", PROTO + b"}(" + s("features") + b"h\x07u."),
    }


def patch_file(where: str, obj: bytes) -> bytes:
    """A whole patch file with ``obj`` as its header or as its one record."""
    trailer = pickle.dumps({"end": True, "n_records": 1, "n_patches": 1})
    good_header = pickle.dumps({"format": "pqpf-patches", "schema_version": 1, "split": "train"})
    good_record = pickle.dumps({"weights": __import__("numpy").ones(1, "float32")})
    if where == "header":
        return obj + good_record + trailer
    return good_header + obj + trailer


# --------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------


def _classify(path: Path) -> tuple[str, str]:
    from pqpf.errors import InputFileError
    from pqpf.io.patchfile import load_patch_file

    try:
        load_patch_file(path)
    except InputFileError as exc:
        text = str(exc)
        if "\n" in text or not text.startswith(f"{path}: "):
            return "traceback", f"unclear: {text!r}"
        return "refused", text[len(str(path)) + 2:]
    except BaseException as exc:  # noqa: BLE001 - every escape is a finding
        return "traceback", f"{type(exc).__name__}: {str(exc)[:200]}"
    return "loaded", ""


def run_case(path: Path, marker: Path, time_limit: int = 20, mem_limit: int = 2 << 30) -> dict[str, Any]:
    """Load one file in a forked child; its outcome and whether the payload ran."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            import copyreg

            os.close(read_fd)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
            signal.alarm(time_limit)
            copyreg.add_extension("os", "system", 0xF0)  # as if a library had registered it
            os.write(write_fd, json.dumps(_classify(path)).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks, deadline = [], time.monotonic() + time_limit + 5
    while True:
        ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if chunks:
        outcome, detail = json.loads(b"".join(chunks))
    elif os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGALRM, signal.SIGKILL):
        outcome, detail = "hang", "killed after the time limit"
    elif os.WIFSIGNALED(status):
        outcome, detail = "crash", signal.Signals(os.WTERMSIG(status)).name
    else:
        outcome, detail = "crash", f"exit status {status} without a result"
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    return {"outcome": outcome, "detail": detail, "payload_ran": ran}


def run_corpus(workdir: Path, only: Callable[[str], bool] = lambda name: True) -> dict[str, dict[str, Any]]:
    """Every case of the corpus, loaded in its own child."""
    import pqpf.io.patchfile  # noqa: F401 - imported once, inherited by the children

    marker = workdir / "PAYLOAD_RAN"
    results = {}
    for k, (name, (where, obj)) in enumerate(build_corpus(marker).items()):
        if not only(name):
            continue
        path = workdir / f"case{k:02d}.cPick"
        path.write_bytes(patch_file(where, obj))
        results[name] = run_case(path, marker)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the corpus, print one line a case; ``--json FILE`` also writes the results."""
    args = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory(prefix="pqpf-pickles-") as tmp:
        results = run_corpus(Path(tmp))
    if args[:1] == ["--json"]:
        Path(args[1]).write_text(json.dumps(results, indent=1))
    bad = 0
    for name, r in results.items():
        ok = r["outcome"] == "refused" and not r["payload_ran"]
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {r['outcome']:<9} {name}: {r['detail']}")
    print(f"{len(results)} cases, {len(results) - bad} refused cleanly, {bad} not")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
