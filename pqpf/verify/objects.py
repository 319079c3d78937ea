"""Rain objects: how large the contiguous areas at or above a threshold are.

Spectra and FSS do not see one thing a forecaster sees at once on a map of members: a
member with a plateau of heavy rain larger than any observed core, or heavy rain only in
specks. An object here is a connected set of points at or above a threshold, points
connected when they share an edge (4-connectivity, :func:`scipy.ndimage.label`'s default
structure). Every source is labelled on the same points: outside the scored area (bad
MRMS quality, any forecast missing) a point counts as below every threshold, so an
object of any source is cut where the observation is.

:class:`ObjectSizes` keeps, per source and threshold, fixed-size sums over fields (each
member is a field of its own): fields, objects, the sum of object sizes ``S1 = sum s``
and of their squares ``S2 = sum s**2`` (grid points), the sum over fields of each
field's largest object, the largest object seen, the points scored, and the rain area
(sum of sizes) in size classes of powers of two (``[2**k, 2**(k+1))`` grid points).

What it reports, per source and threshold:

* objects per field;
* the point-weighted mean size ``S2 / S1``: the size of the object that a point at or
  above the threshold, picked at random, belongs to. The plain mean over objects
  (``S1 / count``) is set by the many one-point specks and says little of the cores;
* the largest object per field, its mean over fields and its maximum;
* the share of the scored points at or above the threshold (a count, not area-weighted);
* the share of that rain area in objects of at least ``2**k`` points (the figure of
  :func:`pqpf.plot.ensemble_scores.plot_object_sizes`).

Object sizes are in grid points; times ``dx_km**2`` they are areas on a uniform grid. The
size ratios' bootstrap intervals resample init dates; a replicate in which a source has
no object at a threshold gives NaN and is left out, so at rare thresholds the interval is
conditional on objects existing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from pqpf.ordinal import reaches
from pqpf.verify.bootstrap import safe_ratio

__all__ = ["DEFAULT_OBJECT_THRESHOLDS_MM", "N_SIZE_CLASSES", "ObjectSizes", "object_sizes"]

#: Thresholds (mm) of the objects ``verify_ensemble.py`` counts: rain, moderate, heavy and
#: intense hourly amounts.
DEFAULT_OBJECT_THRESHOLDS_MM: tuple[float, ...] = (1.0, 5.0, 10.0, 25.0)
#: Size classes ``[2**k, 2**(k+1))`` for k = 0 .. N-1, the last open (2**23 points is a
#: 2900 x 2900 grid).
N_SIZE_CLASSES = 24
#: Columns of the per-(source, threshold) sums.
_FIELDS, _OBJECTS, _S1, _S2, _LARGEST_SUM, _LARGEST_MAX, _POINTS = range(7)


def object_sizes(wet: ArrayLike) -> NDArray[np.int64]:
    """Sizes (grid points) of the 4-connected objects of a boolean field, in label order.

    Parameters
    ----------
    wet : bool array (ny, nx)

    Returns
    -------
    int array (n_objects,)
    """
    wet = np.asarray(wet, dtype=bool)
    if wet.ndim != 2:
        raise ValueError(f"objects need a 2-D field, got shape {wet.shape}")
    labels, n = ndimage.label(wet)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64)


class ObjectSizes:
    """Streaming object statistics of several sources at several thresholds (module docstring).

    Parameters
    ----------
    sources : sequence of str
        Names of the sources, e.g. ``("mrms", "members", "unet_p50", "graf")``.
    thresholds_mm : sequence of float
        An object is a connected area at or above the threshold (:func:`pqpf.ordinal.reaches`).
    """

    def __init__(self, sources: Sequence[str], thresholds_mm: Sequence[float]) -> None:
        if not sources or len(set(sources)) != len(sources):
            raise ValueError(f"sources must be distinct and not empty, got {list(sources)}")
        self.sources = tuple(sources)
        self.thresholds_mm = tuple(float(t) for t in thresholds_mm)
        if any(not math.isfinite(t) or t <= 0 for t in self.thresholds_mm):  # none: nothing counted
            raise ValueError(f"object thresholds must be positive, got {list(thresholds_mm)}")
        shape = (len(self.sources), len(self.thresholds_mm))
        self.sums = np.zeros((*shape, 7), dtype=np.float64)
        self.area_by_class = np.zeros((*shape, N_SIZE_CLASSES), dtype=np.float64)

    def update(self, fields: Mapping[str, ArrayLike], valid: ArrayLike) -> None:
        """Add one case: ``fields[source]`` is (ny, nx), or (M, ny, nx) for M fields of one
        source (members); ``valid`` (ny, nx) marks the scored points."""
        valid = np.asarray(valid, dtype=bool)
        for i, source in enumerate(self.sources):
            stack = np.asarray(fields[source], dtype=np.float64)
            stack = stack[None] if stack.ndim == 2 else stack
            if stack.shape[1:] != valid.shape:
                raise ValueError(f"{source}: shape {stack.shape} does not match the valid mask's {valid.shape}")
            for field in stack:
                for k, t in enumerate(self.thresholds_mm):
                    self._add(i, k, object_sizes(reaches(field, t) & valid), valid)

    def _add(self, i: int, k: int, sizes: NDArray[np.int64], valid: NDArray[np.bool_]) -> None:
        row = self.sums[i, k]
        largest = float(sizes.max()) if sizes.size else 0.0
        s = sizes.astype(np.float64)
        row[_FIELDS] += 1
        row[_OBJECTS] += s.size
        row[_S1] += s.sum()
        row[_S2] += s @ s
        row[_LARGEST_SUM] += largest
        row[_LARGEST_MAX] = max(row[_LARGEST_MAX], largest)
        row[_POINTS] += float(valid.sum())
        if s.size:
            classes = np.minimum(np.floor(np.log2(s)).astype(np.int64), N_SIZE_CLASSES - 1)
            self.area_by_class[i, k] += np.bincount(classes, weights=s, minlength=N_SIZE_CLASSES)

    def named_sums(self) -> dict[str, float]:
        """``objects_s1_{source}@{t}mm`` and ``objects_s2_...``: the sums behind the
        point-weighted sizes, for per-date bootstrap intervals (:mod:`pqpf.verify.bootstrap`)."""
        out: dict[str, float] = {}
        for i, source in enumerate(self.sources):
            for k, t in enumerate(self.thresholds_mm):
                out[f"objects_s1_{source}@{t:g}mm"] = float(self.sums[i, k, _S1])
                out[f"objects_s2_{source}@{t:g}mm"] = float(self.sums[i, k, _S2])
        return out

    @staticmethod
    def size_ratio(source: str, reference: str, threshold_mm: float) -> Any:
        """A function of :meth:`named_sums` (arrays over bootstrap replicates allowed): the
        point-weighted mean size of ``source`` over ``reference``'s at ``threshold_mm``."""
        t = f"@{threshold_mm:g}mm"

        def ratio(x: Mapping[str, Any]) -> NDArray[np.float64]:
            num = safe_ratio(x[f"objects_s2_{source}{t}"], x[f"objects_s1_{source}{t}"])
            return safe_ratio(num, safe_ratio(x[f"objects_s2_{reference}{t}"], x[f"objects_s1_{reference}{t}"]))
        return ratio

    def result(self, dx_km: float | None = None) -> dict[str, Any]:
        """JSON-ready summary (NaN where a source has no object at a threshold)."""
        out: dict[str, Any] = {"thresholds_mm": list(self.thresholds_mm), "connectivity": 4,
                               "size_classes_px": [2 ** k for k in range(N_SIZE_CLASSES)],
                               "dx_km": dx_km, "sources": {}}
        for i, source in enumerate(self.sources):
            rows = []
            for k, t in enumerate(self.thresholds_mm):
                fields, objects, s1, s2, largest_sum, largest_max, points = self.sums[i, k]
                area = self.area_by_class[i, k]
                at_least = np.cumsum(area[::-1])[::-1] / s1 if s1 > 0 else np.full(area.size, math.nan)
                rows.append({
                    "threshold_mm": t, "n_fields": int(fields), "n_objects": int(objects),
                    "objects_per_field": objects / fields if fields else math.nan,
                    "mean_size_px": s1 / objects if objects else math.nan,
                    "point_weighted_size_px": s2 / s1 if s1 > 0 else math.nan,
                    "mean_largest_px": largest_sum / fields if fields else math.nan,
                    "max_largest_px": int(largest_max),
                    "area_fraction": s1 / points if points > 0 else math.nan,
                    "area_share_at_least_px": [float(v) for v in at_least],
                })
            out["sources"][source] = {"per_threshold": rows}
        return out
