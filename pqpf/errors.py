"""Exception hierarchy.

Every error the pipeline raises on purpose derives from :class:`PqpfError`; the
command-line wrapper prints its message as one line and exits non-zero. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "PqpfError",
    "UsageError",
    "ConfigError",
    "InputFileError",
    "GridMismatchError",
    "MissingDependencyError",
    "RemoteError",
]


class PqpfError(Exception):
    """Base class of every error pqpf raises deliberately."""


class UsageError(PqpfError):
    """A command-line argument is invalid (exit status 2)."""


class ConfigError(PqpfError):
    """A configuration file is missing, unreadable, or has a bad/missing/unknown key."""


class InputFileError(PqpfError):
    """An input file is missing, truncated, corrupt or holds the wrong content.

    The message always starts with the path so the user sees which file to look at.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class OutputWriteError(PqpfError):
    """An output could not be written (full disk, no permission, read-only file system).

    The message starts with the path; ranges stop at the first one (a full disk does not
    heal by itself) after listing what they wrote.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot write ({reason})")


class GridMismatchError(PqpfError):
    """Two grids that must be identical are not (e.g. cached remap weights)."""


class MissingDependencyError(PqpfError):
    """An optional library or external tool needed for this operation is absent."""


class RemoteError(PqpfError):
    """A transfer from the remote machine failed."""
