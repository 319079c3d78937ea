"""The ``train_diffusion.py`` stage: patch files + the lead's U-Net -> a diffusion model in the registry.

Loads the registry's U-Net for the lead (it must have been trained for the same INIT, grid
and bins: :func:`pqpf.train.diffusion.check_unet_matches`), trains the EDM residual
model with the generic loop (:func:`pqpf.train.loop.fit`, family
:class:`pqpf.train.diffusion.DiffusionFamily`) in ``{trainings_dir}/diffusion_{INIT}_{LEAD}h``
and registers the best checkpoint under the kind ``diffusion``, naming the U-Net
checkpoint it was trained against. Under ``torchrun`` every rank calls this; rank 0 writes.
"""

from __future__ import annotations

import datetime as dt
import logging

from pqpf import __version__
from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh
from pqpf.errors import PqpfError
from pqpf.hparams import DiffusionHParams
from pqpf.io.checkpoint import load_checkpoint
from pqpf.io.jsonio import to_plain
from pqpf.io.registry import Registry
from pqpf.layout import registry_path, training_run_dir
from pqpf.predict import load_resunet
from pqpf.stages.train import patch_sets, training_context
from pqpf.train.diffusion import DiffusionFamily, check_unet_matches
from pqpf.train.loop import FitResult, LoopSettings, fit
from pqpf.train.rundir import RunDir

__all__ = ["train_diffusion"]

logger = logging.getLogger(__name__)


def train_diffusion(config: Config, init: dt.datetime, lead_h: int, hp: DiffusionHParams, device: str = "auto",
                    resume: bool = False, max_epochs: int | None = None, register: bool = True,
                    overwrite: bool = False) -> FitResult:
    """Train the diffusion model for (INIT, LEAD) on its patch files and the lead's U-Net.

    Parameters are those of :func:`pqpf.stages.train.train_resunet` (no warm start).

    Raises
    ------
    PqpfError
        No U-Net registered for the lead, or one trained for another INIT, grid or bins.
    """
    dev, ctx = training_context(device)
    lock = None
    try:
        registry = Registry(registry_path(config))
        unet_path = registry.checkpoint("resunet", lead_h)
        if unet_path is None:
            raise PqpfError(f"no U-Net registered for lead {lead_h} h in {registry.path}; "
                            f"run train_resunet.py {format_yyyymmddhh(init)} {lead_h} first")
        unet = load_resunet(load_checkpoint(unet_path, map_location=dev), unet_path, dev)
        run = RunDir(training_run_dir(config, init, lead_h, kind="diffusion"))
        lock = run.lock() if ctx.is_main else None
        if not resume and not overwrite and run.latest_epoch() is not None:
            raise PqpfError(f"{run.path} already holds checkpoints; use --resume to continue that training "
                            "or --overwrite to start again (its checkpoints are deleted)")
        sets = patch_sets(config, init, lead_h)
        check_unet_matches(unet, sets["train"].header, format_yyyymmddhh(init), config.probability.thresholds_mm)
        family = DiffusionFamily(hp, unet, sets["train"], float(config.mrms.min_quality))
        if ctx.is_main and not resume:
            registry.remove_if_in("diffusion", lead_h, run.path)
        result = fit(family, sets["train"], sets["validation"], sets.get("test"), run, LoopSettings.from_hparams(hp),
                     dev, ctx, init=format_yyyymmddhh(init), lead_h=lead_h, resume=resume, max_epochs=max_epochs)
        if ctx.is_main and register:
            registry.update("diffusion", lead_h, {
                "checkpoint": registry.relative(result.best_checkpoint), "init": format_yyyymmddhh(init),
                "hparams": hp.name, "best_epoch": result.best_epoch, "val_edm": result.best_score,
                "unet_checkpoint": registry.relative(unet_path), "sigma_data": family.sigma_data,
                "test": to_plain(result.test_scores),
                "updated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "pqpf_version": __version__,
            })
        ctx.barrier()
        return result
    finally:
        if lock is not None:
            lock.release()
        ctx.close()
