"""Ensemble members from a trained diffusion model: arrays in, member amounts out.

:func:`load_diffusion` rebuilds the denoiser of a checkpoint with its EMA weights (the
checkpoint is loaded with ``weights_only=True`` by :func:`pqpf.io.checkpoint.load_checkpoint`);
:func:`unet_fields` runs the lead's U-Net once over the full field (the tent-weight
stitcher of :func:`pqpf.predict.predict_reduced`, reducing every window's bin
probabilities to exceedances at every bin edge and the conditioning summaries before
blending); :func:`sample_members` draws members with Heun's EDM sampler on the whole
grid, the denoiser run on tent-blended windows at every step
(:func:`pqpf.diffusion.sampler.stitched_denoiser`). Member ``m`` of seed ``s`` is the same
whichever other members are drawn with it, so members are sampled in batches of
``member_batch`` to bound memory. No file is touched here.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pqpf.diffusion.edm import EDMDenoiser
from pqpf.diffusion.network import build_network
from pqpf.diffusion.sampler import SamplerConfig, heun_sample, member_generators, stitched_denoiser
from pqpf.diffusion.target import inverse_transform_amount, summaries_from_reduced, summary_matrix
from pqpf.errors import InputFileError
from pqpf.features import FEATURE_SCHEMA_VERSION
from pqpf.hparams import diffusion_hparams_from_dict
from pqpf.io.checkpoint import Checkpoint, ModelRecord
from pqpf.ordinal import bin_probs_from_exceedance, exceedance_matrix
from pqpf.predict import LoadedModel, predict_reduced
from pqpf.stitching import inference_window, windows_per_call

__all__ = ["LoadedDiffusion", "UNetFields", "load_diffusion", "unet_fields", "sample_latent", "sample_members"]

logger = logging.getLogger(__name__)


@dataclass
class LoadedDiffusion:
    """A trained denoiser (EMA weights, eval mode) with its record and sampler settings."""

    denoiser: EDMDenoiser
    record: ModelRecord
    checkpoint: Path
    sampler: SamplerConfig

    @property
    def cond_names(self) -> tuple[str, ...]:
        return tuple(self.record.extra["cond_names"])


@dataclass
class UNetFields:
    """The U-Net's full-field output the members need.

    Attributes
    ----------
    cond : float32 (C_cond, ny, nx)
        Normalised features, then ``mu``, ``std(log1p Y)``, ``P(Y >= t)``.
    central : float32 (ny, nx)
        ``mu``, the central estimate in log1p mm.
    prob_bins : float64 (K, ny, nx)
        Bin probabilities (for ensemble copula coupling and the mean amount).
    """

    cond: NDArray[np.float32]
    central: NDArray[np.float32]
    prob_bins: NDArray[np.float64]


def load_diffusion(checkpoint: Checkpoint, path: Path, device: torch.device | str) -> LoadedDiffusion:
    """Rebuild the denoiser of a diffusion checkpoint with its EMA weights, in eval mode.

    Raises
    ------
    InputFileError
        Another model kind or feature schema, a record without the diffusion fields, or
        weights that do not fit the network the hyper-parameters describe.
    """
    record = checkpoint.model
    if record.kind != "diffusion":
        raise InputFileError(path, f"a {record.kind} checkpoint, not a diffusion one")
    if record.feature_schema_version != FEATURE_SCHEMA_VERSION:
        raise InputFileError(path, f"trained on feature schema {record.feature_schema_version}, this pqpf "
                             f"builds {FEATURE_SCHEMA_VERSION}; retrain")
    if checkpoint.ema is None or "cond_names" not in record.extra or "sigma_data" not in record.extra:
        raise InputFileError(path, "diffusion checkpoint lacks its EMA weights, cond_names or sigma_data")
    hp = diffusion_hparams_from_dict(record.hparams, f"{path}: hparams")
    net = EDMDenoiser(build_network(1, len(record.extra["cond_names"]), hp.denoiser), float(record.extra["sigma_data"]))
    try:
        net.load_state_dict(checkpoint.inference_weights())
    except RuntimeError as exc:
        raise InputFileError(path, f"weights do not fit the network ({str(exc).splitlines()[0]})") from None
    s = hp.sampler
    sampler = SamplerConfig(n_steps=s.n_steps, sigma_min=s.sigma_min, sigma_max=s.sigma_max, rho=s.rho,
                            s_churn=s.s_churn)
    return LoadedDiffusion(net.to(device).eval(), record, path, sampler)


def unet_fields(unet: LoadedModel, graf_mm: NDArray[np.float32], terrain: Any, valid_time: dt.datetime,
                thresholds_mm: tuple[float, ...], window_px: int, stride_px: int, batch_size: int, device: Any,
                pad_mode: str = "reflect") -> UNetFields:
    """Conditioning, central estimate and bin probabilities of the U-Net over the full field.

    Parameters as :func:`pqpf.predict.predict_probabilities`; ``thresholds_mm`` are the
    ones the diffusion model's conditioning holds (its record's ``thresholds_mm``).
    """
    edges = unet.bin_edges_mm
    exc = exceedance_matrix(edges, tuple(edges[1:]))
    reduction = np.concatenate([exc, summary_matrix(edges, thresholds_mm)], axis=0)
    reduced, x = predict_reduced(unet, graf_mm, terrain, valid_time, reduction, window_px, stride_px, batch_size,
                                 device, pad_mode)
    k1 = exc.shape[0]
    summaries = summaries_from_reduced(reduced[k1:].astype(np.float64), dim=0).astype(np.float32)
    bins = bin_probs_from_exceedance(np.clip(reduced[:k1], 0.0, 1.0))
    return UNetFields(np.concatenate([x, summaries], axis=0), summaries[0], bins)


def sample_members(model: LoadedDiffusion, cond: NDArray[np.float32], central: NDArray[np.float32],
                   n_members: int, seed: int, window_px: int, stride_px: int, batch_size: int = 16,
                   member_batch: int = 4, device: torch.device | str = "cpu",
                   sampler: SamplerConfig | None = None) -> NDArray[np.float32]:
    """Member amounts (mm, >= 0): :func:`sample_latent` through ``max(expm1(z), 0)``."""
    return inverse_transform_amount(sample_latent(model, cond, central, n_members, seed, window_px, stride_px,
                                                  batch_size, member_batch, device, sampler))


def sample_latent(model: LoadedDiffusion, cond: NDArray[np.float32], central: NDArray[np.float32],
                  n_members: int, seed: int, window_px: int, stride_px: int, batch_size: int = 16,
                  member_batch: int = 4, device: torch.device | str = "cpu",
                  sampler: SamplerConfig | None = None) -> NDArray[np.float32]:
    """Draw ``n_members`` members over the whole grid, deterministic by ``seed``, as the
    model's variable ``z = central + residual`` (log1p mm, not clipped: a dry member's z
    is below 0 by how dry the model made it there).

    Parameters
    ----------
    cond : float32 (C_cond, ny, nx)
        :attr:`UNetFields.cond` (its channels must be the model's ``cond_names``).
    central : float32 (ny, nx)
        The U-Net's central estimate (log1p mm); members are ``expm1(mu + residual)``.
    window_px, stride_px, batch_size : int
        Stitching of the denoiser at every solver step (each 0: the default, the training
        patch at half stride, :func:`pqpf.stitching.inference_window`; the window capped by
        the grid).
    member_batch : int
        Members sampled together (memory grows with it; the result does not change).
    sampler : SamplerConfig, optional
        Default: the model's hyper-parameters.

    Returns
    -------
    float32 (M, ny, nx)
        The members' z; the amount is ``max(expm1(z), 0)``.
    """
    if n_members < 1 or member_batch < 1:
        raise ValueError(f"n_members and member_batch must be >= 1, got {n_members}, {member_batch}")
    if cond.shape[0] != len(model.cond_names) or cond.shape[1:] != central.shape:
        raise ValueError(f"cond must have {len(model.cond_names)} channels over central's {central.shape}, "
                         f"got {cond.shape}")
    ny, nx = central.shape
    window, stride = inference_window(window_px, stride_px, model.record.patch_px, False)
    window = min(window, ny, nx)
    dev = torch.device(device)
    denoise = stitched_denoiser(model.denoiser, torch.from_numpy(np.ascontiguousarray(cond)).to(dev), window,
                                min(stride, window), batch_size=windows_per_call(batch_size, window), device=dev)
    out = np.empty((n_members, ny, nx), dtype=np.float32)
    for start in range(0, n_members, member_batch):
        idx = list(range(start, min(n_members, start + member_batch)))
        residual = heun_sample(denoise, (1, ny, nx), member_generators(seed, idx), sampler or model.sampler,
                               device=dev)
        out[idx] = residual[:, 0].cpu().numpy() + central[None]
        logger.info("sampled members %d-%d of %d", idx[0] + 1, idx[-1] + 1, n_members)
    return out
