"""The site configuration reader (INI).

Two kinds of configuration:

* **Site configuration** (INI, read with :mod:`configparser`): where the archives and
  outputs live and the few choices that are properties of a site or data set
  (``config_hdo.ini`` on the HPC machine, ``config_laptop.ini`` on the laptop, and the
  ``config.ini`` that ``python -m pqpf.synthetic`` writes). Read once by
  :func:`load_config` into frozen dataclasses and passed down explicitly.
* **Training hyper-parameters** (YAML) are read by :mod:`pqpf.hparams`.

Values may use ``~`` and ``$VARS``; relative paths are taken relative to the directory
of the INI file, so a config can travel with its data. Unknown sections or keys, missing
required keys and unparsable values raise :class:`~pqpf.errors.ConfigError` naming the
file, section and key.
"""

from __future__ import annotations

import configparser
import dataclasses
import datetime as dt
import math
import os
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pqpf.dates import parse_yyyymmddhh
from pqpf.errors import ConfigError, UsageError
from pqpf.features import PAD_MODES
from pqpf.io.atomic import atomic_write_text
from pqpf.remap_methods import METHODS as REMAP_METHODS

__all__ = [
    "Config",
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
    "load_config",
    "config_to_ini",
    "paths_below",
    "write_config",
    "resolve_config_path",
    "check",
    "check_choice",
]

_REQUIRED = dataclasses.MISSING


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
    would accept unknown host keys are refused by :mod:`pqpf.transfer`.
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

    qpe_product: str = "MultiSensor_QPE_01H_Pass2_00.00"
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

    #: Window size in grid points; 0 means the patch size the model was trained on.
    window_px: int = 0
    stride_px: int = 32
    batch_size: int = 16
    #: Padding of the domain edge before stitching: "reflect" gives the edge points the
    #: centre of a window instead of its rim; "none" stitches the unpadded domain.
    pad_mode: str = "reflect"

    def __post_init__(self) -> None:
        check(self.window_px >= 0, f"window_px must be >= 0 (0: the training patch size), got {self.window_px}")
        check(self.stride_px >= 1, f"stride_px must be >= 1, got {self.stride_px}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check_choice("pad_mode", self.pad_mode, PAD_MODES)


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


@dataclass(frozen=True)
class Config:
    """A whole site configuration, as read by :func:`load_config`."""

    source: Path
    paths: PathsConfig
    remote: RemoteConfig = field(default_factory=RemoteConfig)
    graf: GrafConfig = field(default_factory=GrafConfig)
    mrms: MrmsConfig = field(default_factory=MrmsConfig)
    terrain: TerrainConfig = field(default_factory=TerrainConfig)
    probability: ProbabilityConfig = field(default_factory=ProbabilityConfig)
    patches: PatchesConfig = field(default_factory=PatchesConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    verification: VerificationConfig = field(default_factory=VerificationConfig)


# Section name -> (Config attribute, dataclass). Order is the order config_to_ini writes.
_SECTIONS: dict[str, type] = {
    "paths": PathsConfig,
    "remote": RemoteConfig,
    "graf": GrafConfig,
    "mrms": MrmsConfig,
    "terrain": TerrainConfig,
    "probability": ProbabilityConfig,
    "patches": PatchesConfig,
    "training": TrainingConfig,
    "inference": InferenceConfig,
    "output": OutputConfig,
    "verification": VerificationConfig,
}
# Values that are paths on another machine: never expanded locally.
_REMOTE_KEYS = {("remote", "remote_graf_dir")}
_UNEXPANDED = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


_DEFAULTED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}")


def _expand(value: str, where: str) -> str:
    """Expand ``${VAR:-default}``, ``$VAR``/``${VAR}`` and ``~``; an unset variable
    without a default is an error."""
    value = _DEFAULTED.sub(lambda m: os.environ.get(m.group(1)) or m.group(2), value)
    expanded = os.path.expanduser(os.path.expandvars(value))
    missing = _UNEXPANDED.search(expanded)
    if missing:
        raise ConfigError(f"{where}: environment variable ${missing.group(1)} is not set")
    return expanded


def _convert(raw: str, typ: Any, where: str, base_dir: Path, expand: bool) -> Any:
    """Turn one INI string into the annotated type of its dataclass field."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is typing.Union or (origin is not None and type(None) in args):
        inner = [a for a in args if a is not type(None)]
        if raw.strip() == "":
            return None
        return _convert(raw, inner[0], where, base_dir, expand)
    if typ is str:
        return _expand(raw, where) if expand else raw
    if typ is Path:
        if raw.strip() == "":
            raise ConfigError(f"{where}: a path is required")
        path = Path(_expand(raw.strip(), where))
        return path if path.is_absolute() else (base_dir / path)
    if typ is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "yes", "true", "on"):
            return True
        if lowered in ("0", "no", "false", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {raw!r}")
    if typ is int or typ is float:
        try:
            return typ(raw.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected {typ.__name__}, got {raw!r}") from None
    if typ is dt.datetime:
        try:
            return parse_yyyymmddhh(raw, what=where)
        except UsageError as exc:
            raise ConfigError(str(exc)) from None
    if origin is tuple:
        item_type = args[0]
        items = [s for s in (p.strip() for p in raw.split(",")) if s]
        return tuple(_convert(s, item_type, where, base_dir, expand) for s in items)
    raise TypeError(f"unsupported config field type {typ!r} at {where}")  # programming error


def _section_from_parser(
    parser: configparser.ConfigParser, name: str, cls: type, source: Path
) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    present = parser.has_section(name)
    if present:
        for key in parser.options(name):
            if key not in fields:
                valid = ", ".join(sorted(fields))
                raise ConfigError(
                    f"{source}: [{name}] unknown key {key!r} (valid keys: {valid})"
                )
    for fname, fdef in fields.items():
        where = f"{source}: [{name}] {fname}"
        if present and parser.has_option(name, fname):
            raw = parser.get(name, fname)
            values[fname] = _convert(
                raw, hints[fname], where, source.parent, expand=(name, fname) not in _REMOTE_KEYS
            )
        elif fdef.default is _REQUIRED and fdef.default_factory is _REQUIRED:
            raise ConfigError(f"{where}: required key is missing")
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(f"{source}: [{name}] {exc}") from None


def load_config(path: str | Path) -> Config:
    """Read a site configuration (INI) into a frozen :class:`Config`.

    Parameters
    ----------
    path : str or Path
        The INI file. ``~`` and ``$VARS`` in values are expanded; relative paths are
        relative to the file's directory.

    Raises
    ------
    ConfigError
        If the file cannot be read, or a section/key is unknown, missing or malformed.
    """
    source = Path(path).expanduser().resolve()
    if source.is_dir():
        raise ConfigError(f"{source}: is a directory; --config wants the INI file (e.g. {source / 'config.ini'})")
    if not source.is_file():
        raise ConfigError(f"{source}: configuration file not found")
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",))
    try:
        with open(source, encoding="utf-8") as fh:
            parser.read_file(fh)
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        one_line = " ".join(str(exc).split())
        raise ConfigError(f"{source}: cannot parse configuration ({one_line})") from None
    for section in parser.sections():
        if section not in _SECTIONS:
            valid = ", ".join(f"[{s}]" for s in _SECTIONS)
            raise ConfigError(f"{source}: unknown section [{section}] (valid: {valid})")
    if not parser.has_section("paths"):
        raise ConfigError(f"{source}: required section [paths] is missing")
    sections = {
        name: _section_from_parser(parser, name, cls, source) for name, cls in _SECTIONS.items()
    }
    return Config(source=source, **sections)


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d%H")
    if isinstance(value, tuple):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


def paths_below(root: str | Path) -> PathsConfig:
    """The standard layout of every ``[paths]`` key inside one directory.

    Used by the synthetic archive (``python -m pqpf.synthetic``), the demo and the tests:
    ``graf/hdo-graf_conus``, ``graf/hdo-graflr_conus`` (the laptop layout ``graf`` then
    equals the archive), ``static/GRAF_CONUS_terrain.grb2``,
    ``terrain/GRAF_CONUS_terrain_info.nc``, ``mrms_raw``, ``mrms_remapped``, ``patches``,
    ``trainings``, ``probs``, ``plots``.
    """
    root = Path(root)
    return PathsConfig(
        graf_dir=root / "graf" / "hdo-graf_conus",
        graf_dir_old=root / "graf" / "hdo-graflr_conus",
        graf_terrain_grib=root / "static" / "GRAF_CONUS_terrain.grb2",
        terrain_file=root / "terrain" / "GRAF_CONUS_terrain_info.nc",
        mrms_raw_dir=root / "mrms_raw",
        mrms_remapped_dir=root / "mrms_remapped",
        patch_dir=root / "patches",
        trainings_dir=root / "trainings",
        graf_laptop_dir=root / "graf",
        probs_dir=root / "probs",
        plots_dir=root / "plots",
    )


def write_config(config: Config, path: str | Path | None = None) -> Path:
    """Write ``config`` as INI (paths relative to the file's directory), atomically, and
    return the path; ``path`` defaults to ``config.source``."""
    target = Path(path) if path is not None else config.source
    atomic_write_text(target, config_to_ini(config, relative_to=target.parent))
    return target


def config_to_ini(config: Config, relative_to: Path | None = None) -> str:
    """Render a :class:`Config` as INI text that :func:`load_config` reads back equal.

    Parameters
    ----------
    config : Config
    relative_to : Path, optional
        Write paths that lie inside this directory relative to it, so that an INI file
        saved in that directory still points at the same files after the directory is
        moved (:func:`load_config` takes relative paths relative to the file).
    """
    base = Path(relative_to).expanduser().resolve() if relative_to is not None else None
    lines: list[str] = []
    for name in _SECTIONS:
        section = getattr(config, name)
        lines.append(f"[{name}]")
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if base is not None and isinstance(value, Path):
                resolved = value.expanduser().resolve()
                if resolved.is_relative_to(base):
                    value = resolved.relative_to(base).as_posix() or "."
            lines.append(f"{f.name} = {_format_value(value)}")
        lines.append("")
    return "\n".join(lines)


def resolve_config_path(cli_value: str | None, default_dir: Path | None = None) -> Path:
    """The configuration file a script should read.

    ``--config FILE`` if given, else ``$PQPF_CONFIG``, else ``config_laptop.ini`` in
    ``default_dir`` (the directory of the top-level scripts) or the current directory.
    """
    if cli_value:
        return Path(cli_value).expanduser()
    env = os.environ.get("PQPF_CONFIG")
    if env:
        return Path(env).expanduser()
    return (default_dir or Path.cwd()) / "config_laptop.ini"
