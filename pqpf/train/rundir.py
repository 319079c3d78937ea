"""The folder of one training: checkpoints, resolved hyper-parameters, metrics.

``{trainings_dir}/{kind}_{INIT}_{LEAD}h/`` (:func:`pqpf.layout.training_run_dir`) holds
``epoch_NNN.pt`` after every epoch, ``best.pt`` (the best validation score so far; both
:mod:`pqpf.io.checkpoint` files), ``hparams.yaml`` (the resolved set) and
``metrics.jsonl`` (one JSON line per epoch, then the held-out test scores).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from pqpf.errors import PqpfError
from pqpf.io.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from pqpf.io.checkpoint import load_checkpoint
from pqpf.io.jsonio import to_plain

__all__ = ["RunDir", "RunLock"]

logger = logging.getLogger(__name__)


class RunLock:
    """An exclusive ``flock`` on ``.{run folder name}.lock`` beside the run folder.

    Two trainings of the same kind, INIT and LEAD would append every epoch twice to one
    ``metrics.jsonl`` and could register each other's ``best.pt``. The lock lives beside
    the folder (so ``--overwrite`` cannot delete it) and the kernel drops it when the
    process dies, so a killed run never leaves it held. The file names the holder.
    """

    def __init__(self, run: Path) -> None:
        import fcntl

        self.path = run.parent / f".{run.name}.lock"
        run.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            raise PqpfError(f"{run} is in use by another training ({holder}); wait for it to finish or stop it "
                            "(then --resume)") from None
        self._fh.seek(0)
        self._fh.truncate()
        started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}\n")
        self._fh.flush()
        # with the run held, what a killed training of it left (half checkpoints) can go
        removed = remove_stale_temporaries(run)
        if removed:
            logger.info("removed %d temporaries of killed runs from %s", removed, run)

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        if not self._fh.closed:
            self._fh.close()


class RunDir:
    """The files of one training run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def lock(self) -> RunLock:
        """Hold this run exclusively until :meth:`RunLock.release` (or process exit).

        Raises
        ------
        PqpfError
            Another live process holds it; the message names that process.
        """
        return RunLock(self.path)

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def crossfit(self) -> Path:
        """The fold trainings of a cross-fitted calibration (:mod:`pqpf.train.crossfit`)."""
        return self.path / "crossfit"

    def epoch(self, epoch: int) -> Path:
        return self.path / f"epoch_{epoch:03d}.pt"

    def latest_epoch(self) -> Path | None:
        """The newest ``epoch_NNN.pt``, or None."""
        found = [p for p in self.path.glob("epoch_*.pt") if p.stem[len("epoch_"):].isdigit()]
        return max(found, key=lambda p: int(p.stem[len("epoch_"):])) if found else None

    def start(self, hparams: dict[str, Any], fresh: bool) -> None:
        """Create the folder and write ``hparams.yaml``; a fresh start deletes the previous
        run's metrics and checkpoints (its cross-fit fold trainings too)."""
        import yaml

        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "hparams.yaml", yaml.safe_dump(to_plain(hparams), sort_keys=False))
        if fresh:
            self.metrics.unlink(missing_ok=True)
            self.best.unlink(missing_ok=True)
            for old in self.path.glob("epoch_*.pt"):
                old.unlink()
            shutil.rmtree(self.crossfit, ignore_errors=True)

    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.metrics, "a") as fh:
            fh.write(json.dumps(to_plain(row)) + "\n")

    def repair_best(self, best_epoch: int) -> None:
        """Make ``best.pt`` hold epoch ``best_epoch`` (a run killed between its two saves by
        an older version could leave it behind), from that epoch's own checkpoint."""
        if best_epoch < 1:
            return
        if self.best.is_file():
            try:
                state = load_checkpoint(self.best).training
                if state is not None and state.epoch == best_epoch:
                    return
            except PqpfError:
                pass
        source = self.epoch(best_epoch)
        if not source.is_file():
            raise PqpfError(f"--resume: {self.best} does not hold the best epoch {best_epoch} and {source} is "
                            "gone; start again with --overwrite")
        logger.warning("%s did not hold the best epoch %d; restored it from %s", self.best, best_epoch, source)
        with atomic_path(self.best) as tmp:
            shutil.copyfile(source, tmp)
