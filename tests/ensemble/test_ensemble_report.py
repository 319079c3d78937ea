"""The printed table and the tidy CSV rows of an ensemble verification."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pqpf.io.jsonio import to_plain
from pqpf.verify.ensemble_report import ENSEMBLE_CSV_COLUMNS, ensemble_csv_rows, format_ensemble_table
from pqpf.verify.ensemble_verifier import EnsembleCase, EnsembleSettings, EnsembleVerifier

SHAPE = (40, 48)


@pytest.fixture(scope="module")
def result(synth):
    rng = np.random.default_rng(4)
    v = EnsembleVerifier(EnsembleSettings(synth.THRESHOLDS, synth.EDGES, 5, SHAPE, 4.0, n_replicates=100))
    for i in range(4):
        bins, obs, members, graf = synth.sample_case(rng, SHAPE, 5, "calibrated")
        v.update(EnsembleCase(members, obs, np.ones(SHAPE, bool), np.ones(SHAPE), bins, graf), f"2025120{i // 2 + 1}")
    return json.loads(json.dumps(to_plain(v.result())))


def test_table_reports_every_score_with_its_interval(result):
    text = format_ensemble_table(result)
    iv = result["intervals"]["crpss_fair_vs_unet"]
    assert text.splitlines()[0] == "5 members, 4 inits on 2 dates, 7,680 good-quality MRMS points (true-area weights)"
    # the stage adds the ECC mode; the head line names it
    for mode, shown in (("off", "off"), ("on", "on (quantile levels, ECC-Q)"),
                        ("stratified", "on (stratified levels, ECC-S)"), ("mean", "on (interval means, ECC-M)")):
        head = format_ensemble_table({**result, "ecc": mode}).splitlines()[0]
        assert head.endswith(f"(true-area weights); ensemble copula coupling {shown}")
    assert f"skill of members vs U-Net  {iv['estimate']:+.3f} [{iv['low']:+.3f}, {iv['high']:+.3f}]" in text
    assert f"members, fair (Ferro 2014)           {result['crps']['crps_fair']:.4f}" in text
    ss = result["intervals"]["spread_skill_ratio"]
    assert f"spread-skill ratio {ss['estimate']:.3f} [{ss['low']:.3f}, {ss['high']:.3f}]" in text
    am = result["intervals"]["amount_ratio_members_vs_mrms"]
    assert (f"mean amount / MRMS's (areal totals): members {am['estimate']:.2f} [{am['low']:.2f}, {am['high']:.2f}], "
            "U-Net mean ") in text
    assert f"(MRMS {result['amounts']['mean_mm']['mrms']:.3f} mm)" in text
    freq = " ".join(f"{f * 6:.2f}" for f in result["rank_histogram"]["frequency"])
    assert f"rank histogram / uniform: {freq}" in text
    draws = result["unet_draws"]
    freq = " ".join(f"{f * 6:.2f}" for f in draws["rank_frequency"])
    assert f"members drawn at random from the U-Net (expected): rank histogram / uniform {freq}" in text
    assert f"spread-skill of the U-Net's distribution {draws['ratio']:.3f} (its sd {draws['spread']:.3f} mm" in text
    old = {k: v for k, v in result.items() if k != "unet_draws"}  # scores of schema < 5
    assert "drawn at random" not in format_ensemble_table(old) and ensemble_csv_rows(old)
    assert "FSS members - raw GRAF at 1 mm: 1 px " in text and "useful from" in text
    assert "FSS members - members vs one another at 5 mm: 1 px " in text
    assert "U-Net conditional mean" in text
    last = result["spectra"]["octave_ratios_vs_mrms"]["members"][-1]
    lo, hi = last["band_km"]
    po = result["intervals"][f"psd_ratio_members_vs_mrms@{lo:g}-{hi:g}km"]
    line = next(x for x in text.splitlines() if x.startswith("  members by octave, with intervals: "))
    assert line.endswith(f"{lo:g}-{hi:g} km {po['estimate']:.2f} [{po['low']:.2f}, {po['high']:.2f}]")
    old = {**result, "intervals": {k: v for k, v in result["intervals"].items() if "km" not in k}}  # schema < 7
    assert "members by octave, with intervals" not in format_ensemble_table(old)
    assert "[intervals: 90 % block bootstrap over 2 init dates, 100 replicates]" in text
    for t in ("0.25 mm", "   25 mm"):
        assert t in text
    assert "rain objects (connected areas at or above the threshold, points sharing an edge; 1 px = 16 km2):" in text
    mem = result["objects"]["sources"]["members"]["per_threshold"][0]
    ob = result["intervals"]["object_size_ratio_members_vs_mrms@1mm"]
    row = next(line for line in text.splitlines() if line.startswith("         members  ") and
               f"{mem['point_weighted_size_px']:10.1f}" in line)
    assert row.rstrip().endswith(f"{ob['estimate']:.2f} [{ob['low']:.2f}, {ob['high']:.2f}]")
    assert any(line.startswith("   1 mm  MRMS") for line in text.splitlines())
    old = {k: v for k, v in result.items() if k != "objects"}  # scores of schema < 6
    assert "rain objects" not in format_ensemble_table(old) and ensemble_csv_rows(old)


def test_csv_rows_hold_every_value_once_with_intervals_where_they_exist(result):
    rows = ensemble_csv_rows(result)
    assert all(tuple(r) == ENSEMBLE_CSV_COLUMNS for r in rows)
    fss = [r for r in rows if r["metric"] == "fss"]
    assert len(fss) == 5 * 2 * 21
    diff = [r for r in rows if r["metric"] == "fss_members_minus_pairs"]
    first = result["intervals"]["fss_members_minus_pairs@1mm@1px"]
    assert len(diff) == 2 * 21 and (diff[0]["value"], diff[0]["ci_low"]) == (first["estimate"], first["low"])
    octaves = [r for r in rows if r["metric"] == "power_ratio_vs_mrms_octave"]
    stored = result["spectra"]["octave_ratios_vs_mrms"]
    assert len(octaves) == 3 * len(stored["members"]) and len(stored["members"]) >= 2
    assert [(r["value"], r["wavelength_km"]) for r in octaves if r["source"] == "members"] == [
        (o["ratio"], o["band_km"][0]) for o in stored["members"]]
    for row in octaves:  # each source's octave with its interval over the days
        band = next(o["band_km"] for o in stored[row["source"]] if o["band_km"][0] == row["wavelength_km"])
        iv = result["intervals"][f"psd_ratio_{row['source']}_vs_mrms@{band[0]:g}-{band[1]:g}km"]
        assert row["value"] == pytest.approx(iv["estimate"], rel=1e-12)  # the same sums, summed apart
        assert (row["ci_low"], row["ci_high"]) == (iv["low"], iv["high"])
        assert iv["low"] < iv["high"]
    pairs = [r for r in rows if r["metric"] == "fss_member_pairs"]
    assert len(pairs) == 2 * 21 and pairs[3]["value"] == result["fss"]["pairs"]["members"]["per_threshold"][0]["fss"][3]
    one = next(r for r in fss if r["source"] == "graf" and r["threshold_mm"] == 5.0 and r["width_px"] == 11)
    assert one["value"] == result["fss"]["sources"]["graf"]["per_threshold"][1]["fss"][5]
    assert one["ci_low"] == result["intervals"]["fss_graf@5mm@11px"]["low"]
    ranks = [r["value"] for r in rows if r["metric"] == "rank_frequency" and r["source"] is None]
    assert ranks == result["rank_histogram"]["frequency"] and len(ranks) == 6
    drawn = [r["value"] for r in rows if r["metric"] == "rank_frequency" and r["source"] == "unet_draws"]
    assert drawn == result["unet_draws"]["rank_frequency"]
    assert [r["value"] for r in rows if r["metric"] == "spread_skill_ratio" and r["source"] == "unet_draws"] == [
        result["unet_draws"]["ratio"]]
    ss = next(r for r in rows if r["metric"] == "spread_skill_ratio")
    assert (ss["value"], ss["ci_high"]) == (result["spread_skill"]["ratio"],
                                           result["intervals"]["spread_skill_ratio"]["high"])
    spec = [r for r in rows if r["metric"] == "power_spectrum" and r["source"] == "members"]
    assert [r["wavelength_km"] for r in spec] == result["spectra"]["members"]["wavelength_km"]
    amounts = {r["source"]: r for r in rows if r["metric"] == "amount_ratio_vs_mrms"}
    assert sorted(amounts) == ["graf", "members", "unet_mean"]
    assert (amounts["members"]["value"], amounts["members"]["ci_low"]) == (
        result["amounts"]["ratio_vs_mrms"]["members"], result["intervals"]["amount_ratio_members_vs_mrms"]["low"])
    assert {r["source"] for r in rows if r["metric"] == "mean_amount_mm"} == {"mrms", "members", "unet_mean", "graf"}
    sizes = {(r["source"], r["threshold_mm"]): r for r in rows if r["metric"] == "objects_point_weighted_size_px"}
    assert len(sizes) == 4 * 4
    assert sizes[("mrms", 10.0)]["value"] == result["objects"]["sources"]["mrms"]["per_threshold"][2][
        "point_weighted_size_px"]
    ratios = {(r["source"], r["threshold_mm"]): r for r in rows if r["metric"] == "object_size_ratio_vs_mrms"}
    assert sorted({s for s, _ in ratios}) == ["graf", "members", "unet_p50"]
    got = result["intervals"]["object_size_ratio_members_vs_mrms@5mm"]
    assert (ratios[("members", 5.0)]["value"], ratios[("members", 5.0)]["ci_high"]) == (got["estimate"], got["high"])


def test_absurd_interval_ends_of_rare_events_are_bounded_in_print_not_in_json(result):
    r = json.loads(json.dumps(result))
    r["intervals"]["bss_members_vs_unet@25mm"].update(low=-1281.08, high=0.5)
    line = next(x for x in format_ensemble_table(r).splitlines() if x.startswith("   25 mm"))
    assert "[<-9.99, +0.500]" in line
    rows = ensemble_csv_rows(r)
    assert next(x for x in rows if x["metric"] == "bss_members_vs_unet" and x["threshold_mm"] == 25.0)[
        "ci_low"] == -1281.08
