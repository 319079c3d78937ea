"""Fractions skill score: hand-worked cases, analytic limits, a brute-force reference and
the `scores` library's fss_2d under both of its edge conventions."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scores.spatial import fss_2d

from pqpf.verify.fss import FssAccumulator, useful_scale
from pqpf.verify.neighbourhood import neighbourhood_mean
from pqpf.verify.report import format_fss_table, fss_csv_rows


def _brute_fss(fcst_event, obs_event, valid, weight, width):
    """FSS by explicit loops: window means over valid points, weighted sums over valid points."""
    ny, nx = obs_event.shape
    h = width // 2
    num = den = 0.0
    for j in range(ny):
        for i in range(nx):
            if not valid[j, i] or weight[j, i] == 0:
                continue
            win = (slice(max(0, j - h), j + h + 1), slice(max(0, i - h), i + h + 1))
            v = valid[win]
            pf = fcst_event[win][v].mean()
            po = obs_event[win][v].mean()
            num += weight[j, i] * (pf - po) ** 2
            den += weight[j, i] * (pf ** 2 + po ** 2)
    return 1.0 - num / den


def _one(fcst_mm, obs_mm, widths, thresholds=(1.0,), **kw):
    acc = FssAccumulator({"f": "amount"}, thresholds_mm=thresholds, widths_px=widths)
    acc.update({"f": fcst_mm}, obs_mm, **kw)
    return acc


def _gamma_field(rng, shape):
    # amounts on a 0.01 mm lattice: none within the event tolerance below a threshold
    return np.round(rng.gamma(0.5, 4.0, shape), 2)


# ---- hand-worked 5 x 5 cases -------------------------------------------------------------------


def test_fss_of_a_one_point_displacement_on_5x5_is_zero_at_1px_and_16_29_at_3px():
    obs = np.zeros((5, 5))
    obs[2, 2] = 2.0
    fcst = np.zeros((5, 5))
    fcst[2, 3] = 2.0
    acc = _one(fcst, obs, (1, 3))
    # 3 px: Po = 1/9 on rows 1-3 x cols 1-3; Pf = 1/9 on cols 2-3 and 1/6 on col 4 (windows
    # clipped to 6 points by the edge). sum (Pf-Po)^2 = 3/81 + 3/36 = 13/108,
    # sum Pf^2 + Po^2 = 17/108 + 12/108 = 29/108.
    assert acc.fss()[0, 0] == pytest.approx([0.0, 16.0 / 29.0], abs=1e-12)
    assert acc.result()["base_rate"] == [pytest.approx(1 / 25)]


def test_fss_on_5x5_counts_only_valid_points_in_windows():
    obs = np.zeros((5, 5))
    obs[2, 2] = 2.0
    fcst = np.zeros((5, 5))
    fcst[2, 3] = 2.0
    valid = np.ones((5, 5), dtype=bool)
    valid[:, 1] = False  # a missing column left of the observed event
    acc = _one(fcst, obs, (1, 3, 5), valid=valid)
    # 3 px, rows 1-3 (other rows see no event): valid points per window N = 6 at col 2
    # (cols 2-3), 9 at col 3, 6 at col 4. Po = 1/6, 1/9 at cols 2, 3; Pf = 1/6, 1/9, 1/6
    # at cols 2, 3, 4. sum (Pf-Po)^2 = 3/36 = 9/108; sum Pf^2 + Po^2 = 3 (3/36 + 2/81) = 35/108.
    assert acc.fss()[0, 0, 1] == pytest.approx(26.0 / 35.0, abs=1e-12)
    for i, w in enumerate((1, 3, 5)):
        ref = _brute_fss(fcst >= 1, obs >= 1, valid, np.ones((5, 5)), w)
        assert acc.fss()[0, 0, i] == pytest.approx(ref, abs=1e-12)


def test_fss_matches_brute_force_with_masks_weights_and_probabilities():
    rng = np.random.default_rng(3)
    shape = (23, 31)
    obs, graf = _gamma_field(rng, shape), _gamma_field(rng, shape)
    prob = rng.uniform(size=(2, *shape))
    valid = rng.uniform(size=shape) > 0.25
    weight = rng.uniform(0.0, 2.0, size=shape)
    widths = (1, 3, 5, 9, 15)
    acc = FssAccumulator({"p": "prob", "g": "amount"}, thresholds_mm=(1.0, 5.0), widths_px=widths)
    acc.update({"p": prob, "g": graf}, obs, valid=valid, weight=weight)
    for k, t in enumerate((1.0, 5.0)):
        for i, w in enumerate(widths):
            ref_p = _brute_fss(prob[k], obs >= t, valid, weight, w)
            ref_g = _brute_fss((graf >= t).astype(float), obs >= t, valid, weight, w)
            assert acc.fss()[0, k, i] == pytest.approx(ref_p, abs=1e-12)
            assert acc.fss()[1, k, i] == pytest.approx(ref_g, abs=1e-12)


# ---- analytic truths ---------------------------------------------------------------------------


def test_perfect_forecast_scores_one_and_eventless_forecast_zero_at_every_width():
    rng = np.random.default_rng(4)
    obs = _gamma_field(rng, (30, 40))
    acc = FssAccumulator({"same": "amount", "dry": "amount"}, widths_px=(1, 5, 21))
    acc.update({"same": obs, "dry": np.zeros_like(obs)}, obs)
    fss = acc.fss()
    np.testing.assert_allclose(fss[0], 1.0, atol=1e-12)
    np.testing.assert_allclose(fss[1][np.isfinite(fss[1])], 0.0, atol=1e-12)


def test_window_covering_the_domain_gives_the_bias_formula():
    """When every window holds the whole domain, Pf = F and Po = f0 everywhere:
    FSS = 1 - (F - f0)^2 / (F^2 + f0^2)."""
    rng = np.random.default_rng(5)
    obs, fcst = _gamma_field(rng, (9, 9)), _gamma_field(rng, (9, 9))
    acc = _one(fcst, obs, (17,))
    big_f, f0 = np.mean(fcst >= 1), np.mean(obs >= 1)
    assert acc.fss()[0, 0, 0] == pytest.approx(1 - (big_f - f0) ** 2 / (big_f ** 2 + f0 ** 2), abs=1e-12)


def test_random_forecast_scores_the_base_rate_at_the_grid_scale():
    """Roberts and Lean (2008): FSS_random = f0 for independent events of frequency f0."""
    rng = np.random.default_rng(6)
    shape = (400, 500)
    obs = np.where(rng.uniform(size=shape) < 0.1, 2.0, 0.0)
    fcst = np.where(rng.uniform(size=shape) < 0.1, 2.0, 0.0)
    acc = _one(fcst, obs, (1,))
    assert acc.fss()[0, 0, 0] == pytest.approx(0.1, abs=0.005)


def test_probability_source_of_0_1_events_equals_amount_source():
    rng = np.random.default_rng(7)
    obs, graf = _gamma_field(rng, (40, 37)), _gamma_field(rng, (40, 37))
    thresholds = (1.0, 5.0)
    events = np.stack([(graf >= t).astype(np.float32) for t in thresholds])
    acc = FssAccumulator({"p": "prob", "g": "amount"}, thresholds_mm=thresholds, widths_px=(1, 7, 41))
    acc.update({"p": events, "g": graf}, obs)
    np.testing.assert_allclose(acc.fss()[0], acc.fss()[1], rtol=0, atol=1e-12)


# ---- the scores library ----------------------------------------------------------------------------


def _scores_fss(fcst, obs, t, w, zero_padding):
    da = {name: xr.DataArray(a, dims=("y", "x")) for name, a in (("f", fcst), ("o", obs))}
    return float(fss_2d(da["f"], da["o"], event_threshold=t, window_size=(w, w), spatial_dims=("y", "x"),
                        zero_padding=zero_padding, threshold_operator=np.greater_equal))


@pytest.mark.parametrize("width", [1, 3, 7, 13])
def test_fss_matches_scores_fss_2d_on_interior_windows(width):
    """fss_2d without padding scores only windows wholly inside the domain: the same
    points scored here (weight 0 within half a window of the edge) give the same FSS."""
    rng = np.random.default_rng(10 + width)
    ny, nx = 37, 45
    obs, graf = _gamma_field(rng, (ny, nx)), _gamma_field(rng, (ny, nx))
    h = width // 2
    interior = np.zeros((ny, nx))
    interior[h:ny - h, h:nx - h] = 1.0
    acc = _one(graf, obs, (width,), thresholds=(1.0, 5.0), weight=interior)
    for k, t in enumerate((1.0, 5.0)):
        assert acc.fss()[0, k, 0] == pytest.approx(_scores_fss(graf, obs, t, width, False), rel=1e-12)


@pytest.mark.parametrize("width", [3, 7, 13])
def test_fss_matches_scores_fss_2d_with_zero_padding(width):
    """fss_2d(zero_padding=True) treats outside as valid zeros and evaluates (ny+1) x (nx+1)
    windows (the last row and column centred one point past the domain). Framing the field
    with valid zeros and scoring exactly those centres reproduces it."""
    rng = np.random.default_rng(20 + width)
    ny, nx = 31, 42
    obs, graf = _gamma_field(rng, (ny, nx)), _gamma_field(rng, (ny, nx))
    pad = width // 2 + 1
    framed = [np.pad(a, pad) for a in (obs, graf)]
    centres = np.zeros(framed[0].shape)
    centres[pad:pad + ny + 1, pad:pad + nx + 1] = 1.0
    acc = _one(framed[1], framed[0], (width,), thresholds=(1.0, 5.0), weight=centres)
    for k, t in enumerate((1.0, 5.0)):
        assert acc.fss()[0, k, 0] == pytest.approx(_scores_fss(graf, obs, t, width, True), rel=1e-12)


def test_fss_pooled_over_fields_matches_scores_aggregation():
    """fss_2d over a time dimension pools the sums (ratio of sums), as the accumulator does."""
    rng = np.random.default_rng(30)
    obs, graf = _gamma_field(rng, (3, 25, 30)), _gamma_field(rng, (3, 25, 30))
    width, h = 5, 2
    interior = np.zeros((25, 30))
    interior[h:-h, h:-h] = 1.0
    acc = FssAccumulator({"g": "amount"}, thresholds_mm=(1.0,), widths_px=(width,))
    for o, g in zip(obs, graf, strict=True):
        acc.update({"g": g}, o, weight=interior)
    ref = fss_2d(xr.DataArray(graf, dims=("t", "y", "x")), xr.DataArray(obs, dims=("t", "y", "x")),
                 event_threshold=1.0, window_size=(width, width), spatial_dims=("y", "x"), reduce_dims=["t", "y", "x"],
                 threshold_operator=np.greater_equal)
    assert acc.fss()[0, 0, 0] == pytest.approx(float(ref), rel=1e-12)


# ---- streaming, members, missing data ---------------------------------------------------------------


def test_merge_and_saved_state_equal_one_accumulator_and_state_is_fixed_size():
    rng = np.random.default_rng(40)
    cases = [(_gamma_field(rng, (20, 24)), _gamma_field(rng, (20, 24)), rng.uniform(size=(3, 20, 24)))
             for _ in range(4)]
    sources = {"p": "prob", "g": "amount"}
    whole, part_a, part_b = (FssAccumulator(sources, grid_spacing_km=4.0) for _ in range(3))
    sizes = []
    for n, (obs, graf, prob) in enumerate(cases):
        whole.update({"p": prob, "g": graf}, obs)
        (part_a if n % 2 else part_b).update({"p": prob, "g": graf}, obs)
        sizes.append(whole.state_nbytes())
    merged = FssAccumulator.from_arrays(part_a.merge(part_b).to_arrays())
    np.testing.assert_allclose(merged.sums, whole.sums, rtol=1e-12)
    np.testing.assert_allclose(merged.fss(), whole.fss(), rtol=1e-12)
    assert merged.result()["n_points"] == whole.result()["n_points"] == 4 * 20 * 24
    assert len(set(sizes)) == 1
    with pytest.raises(ValueError, match="cannot merge"):
        whole.merge(FssAccumulator({"g": "amount"}))


def test_members_are_pooled_like_separate_fields():
    rng = np.random.default_rng(41)
    obs = _gamma_field(rng, (21, 26))
    members = _gamma_field(rng, (3, 21, 26))
    pooled = FssAccumulator({"m": "amount"}, widths_px=(1, 5, 9))
    pooled.update({"m": members}, obs)
    single = FssAccumulator({"m": "amount"}, widths_px=(1, 5, 9))
    for m in members:
        single.update({"m": m}, obs)
    np.testing.assert_allclose(pooled.sums, single.sums, rtol=1e-12)
    np.testing.assert_allclose(pooled.fss(), single.fss(), rtol=1e-12)


def test_nan_observation_or_forecast_acts_as_a_missing_point_for_every_source():
    rng = np.random.default_rng(42)
    obs, graf = _gamma_field(rng, (18, 22)), _gamma_field(rng, (18, 22))
    prob = rng.uniform(size=(3, 18, 22))
    valid = np.ones(obs.shape, dtype=bool)
    valid[4, 5] = valid[10, 11] = False
    masked = FssAccumulator({"p": "prob", "g": "amount"})
    masked.update({"p": prob, "g": graf}, obs, valid=valid)
    obs_nan, prob_nan = obs.copy(), prob.copy()
    obs_nan[4, 5] = np.nan
    prob_nan[1, 10, 11] = np.nan
    nan = FssAccumulator({"p": "prob", "g": "amount"})
    nan.update({"p": prob_nan, "g": graf}, obs_nan)
    np.testing.assert_allclose(nan.sums, masked.sums, rtol=1e-12)
    assert nan.result()["n_excluded_missing"] == 2
    assert nan.result()["n_points"] == obs.size - 2


def test_update_refuses_wrong_shapes_sources_and_probabilities():
    acc = FssAccumulator({"p": "prob", "g": "amount"}, thresholds_mm=(1.0, 5.0))
    obs = np.zeros((10, 12))
    with pytest.raises(ValueError, match="exactly the sources"):
        acc.update({"p": np.zeros((2, 10, 12))}, obs)
    with pytest.raises(ValueError, match="shape"):
        acc.update({"p": np.zeros((3, 10, 12)), "g": obs}, obs)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        acc.update({"p": np.full((2, 10, 12), 1.5), "g": obs}, obs)
    with pytest.raises(ValueError, match="odd"):
        FssAccumulator({"g": "amount"}, widths_px=(1, 4))
    with pytest.raises(ValueError, match="valid kinds"):
        FssAccumulator({"g": "ensemble"})


# ---- useful scale ----------------------------------------------------------------------------


def test_useful_scale_first_width_and_linear_interpolation():
    u = useful_scale([1, 3, 5, 7], [0.3, 0.5, 0.7, 0.9], base_rate=0.2)  # level 0.6
    assert u.fss_useful == pytest.approx(0.6)
    assert u.first_px == 5.0
    assert u.interp_px == pytest.approx(4.0)
    assert useful_scale([1, 3], [0.7, 0.8], 0.2).interp_px == 1.0
    none = useful_scale([1, 3], [0.1, 0.2], 0.2)
    assert none.first_px is None and none.interp_px is None


def test_result_reports_useful_width_in_km_and_the_table_shows_it():
    rng = np.random.default_rng(50)
    obs = _gamma_field(rng, (40, 40))
    shifted = np.roll(obs, 3, axis=1)  # displaced by 3 points: useless at 1 px, useful at large widths
    acc = FssAccumulator({"graf": "amount"}, thresholds_mm=(1.0,), widths_px=(1, 3, 5, 7, 9, 11, 21),
                         grid_spacing_km=4.0)
    acc.update({"graf": shifted}, obs)
    row = acc.result()["sources"]["graf"]["per_threshold"][0]
    assert row["useful_width_px"] is not None and row["useful_width_px"] > 1
    assert row["useful_width_km"] == pytest.approx(4.0 * row["useful_width_px"])
    assert row["useful_width_interp_px"] <= row["useful_width_px"]
    table = format_fss_table(acc.result())
    assert "graf" in table and f"{row['useful_width_px']:g} px = {row['useful_width_km']:g} km" in table
    rows = fss_csv_rows(acc.result())
    assert len(rows) == 7 and rows[0]["useful"] is False and rows[-1]["useful"] is True


def test_neighbourhood_mean_is_the_mean_over_valid_points():
    rng = np.random.default_rng(60)
    f = rng.uniform(size=(8, 9))
    valid = rng.uniform(size=(8, 9)) > 0.3
    mean = neighbourhood_mean(f, valid, 3)
    for j, i in [(0, 0), (3, 4), (7, 8)]:
        win = (slice(max(0, j - 1), j + 2), slice(max(0, i - 1), i + 2))
        expect = f[win][valid[win]].mean() if valid[win].any() else np.nan
        np.testing.assert_allclose(mean[j, i], expect, rtol=1e-12)


# ---- member pairs (dispersion FSS) -------------------------------------------------------------


def test_member_pairs_equal_every_ordered_pair_scored_on_its_own():
    """The O(M) pair sums equal M (M - 1) separate updates, a member in the observation's place."""
    rng = np.random.default_rng(43)
    widths, thresholds = (1, 3, 7, 11), (0.5, 2.0)
    pooled = FssAccumulator({"m": "amount", "g": "amount"}, thresholds, widths, pairs=("m",))
    brute = FssAccumulator({"m": "amount"}, thresholds, widths)
    halves = [FssAccumulator({"m": "amount", "g": "amount"}, thresholds, widths, pairs=("m",)) for _ in range(2)]
    shape = (40, 23)  # more rows than one block: blocks without any event near are skipped
    for n, m in enumerate((4, 3, 1, 2)):  # the member count may change between updates
        obs = _gamma_field(rng, shape)
        members = _gamma_field(rng, (m, *shape))
        if n % 2:  # sparse: events in one corner only, most members' blocks skipped
            members[:, 12:] = 0.0
            members[1:] = 0.0
        valid = rng.uniform(size=obs.shape) > 0.1
        weight = rng.uniform(0.5, 1.5, obs.shape)
        weight[rng.uniform(size=obs.shape) < 0.1] = 0.0  # valid but not scored
        pooled.update({"m": members, "g": obs[::-1]}, obs, valid=valid, weight=weight)
        halves[n % 2].update({"m": members, "g": obs[::-1]}, obs, valid=valid, weight=weight)
        for j in range(m):
            for i in range(m):
                if i != j:
                    brute.update({"m": members[i]}, members[j], valid=valid, weight=weight)
    np.testing.assert_allclose(pooled.pair_sums[0], brute.sums[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pooled.pair_weight[0], brute.field_weight[0], rtol=1e-12)
    np.testing.assert_allclose(pooled.pair_fss()[0], brute.fss()[0], rtol=1e-10)
    row = pooled.result()["pairs"]["m"]["per_threshold"][1]
    assert row["threshold_mm"] == 2.0
    np.testing.assert_allclose(row["fss"], brute.fss()[0, 1], rtol=1e-10)
    np.testing.assert_allclose(row["fbs"], brute.result()["sources"]["m"]["per_threshold"][1]["fbs"], rtol=1e-10)
    restored = FssAccumulator.from_arrays(pooled.to_arrays())  # the saved state keeps the pairs
    np.testing.assert_allclose(restored.pair_sums, pooled.pair_sums, rtol=0)
    merged = FssAccumulator.from_arrays(halves[0].to_arrays()).merge(halves[1])
    np.testing.assert_allclose(merged.pair_sums, pooled.pair_sums, rtol=1e-12)
    np.testing.assert_allclose(merged.pair_weight, pooled.pair_weight, rtol=1e-12)
    old = {k: v for k, v in pooled.to_arrays().items() if not k.startswith("pair_")}  # saved before pairs
    assert FssAccumulator.from_arrays(old).pair_names == ()
    with pytest.raises(ValueError, match="pairs must name distinct amount sources"):
        FssAccumulator({"p": "prob"}, pairs=("p",))


def _displaced_ensemble_fss(spread_factor, n_cases=80, n_members=6, seed=44):
    """A world whose forecast error is a pure displacement: truth = the forecast field moved by
    d ~ N(0, s^2) per axis. A perfect member is the forecast moved by an independent draw of the
    same d (the truth is one more such draw); ``spread_factor`` scales the members' draws."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    acc = FssAccumulator({"members": "amount", "graf": "amount"}, (1.0,), (1, 5, 11, 21), pairs=("members",))
    s = 4.0
    for _ in range(n_cases):
        latent = ndimage.gaussian_filter(rng.standard_normal((96, 96)), 3.0, mode="wrap")
        graf = np.where(latent > 0.6 * latent.std(), 3.0, 0.0)

        def moved(field, scale):
            dy, dx = np.rint(rng.normal(0.0, scale * s, 2)).astype(int)
            return np.roll(field, (dy, dx), axis=(0, 1))

        obs = moved(graf, 1.0)
        members = np.stack([moved(graf, spread_factor) for _ in range(n_members)])
        acc.update({"members": members, "graf": graf}, obs)
    fss = acc.fss()[:, 0]
    return fss[0], fss[1], acc.pair_fss()[0, 0]


def test_a_perfect_ensemble_scores_its_own_dispersion_and_below_the_forecast_it_is_drawn_around():
    """Dey et al. (2014): for members exchangeable with the truth, the FSS against the truth
    equals the members' FSS against one another (within Monte Carlo error), and a
    displacement-error world shows why a single member cannot beat the forecast: member and
    truth are two independent displacements apart (variance 2 s^2), the forecast one (s^2)."""
    members, graf, pairs = _displaced_ensemble_fss(1.0)  # at 1 / 5 / 11 / 21 px
    np.testing.assert_allclose(members, pairs, atol=0.02)  # measured: within 0.004
    assert np.all(graf - members > 0.015)  # measured: 0.086 / 0.092 / 0.067 / 0.027
    # an ensemble with a quarter of the displacement spread: members closer to one another
    # than to the truth (measured: by 0.28 / 0.25 / 0.13 / 0.045) ...
    members_u, _, pairs_u = _displaced_ensemble_fss(0.25)
    assert np.all(pairs_u - members_u > 0.03)
    # ... and each member closer to the truth than a perfect member: the members' FSS
    # rewards under-dispersion, which the member-pair FSS exposes
    assert np.all(members_u > members)
