"""Training of the per-lead residual U-Net: data, loop, checkpoints, registry, DDP.

One training = one (INIT, LEAD): the patch files of ``save_patched_graf_mrms.py``, the
named hyper-parameter set, and a run directory ``{trainings_dir}/resunet_{INIT}_{LEAD}h``
holding

* ``epoch_NNN.pt`` after every epoch and ``best.pt`` (lowest validation score), each a
  plain dict loadable with ``torch.load(..., weights_only=True)``: ``net`` (state_dict),
  ``optimizer``, ``scheduler``, ``scaler``, ``epoch``, ``best_score``, ``best_epoch``,
  ``bad_epochs`` (early-stopping state), ``normalisation``, ``hparams``, ``channel_names``,
  ``feature_schema_version``, ``bin_edges_mm``, ``thresholds_mm``, ``patch_px``, the
  split's inits, ``world_size`` and the pqpf version;
* ``hparams.yaml`` (the resolved set) and ``metrics.jsonl`` (one JSON line per epoch,
  then the held-out test scores).

Reproducibility: the shuffling and augmentation of epoch ``e`` come from a generator
seeded with ``(seed, e)`` and the global torch seed is reset to ``(seed, e)`` at the start
of each epoch, so ``--resume`` from the checkpoint of epoch ``e`` continues exactly as an
uninterrupted run would (same world size). Under ``torchrun`` every rank takes a disjoint
shard of each epoch's permutation (equal lengths so no rank waits), gradients are averaged
by DistributedDataParallel (gloo on CPU, nccl on CUDA), validation sums are all-reduced,
and rank 0 alone writes files.

The registry (``{trainings_dir}/registry.json``) maps each lead to the checkpoint
inference uses; it is updated under a file lock when a training finishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf import __version__
from pqpf.bins import reaches
from pqpf.config import Config, HParams
from pqpf.dates import format_yyyymmddhh
from pqpf.errors import ConfigError, InputFileError, PqpfError
from pqpf.io.atomic import atomic_path, atomic_write_text
from pqpf.layout import patch_file_path, registry_path, training_run_dir
from pqpf.verification import good_quality_mask

__all__ = [
    "PatchSet",
    "load_patch_set",
    "select_device",
    "DistributedContext",
    "TrainResult",
    "train",
    "load_checkpoint",
    "save_checkpoint",
    "read_registry",
    "update_registry",
    "registry_checkpoint",
    "nearest_registered_lead",
    "evaluate",
]

logger = logging.getLogger(__name__)

#: Thresholds (mm) whose Brier skill is printed every epoch.
DIAGNOSTIC_THRESHOLDS_MM = (1.0, 5.0)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


@dataclass
class PatchSet:
    """The patches of one split, in memory.

    Attributes
    ----------
    features : float32 (N, C, P, P)   physical units, not normalised
    mrms_mm : float32 (N, P, P)       NaN where missing
    quality : float32 (N, P, P)       0..1
    ref_prob : float16 (N, T, P, P)   smoothed-GRAF reference P(obs >= t)
    weights : float32 (N,)            sampling weights 1/pi
    valid_time : int64 (N,)           seconds since 1970
    """

    features: NDArray[np.float32]
    mrms_mm: NDArray[np.float32]
    quality: NDArray[np.float32]
    ref_prob: NDArray[np.float16]
    weights: NDArray[np.float32]
    valid_time: NDArray[np.int64]
    channel_names: tuple[str, ...]
    thresholds_mm: tuple[float, ...]
    header: dict[str, Any]

    def __len__(self) -> int:
        return int(self.features.shape[0])


def load_patch_set(path: Path) -> PatchSet:
    """Load one patch file through the restricted unpickler and check its schema."""
    from pqpf.features import check_feature_schema
    from pqpf.io.patchfile import load_patch_file

    data = load_patch_file(path)
    check_feature_schema(data.get("feature_schema_version"), path)
    n = int(data.get("n_patches", 0))
    p = int(data["patch_px"])
    c = len(data["channel_names"])
    t = len(data["thresholds_mm"])
    empty = {
        "features": np.zeros((0, c, p, p), np.float32), "mrms": np.zeros((0, p, p), np.float32),
        "quality": np.zeros((0, p, p), np.float32), "ref_prob": np.zeros((0, t, p, p), np.float16),
        "weights": np.zeros(0, np.float32), "valid_time": np.zeros(0, np.int64),
    }
    get = (lambda k: data[k]) if n else (lambda k: empty[k])
    return PatchSet(
        features=get("features"), mrms_mm=get("mrms"), quality=get("quality"),
        ref_prob=get("ref_prob"), weights=get("weights"), valid_time=get("valid_time"),
        channel_names=tuple(data["channel_names"]), thresholds_mm=tuple(data["thresholds_mm"]),
        header={k: v for k, v in data.items() if not isinstance(v, np.ndarray)},
    )


# --------------------------------------------------------------------------------------
# devices and distribution
# --------------------------------------------------------------------------------------


def select_device(requested: str = "auto", local_rank: int = 0) -> Any:
    """``torch.device``: CUDA > MPS > CPU for "auto", else the named device.

    Raises
    ------
    PqpfError
        If the requested device is not available.
    """
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise PqpfError(f"device {requested!r} requested but CUDA is not available")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise PqpfError("device 'mps' requested but MPS is not available")
    if requested not in ("cpu", "mps") and not requested.startswith("cuda"):
        raise PqpfError(f"unknown device {requested!r}; use auto, cpu, mps, cuda or cuda:N")
    return torch.device(requested)


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
    def from_environment(cls, device_kind: str) -> "DistributedContext":
        """Join the process group if launched by ``torchrun`` (WORLD_SIZE > 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        backend = "nccl" if device_kind == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), backend)

    def all_reduce_sum(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Sum an array over ranks (identity when not distributed)."""
        if self.world_size == 1:
            return values
        import torch
        import torch.distributed as dist

        tensor = torch.as_tensor(values, dtype=torch.float64)
        if self.backend == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

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
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


# --------------------------------------------------------------------------------------
# checkpoints and registry
# --------------------------------------------------------------------------------------


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code can run).

    Raises
    ------
    InputFileError
        Missing or unreadable checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for bad files
        one_line = " ".join(str(exc).split())[:300]
        raise InputFileError(path, f"cannot load checkpoint ({type(exc).__name__}: {one_line})") from None
    if not isinstance(state, dict) or "net" not in state:
        raise InputFileError(path, "not a pqpf checkpoint (no 'net' entry)")
    return state


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a+") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        yield


def read_registry(config: Config) -> dict[str, Any]:
    """The registry as a dict ``{lead (str): entry}``; empty if there is none yet."""
    path = registry_path(config)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(path, f"unreadable registry ({exc})") from None
    if not isinstance(data, dict):
        raise InputFileError(path, "registry must be a JSON object keyed by lead")
    return data


def update_registry(config: Config, lead_h: int, entry: dict[str, Any]) -> Path:
    """Record ``entry`` as the model of ``lead_h`` (locked read-modify-write, atomic)."""
    path = registry_path(config)
    with _locked(path):
        data = read_registry(config)
        data[str(int(lead_h))] = entry
        ordered = {k: data[k] for k in sorted(data, key=lambda k: int(k))}
        atomic_write_text(path, json.dumps(ordered, indent=2) + "\n")
    return path


def _unregister_run(config: Config, lead_h: int, run_dir: Path) -> None:
    """Remove the registry entry of ``lead_h`` if it points into ``run_dir`` (about to be
    deleted), so inference never follows it to a checkpoint that is gone."""
    path = registry_path(config)
    if not path.is_file():
        return
    with _locked(path):
        data = read_registry(config)
        entry = data.get(str(int(lead_h)))
        if isinstance(entry, dict) and _resolve(config, str(entry.get("checkpoint", ""))).parent == run_dir:
            del data[str(int(lead_h))]
            atomic_write_text(path, json.dumps(data, indent=2) + "\n")
            logger.warning("removed lead %d h from the registry until this training finishes", lead_h)


def _resolve(config: Config, checkpoint: str) -> Path:
    path = Path(checkpoint)
    return path if path.is_absolute() else config.paths.trainings_dir / path


def registry_checkpoint(config: Config, lead_h: int) -> Path | None:
    """The checkpoint the registry names for ``lead_h``, or None."""
    entry = read_registry(config).get(str(int(lead_h)))
    if not entry:
        return None
    if not isinstance(entry, dict) or not entry.get("checkpoint"):
        raise InputFileError(registry_path(config), f"the entry of lead {lead_h} h has no 'checkpoint'")
    return _resolve(config, entry["checkpoint"])


def nearest_registered_lead(config: Config, lead_h: int, exclude_self: bool = True) -> int | None:
    """The registered lead closest to ``lead_h`` (ties: the shorter lead)."""
    leads = [int(k) for k in read_registry(config)]
    if exclude_self:
        leads = [x for x in leads if x != lead_h]
    if not leads:
        return None
    return min(leads, key=lambda x: (abs(x - lead_h), x))


# --------------------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------------------


def _batches(n: int, batch_size: int, rank: int, world: int, seed: int, epoch: int, shuffle: bool
             ) -> tuple[list[NDArray[np.int64]], NDArray[np.int64], NDArray[np.int64]]:
    """This rank's batches of indices and augmentation ids for one epoch.

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
    return batches, mine, mine_t


class _BatchSource:
    """Assembles torch batches from the in-memory patch arrays.

    Used as a map-style dataset whose items are whole batches, so a torch DataLoader
    with workers can prepare the next batches while the model trains on this one.
    """

    def __init__(self, data: PatchSet, batches: list[NDArray[np.int64]], transforms: NDArray[np.int64],
                 order: NDArray[np.int64], weight_scale: float, use_weights: bool,
                 min_quality: float, time_features: bool) -> None:
        self.data = data
        self.batches = batches
        self.t_of = dict(zip(order.tolist(), transforms.tolist()))
        self.weight_scale = weight_scale
        self.use_weights = use_weights
        self.min_quality = min_quality
        self.time_features = time_features

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> dict[str, Any]:
        import torch

        idx = np.sort(self.batches[k])
        d = self.data
        features = d.features[idx]
        if self.time_features:
            from pqpf.features import append_time_channels

            features = append_time_channels(features, d.valid_time[idx])
        mrms = d.mrms_mm[idx]
        quality = d.quality[idx]
        mask = good_quality_mask(mrms, quality, self.min_quality)
        weights = d.weights[idx] / self.weight_scale if self.use_weights else np.ones(len(idx), np.float32)
        return {
            "features": torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
            "mrms": torch.from_numpy(np.nan_to_num(mrms, nan=0.0).astype(np.float32)),
            "mask": torch.from_numpy(mask),
            "ref": torch.from_numpy(d.ref_prob[idx].astype(np.float32)),
            "weights": torch.from_numpy(weights.astype(np.float32)),
            "transforms": torch.from_numpy(np.array([self.t_of[int(i)] for i in idx], dtype=np.int64)),
            "index": torch.from_numpy(idx.astype(np.int64)),
        }


def _loader(source: _BatchSource, workers: int, pin: bool) -> Iterator[dict[str, Any]]:
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
    from concurrent.futures import ThreadPoolExecutor

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


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------


def evaluate(net: Any, data: PatchSet, normalisation: Any, edges_mm: tuple[float, ...], hp: HParams,
             min_quality: float, device: Any, ctx: DistributedContext,
             thresholds_mm: tuple[float, ...] | None = None) -> dict[str, float]:
    """Weighted RPS and Brier scores (model and smoothed-GRAF reference) on a patch set.

    Weights are the sampling weights (when ``use_sampling_weights``) times the quality
    mask, so the scores estimate those of the full fields. Sums are all-reduced over ranks.
    """
    import torch

    from pqpf.loss import masked_rps_loss
    from pqpf.model import exceedance_probs, probs_from_logits

    thresholds = tuple(thresholds_mm or data.thresholds_mm)
    t_index = [data.thresholds_mm.index(t) for t in thresholds]
    n = len(data)
    batches, order, transforms = _batches(n, hp.batch_size, ctx.rank, ctx.world_size, 0, 0, shuffle=False)
    if ctx.world_size > 1 and n % ctx.world_size:
        # evaluation covers every patch: the remainder goes to the last rank
        tail = np.arange((n // ctx.world_size) * ctx.world_size, n)
        if ctx.rank == ctx.world_size - 1 and len(tail):
            batches.append(tail)
            order = np.concatenate([order, tail])
            transforms = np.concatenate([transforms, np.zeros(len(tail), np.int64)])
    scale = float(np.mean(data.weights)) if len(data) else 1.0
    source = _BatchSource(data, batches, transforms, order, scale, hp.use_sampling_weights, min_quality,
                          hp.time_features)
    sums = np.zeros(2 + 3 * len(thresholds), dtype=np.float64)  # rps*w, w, then per t: bs_m, bs_r, w
    base = np.zeros(len(thresholds), dtype=np.float64)  # weighted event counts
    net.eval()
    with torch.inference_mode():
        for k in range(len(source)):
            b = source[k]
            x = normalisation.apply_torch(b["features"].to(device))
            obs = b["mrms"].to(device)
            mask = b["mask"].to(device)
            w = b["weights"].to(device)
            logits = net(x).float()
            loss, n_valid = masked_rps_loss(logits, obs, mask, edges_mm, scheme=hp.loss, sample_weight=w,
                                            thresholds_mm=data.thresholds_mm)
            pix_w = (mask.float() * w[:, None, None])
            wsum = float(n_valid)
            sums[0] += float(loss) * wsum
            sums[1] += wsum
            probs = probs_from_logits(logits, dim=1)
            exc = exceedance_probs(probs, edges_mm, thresholds, dim=1)
            ref = b["ref"].to(device)[:, t_index]
            for m, t in enumerate(thresholds):
                event = reaches(obs, t).float()
                base[m] += float((event * pix_w).sum())
                sums[2 + 3 * m] += float(((exc[:, m] - event) ** 2 * pix_w).sum())
                sums[3 + 3 * m] += float(((ref[:, m] - event) ** 2 * pix_w).sum())
                sums[4 + 3 * m] += wsum
    sums = ctx.all_reduce_sum(sums)
    base = ctx.all_reduce_sum(base)
    out = {"rps": sums[0] / max(sums[1], 1e-12), "n_patches": float(len(data))}
    for m, t in enumerate(thresholds):
        bs_m = sums[2 + 3 * m] / max(sums[4 + 3 * m], 1e-12)
        bs_r = sums[3 + 3 * m] / max(sums[4 + 3 * m], 1e-12)
        out[f"bs_{t:g}mm"] = bs_m
        out[f"bs_ref_{t:g}mm"] = bs_r
        out[f"bss_{t:g}mm"] = 1.0 - bs_m / bs_r if bs_r > 0 else float("nan")
        out[f"base_rate_{t:g}mm"] = base[m] / max(sums[4 + 3 * m], 1e-12)
    return out


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """Where the training left things and how good the best model is."""

    run_dir: Path
    best_checkpoint: Path
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    test_scores: dict[str, float] = field(default_factory=dict)


def _state_dict(net: Any) -> dict[str, Any]:
    return (net.module if hasattr(net, "module") else net).state_dict()


def _latest_epoch_checkpoint(run_dir: Path) -> Path | None:
    found = [p for p in run_dir.glob("epoch_*.pt") if p.stem[len("epoch_"):].isdigit()]
    return max(found, key=lambda p: int(p.stem[len("epoch_"):])) if found else None


def _repair_best(run_dir: Path, best_epoch: int) -> None:
    """Make ``best.pt`` hold epoch ``best_epoch`` (a run killed between its two saves by an
    older version could leave it behind), from that epoch's own checkpoint."""
    if best_epoch < 1:
        return
    best = run_dir / "best.pt"
    if best.is_file():
        try:
            if int(load_checkpoint(best).get("epoch", -1)) == best_epoch:
                return
        except PqpfError:
            pass
    source = run_dir / f"epoch_{best_epoch:03d}.pt"
    if not source.is_file():
        raise PqpfError(f"--resume: {best} does not hold the best epoch {best_epoch} and {source} is gone; "
                        "start again with --overwrite")
    logger.warning("%s did not hold the best epoch %d; restored it from %s", best, best_epoch, source)
    with atomic_path(best) as tmp:
        shutil.copyfile(source, tmp)


def _sample_digest(indices: NDArray[np.int64]) -> str:
    return hashlib.sha256(np.sort(indices).astype(np.int64).tobytes()).hexdigest()[:16]


def _format_row(epoch: int, row: dict[str, Any]) -> str:
    bss = "  ".join(f"{row.get(f'val_bss_{t:g}mm', float('nan')):+7.3f}" for t in DIAGNOSTIC_THRESHOLDS_MM)
    return (f"{epoch:5d}  {row['train_rps']:10.5f}  {row['val_rps']:10.5f}  {bss}  "
            f"{row['lr']:8.2e}  {row['seconds']:6.1f}  {row['samples_per_s']:8.1f}"
            f"{'  *' if row.get('improved') else ''}")


def _header_row(scheme: str) -> str:
    bss = "  ".join(f"BSS{t:g}mm".rjust(7) for t in DIAGNOSTIC_THRESHOLDS_MM)
    train, val = f"train_{scheme}", f"val_{scheme}"
    return f"epoch  {train:>10}  {val:>10}  {bss}        lr     sec  samples/s   (* best so far)"


def train(
    config: Config,
    init: dt.datetime,
    lead_h: int,
    hp: HParams,
    device: str = "auto",
    resume: bool = False,
    init_from: str | None = None,
    max_epochs: int | None = None,
    register: bool = True,
    overwrite: bool = False,
) -> TrainResult:
    """Train the U-Net for (INIT, LEAD) on its patch files.

    Parameters
    ----------
    config : Config
    init, lead_h : the patch files' INIT and LEAD
    hp : HParams
        The named hyper-parameter set.
    device : str
        "auto" (CUDA > MPS > CPU), "cpu", "mps", "cuda" or "cuda:N".
    resume : bool
        Continue from the newest ``epoch_NNN.pt`` of the run directory (exactly, including
        the best score and early-stopping patience).
    init_from : str, optional
        "nearest": start from the best weights of the nearest registered lead; or a path
        to a checkpoint.
    max_epochs : int, optional
        Stop after this many epochs in total (overrides ``hp.epochs`` when smaller).
    register : bool
        Record the best checkpoint in the registry when done.
    overwrite : bool
        Start afresh even if the run directory already holds checkpoints (they are
        deleted). Without it, existing checkpoints make a fresh start an error.
    """
    import torch

    from pqpf.features import Normalisation, augment_batch_torch
    from pqpf.loss import masked_rps_loss
    from pqpf.model import build_model, validate_bin_edges

    dev = select_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dev.type == "mps":
        raise PqpfError("distributed training (torchrun) is not supported on MPS: the gloo backend cannot "
                        "reduce MPS tensors; train in one process, or pass --device cpu")
    ctx = DistributedContext.from_environment(dev.type)
    if ctx.world_size > 1 and dev.type == "cuda":
        dev = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(dev)
    try:
        result = _train(config, init, lead_h, hp, dev, ctx, resume, init_from, max_epochs, register, overwrite,
                        torch, Normalisation, augment_batch_torch,
                        masked_rps_loss, build_model, validate_bin_edges)
        # Leave together: a rank tearing down its process group while another still
        # writes the registry could abort the gloo threads at exit.
        ctx.barrier()
        return result
    finally:
        ctx.close()


def _train(config, init, lead_h, hp, dev, ctx, resume, init_from, max_epochs, register, overwrite,
           torch, Normalisation, augment_batch_torch,
           masked_rps_loss, build_model, validate_bin_edges) -> TrainResult:  # noqa: ANN001
    run_dir = training_run_dir(config, init, lead_h)
    if not resume and not overwrite and _latest_epoch_checkpoint(run_dir) is not None:
        raise PqpfError(
            f"{run_dir} already holds checkpoints; use --resume to continue that training "
            "or --overwrite to start again (its checkpoints are deleted)"
        )
    paths = {s: patch_file_path(config, s, init, lead_h) for s in ("train", "validation", "test")}
    train_set = load_patch_set(paths["train"])
    val_set = load_patch_set(paths["validation"])
    if len(train_set) == 0 or len(val_set) == 0:
        raise PqpfError(
            f"need training and validation patches, have {len(train_set)} and {len(val_set)} "
            f"({paths['train'].name}); extract more inits with save_patched_graf_mrms.py"
        )
    thresholds = tuple(config.probability.thresholds_mm)
    edges = tuple(hp.model.bin_edges_mm)
    try:
        validate_bin_edges(edges, thresholds)
    except ValueError as exc:
        raise ConfigError(
            f"hyper-parameters {hp.name!r} bin_edges_mm and [probability] thresholds_mm of "
            f"{config.source} disagree: {exc}"
        ) from None
    if tuple(train_set.thresholds_mm) != thresholds:
        raise InputFileError(paths["train"], f"patch thresholds {train_set.thresholds_mm} differ from the config's {thresholds}")
    channel_names = tuple(train_set.channel_names)
    if hp.time_features:
        from pqpf.features import TIME_CHANNELS

        channel_names = channel_names + tuple(TIME_CHANNELS)
    patch_px = int(train_set.header["patch_px"])
    min_quality = float(config.mrms.min_quality)
    if abs(float(train_set.header.get("min_quality", min_quality)) - min_quality) > 1e-9 and ctx.is_main:
        logger.warning("the patches were cut with [mrms] min_quality = %s, this config says %s: "
                       "patch rejection and the loss mask disagree", train_set.header.get("min_quality"), min_quality)
    epochs_total = min(hp.epochs, max_epochs) if max_epochs else hp.epochs

    # Normalisation from the training split (sampling-weighted), the same on every rank.
    normalisation: Any = _training_normalisation(train_set, channel_names, hp)

    torch.manual_seed(hp.seed)
    net = build_model(hp.model, in_channels=len(channel_names)).to(dev)
    optimizer = torch.optim.AdamW(net.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
    if hp.lr_schedule == "plateau":
        scheduler: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    elif hp.lr_schedule == "cosine":
        # The period is the configured number of epochs, not --max-epochs: a run stopped
        # early by --max-epochs and resumed continues on the same curve.
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.epochs)
    else:
        raise PqpfError(f"unknown lr_schedule {hp.lr_schedule!r}; valid: plateau, cosine")
    use_amp = dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start_epoch, best_score, best_epoch, bad_epochs = 1, math.inf, 0, 0
    history: list[dict[str, Any]] = []
    if resume:
        latest = _latest_epoch_checkpoint(run_dir)
        if latest is None:
            raise PqpfError(f"--resume: no epoch checkpoint in {run_dir}")
        state = load_checkpoint(latest, map_location=dev)
        differ = _differing_hparams(state.get("hparams", {}), _plain(dataclasses.asdict(hp)),
                                    ignore=_RESULT_NEUTRAL_HPARAMS)
        if differ:
            raise PqpfError(
                f"--resume: {latest} was trained with other hyper-parameters ({differ}); "
                "resume with the same set, or start again with --overwrite"
            )
        if int(state.get("world_size", 1)) != ctx.world_size:
            raise PqpfError(
                f"--resume: {latest} was trained with {state.get('world_size')} processes, "
                f"now {ctx.world_size}; resume with the same number to continue exactly"
            )
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # empty when saved without fp16 (CPU, MPS, bf16)
            scaler.load_state_dict(state["scaler"])
        normalisation = Normalisation.from_dict(state["normalisation"])
        start_epoch = int(state["epoch"]) + 1
        best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
        bad_epochs = int(state["bad_epochs"])
        if ctx.is_main:
            _repair_best(run_dir, best_epoch)
            logger.info("resuming from %s (epoch %d, best %.5f at epoch %d, patience used %d/%d)",
                        latest, start_epoch - 1, best_score, best_epoch, bad_epochs, hp.patience)
    elif init_from:
        source = _warm_start_source(config, lead_h, init_from)
        state = load_checkpoint(source, map_location=dev)
        source_init = str(state.get("init", ""))
        if source_init > format_yyyymmddhh(init):  # YYYYMMDDHH strings sort as times
            raise PqpfError(
                f"--init-from {source}: that model was trained for INIT {source_init}, after this "
                f"run's {format_yyyymmddhh(init)}, on hours this run holds out; warm-start from an "
                "earlier run (a back-test must not see its own future)")
        source_edges = [float(e) for e in state.get("bin_edges_mm", [])]
        if len(source_edges) != len(edges) or not np.allclose(source_edges, edges):
            raise PqpfError(f"--init-from {source}: its bin edges {source_edges} differ from this run's "
                            f"{[float(e) for e in edges]}")
        try:
            net.load_state_dict(state["net"])
        except RuntimeError as exc:
            raise PqpfError(f"--init-from {source}: the network shapes differ ({str(exc).splitlines()[0]})") from None
        # The copied weights expect inputs scaled as in their own training: keep that
        # normalisation (same features, so it stays appropriate for this lead).
        normalisation = Normalisation.from_dict(state["normalisation"], source)
        normalisation.check_channels(channel_names)
        if ctx.is_main:
            logger.info("warm start from %s (and its input normalisation)", source)
    else:
        # a fresh network starts from the training climatology of the amount bins
        net.set_prior(_bin_climatology(train_set, edges, min_quality, hp.use_sampling_weights))

    model = net
    if ctx.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None)

    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        atomic_write_text(run_dir / "hparams.yaml", yaml.safe_dump(_plain(dataclasses.asdict(hp)), sort_keys=False))
        if not resume:
            _unregister_run(config, lead_h, run_dir)
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
            (run_dir / "best.pt").unlink(missing_ok=True)
            for old in run_dir.glob("epoch_*.pt"):
                old.unlink()
            logger.info("training %s +%d h on %s (%d process%s): %d training / %d validation patches, "
                        "hparams %r, %d parameters", format_yyyymmddhh(init), lead_h, dev, ctx.world_size,
                        "" if ctx.world_size == 1 else "es",
                        len(train_set), len(val_set), hp.name, sum(p.numel() for p in net.parameters()))
        logger.info("%s", _header_row(hp.loss))

    weight_scale = float(np.mean(train_set.weights)) if len(train_set) else 1.0
    valid_per_patch = _mean_weighted_valid_points(train_set, min_quality, weight_scale, hp.use_sampling_weights)
    workers = max(0, int(hp.num_workers))
    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, epochs_total + 1):
        if bad_epochs >= hp.patience:
            stopped_early = True
            break
        torch.manual_seed(hp.seed * 100003 + epoch)
        t0 = time.perf_counter()
        batches, order, transforms = _batches(len(train_set), hp.batch_size, ctx.rank, ctx.world_size,
                                              hp.seed, epoch, shuffle=True)
        source = _BatchSource(train_set, batches, transforms, order, weight_scale, hp.use_sampling_weights,
                              min_quality, hp.time_features)
        model.train()
        loss_sum, weight_sum, samples, wait_s = 0.0, 0.0, 0, 0.0
        t_wait = time.perf_counter()
        for batch in _loader(source, workers, dev.type == "cuda"):
            wait_s += time.perf_counter() - t_wait
            x, targets = batch["features"], [batch["mrms"], batch["mask"], batch["ref"]]
            if hp.augment:
                x, targets = augment_batch_torch(x, targets, batch["transforms"], channel_names)
            obs, mask, _ = targets
            x = normalisation.apply_torch(x.to(dev, non_blocking=True))
            obs, mask = obs.to(dev, non_blocking=True), mask.to(dev, non_blocking=True)
            w = batch["weights"].to(dev, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=use_amp):
                logits = model(x)
            loss, n_valid = masked_rps_loss(logits.float(), obs, mask, edges, scheme=hp.loss, sample_weight=w,
                                            thresholds_mm=thresholds)
            # The gradient uses a fixed denominator (the expected weighted count of valid
            # points of a batch), not this batch's own weight sum: then every patch's
            # contribution is proportional to its sampling weight whatever else is in the
            # batch, and the mean gradient estimates that of the population's score.
            (scaler.scale(loss * (n_valid / (x.shape[0] * valid_per_patch)))).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += float(loss.detach()) * float(n_valid)
            weight_sum += float(n_valid)
            samples += x.shape[0]
            t_wait = time.perf_counter()
        train_seconds = time.perf_counter() - t0
        train_sums = ctx.all_reduce_sum(np.array([loss_sum, weight_sum, samples], dtype=np.float64))
        val = evaluate(net, val_set, normalisation, edges, hp, min_quality, dev, ctx)
        score = float(val["rps"])
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(score)
        else:
            scheduler.step()
        improved = score < best_score - hp.min_improvement * abs(best_score if math.isfinite(best_score) else 1.0)
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch, 0
        else:
            bad_epochs += 1
        seconds = time.perf_counter() - t0
        digests = ctx.all_gather_strings(_sample_digest(order))
        row = {
            "epoch": epoch, "train_rps": train_sums[0] / max(train_sums[1], 1e-12),
            "val_rps": score, "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
            "samples_per_s": train_sums[2] / max(train_seconds, 1e-9), "train_seconds": train_seconds,
            "data_wait_s": wait_s, "data_wait_share": wait_s / max(train_seconds, 1e-9),
            "improved": improved, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
            "world_size": ctx.world_size, "rank_sample_digests": digests,
            "rank_sample_counts": [int(x) for x in ctx.all_gather_strings(str(len(order)))],
            **{f"val_{k}": v for k, v in val.items() if k != "rps"},
        }
        history.append(row)
        if ctx.is_main:
            state = _checkpoint_state(net, optimizer, scheduler, scaler, epoch, best_score, best_epoch,
                                      bad_epochs, normalisation, hp, channel_names, edges, thresholds,
                                      patch_px, train_set, ctx, init, lead_h)
            # best.pt first: a kill between the two saves then resumes from the previous
            # epoch and redoes this one, instead of finding an epoch file whose best_epoch
            # names weights best.pt does not hold.
            if improved:
                save_checkpoint(run_dir / "best.pt", state)
            save_checkpoint(run_dir / f"epoch_{epoch:03d}.pt", state)
            with open(run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(_plain(row)) + "\n")
            logger.info("%s", _format_row(epoch, row))
        ctx.barrier()

    best_path = run_dir / "best.pt"
    test_scores: dict[str, float] = {}
    test_path = paths["test"]
    if test_path.is_file():
        test_set = load_patch_set(test_path)
        if len(test_set):
            best = load_checkpoint(best_path, map_location=dev)
            net.load_state_dict(best["net"])
            test_scores = evaluate(net, test_set, Normalisation.from_dict(best["normalisation"]), edges, hp,
                                   min_quality, dev, ctx, thresholds)
    if ctx.is_main:
        if stopped_early:
            logger.info("early stop: no improvement for %d epochs", hp.patience)
        logger.info("best epoch %d, validation RPS %.5f -> %s", best_epoch, best_score, best_path)
        if test_scores:
            def skill(t: float) -> str:
                value = test_scores[f"bss_{t:g}mm"]
                return f"{t:g} mm {value:+.3f}" if math.isfinite(value) else f"{t:g} mm n/a (no events)"

            logger.info("held-out test split (%d patches, %.1f%% of valid points >= 1 mm): %s %.5f; "
                        "Brier skill vs smoothed GRAF: %s", test_scores["n_patches"],
                        100 * test_scores.get("base_rate_1mm", float("nan")), hp.loss, test_scores["rps"],
                        ", ".join(skill(t) for t in thresholds))
            with open(run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(_plain({"test": test_scores, "best_epoch": best_epoch})) + "\n")
        if register:
            try:
                rel = str(best_path.relative_to(config.paths.trainings_dir))
            except ValueError:
                rel = str(best_path)
            update_registry(config, lead_h, {
                "checkpoint": rel, "init": format_yyyymmddhh(init), "hparams": hp.name,
                "best_epoch": best_epoch, "val_rps": best_score,
                "test": _plain(test_scores),
                "updated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "pqpf_version": __version__,
            })
    return TrainResult(run_dir, best_path, best_epoch, best_score, epoch - start_epoch + 1,
                       stopped_early, test_scores)


def _training_normalisation(data: PatchSet, channel_names: tuple[str, ...], hp: HParams) -> Any:
    """Per-channel statistics of the training split, weighted by the sampling weights
    (so they describe the climatology rather than the wet-favouring sample)."""
    from pqpf.features import NormalisationAccumulator, append_time_channels

    acc = NormalisationAccumulator(channel_names)
    for start in range(0, len(data), 256):
        block = data.features[start:start + 256]
        if hp.time_features:
            block = append_time_channels(block, data.valid_time[start:start + 256])
        acc.update(block, data.weights[start:start + 256] if hp.use_sampling_weights else None)
    return acc.result()


def _mean_weighted_valid_points(data: PatchSet, min_quality: float, weight_scale: float, weighted: bool) -> float:
    """Mean over training patches of (normalised sampling weight x valid points)."""
    total = 0.0
    for start in range(0, len(data), 256):
        obs = data.mrms_mm[start:start + 256]
        valid = good_quality_mask(obs, data.quality[start:start + 256], min_quality).sum(axis=(1, 2))
        w = data.weights[start:start + 256] / weight_scale if weighted else np.ones(len(obs))
        total += float((w * valid).sum())
    return max(total / max(len(data), 1), 1.0)


def _bin_climatology(data: PatchSet, edges: tuple[float, ...], min_quality: float, weighted: bool
                     ) -> NDArray[np.float64]:
    """Weighted frequency of each amount bin over the valid training pixels (the prior
    the network's output layer starts from)."""
    from pqpf.model import bin_index

    counts = np.zeros(len(edges), dtype=np.float64)
    for start in range(0, len(data), 256):
        obs = data.mrms_mm[start:start + 256]
        ok = good_quality_mask(obs, data.quality[start:start + 256], min_quality)
        idx = np.asarray(bin_index(np.where(ok, obs, np.nan), edges))
        w = data.weights[start:start + 256] if weighted else np.ones(len(obs), np.float32)
        wpix = np.broadcast_to(w[:, None, None], obs.shape)
        counts += np.bincount(idx[ok].ravel(), weights=wpix[ok].ravel(), minlength=len(edges))[:len(edges)]
    counts += 1e-3 * max(counts.sum(), 1.0) / len(edges)  # no bin starts impossible
    return counts / counts.sum()


#: Hyper-parameters that do not change the numbers a run produces.
_RESULT_NEUTRAL_HPARAMS = frozenset({"name", "num_workers"})


def _differing_hparams(old: dict[str, Any], new: dict[str, Any], prefix: str = "",
                       ignore: frozenset[str] = frozenset({"name"})) -> str:
    """``key: old -> new`` for every hyper-parameter that differs (nested keys dotted)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _differing_hparams(a, b, f"{prefix}{key}.", ignore)
            if inner:
                out.append(inner)
        elif a != b and key not in ignore:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return ", ".join(out)


def _warm_start_source(config: Config, lead_h: int, init_from: str) -> Path:
    if init_from == "nearest":
        lead = nearest_registered_lead(config, lead_h)
        if lead is None:
            raise PqpfError(f"--init-from nearest: the registry {registry_path(config)} has no other lead")
        path = registry_checkpoint(config, lead)
        if path is None:
            raise PqpfError(f"--init-from nearest: the registry entry of lead {lead} h names no checkpoint")
        return path
    return Path(init_from)


def _checkpoint_state(net, optimizer, scheduler, scaler, epoch, best_score, best_epoch, bad_epochs,  # noqa: ANN001
                      normalisation, hp, channel_names, edges, thresholds, patch_px, train_set, ctx,
                      init, lead_h) -> dict[str, Any]:
    return {
        "net": _state_dict(net),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": int(epoch),
        "best_score": float(best_score),
        "best_epoch": int(best_epoch),
        "bad_epochs": int(bad_epochs),
        "normalisation": normalisation.to_dict(),
        "hparams": _plain(dataclasses.asdict(hp)),
        "channel_names": list(channel_names),
        "feature_schema_version": int(train_set.header["feature_schema_version"]),
        # provenance of the inputs, checked by inference
        "grid_fingerprint": str(train_set.header.get("grid_fingerprint", "")),
        "terrain_smoothing_sigma_px": float(train_set.header.get("terrain_smoothing_sigma_px", float("nan"))),
        "min_quality": float(train_set.header.get("min_quality", float("nan"))),
        "bin_edges_mm": [float(e) for e in edges],
        "thresholds_mm": [float(t) for t in thresholds],
        "patch_px": int(patch_px),
        "init": format_yyyymmddhh(init),
        "lead_h": int(lead_h),
        "world_size": int(ctx.world_size),
        "pqpf_version": __version__,
    }


def _plain(obj: Any) -> Any:
    """Tuples -> lists, numpy scalars -> Python numbers (for JSON/YAML/checkpoints)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN: an undefined score is null
    return obj
