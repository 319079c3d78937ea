"""Atomic file creation: write to a temporary name in the target directory, then rename.

A job killed mid-write leaves at most a hidden ``.NAME.tmp-*`` file, never a half-written
output under the real name; reruns therefore trust that an existing output is complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from pqpf.errors import OutputWriteError, PqpfError

__all__ = ["atomic_path", "atomic_directory", "atomic_write_bytes", "atomic_write_text", "remove_stale_temporaries",
           "owner_tag", "SPOOL_PREFIX"]

_TMP_MARK = ".tmp-"
#: Prefix of the spool folders of patch extraction (:mod:`pqpf.stages.patches`).
SPOOL_PREFIX = ".spool-"
#: Errors that are the disk's or the folder's fault, not the program's.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}
#: Below this much free space a failed write is taken to be a full disk.
_NEARLY_FULL_BYTES = 1 << 20


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
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(final, f"cannot create its folder: {exc.strerror or exc}") from None
    tmp = final.parent / f".{final.name}{_TMP_MARK}{owner_tag()}-{uuid.uuid4().hex[:8]}"
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
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        reason = _write_failure(exc, final.parent)
        if reason is None:
            raise
        raise OutputWriteError(final, reason) from None


def _write_failure(exc: BaseException, folder: Path) -> str | None:
    """Why a write failed, in words, when it is the disk's or the folder's fault; None for
    anything else (a programming error keeps its traceback).

    Writers report a full disk in their own ways: OSError ENOSPC from Python, "NetCDF: HDF
    error" from netCDF4, "unexpected pos" from torch.save; so a failed write on a folder
    with (almost) no free space is called what it is.
    """
    if isinstance(exc, PqpfError) or not isinstance(exc, (OSError, RuntimeError)):
        return None
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return f"{os.strerror(exc.errno or 0)}"
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < _NEARLY_FULL_BYTES:
        return f"no space left on device: {free // 1024} kB free in {folder}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return None


def atomic_write_bytes(final: str | Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(final: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary directory path beside ``final``; rename it to ``final`` on success.

    An existing ``final`` is renamed aside first and removed after the rename, so a
    reader sees the old store or the new one, never a mixture (and, for the instant
    between the two renames, no store). On error the temporary directory is removed; a
    killed writer's is found by :func:`remove_stale_temporaries` (its name holds
    :func:`owner_tag`).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{owner_tag()}-{uuid.uuid4().hex[:8]}"
    tmp = final.parent / f".{final.name}{_TMP_MARK}{tag}"
    try:
        yield tmp
        if not tmp.is_dir():
            raise FileNotFoundError(f"{tmp}: the writer produced no directory")
        for sub, _, files in os.walk(tmp):
            for name in files:
                fd = os.open(Path(sub) / name, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        old = final.parent / f".{final.name}.old-{tag}"
        moved = final.exists() or final.is_symlink()
        if moved:
            os.replace(final, old)
        os.replace(tmp, final)
        if moved and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        elif moved:
            old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def owner_tag() -> str:
    """``HOST-PID`` of this process, put in temporary names so that a later run on the same
    host can tell a dead writer's leftovers from a live writer's files."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _owner_state(tag: str) -> str:
    """``"dead"`` or ``"alive"`` when ``...HOST-PID-RANDOM`` names a process of this host
    (this process counts as alive), else ``"unknown"``.

    A temporary of another host (a shared file system on an HPC machine) is never judged
    by its pid: only by its age.
    """
    parts = tag.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or parts[0] != socket.gethostname():
        return "unknown"
    pid = int(parts[1])
    return "alive" if pid == os.getpid() or _pid_alive(pid) else "dead"


def remove_stale_temporaries(directory: str | Path, min_age_s: float = 3600.0) -> int:
    """Delete what killed writers left in ``directory``; return the count.

    Matches the hidden ``.NAME.tmp-HOST-PID-RANDOM`` files of :func:`atomic_path` and the
    ``.spool-HOST-PID-RANDOM`` folders of patch extraction. One is stale when its writer
    (same host, that pid) is no longer running, or, when its writer cannot be checked
    (another host, an unrecognised name), when it is older than ``min_age_s``. A running
    writer's temporary on this host is kept however long it takes.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    now = time.time()
    removed = 0
    for path in [*directory.glob(f".*{_TMP_MARK}*"), *directory.glob(f"{SPOOL_PREFIX}*")]:
        tag = path.name.split(_TMP_MARK, 1)[1] if _TMP_MARK in path.name else path.name[len(SPOOL_PREFIX):]
        with contextlib.suppress(OSError):
            state = _owner_state(tag)
            if state == "dead" or (state == "unknown" and now - path.stat().st_mtime >= min_age_s):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed += 1
    return removed
