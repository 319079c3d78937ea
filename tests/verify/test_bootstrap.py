"""Block bootstrap by init date: coverage, 1/sqrt(n) scaling, zero width for identical
dates, reproducibility, ratio-of-sums estimates and the Verifier's sums layout."""

from __future__ import annotations

import numpy as np
import pytest

from pqpf.verify.bootstrap import (
    ClimatologySkill,
    DailySums,
    FunctionSkill,
    Interval,
    RatioSkill,
    bootstrap_skills,
    brier_crps_day_sums,
    brier_crps_names,
    brier_crps_skills,
    reliability_day_sums,
    reliability_names,
    reliability_skills,
    resample_counts,
)
from pqpf.verify.report import format_interval

SKILL = RatioSkill("skill", "score", "ref")


def _iid_days(rng, n_days, points=200):
    """Per-date sums of a forecast whose squared error is 0.8 of the reference's on average."""
    daily = DailySums(["score", "ref"])
    for d in range(n_days):
        ref = rng.gamma(2.0, 1.0, points)
        score = ref * rng.uniform(0.5, 1.1, points)  # mean ratio 0.8
        daily.add(f"2025{d:04d}", {"score": score.sum(), "ref": ref.sum()})
    return daily


def test_estimate_is_the_ratio_of_summed_scores_not_the_mean_of_daily_ratios():
    daily = DailySums(["score", "ref"])
    daily.add("20250101", {"score": 1.0, "ref": 2.0})   # daily skill 0.5
    daily.add("20250102", {"score": 9.0, "ref": 10.0})  # daily skill 0.1
    iv = bootstrap_skills(daily, [SKILL])["skill"]
    assert iv.estimate == pytest.approx(1 - 10 / 12)
    assert iv.estimate != pytest.approx(0.3)


def test_interval_covers_the_estimate():
    iv = bootstrap_skills(_iid_days(np.random.default_rng(1), 40), [SKILL])["skill"]
    assert iv.low < iv.estimate < iv.high
    assert iv.n_days == 40 and iv.n_valid == 1000 and iv.level == 0.9


def test_interval_width_scales_as_one_over_sqrt_of_the_number_of_dates():
    rng = np.random.default_rng(2)
    widths = {}
    for n in (25, 400):
        ivs = [bootstrap_skills(_iid_days(rng, n), [SKILL], seed=s)["skill"] for s in range(5)]
        widths[n] = np.mean([iv.high - iv.low for iv in ivs])
    assert widths[25] / widths[400] == pytest.approx(4.0, rel=0.2)


def test_identical_dates_give_a_zero_width_interval():
    daily = DailySums(["score", "ref", "weight", "sum_wo"])
    for d in range(30):
        daily.add(f"202501{d:02d}", {"score": 3.0, "ref": 4.0, "weight": 100.0, "sum_wo": 20.0})
    clim = ClimatologySkill("clim", "score", "weight", "sum_wo")
    for iv in bootstrap_skills(daily, [SKILL, clim], block_days=3).values():
        assert iv.high - iv.low == pytest.approx(0.0, abs=1e-12)
        assert iv.low == pytest.approx(iv.estimate, abs=1e-12)


def test_same_seed_reproduces_and_another_seed_differs():
    daily = _iid_days(np.random.default_rng(3), 30)
    a = bootstrap_skills(daily, [SKILL], seed=7)["skill"]
    b = bootstrap_skills(daily, [SKILL], seed=7)["skill"]
    c = bootstrap_skills(daily, [SKILL], seed=8)["skill"]
    assert (a.low, a.high) == (b.low, b.high)
    assert (a.low, a.high) != (c.low, c.high)


def test_ninety_percent_intervals_cover_the_true_skill_about_ninety_percent_of_the_time():
    rng = np.random.default_rng(4)
    truth = 0.2  # E[score] / E[ref] = 0.8
    hits = sum(
        (lambda iv: iv.low <= truth <= iv.high)(bootstrap_skills(_iid_days(rng, 60, 50), [SKILL], seed=k,
                                                                 n_replicates=400)["skill"])
        for k in range(200))
    assert 0.82 <= hits / 200 <= 0.97


def test_resample_counts_keep_the_number_of_dates_and_blocks_are_consecutive():
    rng = np.random.default_rng(5)
    counts = resample_counts(10, 300, rng)
    assert counts.shape == (300, 10) and np.all(counts.sum(axis=1) == 10)
    blocks = resample_counts(12, 200, np.random.default_rng(6), block_days=4)
    assert np.all(blocks.sum(axis=1) == 12)
    # 3 circular blocks of 4 consecutive dates: every replicate's draws come in runs of 4
    idx = np.random.default_rng(6).integers(0, 12, size=(200, 3))
    expect = np.zeros((200, 12), dtype=np.int64)
    for r, starts in enumerate(idx):
        for s in starts:
            expect[r, (s + np.arange(4)) % 12] += 1
    np.testing.assert_array_equal(blocks, expect)
    assert resample_counts(3, 5, rng, block_days=10).sum(axis=1).tolist() == [3] * 5


def test_daily_sums_merge_add_and_saved_state():
    a, b = DailySums(["x", "y"]), DailySums(["x", "y"])
    a.add("20250102", {"x": 1.0})
    a.add("20250101", [2.0, 3.0])
    b.add("20250102", {"y": 5.0})
    merged = DailySums.from_arrays(a.merge(b).to_arrays())
    assert merged.days == ("20250101", "20250102")
    np.testing.assert_array_equal(merged.matrix(), [[2.0, 3.0], [1.0, 5.0]])
    assert merged.totals() == {"x": 3.0, "y": 8.0}
    with pytest.raises(ValueError, match="unknown sums"):
        a.add("20250103", {"z": 1.0})
    with pytest.raises(ValueError, match="different names"):
        a.merge(DailySums(["x"]))


def test_brier_crps_skills_reproduce_the_verifier_scores_from_its_sums():
    from pqpf.verify.verifier import Verifier
    thresholds = (1.0, 5.0)
    edges = (0.0, 0.5, 1.0, 5.0, 10.0)
    rng = np.random.default_rng(7)
    daily = DailySums(brier_crps_names(thresholds))
    total = Verifier(thresholds, bin_edges_mm=edges)
    for d in range(6):
        n = 500
        obs = np.round(rng.gamma(0.5, 4.0, n), 2)
        graf = np.round(rng.gamma(0.5, 4.0, n), 2)
        p_model = np.sort(rng.uniform(size=(2, n)), axis=0)[::-1]
        p_raw = np.stack([(graf >= t).astype(float) for t in thresholds])
        p_ref = rng.uniform(size=(2, n))
        bins = rng.dirichlet(np.ones(len(edges)), n).T
        one = Verifier(thresholds, bin_edges_mm=edges)  # a fresh accumulator per init
        one.update(p_model, p_raw, p_ref, obs, rng.uniform(0.5, 1.0, n), model_bin_probs=bins, graf_mm=graf)
        total.merge(one)
        daily.add(f"2025010{d // 2}", brier_crps_day_sums(one.sums, one.crps_sums, thresholds))
    assert len(daily.days) == 3
    intervals = bootstrap_skills(daily, brier_crps_skills(thresholds))
    result = total.result()
    for k, t in enumerate(thresholds):
        row = result["per_threshold"][k]
        assert intervals[f"bss_vs_ref@{t:g}mm"].estimate == pytest.approx(row["bss_vs_ref"], rel=1e-12)
        assert intervals[f"bss_vs_clim@{t:g}mm"].estimate == pytest.approx(row["bss_vs_clim"], rel=1e-12)
    crps = intervals["crpss_vs_raw_binned"].estimate
    assert crps == pytest.approx(result["crps"]["crpss_vs_raw_binned"], rel=1e-12)


def test_function_skill_nan_replicates_and_formatting():
    daily = DailySums(["var", "sq_err"])
    for d in range(20):
        daily.add(f"d{d:02d}", {"var": 1.0 + 0.1 * d, "sq_err": 1.2})
    ratio = FunctionSkill("spread_skill", lambda s: np.sqrt(s["var"] / s["sq_err"]))
    iv = bootstrap_skills(daily, [ratio])["spread_skill"]
    assert iv.estimate == pytest.approx(np.sqrt(np.mean(1.0 + 0.1 * np.arange(20)) / 1.2))
    zero_ref = DailySums(["score", "ref"])
    zero_ref.add("d0", {"score": 1.0, "ref": 0.0})
    undefined = bootstrap_skills(zero_ref, [SKILL])["skill"]
    assert np.isnan(undefined.estimate) and undefined.n_valid == 0
    assert format_interval(undefined) == "n/a"
    assert format_interval(Interval(0.176, 0.15, 0.201, 0.9, 10, 1000, 1000)) == "+0.176 [+0.150, +0.201]"
    assert Interval(0.1, float("nan"), 0.2, 0.9, 1, 10, 0).as_dict()["low"] is None


def _reliability_days(rng, bias, n_days=12, n=4000):
    """Per-date reliability tables of forecasts p ~ U(0, 1) verified with P(event) = p + bias."""
    from pqpf.verify.verifier import Verifier
    thresholds = (1.0,)
    daily = DailySums(reliability_names(thresholds, 10))
    total = Verifier(thresholds)
    for d in range(n_days):
        p = rng.uniform(size=(1, n))
        obs = np.where(rng.uniform(size=n) < np.clip(p[0] + bias, 0, 1), 2.0, 0.0)
        one = Verifier(thresholds)
        one.update(p, p, p, obs, np.ones(n))
        total.merge(one)
        daily.add(f"202501{d + 1:02d}", reliability_day_sums([t.sums for t in one.rel_model], thresholds))
    return total, bootstrap_skills(daily, reliability_skills(thresholds, 10), n_replicates=400, seed=3)


def test_reliability_intervals_reproduce_the_curve_and_flag_only_a_real_bias():
    rng = np.random.default_rng(11)
    total, intervals = _reliability_days(rng, 0.0)
    curve = total.result()["per_threshold"][0]["reliability_curve_model"]
    for b in range(10):
        iv, gap = intervals[f"observed_frequency@1mm@b{b}"], intervals[f"reliability_gap@1mm@b{b}"]
        assert iv.estimate == pytest.approx(curve["observed_frequency"][b], rel=1e-12)
        assert gap.estimate == pytest.approx(curve["observed_frequency"][b] - curve["mean_forecast"][b], abs=1e-12)
        assert iv.low < iv.estimate < iv.high and iv.high - iv.low < 0.1
    flagged = sum(intervals[f"reliability_gap@1mm@b{b}"].low > 0 or intervals[f"reliability_gap@1mm@b{b}"].high < 0
                  for b in range(10))
    assert flagged <= 3  # a reliable forecast: a 90 % interval misses 0 about one bin in ten
    _, biased = _reliability_days(rng, -0.08)
    assert all(biased[f"reliability_gap@1mm@b{b}"].high < 0 for b in range(1, 10))  # b0: p < 0.1 is clipped
