"""Normalisation layers of the networks by name: the one registry of ``norm`` choices.

Importable without torch (the hyper-parameter loader validates names against
:data:`NORMS`); torch is imported when a layer is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["NORMS", "WINDOW_INDEPENDENT_NORMS", "make_norm"]


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
