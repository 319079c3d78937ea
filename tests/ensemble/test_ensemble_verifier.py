"""The ensemble verifier and its helpers: hand-worked values, Monte Carlo truths, and
calibrated vs under-dispersive synthetic ensembles."""

from __future__ import annotations

import json
import math

import numpy as np
import properscoring as ps
import pytest
from scipy.special import ndtr

from pqpf.io.jsonio import to_plain
from pqpf.verify.ensemble import RankHistogram
from pqpf.verify.ensemble_fields import (
    BinnedSpreadSkill,
    UNetDraws,
    fair_brier_penalty,
    spectral_band_ratio,
    unet_cdf_interval,
    unet_mean_amount,
    unet_median_amount,
    unet_variance_amount,
)
from pqpf.verify.ensemble_verifier import EnsembleCase, EnsembleSettings, EnsembleVerifier

SHAPE = (64, 80)


def test_unet_mean_amount_by_hand_and_against_draws_from_the_distribution(synth):
    bins = np.array([[0.5], [0.3], [0.2]])  # edges 0, 1, 5: dry, [1, 5) uniform, tail 5 + Exp(4)
    assert unet_mean_amount(bins, (0, 1, 5))[0] == pytest.approx(0.3 * 3 + 0.2 * 9)
    assert unet_mean_amount(bins, (0, 1, 5), dry_bin="uniform")[0] == pytest.approx(0.5 * 0.5 + 0.3 * 3 + 0.2 * 9)
    assert unet_mean_amount(bins, (0, 1, 5), tail_scale_mm=2.0)[0] == pytest.approx(0.3 * 3 + 0.2 * 7)
    rng = np.random.default_rng(0)
    b = synth.unet_bins(rng, (64, 64))[:, ::8, ::8]
    draws = synth.draw(b, rng.random((20000, 8, 8)))
    se = draws.std(axis=0) / math.sqrt(20000)
    assert np.all(np.abs(draws.mean(axis=0) - unet_mean_amount(b, synth.EDGES)) < 4.5 * se)


def test_unet_variance_and_cdf_by_hand_and_against_draws_from_the_distribution(synth):
    bins = np.array([[0.5], [0.3], [0.2]])  # edges 0, 1, 5: dry, [1, 5) uniform, tail 5 + Exp(4)
    second = 0.3 * (1 + 5 + 25) / 3 + 0.2 * ((5 + 4) ** 2 + 4**2)
    assert unet_variance_amount(bins, (0, 1, 5))[0] == pytest.approx(second - 2.7**2)
    y = np.array([0.0, 0.5, 3.0, 9.0])
    lo, hi = unet_cdf_interval(np.repeat(bins, 4, axis=1), (0, 1, 5), y)
    assert hi == pytest.approx([0.5, 0.5, 0.5 + 0.3 * 0.5, 1 - 0.2 * math.exp(-1.0)])
    assert lo == pytest.approx([0.0, 0.5, 0.65, 1 - 0.2 * math.exp(-1.0)])  # only a dry observation ties
    lo_u, hi_u = unet_cdf_interval(np.repeat(bins, 4, axis=1), (0, 1, 5), y, dry_bin="uniform")
    assert np.array_equal(lo_u, hi_u) and hi_u[:2] == pytest.approx([0.0, 0.25])
    rng = np.random.default_rng(1)
    b = synth.unet_bins(rng, (64, 64))[:, ::8, ::8]
    draws = synth.draw(b, rng.random((40000, 8, 8)))
    var = draws.var(axis=0)
    assert np.all(np.abs(var / unet_variance_amount(b, synth.EDGES) - 1) < 0.1)
    obs = draws[0]  # the CDF at a draw is its level: uniform PIT
    lo, hi = unet_cdf_interval(b.reshape(b.shape[0], -1), synth.EDGES, obs.ravel())
    assert np.all(lo <= hi) and np.all((hi - lo)[obs.ravel() > 0] == 0)


def test_unet_draws_score_what_random_members_drawn_from_the_unet_score(synth):
    """The expected rank histogram and spread of M random draws, against drawing them: with
    observations wetter than the U-Net (so the histogram slopes) and many dry ties."""
    rng = np.random.default_rng(2)
    bins = synth.unet_bins(rng, (32, 32)).reshape(len(synth.EDGES), -1)
    obs = synth.draw(bins[:, None, :], rng.random((1, bins.shape[1])) ** 0.6)[0]  # biased wet
    weight = 0.5 + rng.random(obs.size)
    acc = UNetDraws(8, synth.EDGES)
    acc.update(bins, obs, weight)
    r = acc.result()
    drawn, var = RankHistogram(8, seed=3), 0.0
    for _ in range(300):
        members = synth.draw(bins[:, None, :], rng.random((8, 1, bins.shape[1])))[:, 0]
        drawn.update(members, obs, weight=weight)
        var += members.var(axis=0, ddof=1) @ weight / weight.sum() / 300
    want = np.asarray(drawn.result()["frequency"])
    assert np.abs(np.asarray(r["rank_frequency"]) - want).max() < 0.004
    assert want[-1] * 9 > 1.3 and r["max_over_uniform"] == pytest.approx(9 * max(r["rank_frequency"]))
    assert r["spread"] == pytest.approx(math.sqrt(var), rel=0.02)
    mean = unet_mean_amount(bins, synth.EDGES).astype(np.float64)
    assert r["rmse"] == pytest.approx(math.sqrt((mean - obs) ** 2 @ weight / weight.sum()))
    assert r["ratio"] == pytest.approx(r["spread"] / r["rmse"])


def test_unet_median_amount_by_hand_with_the_dry_point_mass():
    bins = np.array([[0.6, 0.2, 0.5, np.nan], [0.3, 0.6, 0.0, 0.5], [0.1, 0.2, 0.5, 0.5]])
    med = unet_median_amount(bins, (0, 1, 5))
    np.testing.assert_allclose(med[:3], [0.0, 1.0 + 0.3 / 0.6 * 4, 5.0], rtol=1e-6)
    assert np.isnan(med[3])
    uniform = unet_median_amount(bins[:, :1], (0, 1, 5), dry_bin="uniform")  # 0.5 / 0.6 of [0, 1)
    assert uniform[0] == pytest.approx(0.5 / 0.6, rel=1e-6)


def test_spectral_band_ratio_sums_the_band_and_reports_the_annulus_extremes():
    lam = np.array([256.0, 128.0, 64.0, 32.0, 16.0, 8.0])
    power, ref = np.array([9.0, 2.0, 3.0, 1.0, 1.0, 7.0]), np.array([1.0, 2.0, 2.0, 1.0, 2.0, 1.0])
    out = spectral_band_ratio(lam, power, ref)
    assert out["n_annuli"] == 4 and out["ratio"] == pytest.approx(7 / 7)
    assert (out["min_ratio"], out["max_ratio"], out["within_factor_1_5"]) == (0.5, 1.5, False)
    assert spectral_band_ratio(lam, ref * 1.2, ref)["within_factor_1_5"] is True
    assert math.isnan(spectral_band_ratio(lam, power, ref, band_km=(1.0, 2.0))["ratio"])


def test_octaves_run_from_the_shortest_resolved_wavelength_to_the_band_top():
    from pqpf.verify.ensemble_fields import octave_bands_km

    assert octave_bands_km(4.0, 128.0) == [(8.0, 16.0), (16.0, 32.0), (32.0, 64.0), (64.0, 128.0)]
    assert octave_bands_km(3.0, 128.0) == [(6.0, 12.0), (12.0, 24.0), (24.0, 48.0), (48.0, 96.0), (96.0, 128.0)]
    assert octave_bands_km(4.0, 10.0) == [(8.0, 10.0)]
    assert octave_bands_km(4.0, 8.0) == []  # nothing resolved: no octave (and no failure)


@pytest.mark.parametrize("shape, dx", [((64, 80), 4.0), ((100, 100), 3.0), ((96, 128), 4.0), ((37, 53), 2.5)])
def test_octave_ratios_count_every_annulus_of_the_band_exactly_once(shape, dx):
    from pqpf.verify.ensemble import PowerSpectrum
    from pqpf.verify.ensemble_fields import spectral_octave_ratios

    lam = PowerSpectrum(shape, dx).wavelength_km
    rng = np.random.default_rng(0)
    power, ref = rng.uniform(0.5, 2.0, lam.size), rng.uniform(0.5, 2.0, lam.size)
    octaves = spectral_octave_ratios(lam, power, ref, dx, 128.0)
    in_range = (lam >= 2 * dx * (1 - 1e-6)) & (lam <= 128.0 * (1 + 1e-6))
    assert sum(o["n_annuli"] for o in octaves) == in_range.sum()
    # the band-summed ratio over all octaves is the whole band's
    assert all(np.isnan(o["ratio"]) == (o["n_annuli"] == 0) for o in octaves)  # an empty octave is NaN
    total = sum(o["ratio"] * ref[_sel(lam, o["band_km"], o is octaves[-1])].sum() for o in octaves if o["n_annuli"])
    assert total / ref[in_range].sum() == pytest.approx(power[in_range].sum() / ref[in_range].sum(), rel=1e-12)


def _sel(lam, band, last):
    lo, hi = band
    return (lam >= lo * (1 - 1e-6)) & ((lam <= hi * (1 + 1e-6)) if last else (lam < hi * (1 - 1e-6)))


def test_fair_brier_score_is_unbiased_for_the_brier_score_of_the_true_probability():
    rng = np.random.default_rng(1)
    q, m, n = 0.3, 4, 400_000
    p = rng.binomial(m, q, n) / m  # member fraction of M members with P(event) = q
    o = (rng.random(n) < q).astype(float)
    fair = (p - o) ** 2 - fair_brier_penalty(p, m)
    se = fair.std() / math.sqrt(n)
    assert abs(fair.mean() - q * (1 - q)) < 4 * se  # the Brier score of q itself
    assert ((p - o) ** 2).mean() - q * (1 - q) == pytest.approx(q * (1 - q) / m, abs=4 * se)
    with pytest.raises(ValueError, match="at least 2 members"):
        fair_brier_penalty(p, 1)


def test_binned_spread_skill_by_hand():
    acc = BinnedSpreadSkill(edges_mm=(0.0, 0.5, math.inf))
    members = np.array([[0.0, 1.0, 3.0], [0.0, 1.4, 5.0]])  # spreads 0, 0.28, 1.41
    obs = np.array([1.0, 1.0, 4.0])
    acc.update(members, obs, np.array([1.0, 2.0, 1.0]))
    r = acc.result()
    assert r["count"] == [2, 1] and r["weight"] == [3.0, 1.0] and r["edges_mm"] == [0.0, 0.5, None]
    assert r["spread"][0] == pytest.approx(math.sqrt(1.5 * (2 * 0.08) / 3))
    assert r["rmse"][0] == pytest.approx(math.sqrt((1.0 + 2 * 0.2**2) / 3))
    assert r["spread"][1] == pytest.approx(math.sqrt(1.5 * 2.0)) and r["rmse"][1] == pytest.approx(0.0)


def _run(synth, kind, n_inits=8, seed=5, good=None):
    rng = np.random.default_rng(seed)
    verifier = EnsembleVerifier(EnsembleSettings(synth.THRESHOLDS, synth.EDGES, 8, SHAPE, 4.0, n_replicates=300))
    cases = []
    for i in range(n_inits):
        bins, obs, members, graf = synth.sample_case(rng, SHAPE, 8, kind)
        mask = np.ones(SHAPE, bool) if good is None else good
        case = EnsembleCase(members, obs, mask, np.ones(SHAPE), bins, graf)
        verifier.update(case, f"2025120{1 + i // 2}")
        cases.append(case)
    return verifier, verifier.result(), cases


@pytest.fixture(scope="module")
def calibrated(synth):
    return _run(synth, "calibrated")


@pytest.fixture(scope="module")
def under(synth):
    return _run(synth, "under-dispersive")


def test_calibrated_ensemble_scores_like_the_unet_with_spread_skill_one_and_a_flat_rank_histogram(calibrated):
    _, r, _ = calibrated
    assert r["spread_skill"]["ratio"] == pytest.approx(1.0, abs=0.08)
    freq = np.asarray(r["rank_histogram"]["frequency"]) * 9
    assert freq.min() > 0.9 and freq.max() < 1.1
    assert r["rank_histogram"]["min_over_uniform"] == pytest.approx(freq.min())
    assert abs(r["crps"]["crpss_fair_vs_unet"]) < 0.03  # like for like: same distribution, same points
    assert r["crps"]["crps_plain"] > r["crps"]["crps_fair"]  # the finite-ensemble penalty
    for row in r["brier"]:  # member probabilities from the U-Net's own distribution: fair BSS ~ 0
        assert abs(row["bss_fair_members_vs_unet"]) < 0.05 and row["bss_members_vs_unet"] < 0
    draws = r["unet_draws"]  # the U-Net's own marginals are calibrated too
    assert 0.9 < draws["min_over_uniform"] and draws["max_over_uniform"] < 1.1
    assert draws["ratio"] == pytest.approx(1.0, abs=0.08)
    iv = r["intervals"]
    assert iv["spread_skill_ratio"]["low"] < 1.0 < iv["spread_skill_ratio"]["high"]
    assert iv["crpss_fair_vs_unet"]["low"] < 0.0 < iv["crpss_fair_vs_unet"]["high"]


def test_under_dispersive_ensemble_is_caught_by_every_calibration_score(under):
    _, r, _ = under
    assert r["spread_skill"]["ratio"] < 0.6 and r["intervals"]["spread_skill_ratio"]["high"] < 0.6
    freq = np.asarray(r["rank_histogram"]["frequency"]) * 9
    assert freq[0] > 1.5 and freq[-1] > 1.5 and freq[1:-1].max() < 1.0  # U-shaped
    draws = r["unet_draws"]  # ... but the U-Net's marginals are not to blame: draws from them are flat
    assert 0.9 < draws["min_over_uniform"] and draws["max_over_uniform"] < 1.1 and 0.92 < draws["ratio"] < 1.08
    assert r["crps"]["crpss_fair_vs_unet"] < -0.2 and r["intervals"]["crpss_fair_vs_unet"]["high"] < 0
    binned = r["spread_skill"]["binned"]
    wet = [i for i, w in enumerate(binned["weight"]) if w > 500 and binned["edges_mm"][i] >= 0.5]
    assert wet and all(binned["rmse"][i] > 1.5 * binned["spread"][i] for i in wet)


def test_members_carry_the_observed_spatial_structure_and_the_unet_mean_does_not(calibrated):
    _, r, _ = calibrated
    ratio = r["spectra"]["band_ratio_vs_mrms"]
    assert 0.5 < ratio["members"]["ratio"] < 1.5  # same copula as MRMS; 8 MRMS fields are noisy
    assert ratio["unet_mean"]["ratio"] < 0.1 and ratio["unet_mean"]["max_ratio"] < 0.1
    assert r["spectra"]["members"]["n_fields"] == 8 * 8 and r["spectra"]["mrms"]["n_fields"] == 8
    # per octave: each is the band ratio over its own wavelengths; the U-Net mean (smooth)
    # falls further short the shorter the wavelength
    octaves = r["spectra"]["octave_ratios_vs_mrms"]
    dx = r["spectra"]["dx_km"]
    assert [o["band_km"] for o in octaves["members"]] == [[2 * dx * 2**k, 4 * dx * 2**k] for k in range(len(
        octaves["members"]))]
    lam = np.asarray(r["spectra"]["mrms"]["wavelength_km"])
    assert sum(o["n_annuli"] for o in octaves["members"]) == ((lam >= 2 * dx - 1e-9) & (lam <= 128 + 1e-9)).sum()
    mean_ratios = [o["ratio"] for o in octaves["unet_mean"]]
    assert mean_ratios[0] < mean_ratios[-1] < 0.2


def test_octave_power_ratios_have_intervals_over_the_days(calibrated, synth):
    """Each octave's ratio gets a block-bootstrap interval by init date, around the ratio of
    the spectra; members that are MRMS scaled by c have c^2 of its power in every octave on
    every day, so every resample gives exactly c^2."""
    _, r, cases = calibrated
    for name in ("members", "unet_mean", "graf"):
        for o in r["spectra"]["octave_ratios_vs_mrms"][name]:
            iv = r["intervals"][f"psd_ratio_{name}_vs_mrms@{o['band_km'][0]:g}-{o['band_km'][1]:g}km"]
            assert iv["estimate"] == pytest.approx(o["ratio"], rel=1e-9)
            assert iv["low"] <= iv["estimate"] <= iv["high"] and iv["n_days"] == 4
    widths = [r["intervals"][f"psd_ratio_members_vs_mrms@{o['band_km'][0]:g}-{o['band_km'][1]:g}km"]
              for o in r["spectra"]["octave_ratios_vs_mrms"]["members"]]
    assert any(w["high"] - w["low"] > 0.01 for w in widths)  # random members: days differ
    verifier = EnsembleVerifier(EnsembleSettings(synth.THRESHOLDS, synth.EDGES, 8, SHAPE, 4.0, n_replicates=50))
    for i, case in enumerate(cases):
        scaled = np.broadcast_to(0.7 * case.obs_mm, case.members_mm.shape)
        verifier.update(EnsembleCase(scaled, case.obs_mm, case.good, case.weight, case.unet_bins, case.graf_mm),
                        f"2025120{1 + i // 2}")
    result = verifier.result()
    for o in result["spectra"]["octave_ratios_vs_mrms"]["members"]:
        iv = result["intervals"][f"psd_ratio_members_vs_mrms@{o['band_km'][0]:g}-{o['band_km'][1]:g}km"]
        assert o["ratio"] == pytest.approx(0.49, rel=1e-9)
        assert iv["low"] == pytest.approx(0.49, rel=1e-9) and iv["high"] == pytest.approx(0.49, rel=1e-9)


def test_member_pair_fss_matches_the_members_fss_only_for_the_calibrated_ensemble(calibrated, under):
    """Dispersion FSS (Dey et al. 2014): members exchangeable with MRMS score against one
    another as they score against MRMS; under-dispersive members score higher against one
    another. The interval of the difference is reported as a skill."""
    for (_, r, _), calibrated_case in ((calibrated, True), (under, False)):
        fss = r["fss"]
        for k, t in enumerate(fss["thresholds_mm"]):
            members = np.asarray(fss["sources"]["members"]["per_threshold"][k]["fss"], dtype=float)
            pairs = np.asarray(fss["pairs"]["members"]["per_threshold"][k]["fss"], dtype=float)
            gap = r["intervals"][f"fss_members_minus_pairs@{t:g}mm@11px"]["estimate"]
            assert gap == pytest.approx(members[5] - pairs[5], abs=1e-9)
            if calibrated_case and t == 1.0:  # measured: within 0.01 at every width
                assert np.abs(members - pairs).max() < 0.02
            elif calibrated_case:  # 5 mm: 8 observed fields of a rare event, within 0.03 to 0.08
                assert np.abs(members - pairs).max() < 0.1
            else:  # measured: 0.33 to 0.40 higher at 1 px, 0.055 to 0.22 at 41 px
                assert np.all(pairs - members > 0.04) and pairs[0] - members[0] > 0.25


def test_fair_crps_is_properscoring_with_the_fair_correction_on_the_points_used(synth):
    good = np.ones(SHAPE, bool)
    good[:10, :20] = False
    verifier, r, cases = _run(synth, "calibrated", n_inits=2, good=good)
    total, m = 0.0, 8
    for case in cases:
        x, y = case.members_mm[:, good].T, case.obs_mm[good]
        pairs = np.abs(x[:, :, None] - x[:, None, :]).sum(axis=(1, 2))
        total += (ps.crps_ensemble(y, x) - pairs / (2 * m * m * (m - 1))).sum()
    assert r["crps"]["n"] == 2 * good.sum()
    assert r["crps"]["crps_fair"] == pytest.approx(total / (2 * good.sum()), rel=1e-10)


def test_mean_amounts_are_weighted_means_on_the_points_used_and_their_ratios_the_bias(synth, calibrated):
    good = np.ones(SHAPE, bool)
    good[:10, :20] = False
    _, r, cases = _run(synth, "calibrated", n_inits=4, good=good)
    sums = np.zeros(4)
    for case in cases:
        sums += [case.obs_mm[good].sum(), case.members_mm[:, good].mean(axis=0).sum(),
                 unet_mean_amount(case.unet_bins, synth.EDGES)[good].astype(np.float64).sum(), case.graf_mm[good].sum()]
    mean = r["amounts"]["mean_mm"]
    assert [mean[k] for k in ("mrms", "members", "unet_mean", "graf")] == pytest.approx(sums / (4 * good.sum()),
                                                                                         rel=1e-6)
    for k, name in enumerate(("members", "unet_mean", "graf"), start=1):
        assert r["amounts"]["ratio_vs_mrms"][name] == pytest.approx(sums[k] / sums[0], rel=1e-6)
        assert r["intervals"][f"amount_ratio_{name}_vs_mrms"]["estimate"] == pytest.approx(sums[k] / sums[0])
    # members drawn from the U-Net's distribution average to its mean (8 draws a point,
    # measured within 0.5 %); MRMS is one correlated draw a case, so its mean scatters more
    # (measured 0.91 and 0.96 of it over 4 and 8 cases)
    _, r8, _ = calibrated
    for res in (r, r8):
        ratio = res["amounts"]["ratio_vs_mrms"]
        assert ratio["members"] == pytest.approx(ratio["unet_mean"], rel=0.02)
        assert abs(ratio["unet_mean"] - 1) < 0.15


def test_daily_sums_add_up_to_the_totals_and_the_result_is_json_ready(calibrated):
    verifier, r, _ = calibrated
    totals = verifier.daily.totals()
    current = verifier._named_sums()
    for name in ("crps_fair", "ss_var", "sse_members@1mm", "fbs_graf@5mm@41px", "psd_members"):
        assert totals[name] == pytest.approx(current[name], rel=1e-9)
    assert verifier.daily.days == ("20251201", "20251202", "20251203", "20251204")
    assert r["intervals"]["crpss_fair_vs_unet"]["estimate"] == pytest.approx(r["crps"]["crpss_fair_vs_unet"])
    assert r["intervals"]["fss_graf@1mm@1px"]["estimate"] == pytest.approx(
        r["fss"]["sources"]["graf"]["per_threshold"][0]["fss"][0])
    json.dumps(to_plain(r), allow_nan=False)


def test_verifier_refuses_cases_of_another_shape_or_member_count(synth):
    v = EnsembleVerifier(EnsembleSettings(synth.THRESHOLDS, synth.EDGES, 4, SHAPE, 4.0))
    rng = np.random.default_rng(2)
    bins, obs, members, graf = synth.sample_case(rng, SHAPE, 5, "calibrated")
    with pytest.raises(ValueError, match=r"members_mm \(5, 64, 80\) \(expected \(4, 64, 80\)\)"):
        v.update(EnsembleCase(members, obs, np.ones(SHAPE, bool), np.ones(SHAPE), bins, graf), "20251201")
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleSettings(synth.THRESHOLDS, synth.EDGES, 1, SHAPE, 4.0)
    with pytest.raises(ValueError, match="7"):  # an object threshold must be a U-Net bin edge
        EnsembleSettings(synth.THRESHOLDS, synth.EDGES, 4, SHAPE, 4.0, object_thresholds_mm=(7.0,))
    with pytest.raises(ValueError, match="distinct"):
        EnsembleSettings(synth.THRESHOLDS, synth.EDGES, 4, SHAPE, 4.0, object_thresholds_mm=(5.0, 5.0))
    with pytest.raises(ValueError, match="no case was added"):
        v.result()


def test_sampling_helper_draws_the_binned_distribution(synth):
    """The test generator itself: draws follow the bins (so 'calibrated' is calibrated)."""
    rng = np.random.default_rng(3)
    bins = synth.unet_bins(rng, (64, 64))[:, ::16, ::16]  # 4 x 4 points of different distributions
    y = synth.draw(bins, ndtr(rng.standard_normal((40000, 4, 4))))
    for k, e in enumerate(synth.EDGES[1:6], start=1):
        want = bins[k:].sum(axis=0)
        assert np.abs((y >= e).mean(axis=0) - want).max() < 0.015
