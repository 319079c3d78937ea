"""What every stage shares: the rule that finished outputs are kept, and the clean-up of
what killed runs left."""

from __future__ import annotations

import logging
from pathlib import Path

from pqpf.io.atomic import remove_stale_temporaries

__all__ = ["kept", "clean_temporaries"]

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
