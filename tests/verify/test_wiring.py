"""The stage's loop as the lead will wire it: true-area weights, a fresh Verifier per init
merged into the total, per-date sums for the bootstrap, FSS of model and GRAF in the same
pass; everything JSON-ready and printable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pqpf.grid import graf_like_grid
from pqpf.verify.area import area_weights
from pqpf.verify.bootstrap import DailySums, bootstrap_skills, brier_crps_day_sums, brier_crps_names, brier_crps_skills
from pqpf.verify.fss import FssAccumulator
from pqpf.verify.report import format_fss_table, format_skill_intervals, fss_csv_rows
from pqpf.verify.verifier import Verifier

THRESHOLDS = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)
EDGES = (0.0, 0.25, 1.0, 2.5, 5.0, 10.0, 25.0)
FSS_THRESHOLDS = (1.0, 5.0, 10.0)


def _case(rng, shape):
    smooth = np.cumsum(np.cumsum(rng.standard_normal(shape), 0), 1)
    smooth = (smooth - smooth.mean()) / smooth.std()
    obs = np.round(np.clip(np.exp(1.5 * smooth + rng.normal(0, 0.5, shape)) - 1.0, 0, None), 2)
    graf = np.round(np.clip(np.exp(1.5 * smooth + rng.normal(0, 0.8, shape)) - 1.0, 0, None), 2)
    bins = rng.dirichlet(np.ones(len(EDGES)), shape).transpose(2, 0, 1)
    exceed = 1.0 - np.cumsum(bins, axis=0)[:-1]  # P(>= e_k), k = 1..K-1, the thresholds here
    exceed = np.clip(exceed, 0.0, 1.0)
    raw = np.stack([(graf >= t).astype(float) for t in THRESHOLDS])
    return obs, graf, exceed, raw, exceed[::-1].copy() * 0.5 + 0.25 * raw, bins


def test_stage_loop_with_area_weights_bootstrap_and_fss():
    grid = graf_like_grid("demo").subgrid(0, 60, 0, 80)
    area_w = area_weights(grid)
    rng = np.random.default_rng(1)
    total = Verifier(THRESHOLDS, bin_edges_mm=EDGES)
    check = Verifier(THRESHOLDS, bin_edges_mm=EDGES)
    daily = DailySums(brier_crps_names(THRESHOLDS))
    fss = FssAccumulator({"model": "prob", "graf": "amount"}, FSS_THRESHOLDS, grid_spacing_km=abs(grid.dx) / 1000)
    pick = [THRESHOLDS.index(t) for t in FSS_THRESHOLDS]
    for init in ("2025120100", "2025120112", "2025120200", "2025120212", "2025120300"):
        obs, graf, model, raw, ref, bins = _case(rng, grid.shape)
        good = rng.uniform(size=grid.shape) > 0.1
        weight = np.where(good, area_w, 0.0)
        one = Verifier(THRESHOLDS, bin_edges_mm=EDGES)
        one.update(model, raw, np.clip(ref, 0, 1), obs, weight, model_bin_probs=bins, graf_mm=graf)
        check.update(model, raw, np.clip(ref, 0, 1), obs, weight, model_bin_probs=bins, graf_mm=graf)
        total.merge(one)
        daily.add(init[:8], brier_crps_day_sums(one.sums, one.crps_sums, THRESHOLDS))
        fss.update({"model": model[pick], "graf": graf}, obs, valid=good, weight=area_w)
    np.testing.assert_allclose(total.sums, check.sums, rtol=1e-12)
    intervals = bootstrap_skills(daily, brier_crps_skills(THRESHOLDS), n_replicates=200)
    for k, t in enumerate(THRESHOLDS):
        iv = intervals[f"bss_vs_ref@{t:g}mm"]
        assert iv.estimate == pytest.approx(total.result()["per_threshold"][k]["bss_vs_ref"], rel=1e-12)
        assert iv.n_days == 3
    scores = {**total.result(), "intervals": {k: v.as_dict() for k, v in intervals.items()}, "fss": fss.result()}
    json.dumps(scores)  # JSON-ready
    text = format_skill_intervals(intervals, THRESHOLDS) + "\n" + format_fss_table(fss.result())
    assert "BSS vs ref [5%, 95%]" in text and "useful from" in text
    assert len(fss_csv_rows(fss.result())) == 2 * 3 * 21
