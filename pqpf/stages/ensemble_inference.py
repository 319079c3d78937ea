"""The ``ensemble_inference.py`` stage: GRAF + the lead's U-Net and diffusion model -> ensemble members.

For (INIT, LEAD): makes sure the U-Net probabilities file exists (the ``resunet_inference``
stage, skipped when done: verification compares the members with it), loads the
registry's diffusion model for the lead and the U-Net it was trained against (refused
when the registry's U-Net for the lead has changed since), runs the U-Net once over the
full field (:func:`pqpf.diffusion.generate.unet_fields`), samples the members
(:func:`pqpf.diffusion.generate.sample_latent`), optionally gives them the U-Net's
marginals by ensemble copula coupling in the ranks of their latent variable
(:mod:`pqpf.diffusion.ecc`), and writes the store of :mod:`pqpf.io.ensemble_file` (zarr,
netCDF beside it on request), the postage stamps and the member GIF
(:mod:`pqpf.plot.ensemble`). Every output is written atomically; a rerun keeps finished
outputs made with the same settings and refuses ones made with others, unless ``overwrite``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf.calibration import FITTED_ON_VALIDATION, Calibration
from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh
from pqpf.device import select_device
from pqpf.diffusion.ecc import (
    DEFAULT_ECC_LEVEL_SMOOTHING_PX,
    DEFAULT_ECC_LEVELS,
    DEFAULT_ECC_SMOOTHING_PX,
    ECC_LEVELS,
    ensemble_copula_coupling,
    rank_template,
)
from pqpf.diffusion.generate import LoadedDiffusion, load_diffusion, sample_latent, unet_fields
from pqpf.diffusion.sampler import SamplerConfig
from pqpf.diffusion.target import inverse_transform_amount
from pqpf.errors import InputFileError, PqpfError
from pqpf.grid import Grid
from pqpf.hparams import diffusion_hparams_from_dict
from pqpf.io.checkpoint import load_checkpoint
from pqpf.io.ensemble_file import (
    EnsembleForecast,
    EnsembleProvenance,
    make_ensemble,
    read_ensemble_provenance,
    write_ensemble,
)
from pqpf.io.grib import read_graf
from pqpf.io.mrms_file import read_remapped_mrms
from pqpf.io.registry import Registry
from pqpf.io.terrain_file import read_terrain
from pqpf.layout import (
    ensemble_gif_path,
    ensemble_netcdf_path,
    ensemble_path,
    ensemble_stamps_png_path,
    mrms_remapped_path,
    registry_path,
    require_graf,
)
from pqpf.ordinal import bin_probs_from_exceedance, exceedance_probs
from pqpf.plot.ensemble import plot_postage_stamps, write_member_gif
from pqpf.plot.maps import forecast_title
from pqpf.predict import LoadedModel, load_resunet
from pqpf.stages.common import RangeReport, clean_temporaries, kept, run_range
from pqpf.stages.inference import InferenceSession, check_provenance, run_inference
from pqpf.stitching import inference_window, windows_per_call
from pqpf.terrain import Terrain
from pqpf.verify.ensemble_fields import unet_mean_amount

__all__ = ["Draw", "EnsembleRangeReport", "EnsembleResult", "ModelCache", "draw_members", "ensemble_product",
           "load_models_for_lead", "run_ensemble_inference", "run_ensemble_range"]

logger = logging.getLogger(__name__)


@dataclass
class EnsembleResult:
    store: Path
    stamps_png: Path | None
    gif: Path | None
    skipped: bool = False


#: What :func:`run_ensemble_range` did.
EnsembleRangeReport = RangeReport


class ModelCache:
    """The lead's U-Net, diffusion model and terrain, loaded on first use and kept: many
    inits in one process load them once."""

    def __init__(self) -> None:
        self._models: tuple[LoadedModel, LoadedDiffusion] | None = None
        self._session: InferenceSession | None = None
        self._key: tuple[int, str] | None = None

    def _check(self, lead_h: int, device: Any) -> None:
        if self._key != (lead_h, str(device)):
            self._models, self._session = None, None
            self._key = (lead_h, str(device))

    def models(self, config: Config, lead_h: int, device: Any) -> tuple[LoadedModel, LoadedDiffusion]:
        self._check(lead_h, device)
        if self._models is None:
            self._models = load_models_for_lead(config, lead_h, device)
        return self._models

    def session(self, config: Config, lead_h: int, device: Any) -> InferenceSession:
        """The U-Net's inference session (terrain, device, the U-Net of :meth:`models`)."""
        unet = self.models(config, lead_h, device)[0]
        if self._session is None:
            terrain = read_terrain(config.paths.terrain_file)
            check_provenance(unet, terrain, config.paths.terrain_file)
            self._session = InferenceSession(terrain, device, unet)
        return self._session


def load_models_for_lead(config: Config, lead_h: int, device: Any) -> tuple[LoadedModel, LoadedDiffusion]:
    """The registry's diffusion model for ``lead_h`` and the U-Net it was trained against.

    Raises
    ------
    PqpfError
        No diffusion model registered for the lead, or the registry's U-Net for the lead
        is not the one the diffusion model was trained against (retrain it).
    """
    registry = Registry(registry_path(config))
    diff_path = registry.checkpoint("diffusion", lead_h)
    if diff_path is None:
        raise PqpfError(f"no diffusion model registered for lead {lead_h} h in {registry.path}; "
                        f"run train_diffusion.py INIT {lead_h} first")
    diffusion = load_diffusion(load_checkpoint(diff_path, map_location=device), diff_path, device)
    unet_path = registry.checkpoint("resunet", lead_h)
    trained_on = Path(str(diffusion.record.extra.get("unet_checkpoint", "")))
    if unet_path is None:
        raise PqpfError(f"no U-Net registered for lead {lead_h} h in {registry.path}; {diff_path} was trained "
                        f"against {trained_on}")
    unet = load_resunet(load_checkpoint(unet_path, map_location=device), unet_path, device)
    digest = str(diffusion.record.extra.get("unet_weights_sha256", ""))
    # the U-Net is named by its weights (a trainings directory copied to another machine
    # keeps them); a diffusion checkpoint from before the digest, by the U-Net's path
    same = unet.weights_sha256 == digest if digest else trained_on.resolve() == unet_path.resolve()
    if not same:
        what = "other weights" if digest else "another file"
        raise PqpfError(f"{diff_path} was trained against the U-Net {trained_on}, but the registry's U-Net for "
                        f"lead {lead_h} h ({unet_path}) has {what}; retrain the diffusion model (train_diffusion.py)")
    return unet, diffusion


def _marginals(config: Config, unet: LoadedModel, prob_bins: NDArray[np.float64]
               ) -> tuple[NDArray[np.float64], bool]:
    """The U-Net's bin probabilities the members take (ECC) and the store's U-Net mean
    describes: calibrated when the probabilities file is (``[inference] calibrate``), so
    members and file agree. The denoiser's conditioning stays the raw output it was
    trained on."""
    calibration = unet.calibration
    if calibration is None or not config.inference.applies_calibration(unet.calibration_fitted_on):
        return prob_bins, False
    edges = unet.bin_edges_mm
    exceed = exceedance_probs(prob_bins, edges, edges[1:], dim=0)
    return bin_probs_from_exceedance(calibration.apply(exceed, edges[1:])), True


@dataclass
class Draw:
    """The members of one (INIT, LEAD) as sampled, before ECC (:func:`draw_members`)."""

    init: dt.datetime
    lead_h: int
    latent: NDArray[np.float32]  # (M, ny, nx): the model's z, log1p mm before clipping at 0
    bins: NDArray[np.float64]  # the U-Net's bin probabilities ECC uses (calibrated as the file is)
    calibrated: bool
    grid: Grid
    graf_mm: NDArray[np.float32]
    graf_path: Path
    seed: int
    sampler: SamplerConfig
    window: tuple[int, int]  # window, stride of the denoiser


def draw_members(config: Config, init: dt.datetime, lead_h: int, models: tuple[LoadedModel, LoadedDiffusion],
                 members: int, seed: int, device: Any, sampler: SamplerConfig, terrain: Terrain | None = None
                 ) -> Draw:
    """Sample the members of (INIT, LEAD) (nothing written); ``terrain`` read here when
    not given (then checked against the U-Net)."""
    unet, diffusion = models
    if terrain is None:
        terrain = read_terrain(config.paths.terrain_file)
        check_provenance(unet, terrain, config.paths.terrain_file)
    graf_path = require_graf(config, init, lead_h, prefer="laptop")
    graf = read_graf(graf_path, lead_h, init=init)
    if not graf.grid.same_as(terrain.grid):
        raise InputFileError(graf_path, f"grid ({graf.grid.describe()}) differs from the terrain file's")
    graf_mm = graf.values.astype(np.float32)
    missing = ~np.isfinite(graf_mm)
    inf = config.inference
    fields = unet_fields(unet, np.where(missing, np.float32(0.0), graf_mm), terrain, graf.valid_time,
                         tuple(diffusion.record.thresholds_mm), inf.window_px, inf.stride_px, inf.batch_size, device,
                         pad_mode=inf.pad_mode)
    # The denoiser on its training patch at half stride: its per-point norm makes it local,
    # and 200-px windows gave the laptop denoiser the same spectra (docs/diffusion_ensemble.md).
    window, stride = inference_window(inf.window_px, inf.stride_px, diffusion.record.patch_px, False)
    window = min(window, *graf_mm.shape)
    stride = min(stride, window)
    latent = sample_latent(diffusion, fields.cond, fields.central, members, seed, window, stride,
                           batch_size=windows_per_call(inf.batch_size, window), device=device, sampler=sampler)
    bins, calibrated = _marginals(config, unet, fields.prob_bins)
    return Draw(init, lead_h, latent, bins, calibrated, graf.grid, graf_mm, graf_path, seed, sampler,
                (window, stride))


def ensemble_product(config: Config, draw: Draw, models: tuple[LoadedModel, LoadedDiffusion], ecc: str,
                     ecc_smoothing_px: float = DEFAULT_ECC_SMOOTHING_PX,
                     ecc_level_smoothing_px: float = DEFAULT_ECC_LEVEL_SMOOTHING_PX) -> EnsembleForecast:
    """The product of a :class:`Draw`: raw members (``ecc="off"``) or ECC members with the
    given levels, rank smoothing and (ECC-S) level smoothing (nothing written)."""
    unet, diffusion = models
    missing = ~np.isfinite(draw.graf_mm)
    if ecc == "off":
        amounts = inverse_transform_amount(draw.latent)
    else:
        amounts = ensemble_copula_coupling(rank_template(draw.latent, ecc_smoothing_px), draw.bins,
                                           unet.bin_edges_mm, rng=draw.seed, levels=ecc,
                                           level_smoothing_px=ecc_level_smoothing_px)
    amounts[:, missing] = np.nan
    s = draw.sampler
    provenance = EnsembleProvenance(
        unet_checkpoint=str(unet.checkpoint), diffusion_checkpoint=str(diffusion.checkpoint), seed=draw.seed,
        ecc=ecc != "off",
        sampler={"n_steps": s.n_steps, "sigma_min": s.sigma_min, "sigma_max": s.sigma_max, "rho": s.rho,
                 "s_churn": s.s_churn, "s_noise": s.s_noise, "s_min": s.s_min,
                 "s_max": s.s_max if math.isfinite(s.s_max) else "inf", "window_px": draw.window[0],
                 "stride_px": draw.window[1]},
        extra={"graf_file": str(draw.graf_path), "diffusion_hparams": str(diffusion.record.hparams.get("name")),
               "unet_calibrated": int(draw.calibrated),
               "unet_calibration_sha256": unet.calibration.digest() if draw.calibrated and unet.calibration else "",
               **({} if ecc == "off" else {"ecc_levels": ecc, "ecc_smoothing_px": float(ecc_smoothing_px)}),
               **({"ecc_level_smoothing_px": _px_attr(ecc_level_smoothing_px)} if ecc == "stratified" else {})})
    mean_mm = np.where(missing, np.nan, unet_mean_amount(draw.bins, unet.bin_edges_mm))
    return make_ensemble(draw.grid, amounts, draw.init, draw.lead_h, tuple(config.probability.thresholds_mm),
                         provenance, graf_mm=draw.graf_mm, unet_mean_mm=mean_mm)


def _px_attr(px: float) -> float | str:
    """A smoothing in grid points as a store attribute (``"inf"``: JSON has no infinity)."""
    return float(px) if math.isfinite(px) else "inf"


def _plots(config: Config, ens: EnsembleForecast, stamps: Path, gif: Path) -> None:
    mrms_file = mrms_remapped_path(config, ens.valid)
    mrms = read_remapped_mrms(mrms_file) if mrms_file.is_file() else None
    obs = None if mrms is None else mrms.precipitation_mm
    title = forecast_title(f"GRAF + U-Net + diffusion, {ens.n_members} members", ens.init, ens.lead_h)
    deterministic = [(label, f) for label, f in (("U-Net mean", ens.unet_mean_mm), ("GRAF", ens.graf_mm))
                     if f is not None]
    plot_postage_stamps(stamps, ens.grid, ens.members_mm, title, mrms_mm=obs,
                        quality=None if mrms is None else mrms.quality, min_quality=config.mrms.min_quality,
                        deterministic=deterministic)
    write_member_gif(gif, ens.grid, ens.members_mm, title, mrms_mm=obs)


def _same(a: object, b: object) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)


def _made_now(config: Config, lead_h: int) -> dict[str, object]:
    """What a fresh run for ``lead_h`` would use: the registry's checkpoints, the diffusion
    model's sampler and whether the members take calibrated marginals (records only; no
    network is built). Empty when a model is missing (the fresh run would fail and say so)."""
    registry = Registry(registry_path(config))
    diff_path, unet_path = registry.checkpoint("diffusion", lead_h), registry.checkpoint("resunet", lead_h)
    if diff_path is None or unet_path is None or not diff_path.is_file() or not unet_path.is_file():
        return {}
    sampler = diffusion_hparams_from_dict(load_checkpoint(diff_path).model.hparams, f"{diff_path}: hparams").sampler
    calibration = load_checkpoint(unet_path).model.extra.get("calibration")
    fitted_on = None if calibration is None else str(calibration.get("fitted_on", FITTED_ON_VALIDATION))
    applied = calibration is not None and config.inference.applies_calibration(fitted_on)
    try:
        digest = Calibration.from_dict(calibration).digest() if calibration and applied else ""
    except ValueError:  # a malformed record: loading the U-Net says so
        digest = ""
    return {"diffusion": diff_path.resolve(), "unet": unet_path.resolve(), "steps": sampler.n_steps,
            "churn": sampler.s_churn, "calibrated": int(applied), "calibration_sha256": digest}


def _check_kept(config: Config, lead_h: int, store: Path, members: int, seed: int, mode: str, steps: int | None,
                churn: float | None, ranks: str | None, levels_px: float) -> None:
    """Refuse to keep an existing store made with other settings than asked for: a rerun
    that only logged "exists" would leave, say, ECC-Q members where ECC-M ones were asked
    for, and verification would score them. Beside the arguments, the store must come from
    the registry's current models, with their sampler where ``steps``/``churn`` are not
    given, and (ECC on) marginals calibrated as ``[inference] calibrate`` now makes them;
    a store from before ``unet_calibrated`` was recorded took the raw marginals."""
    have, n = read_ensemble_provenance(store)
    now = _made_now(config, lead_h)
    pairs: list[tuple[str, object, object]] = [("members", n, members), ("seed", have.seed, seed),
                                               ("ECC", have.ecc_mode, mode)]
    if steps is not None or now:
        pairs.append(("steps", have.sampler.get("n_steps"), steps if steps is not None else now["steps"]))
    if churn is not None or now:
        pairs.append(("churn", have.sampler.get("s_churn"), churn if churn is not None else now["churn"]))
    if ranks is not None:
        pairs.append(("ECC ranks", have.ecc_template, ranks))
    if mode == "stratified" and have.ecc_mode == mode:
        pairs.append(("ECC level smoothing (px)", have.ecc_level_smoothing_px, _px_attr(levels_px)))
    if now:
        for name, made in (("diffusion", have.diffusion_checkpoint), ("unet", have.unet_checkpoint)):
            if made and Path(made).resolve() != now[name]:
                pairs.append((f"{name} model", made, now[name]))
        if mode != "off":
            pairs.append(("calibrated marginals", int(have.extra.get("unet_calibrated", 0)), now["calibrated"]))
            made_map = have.extra.get("unet_calibration_sha256")  # not recorded before 2026-12-06
            if made_map and now["calibration_sha256"]:
                pairs.append(("calibration map", made_map, now["calibration_sha256"]))
    differ = [f"{name} {made} (asked {asked})" for name, made, asked in pairs if not _same(made, asked)]
    if differ:
        raise PqpfError(f"{store} was made with other settings: {', '.join(differ)}; --overwrite replaces it")


def run_ensemble_inference(config: Config, init: dt.datetime, lead_h: int, members: int = 16, seed: int = 0,
                           ecc: bool = True, device: str = "auto", overwrite: bool = False, plot: bool = True,
                           netcdf: bool = False, steps: int | None = None,
                           churn: float | None = None, ecc_levels: str = DEFAULT_ECC_LEVELS,
                           ecc_smoothing_px: float = DEFAULT_ECC_SMOOTHING_PX,
                           ecc_level_smoothing_px: float = DEFAULT_ECC_LEVEL_SMOOTHING_PX,
                           cache: ModelCache | None = None) -> EnsembleResult:
    """The stage behind ``ensemble_inference.py INIT LEAD``.

    Parameters
    ----------
    members : int
        Ensemble size, >= 1.
    seed : int
        Sampler seed, >= 0: the same seed gives the same members.
    ecc : bool
        Give the members the U-Net's marginals in their own ranks (ensemble copula
        coupling); the default, chosen by the scores in docs/diffusion_ensemble.md.
    ecc_levels : {"quantile", "stratified", "mean"}
        With ``ecc``: each rank's value the quantile at the midpoint of its interval (ECC-Q)
        or at a level drawn inside it (ECC-S, the default, also by those scores), or the
        interval's mean (ECC-M), :mod:`pqpf.diffusion.ecc`.
    ecc_smoothing_px : float
        With ``ecc``: the members are ranked by their variable z (log1p mm before clipping
        at 0) Gaussian-smoothed over this many grid points (:func:`pqpf.diffusion.ecc.rank_template`;
        0: z itself); the values at each point do not depend on it, their arrangement does.
    ecc_level_smoothing_px : float
        With ECC-S: each member's level inside its interval comes from a smooth random field
        over this many grid points (0: independent at every point; ``inf``: one per member).
    netcdf : bool
        Also write the store as netCDF beside it.
    steps, churn : int, float, optional
        Heun steps and ``S_churn`` instead of the diffusion model's hyper-parameter set
        (``sampler.n_steps``, ``sampler.s_churn``); the store's attributes record the
        sampler used.
    cache : ModelCache, optional
        Models kept between calls (:func:`run_ensemble_range`); loaded here when absent.

    Raises
    ------
    PqpfError
        Bad arguments, missing models; InputFileError for a missing or corrupt input.
    """
    if members < 1 or seed < 0:
        raise PqpfError(f"--members must be >= 1 and --seed >= 0, got {members} and {seed}")
    if (steps is not None and steps < 1) or (churn is not None and not (math.isfinite(churn) and churn >= 0)):
        raise PqpfError(f"--steps must be >= 1 and --churn >= 0, got {steps} and {churn}")
    if ecc_levels not in ECC_LEVELS:
        raise PqpfError(f"--ecc-levels must be one of {', '.join(ECC_LEVELS)}, got {ecc_levels!r}")
    if not (math.isfinite(ecc_smoothing_px) and ecc_smoothing_px >= 0):
        raise PqpfError(f"--ecc-smoothing must be >= 0, got {ecc_smoothing_px}")
    if math.isnan(ecc_level_smoothing_px) or ecc_level_smoothing_px < 0:
        raise PqpfError(f"--ecc-level-smoothing must be >= 0 (or inf), got {ecc_level_smoothing_px}")
    mode = ecc_levels if ecc else "off"
    store = ensemble_path(config, init, lead_h)
    stamps, gif = ensemble_stamps_png_path(config, init, lead_h), ensemble_gif_path(config, init, lead_h)
    nc = ensemble_netcdf_path(config, init, lead_h) if netcdf else None
    outputs = [p for p in (store, nc, *((stamps, gif) if plot else ())) if p is not None]
    if not overwrite and all(p.exists() for p in outputs):  # before kept() logs that they are kept
        template = f"z smoothed {float(ecc_smoothing_px):g} px" if ecc else None
        _check_kept(config, lead_h, store, members, seed, mode, steps, churn, template, ecc_level_smoothing_px)
    if kept(*outputs, overwrite=overwrite):
        return EnsembleResult(store, stamps if plot else None, gif if plot else None, skipped=True)
    clean_temporaries(store.parent, stamps.parent)
    dev = select_device(device)
    cache = cache or ModelCache()
    models, session = cache.models(config, lead_h, dev), cache.session(config, lead_h, dev)
    run_inference(config, init, lead_h, device=device, plot=plot, session=session)  # verification reads it
    base = models[1].sampler
    sampler = replace(base, n_steps=base.n_steps if steps is None else steps,
                      s_churn=base.s_churn if churn is None else churn)
    draw = draw_members(config, init, lead_h, models, members, seed, dev, sampler, session.terrain)
    ens = ensemble_product(config, draw, models, mode, ecc_smoothing_px, ecc_level_smoothing_px)
    write_ensemble(store, ens, netcdf_path=nc)
    if plot:
        _plots(config, ens, stamps, gif)
    logger.info("%s +%d h: %d members (seed %d, ECC %s, %d Heun steps, churn %g) -> %s", format_yyyymmddhh(init),
                lead_h, members, seed, mode, sampler.n_steps, sampler.s_churn, store)
    return EnsembleResult(store, stamps if plot else None, gif if plot else None)


def run_ensemble_range(config: Config, inits: list[dt.datetime], lead_h: int, **options: Any) -> EnsembleRangeReport:
    """Many inits of one lead in one process (``ensemble_inference.py INIT LEAD --until END``):
    the models are loaded once; ``options`` are :func:`run_ensemble_inference`'s.

    An init whose own input is missing or damaged (its GRAF file, an unreadable kept
    store) is counted as failed and the rest run; the registry, a model or the terrain
    failing, or any other error (a full disk), stops the range.
    """
    cache = ModelCache()

    def one(init: dt.datetime) -> tuple[Path, bool]:
        result = run_ensemble_inference(config, init, lead_h, cache=cache, **options)
        return result.store, result.skipped

    return run_range(config, inits, one)
