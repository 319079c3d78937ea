"""The verify_ensemble.py stage on archives of synthetic ensembles written in the real formats:
calibration found where it was built in, cross-checks of CRPS and FSS against the
properscoring and scores libraries on the files, skipped and failed inits, reruns, the CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import properscoring as ps
import pytest
import xarray as xr
from scores.spatial import fss_2d

import pqpf.stages.verify_ensemble as stage
from pqpf.cli.verify_ensemble import main
from pqpf.config import load_config
from pqpf.diffusion.ecc import ensemble_copula_coupling
from pqpf.grid import graf_like_grid
from pqpf.io.ensemble_file import EnsembleProvenance, make_ensemble, read_ensemble, write_ensemble
from pqpf.io.mrms_file import read_remapped_mrms, write_remapped_mrms
from pqpf.io.probs_file import ProbabilityForecast, write_probabilities
from pqpf.layout import ensemble_path, ensemble_verification_dir, mrms_remapped_path, probs_path
from pqpf.quality import good_quality_mask
from pqpf.verify.area import area_weights
from pqpf.verify.objects import object_sizes

ROOT = Path(__file__).resolve().parent.parent.parent
LEAD = 6
M = 8
START = dt.datetime(2025, 12, 1, 0)
INITS = [START + dt.timedelta(hours=12 * k) for k in range(8)]  # four dates, 00 and 12 UTC
NO_MRMS, NO_UNET, CORRUPT = (START + dt.timedelta(hours=12 * k) for k in (8, 9, 10))
GRID = graf_like_grid("demo").subgrid(40, 104, 60, 140)  # 64 x 80 Lambert points


def _config(root: Path):
    text = (ROOT / "config_laptop.ini").read_text().replace("${PQPF_DATA:-~/python/resnet_data}", str(root))
    (root / "config.ini").write_text(text)
    return load_config(root / "config.ini")


def _write_init(config, synth, rng, init, kind, *, mrms=True, unet=True, clean=False, ecc=False):
    bins, obs, members, graf = synth.sample_case(rng, GRID.shape, M, kind)
    valid = init + dt.timedelta(hours=LEAD)
    quality = np.ones(GRID.shape, np.float32)
    if not clean:
        quality[:8, :16] = 0.2  # a poor-quality corner, left out of every score
        obs[30, 40:44] = np.nan
    if mrms:
        write_remapped_mrms(mrms_remapped_path(config, valid), GRID, obs.astype(np.float32), quality,
                            np.ones(GRID.shape, np.float32), valid, "conservative", {"source": "synthetic"})
    if unet:
        exceed = 1.0 - np.cumsum(bins, axis=0)[:-1]
        raw = np.stack([(graf >= e) for e in synth.EDGES[1:]]).astype(np.float32)
        write_probabilities(probs_path(config, init, LEAD), ProbabilityForecast(
            grid=GRID, thresholds_mm=tuple(synth.EDGES[1:]), prob=np.clip(exceed, 0, 1).astype(np.float32),
            prob_raw=raw, prob_smoothed=raw, graf_mm=graf.astype(np.float32), valid=valid, reference_sigma_px=2.0,
            attrs={"checkpoint": "resunet/best.pt", "checkpoint_lead_h": LEAD}))
    # ecc: False, True (ECC-Q) or the levels; "stratified" point by point, "coherent" the
    # stratified levels from smooth fields (4 px: the 64 x 80 grid holds about 25 such areas)
    levels = {"coherent": "stratified"}.get(ecc, ecc) if isinstance(ecc, str) else "quantile"
    level_px = 4.0 if ecc == "coherent" else 0.0
    if ecc:
        members = ensemble_copula_coupling(members, bins, synth.EDGES, rng, levels=levels, level_smoothing_px=level_px)
    extra = {"ecc_levels": levels, **({"ecc_level_smoothing_px": level_px} if levels == "stratified" else {})}
    provenance = EnsembleProvenance("resunet/best.pt", "diffusion/best.pt", seed=1, ecc=bool(ecc),
                                    sampler={"n_steps": 18}, extra=extra if ecc else {})
    write_ensemble(ensemble_path(config, init, LEAD), make_ensemble(GRID, members, init, LEAD, (1.0,), provenance))


def _archive(root: Path, synth, kind: str, extras: bool, ecc: bool | str = False):
    config = _config(root)
    rng = np.random.default_rng(17)
    for init in INITS:
        _write_init(config, synth, rng, init, kind, ecc=ecc)
    if extras:
        _write_init(config, synth, rng, NO_MRMS, kind, mrms=False)
        _write_init(config, synth, rng, NO_UNET, kind, unet=False)
        _write_init(config, synth, rng, CORRUPT, kind)
        store = ensemble_path(config, CORRUPT, LEAD)
        (store / ".zmetadata").write_text("{ not json")
    return config


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, synth):
    config = _archive(tmp_path_factory.mktemp("cal"), synth, "calibrated", extras=True)
    report = stage.verify_ensemble_range(config, START, CORRUPT, LEAD, n_replicates=200)
    return config, report


def test_calibrated_archive_scores_calibrated_and_like_the_unet(calibrated):
    _, report = calibrated
    r = report.result
    assert r["n_members"] == M and r["n_cases"] == 8 and report.used == [f"{t:%Y%m%d%H}" for t in INITS]
    assert r["spread_skill"]["ratio"] == pytest.approx(1.0, abs=0.1)
    assert 0.85 < r["rank_histogram"]["min_over_uniform"] and r["rank_histogram"]["max_over_uniform"] < 1.15
    assert abs(r["crps"]["crpss_fair_vs_unet"]) < 0.04
    assert r["spectra"]["band_ratio_vs_mrms"]["unet_mean"]["ratio"] < 0.1
    assert 0.5 < r["spectra"]["band_ratio_vs_mrms"]["members"]["ratio"] < 1.5


def test_skipped_and_failed_inits_are_reported_and_the_rest_scored(calibrated):
    _, report = calibrated
    assert report.skipped_no_mrms == [f"{NO_MRMS:%Y%m%d%H}"] and report.skipped_no_unet == [f"{NO_UNET:%Y%m%d%H}"]
    [(init, error)] = report.failed
    assert init == f"{CORRUPT:%Y%m%d%H}" and error.startswith(str(ensemble_path(calibrated[0], CORRUPT, LEAD)))
    assert "\n" not in error


def test_outputs_are_written_with_the_comparison_explained(calibrated):
    config, report = calibrated
    out = ensemble_verification_dir(config, START, CORRUPT, LEAD)
    names = sorted(p.name for p in report.files)
    assert names == sorted(["ensemble_scores.json", "ensemble_scores.csv", *stage.FIGURES.values()])
    assert all(p.parent == out and p.stat().st_size > 0 for p in report.files)
    scores = json.loads((out / "ensemble_scores.json").read_text())
    assert scores["crps_comparison"] == stage.CRPS_COMPARISON and "same points" in scores["crps_comparison"]
    assert scores["weights"] == "true cell area on good-quality MRMS points"
    assert scores["models"] == {"diffusion diffusion/best.pt on U-Net resunet/best.pt, ECC off, n_steps 18; "
                                "U-Net file from resunet/best.pt": 8}
    assert scores["spectra"]["unet_mean"]["definition"].startswith("mean amount (mm)")
    header = (out / "ensemble_scores.csv").read_text().splitlines()[0]
    assert header == "metric,source,threshold_mm,width_px,rank,wavelength_km,value,ci_low,ci_high"


def _read_back(config, init):
    ens = read_ensemble(ensemble_path(config, init, LEAD))
    mrms = read_remapped_mrms(mrms_remapped_path(config, init + dt.timedelta(hours=LEAD)))
    good = good_quality_mask(mrms.precipitation_mm, mrms.quality, config.mrms.min_quality)
    return ens.members_mm.astype(np.float64), mrms.precipitation_mm.astype(np.float64), good


def test_fair_crps_equals_properscoring_on_the_files_with_true_area_weights(calibrated):
    config, report = calibrated
    weight = area_weights(GRID).astype(np.float64)
    num = den = 0.0
    for init in INITS:
        members, obs, good = _read_back(config, init)
        x, y, w = members[:, good].T, obs[good], weight[good]
        pairs = np.abs(x[:, :, None] - x[:, None, :]).sum(axis=(1, 2))
        num += (ps.crps_ensemble(y, x) - pairs / (2 * M * M * (M - 1))) @ w
        den += w.sum()
    assert report.result["crps"]["n"] == 8 * (GRID.ny * GRID.nx - 8 * 16 - 4)
    assert report.result["crps"]["crps_fair"] == pytest.approx(num / den, rel=1e-9)


def test_rain_objects_are_counted_on_the_files_with_the_scored_points(calibrated):
    """Objects of the read-back members and MRMS, labelled here on the good-quality points
    (where MRMS is NaN or of poor quality nothing is wet), give the stored sums."""
    config, report = calibrated
    objects = report.result["objects"]
    k = objects["thresholds_mm"].index(5.0)
    got = {name: objects["sources"][name]["per_threshold"][k] for name in ("mrms", "members")}
    sums = {name: np.zeros(3) for name in got}  # fields, sum s, sum s^2
    for init in INITS:
        members, obs, good = _read_back(config, init)
        for name, fields in (("mrms", obs[None]), ("members", members)):
            for f in fields:
                sizes = object_sizes((f >= 5.0) & good & np.isfinite(obs)).astype(np.float64)
                sums[name] += [1, sizes.sum(), sizes @ sizes]
    for name in got:
        assert got[name]["n_fields"] == sums[name][0]
        assert got[name]["point_weighted_size_px"] == pytest.approx(sums[name][2] / sums[name][1], rel=1e-12)
    ratio = report.result["intervals"]["object_size_ratio_members_vs_mrms@5mm"]["estimate"]
    assert ratio == pytest.approx((sums["members"][2] / sums["members"][1]) / (sums["mrms"][2] / sums["mrms"][1]))
    assert objects["dx_km"] == pytest.approx(4.0) and objects["connectivity"] == 4


def test_fss_of_members_and_graf_equals_scores_fss_2d_on_interior_windows(tmp_path, synth, monkeypatch):
    """With weights on the interior (half a window in from the edge) and all MRMS good, the
    stage's FSS at 5 px is scores' fss_2d without padding, pooled over inits (and members)."""
    config = _config(tmp_path)
    rng = np.random.default_rng(5)
    for init in INITS[:3]:
        _write_init(config, synth, rng, init, "calibrated", clean=True)
    width, h = 5, 2
    interior = np.zeros(GRID.shape, np.float32)
    interior[h:-h, h:-h] = 1.0
    monkeypatch.setattr(stage, "area_weights", lambda grid: interior)
    report = stage.verify_ensemble_range(config, START, INITS[2], LEAD, plot=False, n_replicates=20)
    members, obs, graf = [], [], []
    for init in INITS[:3]:
        m, o, good = _read_back(config, init)
        assert good.all()
        members.append(m)
        obs.append(o)
        with xr.open_dataset(probs_path(config, init, LEAD)) as ds:
            graf.append(ds["graf_precipitation"].values)
    fss = report.result["fss"]

    def ours(source, t):
        row = fss["sources"][source]["per_threshold"][fss["thresholds_mm"].index(t)]
        return row["fss"][fss["widths_px"].index(width)]

    def theirs(f, o, t):
        return float(fss_2d(xr.DataArray(f, dims=("t", "y", "x")), xr.DataArray(o, dims=("t", "y", "x")),
                            event_threshold=t, window_size=(width, width), spatial_dims=("y", "x"),
                            reduce_dims=["t", "y", "x"], threshold_operator=np.greater_equal))

    for t in (1.0, 5.0):
        assert ours("graf", t) == pytest.approx(theirs(np.stack(graf), np.stack(obs), t), rel=1e-9)
        pooled, repeated = np.concatenate(members), np.repeat(np.stack(obs), M, axis=0)
        assert ours("members", t) == pytest.approx(theirs(pooled, repeated, t), rel=1e-9)


def test_rerun_reuses_the_scores_and_overwrite_recomputes(tmp_path, synth, monkeypatch):
    config = _config(tmp_path)
    rng = np.random.default_rng(2)
    for init in INITS[:2]:
        _write_init(config, synth, rng, init, "calibrated")
    first = stage.verify_ensemble_range(config, START, INITS[1], LEAD, plot=False, n_replicates=20)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(stage.EnsembleVerifier, "update", fail)
    again = stage.verify_ensemble_range(config, START, INITS[1], LEAD, plot=False, n_replicates=20)
    assert again.result["crps"]["crps_fair"] == pytest.approx(first.result["crps"]["crps_fair"])
    with pytest.raises(AssertionError, match="recomputed"):
        stage.verify_ensemble_range(config, START, INITS[1], LEAD, plot=False, overwrite=True, n_replicates=20)


def test_under_dispersive_archive_is_flagged(tmp_path, synth):
    config = _archive(tmp_path, synth, "under-dispersive", extras=False)
    r = stage.verify_ensemble_range(config, START, INITS[-1], LEAD, plot=False, n_replicates=50).result
    assert r["spread_skill"]["ratio"] < 0.6
    assert r["rank_histogram"]["min_over_uniform"] < 0.8 and r["rank_histogram"]["max_over_uniform"] > 1.5
    assert r["crps"]["crpss_fair_vs_unet"] < -0.2


def test_ecc_members_are_scored_with_the_caveat_their_fair_crps_needs(tmp_path, synth):
    """ECC members are the U-Net's quantiles: the fair CRPS over-corrects (looks better than
    the U-Net it copies), the plain CRPS stays close; the scores say so."""
    config = _archive(tmp_path, synth, "calibrated", extras=False, ecc=True)
    report = stage.verify_ensemble_range(config, START, INITS[-1], LEAD, plot=False, n_replicates=50)
    r = report.result
    assert r["ecc"] == "on" and r["caveats"] == [stage.ECC_CAVEAT]
    assert r["crps"]["crpss_fair_vs_unet"] > 0.05 and abs(r["crps"]["crpss_plain_vs_unet"]) < 0.03
    assert r["rank_histogram"]["max_over_uniform"] < 1.25 and r["rank_histogram"]["min_over_uniform"] < 0.7
    scores = json.loads((ensemble_verification_dir(config, START, INITS[-1], LEAD) / "ensemble_scores.json")
                        .read_text())
    assert scores["caveats"] == [stage.ECC_CAVEAT]


def test_ecc_s_and_ecc_m_members_of_a_calibrated_unet_score_as_their_construction_says(tmp_path, synth):
    """ECC-S members are a stratified sample of the (calibrated) U-Net: each a random draw
    from it, so a wider spread than the midpoints' (ECC-Q), rank-histogram ends near
    (M+1)/(2M) of uniform for both, a fair CRPS that looks better than the U-Net's; ECC-M's
    interval means spread between the two; ECC-S from smooth level fields scores as ECC-S;
    the scores name the mode and its caveat."""
    reports = {}
    for mode in ("quantile", "stratified", "mean", "coherent"):
        (tmp_path / mode).mkdir()
        config = _archive(tmp_path / mode, synth, "calibrated", extras=False, ecc=mode)
        reports[mode] = stage.verify_ensemble_range(config, START, INITS[-1], LEAD, plot=False,
                                                    n_replicates=50).result
    q, s, m = reports["quantile"], reports["stratified"], reports["mean"]
    assert s["ecc"] == "stratified" and s["caveats"] == [stage.ECC_S_CAVEAT] and q["ecc"] == "on"
    # The ratio's (M+1)/M assumes independent members; a stratified sample's mean is nearly
    # exact and its variance (M-1 divisor) M/(M-1) of the distribution's: expect
    # sqrt((M+1)/(M-1)) = 1.134 at M = 8 for a calibrated U-Net. The midpoints' smaller
    # spread gives less than 1. (Two streams of the uniforms gave 1.126 and 1.168 here: the
    # tolerance is that sampling noise.)
    assert abs(s["spread_skill"]["ratio"] - np.sqrt((M + 1) / (M - 1))) < 0.06
    assert q["spread_skill"]["ratio"] < 0.95
    for r in (q, s):
        freq = np.asarray(r["rank_histogram"]["frequency"]) * (M + 1)
        # the wet end (no ties there): near (M+1)/(2M); the dry end mixes in the dry
        # points, whose ties are broken at random
        assert abs(freq[-1] - (M + 1) / (2 * M)) < 0.12
        assert r["crps"]["crpss_fair_vs_unet"] > 0.05  # over-credited, as the caveat says
    # measured here: plain CRPS skill -0.013 (ECC-Q) and -0.035 (ECC-S: the spread inside
    # the strata is error); both within a few per cent of the U-Net they copy
    assert -0.06 < s["crps"]["crpss_plain_vs_unet"] < q["crps"]["crpss_plain_vs_unet"] < 0.0
    # ECC-M (interval means): the variance between the intervals is kept, the variance inside
    # them dropped, so its spread lies between the midpoints' and the stratified draws'
    # (measured 0.910 < 1.051 < 1.168); the top interval's mean lies above its midpoint
    # quantile, so MRMS exceeds every member less often than with ECC-Q (measured 0.35 and
    # 0.52 of uniform): a property of the construction, which its caveat names
    assert m["ecc"] == "mean" and m["caveats"] == [stage.ECC_M_CAVEAT]
    assert q["spread_skill"]["ratio"] + 0.08 < m["spread_skill"]["ratio"] < s["spread_skill"]["ratio"] - 0.08
    top = {k: r["rank_histogram"]["frequency"][-1] * (M + 1) for k, r in (("q", q), ("m", m))}
    assert top["m"] < 0.45 < top["q"]
    assert -0.03 < m["crps"]["crpss_plain_vs_unet"] < 0.0 and m["crps"]["crpss_fair_vs_unet"] > 0.05
    # ECC-S with smooth level fields: at each point the same stratified sample, so the same
    # expected point-wise scores; the fields' correlation only adds sampling noise (measured
    # 1.166 and a top bin of 0.51, plain CRPS skill -0.036 against -0.037 point by point)
    c = reports["coherent"]
    assert c["ecc"] == "stratified" and c["caveats"] == [stage.ECC_S_CAVEAT]
    assert abs(c["spread_skill"]["ratio"] - np.sqrt((M + 1) / (M - 1))) < 0.08
    assert abs(c["rank_histogram"]["frequency"][-1] * (M + 1) - (M + 1) / (2 * M)) < 0.12
    assert abs(c["crps"]["crpss_plain_vs_unet"] - s["crps"]["crpss_plain_vs_unet"]) < 0.01


def test_cli_prints_the_table_and_exits_1_when_an_init_failed(calibrated, capsys):
    config, _ = calibrated
    status = main([f"{START:%Y%m%d%H}", f"{CORRUPT:%Y%m%d%H}", str(LEAD), "--config", str(config.source), "-q",
                   "--replicates", "200"])
    out = capsys.readouterr().out
    assert status == 1
    assert out.splitlines()[0] == ("+6 h, 8 inits verified, 1 skipped (no MRMS), 1 skipped (no U-Net file), "
                                   "1 failed")
    assert "skill of members vs U-Net" in out and "spread-skill ratio" in out and "ensemble_scores.json" in out
    assert "note: ECC" not in out  # these members are random draws


def test_cli_bad_arguments_and_an_empty_range_are_one_line(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["2025120100", "2025120200", "99", "--config", str(config.source)]) == 2
    assert main(["2025120100", "2025120200", "6", "--config", str(config.source)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "lead" in err[0]
    assert err[1].startswith("verify_ensemble.py: error: no ensemble stores for +6 h between 2025120100 and "
                             "2025120200")
