"""The one configuration reader.

Two kinds of configuration:

* **Site configuration** (INI, read with :mod:`configparser`): where the archives and
  outputs live and the few choices that are properties of a site or data set
  (``config_hdo.ini`` on the HPC machine, ``config_laptop.ini`` on the laptop, and the
  ``config.ini`` that ``python -m pqpf.synthetic`` writes). Read once by
  :func:`load_config` into frozen dataclasses and passed down explicitly.
* **Training hyper-parameters** (YAML): named configurations that inherit from a base
  through YAML anchors and merge keys, chosen by name (:func:`load_hparams`).

Values may use ``~`` and ``$VARS``; relative paths are taken relative to the directory
of the INI file, so a config can travel with its data. Unknown sections or keys, missing
required keys and unparsable values raise :class:`~pqpf.errors.ConfigError` naming the
file, section and key.
"""

from __future__ import annotations

import configparser
import dataclasses
import datetime as dt
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pqpf.dates import parse_yyyymmddhh
from pqpf.errors import ConfigError, UsageError

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
    "ModelHParams",
    "HParams",
    "load_config",
    "config_to_ini",
    "paths_below",
    "write_config",
    "load_hparams",
    "hparams_names",
    "default_hparams_file",
    "resolve_config_path",
]

_REQUIRED = dataclasses.MISSING


def _require(condition: bool, message: str) -> None:
    """Raise ValueError (turned into a ConfigError naming file and section by the loaders)."""
    if not condition:
        raise ValueError(message)


def _one_of(name: str, value: str, valid: tuple[str, ...]) -> None:
    _require(value in valid, f"{name} must be one of {', '.join(valid)}; got {value!r}")


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
        _require(0 <= self.lead_min_h <= self.lead_max_h,
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
        _require(len(self.qpe_grib_id) == 3, f"qpe_grib_id must be discipline, category, number; got {self.qpe_grib_id}")
        _require(0.0 <= self.min_quality <= 1.0, f"min_quality must be in [0, 1], got {self.min_quality}")
        _one_of("remap_method", self.remap_method, ("conservative", "nearest", "bilinear"))


@dataclass(frozen=True)
class TerrainConfig:
    """``[terrain]``."""

    #: Gaussian smoothing of the terrain height, standard deviation in grid points.
    smoothing_sigma_px: float = 10.0

    def __post_init__(self) -> None:
        _require(self.smoothing_sigma_px >= 0, f"smoothing_sigma_px must be >= 0, got {self.smoothing_sigma_px}")


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
        _require(len(t) > 0 and all(x > 0 for x in t) and all(a < b for a, b in zip(t, t[1:])),
                 f"thresholds_mm must be positive and increasing, got {t}")
        _require(self.reference_sigma_px >= 0 and self.reference_sigma_px_per_h >= 0,
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
        _require(self.patch_px >= 8, f"patch_px must be at least 8, got {self.patch_px}")
        _require(self.candidate_stride_px >= 1, f"candidate_stride_px must be >= 1, got {self.candidate_stride_px}")
        _require(self.ndays_train >= 1, f"ndays_train must be >= 1, got {self.ndays_train}")
        _require(len(self.cycles) > 0 and all(0 <= c <= 23 for c in self.cycles),
                 f"cycles must be hours 0..23, got {self.cycles}")
        _require(self.previous_year_start_days > self.previous_year_end_days >= 0,
                 "previous_year_start_days must exceed previous_year_end_days (days before INIT), got "
                 f"{self.previous_year_start_days} and {self.previous_year_end_days}")
        _require(self.patches_per_init >= 1, f"patches_per_init must be >= 1, got {self.patches_per_init}")
        _require(0.0 <= self.dry_share <= 1.0, f"dry_share must be in [0, 1], got {self.dry_share}")
        _require(0.0 <= self.max_poor_quality_fraction <= 1.0,
                 f"max_poor_quality_fraction must be in [0, 1], got {self.max_poor_quality_fraction}")
        _require(self.split_block_days >= 1, f"split_block_days must be >= 1, got {self.split_block_days}")
        f = self.split_fractions
        _require(len(f) == 3 and all(x >= 0 for x in f) and f[0] > 0,
                 f"split_fractions must be three shares (train > 0, validation, test), got {f}")
        _require(self.split_gap_h >= 0, f"split_gap_h must be >= 0, got {self.split_gap_h}")


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
        _require(self.window_px >= 0, f"window_px must be >= 0 (0: the training patch size), got {self.window_px}")
        _require(self.stride_px >= 1, f"stride_px must be >= 1, got {self.stride_px}")
        _require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _one_of("pad_mode", self.pad_mode, ("none", "reflect", "replicate"))


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
        elif fdef.default is _REQUIRED and fdef.default_factory is _REQUIRED:  # type: ignore[misc]
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
    from pqpf.io.atomic import atomic_write_text

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


# --------------------------------------------------------------------------------------
# Training hyper-parameters (YAML)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelHParams:
    """Architecture of the residual U-Net."""

    #: Channels at the first level; each deeper level doubles them.
    base_width: int = 32
    #: Number of down-sampling steps (the patch size must be divisible by 2**depth).
    depth: int = 4
    attention: bool = True
    #: "batch", "group" or "instance".
    norm: str = "group"
    dropout: float = 0.0
    #: Lower edges (mm) of the ordinal amount bins; the last bin is open-ended.
    #: Every probability threshold must be one of these edges.
    bin_edges_mm: tuple[float, ...] = (
        0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 3.5, 5.0, 7.5, 10.0, 15.0, 25.0, 40.0,
    )

    def __post_init__(self) -> None:
        _require(self.base_width >= 1 and self.depth >= 1,
                 f"base_width and depth must be >= 1, got {self.base_width} and {self.depth}")
        _one_of("norm", self.norm, ("batch", "group", "instance"))
        _require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        e = self.bin_edges_mm
        _require(len(e) >= 2 and e[0] == 0 and all(a < b for a, b in zip(e, e[1:])),
                 f"bin_edges_mm must start at 0 and increase, got {e}")


@dataclass(frozen=True)
class HParams:
    """One named hyper-parameter set."""

    name: str
    model: ModelHParams = field(default_factory=ModelHParams)
    #: Loss: "rps" (ranked probability score, equal weight per edge), "crps" (edges
    #: weighted by bin width: the CRPS of the discretised distributions) or
    #: "threshold" (RPS with extra weight on the probability thresholds).
    loss: str = "rps"
    #: Optional time-of-day and season input channels.
    time_features: bool = False
    batch_size: int = 32
    epochs: int = 40
    learning_rate: float = 1.0e-3
    weight_decay: float = 1.0e-4
    #: Epochs without improvement of the validation score before stopping.
    patience: int = 6
    #: Relative decrease of the validation score that counts as an improvement (for
    #: early stopping and ``best.pt``); smaller changes are noise on a few dozen
    #: correlated validation inits.
    min_improvement: float = 1.0e-3
    #: Learning-rate schedule: "plateau" (halve on a plateau) or "cosine".
    lr_schedule: str = "plateau"
    augment: bool = True
    #: Weight each patch by its inverse inclusion probability so that over-sampling of
    #: wet patches does not bias the forecast probabilities.
    use_sampling_weights: bool = True
    #: Threads that assemble the next batches while the model trains (0: in turn).
    num_workers: int = 0
    seed: int = 1234

    def __post_init__(self) -> None:
        _one_of("loss", self.loss, ("rps", "crps", "threshold"))
        _one_of("lr_schedule", self.lr_schedule, ("plateau", "cosine"))
        _require(self.batch_size >= 1 and self.epochs >= 1 and self.patience >= 1,
                 "batch_size, epochs and patience must be >= 1")
        _require(self.learning_rate > 0 and self.weight_decay >= 0,
                 f"learning_rate must be > 0 and weight_decay >= 0, got {self.learning_rate}, {self.weight_decay}")
        _require(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        _require(0.0 <= self.min_improvement < 1.0, f"min_improvement must be in [0, 1), got {self.min_improvement}")


_HPARAM_CLASSES = {"model": ModelHParams}


def default_hparams_file() -> Path:
    """The hyper-parameter YAML shipped inside the package."""
    return Path(__file__).with_name("hparams.yaml")


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path}: hyper-parameter file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        one_line = " ".join(str(exc).split())
        raise ConfigError(f"{path}: cannot parse YAML ({one_line})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of named configurations")
    return data


def hparams_names(path: str | Path | None = None) -> list[str]:
    """Names of the selectable configurations (those not starting with ``_``)."""
    data = _read_yaml(Path(path) if path else default_hparams_file())
    return sorted(k for k in data if not str(k).startswith("_"))


def _build_dataclass(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown key {key!r} (valid keys: {', '.join(sorted(fields))})"
            )
        typ = hints[key]
        if key in _HPARAM_CLASSES:
            kwargs[key] = _build_dataclass(_HPARAM_CLASSES[key], value, f"{where}.{key}")
            continue
        origin = typing.get_origin(typ)
        try:
            if origin is tuple:
                item = typing.get_args(typ)[0]
                seq = value if isinstance(value, (list, tuple)) else [value]
                kwargs[key] = tuple(item(v) for v in seq)
            elif typ is bool:
                if not isinstance(value, bool):
                    raise ValueError("expected true or false")
                kwargs[key] = value
            elif typ in (int, float, str):
                if typ is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError("expected an integer")
                kwargs[key] = typ(value)
            else:
                kwargs[key] = value
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.{key}: bad value {value!r} ({exc})") from None
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_hparams(name: str, path: str | Path | None = None) -> HParams:
    """Load the named hyper-parameter set from a YAML file.

    Named sets inherit from a base through YAML anchors and merge keys
    (``laptop: {<<: *base, batch_size: 16}``); nested mappings such as ``model`` are
    merged the same way. Entries whose name starts with ``_`` are bases only.

    Parameters
    ----------
    name : str
        Which configuration to use, e.g. ``"laptop"``.
    path : str or Path, optional
        The YAML file; the one shipped with pqpf when omitted.

    Raises
    ------
    ConfigError
        If the file or name does not exist or a key is unknown or malformed.
    """
    yaml_path = Path(path).expanduser() if path else default_hparams_file()
    data = _read_yaml(yaml_path)
    if name not in data or str(name).startswith("_"):
        names = ", ".join(sorted(k for k in data if not str(k).startswith("_")))
        raise ConfigError(f"{yaml_path}: no hyper-parameter set named {name!r} (have: {names})")
    values = dict(data[name] or {})
    values.pop("name", None)
    return _build_dataclass(HParams, {"name": name, **values}, f"{yaml_path}: {name}")
