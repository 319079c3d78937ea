"""The probabilities product: ``{probs_dir}/{INIT}_{LEAD}h_probs.nc`` (CF-1.8).

Variables, on ``(threshold, y, x)`` unless said otherwise:

``prob_exceed`` (float32, 4 significant digits)
    The U-Net's P(1-h MRMS amount >= threshold), NaN where GRAF is missing.
``prob_exceed_raw`` (int8, 0/1, fill -1)
    The raw GRAF exceedance.
``prob_exceed_smoothed`` (float32, 4 significant digits)
    The smoothed-GRAF reference (attribute ``gaussian_sigma_px``).
``graf_precipitation`` (float32, ``(y, x)``, mm)
    The GRAF 1-h amount.

The ``threshold`` coordinate holds every interior bin edge of the model (it includes
the configured thresholds), so verification can rebuild the forecast distribution.
Global attributes name the init, lead, valid time, checkpoint and stitching settings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf.errors import InputFileError
from pqpf.grid import Grid
from pqpf.io.netcdf import NcVar, read_grid_netcdf, write_grid_netcdf
from pqpf.ordinal import EDGE_ATOL_MM

__all__ = ["ProbabilityForecast", "write_probabilities", "read_probabilities"]

_PROB_ATTRS = {"units": "1", "valid_min": 0.0, "valid_max": 1.0}


@dataclass(frozen=True, eq=False)
class ProbabilityForecast:
    """One init's probabilities (see the module docstring for the variables).

    Attributes
    ----------
    grid : Grid
    thresholds_mm : tuple of float, length T
    prob, prob_raw, prob_smoothed : float32 (T, ny, nx); NaN where missing
    graf_mm : float32 (ny, nx)
    valid : datetime
    reference_sigma_px : float
    attrs : dict
        Global attributes (init, lead_h, checkpoint, checkpoint_lead_h, ...).
    lat : float32 (ny, nx) or None
        Latitudes as stored (filled by the reader).
    """

    grid: Grid
    thresholds_mm: tuple[float, ...]
    prob: NDArray[np.float32]
    prob_raw: NDArray[np.float32]
    prob_smoothed: NDArray[np.float32]
    graf_mm: NDArray[np.float32]
    valid: dt.datetime
    reference_sigma_px: float
    attrs: dict[str, Any] = field(default_factory=dict)
    lat: NDArray[np.float32] | None = None

    def index(self, thresholds_mm: tuple[float, ...] | list[float]) -> list[int]:
        """Positions of ``thresholds_mm`` on the threshold axis.

        Raises
        ------
        ValueError
            Naming the thresholds the file does not hold.
        """
        edges = np.asarray(self.thresholds_mm)
        missing = [t for t in thresholds_mm if not (np.abs(edges - t) <= EDGE_ATOL_MM).any()]
        if missing:
            raise ValueError(f"has no probabilities at {missing} mm")
        return [int(np.argmin(np.abs(edges - t))) for t in thresholds_mm]


def write_probabilities(path: Path, forecast: ProbabilityForecast) -> Path:
    """Write the product atomically."""
    raw = np.where(np.isnan(forecast.prob_raw), -1, forecast.prob_raw).astype(np.int8)  # -1: the fill value
    variables = {
        "prob_exceed": NcVar(forecast.prob, {**_PROB_ATTRS,
                                             "long_name": "U-Net probability that the 1-h MRMS amount >= threshold"},
                             dims=("threshold", "y", "x"), significant_digits=4),
        "prob_exceed_raw": NcVar(raw, {**_PROB_ATTRS, "long_name": "raw GRAF exceedance (0 or 1)"},
                                 dims=("threshold", "y", "x"), dtype="i1", fill_value=-1),
        "prob_exceed_smoothed": NcVar(forecast.prob_smoothed, {
            **_PROB_ATTRS, "long_name": "smoothed-GRAF reference probability",
            "gaussian_sigma_px": forecast.reference_sigma_px}, dims=("threshold", "y", "x"), significant_digits=4),
        "graf_precipitation": NcVar(forecast.graf_mm, {"units": "mm", "long_name": "GRAF 1-h precipitation",
                                                       "standard_name": "lwe_thickness_of_precipitation_amount"}),
    }
    return write_grid_netcdf(
        path, forecast.grid, variables,
        coords={"threshold": (np.asarray(forecast.thresholds_mm, np.float32),
                              {"units": "mm", "long_name": "1-h precipitation threshold"})},
        time=forecast.valid,
        global_attrs={"title": "pqpf probabilistic 1-h precipitation forecast", **forecast.attrs},
    )


def read_probabilities(path: Path) -> ProbabilityForecast:
    """Read a product written by :func:`write_probabilities`.

    Raises
    ------
    InputFileError
        Missing or unreadable file, or one that lacks a variable or its time.
    """
    ds = read_grid_netcdf(path, ["prob_exceed", "prob_exceed_raw", "prob_exceed_smoothed", "graf_precipitation",
                                 "lat"])
    if ds.time is None or "threshold" not in ds.coords:
        raise InputFileError(path, "not a probabilities file (no time or threshold coordinate)")
    raw = ds.data["prob_exceed_raw"].astype(np.float32)
    raw[raw < 0] = np.nan  # the fill value -1 marks missing GRAF
    try:
        sigma = float(ds.var_attrs["prob_exceed_smoothed"].get("gaussian_sigma_px", np.nan))
    except (TypeError, ValueError):
        sigma = float("nan")
    return ProbabilityForecast(
        grid=ds.grid, thresholds_mm=tuple(float(t) for t in ds.coords["threshold"]),
        prob=ds.data["prob_exceed"].astype(np.float32, copy=False), prob_raw=raw,
        prob_smoothed=ds.data["prob_exceed_smoothed"].astype(np.float32, copy=False),
        graf_mm=ds.data["graf_precipitation"].astype(np.float32, copy=False), valid=ds.time,
        reference_sigma_px=sigma, attrs=dict(ds.attrs), lat=ds.data["lat"].astype(np.float32, copy=False),
    )
