"""End to end on a synthetic archive: every stage through its command-line entry point.

The slow test is the honest-skill check of the issues: the trained U-Net must beat the
smoothed-GRAF reference on the held-out split, and the whole chain (inference files,
verification scores, maps) must hold together numerically.
"""

import datetime as dt
import json

import numpy as np
import pytest

from pqpf.config import load_config
from pqpf.io.netcdf import read_grid_netcdf
from pqpf.layout import probs_path, verification_dir


def test_demo_archive_ends_on_its_last_day_so_a_longer_one_only_adds_training_days(tmp_path):
    from pqpf.cli.demo import DAYS, _Plan

    plans = {days: _Plan.make(tmp_path, days, 6, 6, 1, "demo") for days in (30, DAYS)}
    assert DAYS == 56
    assert plans[DAYS].start == dt.datetime(2025, 5, 6, 0) and plans[30].start == dt.datetime(2025, 6, 1, 0)
    for plan in plans.values():
        assert plan.end == dt.datetime(2025, 6, 30, 23)
        assert (plan.first_test, plan.last_test) == (dt.datetime(2025, 6, 25, 0), dt.datetime(2025, 6, 30, 12))
    short = _Plan.make(tmp_path, 24, 6, 5, 1, "demo", last_day=dt.date(2025, 6, 24))
    assert (short.start, short.first_test, short.last_test) == (
        dt.datetime(2025, 6, 1, 0), dt.datetime(2025, 6, 20, 0), dt.datetime(2025, 6, 24, 12))


@pytest.mark.slow
def test_demo_pipeline_trains_a_model_that_beats_the_smoothed_graf_reference(tmp_path, capsys):
    from pqpf.cli.demo import run_demo

    work = tmp_path / "demo"
    assert run_demo(work, days=24, lead_h=6, test_days=5, seed=1, last_day=dt.date(2025, 6, 24),
                    ensemble_inits=2) == 0
    out = capsys.readouterr().out
    config = load_config(work / "config.ini")

    # training: the best model's held-out test split beats the smoothed-GRAF reference
    run = config.paths.trainings_dir / "resunet_2025062000_6h"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    test = rows[-1]["test"]
    assert test["bss_1mm"] > 0.0, test
    assert test["bss_0.25mm"] > 0.0, test

    # inference files: probabilities in [0, 1], non-increasing in the threshold, the
    # configured thresholds present, the checkpoint named
    first = dt.datetime(2025, 6, 20, 0)
    ds = read_grid_netcdf(probs_path(config, first, 6))
    thresholds = ds.coords["threshold"]
    for t in config.probability.thresholds_mm:
        assert np.isclose(thresholds, t).any()
    prob = ds.data["prob_exceed"]
    assert prob.min() >= 0.0 and prob.max() <= 1.0 + 1e-3
    assert (np.diff(prob, axis=0) <= 1e-3).all()  # stored to 4 significant digits
    raw = ds.data["prob_exceed_raw"].astype(float)
    graf = ds.data["graf_precipitation"]
    k1 = int(np.argmin(np.abs(thresholds - 1.0)))
    assert np.array_equal(raw[k1] == 1, graf >= 1.0)
    assert ds.attrs["checkpoint"].endswith("best.pt") and ds.attrs["lead_h"] == 6

    # verification: every threshold verified on the same good-quality points, CRPS of
    # the U-Net better than GRAF scored the same way
    vdir = verification_dir(config, first, dt.datetime(2025, 6, 24, 12), 6)
    scores = json.loads((vdir / "scores.json").read_text())
    assert len(scores["inits_used"]) == 10
    ns = {row["n"] for row in scores["per_threshold"]}
    assert len(ns) == 1 and ns.pop() > 100000
    assert scores["crps"]["crps_model"] < scores["crps"]["crps_raw_binned"]
    # out of sample, on the full fields of the held-out days (nearly dry in this short
    # archive, so the skill against the reference is noise-sized): better than climatology
    by_t = {row["threshold_mm"]: row for row in scores["per_threshold"]}
    assert by_t[0.25]["bss_vs_clim"] > 0.1 and by_t[1.0]["bss_vs_clim"] > 0.1, by_t[1.0]
    assert "BSS vs ref" in out and str(vdir / "reliability.png") in out
    for png in [vdir / "reliability.png", *config.paths.plots_dir.glob("2025062*_6h_probs.png")]:
        assert png.stat().st_size > 50_000

    # the ensemble: stamps for the maps' init only, verified with the last other held-out init
    stamps = sorted(config.paths.plots_dir.glob("*_6h_ensemble_stamps.png"))
    assert len(stamps) == 1, stamps
    shown = stamps[0].name[:10]
    (edir,) = config.paths.plots_dir.glob("verification_ensemble_*_6h")
    ens = json.loads((edir / "ensemble_scores.json").read_text())
    assert len(ens["inits_used"]) == 2 and shown in ens["inits_used"]
    assert ens["inits_used"][-1] in ("2025062412", "2025062400")
    members = ens["objects"]["sources"]["members"]["per_threshold"][0]
    assert members["n_fields"] == 2 * 8 and members["n_objects"] > 0
    assert "rain objects" in out and (edir / "object_sizes.png").stat().st_size > 20_000
