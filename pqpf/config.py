"""The site configuration reader (INI); the sections are in :mod:`pqpf.config_sections`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pqpf.config_sections import (
    OUTPUT_FORMATS,
    ComputeConfig,
    GrafConfig,
    InferenceConfig,
    MrmsConfig,
    OutputConfig,
    PatchesConfig,
    PathsConfig,
    ProbabilityConfig,
    RemoteConfig,
    TerrainConfig,
    TrainingConfig,
    VerificationConfig,
    check,
    check_choice,
)
from pqpf.dates import parse_yyyymmddhh
from pqpf.errors import ConfigError, UsageError
from pqpf.io.atomic import atomic_write_text

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
    "ComputeConfig",
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
    compute: ComputeConfig = field(default_factory=ComputeConfig)


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
    "compute": ComputeConfig,
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
            value = typ(raw.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected {typ.__name__}, got {raw!r}") from None
        if typ is float and not math.isfinite(value):  # nan, inf: no setting means either
            raise ConfigError(f"{where}: expected a finite number, got {raw.strip()!r}")
        return value
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
