"""Weather regimes: the formulas of :mod:`pqpf.synthetic.regimes`' docstring."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pytest

from pqpf.synthetic import WeatherParams
from pqpf.synthetic.regimes import regime_at

PARAMS = WeatherParams()
DAYS = [dt.datetime(2020, 1, 1) + dt.timedelta(days=d) for d in range(1500)]


def _direction_draw(when: dt.datetime, params: WeatherParams = PARAMS) -> float:
    """``eta_3`` recovered from the flow direction ``45 eta_3`` degrees."""
    regime = regime_at(7, when, params)
    return math.degrees(math.atan2(regime.flow_v_ms, regime.flow_u_ms)) / params.flow_direction_sd_deg


def test_wet_fraction_is_a_power_of_the_normal_cdf_of_the_draw():
    # f = 0.32 u^1.5: with another power the same u gives f' = 0.32 (f / 0.32)^(p' / 1.5)
    other = dataclasses.replace(PARAMS, wet_fraction_power=2.2)
    for when in DAYS[:50]:
        f, f_other = regime_at(3, when, PARAMS).wet_fraction, regime_at(3, when, other).wet_fraction
        assert 0.0 <= f <= PARAMS.wet_fraction_max
        assert f_other == pytest.approx(0.32 * (f / 0.32) ** (2.2 / 1.5), rel=1e-9)


def test_daily_draws_have_unit_variance_and_a_day_to_day_correlation_of_16_19ths():
    # weights (1, 2, 3, 2, 1) / sqrt(19): consecutive days share 16/19 of their variance;
    # the cosine interpolation keeps unit variance at noon (1500 days: sampling sd ~0.04)
    eta = np.array([_direction_draw(d) for d in DAYS])
    noon = np.array([_direction_draw(d + dt.timedelta(hours=12)) for d in DAYS])
    assert abs(eta.mean()) < 0.15
    assert eta.std() == pytest.approx(1.0, abs=0.08) and noon.std() == pytest.approx(1.0, abs=0.08)
    assert np.corrcoef(eta[:-1], eta[1:])[0, 1] == pytest.approx(16.0 / 19.0, abs=0.03)


def test_flow_speed_stays_within_its_bounds():
    speeds = [math.hypot(r.flow_u_ms, r.flow_v_ms) for r in (regime_at(5, d, PARAMS) for d in DAYS)]
    assert min(speeds) >= PARAMS.flow_speed_min_ms - 1e-9 and max(speeds) <= PARAMS.flow_speed_max_ms + 1e-9
    assert min(speeds) == pytest.approx(3.0) and np.mean(speeds) == pytest.approx(12.0, abs=0.6)


@pytest.mark.parametrize("when, amplitude", [
    (dt.datetime(2025, 7, 19, 0), 0.6),  # day of the year 200: mid-summer
    (dt.datetime(2025, 1, 17, 9), 0.2),  # day 17.375 = 200 - 365.25 / 2: mid-winter
    # day 108.25: a = 0.2 + 0.4 (1 + cos(2 pi (108.25 - 200) / 365.25)) / 2
    (dt.datetime(2025, 4, 18, 6), 0.2 + 0.2 * (1.0 + math.cos(2.0 * math.pi * (108.25 - 200.0) / 365.25))),
])
def test_season_sets_the_diurnal_amplitude_with_a_period_of_365_25_days(when, amplitude):
    assert regime_at(0, when, PARAMS).diurnal_amplitude == pytest.approx(amplitude, abs=1e-9)


def test_amount_scale_grows_from_winter_to_summer():
    # sigma = (0.6 + 0.7 S) exp(0.35 eta_4): its log-mean over many years' same day
    # follows the season (eta_4 averages out)
    def log_scale(month: int, day: int) -> float:
        return float(np.mean([math.log(regime_at(s, dt.datetime(2025, month, day), PARAMS).scale_mm)
                              for s in range(300)]))
    assert log_scale(7, 19) - log_scale(1, 17) == pytest.approx(math.log(1.3 / 0.6), abs=0.08)
