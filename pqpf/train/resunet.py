"""The residual U-Net's model family for the training loop (:mod:`pqpf.train.loop`).

* Inputs: the patch features with the normalisation of the training split (weighted by
  the sampling weights, so it describes the climatology rather than the wet-favouring
  sample), augmented by the dihedral group (:mod:`pqpf.augment`) when ``augment``.
* A fresh network's output layer starts from the training climatology of the bins.
* After every epoch the batch-norm statistics are recomputed on a fixed draw of training
  patches (``bn_stats_samples``), before the evaluation and the checkpoint.
* Loss: the masked ordinal score of :mod:`pqpf.model.loss` (the RPS plus
  ``log_score_weight`` times the log score) weighted by the sampling weights. The
  gradient uses a fixed denominator (the expected weighted count of valid points of a
  batch), not each batch's own weight sum: every patch's contribution is then
  proportional to its sampling weight whatever else is in the batch, and the mean
  gradient estimates that of the population's score.
* Evaluation: the weighted score (selection criterion) and Brier scores of the model and
  of the smoothed-GRAF reference, accumulated by the verification module's
  :class:`~pqpf.verify.verifier.Verifier` and summed over ranks.
* Optional EMA of the weights (``ema_halflife_samples > 0``): then the evaluation, hence
  the choice of the best epoch, uses the averaged weights, which the checkpoint keeps as
  its ``ema`` and inference applies.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pqpf.augment import augment_batch_torch
from pqpf.errors import PqpfError
from pqpf.features import TIME_CHANNELS, append_time_channels
from pqpf.hparams import HParams, hparams_to_dict
from pqpf.io.checkpoint import Checkpoint, ModelRecord
from pqpf.io.patchfile import PatchSet
from pqpf.model.loss import masked_rps_loss
from pqpf.model.norms import recompute_batchnorm_statistics
from pqpf.model.resunet import ResUNet, build_resunet
from pqpf.normalisation import Normalisation, NormalisationAccumulator
from pqpf.ordinal import bin_index, exceedance_probs, probs_from_logits
from pqpf.quality import good_quality_mask
from pqpf.train.batches import BatchSource, BatchSpec, plan_epoch, plan_evaluation
from pqpf.train.distributed import DistributedContext
from pqpf.train.ema import EmaWeights
from pqpf.train.family import Column, StepResult
from pqpf.verify.verifier import Verifier

if TYPE_CHECKING:
    import torch

__all__ = ["ResUNetFamily", "DIAGNOSTIC_THRESHOLDS_MM"]

logger = logging.getLogger(__name__)

#: Thresholds (mm) whose Brier skill is printed every epoch.
DIAGNOSTIC_THRESHOLDS_MM = (1.0, 5.0)
_BLOCK = 256


def _training_normalisation(data: PatchSet, channel_names: tuple[str, ...], hp: HParams) -> Normalisation:
    """Per-channel statistics of the training split, weighted by the sampling weights."""
    acc = NormalisationAccumulator(channel_names)
    for start in range(0, len(data), _BLOCK):
        block = data.features[start:start + _BLOCK]
        if hp.time_features:
            block = append_time_channels(block, data.valid_time[start:start + _BLOCK])
        acc.update(block, data.weights[start:start + _BLOCK] if hp.use_sampling_weights else None)
    return acc.result()


def _mean_weighted_valid_points(data: PatchSet, min_quality: float, weighted: bool) -> float:
    """Mean over training patches of (normalised sampling weight x valid points)."""
    scale = float(np.mean(data.weights)) if len(data) else 1.0
    total = 0.0
    for start in range(0, len(data), _BLOCK):
        obs = data.mrms_mm[start:start + _BLOCK]
        valid = good_quality_mask(obs, data.quality[start:start + _BLOCK], min_quality).sum(axis=(1, 2))
        w = data.weights[start:start + _BLOCK] / scale if weighted else np.ones(len(obs))
        total += float((w * valid).sum())
    return max(total / max(len(data), 1), 1.0)


def _bin_climatology(data: PatchSet, edges: tuple[float, ...], min_quality: float, weighted: bool
                     ) -> NDArray[np.float64]:
    """Weighted frequency of each amount bin over the valid training pixels (the prior
    the network's output layer starts from)."""
    counts = np.zeros(len(edges), dtype=np.float64)
    for start in range(0, len(data), _BLOCK):
        obs = data.mrms_mm[start:start + _BLOCK]
        ok = good_quality_mask(obs, data.quality[start:start + _BLOCK], min_quality)
        idx = np.asarray(bin_index(np.where(ok, obs, np.nan), edges))
        w = data.weights[start:start + _BLOCK] if weighted else np.ones(len(obs), np.float32)
        wpix = np.broadcast_to(w[:, None, None], obs.shape)
        counts += np.bincount(idx[ok].ravel(), weights=wpix[ok].ravel(), minlength=len(edges))[:len(edges)]
    # No bin starts impossible, and none far above its own frequency: a pseudo-count of
    # 1e-6 of the total. (It was 1e-3 of the total shared among the bins, which started
    # the 40-mm bin at 60 times its training frequency; the RPS's small gradients there
    # left it about 100 times too high. docs/calibration.md, section 11.)
    counts += 1e-6 * max(counts.sum(), 1.0)
    return counts / counts.sum()


class ResUNetFamily:
    """Everything the training loop needs to train the residual U-Net of one lead.

    Parameters
    ----------
    hp : HParams
        The named hyper-parameter set.
    train_set : PatchSet
        The training split (normalisation, prior and loss denominator come from it).
    min_quality : float
        ``[mrms] min_quality``: poorer points are masked.
    """

    kind = "resunet"

    def __init__(self, hp: HParams, train_set: PatchSet, min_quality: float) -> None:
        self.hp = hp
        self.hparams: dict[str, Any] = hparams_to_dict(hp)
        # the metrics' name: the RPS scheme, with "_log" when the log score is added
        self.score_name = hp.loss if hp.log_score_weight == 0 else f"{hp.loss}_log"
        self.train_set = train_set
        self.min_quality = float(min_quality)
        self.edges = tuple(hp.model.bin_edges_mm)
        self.thresholds = tuple(train_set.thresholds_mm)
        self.channel_names = tuple(train_set.channel_names) + (tuple(TIME_CHANNELS) if hp.time_features else ())
        self.normalisation = _training_normalisation(train_set, self.channel_names, hp)
        self.valid_per_patch = _mean_weighted_valid_points(train_set, self.min_quality, hp.use_sampling_weights)
        self.ema: EmaWeights | None = None
        self._net: ResUNet | None = None

    # -- construction --

    def batch_spec(self, data: PatchSet) -> BatchSpec:
        scale = float(np.mean(data.weights)) if len(data) else 1.0
        return BatchSpec(self.min_quality, self.hp.time_features, self.hp.use_sampling_weights, scale)

    def build(self) -> ResUNet:
        self._net = build_resunet(self.hp.model, in_channels=len(self.channel_names))
        return self._net

    def _new_ema(self, net: torch.nn.Module) -> EmaWeights | None:
        """A fresh average of ``net``'s weights, or None when the set keeps none."""
        if self.hp.ema_halflife_samples <= 0:
            return None
        return EmaWeights(net, self.hp.ema_halflife_samples, self.hp.ema_rampup or None)

    def start_fresh(self, net: torch.nn.Module) -> None:
        """A fresh network starts from the training climatology of the amount bins."""
        if not isinstance(net, ResUNet):
            raise TypeError(f"expected a ResUNet, got {type(net).__name__}")
        net.set_prior(_bin_climatology(self.train_set, self.edges, self.min_quality,
                                       self.hp.use_sampling_weights).tolist())
        self.ema = self._new_ema(net)

    def start_warm(self, net: torch.nn.Module, source: Checkpoint, path: Path) -> None:
        """Copy another lead's weights and keep their normalisation (same features)."""
        if source.model.kind != self.kind:
            raise PqpfError(f"--init-from {path}: a {source.model.kind} model, not a {self.kind}")
        source_edges = list(source.model.bin_edges_mm)
        if len(source_edges) != len(self.edges) or not np.allclose(source_edges, self.edges):
            raise PqpfError(f"--init-from {path}: its bin edges {source_edges} differ from this run's "
                            f"{[float(e) for e in self.edges]}")
        try:
            net.load_state_dict(source.inference_weights())
        except RuntimeError as exc:
            raise PqpfError(f"--init-from {path}: the network shapes differ ({str(exc).splitlines()[0]})") from None
        self.ema = self._new_ema(net)
        # The copied weights expect inputs scaled as in their own training.
        self.normalisation = Normalisation.from_dict(source.model.normalisation, path)
        self.normalisation.check_channels(self.channel_names)
        logger.info("warm start from %s (and its input normalisation)", path)

    def restore(self, checkpoint: Checkpoint) -> None:
        """The normalisation and, when the set keeps one, the weight average of ``checkpoint``
        (on the network :meth:`build` made, whose weights the caller loaded)."""
        self.normalisation = Normalisation.from_dict(checkpoint.model.normalisation)
        if self.hp.ema_halflife_samples <= 0:
            self.ema = None
            return
        if self._net is None or checkpoint.ema is None:
            raise PqpfError("cannot restore a U-Net training with an EMA without its network and averaged weights")
        self.ema = EmaWeights.restored(self._net, checkpoint.ema, self.hp.ema_halflife_samples,
                                       self.hp.ema_rampup or None,
                                       int(checkpoint.model.extra.get("ema_samples_seen", 0)))

    # -- training and evaluation --

    def train_step(self, model: Callable[[torch.Tensor], torch.Tensor], batch: dict[str, Any],
                   device: torch.device, autocast: Callable[[], AbstractContextManager[Any]]) -> StepResult:
        x, targets = batch["features"], [batch["mrms"], batch["mask"], batch["ref"]]
        if self.hp.augment:
            x, targets = augment_batch_torch(x, targets, batch["transforms"], self.channel_names)
        obs, mask, _ = targets
        x = self.normalisation.apply_torch(x.to(device, non_blocking=True))
        obs, mask = obs.to(device, non_blocking=True), mask.to(device, non_blocking=True)
        w = batch["weights"].to(device, non_blocking=True)
        with autocast():
            logits = model(x)
        loss, n_valid = masked_rps_loss(logits.float(), obs, mask, self.edges, scheme=self.hp.loss, sample_weight=w,
                                        thresholds_mm=self.thresholds,
                                        log_weight=self.hp.log_score_weight)
        objective = loss * (n_valid / (x.shape[0] * self.valid_per_patch))
        return StepResult(objective, float(loss.detach()), float(n_valid), int(x.shape[0]))

    def after_step(self, net: torch.nn.Module, samples: int) -> None:
        if self.ema is not None:
            self.ema.update(net, samples)

    def after_epoch(self, net: torch.nn.Module, device: torch.device, epoch: int) -> None:
        """Recompute the batch-norm statistics on ``bn_stats_samples`` training patches (a
        fixed draw per epoch, the same on every rank, not augmented), so evaluation, the
        checkpoint and inference use a plain average rather than the last batches'. With
        an EMA, the averaged weights get statistics of their own, stored in the average."""
        n = min(self.hp.bn_stats_samples, len(self.train_set))
        if n <= 0:
            return
        plan = plan_epoch(len(self.train_set), self.hp.batch_size, 0, 1, self.hp.seed + 7919, epoch, shuffle=True)
        source = BatchSource(self.train_set, plan, self.batch_spec(self.train_set))
        batches = range(min(len(source), math.ceil(n / self.hp.batch_size)))

        def inputs() -> Iterator[torch.Tensor]:
            return (self.normalisation.apply_torch(source[k]["features"].to(device)) for k in batches)

        recompute_batchnorm_statistics(net, inputs())
        if self.ema is not None:
            averaged = self.ema.applied_copy(net)
            recompute_batchnorm_statistics(averaged, inputs())
            for name, value in averaged.state_dict().items():
                if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
                    self.ema.average[name].copy_(value)

    def averaged_weights(self) -> dict[str, Any] | None:
        return None if self.ema is None else dict(self.ema.average)

    def evaluated_net(self, net: torch.nn.Module) -> torch.nn.Module:
        """What is scored and applied: ``net`` itself, or a copy holding the EMA weights."""
        return net if self.ema is None else self.ema.applied_copy(net)

    def evaluate(self, net: torch.nn.Module, data: PatchSet, device: torch.device, ctx: DistributedContext,
                 batch_size: int) -> dict[str, float]:
        """Weighted score and Brier scores (model and smoothed-GRAF reference).

        Weights are the sampling weights (when ``use_sampling_weights``) times the quality
        mask, so the scores estimate those of the full fields.
        """
        import torch

        net = self.evaluated_net(net)
        plan = plan_evaluation(len(data), batch_size, ctx.rank, ctx.world_size)
        source = BatchSource(data, plan, self.batch_spec(data))
        sums = np.zeros(2, dtype=np.float64)  # score * weight, weight
        verifier = Verifier(self.thresholds)
        net.eval()
        with torch.inference_mode():
            for k in range(len(source)):
                b = source[k]
                x = self.normalisation.apply_torch(b["features"].to(device))
                obs, mask, w = b["mrms"].to(device), b["mask"].to(device), b["weights"].to(device)
                logits = net(x).float()
                loss, n_valid = masked_rps_loss(logits, obs, mask, self.edges, scheme=self.hp.loss, sample_weight=w,
                                                thresholds_mm=self.thresholds,
                                                log_weight=self.hp.log_score_weight)
                sums += (float(loss) * float(n_valid), float(n_valid))
                exc = exceedance_probs(probs_from_logits(logits, dim=1), self.edges, self.thresholds, dim=1)
                ref = b["ref"].numpy().transpose(1, 0, 2, 3)
                weight = (mask.float() * w[:, None, None]).cpu().numpy()
                verifier.update(exc.cpu().numpy().transpose(1, 0, 2, 3), ref, ref, b["mrms"].numpy(), weight)
        sums = ctx.all_reduce_sum(sums)
        verifier = _all_reduced(verifier, ctx)
        out = {"score": sums[0] / max(sums[1], 1e-12), "n_patches": float(len(data))}
        for k, t in enumerate(self.thresholds):
            row = verifier.threshold_scores(k)
            out[f"bs_{t:g}mm"] = row["bs_model"]
            out[f"bs_ref_{t:g}mm"] = row["bs_ref"]
            out[f"bss_{t:g}mm"] = row["bss_vs_ref"]
            out[f"base_rate_{t:g}mm"] = row["base_rate"]
        return out

    # -- records and reports --

    def record(self, init: str, lead_h: int) -> ModelRecord:
        header = self.train_set.header
        return ModelRecord(
            kind=self.kind, hparams=self.hparams, init=init, lead_h=int(lead_h), channel_names=self.channel_names,
            feature_schema_version=int(header["feature_schema_version"]),
            normalisation=self.normalisation.to_dict(), bin_edges_mm=self.edges, thresholds_mm=self.thresholds,
            patch_px=self.train_set.patch_px, grid_fingerprint=str(header.get("grid_fingerprint", "")),
            terrain_smoothing_sigma_px=float(header.get("terrain_smoothing_sigma_px", math.nan)),
            min_quality=float(header.get("min_quality", math.nan)),
            extra={"grid": dict(header.get("grid") or {}),  # described when applied elsewhere
                   # [patches] of the training data: which inits are in-sample (calibrate_resunet.py)
                   "sampling": dict(header.get("sampling") or {}),
                   **({} if self.ema is None else {"ema_samples_seen": self.ema.samples_seen})},
        )

    def columns(self) -> Sequence[Column]:
        return [Column(f"BSS{t:g}mm", f"bss_{t:g}mm") for t in DIAGNOSTIC_THRESHOLDS_MM]

    def describe_test(self, scores: dict[str, float]) -> str:
        def skill(t: float) -> str:
            value = scores[f"bss_{t:g}mm"]
            return f"{t:g} mm {value:+.3f}" if math.isfinite(value) else f"{t:g} mm n/a (no events)"

        return (f"held-out test split ({scores['n_patches']:.0f} patches, "
                f"{100 * scores.get('base_rate_1mm', float('nan')):.1f}% of valid points >= 1 mm): "
                f"{self.score_name} {scores[self.score_name]:.5f}; Brier skill vs smoothed GRAF: "
                + ", ".join(skill(t) for t in self.thresholds))


def _all_reduced(verifier: Verifier, ctx: DistributedContext) -> Verifier:
    """The verifier with every rank's sums added (itself when not distributed)."""
    if ctx.world_size == 1:
        return verifier
    arrays = verifier.to_arrays()
    for key in ("sums", "crps_sums", "counters", "rel_model", "rel_ref"):
        arrays[key] = ctx.all_reduce_sum(arrays[key]).astype(arrays[key].dtype)
    return Verifier.from_arrays(arrays)
