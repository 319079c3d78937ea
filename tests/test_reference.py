import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from pqpf.config import ProbabilityConfig
from pqpf.reference import exceedance, reference_sigma_px, smoothed_exceedance

THRESHOLDS = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)


def test_reference_sigma_grows_with_lead_from_config():
    cfg = ProbabilityConfig(reference_sigma_px=2.0, reference_sigma_px_per_h=0.25)
    assert reference_sigma_px(cfg, 0) == 2.0
    assert reference_sigma_px(cfg, 12) == 5.0
    assert reference_sigma_px(cfg, 48) == 14.0
    with pytest.raises(ValueError, match="lead_h"):
        reference_sigma_px(cfg, -1)


def test_exceedance_is_zero_one_with_nan_kept_and_threshold_inclusive():
    g = np.array([[0.0, 1.0, 5.0], [np.nan, 25.0, 0.3]], dtype=np.float32)
    e = exceedance(g, THRESHOLDS)
    assert e.dtype == np.float32 and e.shape == (6, 2, 3)
    assert np.isnan(e[:, 1, 0]).all()
    np.testing.assert_array_equal(e[:, 0, 1], [1, 1, 0, 0, 0, 0])  # 1 mm reaches 1 mm
    np.testing.assert_array_equal(e[:, 1, 1], [1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(e[:, 0, 0], [0, 0, 0, 0, 0, 0])


def test_smoothed_exceedance_equals_gaussian_filter_far_from_edges():
    rng = np.random.default_rng(0)
    g = np.round(rng.gamma(0.3, 4.0, (120, 140)), 3).astype(np.float32)  # 0.001 mm steps, as real data
    sigma = 3.0
    p = smoothed_exceedance(g, THRESHOLDS, sigma)
    assert p.dtype == np.float32 and p.shape == (6, 120, 140)
    for k, t in enumerate(THRESHOLDS):
        ref = gaussian_filter((g >= t).astype(np.float64), sigma, mode="constant", truncate=4.0)
        inner = (slice(13, -13), slice(13, -13))  # beyond 4 sigma + 1 from the edges
        np.testing.assert_allclose(p[k][inner], ref[inner], atol=1e-6)
    assert np.nanmin(p) >= 0.0 and np.nanmax(p) <= 1.0
    # nested thresholds give nested probabilities
    assert np.all(np.diff(p, axis=0) <= 1e-6)


def test_smoothed_exceedance_keeps_constant_field_constant_up_to_edges_and_holes():
    g = np.full((60, 80), 3.0, dtype=np.float32)
    g[20:25, 30:40] = np.nan
    p = smoothed_exceedance(g, (1.0, 5.0), 6.0)
    ok = ~np.isnan(g)
    np.testing.assert_allclose(p[0][ok], 1.0, atol=1e-6)
    np.testing.assert_allclose(p[1][ok], 0.0, atol=1e-6)
    assert np.isnan(p[:, ~ok]).all()


def test_smoothed_exceedance_is_not_biased_at_the_edge():
    # rain over the whole western half: the edge column keeps probability 1 in the west
    # and the profile across the rain boundary is the same at the edge as in the middle.
    g = np.zeros((80, 80), dtype=np.float32)
    g[:, :40] = 10.0
    p = smoothed_exceedance(g, (1.0,), 5.0)[0]
    np.testing.assert_allclose(p[:, :20], 1.0, atol=1e-6)
    np.testing.assert_allclose(p[0, :], p[40, :], atol=1e-6)
    assert p[40, 39] == pytest.approx(0.5, abs=0.1) and p[40, 40] == pytest.approx(0.5, abs=0.1)


def test_smoothed_exceedance_validates_input():
    with pytest.raises(ValueError, match="2-D"):
        smoothed_exceedance(np.zeros(5), THRESHOLDS, 2.0)
    with pytest.raises(ValueError, match="sigma_px"):
        smoothed_exceedance(np.zeros((5, 5)), THRESHOLDS, -1.0)
    raw = smoothed_exceedance(np.ones((5, 5)), (0.5, 2.0), 0.0)
    np.testing.assert_array_equal(raw[0], 1.0)
    np.testing.assert_array_equal(raw[1], 0.0)
