"""The realism of the synthetic archive, pinned by seeded numbers through the public API.

Four June days of the demo grid (seed 1, leads 1 and 6; ``demo_archive`` in conftest.py)
are generated with :func:`pqpf.synthetic.generate_archive` and read back with pqpf's GRIB
readers. Each test states a property of radar-verified km-scale forecasts that the archive
imitates and pins the number the default :class:`~pqpf.synthetic.WeatherParams` give.
The tolerances (0.5 % unless said) are far above floating-point noise and below the
change a different parameter of the weather, the radars or the forecast errors makes:
a failure says which property moved; update the pin on purpose, with the new number in
the commit message.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

REL = 5e-3
#: Model grid spacing of the demo grid (km).
DX_KM = 4.0
#: Terrain smoothing (grid points: 12 km, as for the truth's orographic forcing) and the
#: slope along grid x (m/m) beyond which a point is windward (> 0) or in the lee (< 0) of
#: the mean flow, which blows towards grid east (slope 0.01 at 12 m/s: forcing ~0.5).
OROGRAPHY_SIGMA_PX = 3.0
SLOPE = 0.01
GOOD_QUALITY = 0.5


def _mrms_percentile(archive, q: float) -> float:
    """The ``q``-th percentile (nearest rank, mm, to the bin width) of the covered MRMS QPE."""
    rank = q / 100.0 * archive.bin_counts.sum()
    return float(np.searchsorted(np.cumsum(archive.bin_counts), rank) * archive.bin_mm)


def _pairs(archive, lead: int) -> tuple[np.ndarray, np.ndarray]:
    """GRAF and box-averaged MRMS at good-quality points for the lead's valid times."""
    graf, obs = [], []
    for fcst, valid in zip(archive.graf_mm[lead], archive.graf_valid[lead], strict=True):
        o = archive.qpe_on_model[archive.valid_times.index(valid)]
        good = np.isfinite(o) & (archive.quality_on_model >= GOOD_QUALITY)
        graf.append(fcst[good])
        obs.append(o[good])
    return np.concatenate(graf), np.concatenate(obs)


def _efolding_km(fields: np.ndarray) -> float:
    """Distance (km) at which the correlation of fields ``(n, y, x)`` with themselves
    shifted along x or y (pooled; pairs with NaN left out) falls to 1/e, interpolated
    linearly between lags."""
    target, previous = np.exp(-1.0), 1.0
    for lag in range(1, min(fields.shape[1:])):
        a = np.concatenate([fields[:, :, :-lag].ravel(), fields[:, :-lag, :].ravel()])
        b = np.concatenate([fields[:, :, lag:].ravel(), fields[:, lag:, :].ravel()])
        ok = np.isfinite(a) & np.isfinite(b)
        corr = float(np.corrcoef(a[ok], b[ok])[0, 1])
        if corr < target:
            return DX_KM * (lag - 1 + (previous - target) / (previous - corr))
        previous = corr
    raise AssertionError("the correlation never falls to 1/e")


def _windward_lee_ratio(archive, mean_field: np.ndarray, where: np.ndarray) -> float:
    smooth = ndimage.gaussian_filter(archive.terrain_m.astype(np.float64), OROGRAPHY_SIGMA_PX, mode="nearest")
    _, gx = np.gradient(smooth, archive.model.dy, archive.model.dx)
    windward, lee = where & (gx > SLOPE), where & (gx < -SLOPE)
    assert windward.sum() > 500 and lee.sum() > 500  # enough points for a stable mean
    return float(mean_field[windward].mean() / mean_field[lee].mean())


# ---- radar coverage and quality ---------------------------------------------------------------


def test_a_few_percent_of_mrms_points_have_no_coverage(demo_archive):
    # pins the radar range (230 km) and the site lattice (300 km, jitter): corners of the
    # MRMS box beyond every radar are -3, read back as NaN
    assert demo_archive.no_coverage.mean() == pytest.approx(0.031244, rel=REL)
    assert (demo_archive.quality[demo_archive.no_coverage] == 0.0).all()


def test_about_three_tenths_of_the_grid_has_poor_quality(demo_archive):
    # pins the beam geometry (0.5 degree elevation, 4 km height scale) and the blockage by
    # the terrain: quality < 0.5 on 30 % of the MRMS grid and 28 % of the model domain
    assert (demo_archive.quality < 0.5).mean() == pytest.approx(0.30440, rel=REL)
    assert (demo_archive.quality_on_model < 0.5).mean() == pytest.approx(0.2801, rel=REL)


# ---- amounts ------------------------------------------------------------------------------------


def test_mrms_wet_fraction_at_a_quarter_and_one_millimetre(demo_archive):
    # pins the wet fraction of the regimes (0.32 u^1.5, diurnal cycle) and the GPD scale:
    # 17.5 % of covered points and hours have >= 0.25 mm, 7.8 % >= 1 mm
    shares = {t: n / demo_archive.n_covered for t, n in demo_archive.wet_counts.items()}
    assert shares[0.25] == pytest.approx(0.17486, rel=REL)
    assert shares[1.0] == pytest.approx(0.078203, rel=REL)


def test_mrms_hourly_amounts_have_a_heavy_tail(demo_archive):
    # pins the GPD shape 0.2 and the cap: a 99th percentile of 4.3 mm and a maximum of
    # 85 mm (20 times the 99th percentile)
    assert _mrms_percentile(demo_archive, 99.0) == pytest.approx(4.3, abs=0.05)
    assert demo_archive.qpe_max_mm == pytest.approx(85.0, abs=0.05)


@pytest.mark.parametrize("lead, wet_025, wet_1, p99, maximum", [
    (1, 0.21151, 0.093620, 4.3042, 31.935),
    (6, 0.21224, 0.082015, 3.4868, 18.379),
])
def test_graf_keeps_its_light_rain_and_loses_its_tail_with_lead(demo_archive, lead, wet_025, wet_1, p99, maximum):
    # pins the forecast's drizzle (>= 0.25 mm on 21 % of points at both leads, more than
    # MRMS's 17.5 %), its heavy-rain compression and its smoothing growing with lead (the
    # 99th percentile and the maximum fall from lead 1 to lead 6)
    graf = demo_archive.graf_mm[lead]
    assert (graf >= 0.25).mean() == pytest.approx(wet_025, rel=REL)
    assert (graf >= 1.0).mean() == pytest.approx(wet_1, rel=REL)
    assert np.percentile(graf, 99.0) == pytest.approx(p99, rel=REL)
    assert graf.max() == pytest.approx(maximum, rel=REL)


def test_graf_has_more_light_rain_and_less_heavy_rain_than_mrms(demo_archive):
    # pins the forecast's drizzle and heavy-rain compression at lead 1, on the same points
    # and hours: 1.04 times MRMS's frequency of >= 0.25 mm, 0.91 times its frequency of
    # >= 10 mm (against the truth the biases are larger, see test_weather.py: MRMS
    # itself underestimates where quality is poor, and the box mean smooths it)
    graf, obs = _pairs(demo_archive, 1)
    light = (graf >= 0.25).mean() / (obs >= 0.25).mean()
    heavy = (graf >= 10.0).mean() / (obs >= 10.0).mean()
    assert light == pytest.approx(1.0385, rel=REL) and light > 1.0
    assert heavy == pytest.approx(0.91228, rel=REL) and heavy < 1.0


# ---- forecast skill ---------------------------------------------------------------------------


def test_forecast_error_grows_with_lead(demo_archive):
    # pins the position and timing errors and the predictability (rho) growing with lead:
    # gridpoint correlation with MRMS 0.850 at lead 1 and 0.557 at lead 6
    corr = {lead: np.corrcoef(*_pairs(demo_archive, lead))[0, 1] for lead in (1, 6)}
    assert corr[1] == pytest.approx(0.84957, rel=REL)
    assert corr[6] == pytest.approx(0.55677, rel=REL)


# ---- orography and spatial structure --------------------------------------------------------------


def test_windward_slopes_get_more_rain_than_the_lee(demo_archive):
    # pins the orographic forcing (threshold shift 0.25, amount factor 0.3) and the
    # forecast's halved forcing on smoother terrain: MRMS windward/lee 2.47, GRAF 1.49
    covered = np.isfinite(demo_archive.qpe_on_model)
    hours_covered = covered.sum(axis=0)
    obs_mean = np.where(covered, demo_archive.qpe_on_model, 0.0).sum(axis=0) / np.maximum(hours_covered, 1)
    good = (demo_archive.quality_on_model >= GOOD_QUALITY) & (hours_covered == covered.shape[0])
    mrms = _windward_lee_ratio(demo_archive, obs_mean, good)
    graf = _windward_lee_ratio(demo_archive, demo_archive.graf_mm[1].mean(axis=0), np.ones_like(good))
    assert mrms == pytest.approx(2.4668, rel=REL)
    assert graf == pytest.approx(1.4882, rel=REL)


def test_hourly_fields_decorrelate_over_about_a_hundred_km(demo_archive):
    # pins the latent field's spectrum (beta 3.4, outer scale 500 km) with the wet/dry
    # threshold: hourly fields decorrelate to 1/e over ~100 km (GRAF lead 1, smoothed)
    # and ~94 km (MRMS box means at the same valid times)
    idx = [demo_archive.valid_times.index(v) for v in demo_archive.graf_valid[1]]
    assert _efolding_km(demo_archive.graf_mm[1]) == pytest.approx(104.54, rel=REL)
    assert _efolding_km(demo_archive.qpe_on_model[idx]) == pytest.approx(93.794, rel=REL)

