"""Seeded random streams of the synthetic archive.

Every random number comes from :class:`numpy.random.SeedSequence` keyed by the seed, a
stream number and, where the draw belongs to a time, whole hours or days since
:data:`TIME_ZERO`. A file therefore depends only on the seed and the times it covers,
never on the order in which the generator visits them.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

__all__ = [
    "TIME_ZERO", "STREAM_TERRAIN", "STREAM_RADAR", "STREAM_REGIME", "STREAM_START", "STREAM_HOUR",
    "STREAM_FCST", "STREAM_FCST_LEAD", "STREAM_NOISE", "random_stream", "hour_key",
]

#: Random-stream keys count hours and days from here, so that they are non-negative.
TIME_ZERO = dt.datetime(1800, 1, 1)

# Independent random streams (first key after the seed).
STREAM_TERRAIN = 1
STREAM_RADAR = 2
STREAM_REGIME = 3
STREAM_START = 4
STREAM_HOUR = 5
STREAM_FCST = 6
STREAM_FCST_LEAD = 7
STREAM_NOISE = 8


def random_stream(seed: int, *key: int) -> np.random.Generator:
    """A generator keyed by the seed and non-negative integers (times as hour counts)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) % 2**63, *key]))


def hour_key(when: dt.datetime) -> int:
    """Whole hours since :data:`TIME_ZERO`: a non-negative key for any plausible date."""
    return int((when - TIME_ZERO).total_seconds() // 3600)
