"""Ensemble scores: fair CRPS, the U-Net's continuous CRPS, spread-skill, rank histogram, probabilities."""

from __future__ import annotations

import math

import numpy as np
import properscoring as ps
import pytest
from scipy import integrate

from pqpf.verify.ensemble import (
    EnsembleCRPS,
    RankHistogram,
    SpreadSkill,
    crps_binned_continuous,
    fair_crps,
    member_exceedance_probs,
)

EDGES = [0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 3.5, 5.0, 7.5, 10.0, 15.0, 25.0, 40.0]


def _sample_binned(probs, n_draws, rng, dry_bin="point"):
    """Draws (n_draws, n) from per-point binned distributions probs (K, n)."""
    edges = np.asarray(EDGES)
    cdf = np.cumsum(probs, axis=0)
    u = rng.random((n_draws, probs.shape[1]))
    k = np.minimum((u[:, None, :] > cdf[None]).sum(axis=1), edges.size - 1)
    upper = np.append(edges[1:], edges[-1])
    y = edges[k] + rng.random(k.shape) * (upper[k] - edges[k])
    tail = k == edges.size - 1
    y[tail] = edges[-1] + rng.exponential(edges[-1] - edges[-2], tail.sum())
    if dry_bin == "point":
        y[k == 0] = 0.0
    return y


def test_fair_crps_by_hand_and_against_properscoring_with_the_fair_correction():
    # members (0, 2), obs 1: mean |x - y| = 1, sum_ij |x_i - x_j| = 4
    assert fair_crps([[0.0], [2.0]], [1.0])[0] == pytest.approx(1 - 4 / (2 * 2 * 1))
    assert ps.crps_ensemble(1.0, [0.0, 2.0]) == pytest.approx(1 - 4 / (2 * 2 * 2))
    rng = np.random.default_rng(0)
    members = np.where(rng.random((7, 500)) < 0.4, 0.0, rng.gamma(0.6, 3.0, (7, 500)))
    obs = np.where(rng.random(500) < 0.4, 0.0, rng.gamma(0.6, 3.0, 500))
    m = members.shape[0]
    pairs = np.abs(members[:, None] - members[None, :]).sum(axis=(0, 1))
    expected = ps.crps_ensemble(obs, members.T) - pairs / (2 * m * m * (m - 1))
    np.testing.assert_allclose(fair_crps(members, obs), expected, rtol=1e-12, atol=1e-12)


def test_fair_crps_is_unbiased_for_the_crps_of_the_members_distribution():
    # members and obs from N(0, 1): E CRPS = 1/sqrt(pi); the plain ensemble CRPS is 1/(M sqrt(pi)) higher
    rng = np.random.default_rng(1)
    m, n = 3, 200_000
    members, obs = rng.standard_normal((m, n)), rng.standard_normal(n)
    fair = fair_crps(members, obs)
    se = fair.std() / math.sqrt(n)
    assert abs(fair.mean() - 1 / math.sqrt(math.pi)) < 4 * se
    plain = ps.crps_ensemble(obs, members.T)
    assert abs(plain.mean() - fair.mean() - 1 / (m * math.sqrt(math.pi))) < 0.004


def _cdf(x: float, p: np.ndarray, dry_bin: str) -> float:
    """The U-Net's continuous CDF at x >= 0 (tail scale 15 mm, the default for EDGES)."""
    e = np.asarray(EDGES)
    if x >= e[-1]:
        return 1 - p[-1] * math.exp(-(x - e[-1]) / 15.0)
    k = np.searchsorted(e, x, side="right") - 1
    if k == 0 and dry_bin == "point":
        return p[0]
    return p[:k].sum() + p[k] * (x - e[k]) / (e[k + 1] - e[k])


@pytest.mark.parametrize("dry_bin", ["point", "uniform"])
def test_unet_continuous_crps_equals_the_integral_of_its_cdf(dry_bin):
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.full(len(EDGES), 0.6), size=5).T
    obs = np.array([0.0, 0.07, 1.2, 33.0, 71.5])
    got = crps_binned_continuous(probs, EDGES, obs, dry_bin=dry_bin)
    for j, y in enumerate(obs):
        f = lambda x, j=j, y=y: (_cdf(x, probs[:, j], dry_bin) - (x >= y)) ** 2  # noqa: E731
        breaks = sorted({*EDGES, y})
        total = sum(integrate.quad(f, a, b, epsabs=1e-13)[0] for a, b in zip(breaks[:-1], breaks[1:], strict=True))
        total += integrate.quad(f, breaks[-1], math.inf, epsabs=1e-13)[0]
        assert got[j] == pytest.approx(total, rel=1e-8, abs=1e-10)


def test_unet_continuous_crps_by_hand_for_a_certain_dry_forecast():
    probs = np.zeros((len(EDGES), 2))
    probs[0] = 1.0
    np.testing.assert_allclose(crps_binned_continuous(probs, EDGES, [0.0, 1.0]), [0.0, 1.0], atol=1e-15)
    # uniform on [0, 0.1) against 0: int_0^0.1 (x / 0.1 - 1)^2 dx = 0.1 / 3
    assert crps_binned_continuous(probs, EDGES, [0.0, 0.0], dry_bin="uniform")[0] == pytest.approx(0.1 / 3)


def test_unet_continuous_crps_matches_the_fair_crps_of_a_large_sample():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(len(EDGES), 0.8), size=3).T
    obs = np.array([0.0, 2.0, 18.0])
    draws = _sample_binned(probs, 100_000, rng)
    np.testing.assert_allclose(crps_binned_continuous(probs, EDGES, obs), fair_crps(draws, obs), rtol=0.01)


def test_ensemble_drawn_from_the_unet_scores_its_crps_like_for_like():
    # members and observation drawn from the U-Net's own distribution: E[fair CRPS] = U-Net CRPS
    rng = np.random.default_rng(4)
    n = 30_000
    probs = rng.dirichlet(np.full(len(EDGES), 0.5), size=n).T
    members, obs = _sample_binned(probs, 4, rng), _sample_binned(probs, 1, rng)[0]
    acc = EnsembleCRPS(EDGES)
    acc.update(members, obs, probs)
    res = acc.result()
    diff = fair_crps(members, obs) - crps_binned_continuous(probs, EDGES, obs)
    assert abs(res["crps_fair"] - res["crps_unet"]) < 4 * diff.std() / math.sqrt(n)
    assert res["crps_plain"] > res["crps_fair"] and abs(res["crpss_fair_vs_unet"]) < 0.02


def test_crps_accumulator_masks_merges_and_round_trips():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(len(EDGES)), size=(6, 5)).transpose(2, 0, 1)
    members, obs = rng.gamma(0.5, 2.0, (3, 6, 5)), rng.gamma(0.5, 2.0, (6, 5))
    obs[0, 0] = np.nan
    mask = np.ones((6, 5), bool)
    mask[1] = False
    weight = np.linspace(0.5, 1.0, 30).reshape(6, 5)
    whole = EnsembleCRPS(EDGES)
    whole.update(members, obs, probs, mask=mask, weight=weight)
    halves = [EnsembleCRPS(EDGES), EnsembleCRPS(EDGES)]
    for acc, rows in zip(halves, (slice(0, 3), slice(3, 6)), strict=True):
        acc.update(members[:, rows], obs[rows], probs[:, rows], mask=mask[rows], weight=weight[rows])
    merged = halves[0].merge(halves[1])
    np.testing.assert_allclose(merged.sums, whole.sums, rtol=1e-12)
    assert whole.result()["n"] == 30 - 5 - 1
    ok = mask & np.isfinite(obs)
    w = weight[ok]
    expected = fair_crps(members[:, ok], obs[ok]) @ w / w.sum()
    assert whole.result()["crps_fair"] == pytest.approx(expected, rel=1e-12)
    copy = EnsembleCRPS(EDGES).load_arrays(whole.to_arrays())
    assert copy.result() == whole.result()
    with pytest.raises(ValueError, match="cannot merge"):
        whole.merge(EnsembleCRPS())
    with pytest.raises(ValueError, match="prob_bins must be given exactly when"):
        EnsembleCRPS().update(members, obs, probs)


def test_spread_skill_ratio_is_one_when_calibrated_and_below_one_when_under_dispersive():
    rng = np.random.default_rng(6)
    m, n = 5, 100_000
    centre = rng.gamma(1.0, 2.0, n)  # the predictable part varies from point to point
    obs = centre + rng.standard_normal(n)
    calibrated, narrow = SpreadSkill(), SpreadSkill()
    calibrated.update(centre + rng.standard_normal((m, n)), obs)
    narrow.update(centre + 0.5 * rng.standard_normal((m, n)), obs)
    # calibrated: E[var] = 1, E[(mean - y)^2] = 1 + 1/M -> ratio 1; standard error ~ 0.004
    assert calibrated.result()["ratio"] == pytest.approx(1.0, abs=0.015)
    # member sd 0.5: sqrt(6/5 * 0.25) / sqrt(1 + 0.25/5) = 0.5345
    assert narrow.result()["ratio"] == pytest.approx(0.5345, abs=0.01)


def test_rank_histogram_is_flat_for_exchangeable_members_with_many_dry_ties():
    rng = np.random.default_rng(7)
    m, n = 6, 70_000
    draws = np.where(rng.random((m + 1, n)) < 0.6, 0.0, rng.gamma(0.5, 2.0, (m + 1, n)))  # 60 % dry
    hist = RankHistogram(m, seed=1)
    hist.update(draws[:m].reshape(m, 700, 100), draws[m].reshape(700, 100))
    freq = np.array(hist.result()["frequency"])
    se = math.sqrt(1 / (m + 1) * (1 - 1 / (m + 1)) / n)
    assert np.all(np.abs(freq - 1 / (m + 1)) < 4 * se), freq
    # without tie-breaking a dry observation would count as rank 0: 60 % in the first bin
    assert freq[0] < 0.16


def test_rank_histogram_counts_by_hand_and_rejects_a_different_member_count():
    hist = RankHistogram(3, seed=0)
    hist.update(np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]]), np.array([2.5, 9.0]), weight=np.array([1.0, 2.0]))
    assert hist.result()["counts"] == [0.0, 0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="expected 3 members, got 2"):
        hist.update(np.zeros((2, 4)), np.zeros(4))


def test_member_exceedance_probabilities_by_hand():
    members = np.array([[0.0, np.nan], [0.99995, 1.0], [2.5, 1.0], [5.0, 1.0]])
    probs = member_exceedance_probs(members, [1.0, 2.5])
    np.testing.assert_array_equal(probs[:, 0], [0.75, 0.5])
    assert np.isnan(probs[:, 1]).all() and probs.dtype == np.float32
