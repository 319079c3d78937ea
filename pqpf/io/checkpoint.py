"""Checkpoints: one typed object, written and read here only.

A checkpoint is a ``torch.save`` of plain types and tensors, always loadable with
``torch.load(..., weights_only=True)`` (no code in the file can run)::

    {"format": "pqpf-checkpoint", "format_version": 2, "pqpf_version": str,
     "net": state_dict,             # the weights being trained
     "ema": state_dict or None,     # exponential moving average of them, when kept
     "model": {...},                # ModelRecord: what the model is and was trained on
     "training": {...} or None}     # TrainingState: what exact resume needs

:class:`ModelRecord` holds everything inference needs to rebuild and apply a model (its
family ``kind``, hyper-parameters, feature channels and normalisation, bins, patch size,
and the provenance that inference checks: grid, terrain smoothing, quality minimum).
Checkpoints of format 1 (pqpf 0.x, a flat dict) are read too.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pqpf import __version__
from pqpf.errors import InputFileError
from pqpf.io.atomic import atomic_path

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "ModelRecord", "TrainingState", "Checkpoint",
           "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "pqpf-checkpoint"
CHECKPOINT_VERSION = 2


@dataclass(frozen=True)
class ModelRecord:
    """What a trained model is and what it was trained on.

    Attributes
    ----------
    kind : str
        The model family (``"resunet"``, ``"diffusion"``): which code rebuilds it.
    hparams : dict
        The resolved hyper-parameter set (plain types).
    init, lead_h : str, int
        The training's INIT (YYYYMMDDHH) and lead time (h).
    channel_names, feature_schema_version, normalisation
        The input channels, their definition's version, and their normalisation
        (:meth:`pqpf.normalisation.Normalisation.to_dict`).
    bin_edges_mm, thresholds_mm : tuple of float
        The ordinal bins' lower edges and the probability thresholds.
    patch_px : int
        Size of the training patches (the default inference window).
    grid_fingerprint, terrain_smoothing_sigma_px, min_quality
        Provenance of the training inputs (checked at inference; empty/NaN if unknown).
    extra : dict
        What only this family needs (plain types).
    """

    kind: str
    hparams: dict[str, Any]
    init: str
    lead_h: int
    channel_names: tuple[str, ...]
    feature_schema_version: int
    normalisation: dict[str, Any]
    bin_edges_mm: tuple[float, ...]
    thresholds_mm: tuple[float, ...]
    patch_px: int
    grid_fingerprint: str = ""
    terrain_smoothing_sigma_px: float = math.nan
    min_quality: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        out = asdict(self)
        out["channel_names"] = list(self.channel_names)
        out["bin_edges_mm"] = [float(e) for e in self.bin_edges_mm]
        out["thresholds_mm"] = [float(t) for t in self.thresholds_mm]
        return out

    @classmethod
    def from_state(cls, state: Any, source: Path) -> ModelRecord:
        if not isinstance(state, dict):
            raise InputFileError(source, "checkpoint has no model record")
        try:
            return cls(
                kind=str(state["kind"]), hparams=_mapping(state["hparams"], "hparams", source),
                init=str(state["init"]), lead_h=int(state["lead_h"]),
                channel_names=tuple(str(c) for c in state["channel_names"]),
                feature_schema_version=int(state["feature_schema_version"]),
                normalisation=_mapping(state["normalisation"], "normalisation", source),
                bin_edges_mm=tuple(float(e) for e in state["bin_edges_mm"]),
                thresholds_mm=tuple(float(t) for t in state["thresholds_mm"]),
                patch_px=int(state["patch_px"]),
                grid_fingerprint=str(state.get("grid_fingerprint") or ""),
                terrain_smoothing_sigma_px=float(state.get("terrain_smoothing_sigma_px", math.nan)),
                min_quality=float(state.get("min_quality", math.nan)),
                extra=_mapping(state.get("extra", {}), "extra", source),
            )
        except KeyError as exc:
            raise InputFileError(source, f"checkpoint's model record lacks {exc}") from None
        except (TypeError, ValueError) as exc:
            raise InputFileError(source, f"checkpoint's model record is malformed ({exc})") from None


@dataclass(frozen=True)
class TrainingState:
    """What ``--resume`` needs to continue exactly: epoch, early stopping, optimiser,
    schedule, gradient scaler and the world size it ran with."""

    epoch: int
    best_score: float
    best_epoch: int
    bad_epochs: int
    world_size: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: Any, source: Path) -> TrainingState:
        if not isinstance(state, dict):
            raise InputFileError(source, "checkpoint has no training state")
        try:
            return cls(int(state["epoch"]), float(state["best_score"]), int(state["best_epoch"]),
                       int(state["bad_epochs"]), int(state.get("world_size", 1)),
                       _mapping(state["optimizer"], "optimizer", source),
                       _mapping(state["scheduler"], "scheduler", source), _mapping(state.get("scaler", {}), "scaler",
                                                                                   source))
        except KeyError as exc:
            raise InputFileError(source, f"checkpoint's training state lacks {exc}") from None
        except (TypeError, ValueError) as exc:
            raise InputFileError(source, f"checkpoint's training state is malformed ({exc})") from None


@dataclass(frozen=True)
class Checkpoint:
    """A model's weights with its :class:`ModelRecord` and, while training, its
    :class:`TrainingState`. ``ema`` holds the exponential moving average of the weights
    when the training keeps one; :meth:`inference_weights` is what inference applies."""

    net: dict[str, Any]
    model: ModelRecord
    training: TrainingState | None = None
    ema: dict[str, Any] | None = None
    pqpf_version: str = __version__

    def inference_weights(self) -> dict[str, Any]:
        return self.ema if self.ema is not None else self.net

    def weights_digest(self) -> str:
        """SHA-256 of what the network computes: the inference weights (names, dtypes,
        shapes, bytes) and the input normalisation. It names the network wherever its
        file lives and changes when it is retrained in place."""
        import torch  # deferred: reading a record needs no torch

        h = hashlib.sha256(json.dumps(self.model.normalisation, sort_keys=True, default=str).encode())
        for name, value in sorted(self.inference_weights().items()):
            h.update(name.encode())
            if isinstance(value, torch.Tensor):
                t = value.detach().cpu().contiguous()
                h.update(f"{t.dtype}{tuple(t.shape)}".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            else:
                h.update(repr(value).encode())
        return h.hexdigest()

    def to_state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "pqpf_version": self.pqpf_version,
            "net": self.net, "ema": self.ema, "model": self.model.to_state(),
            "training": None if self.training is None else self.training.to_state(),
        }

    @classmethod
    def from_state(cls, state: Any, source: Path) -> Checkpoint:
        """Validate a loaded state (format 2, or the flat format 1)."""
        if not isinstance(state, dict) or "net" not in state:
            raise InputFileError(source, "not a pqpf checkpoint (no 'net' entry)")
        if state.get("format") != CHECKPOINT_FORMAT:
            state = _from_format_1(state)
        elif int(state.get("format_version", 0)) > CHECKPOINT_VERSION:
            raise InputFileError(source, f"checkpoint format {state.get('format_version')} is newer than this "
                                 f"pqpf reads ({CHECKPOINT_VERSION}); update pqpf")
        net = _mapping(state["net"], "net", source)
        ema = None if state.get("ema") is None else _mapping(state["ema"], "ema", source)
        training = None if state.get("training") is None else TrainingState.from_state(state["training"], source)
        return cls(net, ModelRecord.from_state(state.get("model"), source), training, ema,
                   str(state.get("pqpf_version", "?")))


def _mapping(value: Any, name: str, source: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputFileError(source, f"checkpoint entry {name!r} is not a mapping")
    return value


_FORMAT_1_MODEL = ("hparams", "init", "lead_h", "channel_names", "feature_schema_version", "normalisation",
                   "bin_edges_mm", "thresholds_mm", "patch_px", "grid_fingerprint", "terrain_smoothing_sigma_px",
                   "min_quality")
_FORMAT_1_TRAINING = ("epoch", "best_score", "best_epoch", "bad_epochs", "world_size", "optimizer", "scheduler",
                      "scaler")


def _from_format_1(state: dict[str, Any]) -> dict[str, Any]:
    """The flat dict of pqpf 0.x as a format-2 state (a U-Net's)."""
    model = {k: state[k] for k in _FORMAT_1_MODEL if k in state}
    model["kind"] = "resunet"
    training = {k: state[k] for k in _FORMAT_1_TRAINING if k in state} if "optimizer" in state else None
    return {"net": state["net"], "ema": None, "model": model, "training": training,
            "pqpf_version": state.get("pqpf_version", "?")}


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """``torch.save`` atomically (a killed job leaves no half file)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(checkpoint.to_state(), tmp)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Checkpoint:
    """Load and validate a checkpoint with ``weights_only=True`` (no arbitrary code can run).

    Raises
    ------
    InputFileError
        Missing or unreadable file, not a pqpf checkpoint, a record that lacks a key, or
        weights that are not all finite (a diverged training).
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
    checkpoint = Checkpoint.from_state(state, path)
    for name, tensor in checkpoint.inference_weights().items():
        if not isinstance(tensor, torch.Tensor):
            raise InputFileError(path, f"weight {name!r} is not a tensor")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputFileError(path, f"weight {name!r} is not finite (the training diverged); retrain")
    return checkpoint
