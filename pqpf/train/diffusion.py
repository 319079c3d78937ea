"""The EDM diffusion model's family for the training loop (:mod:`pqpf.train.loop`).

StormCast's residual formulation with the lead's trained U-Net as the regression stage:

* Conditioning: the U-Net's normalised feature channels plus its summaries of the same
  patch (:func:`pqpf.diffusion.target.unet_summaries`: central estimate ``mu`` and spread
  of ``log1p`` amount, ``P(Y >= t)`` at the site thresholds), computed on the fly by the
  frozen U-Net (its EMA-free inference weights) in eval mode.
* Target: ``log1p(MRMS) - mu`` (:func:`pqpf.diffusion.target.residual_target`).
* Loss: :func:`pqpf.diffusion.edm.masked_edm_loss` (EDM weighting, log-normal noise
  levels), weighted by the quality mask times the sampling weights.
* EMA weights (:class:`pqpf.train.ema.EmaWeights`) updated after every optimiser
  step; validation, the test split and the checkpoint's ``ema`` use them.
* Evaluation: the masked EDM loss at the fixed noise levels ``eval_sigmas`` with noise
  drawn per patch from a generator seeded by the patch index, so the score is
  deterministic and does not depend on the batch size or the number of processes.

Exact resume: the loop reseeds torch every epoch (the training noise draws from the
global generator), the EMA average is the checkpoint's ``ema`` and its sample count is
in the record's ``extra``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pqpf.diffusion.edm import EDMDenoiser, masked_edm_loss
from pqpf.diffusion.network import build_network
from pqpf.diffusion.target import residual_target, unet_summaries
from pqpf.errors import PqpfError
from pqpf.hparams import DiffusionHParams, hparams_to_dict
from pqpf.io.checkpoint import Checkpoint, ModelRecord
from pqpf.io.patchfile import PatchSet
from pqpf.predict import LoadedModel
from pqpf.train.batches import BatchSource, BatchSpec, plan_evaluation
from pqpf.train.distributed import DistributedContext
from pqpf.train.ema import EmaWeights
from pqpf.train.family import Column, StepResult

if TYPE_CHECKING:
    import torch

__all__ = ["DiffusionFamily", "conditioning_names", "check_unet_matches"]

logger = logging.getLogger(__name__)

_BLOCK = 64


def conditioning_names(feature_names: Sequence[str], thresholds_mm: Sequence[float]) -> tuple[str, ...]:
    """Names of the denoiser's conditioning channels: features, then the U-Net summaries."""
    return (*feature_names, "unet_mu_log1p", "unet_std_log1p", *(f"unet_prob_ge_{t:g}mm" for t in thresholds_mm))


def check_unet_matches(unet: LoadedModel, header: dict[str, Any], init: str, thresholds_mm: Sequence[float]) -> None:
    """Refuse a U-Net trained for another INIT, grid or bins than these patches (one line)."""
    record = unet.record
    where = f"the registry's U-Net {unet.checkpoint}"
    if record.init != init:
        raise PqpfError(f"{where} was trained for INIT {record.init}, not {init}; train the U-Net for {init} first")
    grid = str(header.get("grid_fingerprint", ""))
    if record.grid_fingerprint and grid and record.grid_fingerprint != grid:
        raise PqpfError(f"{where} was trained on another grid ({record.grid_fingerprint[:12]}) than these patches "
                        f"({grid[:12]})")
    missing = [t for t in thresholds_mm if not any(abs(t - e) < 1e-9 for e in record.bin_edges_mm)]
    if missing or tuple(record.thresholds_mm) != tuple(float(t) for t in thresholds_mm):
        raise PqpfError(f"{where} has bins {list(record.bin_edges_mm)} and thresholds {list(record.thresholds_mm)}, "
                        f"these patches thresholds {list(thresholds_mm)}")


class DiffusionFamily:
    """Everything the training loop needs to train the EDM residual model of one lead.

    Parameters
    ----------
    hp : DiffusionHParams
    unet : LoadedModel
        The lead's trained U-Net (eval mode), checked with :func:`check_unet_matches`.
    train_set : PatchSet
    min_quality : float
        ``[mrms] min_quality``: poorer points are masked.
    """

    kind = "diffusion"
    score_name = "edm"

    def __init__(self, hp: DiffusionHParams, unet: LoadedModel, train_set: PatchSet, min_quality: float) -> None:
        self.hp = hp
        self.hparams: dict[str, Any] = hparams_to_dict(hp)
        self.unet = unet
        self.train_set = train_set
        self.min_quality = float(min_quality)
        self.thresholds = tuple(float(t) for t in train_set.thresholds_mm)
        self.cond_names = conditioning_names(unet.channel_names, self.thresholds)
        self.ema: EmaWeights | None = None
        self._net: torch.nn.Module | None = None
        self.sigma_data = float(hp.sigma_data) if hp.sigma_data > 0 else self._estimate_sigma_data()

    # -- the U-Net's side --

    def conditioning(self, features: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditioning (B, C_cond, H, W) and central estimate ``mu`` (B, 1, H, W) of a batch."""
        import torch

        net = self.unet.net.to(device)
        x = self.unet.normalisation.apply_torch(features.to(device, non_blocking=True))
        with torch.no_grad():
            probs = torch.softmax(net(x).float(), dim=1)
            summaries = unet_summaries(probs, self.unet.bin_edges_mm, self.thresholds, dim=1)
        return torch.cat([x, summaries], dim=1), summaries[:, :1]

    def _targets(self, batch: dict[str, Any], device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Conditioning, residual target (B, 1, H, W) and point weights (B, 1, H, W)."""
        cond, central = self.conditioning(batch["features"], device)
        obs = batch["mrms"].to(device, non_blocking=True)[:, None]
        mask = batch["mask"].to(device, non_blocking=True)[:, None]
        w = batch["weights"].to(device, non_blocking=True)
        weight = mask.float() * w[:, None, None, None]
        return cond, residual_target(obs, central), weight

    def _estimate_sigma_data(self) -> float:
        """RMS of the residual over the training split's valid points (quality x weights)."""
        import torch

        plan = plan_evaluation(len(self.train_set), _BLOCK, 0, 1)
        source = BatchSource(self.train_set, plan, self.batch_spec(self.train_set))
        sums = np.zeros(2)
        for k in range(len(source)):
            _, residual, weight = self._targets(source[k], torch.device("cpu"))
            sums += (float((weight * torch.where(weight > 0, residual, 0.0) ** 2).sum()), float(weight.sum()))
        if sums[1] <= 0:
            raise PqpfError("no valid MRMS point in the training patches to estimate sigma_data from")
        sigma = math.sqrt(sums[0] / sums[1])
        logger.info("sigma_data %.4f (RMS of the residual in log1p mm over the training split)", sigma)
        return max(sigma, 1e-3)

    # -- construction --

    def batch_spec(self, data: PatchSet) -> BatchSpec:
        scale = float(np.mean(data.weights)) if len(data) else 1.0
        return BatchSpec(self.min_quality, self.unet.time_features, self.hp.use_sampling_weights, scale)

    def build(self) -> EDMDenoiser:
        net = EDMDenoiser(build_network(1, len(self.cond_names), self.hp.denoiser), self.sigma_data)
        self._net = net
        return net

    def start_fresh(self, net: torch.nn.Module) -> None:
        self.ema = EmaWeights(net, self.hp.ema_halflife_samples, self.hp.ema_rampup or None)

    def start_warm(self, net: torch.nn.Module, source: Checkpoint, path: Path) -> None:
        raise PqpfError(f"--init-from {path}: warm starts are not supported for diffusion models")

    def restore(self, checkpoint: Checkpoint) -> None:
        if self._net is None or checkpoint.ema is None:
            raise PqpfError("cannot restore a diffusion training without its network and EMA weights")
        extra = checkpoint.model.extra
        trained_on = str(extra.get("unet_weights_sha256", ""))
        if trained_on and trained_on != self.unet.weights_sha256:  # the U-Net retrained since
            raise PqpfError(f"--resume: the diffusion training so far was conditioned on a U-Net with other weights "
                            f"than {self.unet.checkpoint}; start again with --overwrite")
        self.sigma_data = float(extra.get("sigma_data", self.sigma_data))
        if isinstance(self._net, EDMDenoiser):
            self._net.sigma_data = self.sigma_data
        self.ema = EmaWeights.restored(self._net, checkpoint.ema, self.hp.ema_halflife_samples,
                                       self.hp.ema_rampup or None, int(extra.get("ema_samples_seen", 0)))

    # -- training and evaluation --

    def train_step(self, model: Callable[[torch.Tensor], torch.Tensor], batch: dict[str, Any],
                   device: torch.device, autocast: Callable[[], AbstractContextManager[Any]]) -> StepResult:
        cond, clean, weight = self._targets(batch, device)
        with autocast():
            loss, weight_sum = masked_edm_loss(model, clean, weight, cond, sigma_data=self.sigma_data,  # type: ignore[arg-type]
                                               p_mean=self.hp.p_mean, p_std=self.hp.p_std)
        return StepResult(loss.float(), float(loss.detach()), float(weight_sum), int(clean.shape[0]))

    def after_step(self, net: torch.nn.Module, samples: int) -> None:
        if self.ema is None:
            self.ema = EmaWeights(net, self.hp.ema_halflife_samples, self.hp.ema_rampup or None)
        self.ema.update(net, samples)

    def after_epoch(self, net: torch.nn.Module, device: torch.device, epoch: int) -> None:
        """Nothing: the denoiser has no batch norm."""

    def averaged_weights(self) -> dict[str, Any] | None:
        return None if self.ema is None else dict(self.ema.average)

    def _eval_noise(self, index: torch.Tensor, level: int, shape: Sequence[int]) -> torch.Tensor:
        import torch

        gens = [torch.Generator().manual_seed(self.hp.seed * 1_000_003 + int(i) * 101 + level) for i in index]
        return torch.stack([torch.randn(tuple(shape), generator=g) for g in gens])

    def evaluate(self, net: torch.nn.Module, data: PatchSet, device: torch.device, ctx: DistributedContext,
                 batch_size: int) -> dict[str, float]:
        """EDM loss of the EMA weights at the fixed noise levels (mean over them), and per level."""
        import torch

        model = copy.deepcopy(net) if self.ema is None else self.ema.applied_copy(net)
        model.eval()
        sigmas = self.hp.eval_sigmas
        plan = plan_evaluation(len(data), batch_size, ctx.rank, ctx.world_size)
        source = BatchSource(data, plan, self.batch_spec(data))
        sums = np.zeros((len(sigmas), 2), dtype=np.float64)
        with torch.no_grad():
            for k in range(len(source)):
                b = source[k]
                cond, clean, weight = self._targets(b, device)
                for j, s in enumerate(sigmas):
                    noise = self._eval_noise(b["index"], j, clean.shape[1:]).to(device)
                    sigma = torch.full((clean.shape[0],), float(s), device=device)
                    loss, wsum = masked_edm_loss(model, clean, weight, cond, sigma_data=self.sigma_data, sigma=sigma,
                                                 noise=noise)
                    sums[j] += (float(loss) * float(wsum), float(wsum))
        sums = ctx.all_reduce_sum(sums)
        per_level = sums[:, 0] / np.maximum(sums[:, 1], 1e-12)
        out = {"score": float(per_level.mean()), "n_patches": float(len(data))}
        out.update({f"edm_s{s:g}": float(v) for s, v in zip(sigmas, per_level)})
        return out

    # -- records and reports --

    def record(self, init: str, lead_h: int) -> ModelRecord:
        header = self.train_set.header
        unet = self.unet.record
        return ModelRecord(
            kind=self.kind, hparams=self.hparams, init=init, lead_h=int(lead_h), channel_names=unet.channel_names,
            feature_schema_version=unet.feature_schema_version, normalisation=unet.normalisation,
            bin_edges_mm=unet.bin_edges_mm, thresholds_mm=self.thresholds, patch_px=self.train_set.patch_px,
            grid_fingerprint=str(header.get("grid_fingerprint", unet.grid_fingerprint)),
            terrain_smoothing_sigma_px=unet.terrain_smoothing_sigma_px, min_quality=unet.min_quality,
            extra={"sigma_data": self.sigma_data, "cond_names": list(self.cond_names),
                   "unet_checkpoint": str(self.unet.checkpoint), "unet_init": unet.init,
                   "unet_weights_sha256": self.unet.weights_sha256,
                   "ema_samples_seen": 0 if self.ema is None else self.ema.samples_seen},
        )

    def columns(self) -> Sequence[Column]:
        return [Column(f"s={s:g}", f"edm_s{s:g}", "7.4f") for s in self.hp.eval_sigmas]

    def describe_test(self, scores: dict[str, float]) -> str:
        return (f"held-out test split ({scores['n_patches']:.0f} patches): EDM loss of the EMA weights "
                f"{scores[self.score_name]:.5f} (mean over sigma {', '.join(f'{s:g}' for s in self.hp.eval_sigmas)})")
