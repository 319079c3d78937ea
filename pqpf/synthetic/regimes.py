"""Weather regimes: the day-to-day wet fraction, flow and amount scale, and the season."""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from pqpf.synthetic.params import WeatherParams
from pqpf.synthetic.streams import STREAM_REGIME, TIME_ZERO, random_stream

__all__ = ["Regime", "regime_at"]


@dataclass(frozen=True)
class Regime:
    wet_fraction: float
    flow_u_ms: float
    flow_v_ms: float
    scale_mm: float
    diurnal_amplitude: float


_DAY_WEIGHTS = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / math.sqrt(19.0)
#: Correlation of the smoothed draws of consecutive days.
_DAY_CORRELATION = float(_DAY_WEIGHTS[:-1] @ _DAY_WEIGHTS[1:])


@functools.lru_cache(maxsize=256)
def _day_draws(seed: int, day: int) -> tuple[float, ...]:
    """Four N(0,1) draws of one day, smoothed over five days (still unit variance)."""
    draws = np.array([random_stream(seed, STREAM_REGIME, day + k).standard_normal(4) for k in range(-2, 3)])
    return tuple(float(v) for v in _DAY_WEIGHTS @ draws)


def regime_at(seed: int, when: dt.datetime, params: WeatherParams) -> Regime:
    """Weather regime at a (possibly fractional-hour) time, interpolated between days."""
    day_f = (when - TIME_ZERO).total_seconds() / 86400.0
    day = int(math.floor(day_f))
    w = day_f - day
    w = 0.5 - 0.5 * math.cos(math.pi * w)
    eta = (1.0 - w) * np.array(_day_draws(seed, day)) + w * np.array(_day_draws(seed, day + 1))
    eta /= math.sqrt((1.0 - w) ** 2 + w**2 + 2.0 * w * (1.0 - w) * _DAY_CORRELATION)  # unit variance
    u = float(ndtr(eta[0]))
    wet = params.wet_fraction_max * u ** params.wet_fraction_power
    speed = float(np.clip(params.flow_speed_ms + params.flow_speed_sd_ms * eta[1], 3.0, 30.0))
    direction = math.radians(params.flow_direction_sd_deg * eta[2])
    doy = when.timetuple().tm_yday + when.hour / 24.0
    summer = 0.5 + 0.5 * math.cos(2.0 * math.pi * (doy - 200.0) / 365.25)
    scale = (params.scale_winter_mm + (params.scale_summer_mm - params.scale_winter_mm) * summer) \
        * math.exp(params.scale_day_sd * eta[3])
    diurnal = params.diurnal_winter + (params.diurnal_summer - params.diurnal_winter) * summer
    return Regime(wet, speed * math.cos(direction), speed * math.sin(direction), scale, diurnal)
