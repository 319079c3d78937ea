"""Cross-fitted calibration data: out-of-fold predictions on the training split.

The isotonic calibration (:mod:`pqpf.calibration`) is fitted on predictions the network
did not train on. The validation split alone is often a handful of dates (the demo: 7
inits on 4 dates), too few to pin a monotone map down (docs/calibration.md, sections 3
and 7). With ``calibration_folds = K`` the training dates are cut into K contiguous
groups; for each group a network with the same hyper-parameters is trained on the other
groups' patches (early-stopped on the validation split, like the main network) and run
over the group's own patches. Every training patch then has one out-of-fold prediction;
their sums join those of the main network on the validation split, and the map fitted
on the pool is applied to the main network, which saw all of the training dates
(cross-fitting, as in stacking: the fold networks saw (K-1)/K of the data, so their
predictions are slightly less sharp than the main network's).

Groups are whole, contiguous init dates, so the two cycles of a day, which share their
weather, are never split; with ``calibration_fold_gap_days = G`` a fold network is also
trained without the G dates on each side of its group, so no held-out date has a
neighbour in its network's training data.

The fold trainings live in ``{run}/crossfit/fold_{k}/`` (ordinary run folders:
``--resume`` continues a fold that was interrupted and skips finished ones, but only
when its ``fold.txt`` (K, k and a digest of the split's patches and fold cut) matches:
another K or other patch files retrain it, so no fold network has seen its held-out
dates; a finished fold keeps only ``best.pt`` and its last epoch; a fresh main training
deletes them, :meth:`pqpf.train.rundir.RunDir.start`).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from pqpf.calibration import CalibrationFit
from pqpf.errors import PqpfError
from pqpf.hparams import HParams
from pqpf.io.checkpoint import load_checkpoint
from pqpf.io.patchfile import PatchSet
from pqpf.train.calibrate import accumulate_calibration
from pqpf.train.distributed import DistributedContext
from pqpf.train.loop import LoopSettings, fit
from pqpf.train.resunet import ResUNetFamily
from pqpf.train.rundir import RunDir

if TYPE_CHECKING:
    import torch

__all__ = ["date_folds", "fold_training_masks", "crossfit_calibration_data"]

logger = logging.getLogger(__name__)


def _init_days(valid_time: NDArray[np.int64], lead_h: int) -> NDArray[np.int64]:
    """Init date of every patch, as whole days since 1970 (UTC)."""
    days: NDArray[np.int64] = (np.asarray(valid_time, dtype=np.int64) - int(lead_h) * 3600) // 86400
    return days


def date_folds(valid_time: NDArray[np.int64], lead_h: int, n_folds: int) -> NDArray[np.int64]:
    """Fold (0..K-1) of every patch: K contiguous groups of the sorted distinct init dates,
    cut where the groups' patch counts come closest to N/K each (dry dates give few
    patches, so equal numbers of dates could leave one fold network little to train on).

    Raises
    ------
    PqpfError
        Fewer distinct init dates than folds.
    """
    days = _init_days(valid_time, lead_h)
    distinct, day_of_patch = np.unique(days, return_inverse=True)
    n_dates = distinct.size
    if n_dates < n_folds:
        raise PqpfError(f"calibration_folds = {n_folds} needs at least {n_folds} training init dates, the "
                        f"training split has {n_dates}; lower calibration_folds or extract more inits")
    after = np.cumsum(np.bincount(day_of_patch, minlength=n_dates))  # patches up to and including each date
    cuts: list[int] = []  # group k starts at date cuts[k-1]
    start = 0
    for k in range(1, n_folds):
        lo, hi = start + 1, n_dates - (n_folds - k)  # every group keeps at least one date
        target = k * after[-1] / n_folds
        start = lo + int(np.argmin(np.abs(after[lo - 1:hi] - target)))
        cuts.append(start)
    group_of_day = np.searchsorted(np.asarray(cuts, dtype=np.int64), np.arange(n_dates), side="right")
    return group_of_day[day_of_patch].astype(np.int64)


def fold_training_masks(valid_time: NDArray[np.int64], lead_h: int, n_folds: int,
                        gap_days: int) -> tuple[NDArray[np.int64], list[NDArray[np.bool_]]]:
    """The folds (:func:`date_folds`) and, per fold, which patches its network trains on:
    every patch outside the group and more than ``gap_days`` init dates from it.

    Raises
    ------
    PqpfError
        Too few dates for the folds, or a gap that leaves a fold network nothing to train on.
    """
    folds = date_folds(valid_time, lead_h, n_folds)
    days = _init_days(valid_time, lead_h)
    masks = []
    for k in range(n_folds):
        held = days[folds == k]
        mask = (days < held.min() - gap_days) | (days > held.max() + gap_days)
        if not mask.any():
            raise PqpfError(f"calibration_fold_gap_days = {gap_days} leaves fold {k + 1} of {n_folds} no training "
                            f"dates ({np.unique(days).size} in the training split); lower it or "
                            f"calibration_folds, or extract more inits")
        masks.append(mask)
    return folds, masks


def _fold_dates(data: PatchSet, lead_h: int) -> str:
    days = np.unique(_init_days(data.valid_time, lead_h))
    as_text = np.datetime_as_string((days * 86400).astype("datetime64[s]"), unit="D")
    return f"{as_text[0]}..{as_text[-1]}" if len(as_text) else "-"


def _keep_last_epoch(run: RunDir) -> None:
    """A finished fold needs only ``best.pt`` and its last epoch (which tells ``--resume``
    that it is finished): K folds would otherwise keep K times the main run's checkpoints."""
    last = run.latest_epoch()
    for path in run.path.glob("epoch_*.pt"):
        if path != last:
            path.unlink()


def _fold_identity(n_folds: int, k: int, valid_time: NDArray[np.int64], folds: NDArray[np.int64],
                   trained_on: NDArray[np.bool_]) -> str:
    digest = hashlib.sha256(np.asarray(valid_time, dtype=np.int64).tobytes())
    digest.update(np.asarray(folds, dtype=np.int64).tobytes())
    digest.update(np.asarray(trained_on, dtype=np.bool_).tobytes())
    return f"calibration_folds {n_folds}, fold {k}, patches {digest.hexdigest()}\n"


def _prepare_fold(run: RunDir, identity: str, resume: bool) -> bool:
    """Rank 0: empty the fold folder unless it holds this very fold; True to resume it."""
    marker = run.path / "fold.txt"
    same = marker.is_file() and marker.read_text() == identity
    if not same and run.path.exists():
        logger.info("%s was trained for another fold cut; training it again", run.path)
        shutil.rmtree(run.path)
    run.path.mkdir(parents=True, exist_ok=True)
    marker.write_text(identity)
    return resume and same and run.latest_epoch() is not None


def crossfit_calibration_data(hp: HParams, train_set: PatchSet, val_set: PatchSet, min_quality: float,
                              run_path: Path, device: torch.device, ctx: DistributedContext, *, init: str,
                              lead_h: int, resume: bool, max_epochs: int | None = None) -> CalibrationFit | None:
    """Out-of-fold calibration sums of the training split (``hp.calibration_folds`` folds).

    Every rank trains the fold networks (as :func:`pqpf.train.loop.fit`); rank 0 returns
    the sums of their predictions on their held-out groups (sampling weights divided by the
    whole training split's mean, so each group keeps its share), the other ranks None.
    """
    n_folds = hp.calibration_folds
    folds, trains_on = fold_training_masks(train_set.valid_time, lead_h, n_folds, hp.calibration_fold_gap_days)
    root = RunDir(run_path).crossfit  # a fresh main training has emptied it (RunDir.start)
    thresholds = tuple(hp.model.bin_edges_mm[1:])
    sums = CalibrationFit(thresholds)
    if ctx.is_main and root.is_dir():  # folds of a larger K are not this calibration's
        for stale in root.iterdir():
            if stale.name.startswith("fold_") and stale.name[5:].isdigit() and int(stale.name[5:]) > n_folds:
                shutil.rmtree(stale)
    for k in range(n_folds):
        run = RunDir(root / f"fold_{k + 1}")
        identity = _fold_identity(n_folds, k, train_set.valid_time, folds, trains_on[k])
        resume_fold = _prepare_fold(run, identity, resume) if ctx.is_main else False
        # rank 0 decides (other ranks may not see its disk); the others add zero
        resume_fold = bool(ctx.all_reduce_sum(np.array([float(resume_fold)]))[0] > 0)
        held_out = train_set.take(np.flatnonzero(folds == k))
        rest = train_set.take(np.flatnonzero(trains_on[k]))
        if ctx.is_main:
            logger.info("cross-fit fold %d/%d: training on %d patches, predicting %d patches of %s", k + 1,
                        n_folds, len(rest), len(held_out), _fold_dates(held_out, lead_h))
        family = ResUNetFamily(hp, rest, min_quality)
        result = fit(family, rest, val_set, None, run, LoopSettings.from_hparams(hp), device, ctx, init=init,
                     lead_h=lead_h, resume=resume_fold, max_epochs=max_epochs)
        if ctx.is_main:
            _keep_last_epoch(run)
            checkpoint = load_checkpoint(result.best_checkpoint, map_location=device)
            net = family.build().to(device)
            net.load_state_dict(checkpoint.inference_weights())
            family.restore(checkpoint)
            sums.add(accumulate_calibration(family, net, held_out, device, hp.batch_size, thresholds,
                                            population=train_set))
        # the fold's copies of the patches go before the next fold's are taken (peak 2x the split, not 3x)
        del held_out, rest, family, result
    return sums if ctx.is_main else None
