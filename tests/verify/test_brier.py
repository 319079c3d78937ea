"""Brier score decomposition: the exact identity, a hand-worked case, Murphy's special
case and the `scores` library's Brier score."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scores.probability import brier_score as scores_brier_score

from pqpf.verify.reliability import BRIER_COMPONENTS
from pqpf.verify.reliability import ReliabilityTable as BrierDecomposition


def _identity_gap(c):
    return (c["reliability"] - c["resolution"] + c["uncertainty"] + c["within_bin_variance"]
            - 2.0 * c["within_bin_covariance"] - c["brier_score"])


def test_hand_worked_two_bin_case():
    table = BrierDecomposition([0.0, 0.5, 1.0])
    table.update([0.2, 0.4, 0.6, 1.0], [0, 1, 1, 1])
    c = table.components()
    # bin 0: pbar 0.3, obar 0.5; bin 1: pbar 0.8, obar 1; obar 0.75, W = 4
    assert c["brier_score"] == pytest.approx(0.14, abs=1e-15)          # (0.04 + 0.36 + 0.16 + 0) / 4
    assert c["reliability"] == pytest.approx(0.04, abs=1e-15)          # (2 * 0.04 + 2 * 0.04) / 4
    assert c["resolution"] == pytest.approx(0.0625, abs=1e-15)         # (2 * 0.0625 + 2 * 0.0625) / 4
    assert c["uncertainty"] == pytest.approx(0.1875, abs=1e-15)
    assert c["within_bin_variance"] == pytest.approx(0.025, abs=1e-15)   # (0.02 + 0.08) / 4
    assert c["within_bin_covariance"] == pytest.approx(0.025, abs=1e-15)  # (0.4 - 0.3 + 1.6 - 1.6) / 4
    assert _identity_gap(c) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("edges", [None, np.linspace(0, 1, 21), [0.0, 0.05, 0.2, 0.5, 1.0]])
def test_components_sum_to_the_brier_score_to_1e_12(edges):
    rng = np.random.default_rng(1)
    n = 200_000
    p = np.concatenate([rng.beta(0.3, 2.0, n), [0.0, 1.0, 0.1, 0.5]])  # edges and both ends included
    o = rng.uniform(size=p.size) < np.clip(p * 1.3, 0, 1)
    w = rng.uniform(0.5, 1.5, size=p.size)
    table = BrierDecomposition(edges)
    for part in np.array_split(np.arange(p.size), 7):  # streamed in pieces
        table.update(p[part], o[part], w[part])
    c = table.components()
    direct = np.sum(w * (p - o) ** 2) / np.sum(w)
    assert c["brier_score"] == pytest.approx(direct, rel=1e-12)
    assert abs(_identity_gap(c)) < 1e-12
    # the binned (Murphy) partition alone misses the within-bin terms by a visible amount
    murphy = c["reliability"] - c["resolution"] + c["uncertainty"]
    assert abs(murphy - direct) > 1e-5


def test_forecasts_at_one_value_per_bin_have_no_within_bin_terms():
    rng = np.random.default_rng(2)
    p = rng.choice([0.05, 0.35, 0.75, 0.95], size=10_000)
    o = rng.uniform(size=p.size) < p
    table = BrierDecomposition()
    table.update(p, o)
    c = table.components()
    # zero up to the round-off of sum w p^2 - W pbar^2 over 10^4 points
    assert c["within_bin_variance"] == pytest.approx(0.0, abs=1e-13)
    assert c["within_bin_covariance"] == pytest.approx(0.0, abs=1e-13)
    assert c["reliability"] - c["resolution"] + c["uncertainty"] == pytest.approx(c["brier_score"], abs=1e-14)


def test_brier_score_matches_scores_library_weighted():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=(60, 70))
    o = (rng.uniform(size=p.shape) < p).astype(float)
    lat = np.linspace(25, 50, 60)
    w = np.cos(np.radians(lat))[:, None] * np.ones((1, 70))
    table = BrierDecomposition()
    table.update(p, o, w)
    fcst = xr.DataArray(p, dims=("lat", "lon"))
    obs = xr.DataArray(o, dims=("lat", "lon"))
    ref = float(scores_brier_score(fcst, obs, weights=xr.DataArray(w, dims=("lat", "lon"))))
    assert table.components()["brier_score"] == pytest.approx(ref, rel=1e-12)
    unweighted = BrierDecomposition()
    unweighted.update(p, o)
    assert unweighted.components()["brier_score"] == pytest.approx(float(scores_brier_score(fcst, obs)), rel=1e-12)


def test_murphy_terms_equal_the_formulas_from_the_plotted_curve():
    rng = np.random.default_rng(4)
    p = rng.uniform(size=5000)
    o = rng.uniform(size=5000) < p ** 2
    w = rng.uniform(size=5000)
    table = BrierDecomposition()
    table.update(p, o, w)
    mean_fcst, obs_freq, weight = table.curve()
    used = weight > 0
    total = weight.sum()
    obar = float(np.sum(w * o) / w.sum())
    c = table.decomposition()
    assert c["reliability"] == pytest.approx(np.sum(weight[used] * (mean_fcst[used] - obs_freq[used]) ** 2) / total,
                                             rel=1e-12)
    assert c["resolution"] == pytest.approx(np.sum(weight[used] * (obs_freq[used] - obar) ** 2) / total, rel=1e-12)
    assert c["uncertainty"] == pytest.approx(obar * (1 - obar), rel=1e-12)
    np.testing.assert_array_equal(table.count, np.bincount(np.minimum((p * 10).astype(int), 9), minlength=10))


def test_merge_and_saved_state_equal_one_table():
    rng = np.random.default_rng(5)
    p, o = rng.uniform(size=3000), rng.uniform(size=3000) < 0.3
    whole, a, b = BrierDecomposition(), BrierDecomposition(), BrierDecomposition()
    whole.update(p, o)
    a.update(p[:1000], o[:1000])
    b.update(p[1000:], o[1000:])
    merged = BrierDecomposition.from_arrays(a.merge(b).to_arrays())
    for key in BRIER_COMPONENTS:
        assert merged.components()[key] == pytest.approx(whole.components()[key], rel=1e-12)
    assert merged.as_dict()["count"] == whole.as_dict()["count"]
    with pytest.raises(ValueError, match="different bin edges"):
        whole.merge(BrierDecomposition([0, 0.5, 1]))


def test_refuses_non_binary_outcomes_bad_probabilities_and_empty_is_nan():
    table = BrierDecomposition()
    with pytest.raises(ValueError, match="0/1"):
        table.update([0.5], [0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        table.update([1.2], [1])
    with pytest.raises(ValueError, match="finite"):
        table.update([np.nan], [1])
    assert all(np.isnan(v) for v in table.components().values())
    assert table.as_dict()["brier_score"] is None
