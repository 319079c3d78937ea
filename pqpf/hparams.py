"""Training hyper-parameters: named sets in YAML, chosen by name.

A set inherits from a base through a YAML anchor and merge key and overrides what
differs (``laptop: {<<: *base, batch_size: 16}``); nested mappings such as ``model`` are
merged the same way; names starting with ``_`` are bases only. The YAML file is the one
place where values live: the dataclasses below have no defaults, so a set that lacks a key
is an error naming it (the shipped ``pqpf/hparams.yaml`` defines every key in its
``_base``). Choices are checked against the registries that implement them: norms
(:data:`pqpf.model.norms.NORMS`), loss schemes (:data:`pqpf.ordinal.EDGE_WEIGHT_SCHEMES`)
and learning-rate schedules (:data:`pqpf.train.schedules.SCHEDULES`). Given the site's
probability thresholds, :func:`load_hparams` also checks that every threshold is a bin
edge, so a mismatch is found when the configuration is read, not during training.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pqpf.config import check, check_choice
from pqpf.errors import ConfigError
from pqpf.io.jsonio import to_plain
from pqpf.model.norms import NORMS
from pqpf.model.upsample import PADDING_MODES, UPSAMPLE_MODES
from pqpf.ordinal import EDGE_WEIGHT_SCHEMES, validate_bin_edges
from pqpf.train.schedules import SCHEDULES

__all__ = [
    "ModelHParams", "HParams", "load_hparams", "hparams_names", "default_hparams_file", "hparams_to_dict",
    "hparams_from_dict", "with_legacy_defaults", "SamplerHParams", "DiffusionHParams", "load_diffusion_hparams",
    "diffusion_hparams_from_dict", "DIFFUSION_NETWORKS",
]

#: Named denoiser sizes (:data:`pqpf.diffusion.network.NETWORK_SIZES`; a test keeps them equal).
DIFFUSION_NETWORKS = ("tiny", "laptop", "default")


@dataclass(frozen=True)
class ModelHParams:
    """Architecture of the residual U-Net."""

    #: Channels at the first level; each deeper level doubles them.
    base_width: int
    #: Number of down-sampling steps (the patch size must be divisible by 2**depth).
    depth: int
    attention: bool
    #: A name of :data:`pqpf.model.norms.NORMS`.
    norm: str
    dropout: float
    #: Decoder up-sampling, a name of :data:`pqpf.model.upsample.UPSAMPLE_MODES`.
    upsample: str
    #: Padding of the 3x3 convolutions, a name of :data:`pqpf.model.upsample.PADDING_MODES`.
    padding: str
    #: Lower edges (mm) of the ordinal amount bins; the last bin is open-ended.
    #: Every probability threshold must be one of these edges.
    bin_edges_mm: tuple[float, ...]

    def __post_init__(self) -> None:
        check(self.base_width >= 1 and self.depth >= 1,
              f"base_width and depth must be >= 1, got {self.base_width} and {self.depth}")
        check_choice("norm", self.norm, NORMS)
        check_choice("upsample", self.upsample, UPSAMPLE_MODES)
        check_choice("padding", self.padding, PADDING_MODES)
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        e = self.bin_edges_mm
        check(len(e) >= 2 and e[0] == 0 and all(a < b for a, b in zip(e, e[1:])),
              f"bin_edges_mm must start at 0 and increase, got {e}")


@dataclass(frozen=True)
class HParams:
    """One named hyper-parameter set (the meaning of each key is in ``pqpf/hparams.yaml``)."""

    name: str
    model: ModelHParams
    #: A name of :data:`pqpf.ordinal.EDGE_WEIGHT_SCHEMES`.
    loss: str
    #: Weight of the log score of the observed bin added to the RPS (0: the RPS alone).
    log_score_weight: float
    time_features: bool
    batch_size: int
    epochs: int
    learning_rate: float
    weight_decay: float
    patience: int
    min_improvement: float
    #: A name of :data:`pqpf.train.schedules.SCHEDULES`.
    lr_schedule: str
    augment: bool
    use_sampling_weights: bool
    num_workers: int
    seed: int
    #: EMA of the weights (validation, selection, the checkpoint's ``ema``); 0: none.
    ema_halflife_samples: float
    #: Cap of the EMA half-life at ``ema_rampup * samples_seen``; 0: no ramp-up.
    ema_rampup: float
    #: After every epoch the batch-norm statistics are recomputed on this many training
    #: samples (0: the running averages of training are kept).
    bn_stats_samples: int
    #: Calibration data: 0 = the validation split; K >= 2 = also the out-of-fold predictions
    #: of K networks, each trained without one of K contiguous groups of training dates.
    calibration_folds: int
    #: Dates on each side of a fold's group also left out of that fold network's training
    #: (neighbouring days share their weather: without a gap the out-of-fold predictions at
    #: the group's edges are a little in-sample).
    calibration_fold_gap_days: int

    def __post_init__(self) -> None:
        check_choice("loss", self.loss, EDGE_WEIGHT_SCHEMES)
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        check(math.isfinite(self.log_score_weight) and self.log_score_weight >= 0,
              f"log_score_weight must be >= 0, got {self.log_score_weight}")
        check(self.batch_size >= 1 and self.epochs >= 1 and self.patience >= 1,
              "batch_size, epochs and patience must be >= 1")
        check(self.learning_rate > 0 and self.weight_decay >= 0,
              f"learning_rate must be > 0 and weight_decay >= 0, got {self.learning_rate}, {self.weight_decay}")
        check(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        check(0.0 <= self.min_improvement < 1.0, f"min_improvement must be in [0, 1), got {self.min_improvement}")
        check(self.ema_halflife_samples >= 0 and self.ema_rampup >= 0,
              f"need ema_halflife_samples >= 0 and ema_rampup >= 0, got {self.ema_halflife_samples}, "
              f"{self.ema_rampup}")
        check(self.bn_stats_samples >= 0, f"bn_stats_samples must be >= 0, got {self.bn_stats_samples}")
        check(self.calibration_folds == 0 or self.calibration_folds >= 2,
              f"calibration_folds must be 0 (validation split only) or >= 2, got {self.calibration_folds}")
        check(self.calibration_fold_gap_days >= 0,
              f"calibration_fold_gap_days must be >= 0, got {self.calibration_fold_gap_days}")


@dataclass(frozen=True)
class SamplerHParams:
    """Heun EDM sampler (:class:`pqpf.diffusion.sampler.SamplerConfig`)."""

    n_steps: int
    sigma_min: float
    sigma_max: float
    rho: float
    s_churn: float

    def __post_init__(self) -> None:
        check(self.n_steps >= 1, f"n_steps must be >= 1, got {self.n_steps}")
        check(0 < self.sigma_min < self.sigma_max, f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, "
              f"{self.sigma_max}")
        check(self.rho > 0 and self.s_churn >= 0, f"need rho > 0 and s_churn >= 0, got {self.rho}, {self.s_churn}")


@dataclass(frozen=True)
class DiffusionHParams:
    """One named set of the EDM diffusion model (keys explained in ``pqpf/hparams.yaml``)."""

    name: str
    #: A name of :data:`DIFFUSION_NETWORKS`.
    denoiser: str
    #: RMS of the residual target (log1p mm); 0 means: estimate it from the training split.
    sigma_data: float
    p_mean: float
    p_std: float
    ema_halflife_samples: float
    #: Cap of the EMA half-life at ``ema_rampup * samples_seen``; 0: no ramp-up.
    ema_rampup: float
    #: Fixed noise levels (log1p mm) of the deterministic validation loss.
    eval_sigmas: tuple[float, ...]
    sampler: SamplerHParams
    batch_size: int
    epochs: int
    learning_rate: float
    weight_decay: float
    patience: int
    min_improvement: float
    lr_schedule: str
    use_sampling_weights: bool
    num_workers: int
    seed: int

    def __post_init__(self) -> None:
        check_choice("denoiser", self.denoiser, DIFFUSION_NETWORKS)
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        check(self.sigma_data >= 0 and self.p_std > 0, f"need sigma_data >= 0 and p_std > 0, got "
              f"{self.sigma_data}, {self.p_std}")
        check(self.ema_halflife_samples > 0 and self.ema_rampup >= 0,
              f"need ema_halflife_samples > 0 and ema_rampup >= 0, got {self.ema_halflife_samples}, {self.ema_rampup}")
        check(len(self.eval_sigmas) >= 1 and all(s > 0 for s in self.eval_sigmas),
              f"eval_sigmas must be positive noise levels, got {self.eval_sigmas}")
        check(self.batch_size >= 1 and self.epochs >= 1 and self.patience >= 1,
              "batch_size, epochs and patience must be >= 1")
        check(self.learning_rate > 0 and self.weight_decay >= 0,
              f"learning_rate must be > 0 and weight_decay >= 0, got {self.learning_rate}, {self.weight_decay}")
        check(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        check(0.0 <= self.min_improvement < 1.0, f"min_improvement must be in [0, 1), got {self.min_improvement}")


_NESTED: dict[str, type] = {"model": ModelHParams, "sampler": SamplerHParams}
#: ``model`` keys of checkpoint records that predate them, with the values those used.
_LEGACY_MODEL = {"upsample": "transpose", "padding": "zeros"}
#: Top-level U-Net keys of checkpoint records that predate them: no weight average (the
#: ramp-up then has no effect; the shipped value keeps a resume with today's sets equal).
_LEGACY_TRAINING = {"log_score_weight": 0.0, "ema_halflife_samples": 0.0, "ema_rampup": 0.05, "bn_stats_samples": 0,
                    "calibration_folds": 0, "calibration_fold_gap_days": 0}


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
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        one_line = " ".join(str(exc).split())
        raise ConfigError(f"{path}: cannot parse YAML ({one_line})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of named configurations")
    return data


def hparams_names(path: str | Path | None = None) -> list[str]:
    """Names of the selectable configurations (those not starting with ``_``)."""
    data = _read_yaml(Path(path) if path else default_hparams_file())
    return sorted(k for k in data if not str(k).startswith("_"))


def _convert(typ: Any, value: Any) -> Any:
    origin = typing.get_origin(typ)
    if origin is tuple:
        item = typing.get_args(typ)[0]
        seq = value if isinstance(value, (list, tuple)) else [value]
        return tuple(item(v) for v in seq)
    if typ is bool:
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if typ in (int, float, str):
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("expected an integer")
        return typ(value)
    return value


def _build_dataclass(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r} (valid keys: {', '.join(sorted(fields))})")
        if key in _NESTED:
            kwargs[key] = _build_dataclass(_NESTED[key], value, f"{where}.{key}")
            continue
        try:
            kwargs[key] = _convert(hints[key], value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.{key}: bad value {value!r} ({exc})") from None
    missing = [f for f in fields if f not in kwargs]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)} (define them, or inherit a base "
                          "that does, e.g. `<<: *base`)")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_hparams(name: str, path: str | Path | None = None, thresholds_mm: Sequence[float] | None = None) -> HParams:
    """Load the named hyper-parameter set from a YAML file.

    Parameters
    ----------
    name : str
        Which configuration to use, e.g. ``"laptop"``.
    path : str or Path, optional
        The YAML file; the one shipped with pqpf when omitted.
    thresholds_mm : sequence of float, optional
        The site's probability thresholds (``[probability] thresholds_mm``): each must be
        one of the set's ``model.bin_edges_mm``.

    Raises
    ------
    ConfigError
        If the file or name does not exist, a key is unknown, missing or malformed, or a
        threshold is not a bin edge.
    """
    yaml_path = Path(path).expanduser() if path else default_hparams_file()
    data = _read_yaml(yaml_path)
    if name not in data or str(name).startswith("_"):
        names = ", ".join(sorted(k for k in data if not str(k).startswith("_")))
        raise ConfigError(f"{yaml_path}: no hyper-parameter set named {name!r} (have: {names})")
    values = dict(data[name] or {})
    values.pop("name", None)
    if "denoiser" in values:
        raise ConfigError(f"{yaml_path}: {name!r} is a diffusion set; train it with train_diffusion.py")
    hp: HParams = _build_dataclass(HParams, {"name": name, **values}, f"{yaml_path}: {name}")
    if thresholds_mm is not None:
        try:
            validate_bin_edges(hp.model.bin_edges_mm, thresholds_mm)
        except ValueError as exc:
            raise ConfigError(f"{yaml_path}: {name}.model.bin_edges_mm and the site's [probability] "
                              f"thresholds_mm disagree: {exc}") from None
    return hp


def hparams_to_dict(hp: HParams | DiffusionHParams) -> dict[str, Any]:
    """The set as plain Python types (tuples as lists), for YAML, JSON and checkpoints."""
    out: dict[str, Any] = to_plain(dataclasses.asdict(hp))
    return out


def hparams_from_dict(data: dict[str, Any], where: str) -> HParams:
    """Inverse of :func:`hparams_to_dict` (e.g. from a checkpoint).

    Raises
    ------
    ConfigError
        Naming ``where`` when the record is incomplete or malformed.
    """
    hp: HParams = _build_dataclass(HParams, with_legacy_defaults(data), where)
    return hp


def with_legacy_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A U-Net set's record with the keys that older checkpoints lack filled with the values
    those were trained with (transposed convolutions, zero padding, no weight average);
    diffusion records (a ``denoiser`` key) are returned as they are."""
    if "denoiser" in data:
        return dict(data)
    values = {**_LEGACY_TRAINING, **data}
    model = values.get("model")
    if isinstance(model, dict):
        values["model"] = {**_LEGACY_MODEL, **model}
    return values


def load_diffusion_hparams(name: str, path: str | Path | None = None) -> DiffusionHParams:
    """Load a named diffusion set (one with a ``denoiser`` key) from the YAML file.

    Raises
    ------
    ConfigError
        If the file or name does not exist, the set is a U-Net one, or a key is
        unknown, missing or malformed.
    """
    yaml_path = Path(path).expanduser() if path else default_hparams_file()
    data = _read_yaml(yaml_path)
    if name not in data or str(name).startswith("_"):
        names = ", ".join(sorted(k for k in data if not str(k).startswith("_") and "denoiser" in (data[k] or {})))
        raise ConfigError(f"{yaml_path}: no diffusion hyper-parameter set named {name!r} (have: {names})")
    values = dict(data[name] or {})
    values.pop("name", None)
    if "denoiser" not in values:
        raise ConfigError(f"{yaml_path}: {name!r} is a U-Net set (no 'denoiser' key); pick a diffusion set")
    hp: DiffusionHParams = _build_dataclass(DiffusionHParams, {"name": name, **values}, f"{yaml_path}: {name}")
    return hp


def diffusion_hparams_from_dict(data: dict[str, Any], where: str) -> DiffusionHParams:
    """Inverse of :func:`hparams_to_dict` for a diffusion set (e.g. from a checkpoint)."""
    hp: DiffusionHParams = _build_dataclass(DiffusionHParams, dict(data), where)
    return hp
