"""Learning-rate schedules by name: the one registry of ``lr_schedule`` choices.

Importable without torch (the hyper-parameter loader validates names against
:data:`SCHEDULES`); torch is imported when a schedule is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["SCHEDULES", "make_schedule", "steps_on_score"]


def _plateau(optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    """Halve the learning rate after 2 epochs without a better validation score."""
    import torch

    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)


def _cosine(optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    """Cosine decay over the configured number of epochs (not ``--max-epochs``: a run
    stopped early and resumed continues on the same curve)."""
    import torch

    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)


#: name -> ``(optimizer, configured epochs) -> scheduler``.
SCHEDULES: dict[str, Callable[[Any, int], Any]] = {"plateau": _plateau, "cosine": _cosine}


def make_schedule(name: str, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    """The learning-rate scheduler ``name`` (a key of :data:`SCHEDULES`)."""
    try:
        factory = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown lr_schedule {name!r}; valid names: {', '.join(sorted(SCHEDULES))}") from None
    return factory(optimizer, epochs)


def steps_on_score(scheduler: Any) -> bool:
    """Whether the scheduler's ``step`` takes the validation score (plateau) or nothing."""
    import torch

    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
