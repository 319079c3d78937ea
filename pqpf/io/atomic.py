"""Atomic file creation: write to a temporary name in the target directory, then rename.

A job killed mid-write leaves at most a hidden ``.NAME.tmp-*`` file, never a half-written
output under the real name; reruns therefore trust that an existing output is complete.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "remove_stale_temporaries"]

_TMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    The parent directory is created if needed. If the body raises (or the process is
    interrupted with an exception), the temporary file is removed and ``final`` is left
    untouched.

    Examples
    --------
    >>> with atomic_path(out) as tmp:        # doctest: +SKIP
    ...     dataset.to_netcdf(tmp)
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: the writer produced no file")
        # Flush the data to disk before the rename, so that after a crash of the node
        # the name never points at an empty or partial file.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(final: str | Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(final: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_stale_temporaries(directory: str | Path, min_age_s: float = 3600.0) -> int:
    """Delete temporaries older than ``min_age_s`` left by killed writers; return the count."""
    import time

    directory = Path(directory)
    if not directory.is_dir():
        return 0
    now = time.time()
    removed = 0
    for path in directory.glob(f".*{_TMP_MARK}*"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime >= min_age_s:
                path.unlink()
                removed += 1
    return removed
