"""The ``resunet_inference.py`` stage: a GRAF forecast -> the probabilities file and maps.

For (INIT, LEAD): the GRAF file (laptop copy first, then the archive), the terrain
file, and the checkpoint the registry names for LEAD (or, with a warning, the nearest
lead's); probabilities from :func:`pqpf.predict.predict_probabilities`, the raw-GRAF and
smoothed-GRAF references at the same thresholds (:mod:`pqpf.reference`), written as
:mod:`pqpf.io.probs_file` and drawn as map panels from the same arrays.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pqpf import __version__
from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh
from pqpf.device import select_device
from pqpf.errors import InputFileError, PqpfError
from pqpf.grid import Grid
from pqpf.io.checkpoint import load_checkpoint
from pqpf.io.grib import read_graf
from pqpf.io.probs_file import ProbabilityForecast, read_probabilities, write_probabilities
from pqpf.io.probs_grib import write_probability_grib2
from pqpf.io.registry import Registry
from pqpf.io.terrain_file import read_terrain
from pqpf.layout import graf_laptop_path, probs_grib_path, probs_path, probs_png_path, registry_path, require_graf
from pqpf.plot import plot_probability_maps
from pqpf.predict import LoadedModel, load_resunet, predict_probabilities
from pqpf.reference import exceedance, reference_sigma_px, smoothed_exceedance
from pqpf.stages.common import RangeReport, clean_temporaries, kept, run_range
from pqpf.terrain import Terrain

if TYPE_CHECKING:
    import torch

__all__ = ["InferenceResult", "InferenceSession", "InferenceRangeReport", "load_model_for_lead", "run_inference",
           "run_inference_range", "check_provenance"]

logger = logging.getLogger(__name__)


@dataclass
class InferenceResult:
    nc_path: Path
    png_path: Path | None
    checkpoint: Path
    skipped: bool = False


def load_model_for_lead(config: Config, lead_h: int, device: torch.device) -> LoadedModel:
    """Load the registry's U-Net for ``lead_h`` (the nearest lead's, with a warning).

    Raises
    ------
    PqpfError
        No registry entry at all; InputFileError for a missing/corrupt checkpoint.
    """
    registry = Registry(registry_path(config))
    path = registry.checkpoint("resunet", lead_h)
    if path is None:
        nearest = registry.nearest_lead("resunet", lead_h, exclude_self=False)
        if nearest is None:
            raise PqpfError(f"no trained model in the registry of {config.paths.trainings_dir}; "
                            f"run train_resunet.py INIT {lead_h} first")
        path = registry.resolve(registry.read()["resunet"][nearest]["checkpoint"])
        logger.warning("no model registered for lead %d h; using the nearest lead's (%d h): %s",
                       lead_h, nearest, path)
    return load_resunet(load_checkpoint(path), path, device)


def _trained_grid(model: LoadedModel) -> str:
    """The training grid in words, from the checkpoint (older ones hold only a fingerprint)."""
    fields = model.record.extra.get("grid") or {}
    try:
        return Grid(**fields).describe()
    except (KeyError, TypeError, ValueError):
        return f"grid {model.record.grid_fingerprint[:12]}"


def check_provenance(model: LoadedModel, terrain: Terrain, terrain_path: Path, allow_other_grid: bool = False
                     ) -> None:
    """Refuse a terrain file other than the one the model was trained with: another grid
    or another smoothing changes what the terrain channels mean. With
    ``allow_other_grid`` another grid is a warning naming both (the features are computed
    on the new grid; the network is fully convolutional, but its scales were learnt at
    the training grid's spacing)."""
    trained_grid = model.record.grid_fingerprint
    if trained_grid and trained_grid != terrain.grid.fingerprint():
        if not allow_other_grid:
            raise InputFileError(terrain_path, f"grid ({terrain.grid.describe()}) differs from the one "
                                 f"{model.checkpoint} was trained on ({_trained_grid(model)}); "
                                 "--allow-other-grid applies it anyway")
        logger.warning("applying %s, trained on %s, to another grid: %s (--allow-other-grid); rain and "
                       "terrain scales differ between grids, so verify before trusting the probabilities",
                       model.checkpoint, _trained_grid(model), terrain.grid.describe())
        return
    sigma = model.record.terrain_smoothing_sigma_px
    have = terrain.smoothing_sigma_px
    if np.isfinite(sigma) and np.isfinite(have) and abs(sigma - have) > 1e-6:
        raise InputFileError(
            terrain_path, f"terrain smoothed with sigma {have:g} px, but {model.checkpoint} was trained "
            f"with {sigma:g} px; rerun terrain_height.py with [terrain] smoothing_sigma_px = {sigma:g}"
        )


def _plot(config: Config, forecast: ProbabilityForecast, png: Path, init: dt.datetime, lead_h: int) -> Path:
    """Map panels: GRAF and P(obs >= t) for the configured thresholds the forecast holds
    (four: 0.25, 1, 5 and 10 mm when present; 25 mm is blank on all but the wettest hours)."""
    edges = forecast.thresholds_mm
    wanted = [t for t in config.probability.thresholds_mm if any(abs(t - e) < 1e-6 for e in edges)]
    preferred = [t for t in (0.25, 1.0, 5.0, 10.0) if t in wanted]
    show = tuple(preferred) if len(preferred) == 4 else tuple(wanted[:4])
    valid = init + dt.timedelta(hours=lead_h)
    title = f"GRAF + U-Net, init {init:%Y-%m-%d %H} UTC, +{lead_h} h (valid {valid:%Y-%m-%d %H} UTC)"
    return plot_probability_maps(png, forecast.grid, forecast.graf_mm, forecast.prob[forecast.index(wanted)],
                                 tuple(wanted), title, show_thresholds=show)


def _write_grib(path: Path, forecast: ProbabilityForecast, graf_path: Path, init: dt.datetime, lead_h: int) -> None:
    """The GRIB2 copy: one template-4.9 message per threshold on the GRAF file's grid."""
    write_probability_grib2(path, graf_path, forecast.prob, forecast.thresholds_mm, init, lead_h)


def _complete(config: Config, init: dt.datetime, lead_h: int, out: Path, png: Path | None, grib: Path | None
              ) -> InferenceResult:
    """Draw the map and write the GRIB2 copy of an existing probabilities file."""
    forecast = read_probabilities(out)
    if grib is not None and not grib.is_file():
        _write_grib(grib, forecast, require_graf(config, init, lead_h, prefer="laptop"), init, lead_h)
    png_out = _plot(config, forecast, png, init, lead_h) if png is not None and not png.is_file() else png
    return InferenceResult(out, png_out, Path(""), skipped=True)


def _forecast(config: Config, init: dt.datetime, lead_h: int, model: LoadedModel, terrain: Terrain,
              graf_path: Path, device: Any) -> ProbabilityForecast:
    graf = read_graf(graf_path, lead_h, init=init)
    if not graf.grid.same_as(terrain.grid):
        raise InputFileError(graf_path, f"grid ({graf.grid.describe()}) differs from the terrain file's")
    graf_mm = graf.values.astype(np.float32)
    missing = ~np.isfinite(graf_mm)
    if missing.any():
        logger.warning("%s: %d of %d GRAF points are missing; their probabilities are written as missing",
                       graf_path, int(missing.sum()), missing.size)
    inf = config.inference
    calibrated = inf.applies_calibration(model.calibration_fitted_on)
    # The network sees 0 mm at missing points (NaN would spread over whole windows); the
    # probabilities there are then masked, and the references handle NaN themselves.
    prob, thresholds = predict_probabilities(
        model, np.where(missing, np.float32(0.0), graf_mm), terrain, graf.valid_time,
        inf.window_px, inf.stride_px, inf.batch_size, device, pad_mode=inf.pad_mode, calibrate=calibrated,
    )
    prob[:, missing] = np.nan
    window, stride, _ = model.stitching(inf.window_px, inf.stride_px, graf_mm.shape, inf.pad_mode)
    sigma = reference_sigma_px(config.probability, lead_h)
    return ProbabilityForecast(
        grid=graf.grid, thresholds_mm=thresholds, prob=prob, prob_raw=exceedance(graf_mm, thresholds),
        prob_smoothed=smoothed_exceedance(graf_mm, thresholds, sigma), graf_mm=graf_mm,
        valid=graf.valid_time, reference_sigma_px=sigma,
        attrs={
            "init": format_yyyymmddhh(init), "lead_h": int(lead_h), "valid": format_yyyymmddhh(graf.valid_time),
            "checkpoint": str(model.checkpoint), "checkpoint_lead_h": int(model.lead_h),
            "checkpoint_weights_sha256": model.weights_sha256,
            "checkpoint_init": str(model.record.init), "hparams": str(model.record.hparams.get("name")),
            "graf_file": str(graf_path), "verification_thresholds_mm": list(config.probability.thresholds_mm),
            "window_px": window, "stride_px": stride,
            "pad_mode": str(inf.pad_mode), "calibrated": int(calibrated),
            "calibration_fitted_on": str(model.calibration_fitted_on) if calibrated else "",
            "calibration_sha256": model.calibration.digest() if calibrated and model.calibration else "",
            "pqpf_version": __version__,
        },
    )


@dataclass
class InferenceSession:
    """What the inits of one lead share, loaded once: the terrain, device and model."""

    terrain: Terrain
    device: Any
    model: LoadedModel

    @classmethod
    def open(cls, config: Config, lead_h: int, device: str = "auto", allow_other_grid: bool = False
             ) -> InferenceSession:
        terrain = read_terrain(config.paths.terrain_file)
        dev = select_device(device)
        model = load_model_for_lead(config, lead_h, dev)
        check_provenance(model, terrain, config.paths.terrain_file, allow_other_grid)
        fitted_on = model.calibration_fitted_on
        if fitted_on is not None:  # said once per run: which probabilities the files hold
            applied = config.inference.applies_calibration(fitted_on)
            logger.info("%s: isotonic calibration fitted on %s %s ([inference] calibrate = %s)", model.checkpoint,
                        fitted_on, "applied" if applied else "not applied", config.inference.calibrate)
        return cls(terrain, dev, model)


def run_inference(config: Config, init: dt.datetime, lead_h: int, device: str = "auto", overwrite: bool = False,
                  plot: bool = True, session: InferenceSession | None = None, allow_other_grid: bool = False
                  ) -> InferenceResult:
    """The stage behind ``resunet_inference.py INIT LEAD``.

    ``session`` (from :meth:`InferenceSession.open`) is reused when given, else opened
    when there is work to do.

    Raises
    ------
    InputFileError
        Missing GRAF file (the message names both places looked in), terrain file or
        checkpoint.
    """
    out = probs_path(config, init, lead_h)
    png = probs_png_path(config, init, lead_h)
    grib = probs_grib_path(config, init, lead_h) if "grib2" in config.output.formats else None
    extras = [p for p in (png if plot else None, grib) if p is not None]
    if kept(out, *extras, overwrite=overwrite):
        return InferenceResult(out, png if png.is_file() else None, Path(""), skipped=True)
    if not overwrite and out.is_file():  # the netCDF survived, a map or GRIB2 copy did not
        return _complete(config, init, lead_h, out, png if plot else None, grib)
    clean_temporaries(out.parent, png.parent)
    graf_path = require_graf(config, init, lead_h, prefer="laptop")
    if graf_path != graf_laptop_path(config, init, lead_h):
        logger.info("using the archive copy %s", graf_path)
    session = session or InferenceSession.open(config, lead_h, device, allow_other_grid)
    forecast = _forecast(config, init, lead_h, session.model, session.terrain, graf_path, session.device)
    write_probabilities(out, forecast)
    if grib is not None:
        _write_grib(grib, forecast, graf_path, init, lead_h)
    png_out = _plot(config, forecast, png, init, lead_h) if plot else None
    logger.info("wrote %s%s", out, f" and {png_out}" if png_out else "")
    return InferenceResult(out, png_out, session.model.checkpoint)


#: What :func:`run_inference_range` did (the report every ``--until`` range gives).
InferenceRangeReport = RangeReport


def run_inference_range(config: Config, inits: list[dt.datetime], lead_h: int, device: str = "auto",
                        overwrite: bool = False, plot: bool = True, allow_other_grid: bool = False
                        ) -> InferenceRangeReport:
    """Many inits of one lead in one process: the model and terrain are loaded once.

    An init whose GRAF file is missing or damaged is counted as failed and the rest run;
    a write failure (full disk) or a problem with the model or terrain stops the range.
    """
    session: InferenceSession | None = None

    def one(init: dt.datetime) -> tuple[Path, bool]:
        nonlocal session
        if session is None and not kept(probs_path(config, init, lead_h), overwrite=overwrite):
            session = InferenceSession.open(config, lead_h, device, allow_other_grid)
        result = run_inference(config, init, lead_h, device, overwrite, plot, session, allow_other_grid)
        return result.nc_path, result.skipped

    return run_range(config, inits, one)
