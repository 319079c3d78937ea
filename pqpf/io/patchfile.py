"""Patch files (``GRAF_Unet_data_{split}_{INIT}_{LEAD}h.cPick``): written as a stream,
read through a restricted unpickler.

Format (pickle, as the original notes use): a sequence of pickled objects in one file,

1. a header ``dict``: ``format`` (``"pqpf-patches"``), ``schema_version``, ``split``, ``init``
   (YYYYMMDDHH), ``lead_h``, ``patch_px``, ``channel_names``, ``feature_schema_version``,
   ``thresholds_mm`` and any other plain metadata;
2. one record ``dict`` per init, each holding the arrays of that init's patches
   (``features`` (n,C,P,P), ``mrms`` (n,P,P), ``quality`` (n,P,P), ``ref_prob`` (n,T,P,P),
   ``origins`` (n,2), ``weights`` (n,), ``init_time`` / ``valid_time`` (n,) int64 seconds);
3. a trailer ``dict`` ``{"end": True, "n_records": R, "n_patches": N}``.

Writing one record per init keeps the writer's memory flat however many inits go in; the
trailer proves the file is complete (and the file only appears under its name once it is,
see :mod:`pqpf.io.atomic`). :func:`load_patch_file` returns ONE dict as SPEC.md describes:
the header's keys plus every record array concatenated along the patch axis.

Loading never runs code from the file and never lets the file choose what the loader
does: :class:`RestrictedUnpickler` (the pure-Python unpickler with its opcodes
re-checked) builds only plain containers (dict with str/int keys, list, tuple), numbers,
strings, bytes, and numpy arrays, dtypes and scalars of plain numeric or bool type. Every
numpy constructor the file names is replaced by a checking one: a dtype must be a plain
number or bool type (no void, structured, sub-array or object dtype, however built); a
BUILD (``__setstate__``) is allowed only on an array or dtype just made by the file, with
the state numpy itself writes; an array's bytes must be exactly what its shape and dtype
declare; a length is never trusted beyond the bytes left in the file. Containers nested
deeper than 32 levels or holding themselves are refused (:mod:`pqpf.io.safe_pickle`). Anything else is an
:class:`~pqpf.errors.InputFileError` naming the file and the reason in one line.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from pqpf import __version__
from pqpf.errors import InputFileError
from pqpf.features import check_feature_schema
from pqpf.io.atomic import atomic_path
from pqpf.io.safe_pickle import RestrictedUnpickler, Truncated, check_plain, safe_loads

__all__ = [
    "PATCH_FORMAT",
    "PATCH_SCHEMA_VERSION",
    "RestrictedUnpickler",
    "PatchFileWriter",
    "iter_patch_file",
    "load_patch_file",
    "read_patch_header",
    "safe_loads",
    "RECORD_ARRAYS",
    "patch_file_header",
    "PatchSet",
    "load_patch_set",
]

logger = logging.getLogger(__name__)

PATCH_FORMAT = "pqpf-patches"
PATCH_SCHEMA_VERSION = 1

def _identity(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except OSError as exc:
        raise InputFileError(path, f"cannot read it ({exc.strerror or exc})") from None
    return st.st_ino, st.st_size, st.st_mtime_ns


class PatchFileWriter:
    """Stream patches into a patch file, one record per init, atomically.

    Examples
    --------
    >>> with PatchFileWriter(path, header) as writer:        # doctest: +SKIP
    ...     for init in inits:
    ...         writer.append(record_for(init))
    """

    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = {"format": PATCH_FORMAT, "schema_version": PATCH_SCHEMA_VERSION, **header}
        check_plain(self.header, "header")
        self.n_records = 0
        self.n_patches = 0
        #: Plain values written into the trailer (e.g. the inits actually used).
        self.trailer_extra: dict[str, Any] = {}
        self._ctx: Any = None
        self._fh: BinaryIO | None = None

    def __enter__(self) -> PatchFileWriter:
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._fh = open(tmp, "wb")
        pickle.dump(self.header, self._fh, protocol=pickle.HIGHEST_PROTOCOL)
        return self

    def append(self, record: dict[str, Any]) -> None:
        """Write one init's patches; every array must have the same first dimension."""
        assert self._fh is not None, "use PatchFileWriter as a context manager"
        sizes = {k: len(v) for k, v in record.items() if isinstance(v, np.ndarray) and v.ndim > 0}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"record arrays disagree on the number of patches: {sizes}")
        check_plain(record, "record")
        pickle.dump(record, self._fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.n_records += 1
        self.n_patches += next(iter(sizes.values()), 0)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._fh is not None
        try:
            if exc_type is None:
                trailer = {**self.trailer_extra, "end": True, "n_records": self.n_records,
                           "n_patches": self.n_patches}
                check_plain(trailer, "trailer")
                pickle.dump(trailer, self._fh, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            self._fh.close()
            self._ctx.__exit__(exc_type, exc, tb)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _load_next(fh: BinaryIO, path: Path) -> Any:
    """The next pickled object of a patch file, checked; every failure is one line."""
    try:
        obj = RestrictedUnpickler(fh).load()
        check_plain(obj, "file")
    except Truncated as exc:
        raise InputFileError(path, _one_line(exc)) from None
    except EOFError:
        raise InputFileError(path, "truncated patch file (no end marker)") from None
    except pickle.UnpicklingError as exc:
        raise InputFileError(path, f"refused to load: {_one_line(exc)}") from None
    except Exception as exc:  # corrupt bytes raise a zoo of exceptions
        raise InputFileError(path, f"corrupt patch file ({type(exc).__name__}: {_one_line(exc)})") from None
    return obj


def read_patch_header(path: str | Path) -> dict[str, Any]:
    """The header of a patch file (cheap: reads only the first object)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "patch file not found (run save_patched_graf_mrms.py first)")
    with open(path, "rb") as fh:
        header = _load_next(fh, path)
    if not isinstance(header, dict) or header.get("format") != PATCH_FORMAT:
        raise InputFileError(path, "not a pqpf patch file (bad header)")
    if header.get("schema_version") != PATCH_SCHEMA_VERSION:
        raise InputFileError(
            path, f"patch schema version {header.get('schema_version')} is not "
            f"{PATCH_SCHEMA_VERSION}; regenerate it with save_patched_graf_mrms.py"
        )
    return header


def iter_patch_file(path: str | Path, trailer: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Yield the header, then each record, checking the trailer at the end.

    If ``trailer`` is a dict, it receives the trailer's contents when the file is done.
    """
    path = Path(path)
    header = read_patch_header(path)
    yield header
    with open(path, "rb") as fh:
        _load_next(fh, path)  # header again
        n_records = 0
        while True:
            obj = _load_next(fh, path)
            if not isinstance(obj, dict):
                raise InputFileError(path, f"unexpected {type(obj).__name__} in patch file")
            if obj.get("end") is True:
                if obj.get("n_records") != n_records:
                    raise InputFileError(path, "record count does not match the end marker")
                if trailer is not None:
                    trailer.update(obj)
                return
            n_records += 1
            yield obj


def load_patch_file(path: str | Path) -> dict[str, Any]:
    """One dict: the header's keys, the trailer's extras (e.g. ``inits_used``) and every
    record's arrays concatenated along axis 0.

    The file is read twice: once for the array shapes, once into arrays allocated at
    their final size, so the peak memory is that of the result, not twice it.

    Raises
    ------
    InputFileError
        Missing, truncated or corrupt file, wrong format/schema, records whose arrays
        disagree, or anything in it that is not a numpy array or plain container (a
        malicious pickle is refused before any of its code could run).
    """
    path = Path(path)
    trailer: dict[str, Any] = {}
    stream = iter_patch_file(path, trailer)
    header = next(stream)  # a missing or foreign file fails here, with its own message
    identity = _identity(path)
    layout: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    counts: dict[str, int] = {}
    for record in stream:
        for key, value in record.items():
            if isinstance(value, np.ndarray):
                tail = (value.shape[1:], value.dtype)
                if layout.setdefault(key, tail) != tail:
                    raise InputFileError(path, f"records disagree on the shape or type of {key!r}")
                counts[key] = counts.get(key, 0) + len(value)
    out = dict(header)
    out.update({k: v for k, v in trailer.items() if k not in ("end", "n_records", "n_patches")})
    arrays = {k: np.empty((counts[k], *shape), dtype=dtype) for k, (shape, dtype) in layout.items()}
    filled = dict.fromkeys(arrays, 0)
    stream = iter_patch_file(path)
    next(stream)
    for record in stream:
        for key, value in record.items():
            if key in arrays:
                if filled[key] + len(value) > counts[key]:
                    raise InputFileError(path, "changed while it was being read; load it again")
                arrays[key][filled[key]:filled[key] + len(value)] = value
                filled[key] += len(value)
    if filled != counts or _identity(path) != identity:  # rewritten (e.g. --overwrite) between the passes
        raise InputFileError(path, "changed while it was being read; load it again")
    out.update(arrays)
    out["n_patches"] = int(next(iter(counts.values()))) if counts else 0
    return out


# --------------------------------------------------------------------------------------
# the schema of a record, the header, and a split in memory
# --------------------------------------------------------------------------------------

#: Arrays of one record (one init): name -> (dtype, dimensions after the patch axis).
RECORD_ARRAYS: dict[str, tuple[str, str]] = {
    "features": ("float32", "(C, P, P) features in physical units, channels of the header"),
    "mrms": ("float32", "(P, P) MRMS 1-h amount (mm), NaN where missing"),
    "quality": ("float32", "(P, P) radar quality 0..1 (0 where GRAF is missing)"),
    "ref_prob": ("float16", "(T, P, P) smoothed-GRAF reference P(obs >= t) at the header's thresholds"),
    "origins": ("int32", "(2,) row and column of the patch's first point"),
    "weights": ("float32", "() sampling weight 1/pi"),
    "init_time": ("int64", "() init, seconds since 1970"),
    "valid_time": ("int64", "() valid time, seconds since 1970"),
}


def patch_file_header(
    *,
    split: str,
    init: str,
    lead_h: int,
    patch_px: int,
    channel_names: Sequence[str],
    feature_schema_version: int,
    thresholds_mm: Sequence[float],
    reference_sigma_px: float,
    min_quality: float,
    grid: dict[str, Any],
    grid_fingerprint: str,
    terrain_smoothing_sigma_px: float,
    sampling: dict[str, Any],
    inits_planned: Sequence[str],
) -> dict[str, Any]:
    """The header of a patch file, as plain values (everything provenance checks need:
    the grid, the terrain smoothing and the quality minimum the patches were cut with)."""
    return {
        "init": init, "lead_h": int(lead_h), "patch_px": int(patch_px),
        "channel_names": list(channel_names), "feature_schema_version": int(feature_schema_version),
        "thresholds_mm": [float(t) for t in thresholds_mm], "reference_sigma_px": float(reference_sigma_px),
        "min_quality": float(min_quality), "grid": dict(grid), "grid_fingerprint": str(grid_fingerprint),
        "terrain_smoothing_sigma_px": float(terrain_smoothing_sigma_px), "sampling": dict(sampling),
        "pqpf_version": __version__, "split": split, "inits_planned": list(inits_planned),
    }


@dataclass
class PatchSet:
    """The patches of one split, in memory (see :data:`RECORD_ARRAYS`).

    Attributes
    ----------
    features : float32 (N, C, P, P)   physical units, not normalised
    mrms_mm : float32 (N, P, P)       NaN where missing
    quality : float32 (N, P, P)       0..1
    ref_prob : float16 (N, T, P, P)   smoothed-GRAF reference P(obs >= t)
    weights : float32 (N,)            sampling weights 1/pi
    valid_time : int64 (N,)           seconds since 1970
    header : dict                     the file's plain metadata (:func:`patch_file_header`)
    """

    features: NDArray[np.float32]
    mrms_mm: NDArray[np.float32]
    quality: NDArray[np.float32]
    ref_prob: NDArray[np.float16]
    weights: NDArray[np.float32]
    valid_time: NDArray[np.int64]
    channel_names: tuple[str, ...]
    thresholds_mm: tuple[float, ...]
    header: dict[str, Any]

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def patch_px(self) -> int:
        return int(self.header["patch_px"])

    def take(self, index: Sequence[int] | NDArray[np.integer]) -> PatchSet:
        """The patches at ``index`` (copies), with this set's names and header."""
        idx = np.asarray(index, dtype=np.int64)
        return dataclasses.replace(self, features=self.features[idx], mrms_mm=self.mrms_mm[idx],
                                   quality=self.quality[idx], ref_prob=self.ref_prob[idx],
                                   weights=self.weights[idx], valid_time=self.valid_time[idx])


def load_patch_set(path: str | Path) -> PatchSet:
    """Load one patch file (:func:`load_patch_file`) into a :class:`PatchSet`.

    Raises
    ------
    InputFileError
        As :func:`load_patch_file`, or a header without the keys a split needs.
    """
    data = load_patch_file(path)
    check_feature_schema(data.get("feature_schema_version"), path)
    try:
        n = int(data.get("n_patches", 0))
        p = int(data["patch_px"])
        c = len(data["channel_names"])
        t = len(data["thresholds_mm"])
        channel_names = tuple(str(x) for x in data["channel_names"])
        thresholds = tuple(float(x) for x in data["thresholds_mm"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"patch file header lacks or garbles {exc}") from None
    empty = {
        "features": np.zeros((0, c, p, p), np.float32), "mrms": np.zeros((0, p, p), np.float32),
        "quality": np.zeros((0, p, p), np.float32), "ref_prob": np.zeros((0, t, p, p), np.float16),
        "weights": np.zeros(0, np.float32), "valid_time": np.zeros(0, np.int64),
    }
    def get(key: str) -> Any:
        return data[key] if n else empty[key]

    return PatchSet(
        features=get("features"), mrms_mm=get("mrms"), quality=get("quality"), ref_prob=get("ref_prob"),
        weights=get("weights"), valid_time=get("valid_time"), channel_names=channel_names,
        thresholds_mm=thresholds, header={k: v for k, v in data.items() if not isinstance(v, np.ndarray)},
    )
