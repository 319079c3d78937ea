"""Which torch device a job runs on: CUDA > MPS > CPU, or the one asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pqpf.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_CHOICES", "select_device"]

#: What ``--device`` accepts (``cuda:N`` too).
DEVICE_CHOICES = ("auto", "cpu", "mps", "cuda")


def _mps_available() -> bool:
    import torch

    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def select_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """``torch.device``: CUDA > MPS > CPU for "auto", else the named device.

    Raises
    ------
    UsageError
        An unknown name, or a device that is not available here.
    """
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    base, _, index = requested.partition(":")
    if base not in DEVICE_CHOICES[1:] or (index and (base != "cuda" or not index.isdigit())):
        raise UsageError(f"unknown device {requested!r}; use auto, cpu, mps, cuda or cuda:N")
    if base == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {requested!r} requested but CUDA is not available")
    if base == "mps" and not _mps_available():
        raise UsageError("device 'mps' requested but MPS is not available")
    return torch.device(requested)
