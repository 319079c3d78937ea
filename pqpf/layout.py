"""Where every file of the pipeline lives: one function per kind of file.

GRAF forecasts (WINC naming, SPEC.md section 3)::

    {graf_dir}/{YYYYMMDD}/{HH}/{prefix}{VALID:%Y%m%dT%H}0000Z.{INIT:%Y%m%dT%H}0000Z.PT{LEAD}H.CONUS@4km.APCP.SFC.grb2

with the old archive (``graf_dir_old``, prefix ``grid.hdo-graflr_conus.``) for inits up to
and including ``graf_archive_switch`` and the new one after it. The laptop copy and the
remote archive mirror this under one root: ``{root}/{archive}/{YYYYMMDD}/{HH}/{file}``
where ``archive`` is ``hdo-graf_conus`` or ``hdo-graflr_conus``.

MRMS raw files follow the public archive::

    {mrms_raw_dir}/{product}/{YYYYMMDD}/MRMS_{product}_{YYYYMMDD}-{HH}0000.grib2.gz
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path, PurePosixPath

from pqpf.config import Config
from pqpf.errors import InputFileError

__all__ = [
    "graf_filename",
    "graf_archive_name",
    "graf_archive_path",
    "graf_laptop_path",
    "graf_remote_path",
    "graf_relative_path",
    "mrms_raw_name",
    "mrms_raw_path",
    "mrms_remapped_path",
    "remap_weights_dir",
    "patch_file_path",
    "training_run_dir",
    "registry_path",
    "probs_path",
    "probs_png_path",
    "probs_grib_path",
    "verification_dir",
    "PATCH_SPLITS",
    "locate_graf",
    "require_graf",
    "graf_mrms_png_path",
    "patch_samples_png_path",
    "ensemble_path",
    "ensemble_netcdf_path",
    "ensemble_stamps_png_path",
    "ensemble_gif_path",
    "ensemble_verification_dir",
]

PATCH_SPLITS = ("train", "validation", "test")


def _is_old_archive(config: Config, init: dt.datetime) -> bool:
    return init <= config.paths.graf_archive_switch


def _prefix(config: Config, init: dt.datetime) -> str:
    return config.graf.prefix_old if _is_old_archive(config, init) else config.graf.prefix


def graf_archive_name(config: Config, init: dt.datetime) -> str:
    """``hdo-graflr_conus`` or ``hdo-graf_conus``: the prefix without ``grid.`` and dot."""
    name = _prefix(config, init)
    if name.startswith("grid."):
        name = name[len("grid."):]
    return name.rstrip(".")


def graf_filename(config: Config, init: dt.datetime, lead_h: int) -> str:
    """WINC file name of the 1-h precipitation ending at ``lead_h`` (LEAD not padded)."""
    valid = init + dt.timedelta(hours=lead_h)
    return (
        f"{_prefix(config, init)}{valid:%Y%m%dT%H}0000Z.{init:%Y%m%dT%H}0000Z."
        f"PT{int(lead_h)}H.CONUS@4km.APCP.SFC.grb2"
    )


def graf_relative_path(config: Config, init: dt.datetime, lead_h: int) -> PurePosixPath:
    """``{archive}/{YYYYMMDD}/{HH}/{file}``: the layout below a root holding both archives."""
    return PurePosixPath(
        graf_archive_name(config, init), f"{init:%Y%m%d}", f"{init:%H}",
        graf_filename(config, init, lead_h),
    )


def graf_archive_path(config: Config, init: dt.datetime, lead_h: int) -> Path:
    """The GRAF file in the HPC archive (``graf_dir`` or ``graf_dir_old``)."""
    base = config.paths.graf_dir_old if _is_old_archive(config, init) else config.paths.graf_dir
    return base / f"{init:%Y%m%d}" / f"{init:%H}" / graf_filename(config, init, lead_h)


def graf_laptop_path(config: Config, init: dt.datetime, lead_h: int) -> Path:
    """The local copy fetched by ``copy_graf_to_laptop.py``."""
    return config.paths.graf_laptop_dir / Path(graf_relative_path(config, init, lead_h))


def graf_remote_path(config: Config, init: dt.datetime, lead_h: int) -> str:
    """The GRAF file on the remote machine (a POSIX path, not expanded locally)."""
    return str(PurePosixPath(config.remote.remote_graf_dir) / graf_relative_path(config, init, lead_h))


def mrms_raw_name(product: str, valid: dt.datetime) -> str:
    """``MRMS_{product}_{YYYYMMDD}-{HH}0000.grib2.gz``."""
    return f"MRMS_{product}_{valid:%Y%m%d}-{valid:%H}0000.grib2.gz"


def mrms_raw_path(config: Config, product: str, valid: dt.datetime) -> Path:
    """A raw MRMS file in the public archive's layout."""
    return config.paths.mrms_raw_dir / product / f"{valid:%Y%m%d}" / mrms_raw_name(product, valid)


def mrms_remapped_path(config: Config, valid: dt.datetime) -> Path:
    """The hourly MRMS QPE + quality remapped to the GRAF grid."""
    return config.paths.mrms_remapped_dir / f"{valid:%Y%m}" / f"mrms_qpe01h_{valid:%Y%m%d%H}.nc"


def remap_weights_dir(config: Config) -> Path:
    """Cache of sparse remapping weights, one file per (source grid, target grid, method)."""
    return config.paths.mrms_remapped_dir / "weights"


def patch_file_path(config: Config, split: str, init: dt.datetime, lead_h: int) -> Path:
    """``GRAF_Unet_data_{split}_{INIT}_{LEAD}h.cPick`` in ``patch_dir``."""
    if split not in PATCH_SPLITS:
        raise ValueError(f"split must be one of {PATCH_SPLITS}, got {split!r}")
    return config.paths.patch_dir / f"GRAF_Unet_data_{split}_{init:%Y%m%d%H}_{int(lead_h)}h.cPick"


def training_run_dir(config: Config, init: dt.datetime, lead_h: int, kind: str = "resunet") -> Path:
    """Checkpoints, resolved hyper-parameters and metrics of one training of a model kind."""
    return config.paths.trainings_dir / f"{kind}_{init:%Y%m%d%H}_{int(lead_h)}h"


def registry_path(config: Config) -> Path:
    """JSON registry mapping model kind and lead time to the checkpoint inference uses."""
    return config.paths.trainings_dir / "registry.json"


def probs_path(config: Config, init: dt.datetime, lead_h: int) -> Path:
    """``{probs_dir}/{INIT}_{LEAD}h_probs.nc``."""
    return config.paths.probs_dir / f"{init:%Y%m%d%H}_{int(lead_h)}h_probs.nc"


def probs_grib_path(config: Config, init: dt.datetime, lead_h: int) -> Path:
    """``{probs_dir}/{INIT}_{LEAD}h_probs.grib2`` (``[output] formats`` with grib2)."""
    return config.paths.probs_dir / f"{init:%Y%m%d%H}_{int(lead_h)}h_probs.grib2"


def probs_png_path(config: Config, init: dt.datetime, lead_h: int) -> Path:
    """Map panels of the probabilities."""
    return config.paths.plots_dir / f"{init:%Y%m%d%H}_{int(lead_h)}h_probs.png"


def verification_dir(config: Config, begin: dt.datetime, end: dt.datetime, lead_h: int) -> Path:
    """Scores (CSV/JSON) and reliability diagrams of one verification run."""
    return config.paths.plots_dir / f"verification_{begin:%Y%m%d%H}_{end:%Y%m%d%H}_{int(lead_h)}h"


def locate_graf(config: Config, init: dt.datetime, lead_h: int, prefer: str = "archive") -> Path | None:
    """The GRAF file for (init, lead) where it exists: the archive or the laptop copy,
    ``prefer`` first; None if neither exists."""
    order = [graf_archive_path, graf_laptop_path]
    if prefer == "laptop":
        order.reverse()
    elif prefer != "archive":
        raise ValueError(f"prefer must be 'archive' or 'laptop', got {prefer!r}")
    for where in order:
        path = where(config, init, lead_h)
        if path.is_file():
            return path
    return None


def graf_mrms_png_path(config: Config, init: dt.datetime, lead_h: int) -> Path:
    """``plot_graf_mrms.py``: GRAF and MRMS side by side."""
    return config.paths.plots_dir / f"graf_mrms_{init:%Y%m%d%H}_{int(lead_h)}h.png"


def patch_samples_png_path(config: Config, split: str, init: dt.datetime, lead_h: int) -> Path:
    """``plot_graf_mrms_samples.py``: a grid of sampled patches of one split."""
    return config.paths.plots_dir / f"patch_samples_{split}_{init:%Y%m%d%H}_{int(lead_h)}h.png"


def require_graf(config: Config, init: dt.datetime, lead_h: int, prefer: str = "archive") -> Path:
    """Like :func:`locate_graf`, but a missing file is an :class:`InputFileError` naming
    both places looked in."""
    path = locate_graf(config, init, lead_h, prefer)
    if path is None:
        first, second = graf_archive_path(config, init, lead_h), graf_laptop_path(config, init, lead_h)
        if prefer == "laptop":
            first, second = second, first
        hint = "; fetch it with copy_graf_to_laptop.py" if prefer == "laptop" and config.remote.host else ""
        where = f" (nor at {second})" if second != first else ""
        raise InputFileError(first, f"GRAF forecast not found{where}{hint}")
    return path


def ensemble_path(config: Config, init: dt.datetime, lead_h: int) -> Path:
    """``{probs_dir}/{INIT}_{LEAD}h_ensemble.zarr``: the ensemble members (a zarr store)."""
    return config.paths.probs_dir / f"{init:%Y%m%d%H}_{int(lead_h)}h_ensemble.zarr"


def ensemble_netcdf_path(config: Config, init: dt.datetime, lead_h: int) -> Path:
    """``{probs_dir}/{INIT}_{LEAD}h_ensemble.nc``: the same content as netCDF (optional)."""
    return config.paths.probs_dir / f"{init:%Y%m%d%H}_{int(lead_h)}h_ensemble.nc"


def ensemble_stamps_png_path(config: Config, init: dt.datetime, lead_h: int) -> Path:
    """Postage stamps of the ensemble members."""
    return config.paths.plots_dir / f"{init:%Y%m%d%H}_{int(lead_h)}h_ensemble_stamps.png"


def ensemble_gif_path(config: Config, init: dt.datetime, lead_h: int) -> Path:
    """Animated GIF, one frame per ensemble member."""
    return config.paths.plots_dir / f"{init:%Y%m%d%H}_{int(lead_h)}h_ensemble.gif"


def ensemble_verification_dir(config: Config, begin: dt.datetime, end: dt.datetime, lead_h: int) -> Path:
    """Scores (JSON/CSV) and figures of one ensemble verification run."""
    return config.paths.plots_dir / f"verification_ensemble_{begin:%Y%m%d%H}_{end:%Y%m%d%H}_{int(lead_h)}h"
