"""Plain, JSON-ready values: the one conversion used for metrics, scores, registry
entries and hyper-parameters written to YAML, JSON or checkpoints."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["to_plain"]


def to_plain(obj: Any) -> Any:
    """Tuples and arrays -> lists, numpy scalars -> Python numbers, dict keys -> str,
    and NaN/inf -> None (JSON has no NaN: an undefined score is null)."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
