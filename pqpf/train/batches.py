"""Batches of patches for training and evaluation: which samples, in which order, assembled
how, and prefetched by threads.

Reproducibility: the order and augmentation ids of epoch ``e`` come from a generator
seeded with ``(seed, e)``, so ``--resume`` from epoch ``e`` continues as an uninterrupted
run would. Under ``torchrun`` every rank takes a disjoint, equally long shard of each
epoch's permutation (no rank waits for another).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf.features import append_time_channels
from pqpf.io.patchfile import PatchSet
from pqpf.quality import good_quality_mask

__all__ = ["BatchSpec", "EpochPlan", "plan_epoch", "plan_evaluation", "BatchSource", "prefetch"]


@dataclass(frozen=True)
class BatchSpec:
    """How a batch is assembled from a :class:`~pqpf.io.patchfile.PatchSet`.

    Attributes
    ----------
    min_quality : float
        Points with poorer MRMS quality (or missing MRMS) are masked.
    time_features : bool
        Append the time-of-day and season channels.
    use_weights : bool
        Pass the sampling weights (divided by ``weight_scale``) rather than ones.
    weight_scale : float
        The mean sampling weight of the training split, so weights average about 1.
    """

    min_quality: float
    time_features: bool
    use_weights: bool
    weight_scale: float


@dataclass(frozen=True)
class EpochPlan:
    """This rank's batches of patch indices, with the patches and augmentation ids in order."""

    batches: list[NDArray[np.int64]]
    order: NDArray[np.int64]
    transforms: NDArray[np.int64]


def plan_epoch(n: int, batch_size: int, rank: int, world: int, seed: int, epoch: int, shuffle: bool) -> EpochPlan:
    """This rank's batches and augmentation ids for one epoch.

    Every rank gets the same number of samples (the permutation is cut to a multiple of
    the world size), so DDP ranks take the same number of steps.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    transforms = rng.integers(0, 8, size=n) if shuffle else np.zeros(n, dtype=np.int64)
    per_rank = n // world if world > 1 else n
    mine = order[rank * per_rank:(rank + 1) * per_rank] if world > 1 else order
    mine_t = transforms[rank * per_rank:(rank + 1) * per_rank] if world > 1 else transforms
    batches = [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]
    return EpochPlan(batches, mine, mine_t)


def plan_evaluation(n: int, batch_size: int, rank: int, world: int) -> EpochPlan:
    """Batches that cover every patch once over all ranks (the remainder of an uneven
    split goes to the last rank), in file order, without augmentation."""
    plan = plan_epoch(n, batch_size, rank, world, 0, 0, shuffle=False)
    if world > 1 and n % world and rank == world - 1:
        tail = np.arange((n // world) * world, n)
        return EpochPlan(plan.batches + [tail], np.concatenate([plan.order, tail]),
                         np.concatenate([plan.transforms, np.zeros(len(tail), np.int64)]))
    return plan


class BatchSource:
    """Assembles torch batches from the in-memory patch arrays.

    A map-style dataset whose items are whole batches, so threads can prepare the next
    batches while the model trains on this one (:func:`prefetch`). A batch is a dict of
    tensors: ``features`` (B, C, P, P, physical units), ``mrms`` (B, P, P, NaN -> 0),
    ``mask`` (B, P, P, usable points), ``ref`` (B, T, P, P), ``weights`` (B,),
    ``transforms`` (B,) augmentation ids and ``index`` (B,) patch indices.
    """

    def __init__(self, data: PatchSet, plan: EpochPlan, spec: BatchSpec) -> None:
        self.data = data
        self.batches = plan.batches
        self.t_of = dict(zip(plan.order.tolist(), plan.transforms.tolist()))
        self.spec = spec

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> dict[str, Any]:
        import torch

        idx = np.sort(self.batches[k])
        d = self.data
        features = d.features[idx]
        if self.spec.time_features:
            features = append_time_channels(features, d.valid_time[idx])
        mrms = d.mrms_mm[idx]
        mask = good_quality_mask(mrms, d.quality[idx], self.spec.min_quality)
        weights = (d.weights[idx] / self.spec.weight_scale if self.spec.use_weights
                   else np.ones(len(idx), np.float32))
        return {
            "features": torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
            "mrms": torch.from_numpy(np.nan_to_num(mrms, nan=0.0).astype(np.float32)),
            "mask": torch.from_numpy(mask),
            "ref": torch.from_numpy(d.ref_prob[idx].astype(np.float32)),
            "weights": torch.from_numpy(weights.astype(np.float32)),
            "transforms": torch.from_numpy(np.array([self.t_of[int(i)] for i in idx], dtype=np.int64)),
            "index": torch.from_numpy(idx.astype(np.int64)),
        }


def prefetch(source: BatchSource, workers: int, pin: bool) -> Iterator[dict[str, Any]]:
    """Batches in order; with ``workers`` > 0, assembled ahead by that many threads.

    The patches live in memory, so assembling a batch is array indexing and copying,
    which numpy and torch do without holding the GIL: threads keep the next batches ready
    while the model trains, with no process start-up and no copy of the patch arrays into
    worker processes (which on macOS, where workers are spawned, would pickle them all
    every epoch). ``pin`` pins the batches' memory for faster copies to a CUDA device.
    """
    if workers <= 0:
        for k in range(len(source)):
            yield source[k]
        return
    depth = 2 * workers

    def make(k: int) -> dict[str, Any]:
        batch = source[k]
        return {key: value.pin_memory() for key, value in batch.items()} if pin else batch

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pqpf-batches") as pool:
        pending = {k: pool.submit(make, k) for k in range(min(depth, len(source)))}
        for k in range(len(source)):
            batch = pending.pop(k).result()
            if k + depth < len(source):
                pending[k + depth] = pool.submit(make, k + depth)
            yield batch
