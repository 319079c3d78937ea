"""Full-field prediction with a trained U-Net: arrays in, probabilities out.

:func:`load_resunet` rebuilds a network from a checkpoint (:mod:`pqpf.io.checkpoint`);
:func:`predict_probabilities` builds the features of a GRAF field with the shared
feature module, normalises them with the checkpoint's statistics, pads the domain
(``pad_mode``), runs the network over overlapping windows blended with tent weights
(:mod:`pqpf.stitching`), reducing the bin probabilities to P(obs >= t) before
accumulation, then applies the checkpoint's isotonic calibration, if any. No file is touched here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pqpf.calibration import FITTED_ON_VALIDATION, Calibration
from pqpf.dates import to_epoch_seconds
from pqpf.errors import InputFileError
from pqpf.features import FEATURE_SCHEMA_VERSION, PAD_MODES, append_time_channels, build_features, pad_features
from pqpf.hparams import hparams_from_dict
from pqpf.io.checkpoint import Checkpoint, ModelRecord
from pqpf.model.norms import WINDOW_INDEPENDENT_NORMS
from pqpf.model.resunet import build_resunet, fold_batchnorm
from pqpf.normalisation import Normalisation
from pqpf.ordinal import exceedance_matrix
from pqpf.stitching import inference_window, stitch, windows_per_call

__all__ = ["LoadedModel", "load_resunet", "predict_probabilities", "predict_reduced"]


@dataclass
class LoadedModel:
    """A trained network with everything needed to apply it."""

    net: torch.nn.Module
    normalisation: Normalisation
    record: ModelRecord
    checkpoint: Path
    #: :meth:`pqpf.io.checkpoint.Checkpoint.weights_digest` of the weights loaded.
    weights_sha256: str = ""

    @property
    def channel_names(self) -> tuple[str, ...]:
        return self.record.channel_names

    @property
    def bin_edges_mm(self) -> tuple[float, ...]:
        return self.record.bin_edges_mm

    @property
    def patch_px(self) -> int:
        return self.record.patch_px

    @property
    def lead_h(self) -> int:
        return self.record.lead_h

    @property
    def window_independent(self) -> bool:
        """Whether the network's output at a point is the same on any window around it
        (its norm is in :data:`pqpf.model.norms.WINDOW_INDEPENDENT_NORMS`)."""
        return str(self.record.hparams.get("model", {}).get("norm")) in WINDOW_INDEPENDENT_NORMS

    def window(self, window_px: int, stride_px: int) -> tuple[int, int]:
        """The stitching window and stride for the settings ``window_px``, ``stride_px``
        (0: the default for this network, :func:`pqpf.stitching.inference_window`)."""
        return inference_window(window_px, stride_px, self.patch_px, self.window_independent)

    def stitching(self, window_px: int, stride_px: int, shape: tuple[int, int],
                  pad_mode: str) -> tuple[int, int, int]:
        """Window, stride and edge padding that :func:`predict_reduced` uses on a domain of
        ``shape`` (ny, nx) with ``pad_mode``.

        The edge pad is half a training patch (half the window when the window is smaller),
        the context a patch gives its centre; none with ``pad_mode = "none"`` or when the
        domain is too small to mirror. A window-independent network's window is capped at
        the padded domain and its default stride derived from the capped window.
        """
        pad = min(self.window(window_px, stride_px)[0], self.patch_px) // 2
        if pad_mode == "none" or (pad_mode == "reflect" and min(shape) <= pad):
            pad = 0
        window, stride = inference_window(window_px, stride_px, self.patch_px, self.window_independent,
                                          min(shape) + 2 * pad)
        return window, stride, pad

    @cached_property
    def inference_net(self) -> torch.nn.Module:
        """:attr:`net` with its batch norms folded into the convolutions (the same function,
        a few per cent faster; :func:`pqpf.model.resunet.fold_batchnorm`)."""
        return fold_batchnorm(self.net)

    @property
    def time_features(self) -> bool:
        return bool(self.record.hparams.get("time_features", False))

    @property
    def calibration(self) -> Calibration | None:
        """The isotonic calibration fitted after training (None for older checkpoints)."""
        data = self.record.extra.get("calibration")
        return None if data is None else Calibration.from_dict(data)

    @property
    def calibration_fitted_on(self) -> str | None:
        """What the calibration was fitted on ("validation", "validation + out-of-fold", or
        "forecasts" by ``calibrate_resunet.py``); None without a calibration."""
        data = self.record.extra.get("calibration")
        return None if data is None else str(data.get("fitted_on", FITTED_ON_VALIDATION))


def load_resunet(checkpoint: Checkpoint, path: Path, device: torch.device) -> LoadedModel:
    """Rebuild the U-Net of a checkpoint, in eval mode on ``device``.

    Raises
    ------
    InputFileError
        Another model kind or feature schema, or weights that do not fit the network
        the hyper-parameters describe.
    """
    record = checkpoint.model
    if record.kind != "resunet":
        raise InputFileError(path, f"a {record.kind} checkpoint, not a resunet one")
    if record.feature_schema_version != FEATURE_SCHEMA_VERSION:
        raise InputFileError(path, f"trained on feature schema {record.feature_schema_version}, this pqpf "
                             f"builds {FEATURE_SCHEMA_VERSION}; retrain")
    hp = hparams_from_dict(record.hparams, f"{path}: hparams")
    net = build_resunet(hp.model, in_channels=len(record.channel_names))
    try:
        net.load_state_dict(checkpoint.inference_weights())
    except RuntimeError as exc:
        raise InputFileError(path, f"weights do not fit the network ({str(exc).splitlines()[0]})") from None
    net.to(device).eval()
    loaded = LoadedModel(net, Normalisation.from_dict(record.normalisation, path), record, path,
                         checkpoint.weights_digest())
    try:
        loaded.calibration  # noqa: B018 - checked here so a bad record fails at load, not mid-run
    except ValueError as exc:
        raise InputFileError(path, str(exc)) from None
    return loaded


def predict_probabilities(
    model: LoadedModel,
    graf_mm: NDArray[np.float32],
    terrain: Any,
    valid_time: dt.datetime,
    window_px: int,
    stride_px: int,
    batch_size: int,
    device: Any,
    pad_mode: str = "reflect",
    calibrate: bool = True,
) -> tuple[NDArray[np.float32], tuple[float, ...]]:
    """P(obs >= e) at every interior bin edge e, shape (K-1, ny, nx), and the edges.

    Parameters
    ----------
    graf_mm : float32 (ny, nx)
        GRAF 1-h amount (mm), finite.
    terrain : Terrain or mapping
        The terrain fields the features need, on the same grid.
    window_px, stride_px, batch_size : int
        Stitching: window size, stride, windows per call (each 0: the default,
        :meth:`LoadedModel.window` and :func:`pqpf.stitching.windows_per_call`).
    pad_mode : str
        One of :data:`pqpf.features.PAD_MODES`.
    calibrate : bool
        Apply the checkpoint's isotonic calibration (:mod:`pqpf.calibration`), if it has
        one: per-threshold monotone maps, then the cumulative minimum over thresholds.
    """
    edges = model.bin_edges_mm
    thresholds = tuple(edges[1:])
    prob, _ = predict_reduced(model, graf_mm, terrain, valid_time, exceedance_matrix(edges, thresholds), window_px,
                              stride_px, batch_size, device, pad_mode)
    prob = np.clip(prob, 0.0, 1.0).astype(np.float32)
    calibration = model.calibration if calibrate else None
    if calibration is not None:
        # After the stitching reduction: the maps were fitted on exceedance probabilities.
        prob = calibration.apply(prob, thresholds)
    return prob, thresholds


def predict_reduced(
    model: LoadedModel,
    graf_mm: NDArray[np.float32],
    terrain: Any,
    valid_time: dt.datetime,
    reduction: NDArray[np.floating],
    window_px: int,
    stride_px: int,
    batch_size: int,
    device: Any,
    pad_mode: str = "reflect",
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Any linear map of the U-Net's bin probabilities over the full field, and its inputs.

    Parameters
    ----------
    reduction : float array (R, K)
        Applied to the K bin probabilities of every window before blending (e.g.
        :func:`pqpf.ordinal.exceedance_matrix`), so the tent-weighted blend is exact.
    Others as :func:`predict_probabilities`.

    Returns
    -------
    reduced : float32 (R, ny, nx)
    features : float32 (C, ny, nx)
        The normalised features the network saw (unpadded).
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")
    features = build_features(graf_mm, terrain, valid_time, time_features=False)
    if model.time_features:
        features = append_time_channels(features, to_epoch_seconds(valid_time))
    x = model.normalisation.apply_numpy(features)
    x_unpadded = x
    ny, nx = graf_mm.shape
    window, stride, pad = model.stitching(window_px, stride_px, (ny, nx), pad_mode)
    if pad and pad_mode == "reflect":
        # Pad the features ourselves: a mirrored terrain has its normal slope reversed,
        # which a plain reflection of the arrays would get wrong (normalisation keeps
        # slopes centred on 0, so the sign flip commutes with it).
        x = pad_features(x, pad, model.channel_names)
    elif pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    out = stitch(
        model.inference_net, x, window_px=window, stride_px=stride,
        batch_size=windows_per_call(batch_size, window),
        reduction=torch.as_tensor(reduction, dtype=torch.float32),
        post=lambda logits: torch.softmax(logits.float(), dim=1), device=device, pad_mode="none",
    )
    if pad:
        out = out[:, pad:pad + ny, pad:pad + nx]
    return out.astype(np.float32), np.asarray(x_unpadded, dtype=np.float32)
