"""The synthetic truth and forecasts, before any radar sees them.

Sixteen June days on the demo grid (seed 0): the truth and its orographic forcing every
second hour, and forecasts at leads 1 and 12 valid at 01 and 13 UTC (the same valid
times for both leads, from different inits). The numbers are pinned to 0.5 % unless said;
the ranges in :mod:`pqpf.synthetic.weather`'s docstring are over four seeds and January too.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pqpf.grid import graf_like_grid
from pqpf.synthetic import mrms_grid_for
from pqpf.synthetic.grids import extended_domain
from pqpf.synthetic.regimes import regime_at
from pqpf.synthetic.terrain import synthetic_terrain
from pqpf.synthetic.weather import Weather, WeatherStateError

REL = 5e-3
N_DAYS = 16
START = dt.datetime(2024, 6, 1, 0)
LEADS = (1, 12)


def _spectral_slope(field: np.ndarray, dx_km: float = 4.0) -> float:
    """Log-log slope of the radially averaged power spectrum, wavelengths 16-200 km."""
    f = field - field.mean()
    ny, nx = f.shape
    power = np.abs(np.fft.fft2(f * np.outer(np.hanning(ny), np.hanning(nx)))) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(ny, dx_km), np.fft.fftfreq(nx, dx_km), indexing="ij"))
    edges = np.logspace(np.log10(1 / 200.0), np.log10(1 / 16.0), 12)
    centres = np.sqrt(edges[:-1] * edges[1:])
    means = [power[(k >= a) & (k < b)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return float(np.polyfit(np.log(centres), np.log(means), 1)[0])


@pytest.fixture(scope="module")
def weather():
    model = graf_like_grid("demo")
    dom = extended_domain(model, mrms_grid_for("demo", model))
    w = Weather(dom, synthetic_terrain(dom.grid, 0), seed=0)
    w.start(START - dt.timedelta(hours=1))
    truth, forcing, fcst = [], [], {lead: [] for lead in LEADS}
    for _ in range(24 * N_DAYS):
        w.step()
        if w.time.hour % 2 == 0:
            continue
        truth.append(w.truth()[dom.inner])
        regime = regime_at(w.seed, w.time - dt.timedelta(minutes=30), w.params)
        forcing.append(w.orographic_forcing(regime, w.grad_truth)[dom.inner])
        if w.time.hour in (1, 13):
            for lead in LEADS:
                fcst[lead].append((w.forecast(w.time - dt.timedelta(hours=lead), lead), truth[-1], forcing[-1]))
    return w, np.array(truth), np.array(forcing), fcst


def _pairs(fcst, lead):
    """Forecasts, truths and forcings, each ``(n, y, x)``."""
    return tuple(np.array([p[k] for p in fcst[lead]]) for k in range(3))


def test_wet_area_varies_from_dry_to_wet_days(weather):
    # pins the regimes' wet fraction (0.32 u^1.5, smoothed over five days): 7.7 % of the
    # domain has >= 0.1 mm on average, from a dry day (0.001 %) to 31 % on the wettest
    _, truth, _, _ = weather
    daily = (truth >= 0.1).reshape(N_DAYS, 12, -1).mean(axis=(1, 2))
    assert daily.mean() == pytest.approx(0.077033, rel=REL)
    assert daily.min() < 1e-4
    assert daily.max() == pytest.approx(0.3087, rel=REL)


def test_wet_amounts_are_mostly_light_with_a_heavy_tail(weather):
    # pins the generalised Pareto amounts (shape 0.2, summer scale ~1.3 mm) and the cap
    _, truth, _, _ = weather
    wet = truth[truth >= 0.1]
    median, p99 = np.percentile(wet, [50, 99])
    assert median == pytest.approx(0.98212, rel=REL)
    assert p99 / median == pytest.approx(11.371, rel=REL)
    assert (wet < 2.0).mean() == pytest.approx(0.73695, rel=REL)
    assert wet.max() == pytest.approx(60.667, rel=REL)


def test_truth_has_a_rain_like_spectral_slope(weather):
    # pins beta = 3.4 through the threshold and the amount transform: the hourly amounts'
    # spectrum falls as k^-2.90 over 16-200 km (rain fields: about -2.5 to -3)
    _, truth, _, _ = weather
    slopes = [_spectral_slope(t) for t in truth if (t >= 0.1).mean() > 0.03]
    assert len(slopes) == 94
    assert np.mean(slopes) == pytest.approx(-2.9020, rel=REL)


def test_windward_slopes_get_more_rain_than_the_lee(weather):
    # pins the orographic forcing: mean amount where s > 0.5 is 3.6 times that where s < -0.5
    _, truth, forcing, _ = weather
    assert truth[forcing > 0.5].mean() / truth[forcing < -0.5].mean() == pytest.approx(3.6335, rel=REL)


@pytest.mark.parametrize("lead, corr, light, heavy, orographic", [
    (1, 0.73148, 1.3794, 0.69374, 0.49587),
    (12, 0.26894, 1.4049, 0.52308, 0.45060),
])
def test_forecast_errors_against_the_truth(weather, lead, corr, light, heavy, orographic):
    # pins the forecast error model: gridpoint correlation falling with lead, too much
    # light rain (frequency of >= 0.1 mm over the truth's), too little heavy rain (>= 5 mm),
    # and a windward/lee ratio about half the truth's (half the forcing, smoother terrain)
    _, _, _, fcst = weather
    f, t, s = _pairs(fcst, lead)
    assert np.corrcoef(f.ravel(), t.ravel())[0, 1] == pytest.approx(corr, rel=REL)
    assert (f >= 0.1).mean() / (t >= 0.1).mean() == pytest.approx(light, rel=REL)
    assert (f >= 5.0).mean() / (t >= 5.0).mean() == pytest.approx(heavy, rel=REL)
    ratio_truth = t[s > 0.5].mean() / t[s < -0.5].mean()
    assert f[s > 0.5].mean() / f[s < -0.5].mean() / ratio_truth == pytest.approx(orographic, rel=REL)


def test_forecasts_from_different_inits_differ_at_the_same_valid_time(weather):
    _, _, _, fcst = weather
    for (f1, _, _), (f12, _, _) in zip(fcst[1][:4], fcst[12][:4], strict=True):
        assert np.abs(f1 - f12).max() > 1.0


def test_forecast_needs_the_truth_at_its_valid_time(weather):
    w, _, _, _ = weather
    with pytest.raises(WeatherStateError, match="not at the valid time"):
        w.forecast(w.time, 1)


def test_stepping_before_start_is_an_error(weather):
    w, _, _, _ = weather
    fresh = Weather(w.dom, w.terrain_ext, seed=0)
    with pytest.raises(WeatherStateError, match="start"):
        fresh.step()


@pytest.mark.parametrize("lead", [1, 6, 18])
def test_run_errors_follow_the_documented_error_model(lead):
    """``run_errors`` (what ``Weather.forecast`` applies) over 600 inits: the position part
    (displacement minus flow x timing) has sd 5 + 2.5 L km per component, the timing error
    sd 0.3 + 0.1 L h, both unit-normal draws; an init's errors are the same on every call
    and differ between inits; a run's errors at two leads share the per-init draw."""
    from pqpf.synthetic.params import WeatherParams
    from pqpf.synthetic.weather import run_errors

    p = WeatherParams()
    inits = [dt.datetime(2024, 1, 1) + dt.timedelta(hours=12 * k) for k in range(600)]
    errs = [run_errors(7, t, lead) for t in inits]
    tau = np.array([e.tau_h for e in errs])
    flow = np.array([(e.regime.flow_u_ms, e.regime.flow_v_ms) for e in errs]) * 3.6
    shift = np.array([(e.shift_x_km, e.shift_y_km) for e in errs])
    position = shift - flow * tau[:, None]
    sigma = p.position_error_km + p.position_error_km_per_h * lead
    assert np.std(position, axis=0) == pytest.approx([sigma, sigma], rel=0.08)
    assert np.std(tau) == pytest.approx(p.timing_error_h + p.timing_error_h_per_h * lead, rel=0.08)
    assert abs(np.mean(tau)) < 0.1 * np.std(tau)
    assert np.allclose([e.displacement_km for e in errs], np.hypot(shift[:, 0], shift[:, 1]))
    assert run_errors(7, inits[3], lead) == errs[3] and errs[3] != errs[4]
    other = [run_errors(7, t, lead + 6) for t in inits]
    corr = np.corrcoef(tau / np.std(tau), [e.tau_h for e in other])[0, 1]
    w = p.run_error_weight
    assert corr == pytest.approx(w * w / (w * w + p.lead_error_weight ** 2), abs=0.08)
