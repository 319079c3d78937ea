"""Full-field inference: GRAF forecast -> calibrated exceedance probabilities.

For (INIT, LEAD): the GRAF file (laptop copy first, then the archive), the terrain file,
and the checkpoint the registry names for LEAD (or, with a warning, the nearest lead's);
features from the shared feature module, normalised with the checkpoint's statistics;
the U-Net run over overlapping windows and blended with tent weights
(:mod:`pqpf.stitching`), the bin probabilities reduced to P(obs >= t) before
accumulation. Written to ``{probs_dir}/{INIT}_{LEAD}h_probs.nc`` (CF, atomic) with the
raw-GRAF and smoothed-GRAF probabilities at the same thresholds, and drawn as map panels.

The ``threshold`` coordinate holds every interior bin edge of the model (it includes
the configured thresholds 0.25, 1, 2.5, 5, 10, 25 mm); the full set lets verification
compute the CRPS of the forecast distribution.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf import __version__
from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh
from pqpf.errors import ConfigError, InputFileError, PqpfError
from pqpf.layout import graf_laptop_path, probs_path, probs_png_path, require_graf

__all__ = ["LoadedModel", "load_model_for_lead", "predict_probabilities", "InferenceResult", "run_inference"]

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A trained network with everything needed to apply it."""

    net: Any
    normalisation: Any
    channel_names: tuple[str, ...]
    bin_edges_mm: tuple[float, ...]
    patch_px: int
    time_features: bool
    checkpoint: Path
    lead_h: int
    info: dict[str, Any]


def load_model_for_lead(config: Config, lead_h: int, device: Any) -> LoadedModel:
    """Load the registry's model for ``lead_h`` (the nearest lead's, with a warning).

    Raises
    ------
    PqpfError
        No registry entry at all; InputFileError for a missing/corrupt checkpoint.
    """
    from pqpf.config import ModelHParams
    from pqpf.features import FEATURE_SCHEMA_VERSION, Normalisation
    from pqpf.model import build_model
    from pqpf.training import load_checkpoint, nearest_registered_lead, registry_checkpoint

    path = registry_checkpoint(config, lead_h)
    used_lead = lead_h
    if path is None:
        nearest = nearest_registered_lead(config, lead_h, exclude_self=False)
        if nearest is None:
            raise PqpfError(
                f"no trained model in the registry of {config.paths.trainings_dir}; "
                f"run train_resunet.py INIT {lead_h} first"
            )
        path = registry_checkpoint(config, nearest)
        used_lead = nearest
        logger.warning("no model registered for lead %d h; using the nearest lead's (%d h): %s",
                       lead_h, nearest, path)
    if path is None:
        raise PqpfError(f"the registry of {config.paths.trainings_dir} names no checkpoint for lead {used_lead} h")
    state = load_checkpoint(path)
    if state.get("feature_schema_version") != FEATURE_SCHEMA_VERSION:
        raise InputFileError(
            path, f"trained on feature schema {state.get('feature_schema_version')}, this pqpf "
            f"builds {FEATURE_SCHEMA_VERSION}; retrain"
        )
    hp = state["hparams"]
    model_hp = ModelHParams(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in hp["model"].items()})
    net = build_model(model_hp, in_channels=len(state["channel_names"]))
    net.load_state_dict(state["net"])
    net.to(device).eval()
    return LoadedModel(
        net=net,
        normalisation=Normalisation.from_dict(state["normalisation"]),
        channel_names=tuple(state["channel_names"]),
        bin_edges_mm=tuple(state["bin_edges_mm"]),
        patch_px=int(state["patch_px"]),
        time_features=bool(hp.get("time_features", False)),
        checkpoint=path,
        lead_h=used_lead,
        info={"init": state.get("init"), "epoch": state.get("epoch"), "hparams": hp.get("name"),
              "best_epoch": state.get("best_epoch"), "grid_fingerprint": state.get("grid_fingerprint", ""),
              "terrain_smoothing_sigma_px": state.get("terrain_smoothing_sigma_px", float("nan"))},
    )


def predict_probabilities(
    model: LoadedModel,
    graf_mm: NDArray[np.float32],
    terrain: Any,
    valid_time: dt.datetime,
    window_px: int,
    stride_px: int,
    batch_size: int,
    device: Any,
    pad_mode: str | None = "reflect",
) -> tuple[NDArray[np.float32], tuple[float, ...]]:
    """P(obs >= e) at every interior bin edge e, shape (K-1, ny, nx), and the edges.

    Arrays in, arrays out: no file is touched.
    """
    import torch

    from pqpf.dates import to_epoch_seconds
    from pqpf.features import append_time_channels, build_features, pad_features
    from pqpf.model import exceedance_matrix
    from pqpf.stitching import stitch

    if pad_mode not in (None, "none", "reflect", "replicate"):
        raise ConfigError(f"[inference] pad_mode must be none, reflect or replicate, got {pad_mode!r}")
    edges = model.bin_edges_mm
    thresholds = tuple(edges[1:])
    features = build_features(graf_mm, terrain, valid_time, time_features=False)
    if model.time_features:
        features = append_time_channels(features, to_epoch_seconds(valid_time))
    x = model.normalisation.apply_numpy(features)
    window = window_px or model.patch_px
    ny, nx = graf_mm.shape
    pad = 0
    if pad_mode == "reflect" and min(ny, nx) > window // 2:
        # Pad the features ourselves: a mirrored terrain has its normal slope reversed,
        # which a plain reflection of the arrays would get wrong (normalisation keeps
        # slopes centred on 0, so the sign flip commutes with it).
        pad = window // 2
        x = pad_features(x, pad, model.channel_names)
    reduction = torch.as_tensor(exceedance_matrix(edges, thresholds), dtype=torch.float32)
    prob = stitch(
        model.net, x, window_px=window, stride_px=min(stride_px, window), batch_size=batch_size,
        reduction=reduction, post=lambda logits: torch.softmax(logits.float(), dim=1), device=device,
        pad_mode="replicate" if pad_mode == "replicate" else None,
    )
    if pad:
        prob = prob[:, pad:pad + ny, pad:pad + nx]
    return np.clip(prob, 0.0, 1.0).astype(np.float32), thresholds


@dataclass
class InferenceResult:
    nc_path: Path
    png_path: Path | None
    checkpoint: Path
    skipped: bool = False


def run_inference(
    config: Config,
    init: dt.datetime,
    lead_h: int,
    device: str = "auto",
    overwrite: bool = False,
    plot: bool = True,
) -> InferenceResult:
    """The stage behind ``resunet_inference.py INIT LEAD``.

    Raises
    ------
    InputFileError
        Missing GRAF file (the message names both places looked in), terrain file or
        checkpoint.
    """
    from pqpf.io.grib import read_graf
    from pqpf.io.netcdf import NcVar, write_grid_netcdf
    from pqpf.reference import exceedance, reference_sigma_px, smoothed_exceedance
    from pqpf.terrain import read_terrain
    from pqpf.training import select_device

    out = probs_path(config, init, lead_h)
    png = probs_png_path(config, init, lead_h)
    if out.is_file() and (png.is_file() or not plot) and not overwrite:
        logger.info("%s exists; use --overwrite to redo it", out)
        return InferenceResult(out, png if png.is_file() else None, Path(""), skipped=True)
    if out.is_file() and plot and not overwrite:  # the netCDF survived, its map did not
        return InferenceResult(out, _plot_from_file(config, out, png, init, lead_h), Path(""), skipped=True)
    graf_path = require_graf(config, init, lead_h, prefer="laptop")
    if graf_path != graf_laptop_path(config, init, lead_h):
        logger.info("using the archive copy %s", graf_path)
    graf = read_graf(graf_path, lead_h, init=init)
    terrain = read_terrain(config.paths.terrain_file)
    if not graf.grid.same_as(terrain.grid):
        raise InputFileError(graf_path, f"grid ({graf.grid.describe()}) differs from the terrain file's")
    dev = select_device(device)
    model = load_model_for_lead(config, lead_h, dev)
    _check_provenance(model, terrain, config.paths.terrain_file)
    graf_mm = graf.values.astype(np.float32)
    missing = ~np.isfinite(graf_mm)
    if missing.any():
        logger.warning("%s: %d of %d GRAF points are missing; their probabilities are written as missing",
                       graf_path, int(missing.sum()), missing.size)
    inf = config.inference
    # The network sees 0 mm at missing points (NaN would spread over whole windows); the
    # probabilities there are then masked, and the references handle NaN themselves.
    prob, thresholds = predict_probabilities(
        model, np.where(missing, np.float32(0.0), graf_mm), terrain, graf.valid_time,
        inf.window_px, inf.stride_px, inf.batch_size, dev, pad_mode=inf.pad_mode,
    )
    prob[:, missing] = np.nan
    sigma = reference_sigma_px(config.probability, lead_h)
    raw = exceedance(graf_mm, thresholds)
    smooth = smoothed_exceedance(graf_mm, thresholds, sigma)
    raw = np.where(np.isnan(raw), -1, raw).astype(np.int8)  # -1 is the variable's fill value
    prob_attrs = {"units": "1", "valid_min": 0.0, "valid_max": 1.0}
    variables = {
        "prob_exceed": NcVar(prob, {**prob_attrs, "long_name": "U-Net probability that the 1-h MRMS amount >= threshold"},
                             dims=("threshold", "y", "x"), significant_digits=4),
        "prob_exceed_raw": NcVar(raw, {**prob_attrs, "long_name": "raw GRAF exceedance (0 or 1)"},
                                 dims=("threshold", "y", "x"), dtype="i1", fill_value=-1),
        "prob_exceed_smoothed": NcVar(smooth, {**prob_attrs, "long_name": "smoothed-GRAF reference probability",
                                               "gaussian_sigma_px": sigma},
                                      dims=("threshold", "y", "x"), significant_digits=4),
        "graf_precipitation": NcVar(graf_mm, {"units": "mm", "long_name": "GRAF 1-h precipitation",
                                              "standard_name": "lwe_thickness_of_precipitation_amount"}),
    }
    write_grid_netcdf(
        out, graf.grid, variables,
        coords={"threshold": (np.asarray(thresholds, np.float32),
                              {"units": "mm", "long_name": "1-h precipitation threshold"})},
        time=graf.valid_time,
        global_attrs={
            "title": "pqpf probabilistic 1-h precipitation forecast",
            "init": format_yyyymmddhh(init), "lead_h": int(lead_h),
            "valid": format_yyyymmddhh(graf.valid_time),
            "checkpoint": str(model.checkpoint), "checkpoint_lead_h": int(model.lead_h),
            "checkpoint_init": str(model.info.get("init")), "hparams": str(model.info.get("hparams")),
            "graf_file": str(graf_path), "verification_thresholds_mm": list(config.probability.thresholds_mm),
            "window_px": int(inf.window_px or model.patch_px), "stride_px": int(inf.stride_px),
            "pad_mode": str(inf.pad_mode),
            "pqpf_version": __version__,
        },
    )
    png_out = _plot_from_file(config, out, png, init, lead_h) if plot else None
    logger.info("wrote %s%s", out, f" and {png_out}" if png_out else "")
    return InferenceResult(out, png_out, model.checkpoint)


def _plot_from_file(config: Config, nc_path: Path, png: Path, init: dt.datetime, lead_h: int) -> Path:
    """Draw the map panels of a probabilities file: GRAF and P(obs >= t) for the
    configured thresholds the file holds (at most four, the larger ones first)."""
    from pqpf.io.netcdf import read_grid_netcdf
    from pqpf.plot import plot_probability_maps

    ds = read_grid_netcdf(nc_path, ["prob_exceed", "graf_precipitation"])
    edges = [float(t) for t in ds.coords["threshold"]]
    wanted = [t for t in config.probability.thresholds_mm if any(abs(t - e) < 1e-6 for e in edges)]
    # four panels: the lightest threshold, 1 mm, and the two above the middle (usually
    # 0.25, 1, 5, 10 mm; 25 mm is blank on all but the wettest hours)
    preferred = [t for t in (0.25, 1.0, 5.0, 10.0) if t in wanted]
    show = tuple(preferred) if len(preferred) == 4 else tuple(wanted[:4])
    pick = [min(range(len(edges)), key=lambda i: abs(edges[i] - t)) for t in wanted]
    valid = init + dt.timedelta(hours=lead_h)
    title = f"GRAF + U-Net, init {init:%Y-%m-%d %H} UTC, +{lead_h} h (valid {valid:%Y-%m-%d %H} UTC)"
    return plot_probability_maps(png, ds.grid, ds.data["graf_precipitation"], ds.data["prob_exceed"][pick],
                                 tuple(wanted), title, show_thresholds=show)


def _check_provenance(model: LoadedModel, terrain: Any, terrain_path: Path) -> None:
    """Refuse a terrain file other than the one the model was trained with: another grid
    or another smoothing changes what the terrain channels mean."""
    trained_grid = model.info.get("grid_fingerprint") or ""
    if trained_grid and trained_grid != terrain.grid.fingerprint():
        raise InputFileError(terrain_path, f"grid differs from the one {model.checkpoint} was trained on")
    sigma = float(model.info.get("terrain_smoothing_sigma_px", float("nan")))
    have = float(getattr(terrain, "smoothing_sigma_px", float("nan")))
    if np.isfinite(sigma) and np.isfinite(have) and abs(sigma - have) > 1e-6:
        raise InputFileError(
            terrain_path, f"terrain smoothed with sigma {have:g} px, but {model.checkpoint} was trained "
            f"with {sigma:g} px; rerun terrain_height.py with [terrain] smoothing_sigma_px = {sigma:g}"
        )
