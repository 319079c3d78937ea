"""The sections of the site configuration: one frozen dataclass per INI section.

Each field's default is the value a site gets when its INI file leaves the key out, and
``__post_init__`` checks the values (finite, in range, a name of the registry that
implements the choice). :mod:`pqpf.config` reads the INI file into these.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pqpf.calibration import FITTED_ON_CROSSFIT, FITTED_ON_FORECASTS
from pqpf.features import PAD_MODES
from pqpf.remap_methods import METHODS as REMAP_METHODS

__all__ = [
    "CALIBRATE_SETTINGS",
    "PathsConfig",
    "RemoteConfig",
    "GrafConfig",
    "MrmsConfig",
    "TerrainConfig",
    "ProbabilityConfig",
    "PatchesConfig",
    "TrainingConfig",
    "InferenceConfig",
    "OutputConfig",
    "VerificationConfig",
    "OUTPUT_FORMATS",
    "check",
    "check_choice",
]


def check(condition: bool, message: str) -> None:
    """Raise ValueError (turned into a ConfigError naming file and section by the loaders)."""
    if not condition:
        raise ValueError(message)


def check_choice(name: str, value: str, valid: Iterable[str]) -> None:
    """Raise ValueError unless ``value`` is one of ``valid`` (a registry's names)."""
    names = tuple(valid)
    check(value in names, f"{name} must be one of {', '.join(names)}; got {value!r}")


@dataclass(frozen=True)
class PathsConfig:
    """``[paths]``: every directory and file the stages read or write."""

    graf_dir: Path
    graf_dir_old: Path
    graf_terrain_grib: Path
    terrain_file: Path
    mrms_raw_dir: Path
    mrms_remapped_dir: Path
    patch_dir: Path
    trainings_dir: Path
    graf_laptop_dir: Path
    probs_dir: Path
    plots_dir: Path
    #: Last init (inclusive) whose forecasts live in the old ``hdo-graflr_conus`` archive.
    graf_archive_switch: dt.datetime = dt.datetime(2024, 4, 5, 12)


@dataclass(frozen=True)
class RemoteConfig:
    """``[remote]``: the HPC machine that holds the GRAF archive.

    ``remote_graf_dir`` is a path on the remote machine and is not expanded locally.
    It holds the archive directories ``hdo-graf_conus/`` and ``hdo-graflr_conus/``.
    ``ssh_options`` are extra ``ssh`` arguments (e.g. ``-p 2222 -i KEY``); options that
    would accept unknown host keys are refused by :mod:`pqpf.stages.fetch`.
    """

    host: str = ""
    user: str = ""
    remote_graf_dir: str = ""
    ssh_options: str = ""


@dataclass(frozen=True)
class GrafConfig:
    """``[graf]``: the deterministic forecast archive."""

    lead_min_h: int = 1
    lead_max_h: int = 48
    prefix: str = "grid.hdo-graf_conus."
    prefix_old: str = "grid.hdo-graflr_conus."

    def __post_init__(self) -> None:
        check(0 <= self.lead_min_h <= self.lead_max_h,
                 f"lead_min_h..lead_max_h must be 0 <= min <= max, got {self.lead_min_h}..{self.lead_max_h}")


@dataclass(frozen=True)
class MrmsConfig:
    """``[mrms]``: the observation archive and its remapping to the GRAF grid."""

    #: Other QPE products: MultiSensor_QPE_01H_Pass1_00.00 (earlier, fewer gauges),
    #: GaugeCorr_QPE_01H_00.00 (the archive before Multi-Sensor QPE); set ``qpe_grib_id``
    #: to what ``grib_ls -p discipline,parameterCategory,parameterNumber FILE`` shows.
    qpe_product: str = "MultiSensor_QPE_01H_Pass2_00.00"
    #: Empty when the archive has no quality product (before RadarAccumulationQualityIndex
    #: existed, or another analysis): every cell with a QPE value then counts (quality 1).
    quality_product: str = "RadarAccumulationQualityIndex_01H_00.00"
    #: (discipline, category, number) the QPE message must carry: 209/6/37 is pass 2.
    qpe_grib_id: tuple[int, ...] = (209, 6, 37)
    #: Points whose remapped radar quality is below this are not used for training or
    #: verification.
    min_quality: float = 0.5
    remap_method: str = "conservative"
    download_url: str = "https://noaa-mrms-pds.s3.amazonaws.com/CONUS"

    def __post_init__(self) -> None:
        check(len(self.qpe_grib_id) == 3, f"qpe_grib_id must be discipline, category, number; got {self.qpe_grib_id}")
        check(0.0 <= self.min_quality <= 1.0, f"min_quality must be in [0, 1], got {self.min_quality}")
        check_choice("remap_method", self.remap_method, REMAP_METHODS)


@dataclass(frozen=True)
class TerrainConfig:
    """``[terrain]``."""

    #: Gaussian smoothing of the terrain height, standard deviation in grid points.
    smoothing_sigma_px: float = 10.0

    def __post_init__(self) -> None:
        check(self.smoothing_sigma_px >= 0, f"smoothing_sigma_px must be >= 0, got {self.smoothing_sigma_px}")


@dataclass(frozen=True)
class ProbabilityConfig:
    """``[probability]``: the thresholds and the smoothed-GRAF reference forecast."""

    thresholds_mm: tuple[float, ...] = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)
    #: The reference probability is GRAF exceedance smoothed by a Gaussian of standard
    #: deviation ``reference_sigma_px + reference_sigma_px_per_h * lead`` grid points.
    reference_sigma_px: float = 2.0
    reference_sigma_px_per_h: float = 0.25

    def __post_init__(self) -> None:
        t = self.thresholds_mm
        check(len(t) > 0 and all(x > 0 for x in t) and all(a < b for a, b in zip(t, t[1:])),
                 f"thresholds_mm must be positive and increasing, got {t}")
        check(self.reference_sigma_px >= 0 and self.reference_sigma_px_per_h >= 0,
                 "reference_sigma_px and reference_sigma_px_per_h must be >= 0")


@dataclass(frozen=True)
class PatchesConfig:
    """``[patches]``: training windows, patch sampling and the train/validation/test split."""

    patch_px: int = 64
    candidate_stride_px: int = 16
    #: Days of inits before INIT used for training (the verifying MRMS must exist before INIT).
    ndays_train: int = 60
    #: Also use inits from 10 to 12 months before INIT (the same season a year earlier).
    previous_year: bool = True
    previous_year_start_days: int = 365
    previous_year_end_days: int = 304
    #: Hours (UTC) of the inits used for training.
    cycles: tuple[int, ...] = (0, 12)
    #: Mean number of patches per init; wet inits get more, dry inits fewer.
    patches_per_init: int = 40
    wet_threshold_mm: float = 0.25
    #: Share of patches drawn without regard to rain, so dry areas stay represented.
    dry_share: float = 0.2
    #: A patch is rejected when more than this fraction of its pixels has poor MRMS quality.
    max_poor_quality_fraction: float = 0.3
    #: Length of the contiguous date blocks that are assigned to one split.
    split_block_days: int = 5
    #: Shares of blocks for train, validation, test.
    split_fractions: tuple[float, ...] = (0.7, 0.15, 0.15)
    #: Inits this close (hours) after a block of another split are dropped, so that no
    #: two neighbouring, strongly correlated inits sit in different splits.
    split_gap_h: int = 12
    seed: int = 20251201

    def __post_init__(self) -> None:
        check(self.patch_px >= 8, f"patch_px must be at least 8, got {self.patch_px}")
        check(self.candidate_stride_px >= 1, f"candidate_stride_px must be >= 1, got {self.candidate_stride_px}")
        check(self.ndays_train >= 1, f"ndays_train must be >= 1, got {self.ndays_train}")
        check(len(self.cycles) > 0 and all(0 <= c <= 23 for c in self.cycles),
                 f"cycles must be hours 0..23, got {self.cycles}")
        check(self.previous_year_start_days > self.previous_year_end_days >= 0,
                 "previous_year_start_days must exceed previous_year_end_days (days before INIT), got "
                 f"{self.previous_year_start_days} and {self.previous_year_end_days}")
        check(self.patches_per_init >= 1, f"patches_per_init must be >= 1, got {self.patches_per_init}")
        check(0.0 <= self.dry_share <= 1.0, f"dry_share must be in [0, 1], got {self.dry_share}")
        check(0.0 <= self.max_poor_quality_fraction <= 1.0,
                 f"max_poor_quality_fraction must be in [0, 1], got {self.max_poor_quality_fraction}")
        check(self.split_block_days >= 1, f"split_block_days must be >= 1, got {self.split_block_days}")
        f = self.split_fractions
        check(len(f) == 3 and all(x >= 0 for x in f) and f[0] > 0,
                 f"split_fractions must be three shares (train > 0, validation, test), got {f}")
        # Blocks are dealt in a pattern of about 1/share blocks per split: a share of
        # 1e-12 would ask for a pattern of 1e12 blocks (MemoryError).
        check(all(x == 0 or x / sum(f) >= 0.01 for x in f),
                 f"split_fractions: each share must be 0 or at least 1 % of the total, got {f}")
        check(self.split_gap_h >= 0, f"split_gap_h must be >= 0, got {self.split_gap_h}")


@dataclass(frozen=True)
class TrainingConfig:
    """``[training]``."""

    #: YAML file of named hyper-parameter sets; empty means the one shipped with pqpf.
    hparams_file: Path | None = None
    hparams_name: str = "laptop"


@dataclass(frozen=True)
class InferenceConfig:
    """``[inference]``: full-field stitching."""

    #: Window size and stride in grid points; 0 means the measured default for the network
    #: (:func:`pqpf.stitching.inference_window`): 256/224 for a batch-norm U-Net, whose
    #: output does not depend on the window; the training patch size at half that stride
    #: for a group-norm one (and the diffusion denoiser).
    window_px: int = 0
    stride_px: int = 0
    #: Windows per model call; 0: as many as hold 16 x 64 x 64 points (one 256-px window).
    batch_size: int = 0
    #: Padding of the domain edge before stitching: "reflect" gives the edge points the
    #: centre of a window instead of its rim; "none" stitches the unpadded domain.
    pad_mode: str = "reflect"
    #: Apply the isotonic calibration stored in the checkpoint: "auto" (the default) when
    #: it was fitted with cross-fitted out-of-fold predictions (hparams
    #: ``calibration_folds``) or on the model's forecasts of a past period
    #: (``calibrate_resunet.py``), "true" whenever the checkpoint has one, "false" never. A map
    #: fitted on the validation split alone lowered the demo's held-out Brier skill
    #: (+0.187 -> +0.136 at 1 mm); a cross-fitted one on 50 training days cut the worst
    #: reliability error at 1 and 2.5 mm to about a third on two held-out periods, with
    #: the Brier skill within -0.004 or better (docs/calibration.md, sections 7-9).
    calibrate: str = "auto"

    def __post_init__(self) -> None:
        for key in ("window_px", "stride_px", "batch_size"):
            check(getattr(self, key) >= 0, f"{key} must be >= 0 (0: the default), got {getattr(self, key)}")
        check_choice("pad_mode", self.pad_mode, PAD_MODES)
        setting = str(self.calibrate).strip().lower()  # also a bool, or yes/no/on/off/1/0
        setting = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}.get(
            setting, setting)
        check_choice("calibrate", setting, CALIBRATE_SETTINGS)
        object.__setattr__(self, "calibrate", setting)

    def applies_calibration(self, fitted_on: str | None) -> bool:
        """Whether inference applies a checkpoint's calibration fitted on ``fitted_on``
        (its record's ``fitted_on``; None: the checkpoint has no calibration)."""
        if fitted_on is None or self.calibrate == "false":
            return False
        return self.calibrate == "true" or fitted_on in (FITTED_ON_CROSSFIT, FITTED_ON_FORECASTS)


#: Values of ``[inference] calibrate`` (:meth:`InferenceConfig.applies_calibration`).
CALIBRATE_SETTINGS = ("auto", "true", "false")

#: Formats of the probabilities product (``[output] formats``).
OUTPUT_FORMATS = ("netcdf", "grib2")


@dataclass(frozen=True)
class OutputConfig:
    """``[output]``: which files the probabilities product is written as."""

    #: "netcdf" (``{INIT}_{LEAD}h_probs.nc``, always written: verification reads it) and
    #: "grib2" (``{INIT}_{LEAD}h_probs.grib2``, template 4.9 as the National Blend
    #: distributes probabilities).
    formats: tuple[str, ...] = ("netcdf", "grib2")

    def __post_init__(self) -> None:
        for name in self.formats:
            check_choice("formats", name, OUTPUT_FORMATS)
        check("netcdf" in self.formats, "formats must include netcdf (verification reads it)")


@dataclass(frozen=True)
class ComputeConfig:
    """``[compute]``: how torch stages use the machine."""

    #: torch threads per process; 0 = automatic (the CPUs this process may use, shared
    #: among the processes torchrun starts on the node). ``--threads`` overrides it.
    threads: int = 0

    def __post_init__(self) -> None:
        check(self.threads >= 0, f"threads must be >= 0 (0: automatic), got {self.threads}")


@dataclass(frozen=True)
class VerificationConfig:
    """``[verification]``: the neighbourhood scores and the confidence intervals."""

    #: Thresholds (mm) of the fractions skill score.
    fss_thresholds_mm: tuple[float, ...] = (1.0, 5.0, 10.0)
    #: Largest neighbourhood width (odd, grid points); widths 1, 3, ..., this.
    fss_max_width_px: int = 41
    #: Block-bootstrap replicates, resampling whole init dates; 0 turns intervals off.
    bootstrap_replicates: int = 1000
    #: Central probability of the intervals.
    bootstrap_level: float = 0.9
    #: Consecutive days resampled together (serial correlation of weather regimes).
    bootstrap_block_days: int = 1
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        check(len(self.fss_thresholds_mm) > 0 and all(math.isfinite(t) and t > 0 for t in self.fss_thresholds_mm),
              f"fss_thresholds_mm must be positive, got {self.fss_thresholds_mm}")
        check(self.fss_max_width_px >= 1 and self.fss_max_width_px % 2 == 1,
              f"fss_max_width_px must be an odd number >= 1, got {self.fss_max_width_px}")
        check(self.bootstrap_replicates >= 0, f"bootstrap_replicates must be >= 0, got {self.bootstrap_replicates}")
        check(0.0 < self.bootstrap_level < 1.0, f"bootstrap_level must be in (0, 1), got {self.bootstrap_level}")
        check(self.bootstrap_block_days >= 1, f"bootstrap_block_days must be >= 1, got {self.bootstrap_block_days}")

    @property
    def fss_widths_px(self) -> tuple[int, ...]:
        return tuple(range(1, self.fss_max_width_px + 1, 2))
