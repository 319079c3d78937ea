"""The one feature definition used by patch extraction, training and inference.

Input channels of the U-Net, built pointwise from a GRAF 1-h amount field and the
terrain netCDF variables (so a full field and a patch cut from it give the same
features at the same points):

========================== ======= ============================================================
channel                    unit    definition
========================== ======= ============================================================
graf_log1p                 -       ``log1p(max(graf_mm, 0))``: a variance-stabilising transform of
                                   the GRAF amount (mm)
terrain_local_difference   m       terrain height minus its Gaussian-smoothed height
graf_x_terrain_difference  -       ``graf_log1p * terrain_local_difference / 1000``
slope_x                    m/m     terrain slope along increasing column index (grid x axis)
slope_y                    m/m     terrain slope along increasing row index (grid y axis)
hour_sin, hour_cos         -       ``sin/cos(2 pi h / 24)``, h = hour of the VALID time (UTC),
                                   optional, constant planes
doy_sin, doy_cos           -       ``sin/cos(2 pi d / 365.2425)``, d = fractional day of year of
                                   the valid time (0 at 1 January 00 UTC), optional
========================== ======= ============================================================

:data:`FEATURE_SCHEMA_VERSION` identifies this definition; patch files and checkpoints
record it and loaders refuse a mismatch (:func:`check_feature_schema`).

No neighbourhood (smoothed) GRAF channel is built on purpose: it would make the
features of a patch depend on points outside the patch, so features of a cut patch
would differ from the same points of full-field features. The U-Net's receptive field
supplies the neighbourhood instead.

Augmentation
------------
The 8 elements of the dihedral group D4 are indexed ``0..7``: ``k = transform_id % 4``
quarter turns of ``np.rot90(..., axes=(-2, -1))`` applied AFTER a west-east mirror
(``np.flip(..., axis=-1)``) when ``transform_id >= 4``. Arrays run south->north along
rows (y grows with the row index) and west->east along columns. The terrain slope is a
vector ``(slope_x, slope_y)`` of derivatives along the column and row index, so a
spatial transform also maps the components:

* mirror (columns reversed): ``(sx, sy) -> (-sx, sy)``
* one quarter turn of ``np.rot90`` (``out[r, c] = in[c, W-1-r]``):
  ``(sx, sy) -> (sy, -sx)``

Both rules hold exactly for centred finite differences (``np.gradient``), which the
tests prove for all 8 transforms. They assume ``dx == dy`` on the ground (true for the
conformal GRAF grid, whose map factor is isotropic). The scalar channels only move.

Normalisation
-------------
``(x - mean) / std`` per channel, statistics from the training split
(:func:`compute_normalisation`), stored in the checkpoint as plain types
(:meth:`Normalisation.to_dict`). For normalisation to commute with augmentation the
slope channels (:data:`SIGN_SYMMETRIC`) get mean 0 and ONE common standard deviation
(the root mean square of both components), since a rotation swaps them.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from pqpf.errors import InputFileError

__all__ = [
    "FEATURE_SCHEMA_VERSION",
    "BASE_CHANNELS",
    "TIME_CHANNELS",
    "SIGN_SYMMETRIC",
    "VECTOR_PAIRS",
    "N_TRANSFORMS",
    "channel_names",
    "build_features",
    "time_feature_planes",
    "append_time_channels",
    "pad_features",
    "check_feature_schema",
    "Normalisation",
    "NormalisationAccumulator",
    "compute_normalisation",
    "augment_spatial",
    "augment_features",
    "augment_batch_torch",
]

logger = logging.getLogger(__name__)

#: Version of the feature definition; bump whenever a channel changes meaning.
FEATURE_SCHEMA_VERSION = 1

BASE_CHANNELS: tuple[str, ...] = (
    "graf_log1p",
    "terrain_local_difference",
    "graf_x_terrain_difference",
    "slope_x",
    "slope_y",
)
TIME_CHANNELS: tuple[str, ...] = ("hour_sin", "hour_cos", "doy_sin", "doy_cos")
#: Channels whose sign flips under some augmentations; their normalisation mean is 0.
SIGN_SYMMETRIC: frozenset[str] = frozenset({"slope_x", "slope_y"})
#: (x component, y component) channel pairs that rotate as a vector under augmentation;
#: the two members of a pair share one normalisation standard deviation.
VECTOR_PAIRS: tuple[tuple[str, str], ...] = (("slope_x", "slope_y"),)
#: Number of dihedral transforms (4 rotations x optional mirror).
N_TRANSFORMS = 8

#: Terrain netCDF variables the features need.
_TERRAIN_VARS = ("height_local_difference", "slope_x", "slope_y")
_DAYS_PER_YEAR = 365.2425
#: A channel whose training standard deviation is below this is left unscaled (std 1):
#: it carried no information in training (e.g. hour of day for one fixed cycle and
#: lead), and dividing by ~0 would blow up any other value at inference.
_MIN_STD = 1e-6

_Array = TypeVar("_Array")


def channel_names(time_features: bool = False) -> tuple[str, ...]:
    """Names of the feature channels, in order.

    Parameters
    ----------
    time_features : bool
        Append the four time-of-day / season channels.
    """
    return BASE_CHANNELS + (TIME_CHANNELS if time_features else ())


def check_feature_schema(version: Any, source: str | Path) -> None:
    """Refuse data built with another feature definition.

    Parameters
    ----------
    version : int
        The ``feature_schema_version`` recorded in a patch file or checkpoint.
    source : str or Path
        The file it came from (named in the error).

    Raises
    ------
    InputFileError
        If ``version`` differs from :data:`FEATURE_SCHEMA_VERSION`.
    """
    if version != FEATURE_SCHEMA_VERSION:
        raise InputFileError(
            source,
            f"feature schema version {version!r} does not match this pqpf's "
            f"{FEATURE_SCHEMA_VERSION}; rebuild it with this version",
        )


def _time_planes(valid_time: dt.datetime) -> tuple[float, float, float, float]:
    hour = valid_time.hour + valid_time.minute / 60.0 + valid_time.second / 3600.0
    day = valid_time.timetuple().tm_yday - 1 + hour / 24.0
    a_hour = 2.0 * math.pi * hour / 24.0
    a_day = 2.0 * math.pi * day / _DAYS_PER_YEAR
    return (math.sin(a_hour), math.cos(a_hour), math.sin(a_day), math.cos(a_day))


def time_feature_planes(valid_time_s: NDArray[np.integer], shape: tuple[int, int]) -> NDArray[np.float32]:
    """The time-of-day / season channels of many patches at once.

    Parameters
    ----------
    valid_time_s : int array, shape (n,)
        Valid times, seconds since 1970-01-01 00 UTC.
    shape : (H, W)
        Patch shape.

    Returns
    -------
    float32 array, shape (n, 4, H, W)
        Constant planes in the order of :data:`TIME_CHANNELS`, equal to what
        :func:`build_features` appends with ``time_features=True``.
    """
    from pqpf.dates import from_epoch_seconds

    values = np.array([_time_planes(from_epoch_seconds(int(t))) for t in np.asarray(valid_time_s).ravel()],
                      dtype=np.float32).reshape(-1, len(TIME_CHANNELS))
    return np.broadcast_to(values[:, :, None, None], (len(values), len(TIME_CHANNELS), *shape)).copy()


def append_time_channels(features: NDArray[np.floating], valid_time_s: NDArray[np.integer] | int) -> NDArray[np.float32]:
    """Append the time-of-day / season planes to base features.

    Parameters
    ----------
    features : float array, shape (N, C, H, W) or (C, H, W)
        Base feature channels (:data:`BASE_CHANNELS`).
    valid_time_s : int array of shape (N,), or int
        Valid time(s), seconds since 1970-01-01 00 UTC.

    Returns
    -------
    float32 array with the four :data:`TIME_CHANNELS` appended on the channel axis.
    """
    x = np.asarray(features, dtype=np.float32)
    single = x.ndim == 3
    batch = x[None] if single else x
    times = np.atleast_1d(np.asarray(valid_time_s))
    if times.shape != (batch.shape[0],):
        raise ValueError(f"need one valid time per patch ({batch.shape[0]}), got {times.shape}")
    out = np.concatenate([batch, time_feature_planes(times, batch.shape[-2:])], axis=1)
    return out[0] if single else out


def pad_features(features: NDArray[np.floating], pad_px: int, channel_names: Sequence[str]) -> NDArray[np.float32]:
    """Pad a (C, H, W) feature field by reflection at every edge, as physical fields reflect.

    A mirror image of the terrain has the slope component normal to the mirror
    reversed: in the left and right pads ``slope_x`` changes sign, in the top and
    bottom pads ``slope_y`` (in the corners both), exactly as for the flips of
    :func:`augment_features`. Scalar channels are reflected as they are.

    Parameters
    ----------
    features : float array, shape (C, H, W)
    pad_px : int
        Points added on each side (reflection needs ``pad_px < min(H, W)``).
    channel_names : sequence of str, length C
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] != len(channel_names):
        raise ValueError(f"features must be (C={len(channel_names)}, H, W), got {x.shape}")
    if pad_px < 0 or pad_px >= min(x.shape[1:]):
        raise ValueError(f"pad_px must be in [0, {min(x.shape[1:]) - 1}] for shape {x.shape[1:]}, got {pad_px}")
    out = np.pad(x, ((0, 0), (pad_px, pad_px), (pad_px, pad_px)), mode="reflect")
    if pad_px == 0:
        return out
    names = list(channel_names)
    for x_name, y_name in VECTOR_PAIRS:
        if x_name in names:
            c = names.index(x_name)
            out[c, :, :pad_px] *= -1.0
            out[c, :, -pad_px:] *= -1.0
        if y_name in names:
            c = names.index(y_name)
            out[c, :pad_px, :] *= -1.0
            out[c, -pad_px:, :] *= -1.0
    return out


def build_features(
    graf_mm: NDArray[np.floating],
    terrain: Mapping[str, NDArray[np.floating]] | Any,
    valid_time: dt.datetime,
    time_features: bool = False,
) -> NDArray[np.float32]:
    """Build the feature channels at every point of a field or patch.

    Parameters
    ----------
    graf_mm : float array, shape (ny, nx)
        GRAF 1-h accumulated precipitation (mm). Negative values (packing noise) are
        clipped to 0. NaN points are treated as 0 mm and a ``RuntimeWarning`` names
        how many there were: a convolutional network cannot take NaN (one NaN would
        spread to the whole patch), and a GRAF field is not expected to have gaps, so
        the caller should look at the warning; infinite values raise.
    terrain : mapping or :class:`pqpf.terrain.Terrain`
        ``terrain[name]`` for ``"height_local_difference"`` (m), ``"slope_x"`` and
        ``"slope_y"`` (m/m, grid-axis slopes per metre on the ground), each of shape
        (ny, nx) and finite.
    valid_time : datetime
        Valid time (naive UTC) of the 1-h amount (end of the accumulation).
    time_features : bool
        Append the four constant time-of-day / season planes.

    Returns
    -------
    float32 array, shape (C, ny, nx)
        Channels in the order of :func:`channel_names`.

    Raises
    ------
    ValueError
        Wrong shapes, infinite GRAF values or non-finite terrain.
    """
    graf = np.asarray(graf_mm, dtype=np.float32)
    if graf.ndim != 2:
        raise ValueError(f"graf_mm must be 2-D (ny, nx), got shape {graf.shape}")
    if np.isinf(graf).any():
        raise ValueError(f"graf_mm has {int(np.isinf(graf).sum())} infinite values")
    n_nan = int(np.isnan(graf).sum())
    if n_nan:
        warnings.warn(
            f"GRAF amount has {n_nan} NaN points of {graf.size}; they are treated as 0 mm",
            RuntimeWarning,
            stacklevel=2,
        )
    amount = np.log1p(np.maximum(np.nan_to_num(graf, nan=0.0), 0.0))

    fields = {}
    for name in _TERRAIN_VARS:
        try:
            value = np.asarray(terrain[name], dtype=np.float32)
        except KeyError:
            raise ValueError(f"terrain has no variable {name!r} (needs {', '.join(_TERRAIN_VARS)})") from None
        if value.shape != graf.shape:
            raise ValueError(f"terrain {name!r} has shape {value.shape}, GRAF has {graf.shape}")
        if not np.isfinite(value).all():
            raise ValueError(f"terrain {name!r} has {int((~np.isfinite(value)).sum())} non-finite values")
        fields[name] = value

    diff = fields["height_local_difference"]
    planes = [amount, diff, amount * (diff / np.float32(1000.0)), fields["slope_x"], fields["slope_y"]]
    if time_features:
        from pqpf.dates import to_epoch_seconds

        planes += list(time_feature_planes(np.array([to_epoch_seconds(valid_time)]), graf.shape)[0])
    return np.stack(planes).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalisation:
    """Per-channel affine normalisation ``(x - mean) / std``.

    Parameters
    ----------
    channel_names : tuple of str
        The channels, in order.
    mean, std : tuple of float
        Statistics of each channel from the training split; ``std > 0``.
    """

    channel_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.channel_names)
        if len(self.mean) != n or len(self.std) != n:
            raise ValueError(
                f"normalisation needs one mean and std per channel: {n} channels, "
                f"{len(self.mean)} means, {len(self.std)} stds"
            )
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"normalisation std must be positive and finite, got {self.std}")
        if not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"normalisation mean must be finite, got {self.mean}")

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types (for a ``weights_only`` checkpoint or JSON)."""
        return {
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "channel_names": list(self.channel_names),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path = "<normalisation>") -> "Normalisation":
        """Inverse of :meth:`to_dict`; refuses another feature schema version."""
        try:
            check_feature_schema(data.get("feature_schema_version"), source)
            return cls(
                channel_names=tuple(str(c) for c in data["channel_names"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(source, f"bad normalisation record ({exc})") from None

    def check_channels(self, names: Sequence[str]) -> None:
        """Raise ``ValueError`` unless ``names`` are this normalisation's channels."""
        if tuple(names) != self.channel_names:
            raise ValueError(
                f"feature channels {tuple(names)} do not match the normalisation's "
                f"{self.channel_names}"
            )

    def _check_shape(self, shape: Sequence[int]) -> None:
        if len(shape) < 3 or shape[-3] != len(self.channel_names):
            raise ValueError(
                f"expected (..., {len(self.channel_names)}, H, W) features, got shape {tuple(shape)}"
            )

    def apply_numpy(self, x: NDArray[np.floating]) -> NDArray[np.float32]:
        """Normalise a float array of shape (..., C, H, W); returns float32."""
        self._check_shape(np.shape(x))
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return ((np.asarray(x, dtype=np.float32) - mean) / std).astype(np.float32, copy=False)

    def apply_torch(self, x: Any) -> Any:
        """Normalise a tensor of shape (..., C, H, W) on its own device and dtype."""
        import torch

        self._check_shape(tuple(x.shape))
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std


class NormalisationAccumulator:
    """Streaming, weighted per-channel statistics for :class:`Normalisation`.

    Feed batches with :meth:`update` and call :meth:`result`. Sums are kept in float64
    about a per-channel shift (the mean of the first batch) so the variance does not
    suffer from cancellation.

    Parameters
    ----------
    channel_names : sequence of str
        The channels of the batches that will be fed.
    """

    def __init__(self, channel_names: Sequence[str]) -> None:
        self.channel_names = tuple(channel_names)
        n = len(self.channel_names)
        self._shift: NDArray[np.float64] | None = None
        self._w = 0.0
        self._s1 = np.zeros(n)
        self._s2 = np.zeros(n)
        # Raw second moment about zero, for the sign-symmetric channels.
        self._m2 = np.zeros(n)

    def update(
        self, features: NDArray[np.floating], sample_weight: NDArray[np.floating] | None = None
    ) -> None:
        """Add a batch of shape (N, C, H, W), optionally with per-sample weights (N,) >= 0."""
        x = np.asarray(features)
        if x.ndim != 4 or x.shape[1] != len(self.channel_names):
            raise ValueError(
                f"expected features (N, {len(self.channel_names)}, H, W), got shape {x.shape}"
            )
        n = x.shape[0]
        if sample_weight is None:
            w = np.ones(n)
        else:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
                raise ValueError(
                    f"sample_weight must be {n} finite non-negative values, got shape {w.shape}"
                )
        if not np.isfinite(x).all():
            raise ValueError("features contain non-finite values")
        if n == 0 or w.sum() == 0:
            return
        x = x.astype(np.float64)
        if self._shift is None:
            self._shift = np.average(x.mean(axis=(2, 3)), axis=0, weights=w)
        npix = x.shape[2] * x.shape[3]
        d = x - self._shift[None, :, None, None]
        self._w += float(w.sum()) * npix
        self._s1 += np.einsum("n,nc->c", w, d.sum(axis=(2, 3)))
        self._s2 += np.einsum("n,nc->c", w, (d * d).sum(axis=(2, 3)))
        self._m2 += np.einsum("n,nc->c", w, (x * x).sum(axis=(2, 3)))

    def result(self) -> Normalisation:
        """The statistics of everything fed so far."""
        if self._shift is None or self._w == 0:
            raise ValueError("no samples with positive weight were fed to the normalisation")
        mean_d = self._s1 / self._w
        mean = self._shift + mean_d
        var = np.maximum(self._s2 / self._w - mean_d**2, 0.0)
        rms2 = self._m2 / self._w
        names = self.channel_names
        for i, name in enumerate(names):
            if name in SIGN_SYMMETRIC:
                mean[i] = 0.0
                var[i] = rms2[i]
        for a, b in VECTOR_PAIRS:
            if a in names and b in names:
                ia, ib = names.index(a), names.index(b)
                var[ia] = var[ib] = 0.5 * (var[ia] + var[ib])
        std = np.sqrt(var)
        std = np.where(std < _MIN_STD, 1.0, std)
        for name, s in zip(names, np.sqrt(var)):
            if s < _MIN_STD:
                logger.info("feature channel %s is constant in training; left unscaled", name)
        return Normalisation(names, tuple(float(m) for m in mean), tuple(float(s) for s in std))


def compute_normalisation(
    features: NDArray[np.floating],
    channel_names: Sequence[str],
    sample_weight: NDArray[np.floating] | None = None,
    batch_size: int = 256,
) -> Normalisation:
    """Per-channel mean and std of training features.

    Parameters
    ----------
    features : float array, shape (N, C, P, P)
        Training-split features (e.g. a memory-mapped patch array; read in batches).
    channel_names : sequence of str
        Names of the C channels.
    sample_weight : float array, shape (N,), optional
        Per-patch weights >= 0 (the sampling weights that undo over-sampling of wet
        patches), so the statistics describe the climatology, not the sample.
    batch_size : int
        Patches read per step.

    Returns
    -------
    Normalisation
        Weighted mean and population std per channel. Channels in
        :data:`SIGN_SYMMETRIC` get mean 0 and std = root mean square; the members of
        each :data:`VECTOR_PAIRS` pair share one std (their mean square) so the
        normalisation commutes with augmentation. A channel with std below 1e-6 is
        left unscaled (std 1).
    """
    acc = NormalisationAccumulator(channel_names)
    n = len(features)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        acc.update(
            features[start:stop],
            None if sample_weight is None else np.asarray(sample_weight)[start:stop],
        )
    return acc.result()


# --------------------------------------------------------------------------------------
# Augmentation (dihedral group D4)
# --------------------------------------------------------------------------------------


def _check_transform(transform_id: int) -> tuple[int, bool]:
    t = int(transform_id)
    if t != transform_id or not 0 <= t < N_TRANSFORMS:
        raise ValueError(f"transform_id must be an integer in 0..{N_TRANSFORMS - 1}, got {transform_id!r}")
    return t % 4, t >= 4


def _vector_rule(transform_id: int) -> tuple[tuple[int, float], tuple[int, float]]:
    """Signed permutation of a grid vector ``(v_x, v_y)`` under a transform.

    Returns ``((src, sign) for the new x component, (src, sign) for the new y
    component)`` with ``src`` 0 for x and 1 for y: ``new_x = sign * old[src]``.
    """
    k, flip = _check_transform(transform_id)
    # Track (source index, sign) of the current x and y components.
    x, y = (0, 1.0), (1, 1.0)
    if flip:  # columns reversed: d/dx changes sign
        x = (x[0], -x[1])
    for _ in range(k):  # out[r, c] = in[c, W-1-r]: (vx, vy) -> (vy, -vx)
        x, y = y, (x[0], -x[1])
    return x, y


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def augment_spatial(x: _Array, transform_id: int) -> _Array:
    """Apply dihedral transform ``transform_id`` to the last two axes.

    Parameters
    ----------
    x : numpy array or torch tensor, shape (..., H, W)
        Any gridded quantity that is a scalar per point (targets, quality, masks).
    transform_id : int
        0..7: ``k = transform_id % 4`` quarter turns of ``rot90`` on axes (-2, -1)
        after a mirror of the last axis when ``transform_id >= 4``.

    Returns
    -------
    Same type, shape (..., H, W) or (..., W, H) for odd ``k``; always a new array
    (C-contiguous for numpy), never a view of ``x``.
    """
    k, flip = _check_transform(transform_id)
    if _is_torch(x):
        import torch

        out = torch.flip(x, dims=(-1,)) if flip else x
        return torch.rot90(out, k, dims=(-2, -1)) if k else (out if flip else out.clone())
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"expected an array of shape (..., H, W), got shape {arr.shape}")
    out = np.flip(arr, axis=-1) if flip else arr
    return np.array(np.rot90(out, k, axes=(-2, -1)), order="C", copy=True)


def augment_features(x: _Array, transform_id: int, channel_names: Sequence[str]) -> _Array:
    """Transform feature channels: spatial transform plus the slope-vector rule.

    Parameters
    ----------
    x : numpy array or torch tensor, shape (..., C, H, W)
        Features (raw or normalised with a :class:`Normalisation` from
        :func:`compute_normalisation`: the result is the same either way).
    transform_id : int
        0..7, see :func:`augment_spatial`.
    channel_names : sequence of str
        Names of the C channels; each :data:`VECTOR_PAIRS` pair present has its
        components permuted and sign-flipped (see the module docstring).

    Returns
    -------
    Same type and dtype, the transformed features.
    """
    names = tuple(channel_names)
    if len(x.shape) < 3 or x.shape[-3] != len(names):
        raise ValueError(f"expected features (..., {len(names)}, H, W), got shape {tuple(x.shape)}")
    out = augment_spatial(x, transform_id)
    rule = _vector_rule(transform_id)
    if rule == ((0, 1.0), (1, 1.0)):
        return out
    for pair in VECTOR_PAIRS:
        if pair[0] not in names and pair[1] not in names:
            continue
        if pair[0] not in names or pair[1] not in names:
            raise ValueError(f"vector channels {pair} must both be present, got {names}")
        idx = (names.index(pair[0]), names.index(pair[1]))
        comps = [out[..., idx[0], :, :], out[..., idx[1], :, :]]
        if _is_torch(out):
            comps = [c.clone() for c in comps]
        else:
            comps = [c.copy() for c in comps]
        for dest, (src, sign) in zip(idx, rule):
            out[..., dest, :, :] = comps[src] if sign > 0 else -comps[src]
    return out


def augment_batch_torch(
    features: Any,
    targets: Sequence[Any],
    transform_ids: Any,
    channel_names: Sequence[str],
) -> tuple[Any, list[Any]]:
    """Per-sample dihedral augmentation of a training batch.

    Samples are grouped by transform so each group costs one flip/rot90 call.

    Parameters
    ----------
    features : tensor, shape (B, C, H, W)
        Features (raw or normalised).
    targets : sequence of tensors, each shape (B, ..., H, W)
        Per-point quantities transformed spatially only (MRMS amount, quality, mask).
    transform_ids : int tensor or array, shape (B,)
        0..7 per sample (draw them from a seeded generator for reproducibility).
    channel_names : sequence of str
        Names of the C feature channels.

    Returns
    -------
    features, targets
        New tensors of the same shapes (H must equal W when any transform rotates by
        an odd number of quarter turns).
    """
    import torch

    ids = torch.as_tensor(np.asarray(transform_ids) if not _is_torch(transform_ids) else transform_ids)
    ids = ids.to(device="cpu", dtype=torch.int64)
    b = features.shape[0]
    if ids.shape != (b,):
        raise ValueError(f"transform_ids must have shape ({b},), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= N_TRANSFORMS):
        raise ValueError(f"transform_ids must be in 0..{N_TRANSFORMS - 1}, got {ids.tolist()}")
    for t in targets:
        if t.shape[0] != b or tuple(t.shape[-2:]) != tuple(features.shape[-2:]):
            raise ValueError(
                f"targets must be (B={b}, ..., {features.shape[-2]}, {features.shape[-1]}), "
                f"got {tuple(t.shape)}"
            )
    odd = bool(((ids % 2) == 1).any())
    if odd and features.shape[-2] != features.shape[-1]:
        raise ValueError(
            f"odd quarter turns need square patches, got {tuple(features.shape[-2:])}"
        )
    out_f = torch.empty_like(features)
    out_t = [torch.empty_like(t) for t in targets]
    for tid in torch.unique(ids).tolist():
        sel = torch.nonzero(ids == tid).flatten()
        sel_f = sel.to(features.device)
        out_f[sel_f] = augment_features(features[sel_f], tid, channel_names)
        for src, dst in zip(targets, out_t):
            sel_t = sel.to(src.device)
            dst[sel_t] = augment_spatial(src[sel_t], tid)
    return out_f, out_t
