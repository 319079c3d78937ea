"""Per-channel normalisation of the features, computed from the training split.

``(x - mean) / std`` per channel, statistics from the training split
(:func:`compute_normalisation`), stored in the checkpoint as plain types
(:meth:`Normalisation.to_dict`). For normalisation to commute with augmentation the
slope channels (:data:`SIGN_SYMMETRIC`) get mean 0 and ONE common standard deviation
(the root mean square of both components), since a rotation swaps them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pqpf.errors import InputFileError
from pqpf.features import FEATURE_SCHEMA_VERSION, SIGN_SYMMETRIC, VECTOR_PAIRS, check_feature_schema

if TYPE_CHECKING:
    import torch

__all__ = ["Normalisation", "NormalisationAccumulator", "compute_normalisation"]

logger = logging.getLogger(__name__)

#: A channel whose training standard deviation is below this is left unscaled (std 1):
#: it carried no information in training (e.g. hour of day for one fixed cycle and
#: lead), and dividing by ~0 would blow up any other value at inference.
_MIN_STD = 1e-6


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
    def from_dict(cls, data: Mapping[str, Any], source: str | Path = "<normalisation>") -> Normalisation:
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

    def apply_torch(self, x: torch.Tensor) -> torch.Tensor:
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
