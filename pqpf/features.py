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

Normalisation is in :mod:`pqpf.normalisation`, augmentation in :mod:`pqpf.augment`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from pqpf.dates import from_epoch_seconds, to_epoch_seconds
from pqpf.errors import InputFileError

__all__ = [
    "FEATURE_SCHEMA_VERSION",
    "BASE_CHANNELS",
    "TIME_CHANNELS",
    "SIGN_SYMMETRIC",
    "VECTOR_PAIRS",
    "N_TRANSFORMS",
    "PAD_MODES",
    "channel_names",
    "build_features",
    "time_feature_planes",
    "append_time_channels",
    "pad_features",
    "check_feature_schema",
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
#: Edge padding of a domain before it is stitched from windows (``[inference] pad_mode``):
#: "none" stitches the unpadded domain, "reflect" mirrors it (features through
#: :func:`pad_features`, which flips the normal slope), "replicate" repeats the edge values.
PAD_MODES: tuple[str, ...] = ("none", "reflect", "replicate")

#: Terrain netCDF variables the features need.
_TERRAIN_VARS = ("height_local_difference", "slope_x", "slope_y")
_DAYS_PER_YEAR = 365.2425

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
    values = np.array([_time_planes(from_epoch_seconds(int(t))) for t in np.asarray(valid_time_s).ravel()],
                      dtype=np.float32).reshape(-1, len(TIME_CHANNELS))
    return np.broadcast_to(values[:, :, None, None], (len(values), len(TIME_CHANNELS), *shape)).copy()


def append_time_channels(features: NDArray[np.floating], valid_time_s: NDArray[np.integer] | int
                         ) -> NDArray[np.float32]:
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
        planes += list(time_feature_planes(np.array([to_epoch_seconds(valid_time)]), graf.shape)[0])
    return np.stack(planes).astype(np.float32, copy=False)
