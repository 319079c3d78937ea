"""Weather regimes: the day-to-day wet fraction, flow and amount scale, and the season.

Every UTC day ``d`` has four independent N(0, 1) draws. Each is smoothed over five days,
``eta_d = sum_k w_k x_(d+k) / sqrt(sum_k w_k^2)`` with ``w = (1, 2, 3, 2, 1)``
(``regime_day_weights``; unit variance, correlation 16/19 between consecutive days), and
interpolated to any time ``t`` between days ``d`` and ``d + 1`` with the cosine weight
``a = (1 - cos(pi f)) / 2`` (``f`` the fraction of the day since 00 UTC):
``eta(t) = ((1 - a) eta_d + a eta_(d+1)) / sqrt((1 - a)^2 + a^2 + 2 a (1 - a) r)``,
``r`` the consecutive-day correlation, so ``eta(t)`` keeps unit variance. The four
``eta`` set (all numbers :class:`~pqpf.synthetic.params.WeatherParams` fields):

* the wet-area fraction ``f = 0.32 u^1.5`` (``wet_fraction_max``, ``wet_fraction_power``),
  ``u = Phi(eta_1)`` the standard normal CDF: many dry days, up to 32 % wet area;
* the flow speed ``clip(12 + 5 eta_2, 3, 30)`` m/s (``flow_speed_*``);
* the flow direction ``45 eta_3`` degrees counter-clockwise from grid east
  (``flow_direction_sd_deg``): ``u = speed cos, v = speed sin`` along grid +x and +y;
* the GPD scale ``sigma = (0.6 + (1.3 - 0.6) S) exp(0.35 eta_4)`` mm (``scale_*``).

The season ``S = (1 + cos(2 pi (doy - 200) / 365.25)) / 2`` (``season_peak_doy``,
``season_length_days``; ``doy`` the day of the year plus the UTC hour / 24) is 1 in
mid-July and 0 in mid-January; the diurnal amplitude of the wet fraction is
``a = 0.2 + (0.6 - 0.2) S`` (``diurnal_winter``, ``diurnal_summer``).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pqpf.synthetic.params import WeatherParams
from pqpf.synthetic.streams import STREAM_REGIME, TIME_ZERO, random_stream

__all__ = ["Regime", "regime_at"]

_SECONDS_PER_DAY = 86400.0
_HOURS_PER_DAY = 24.0
#: Independent draws per day: wet fraction, flow speed, flow direction, amount scale.
_N_DRAWS = 4


@dataclass(frozen=True)
class Regime:
    """The weather regime at one time.

    Attributes
    ----------
    wet_fraction : float
        Wet-area fraction before the diurnal cycle, in [0, ``wet_fraction_max``].
    flow_u_ms, flow_v_ms : float
        Flow (m/s) along the grid's +x and +y axes.
    scale_mm : float
        Scale ``sigma`` (mm) of the generalised Pareto distribution of wet amounts.
    diurnal_amplitude : float
        Relative amplitude of the diurnal cycle of the wet fraction.
    """

    wet_fraction: float
    flow_u_ms: float
    flow_v_ms: float
    scale_mm: float
    diurnal_amplitude: float


def _normalised_weights(weights: tuple[float, ...]) -> tuple[NDArray[np.float64], float]:
    """Weights of unit sum of squares, and the correlation they give consecutive days."""
    w = np.array(weights) / math.sqrt(sum(v * v for v in weights))
    return w, float(w[:-1] @ w[1:])


@functools.lru_cache(maxsize=256)
def _day_draws(seed: int, day: int, weights: tuple[float, ...]) -> tuple[float, ...]:
    """The four draws of one day, smoothed over ``len(weights)`` days (unit variance)."""
    w, _ = _normalised_weights(weights)
    half = len(weights) // 2
    draws = np.array([random_stream(seed, STREAM_REGIME, day + k).standard_normal(_N_DRAWS)
                      for k in range(-half, half + 1)])
    return tuple(float(v) for v in w @ draws)


def _season(when: dt.datetime, params: WeatherParams) -> float:
    """1 at mid-summer (``season_peak_doy``), 0 half a ``season_length_days`` away."""
    doy = when.timetuple().tm_yday + when.hour / _HOURS_PER_DAY
    return 0.5 + 0.5 * math.cos(2.0 * math.pi * (doy - params.season_peak_doy) / params.season_length_days)


def regime_at(seed: int, when: dt.datetime, params: WeatherParams) -> Regime:
    """The weather regime at a (possibly fractional-hour) time, interpolated between days.

    Parameters
    ----------
    seed : int
        Random seed of the archive.
    when : datetime
        Time (UTC); minutes and seconds count.
    params : WeatherParams
        The weather's parameters.

    Returns
    -------
    Regime
        See the module docstring for the formulas.
    """
    from scipy.special import ndtr  # deferred: --help stays instant

    _, day_correlation = _normalised_weights(params.regime_day_weights)
    day_f = (when - TIME_ZERO).total_seconds() / _SECONDS_PER_DAY
    day = int(math.floor(day_f))
    w = day_f - day
    w = 0.5 - 0.5 * math.cos(math.pi * w)
    eta = ((1.0 - w) * np.array(_day_draws(seed, day, params.regime_day_weights))
           + w * np.array(_day_draws(seed, day + 1, params.regime_day_weights)))
    eta /= math.sqrt((1.0 - w) ** 2 + w**2 + 2.0 * w * (1.0 - w) * day_correlation)  # unit variance
    u = float(ndtr(eta[0]))
    wet = params.wet_fraction_max * u ** params.wet_fraction_power
    speed = float(np.clip(params.flow_speed_ms + params.flow_speed_sd_ms * eta[1],
                          params.flow_speed_min_ms, params.flow_speed_max_ms))
    direction = math.radians(params.flow_direction_sd_deg * eta[2])
    summer = _season(when, params)
    scale = (params.scale_winter_mm + (params.scale_summer_mm - params.scale_winter_mm) * summer) \
        * math.exp(params.scale_day_sd * eta[3])
    diurnal = params.diurnal_winter + (params.diurnal_summer - params.diurnal_winter) * summer
    return Regime(wet, speed * math.cos(direction), speed * math.sin(direction), scale, diurnal)
