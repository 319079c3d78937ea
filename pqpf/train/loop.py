"""The training loop that every model family plugs into (:mod:`pqpf.train.family`).

Per epoch ``e``: the global torch seed is reset to ``(seed, e)`` and the batches and
augmentation come from a generator seeded with ``(seed, e)``
(:func:`pqpf.train.batches.plan_epoch`), so ``--resume`` from the checkpoint of epoch
``e`` continues exactly as an uninterrupted run would (same world size); the model is
trained (AdamW, mixed precision on CUDA), evaluated on the validation split by the
family (its ``"score"``, lower is better), the learning-rate schedule steps, early
stopping counts epochs without a relative gain of ``min_improvement``, and rank 0 writes
``best.pt`` (when improved) then ``epoch_NNN.pt`` and a metrics line. ``best.pt`` is
written first: a kill between the two saves then resumes from the previous epoch and
redoes this one. At the end the best weights are scored on the held-out test split.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pqpf.errors import PqpfError
from pqpf.hparams import DiffusionHParams, HParams, with_legacy_defaults
from pqpf.io.checkpoint import Checkpoint, TrainingState, load_checkpoint, save_checkpoint
from pqpf.io.patchfile import PatchSet
from pqpf.train.batches import BatchSource, plan_epoch, prefetch
from pqpf.train.distributed import DistributedContext
from pqpf.train.family import ModelFamily
from pqpf.train.rundir import RunDir
from pqpf.train.schedules import make_schedule, steps_on_score

if TYPE_CHECKING:
    import torch

__all__ = ["LoopSettings", "FitResult", "fit", "differing_hparams"]

logger = logging.getLogger(__name__)

#: Hyper-parameters that do not change the network a run trains (``calibration_folds``
#: changes only the calibration fitted after it, which every run refits).
RESULT_NEUTRAL_HPARAMS = frozenset({"name", "num_workers", "calibration_folds", "calibration_fold_gap_days"})


@dataclass(frozen=True)
class LoopSettings:
    """The loop's own hyper-parameters (every family's set has these keys)."""

    epochs: int
    patience: int
    min_improvement: float
    learning_rate: float
    weight_decay: float
    lr_schedule: str
    batch_size: int
    num_workers: int
    seed: int

    @classmethod
    def from_hparams(cls, hp: HParams | DiffusionHParams) -> LoopSettings:
        return cls(hp.epochs, hp.patience, hp.min_improvement, hp.learning_rate, hp.weight_decay, hp.lr_schedule,
                   hp.batch_size, hp.num_workers, hp.seed)


@dataclass
class FitResult:
    """Where the training left things and how good the best model is."""

    run_dir: Path
    best_checkpoint: Path
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    test_scores: dict[str, float] = field(default_factory=dict)


@dataclass
class _Progress:
    """Early-stopping state (what exact resume restores)."""

    start_epoch: int = 1
    best_score: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0


class _Amp:
    """Mixed precision: bf16 (or fp16 with a gradient scaler) on CUDA, off elsewhere."""

    def __init__(self, device: torch.device) -> None:
        import torch

        self.device = device
        self.enabled = device.type == "cuda"
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)

    def autocast(self) -> AbstractContextManager[Any]:
        import torch

        return torch.autocast(device_type=self.device.type, dtype=self.dtype, enabled=self.enabled)


def differing_hparams(old: dict[str, Any], new: dict[str, Any], prefix: str = "",
                      ignore: frozenset[str] = frozenset({"name"})) -> str:
    """``key: old -> new`` for every hyper-parameter that differs (nested keys dotted)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = differing_hparams(a, b, f"{prefix}{key}.", ignore)
            if inner:
                out.append(inner)
        elif a != b and key not in ignore:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return ", ".join(out)


def _state_dict(net: Any) -> dict[str, Any]:
    return (net.module if hasattr(net, "module") else net).state_dict()


def _unwrapped(model: Any) -> Any:
    """The network inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def _sample_digest(indices: NDArray[np.int64]) -> str:
    return hashlib.sha256(np.sort(indices).astype(np.int64).tobytes()).hexdigest()[:16]


def _resume(run: RunDir, family: ModelFamily, net: torch.nn.Module, optimizer: Any, scheduler: Any, amp: _Amp,
            device: torch.device, ctx: DistributedContext, patience: int) -> _Progress:
    """Continue from the newest epoch checkpoint, exactly."""
    latest = run.latest_epoch()
    if latest is None:
        raise PqpfError(f"--resume: no epoch checkpoint in {run.path}")
    checkpoint = load_checkpoint(latest, map_location=device)
    state = checkpoint.training
    if state is None:
        raise PqpfError(f"--resume: {latest} holds no training state")
    differ = differing_hparams(with_legacy_defaults(checkpoint.model.hparams), family.hparams,
                               ignore=RESULT_NEUTRAL_HPARAMS)
    if differ:
        raise PqpfError(f"--resume: {latest} was trained with other hyper-parameters ({differ}); "
                        "resume with the same set, or start again with --overwrite")
    if state.world_size != ctx.world_size:
        raise PqpfError(f"--resume: {latest} was trained with {state.world_size} processes, now "
                        f"{ctx.world_size}; resume with the same number to continue exactly")
    net.load_state_dict(checkpoint.net)
    optimizer.load_state_dict(state.optimizer)
    scheduler.load_state_dict(state.scheduler)
    if state.scaler:  # empty when saved without fp16 (CPU, MPS, bf16)
        amp.scaler.load_state_dict(state.scaler)
    family.restore(checkpoint)
    progress = _Progress(state.epoch + 1, state.best_score, state.best_epoch, state.bad_epochs)
    if ctx.is_main:
        run.repair_best(progress.best_epoch)
        logger.info("resuming from %s (epoch %d, best %.5f at epoch %d, patience used %d/%d)", latest,
                    state.epoch, progress.best_score, progress.best_epoch, progress.bad_epochs, patience)
    return progress


@dataclass
class _Epoch:
    loss_sum: float = 0.0
    weight_sum: float = 0.0
    samples: int = 0
    wait_s: float = 0.0
    train_seconds: float = 0.0
    order: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


def _train_epoch(model: Callable[..., Any], family: ModelFamily, data: PatchSet, settings: LoopSettings,
                 epoch: int, ctx: DistributedContext, device: torch.device, optimizer: Any, amp: _Amp) -> _Epoch:
    import torch

    torch.manual_seed(settings.seed * 100003 + epoch)
    t0 = time.perf_counter()
    plan = plan_epoch(len(data), settings.batch_size, ctx.rank, ctx.world_size, settings.seed, epoch, shuffle=True)
    source = BatchSource(data, plan, family.batch_spec(data))
    model.train()  # type: ignore[attr-defined]
    out = _Epoch(order=plan.order)
    t_wait = time.perf_counter()
    for batch in prefetch(source, max(0, settings.num_workers), device.type == "cuda"):
        out.wait_s += time.perf_counter() - t_wait
        optimizer.zero_grad(set_to_none=True)
        step = family.train_step(model, batch, device, amp.autocast)
        amp.scaler.scale(step.objective).backward()
        amp.scaler.step(optimizer)
        amp.scaler.update()
        ctx.broadcast_buffers(_unwrapped(model))  # batch-norm statistics: rank 0's everywhere
        family.after_step(_unwrapped(model), step.samples * ctx.world_size)
        out.loss_sum += step.value * step.weight
        out.weight_sum += step.weight
        out.samples += step.samples
        t_wait = time.perf_counter()
    out.train_seconds = time.perf_counter() - t0
    return out


def _format_row(family: ModelFamily, epoch: int, row: dict[str, Any]) -> str:
    extra = "  ".join(format(row.get(f"val_{c.key}", float("nan")), c.fmt) for c in family.columns())
    return (f"{epoch:5d}  {row[f'train_{family.score_name}']:10.5f}  {row[f'val_{family.score_name}']:10.5f}  "
            f"{extra}  {row['lr']:8.2e}  {row['seconds']:6.1f}  {row['samples_per_s']:8.1f}"
            f"{'  *' if row.get('improved') else ''}")


def _header_row(family: ModelFamily) -> str:
    extra = "  ".join(c.header.rjust(7) for c in family.columns())
    train, val = f"train_{family.score_name}", f"val_{family.score_name}"
    return f"epoch  {train:>10}  {val:>10}  {extra}        lr     sec  samples/s   (* best so far)"


def _run(family: ModelFamily, train_set: PatchSet, val_set: PatchSet, run: RunDir, settings: LoopSettings,
         device: torch.device, ctx: DistributedContext, model: Any, net: torch.nn.Module, optimizer: Any,
         scheduler: Any, amp: _Amp, progress: _Progress, epochs_total: int, init: str, lead_h: int
         ) -> tuple[int, bool]:
    """The epochs; returns the last epoch run and whether early stopping ended them."""
    epoch = progress.start_epoch - 1
    for epoch in range(progress.start_epoch, epochs_total + 1):
        if progress.bad_epochs >= settings.patience:
            return epoch - 1, True
        t0 = time.perf_counter()
        done = _train_epoch(model, family, train_set, settings, epoch, ctx, device, optimizer, amp)
        sums = ctx.all_reduce_sum(np.array([done.loss_sum, done.weight_sum, done.samples], dtype=np.float64))
        family.after_epoch(net, device, epoch)
        val = family.evaluate(net, val_set, device, ctx, settings.batch_size)
        score = float(val["score"])
        scheduler.step(score) if steps_on_score(scheduler) else scheduler.step()
        best = progress.best_score
        improved = score < best - settings.min_improvement * abs(best if math.isfinite(best) else 1.0)
        if improved:
            progress.best_score, progress.best_epoch, progress.bad_epochs = score, epoch, 0
        else:
            progress.bad_epochs += 1
        row = {
            "epoch": epoch, f"train_{family.score_name}": sums[0] / max(sums[1], 1e-12),
            f"val_{family.score_name}": score, "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0, "samples_per_s": sums[2] / max(done.train_seconds, 1e-9),
            "train_seconds": done.train_seconds, "data_wait_s": done.wait_s,
            "data_wait_share": done.wait_s / max(done.train_seconds, 1e-9),
            "improved": improved, "best_epoch": progress.best_epoch, "bad_epochs": progress.bad_epochs,
            "world_size": ctx.world_size, "rank_sample_digests": ctx.all_gather_strings(_sample_digest(done.order)),
            "rank_sample_counts": [int(x) for x in ctx.all_gather_strings(str(len(done.order)))],
            **{f"val_{k}": v for k, v in val.items() if k != "score"},
        }
        if ctx.is_main:
            checkpoint = Checkpoint(
                net=_state_dict(net), model=family.record(init, lead_h),
                training=TrainingState(epoch, progress.best_score, progress.best_epoch, progress.bad_epochs,
                                       ctx.world_size, optimizer.state_dict(), scheduler.state_dict(),
                                       amp.scaler.state_dict()),
                ema=family.averaged_weights())
            if improved:
                save_checkpoint(run.best, checkpoint)
            save_checkpoint(run.epoch(epoch), checkpoint)
            run.append_metrics(row)
            logger.info("%s", _format_row(family, epoch, row))
        ctx.barrier()
    return epoch, False


def fit(family: ModelFamily, train_set: PatchSet, val_set: PatchSet, test_set: PatchSet | None, run: RunDir,
        settings: LoopSettings, device: torch.device, ctx: DistributedContext, *, init: str, lead_h: int,
        resume: bool = False, warm_start: tuple[Checkpoint, Path] | None = None,
        max_epochs: int | None = None) -> FitResult:
    """Train ``family``'s network on ``train_set``, select on ``val_set``, score on ``test_set``.

    Parameters
    ----------
    run : RunDir
        Where checkpoints and metrics go (rank 0 writes).
    resume : bool
        Continue exactly from the newest epoch checkpoint of ``run``.
    warm_start : (Checkpoint, path), optional
        Start from another training's weights (the family checks they fit).
    max_epochs : int, optional
        Stop after this many epochs in total (when smaller than the configured number).
    """
    import torch

    torch.manual_seed(settings.seed)
    net = family.build().to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = make_schedule(settings.lr_schedule, optimizer, settings.epochs)
    amp = _Amp(device)
    progress = _Progress()
    if resume:
        progress = _resume(run, family, net, optimizer, scheduler, amp, device, ctx, settings.patience)
    elif warm_start is not None:
        family.start_warm(net, *warm_start)
    else:
        family.start_fresh(net)
    model: Any = net
    if ctx.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    if ctx.is_main:
        run.start(family.hparams, fresh=not resume)
        if not resume:
            logger.info("training %s +%d h on %s (%d process%s): %d training / %d validation patches, "
                        "hparams %r, %d parameters", init, lead_h, device, ctx.world_size,
                        "" if ctx.world_size == 1 else "es", len(train_set), len(val_set),
                        family.hparams.get("name"), sum(p.numel() for p in net.parameters()))
        logger.info("%s", _header_row(family))
    epochs_total = min(settings.epochs, max_epochs) if max_epochs else settings.epochs
    last, stopped = _run(family, train_set, val_set, run, settings, device, ctx, model, net, optimizer, scheduler,
                         amp, progress, epochs_total, init, lead_h)
    test_scores = _score_test(family, net, test_set, run, device, ctx, settings.batch_size)
    if ctx.is_main:
        if stopped:
            logger.info("early stop: no improvement for %d epochs", settings.patience)
        logger.info("best epoch %d, validation %s %.5f -> %s", progress.best_epoch, family.score_name,
                    progress.best_score, run.best)
        if test_scores:
            logger.info("%s", family.describe_test(test_scores))
            run.append_metrics({"test": test_scores, "best_epoch": progress.best_epoch})
    return FitResult(run.path, run.best, progress.best_epoch, progress.best_score, last - progress.start_epoch + 1,
                     stopped, test_scores)


def _score_test(family: ModelFamily, net: torch.nn.Module, test_set: PatchSet | None, run: RunDir,
                device: torch.device, ctx: DistributedContext, batch_size: int) -> dict[str, float]:
    """The best weights' scores on the held-out test split (empty without one)."""
    if test_set is None or not len(test_set):
        return {}
    best = load_checkpoint(run.best, map_location=device)
    net.load_state_dict(best.net)
    family.restore(best)
    scores = family.evaluate(net, test_set, device, ctx, batch_size)
    return {(family.score_name if k == "score" else k): v for k, v in scores.items()}

