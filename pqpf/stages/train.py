"""The ``train_resunet.py`` stage: the lead's patch files -> a trained U-Net in the registry.

Reads the train/validation/test patch files of (INIT, LEAD), trains the residual U-Net
with the generic loop (:func:`pqpf.train.loop.fit`, the family
:class:`pqpf.train.resunet.ResUNetFamily`) in ``{trainings_dir}/resunet_{INIT}_{LEAD}h``,
and records the best checkpoint in the registry (:class:`pqpf.io.registry.Registry`)
under the kind ``resunet``. Under ``torchrun`` every rank calls this function; rank 0
alone writes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pqpf import __version__
from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh
from pqpf.device import select_device
from pqpf.errors import InputFileError, PqpfError
from pqpf.hparams import HParams
from pqpf.io.checkpoint import Checkpoint, load_checkpoint
from pqpf.io.jsonio import to_plain
from pqpf.io.patchfile import PatchSet, load_patch_set
from pqpf.io.registry import Registry
from pqpf.layout import PATCH_SPLITS, patch_file_path, registry_path, training_run_dir
from pqpf.train.calibrate import calibrate_checkpoint
from pqpf.train.crossfit import crossfit_calibration_data, fold_training_masks
from pqpf.train.distributed import DistributedContext
from pqpf.train.loop import FitResult, LoopSettings, fit
from pqpf.train.resunet import ResUNetFamily
from pqpf.train.rundir import RunDir

if TYPE_CHECKING:
    import torch

__all__ = ["train_resunet", "warm_start_source", "patch_sets", "training_context"]

logger = logging.getLogger(__name__)


def patch_sets(config: Config, init: dt.datetime, lead_h: int) -> dict[str, PatchSet]:
    paths = {s: patch_file_path(config, s, init, lead_h) for s in PATCH_SPLITS}
    sets = {s: load_patch_set(paths[s]) for s in ("train", "validation")}
    if len(sets["train"]) == 0 or len(sets["validation"]) == 0:
        raise PqpfError(
            f"need training and validation patches, have {len(sets['train'])} and {len(sets['validation'])} "
            f"({paths['train'].name}); extract more inits with save_patched_graf_mrms.py"
        )
    thresholds = tuple(config.probability.thresholds_mm)
    if tuple(sets["train"].thresholds_mm) != thresholds:
        raise InputFileError(paths["train"],
                             f"patch thresholds {sets['train'].thresholds_mm} differ from the config's {thresholds}")
    if paths["test"].is_file():
        sets["test"] = load_patch_set(paths["test"])
    return sets


def warm_start_source(config: Config, lead_h: int, init_from: str) -> Path:
    """The checkpoint ``--init-from`` names: "nearest" registered lead, or a file."""
    if init_from != "nearest":
        return Path(init_from)
    registry = Registry(registry_path(config))
    lead = registry.nearest_lead("resunet", lead_h)
    if lead is None:
        raise PqpfError(f"--init-from nearest: the registry {registry.path} has no other lead")
    path = registry.checkpoint("resunet", lead)
    if path is None:  # pragma: no cover - nearest_lead returned a registered lead
        raise PqpfError(f"--init-from nearest: the registry entry of lead {lead} h names no checkpoint")
    return path


def _warm_start(config: Config, init: dt.datetime, lead_h: int, init_from: str | None, device: object
                ) -> tuple[Checkpoint, Path] | None:
    if not init_from:
        return None
    source = warm_start_source(config, lead_h, init_from)
    checkpoint = load_checkpoint(source, map_location=device)
    if checkpoint.model.init > format_yyyymmddhh(init):  # YYYYMMDDHH strings sort as times
        raise PqpfError(
            f"--init-from {source}: that model was trained for INIT {checkpoint.model.init}, after this run's "
            f"{format_yyyymmddhh(init)}, on hours this run holds out; warm-start from an earlier run "
            "(a back-test must not see its own future)")
    return checkpoint, source


def training_context(device: str) -> tuple[torch.device, DistributedContext]:
    """The device of this process and its ``torchrun`` context (one process without it)."""
    import torch

    dev = select_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dev.type == "mps":
        raise PqpfError("distributed training (torchrun) is not supported on MPS: the gloo backend cannot "
                        "reduce MPS tensors; train in one process, or pass --device cpu")
    ctx = DistributedContext.from_environment(dev.type)
    if ctx.world_size > 1 and dev.type == "cuda":
        dev = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(dev)
    return dev, ctx


def _register(config: Config, lead_h: int, init: dt.datetime, hp: HParams, result: FitResult) -> None:
    registry = Registry(registry_path(config))
    registry.update("resunet", lead_h, {
        "checkpoint": registry.relative(result.best_checkpoint), "init": format_yyyymmddhh(init),
        "hparams": hp.name, "best_epoch": result.best_epoch, f"val_{hp.loss}": result.best_score,
        "test": to_plain(result.test_scores),
        "updated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pqpf_version": __version__,
    })


def train_resunet(config: Config, init: dt.datetime, lead_h: int, hp: HParams, device: str = "auto",
                  resume: bool = False, init_from: str | None = None, max_epochs: int | None = None,
                  register: bool = True, overwrite: bool = False) -> FitResult:
    """Train the U-Net for (INIT, LEAD) on its patch files.

    Parameters
    ----------
    hp : HParams
        The named hyper-parameter set (its bin edges already checked against the
        thresholds by :func:`pqpf.hparams.load_hparams`).
    device : str
        "auto" (CUDA > MPS > CPU), "cpu", "mps", "cuda" or "cuda:N".
    resume : bool
        Continue exactly from the newest ``epoch_NNN.pt`` of the run directory.
    init_from : str, optional
        "nearest": start from the best weights of the nearest registered lead; or a
        checkpoint path.
    max_epochs : int, optional
        Stop after this many epochs in total (when smaller than ``hp.epochs``).
    register : bool
        Record the best checkpoint in the registry when done.
    overwrite : bool
        Start afresh even if the run directory holds checkpoints (they are deleted);
        without it, existing checkpoints make a fresh start an error.
    """
    dev, ctx = training_context(device)
    lock = None
    try:
        run = RunDir(training_run_dir(config, init, lead_h))
        lock = run.lock() if ctx.is_main else None
        Registry(registry_path(config)).read()  # a broken registry fails now, not after the training
        if not resume and not overwrite and run.latest_epoch() is not None:
            raise PqpfError(f"{run.path} already holds checkpoints; use --resume to continue that training "
                            "or --overwrite to start again (its checkpoints are deleted)")
        sets = patch_sets(config, init, lead_h)
        train_set = sets["train"]
        min_quality = float(config.mrms.min_quality)
        cut_with = float(train_set.header.get("min_quality", min_quality))
        if abs(cut_with - min_quality) > 1e-9 and ctx.is_main:
            logger.warning("the patches were cut with [mrms] min_quality = %s, this config says %s: "
                           "patch rejection and the loss mask disagree", cut_with, min_quality)
        if hp.calibration_folds:  # too few dates fail now, not after the main training
            fold_training_masks(train_set.valid_time, lead_h, hp.calibration_folds, hp.calibration_fold_gap_days)
        family = ResUNetFamily(hp, train_set, min_quality)
        warm = _warm_start(config, init, lead_h, init_from, dev) if not resume else None
        if ctx.is_main and not resume:
            Registry(registry_path(config)).remove_if_in("resunet", lead_h, run.path)
        result = fit(family, train_set, sets["validation"], sets.get("test"), run, LoopSettings.from_hparams(hp),
                     dev, ctx, init=format_yyyymmddhh(init), lead_h=lead_h, resume=resume, warm_start=warm,
                     max_epochs=max_epochs)
        out_of_fold = None
        if hp.calibration_folds:
            out_of_fold = crossfit_calibration_data(hp, train_set, sets["validation"], min_quality, run.path, dev,
                                                    ctx, init=format_yyyymmddhh(init), lead_h=lead_h, resume=resume,
                                                    max_epochs=max_epochs)
        if ctx.is_main:
            # Monotone post-hoc calibration on the validation split (and the out-of-fold
            # predictions), into best.pt.
            calibrate_checkpoint(family, result.best_checkpoint, sets["validation"], dev, hp.batch_size,
                                 out_of_fold)
        if ctx.is_main and register:
            _register(config, lead_h, init, hp, result)
        # Leave together: a rank tearing down its process group while another still
        # writes the registry could abort the gloo threads at exit.
        ctx.barrier()
        return result
    finally:
        if lock is not None:
            lock.release()
        ctx.close()
