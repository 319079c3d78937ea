"""What a model family provides to the generic training loop (:mod:`pqpf.train.loop`).

The loop owns epochs, the optimiser and learning-rate schedule, mixed precision,
``torchrun``, a checkpoint every epoch and the best one, exact resume, early stopping,
the metrics table and file. A family owns what is specific to it: building its network,
starting it (fresh or warm), one training step's loss, the per-epoch evaluation (whose
``"score"`` the loop minimises), and what its checkpoints must hold to rebuild it
(:class:`~pqpf.io.checkpoint.ModelRecord`). The residual U-Net's family is
:class:`pqpf.train.resunet.ResUNetFamily`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pqpf.io.checkpoint import Checkpoint, ModelRecord
from pqpf.io.patchfile import PatchSet
from pqpf.train.batches import BatchSpec
from pqpf.train.distributed import DistributedContext

if TYPE_CHECKING:
    import torch

__all__ = ["StepResult", "Column", "ModelFamily"]


@dataclass(frozen=True)
class StepResult:
    """One training step: the tensor to back-propagate and what to report.

    ``value * weight`` summed over the epoch's steps, divided by the summed ``weight``,
    is the epoch's training score (e.g. the mean RPS over valid points).
    """

    objective: torch.Tensor
    value: float
    weight: float
    samples: int


@dataclass(frozen=True)
class Column:
    """An extra column of the epoch table: header, metrics key (``val_`` + an evaluation
    key) and format."""

    header: str
    key: str
    fmt: str = "+7.3f"


class ModelFamily(Protocol):
    """The interface a model family implements (see the module docstring)."""

    #: Registry and checkpoint kind, e.g. "resunet".
    kind: str
    #: Name of the score the loop minimises, e.g. "rps" (printed as train_rps / val_rps).
    score_name: str
    #: The resolved hyper-parameters as plain types (stored in checkpoints, compared on resume).
    hparams: dict[str, Any]

    def batch_spec(self, data: PatchSet) -> BatchSpec:
        """How batches of ``data`` are assembled."""

    def build(self) -> torch.nn.Module:
        """A new network (the loop seeds torch first)."""

    def start_fresh(self, net: torch.nn.Module) -> None:
        """Initialise a new network that is not resumed or warm-started."""

    def start_warm(self, net: torch.nn.Module, source: Checkpoint, path: Path) -> None:
        """Copy weights (and what goes with them) from another training's checkpoint."""

    def restore(self, checkpoint: Checkpoint) -> None:
        """Adopt the family state stored in a checkpoint being resumed (e.g. normalisation)."""

    def train_step(self, model: Callable[[torch.Tensor], torch.Tensor], batch: dict[str, Any],
                   device: torch.device, autocast: Callable[[], AbstractContextManager[Any]]) -> StepResult:
        """Loss of one batch; ``autocast()`` wraps the forward pass for mixed precision."""

    def after_step(self, net: torch.nn.Module, samples: int) -> None:
        """Called after every optimiser step on ``samples`` samples (all ranks together),
        e.g. to update an exponential moving average of the weights."""

    def after_epoch(self, net: torch.nn.Module, device: torch.device, epoch: int) -> None:
        """Called after every training epoch, before the evaluation and the checkpoint, on
        every rank alike, e.g. to recompute batch-norm statistics."""

    def averaged_weights(self) -> dict[str, Any] | None:
        """Weights saved as the checkpoint's ``ema`` (what inference applies), or None.
        ``restore`` gets them back from ``checkpoint.ema``."""

    def evaluate(self, net: torch.nn.Module, data: PatchSet, device: torch.device, ctx: DistributedContext,
                 batch_size: int) -> dict[str, float]:
        """Scores of ``net`` on ``data`` (all ranks take part); must include ``"score"``."""

    def record(self, init: str, lead_h: int) -> ModelRecord:
        """What a checkpoint of this family holds besides weights and training state."""

    def columns(self) -> Sequence[Column]:
        """Extra columns of the epoch table."""

    def describe_test(self, scores: dict[str, float]) -> str:
        """One log line about the held-out test split's scores."""
