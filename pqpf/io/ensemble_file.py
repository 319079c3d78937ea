"""The ensemble product: ``{probs_dir}/{INIT}_{LEAD}h_ensemble.zarr`` (CF-1.8 in a zarr store).

Written with xarray (as StormCast writes its forecasts), optionally also as netCDF beside
it (``..._ensemble.nc``, the same dataset, for tools that read netCDF only). Variables:

``precipitation`` (member, y, x), mm
    The members' 1-h amounts. Stored packed as uint16 in steps of
    :data:`PRECIP_STEP_MM` (0.01 mm; MRMS itself reports 0.1 mm) with ``scale_factor``,
    fill value 65535 for missing points (NaN), so at most :data:`PRECIP_MAX_MM` (655.34
    mm; larger values are clipped with a warning). Packing halves the size of float32
    and is decoded by every CF reader.
``prob_exceed`` (threshold, y, x), float32
    Fraction of members reaching each threshold (:func:`pqpf.verify.ensemble.member_exceedance_probs`),
    computed from the *stored* (packed) members, so the two variables agree exactly.
``graf_precipitation``, ``unet_mean_precipitation`` (y, x), mm, optional
    The GRAF amount and the U-Net's conditional mean amount, for the stamps and
    verification.

Coordinates: ``member`` (0..M-1, ``standard_name = realization``), ``threshold`` (mm),
1-D projection ``x``/``y``, 2-D ``lat``/``lon``, scalar ``time`` (valid time, int64
seconds since 1970), ``forecast_reference_time`` (init, same units) and
``forecast_period`` (hours); the CF grid-mapping variable of
:meth:`pqpf.grid.Grid.cf_grid_mapping`, named by every gridded variable's
``grid_mapping``. Global attributes: the init, lead and valid time, and the provenance
(:class:`EnsembleProvenance`: both checkpoints, seed, ensemble copula coupling on/off,
sampler settings).

Writing is atomic: the store is written to a hidden temporary directory beside the
target and renamed (a previous store of the same name is moved aside first and removed
after the rename).
"""

from __future__ import annotations

import datetime as dt
import logging
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf import __version__
from pqpf.dates import format_yyyymmddhh, from_epoch_seconds, parse_yyyymmddhh, to_epoch_seconds
from pqpf.errors import InputFileError
from pqpf.grid import Grid
from pqpf.io.atomic import atomic_directory, atomic_path
from pqpf.ordinal import AMOUNT_ATOL_MM
from pqpf.verify.ensemble import member_exceedance_probs

__all__ = [
    "PRECIP_STEP_MM",
    "PRECIP_MAX_MM",
    "EnsembleProvenance",
    "EnsembleForecast",
    "make_ensemble",
    "write_ensemble",
    "read_ensemble_provenance",
    "read_ensemble",
]

logger = logging.getLogger(__name__)

#: Resolution of the stored member amounts (mm).
PRECIP_STEP_MM = 0.01
_STEP = np.float32(PRECIP_STEP_MM)
_FILL = 65535
#: Largest storable amount (mm): 65534 steps.
PRECIP_MAX_MM = 65534 * PRECIP_STEP_MM
_TIME_UNITS = "seconds since 1970-01-01 00:00:00"
_REQUIRED = ("precipitation", "prob_exceed", "x", "y", "time", "forecast_reference_time", "forecast_period")
_OPTIONAL = {"graf_precipitation": "graf_mm", "unet_mean_precipitation": "unet_mean_mm"}
_SAMPLER_PREFIX = "sampler_"
_READ_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError)


@dataclass(frozen=True)
class EnsembleProvenance:
    """Where an ensemble came from (global attributes of the file).

    Attributes
    ----------
    unet_checkpoint, diffusion_checkpoint : str
        Paths of the two checkpoints.
    seed : int
        Seed of the sampler (member ``m`` uses its own stream derived from it).
    ecc : bool
        Whether ensemble copula coupling gave the members the U-Net's marginals.
    sampler : mapping of str to int, float or str
        Sampler settings, e.g. ``n_steps``, ``sigma_min``, ``sigma_max``, ``rho``,
        ``s_churn``, ``window_px``, ``stride_px``; stored as ``sampler_<name>``.
    extra : mapping of str to int, float or str
        Anything else worth keeping (stored under its own name).
    """

    unet_checkpoint: str
    diffusion_checkpoint: str
    seed: int
    ecc: bool
    sampler: Mapping[str, int | float | str] = field(default_factory=dict)
    extra: Mapping[str, int | float | str] = field(default_factory=dict)

    @property
    def ecc_mode(self) -> str:
        """``"off"``, or the ECC levels: ``"quantile"`` (ECC-Q; stores written before
        ``ecc_levels`` existed), ``"stratified"`` (ECC-S) or ``"mean"`` (ECC-M); :mod:`pqpf.diffusion.ecc`."""
        return str(self.extra.get("ecc_levels", "quantile")) if self.ecc else "off"

    @property
    def ecc_template(self) -> str:
        """What ECC ranked the members by: ``"z smoothed S px"`` (the model's variable,
        :func:`pqpf.diffusion.ecc.rank_template`) or ``"amounts"`` (stores written before
        ``ecc_smoothing_px`` existed); ``"off"`` without ECC."""
        if not self.ecc:
            return "off"
        sigma = self.extra.get("ecc_smoothing_px")
        return "amounts" if sigma is None else f"z smoothed {float(sigma):g} px"

    @property
    def ecc_level_smoothing_px(self) -> float | str | None:
        """ECC-S's level smoothing in grid points (``"inf"``: one level per member; 0 for
        stores written before ``ecc_level_smoothing_px`` existed, whose levels were drawn
        point by point); None for other ECC modes."""
        if self.ecc_mode != "stratified":
            return None
        value = self.extra.get("ecc_level_smoothing_px", 0.0)
        return "inf" if str(value) == "inf" else float(value)

    def to_attrs(self) -> dict[str, Any]:
        """Flat netCDF/zarr-compatible attributes (``ecc`` as ``"on"``/``"off"``)."""
        out: dict[str, Any] = {"unet_checkpoint": str(self.unet_checkpoint),
                               "diffusion_checkpoint": str(self.diffusion_checkpoint),
                               "seed": int(self.seed), "ecc": "on" if self.ecc else "off"}
        for prefix, values in ((_SAMPLER_PREFIX, self.sampler), ("", self.extra)):
            for key, value in values.items():
                out[prefix + key] = _attr_value(prefix + key, value)
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], known: Sequence[str] = ()) -> EnsembleProvenance:
        """Rebuild from :meth:`to_attrs` output; keys in ``known`` (the file's own
        attributes, e.g. ``Conventions``) are not taken as ``extra``."""
        core = {"unet_checkpoint", "diffusion_checkpoint", "seed", "ecc"}
        sampler = {k[len(_SAMPLER_PREFIX):]: _plain(v) for k, v in attrs.items() if k.startswith(_SAMPLER_PREFIX)}
        extra = {k: _plain(v) for k, v in attrs.items()
                 if k not in core and k not in known and not k.startswith(_SAMPLER_PREFIX)}
        return cls(unet_checkpoint=str(attrs.get("unet_checkpoint", "")),
                   diffusion_checkpoint=str(attrs.get("diffusion_checkpoint", "")),
                   seed=int(attrs.get("seed", -1)), ecc=str(attrs.get("ecc", "off")) == "on",
                   sampler=sampler, extra=extra)


def _attr_value(name: str, value: Any) -> int | float | str:
    """An attribute value netCDF and zarr both store: int, float or str (bool -> 0/1)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (str, Path)):
        return str(value)
    raise ValueError(f"attribute {name!r} must be an int, float or str, got {type(value).__name__}")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True, eq=False)
class EnsembleForecast:
    """One init's ensemble (see the module docstring for the variables).

    Attributes
    ----------
    grid : Grid
    init : datetime
    lead_h : int
    members_mm : float32 (M, ny, nx)
        Member amounts (mm) as stored: multiples of 0.01 mm, NaN where missing.
    thresholds_mm : tuple of float, length T
    prob : float32 (T, ny, nx)
        Fraction of members reaching each threshold; NaN where a member is missing.
    provenance : EnsembleProvenance
    graf_mm, unet_mean_mm : float32 (ny, nx) or None
    attrs : dict
        All global attributes as stored (filled by the reader).
    lat, lon : float32 (ny, nx) or None
        Coordinates as stored (filled by the reader).
    source : Path or None
        The file read.
    """

    grid: Grid
    init: dt.datetime
    lead_h: int
    members_mm: NDArray[np.float32]
    thresholds_mm: tuple[float, ...]
    prob: NDArray[np.float32]
    provenance: EnsembleProvenance
    graf_mm: NDArray[np.float32] | None = None
    unet_mean_mm: NDArray[np.float32] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    lat: NDArray[np.float32] | None = None
    lon: NDArray[np.float32] | None = None
    source: Path | None = None

    @property
    def n_members(self) -> int:
        return int(self.members_mm.shape[0])

    @property
    def valid(self) -> dt.datetime:
        """End of the 1-h accumulation."""
        return self.init + dt.timedelta(hours=self.lead_h)


def _quantise(members: NDArray[np.float64]) -> NDArray[np.float32]:
    """Members rounded to 0.01 mm exactly as a CF reader decodes the packed store."""
    over = members > PRECIP_MAX_MM
    if over.any():
        logger.warning("%d member amounts above %g mm clipped (largest %g mm)", int(over.sum()), PRECIP_MAX_MM,
                       float(np.nanmax(members)))
    steps = np.round(np.clip(members, 0.0, PRECIP_MAX_MM) / PRECIP_STEP_MM)
    return np.where(np.isnan(members), np.float32(np.nan), steps.astype(np.float32) * _STEP).astype(np.float32)


def _field(name: str, values: ArrayLike | None, grid: Grid) -> NDArray[np.float32] | None:
    if values is None:
        return None
    a = np.asarray(values, dtype=np.float32)
    if a.shape != grid.shape:
        raise ValueError(f"{name} must have the grid's shape {grid.shape}, got {a.shape}")
    return a


def make_ensemble(grid: Grid, members_mm: ArrayLike, init: dt.datetime, lead_h: int,
                  thresholds_mm: Sequence[float], provenance: EnsembleProvenance,
                  graf_mm: ArrayLike | None = None, unet_mean_mm: ArrayLike | None = None) -> EnsembleForecast:
    """The product of one init from its members: amounts as stored, member probabilities.

    Parameters
    ----------
    grid : Grid
    members_mm : float array, shape (M, ny, nx), M >= 1
        Member amounts (mm), >= 0 (round-off down to -1e-4 mm is taken as 0); NaN where
        missing.
    init, lead_h
        Initialisation time and lead (h).
    thresholds_mm : sequence of float
        Thresholds of ``prob_exceed`` (positive, increasing).
    provenance : EnsembleProvenance
    graf_mm, unet_mean_mm : float array (ny, nx), optional

    Returns
    -------
    EnsembleForecast
        Members rounded to :data:`PRECIP_STEP_MM` (what the file will hold) and the
        member probabilities computed from them.

    Raises
    ------
    ValueError
        Wrong shapes, negative amounts, bad thresholds.
    """
    x = np.asarray(members_mm, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 1 or x.shape[1:] != grid.shape:
        raise ValueError(f"members_mm must have shape (M >= 1, {grid.ny}, {grid.nx}), got {x.shape}")
    if np.nanmin(x, initial=0.0) < -AMOUNT_ATOL_MM:
        raise ValueError(f"member amounts must be >= 0 mm, got a minimum of {np.nanmin(x):g} mm")
    t = tuple(float(v) for v in thresholds_mm)
    if not t or any(v <= 0 for v in t) or any(b <= a for a, b in zip(t, t[1:])):
        raise ValueError(f"thresholds_mm must be positive and increasing, got {list(t)}")
    members = _quantise(x)
    return EnsembleForecast(grid=grid, init=init, lead_h=int(lead_h), members_mm=members, thresholds_mm=t,
                            prob=member_exceedance_probs(members, t), provenance=provenance,
                            graf_mm=_field("graf_mm", graf_mm, grid),
                            unet_mean_mm=_field("unet_mean_mm", unet_mean_mm, grid))


# ---- writing ---------------------------------------------------------------------------------


def _amount_attrs(long_name: str) -> dict[str, Any]:
    return {"long_name": long_name, "standard_name": "lwe_thickness_of_precipitation_amount", "units": "mm",
            "cell_methods": "time: sum"}


def _coords(forecast: EnsembleForecast, lonlat: tuple[NDArray[Any], NDArray[Any]]) -> dict[str, Any]:
    grid = forecast.grid
    unit = ("m", "projection_x_coordinate", "projection_y_coordinate") if grid.is_lambert else \
        ("degrees", "longitude", "latitude")
    return {
        "member": ("member", np.arange(forecast.n_members, dtype=np.int32),
                   {"standard_name": "realization", "long_name": "ensemble member"}),
        "threshold": ("threshold", np.asarray(forecast.thresholds_mm, np.float32),
                      {"units": "mm", "long_name": "1-h precipitation threshold"}),
        "x": ("x", grid.x, {"standard_name": unit[1], "units": unit[0], "axis": "X"}),
        "y": ("y", grid.y, {"standard_name": unit[2], "units": unit[0], "axis": "Y"}),
        "lat": (("y", "x"), np.asarray(lonlat[1], np.float32), {"standard_name": "latitude",
                                                                 "units": "degrees_north"}),
        "lon": (("y", "x"), np.asarray(lonlat[0], np.float32), {"standard_name": "longitude",
                                                                 "units": "degrees_east"}),
        "time": ((), np.int64(to_epoch_seconds(forecast.valid)),
                 {"standard_name": "time", "units": _TIME_UNITS, "calendar": "standard"}),
        "forecast_reference_time": ((), np.int64(to_epoch_seconds(forecast.init)),
                                    {"standard_name": "forecast_reference_time", "units": _TIME_UNITS,
                                     "calendar": "standard"}),
        "forecast_period": ((), np.int32(forecast.lead_h), {"standard_name": "forecast_period", "units": "hours"}),
    }


def _dataset(forecast: EnsembleForecast, lonlat: tuple[NDArray[Any], NDArray[Any]] | None) -> Any:
    """The CF dataset of a forecast (xarray)."""
    import xarray as xr

    grid = forecast.grid
    gm_name, gm_attrs = grid.cf_grid_mapping()
    on_grid = {"grid_mapping": gm_name}
    data: dict[str, Any] = {
        "precipitation": (("member", "y", "x"), forecast.members_mm,
                          {**_amount_attrs("ensemble member 1-h precipitation amount"), **on_grid}),
        "prob_exceed": (("threshold", "y", "x"), forecast.prob,
                        {"long_name": "fraction of ensemble members with 1-h amount >= threshold", "units": "1",
                         "valid_min": 0.0, "valid_max": 1.0, **on_grid}),
        gm_name: ((), np.int32(0), gm_attrs),
    }
    if forecast.graf_mm is not None:
        data["graf_precipitation"] = (("y", "x"), forecast.graf_mm, {**_amount_attrs("GRAF 1-h precipitation"),
                                                                     **on_grid})
    if forecast.unet_mean_mm is not None:
        data["unet_mean_precipitation"] = (("y", "x"), forecast.unet_mean_mm, {
            **_amount_attrs("U-Net conditional mean 1-h amount (mean of its binned distribution)"), **on_grid})
    stamp = _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime())
    attrs = {"Conventions": "CF-1.8", "title": "pqpf generative ensemble of 1-h precipitation",
             "history": f"{stamp} written by pqpf {__version__}", "pqpf_version": __version__,
             "init": format_yyyymmddhh(forecast.init), "lead_h": int(forecast.lead_h),
             "valid": format_yyyymmddhh(forecast.valid), "n_members": forecast.n_members,
             "precipitation_step_mm": PRECIP_STEP_MM, **forecast.provenance.to_attrs()}
    coords = _coords(forecast, lonlat if lonlat is not None else grid.lonlat())
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _encoding(ds: Any, netcdf: bool) -> dict[str, dict[str, Any]]:
    """Packing of the members; per-field chunks; zlib for netCDF (zarr: its default codec)."""
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        if var.dims[-2:] != ("y", "x"):
            continue
        lead = (1,) * (var.ndim - 2)
        enc[str(name)] = ({"zlib": True, "complevel": 4, "shuffle": True,
                           "chunksizes": (*lead, min(ny, 512), min(nx, 512))} if netcdf
                          else {"chunks": (*lead, ny, nx)})
        if name in ("lat", "lon"):
            continue
        enc[str(name)]["_FillValue"] = np.float32(np.nan)
    enc["precipitation"].update({"dtype": "uint16", "scale_factor": _STEP, "_FillValue": np.uint16(_FILL)})
    return enc


def write_ensemble(path: Path, forecast: EnsembleForecast, netcdf_path: Path | None = None,
                   lonlat: tuple[NDArray[Any], NDArray[Any]] | None = None) -> list[Path]:
    """Write the zarr store (and the netCDF file when ``netcdf_path`` is given), atomically.

    Parameters
    ----------
    path : Path
        The store, ``..._ensemble.zarr`` (:func:`pqpf.layout.ensemble_path`).
    forecast : EnsembleForecast
        From :func:`make_ensemble`.
    netcdf_path : Path, optional
        Also write the same dataset as netCDF-4 there.
    lonlat : (lon, lat), optional
        2-D coordinates of the grid, computed once by the caller; else from the grid.

    Returns
    -------
    list of Path
        The files written.
    """
    ds = _dataset(forecast, lonlat)
    with atomic_directory(Path(path)) as tmp:
        ds.to_zarr(tmp, mode="w-", zarr_format=2, consolidated=True, encoding=_encoding(ds, netcdf=False))
    written = [Path(path)]
    if netcdf_path is not None:
        with atomic_path(netcdf_path) as tmp_nc:
            ds.to_netcdf(tmp_nc, format="NETCDF4", engine="netcdf4", encoding=_encoding(ds, netcdf=True))
        written.append(Path(netcdf_path))
    logger.info("wrote %s", " and ".join(str(p) for p in written))
    return written


# ---- reading ---------------------------------------------------------------------------------


def _open(path: Path) -> Any:
    import xarray as xr

    if not path.exists():
        raise InputFileError(path, "ensemble file not found (run ensemble_inference.py for this init)")
    try:
        if path.suffix == ".nc":
            return xr.open_dataset(path, engine="netcdf4", decode_times=False, mask_and_scale=True)
        return xr.open_zarr(path, decode_times=False, consolidated=None, chunks=None)
    except _READ_ERRORS as exc:
        kind = "netCDF file" if path.suffix == ".nc" else "zarr store"
        raise InputFileError(path, f"not a readable {kind} ({type(exc).__name__}: {exc})") from None


def _grid(ds: Any, path: Path) -> Grid:
    mapping = [v for v in ds.variables.values() if "grid_mapping_name" in v.attrs]
    if not mapping:
        raise InputFileError(path, "not an ensemble file (no CF grid mapping variable)")
    try:
        return Grid.from_cf(dict(mapping[0].attrs), ds["x"].values, ds["y"].values)
    except (KeyError, ValueError) as exc:
        raise InputFileError(path, f"cannot rebuild the grid ({exc})") from None


def _load(ds: Any, name: str, path: Path) -> NDArray[np.float32]:
    try:
        return np.asarray(ds[name].values, dtype=np.float32)
    except _READ_ERRORS as exc:
        raise InputFileError(path, f"cannot read variable {name!r} ({type(exc).__name__}: {exc})") from None


_KNOWN_ATTRS = ("Conventions", "title", "history", "pqpf_version", "init", "lead_h", "valid", "n_members",
                "precipitation_step_mm")


def read_ensemble_provenance(path: Path) -> tuple[EnsembleProvenance, int]:
    """(provenance, number of members) of a product from its attributes, reading no array
    (InputFileError for a missing or unreadable file or one without a member dimension)."""
    ds = _open(Path(path))
    try:
        if "member" not in ds.sizes:
            raise InputFileError(Path(path), "not an ensemble file (no member dimension)")
        return EnsembleProvenance.from_attrs({k: _plain(v) for k, v in ds.attrs.items()}, _KNOWN_ATTRS), \
            int(ds.sizes["member"])
    finally:
        ds.close()


def read_ensemble(path: Path) -> EnsembleForecast:
    """Read a product written by :func:`write_ensemble` (the zarr store or the netCDF file).

    Raises
    ------
    InputFileError
        Missing, unreadable or corrupt file, or one that is not an ensemble product (a
        variable, coordinate or the grid mapping absent, shapes inconsistent), in one
        line naming the file.
    """
    path = Path(path)
    ds = _open(path)
    try:
        missing = [n for n in _REQUIRED if n not in ds.variables]
        if missing:
            raise InputFileError(path, f"not an ensemble file (no {', '.join(missing)})")
        grid = _grid(ds, path)
        members = _load(ds, "precipitation", path)
        prob = _load(ds, "prob_exceed", path)
        thresholds = tuple(float(t) for t in ds["threshold"].values)
        if members.ndim != 3 or members.shape[1:] != grid.shape or prob.shape != (len(thresholds), *grid.shape):
            raise InputFileError(path, f"inconsistent shapes: members {members.shape}, prob_exceed {prob.shape}, "
                                 f"grid {grid.shape}")
        optional = {key: _load(ds, name, path) if name in ds.variables else None for name, key in _OPTIONAL.items()}
        init = from_epoch_seconds(int(ds["forecast_reference_time"].values))
        attrs = {k: _plain(v) for k, v in ds.attrs.items()}
        lat = _load(ds, "lat", path) if "lat" in ds.variables else None
        lon = _load(ds, "lon", path) if "lon" in ds.variables else None
        lead_h = int(ds["forecast_period"].values)
    finally:
        ds.close()
    if "init" in attrs and parse_yyyymmddhh(str(attrs["init"])) != init:
        raise InputFileError(path, f"init attribute {attrs['init']} differs from forecast_reference_time {init}")
    return EnsembleForecast(grid=grid, init=init, lead_h=lead_h, members_mm=members, thresholds_mm=thresholds,
                            prob=prob, provenance=EnsembleProvenance.from_attrs(attrs, _KNOWN_ATTRS), attrs=attrs,
                            lat=lat, lon=lon, source=path, **optional)
