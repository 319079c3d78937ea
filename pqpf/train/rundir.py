"""The folder of one training: checkpoints, resolved hyper-parameters, metrics.

``{trainings_dir}/{kind}_{INIT}_{LEAD}h/`` (:func:`pqpf.layout.training_run_dir`) holds
``epoch_NNN.pt`` after every epoch, ``best.pt`` (the best validation score so far; both
:mod:`pqpf.io.checkpoint` files), ``hparams.yaml`` (the resolved set) and
``metrics.jsonl`` (one JSON line per epoch, then the held-out test scores).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from pqpf.errors import PqpfError
from pqpf.io.atomic import atomic_path, atomic_write_text
from pqpf.io.checkpoint import load_checkpoint
from pqpf.io.jsonio import to_plain

__all__ = ["RunDir"]

logger = logging.getLogger(__name__)


class RunDir:
    """The files of one training run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    def epoch(self, epoch: int) -> Path:
        return self.path / f"epoch_{epoch:03d}.pt"

    def latest_epoch(self) -> Path | None:
        """The newest ``epoch_NNN.pt``, or None."""
        found = [p for p in self.path.glob("epoch_*.pt") if p.stem[len("epoch_"):].isdigit()]
        return max(found, key=lambda p: int(p.stem[len("epoch_"):])) if found else None

    def start(self, hparams: dict[str, Any], fresh: bool) -> None:
        """Create the folder and write ``hparams.yaml``; a fresh start deletes the previous
        run's metrics and checkpoints."""
        import yaml

        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "hparams.yaml", yaml.safe_dump(to_plain(hparams), sort_keys=False))
        if fresh:
            self.metrics.unlink(missing_ok=True)
            self.best.unlink(missing_ok=True)
            for old in self.path.glob("epoch_*.pt"):
                old.unlink()

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
