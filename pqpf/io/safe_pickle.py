"""Loading pickles that hold only data: plain containers and plain numpy arrays.

:class:`RestrictedUnpickler` is the pure-Python unpickler with the opcodes that could
run, configure or allocate something the file chooses re-checked:

- globals: only numpy's array, dtype and scalar reconstructors (numpy 1.x and 2.x names)
  and how protocol 2 writes bytes (``_codecs.encode``, ``bytes()``); each is replaced by
  a checking stand-in, so the file can neither call anything else nor reach the real
  functions (whose attributes a BUILD could otherwise rewrite);
- dtypes: plain numeric or bool types only (no void, structured, sub-array, object,
  string or datetime dtype), also after a BUILD, whose state must be what numpy writes;
- arrays: exactly the bytes their shape and dtype declare; BUILD only on the empty array
  ``_reconstruct`` has just made, once;
- REDUCE only on the stand-ins; INST, OBJ, NEWOBJ(_EX), persistent ids, extension codes,
  sets and out-of-band buffers refused; dict keys must be str or int (checked before
  hashing: hashing a deeply nested tuple overflows the C stack); APPEND(S)/SETITEM(S) only
  on a list/dict;
- lengths: never beyond the bytes left in the file (no allocation the file asks for).

:func:`check_plain` then walks the result without recursion, refusing cycles, nesting
deeper than :data:`MAX_DEPTH` and anything not plain. Refusals are
:class:`pickle.UnpicklingError` (:class:`Truncated` for lengths past the end).
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

__all__ = ["MAX_DEPTH", "RestrictedUnpickler", "Truncated", "check_plain", "safe_loads"]

#: Deepest nesting of containers a patch file may hold (the real ones need 3).
MAX_DEPTH = 32
#: Array kinds a patch file may hold: bool, signed and unsigned integers, floats, complex.
_PLAIN_KINDS = frozenset("biufc")
_Refused = pickle.UnpicklingError


class Truncated(pickle.UnpicklingError):
    """A length in the file asks for more bytes than the file has left."""


# --------------------------------------------------------------------------------------
# checked stand-ins for the numpy constructors a pickle of arrays names
# --------------------------------------------------------------------------------------


def _plain_dtype(dtype: Any, where: str = "file") -> np.dtype:
    """A fresh descriptor equal to ``dtype``, if that is a plain numeric or bool type.

    Reads only the descriptor's attributes, never data. Refuses void, structured,
    sub-array, object, string and datetime dtypes, and a plain-looking dtype whose size,
    alignment or flags were altered after construction (pickle BUILD).
    """
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"expected a numpy dtype in {where}, got {type(dtype).__name__}")
    if (dtype.kind not in _PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None
            or dtype.hasobject or dtype.metadata is not None):
        raise _Refused(f"dtype {dtype.str!r} in {where} is not a plain number or bool type")
    fresh = np.dtype(dtype.str)
    if ((dtype.itemsize, dtype.alignment, dtype.flags, dtype.byteorder, dtype.num)
            != (fresh.itemsize, fresh.alignment, fresh.flags, fresh.byteorder, fresh.num)):
        raise _Refused(f"dtype {dtype.str!r} in {where} was altered after construction")
    return fresh


def _is_flag(value: Any) -> bool:
    return type(value) in (bool, int) and value in (0, 1)


def _shape(shape: Any, where: str) -> tuple[int, ...]:
    if (type(shape) is not tuple or len(shape) > 32
            or not all(type(n) is int and n >= 0 for n in shape)):
        raise _Refused(f"bad array shape in {where}")
    return shape


def _byte_count(shape: tuple[int, ...], dtype: np.dtype, buffer: Any, where: str) -> None:
    """The buffer holds exactly the bytes the shape and dtype declare."""
    if type(buffer) not in (bytes, bytearray):
        raise _Refused(f"array data in {where} is a {type(buffer).__name__}, not bytes")
    need = math.prod(shape) * dtype.itemsize
    if len(buffer) != need:
        raise _Refused(f"array of shape {shape} and dtype {dtype.str} in {where} needs {need} "
                       f"bytes, the file gives {len(buffer)}")


def _make_dtype(*args: Any) -> np.dtype:
    """``numpy.dtype(spec, align, copy)`` for a plain spec such as ``'f4'``; a new object."""
    if not (1 <= len(args) <= 3 and type(args[0]) is str and len(args[0]) <= 16
            and all(_is_flag(a) for a in args[1:])):
        raise _Refused("numpy.dtype called with arguments other than (type code, flag, flag)")
    try:
        dtype = np.dtype(args[0])
    except TypeError:
        raise _Refused(f"unknown dtype {args[0]!r}") from None
    _plain_dtype(dtype, "a dtype")
    return np.dtype(args[0], False, True)  # a copy: a BUILD may change it, never numpy's own


def _build_dtype(dtype: np.dtype, state: Any) -> None:
    """Apply a dtype's pickled state, if it is what numpy writes for a plain type."""
    numbers = state[0:1] + state[5:] if type(state) is tuple and len(state) == 8 else ()
    if not (numbers and all(type(v) is int for v in numbers) and numbers == (3, -1, -1, 0)
            and type(state[1]) is str and state[1] in "<>|=" and len(state[1]) == 1
            and all(v is None for v in state[2:5])):
        raise _Refused("a dtype state other than numpy's own for a plain type (byte order only)")
    dtype.__setstate__(state)  # type: ignore[attr-defined]
    _plain_dtype(dtype, "a dtype")


def _make_array(buf: Any, dtype: Any, shape: Any, order: Any = "C", axis_order: Any = None) -> np.ndarray:
    """numpy's ``_frombuffer``: an array over exactly the bytes its shape and dtype need."""
    fresh = _plain_dtype(dtype, "an array")
    shape = _shape(shape, "an array")
    _byte_count(shape, fresh, buf, "an array")
    if type(order) is not str or order not in ("C", "F", "K"):
        raise _Refused(f"array order {order!r}")
    array = np.frombuffer(buf, dtype=fresh)
    if order == "K" and axis_order is not None:
        if (type(axis_order) is not tuple or not all(type(a) is int for a in axis_order)
                or sorted(axis_order) != list(range(len(shape)))):
            raise _Refused("array axis order is not a permutation of its axes")
        return array.reshape(shape, order="C").transpose(axis_order)
    return array.reshape(shape, order="F" if order == "F" else "C")


def _make_empty(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``: the empty array a BUILD then fills."""
    if (subtype is not np.ndarray or type(shape) is not tuple or len(shape) != 1 or type(shape[0]) is not int
            or shape[0] != 0 or type(typecode) not in (bytes, str) or typecode not in (b"b", "b")):
        raise _Refused("numpy _reconstruct with arguments other than (ndarray, (0,), 'b')")
    return np.ndarray((0,), np.int8)


def _build_array(array: np.ndarray, state: Any) -> None:
    """Fill an array made by :func:`_make_empty` from numpy's pickled state, checked."""
    if type(state) is tuple and len(state) == 5 and type(state[0]) is int and state[0] == 1:
        state = state[1:]
    if type(state) is not tuple or len(state) != 4 or not _is_flag(state[2]):
        raise _Refused("an array state other than (version, shape, dtype, fortran, bytes)")
    shape = _shape(state[0], "an array")
    fresh = _plain_dtype(state[1], "an array")
    _byte_count(shape, fresh, state[3], "an array")
    array.__setstate__((1, shape, fresh, bool(state[2]), bytes(state[3])))  # type: ignore[arg-type]


def _make_scalar(dtype: Any, data: Any) -> np.generic:
    """numpy's ``scalar(dtype, bytes)`` for a plain dtype and exactly its item's bytes."""
    fresh = _plain_dtype(dtype, "a scalar")
    _byte_count((), fresh, data, "a scalar")
    scalar: np.generic = np.frombuffer(data, dtype=fresh)[0]
    return scalar


def _latin1_bytes(text: Any, encoding: Any) -> bytes:
    """``_codecs.encode(text, 'latin1')``, how protocol 2 pickles bytes."""
    if type(text) is not str or type(encoding) is not str or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode with arguments other than (str, 'latin1')")
    return text.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()``, how protocol 2 pickles empty bytes (e.g. an empty array's data)."""
    if args:
        raise _Refused("bytes called with arguments (only bytes() is used for b'')")
    return b""


# (module, name) a patch file may reference -> what it gets instead: numpy's array, dtype
# and scalar reconstructors under their numpy 1.x and 2.x module names, replaced by the
# checking versions above, and the two ways protocol 2 writes bytes. Nothing else.
_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,  # only as the first argument of _reconstruct
    ("numpy", "dtype"): _make_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _make_empty,
    ("numpy._core.multiarray", "_reconstruct"): _make_empty,
    ("numpy.core.multiarray", "scalar"): _make_scalar,
    ("numpy._core.multiarray", "scalar"): _make_scalar,
    ("numpy.core.numeric", "_frombuffer"): _make_array,
    ("numpy._core.numeric", "_frombuffer"): _make_array,
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}
_CONSTRUCTORS = (_make_dtype, _make_empty, _make_array, _make_scalar, _latin1_bytes, _empty_bytes)
_BUILDABLE = (_make_dtype, _make_empty)


# --------------------------------------------------------------------------------------
# the unpickler
# --------------------------------------------------------------------------------------


class _BoundedReader:
    """A file's ``read``/``readline`` that refuse to read past the file's end.

    A pickle declares the length of every string and buffer before it; the standard
    reader asks the file for that many bytes at once, which allocates them first.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._pos = fh.tell()
        self.size = fh.seek(0, io.SEEK_END)
        fh.seek(self._pos)

    def read(self, n: int) -> bytes:
        left = self.size - self._pos
        if n > left:
            if left == 0:
                raise EOFError
            raise Truncated(f"truncated or corrupt patch file: an item at byte {self._pos} "
                             f"needs {n} bytes, {left} left")
        data = self._fh.read(n)
        self._pos += len(data)
        return data

    def readline(self) -> bytes:
        line = self._fh.readline()
        self._pos += len(line)
        return line


class _Dispatch(dict[int, Callable[[Any], None]]):
    def __missing__(self, opcode: int) -> Callable[[Any], None]:
        raise _Refused(f"unknown pickle opcode {bytes([opcode])!r}")


def _refusal(name: str) -> Callable[[Any], None]:
    def refuse(self: Any) -> None:
        raise _Refused(f"pickle opcode {name} is not allowed in a patch file")
    return refuse


def _container(value: Any, kind: type, opcode: str) -> None:
    if type(value) is not kind:
        raise _Refused(f"{opcode} on a {type(value).__name__}, not a {kind.__name__}")


def _keys(keys: Any) -> None:
    for key in keys:
        if type(key) not in (str, int):  # checked before hashing: a deep tuple would crash it
            raise _Refused(f"a {type(key).__name__} as a dict key (only str and int)")


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that builds only plain containers and checked numpy objects.

    Any other global (``os.system``, ``builtins.eval``, a class from some module) raises
    :class:`pickle.UnpicklingError` before anything is called; so do the opcodes that
    create or configure arbitrary objects (INST, OBJ, NEWOBJ, persistent ids, extension
    codes, sets), REDUCE on anything but the checking numpy constructors, BUILD on
    anything but the array or dtype they just made, and non-str/int dict keys.
    """

    dispatch = _Dispatch(pickle._Unpickler.dispatch)
    # set by pickle._Unpickler (its stub does not declare them)
    stack: list[Any]
    metastack: list[list[Any]]
    append: Callable[[Any], None]
    read: Callable[[int], bytes]
    readinto: Callable[[bytearray], int]
    pop_mark: Callable[[], list[Any]]

    def __init__(self, file: BinaryIO) -> None:
        self._reader = _BoundedReader(file)
        super().__init__(self._reader)
        self._buildable: dict[int, Any] = {}

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        raise _Refused(
            f"forbidden global {module}.{name} (only numpy arrays and plain containers are allowed)"
        )

    def _load_reduce(self) -> None:
        args, func = self.stack.pop(), self.stack[-1]
        if not any(func is f for f in _CONSTRUCTORS) or type(args) is not tuple:
            raise _Refused(f"REDUCE on a {type(func).__name__} (only numpy's constructors)")
        result = func(*args)
        if any(func is f for f in _BUILDABLE):
            self._buildable[id(result)] = result  # kept alive, so the id stays its own
        self.stack[-1] = result

    def _load_build(self) -> None:
        state, target = self.stack.pop(), self.stack[-1]
        if self._buildable.pop(id(target), None) is not target:
            raise _Refused(f"BUILD on a {type(target).__name__} (only on an array or dtype "
                           "the file has just made)")
        if isinstance(target, np.dtype):
            _build_dtype(target, state)
        else:
            _build_array(target, state)

    def _load_setitem(self) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        _container(self.stack[-1], dict, "SETITEM")
        _keys((key,))
        self.stack[-1][key] = value

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        _container(self.stack[-1], dict, "SETITEMS")
        _keys(items[::2])
        self.stack[-1].update(zip(items[::2], items[1::2], strict=True))

    def _load_dict(self) -> None:
        items = self.pop_mark()
        _keys(items[::2])
        self.append(dict(zip(items[::2], items[1::2], strict=True)))

    def _load_append(self) -> None:
        value = self.stack.pop()
        _container(self.stack[-1], list, "APPEND")
        self.stack[-1].append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        _container(self.stack[-1], list, "APPENDS")
        self.stack[-1].extend(items)

    def _load_bytearray8(self) -> None:
        (size,) = struct.unpack("<Q", self.read(8))
        if size > self._reader.size:  # never allocate more than the whole file
            raise Truncated(f"truncated or corrupt patch file: a buffer of {size} bytes in a "
                             f"file of {self._reader.size}")
        buffer = bytearray(size)
        self.readinto(buffer)
        self.append(buffer)


for _name in ("INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4",
              "EMPTY_SET", "ADDITEMS", "FROZENSET", "NEXT_BUFFER", "READONLY_BUFFER"):
    RestrictedUnpickler.dispatch[getattr(pickle, _name)[0]] = _refusal(_name)
for _name, _method in (("REDUCE", RestrictedUnpickler._load_reduce),
                       ("BUILD", RestrictedUnpickler._load_build),
                       ("SETITEM", RestrictedUnpickler._load_setitem),
                       ("SETITEMS", RestrictedUnpickler._load_setitems),
                       ("DICT", RestrictedUnpickler._load_dict),
                       ("APPEND", RestrictedUnpickler._load_append),
                       ("APPENDS", RestrictedUnpickler._load_appends),
                       ("BYTEARRAY8", RestrictedUnpickler._load_bytearray8)):
    RestrictedUnpickler.dispatch[getattr(pickle, _name)[0]] = _method


# --------------------------------------------------------------------------------------
# checking what was loaded (and what is about to be written)
# --------------------------------------------------------------------------------------

_SCALARS = (str, int, float, bool, bytes, type(None))


def _label(path: tuple[Any, ...]) -> str:
    return (str(path[0]) + "".join(f"[{k!r}]" for k in path[1:]))[:120]


def check_plain(obj: Any, where: str) -> None:
    """Refuse anything but plain containers, scalars and plain numpy arrays/scalars.

    Walks without recursion; containers nested deeper than :data:`MAX_DEPTH` or
    containing themselves are refused, a container reached twice is checked once.
    """
    checked: set[int] = set()
    on_path: set[int] = set()
    todo: list[tuple[Any, tuple[Any, ...], bool]] = [(obj, (where,), False)]
    while todo:
        item, path, leaving = todo.pop()
        if leaving:
            on_path.discard(id(item))
        elif type(item) in (dict, list, tuple):
            if id(item) in on_path:
                raise _Refused(f"a container holding itself at {_label(path)}")
            if id(item) in checked:
                continue
            if len(path) > MAX_DEPTH:
                raise _Refused(f"containers nested deeper than {MAX_DEPTH} levels in {where}")
            checked.add(id(item))
            on_path.add(id(item))
            todo.append((item, path, True))
            if type(item) is dict:
                _keys(item)
                todo.extend((value, (*path, key), False) for key, value in item.items())
            else:
                todo.extend((value, (*path, k), False) for k, value in enumerate(item))
        elif isinstance(item, np.ndarray):
            fresh = _plain_dtype(item.dtype, _label(path))
            if item.nbytes != math.prod(item.shape) * fresh.itemsize:
                raise _Refused(f"array at {_label(path)} is not the size its shape says")
        elif isinstance(item, np.generic):
            _plain_dtype(item.dtype, _label(path))
        elif type(item) not in _SCALARS:
            raise _Refused(f"unexpected {type(item).__name__} in {_label(path)}")


def safe_loads(data: bytes) -> Any:
    """Unpickle bytes with :class:`RestrictedUnpickler` and check the result is plain.

    Raises
    ------
    pickle.UnpicklingError
        Anything the restricted unpickler or the plain-object check refuses.
    """
    obj = RestrictedUnpickler(io.BytesIO(data)).load()
    check_plain(obj, "object")
    return obj
