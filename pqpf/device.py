"""Which torch device a job runs on: CUDA > MPS > CPU, or the one asked for."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from pqpf.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_CHOICES", "select_device", "available_cpus", "set_threads"]

logger = logging.getLogger(__name__)

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


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: what Slurm or taskset granted)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - macOS has no affinity masks
        return max(os.cpu_count() or 1, 1)


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads; ``0`` means automatic. Return the number set.

    Automatic: the available CPUs shared among the processes ``torchrun`` started on this
    node (``LOCAL_WORLD_SIZE``), at least 1. Two torch jobs on 2 cores that each take
    both run about ten times slower than with one thread each, so on a shared machine
    pass ``--threads`` (or ``[compute] threads``) explicitly.
    """
    import torch

    if threads < 0:
        raise UsageError(f"threads must be >= 0 (0: automatic), got {threads}")
    if threads == 0:
        threads = max(available_cpus() // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1), 1)
    torch.set_num_threads(threads)
    logger.debug("torch uses %d threads", threads)
    return threads
