"""What every stage shares: the rule that finished outputs are kept, the clean-up of what
killed runs left, and many inits in one process."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh
from pqpf.errors import InputFileError
from pqpf.io.atomic import remove_stale_temporaries
from pqpf.layout import registry_path
from pqpf.progress import Progress

__all__ = ["RangeReport", "clean_temporaries", "kept", "run_range", "shared_input"]

logger = logging.getLogger(__name__)


def kept(*outputs: Path, overwrite: bool) -> bool:
    """Whether a stage's outputs are all there and are to be kept (not ``overwrite``).

    Reruns skip finished outputs (SPEC section 7: outputs are written atomically, so an
    existing file is complete), so a Slurm array can be resubmitted safely. Logs the
    skip once, naming the first output.
    """
    # a file or a directory (a zarr store): both are written atomically, so present = complete
    if overwrite or not outputs or not all(p.is_file() or p.is_dir() for p in outputs):
        return False
    logger.info("%s exists; use --overwrite to redo it", outputs[0])
    return True


def clean_temporaries(*folders: Path) -> None:
    """Remove the temporaries killed writers left in ``folders`` (their own host's at once,
    others' after an hour: :func:`pqpf.io.atomic.remove_stale_temporaries`), logging a count."""
    for folder in dict.fromkeys(folders):  # each once, in order
        removed = remove_stale_temporaries(folder)
        if removed:
            logger.info("removed %d temporaries of killed runs from %s", removed, folder)


@dataclass
class RangeReport:
    """What a stage did over many inits (``--until``), init by init."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, prog: str) -> str:
        """The one line a script prints at the end of a range."""
        failed = "; ".join(f"{i}: {why}" for i, why in self.failed)
        return (f"{prog}: {len(self.written)} written, {len(self.skipped)} skipped (already there), "
                f"{len(self.failed)} failed{f' ({failed})' if failed else ''}")


def shared_input(config: Config, exc: InputFileError) -> bool:
    """Whether the input that failed is one every init of a range reads (the terrain file,
    the model registry or a checkpoint), decided by its path alone, whatever is loaded."""
    path = exc.path.resolve()
    shared = {config.paths.terrain_file.resolve(), registry_path(config).resolve()}
    return path in shared or path.suffix == ".pt"


def run_range(config: Config, inits: list[dt.datetime], run_one: Callable[[dt.datetime], tuple[Path, bool]]
              ) -> RangeReport:
    """Run ``run_one(init) -> (output, skipped)`` for every init in one process.

    An init whose own input is missing or damaged (its GRAF file, a kept output of its
    own) is counted as failed and the rest run; an input every init shares
    (:func:`shared_input`) or any other error (a full disk) stops the range.
    """
    report = RangeReport()
    progress = Progress(len(inits), "inits", logger)
    for init in inits:
        try:
            output, skipped = run_one(init)
        except InputFileError as exc:
            if shared_input(config, exc):
                raise
            logger.warning("%s failed: %s", format_yyyymmddhh(init), exc)
            report.failed.append((format_yyyymmddhh(init), str(exc)))
        else:
            (report.skipped if skipped else report.written).append(output)
        progress.step()
    return report
