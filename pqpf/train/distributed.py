"""Training in several processes under ``torchrun``: ranks, reductions, barriers.

A single-process run is rank 0 of 1 and every method is then a no-op. Under
``torchrun`` (WORLD_SIZE > 1) the process group is joined with gloo on CPU and nccl on
CUDA; gradients are averaged by DistributedDataParallel, evaluation sums are
all-reduced, and rank 0 alone writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["DistributedContext"]


@dataclass
class DistributedContext:
    """Rank information; a single-process run is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device_kind: str) -> DistributedContext:
        """Join the process group if launched by ``torchrun`` (WORLD_SIZE > 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        backend = "nccl" if device_kind == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), backend)

    def all_reduce_sum(self, values: NDArray[Any]) -> NDArray[np.float64]:
        """Sum an array over ranks (identity when not distributed)."""
        if self.world_size == 1:
            return np.asarray(values, dtype=np.float64)
        import torch
        import torch.distributed as dist

        tensor = torch.as_tensor(np.asarray(values, dtype=np.float64))
        if self.backend == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def broadcast_buffers(self, module: Any) -> None:
        """Give every rank rank 0's batch-norm statistics in ``module`` (identity when not distributed).

        Each rank updates batch-norm running statistics from its own batch, so after a
        step the ranks' buffers differ (DDP only copies rank 0's at the next forward);
        called after every step, validation, the weight average and a resume see the same
        model on every rank, the one rank 0 saves. One coalesced broadcast.
        """
        if self.world_size == 1:
            return
        import torch
        import torch.distributed as dist

        norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
        buffers = [b for m in module.modules() if isinstance(m, norms) for b in m.buffers()]
        if not buffers:  # nothing a rank updates on its own (e.g. constant buffers only)
            return
        with torch.no_grad():
            flat = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in buffers])
            dist.broadcast(flat, src=0)
            offset = 0
            for b in buffers:
                b.copy_(flat[offset:offset + b.numel()].view(b.shape).to(b.dtype))
                offset += b.numel()

    def all_gather_strings(self, text: str) -> list[str]:
        """Gather one string from every rank (rank order)."""
        if self.world_size == 1:
            return [text]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, text)
        return [str(o) for o in out]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Leave the process group (no-op when not distributed).

        DistributedDataParallel's reducer sits in reference cycles with the module's
        autograd hooks, so a finished training's wrapper is freed only by the garbage
        collector, possibly at interpreter exit, after the process group and while gloo's
        threads are torn down (seen as a rare SIGABRT, "terminate called without an active
        exception", of one rank at exit). Collect first, then destroy the group.
        """
        if self.world_size > 1:
            import gc

            import torch.distributed as dist

            gc.collect()
            if dist.is_initialized():
                dist.destroy_process_group()
