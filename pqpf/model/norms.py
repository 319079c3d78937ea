"""Normalisation layers of the networks by name: the one registry of ``norm`` choices.

Importable without torch (the hyper-parameter loader validates names against
:data:`NORMS`); torch is imported when a layer is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["NORMS", "WINDOW_INDEPENDENT_NORMS", "make_norm", "recompute_batchnorm_statistics"]


def _batch(channels: int) -> nn.Module:
    from torch import nn

    return nn.BatchNorm2d(channels)


def _group(channels: int) -> nn.Module:
    """GroupNorm with up to 8 groups of at least 2 channels (Wu and He 2018)."""
    from torch import nn

    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0 and (channels // g >= 2 or g == 1))
    return nn.GroupNorm(groups, channels)


def _instance(channels: int) -> nn.Module:
    from torch import nn

    return nn.InstanceNorm2d(channels, affine=True)


#: name -> ``channels -> layer``.
NORMS: dict[str, Callable[[int], nn.Module]] = {"batch": _batch, "group": _group, "instance": _instance}

#: Norms that, in eval mode, are a fixed per-channel affine map (batch norm uses its running
#: statistics): a network built with one gives at a point the same output whatever window
#: it is run on, up to the window rim, so full-field inference may use windows far larger
#: than the training patch. Group and instance norm take their statistics from the window.
WINDOW_INDEPENDENT_NORMS = frozenset({"batch"})


def make_norm(name: str, channels: int) -> nn.Module:
    """The normalisation layer ``name`` for ``channels`` channels.

    Raises
    ------
    ValueError
        For a name that is not in :data:`NORMS` (the message lists the valid ones).
    """
    try:
        factory = NORMS[name]
    except KeyError:
        raise ValueError(f"unknown norm {name!r}; valid names: {', '.join(sorted(NORMS))}") from None
    return factory(channels)


def recompute_batchnorm_statistics(net: nn.Module, inputs: Iterable[torch.Tensor]) -> int:
    """Replace the running statistics of ``net``'s batch norms by their plain average over
    ``inputs`` (batches run through ``net`` without gradients), and return the number of
    batches used (0: ``net`` has no batch norm and is left as it was).

    During training the running statistics are an exponential average with momentum 0.1,
    so about the last ten batches of an epoch: on wet-favouring batches of few, very
    different patches they swing from epoch to epoch, and so did the validation score
    (docs/calibration.md, section 11). Only the batch norms run in training mode here;
    every other layer (dropout) runs in eval mode. Modes and momenta are restored.
    """
    import torch
    from torch import nn

    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    modes = {m: m.training for m in net.modules()}
    momenta = [m.momentum for m in norms]
    net.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts the same
        m.train()
    n = 0
    try:
        with torch.no_grad():
            for x in inputs:
                net(x)
                n += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for module, mode in modes.items():
            module.train(mode)
    if n == 0:
        raise ValueError("no batches to recompute the batch-norm statistics on")
    return n
