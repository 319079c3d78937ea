import json
import math

import numpy as np
import properscoring
import pytest

from pqpf.quality import good_quality_mask
from pqpf.verify.reliability import ReliabilityTable
from pqpf.verify.report import events_ratio, format_score_table
from pqpf.verify.scores import brier_score, brier_skill_score, crps_bins, crps_deterministic
from pqpf.verify.verifier import CSV_COLUMNS, Verifier

THRESHOLDS = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)
EDGES = (0.0, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0)


def _random_case(rng, n, nan_share=0.0):
    """A random case: gamma-distributed obs and forecasts, probabilities in [0, 1]."""
    t = len(THRESHOLDS)
    obs = np.round(rng.gamma(0.4, 4.0, n), 3)  # 0.001 mm steps: none within AMOUNT_ATOL_MM below an edge
    graf = np.round(rng.gamma(0.4, 4.0, n), 3)
    p_model = np.sort(rng.uniform(size=(t, n)), axis=0)[::-1].astype(np.float32)
    p_raw = (graf[None, :] >= np.array(THRESHOLDS)[:, None]).astype(np.float32)
    p_ref = rng.uniform(size=(t, n)).astype(np.float32)
    bins = rng.dirichlet(np.full(len(EDGES), 0.5), n).T.astype(np.float32)
    w = rng.uniform(0.2, 1.0, n)
    if nan_share:
        obs[rng.uniform(size=n) < nan_share] = np.nan
    return p_model, p_raw, p_ref, obs, w, bins, graf


# ---- Brier ------------------------------------------------------------------------------


def test_brier_score_matches_properscoring_weighted_mean():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=5000)
    o = rng.uniform(size=5000) < 0.3
    w = rng.uniform(0, 2, size=5000)
    ref = properscoring.brier_score(o.astype(float), p)
    assert brier_score(p, o) == pytest.approx(ref.mean(), rel=1e-12)
    assert brier_score(p, o, w) == pytest.approx(np.sum(w * ref) / np.sum(w), rel=1e-12)


def test_brier_score_refuses_nan_and_out_of_range():
    with pytest.raises(ValueError, match="NaN"):
        brier_score(np.array([0.5, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score(np.array([0.5, 1.2]), np.array([0, 1]))


def test_brier_skill_of_perfect_is_one_and_of_reference_zero():
    assert brier_skill_score(0.0, 0.2) == 1.0
    assert brier_skill_score(0.2, 0.2) == 0.0
    assert math.isnan(brier_skill_score(0.1, 0.0))


# ---- CRPS ----------------------------------------------------------------------------------


def test_crps_bins_equals_properscoring_weighted_ensemble_at_lower_edges():
    rng = np.random.default_rng(2)
    n = 4000
    edges = np.array(EDGES)
    probs = rng.dirichlet(np.full(edges.size, 0.7), n).T
    obs = np.round(rng.gamma(0.5, 5.0, n), 3)  # 0.001 mm steps: none within AMOUNT_ATOL_MM below an edge
    obs[:50] = 0.0
    obs[50:60] = edges[rng.integers(0, edges.size, 10)]  # exactly on an edge
    obs[60:70] = 80.0  # in the open last bin
    ours = crps_bins(probs, edges, obs)
    k_obs = np.searchsorted(edges, obs, side="right") - 1
    ens = np.broadcast_to(edges, (n, edges.size))
    ref = properscoring.crps_ensemble(edges[k_obs], ens, weights=probs.T)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


def test_crps_bins_of_sure_forecast_in_obs_bin_is_zero_and_onehot_is_edge_distance():
    edges = np.array(EDGES)
    onehot = np.zeros((edges.size, 3))
    onehot[4, :] = 1.0  # all mass in [1, 2.5)
    crps = crps_bins(onehot, edges, np.array([1.7, 0.0, 30.0]))
    np.testing.assert_allclose(crps, [0.0, 1.0, 24.0], atol=1e-12)


def test_crps_deterministic_is_absolute_error_and_matches_properscoring():
    rng = np.random.default_rng(3)
    f, y = rng.gamma(0.5, 4, 100), rng.gamma(0.5, 4, 100)
    np.testing.assert_allclose(crps_deterministic(f, y), properscoring.crps_ensemble(y, f[:, None]),
                               rtol=1e-12)


def test_crps_bins_validates_shapes_and_edges():
    with pytest.raises(ValueError, match="strictly increasing"):
        crps_bins(np.ones((2, 1)) / 2, [0.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="shape"):
        crps_bins(np.ones((3, 1)) / 3, [0.0, 1.0], [1.0])


# ---- weights and masks -------------------------------------------------------------------


def test_weighting_equals_explicit_weighted_mean():
    rng = np.random.default_rng(4)
    lat = rng.uniform(20, 55, 3000)
    p = rng.uniform(size=(1, 3000))
    obs = rng.gamma(0.5, 4, 3000)
    w = np.cos(np.radians(lat))
    v = Verifier(thresholds_mm=(1.0,))
    v.update(p, p, p, obs, w)
    o = (obs >= 1.0).astype(float)
    expected = np.sum(w * (p[0] - o) ** 2) / np.sum(w)
    assert v.result()["per_threshold"][0]["bs_model"] == pytest.approx(expected, rel=1e-6)


def test_good_quality_mask_excludes_nan_obs_and_poor_quality():
    obs = np.array([1.0, np.nan, 2.0, 0.0, 3.0])
    quality = np.array([0.9, 0.9, 0.4, np.nan, 0.5])
    vf = np.array([1.0, 1.0, 1.0, 1.0, 0.2])
    assert good_quality_mask(obs, quality, 0.5).tolist() == [True, False, False, False, True]
    assert good_quality_mask(obs, quality, 0.5, vf, 0.5).tolist() == [True, False, False, False, False]


# ---- reliability ---------------------------------------------------------------------------


def test_reliability_of_calibrated_forecast_lies_on_diagonal():
    rng = np.random.default_rng(5)
    table = ReliabilityTable()
    for _ in range(10):
        p = rng.uniform(size=100_000)
        table.update(p, rng.uniform(size=p.size) < p)
    mean_fcst, obs_freq, weight = table.curve()
    assert weight.sum() == 1_000_000
    np.testing.assert_allclose(obs_freq, mean_fcst, atol=0.005)
    np.testing.assert_allclose(mean_fcst, np.arange(10) / 10 + 0.05, atol=0.002)
    assert table.decomposition()["reliability"] < 1e-5


def test_reliability_table_bins_edges_and_empty_bins():
    table = ReliabilityTable(np.array([0.0, 0.5, 1.0]))
    table.update(np.array([0.0, 0.5, 1.0, 1.0]), np.array([0, 1, 1, 0]), np.array([1, 2, 1, 1.0]))
    mean_fcst, obs_freq, weight = table.curve()
    np.testing.assert_allclose(weight, [1.0, 4.0])
    np.testing.assert_allclose(mean_fcst, [0.0, 3.0 / 4.0])
    np.testing.assert_allclose(obs_freq, [0.0, 3.0 / 4.0])
    empty = ReliabilityTable()
    assert np.isnan(empty.curve()[0]).all()
    assert empty.as_dict()["mean_forecast"] == [None] * 10


# ---- the accumulator -------------------------------------------------------------------------


def test_verifier_scores_equal_direct_computation():
    rng = np.random.default_rng(6)
    p_model, p_raw, p_ref, obs, w, bins, graf = _random_case(rng, 20_000, nan_share=0.1)
    v = Verifier(THRESHOLDS, EDGES)
    used = v.update(p_model, p_raw, p_ref, obs, w, bins, graf)
    ok = np.isfinite(obs)
    assert used == ok.sum()
    res = v.result()
    assert res["n_excluded_missing"] == (~ok).sum()
    for k, t in enumerate(THRESHOLDS):
        row = res["per_threshold"][k]
        o = obs[ok] >= t
        obar = np.sum(w[ok] * o) / np.sum(w[ok])
        assert row["n"] == ok.sum() and row["weight"] == pytest.approx(w[ok].sum(), rel=1e-12)
        assert row["base_rate"] == pytest.approx(obar, rel=1e-12)
        assert row["bs_model"] == pytest.approx(brier_score(p_model[k, ok], o, w[ok]), rel=1e-9)
        assert row["bs_ref"] == pytest.approx(brier_score(p_ref[k, ok], o, w[ok]), rel=1e-9)
        assert row["bs_raw"] == pytest.approx(brier_score(p_raw[k, ok], o, w[ok]), rel=1e-9)
        assert row["bs_clim"] == pytest.approx(brier_score(np.full(o.size, obar), o, w[ok]), rel=1e-9)
        assert row["bss_vs_ref"] == pytest.approx(1 - row["bs_model"] / row["bs_ref"], rel=1e-12)
        # forecast over observed events: the weighted sum of P(>= t) against the weighted count
        assert events_ratio(row["reliability_curve_model"]) == pytest.approx(
            np.sum(w[ok] * p_model[k, ok]) / np.sum(w[ok] * o), rel=1e-9)
        assert f"{events_ratio(row['reliability_curve_model']):6.2f}" in format_score_table(res).splitlines()[2 + k]
    assert events_ratio({"weight": [5.0], "mean_forecast": [0.1], "observed_frequency": [0.0]}) is None
    crps = res["crps"]
    k_obs = np.searchsorted(EDGES, obs[ok], side="right") - 1
    ens = np.broadcast_to(np.array(EDGES), (ok.sum(), len(EDGES)))
    ref = properscoring.crps_ensemble(np.array(EDGES)[k_obs], ens, weights=bins[:, ok].T.astype(float))
    assert crps["crps_model"] == pytest.approx(np.sum(w[ok] * ref) / w[ok].sum(), rel=1e-6)
    assert crps["mae_raw"] == pytest.approx(np.sum(w[ok] * np.abs(graf[ok] - obs[ok])) / w[ok].sum(),
                                            rel=1e-9)
    k_graf = np.searchsorted(EDGES, graf[ok], side="right") - 1
    binned = np.abs(np.array(EDGES)[k_graf] - np.array(EDGES)[k_obs])
    assert crps["crps_raw_binned"] == pytest.approx(np.sum(w[ok] * binned) / w[ok].sum(), rel=1e-9)
    json.dumps(res, allow_nan=False)  # JSON-ready: no NaN, only plain types


def test_streaming_in_many_chunks_equals_all_at_once():
    rng = np.random.default_rng(7)
    case = _random_case(rng, 30_000, nan_share=0.05)
    whole = Verifier(THRESHOLDS, EDGES)
    whole.update(*case)
    chunked = Verifier(THRESHOLDS, EDGES)
    for part in np.array_split(np.arange(30_000), 97):
        chunked.update(*(a[..., part] for a in case))
    a, b = whole.to_csv_rows(), chunked.to_csv_rows()
    for ra, rb in zip(a, b):
        for key in CSV_COLUMNS:
            if isinstance(ra[key], float):
                assert rb[key] == pytest.approx(ra[key], rel=1e-9, abs=1e-12), key
            else:
                assert ra[key] == rb[key], key
    for ta, tb in zip(whole.rel_model + whole.rel_ref, chunked.rel_model + chunked.rel_ref):
        np.testing.assert_array_equal(ta.count, tb.count)
        np.testing.assert_allclose(ta.sum_wp, tb.sum_wp, rtol=1e-9)


def test_merge_equals_single_accumulation_and_survives_array_roundtrip():
    rng = np.random.default_rng(8)
    cases = [_random_case(rng, 5000) for _ in range(4)]
    single = Verifier(THRESHOLDS, EDGES)
    for case in cases:
        single.update(*case)
    workers = [Verifier(THRESHOLDS, EDGES) for _ in range(2)]
    for i, case in enumerate(cases):
        workers[i % 2].update(*case)
    restored = Verifier.from_arrays(dict(np.load(_savez(workers[1]))))
    merged = workers[0].merge(restored)
    assert merged.result()["n_updates"] == 4
    ra, rb = single.result(), merged.result()
    for ta, tb in zip(ra["per_threshold"], rb["per_threshold"]):
        for key in ("n", "weight", "bs_model", "bs_ref", "bs_raw", "bss_vs_clim"):
            assert tb[key] == pytest.approx(ta[key], rel=1e-12)
        assert tb["reliability_curve_model"]["count"] == ta["reliability_curve_model"]["count"]
    assert rb["crps"]["crps_model"] == pytest.approx(ra["crps"]["crps_model"], rel=1e-12)
    with pytest.raises(ValueError, match="thresholds"):
        single.merge(Verifier((1.0,)))


def _savez(v):
    import io

    buf = io.BytesIO()
    np.savez(buf, **v.to_arrays())
    buf.seek(0)
    return buf


def test_perfect_forecast_has_skill_one_and_climatology_zero():
    rng = np.random.default_rng(9)
    obs = np.round(rng.gamma(0.5, 4, 10_000), 3)  # 0.001 mm steps: none within AMOUNT_ATOL_MM below an edge
    w = np.ones_like(obs)
    events = (obs[None, :] >= np.array(THRESHOLDS)[:, None]).astype(np.float64)
    clim = np.repeat(events.mean(axis=1, keepdims=True), obs.size, axis=1)
    v = Verifier(THRESHOLDS)
    v.update(events, clim, clim, obs, w)
    for row in v.result()["per_threshold"]:
        assert row["bs_model"] == 0.0 and row["bss_vs_clim"] == 1.0 and row["bss_vs_ref"] == 1.0
        assert row["bss_ref_vs_clim"] == pytest.approx(0.0, abs=1e-12)
        assert row["bs_ref"] == pytest.approx(row["bs_clim"], rel=1e-12)


def test_state_size_is_constant_over_1000_updates():
    rng = np.random.default_rng(10)
    v = Verifier(THRESHOLDS, EDGES)
    case = _random_case(rng, 200)
    v.update(*case)
    size = v.state_nbytes()
    for _ in range(999):
        v.update(*case)
    assert v.state_nbytes() == size < 20_000
    assert v.result()["per_threshold"][0]["n"] == 1000 * 200


def test_verifier_leaves_out_zero_weight_and_missing_forecast_points():
    obs = np.array([[0.0, 2.0], [5.0, np.nan]])  # (ny, nx) points
    w = np.array([[1.0, 0.0], [1.0, 1.0]])
    p = np.full((1, 2, 2), 0.5)
    p_ref = p.copy()
    p_ref[0, 1, 0] = np.nan
    v = Verifier((1.0,))
    assert v.update(p, p, p_ref, obs, w) == 1
    res = v.result()
    assert res["per_threshold"][0]["n"] == 1 and res["n_excluded_missing"] == 2
    assert res["per_threshold"][0]["bs_model"] == pytest.approx(0.25)


def test_verifier_validates_inputs():
    v = Verifier((1.0, 5.0), (0.0, 1.0, 5.0))
    p = np.full((2, 3), 0.5)
    obs = np.zeros(3)
    with pytest.raises(ValueError, match="prob_model must have shape"):
        v.update(p[:1], p, p, obs, np.ones(3))
    with pytest.raises(ValueError, match=r"prob_ref must lie in \[0, 1\]"):
        v.update(p, p, p * 3, obs, np.ones(3))
    with pytest.raises(ValueError, match="sum to 1"):
        v.update(p, p, p, obs, np.ones(3), np.full((3, 3), 0.5), obs)
    with pytest.raises(ValueError, match="both"):
        v.update(p, p, p, obs, np.ones(3), np.full((3, 3), 1 / 3))


def test_csv_rows_have_all_columns_and_json_has_no_nan_for_empty_accumulator():
    v = Verifier(THRESHOLDS, EDGES)
    rows = v.to_csv_rows()
    assert len(rows) == len(THRESHOLDS) and list(rows[0]) == list(CSV_COLUMNS)
    assert rows[0]["bs_model"] is None and rows[0]["n"] == 0
    json.dumps(v.result(), allow_nan=False)


def test_failed_update_leaves_the_accumulator_unchanged(monkeypatch):
    import pqpf.verify.verifier as verification

    monkeypatch.setattr(verification, "_CHUNK", 1000)  # several internal chunks
    rng = np.random.default_rng(11)
    p_model, p_raw, p_ref, obs, w, bins, graf = _random_case(rng, 5000)
    bins[:, -1] = 0.5  # the last point's bin probabilities sum to 5: refused
    v = Verifier(THRESHOLDS, EDGES)
    with pytest.raises(ValueError, match="sum to 1"):
        v.update(p_model, p_raw, p_ref, obs, w, bins, graf)
    assert not v.sums.any() and not v.crps_sums.any() and not v.counters.any()
    assert all(t.count.sum() == 0 for t in v.rel_model + v.rel_ref)
