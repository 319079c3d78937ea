"""Exponential moving average of network weights (the weights diffusion samples with, and the
U-Net's when its set keeps one).

After each optimiser step on a batch of ``B`` samples, every floating-point parameter
and buffer ``p`` of the model updates its average ``a``:

    a <- beta a + (1 - beta) p,   beta = 0.5 ** (B / halflife_samples),

so the average forgets half of its past every ``halflife_samples`` training samples
whatever the batch size (Karras et al. 2022 and StormCast give the half-life in
thousands of images, ``ema_halflife_kimg``). With ``rampup`` the half-life is at most
``rampup * samples_seen`` early on, so the first, random weights fade quickly. Integer
buffers (counters) are copied, not averaged. The state is a plain dict of tensors plus
two numbers, loadable with ``torch.load(..., weights_only=True)``.

References
----------
Karras, T., M. Aittala, T. Aila and S. Laine (2022). Elucidating the design space of
diffusion-based generative models. NeurIPS 35 (Appendix F.3).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["EmaWeights"]


class EmaWeights:
    """Moving average of a model's weights (module docstring).

    Parameters
    ----------
    model : nn.Module
        The trained model; its current weights initialise the average.
    halflife_samples : float
        Half-life in training samples, > 0.
    rampup : float, optional
        Cap the half-life at ``rampup * samples_seen`` (e.g. 0.05); None: no ramp-up.
    """

    def __init__(self, model: nn.Module, halflife_samples: float, rampup: float | None = None) -> None:
        if not halflife_samples > 0 or (rampup is not None and not rampup > 0):
            raise ValueError(f"halflife_samples and rampup must be positive, got {halflife_samples}, {rampup}")
        self.halflife_samples = float(halflife_samples)
        self.rampup = rampup
        self.samples_seen = 0
        self.average = {name: t.detach().clone() for name, t in model.state_dict().items()}

    def beta(self, batch_size: int) -> float:
        """Decay for the next update of ``batch_size`` samples (after counting them)."""
        halflife = self.halflife_samples
        if self.rampup is not None:
            halflife = min(halflife, self.rampup * (self.samples_seen + batch_size))
        return 0.5 ** (batch_size / max(halflife, 1e-8))

    @torch.no_grad()
    def update(self, model: nn.Module, batch_size: int) -> None:
        """Fold in the model's current weights after a step on ``batch_size`` samples."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        beta = self.beta(batch_size)
        for name, value in model.state_dict().items():
            avg = self.average[name]
            if avg.is_floating_point():
                avg.lerp_(value.detach().to(avg.dtype), 1.0 - beta)
            else:
                avg.copy_(value)
        self.samples_seen += batch_size

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (same architecture)."""
        model.load_state_dict(self.average)

    def state_dict(self) -> dict[str, Any]:
        """The average, the half-life settings and the sample count (for checkpoints)."""
        return {"average": dict(self.average), "halflife_samples": self.halflife_samples,
                "rampup": self.rampup, "samples_seen": self.samples_seen}

    @classmethod
    def restored(cls, model: nn.Module, average: dict[str, Any], halflife_samples: float,
                 rampup: float | None, samples_seen: int) -> EmaWeights:
        """The average a checkpoint kept (``average`` and its sample count) for ``model``."""
        ema = cls(model, halflife_samples, rampup)
        ema.load_state_dict({"average": average, "halflife_samples": halflife_samples, "rampup": rampup,
                             "samples_seen": samples_seen})
        return ema

    def applied_copy(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` holding the averaged weights (``model`` is left as it is)."""
        averaged = copy.deepcopy(model)
        self.copy_to(averaged)
        return averaged

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (exact resume)."""
        self.average = {name: t.detach().clone() for name, t in state["average"].items()}
        self.halflife_samples = float(state["halflife_samples"])
        self.rampup = state["rampup"]
        self.samples_seen = int(state["samples_seen"])
