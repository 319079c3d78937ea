"""Printed tables of the new scores: columns and values as the stage will show them."""

from __future__ import annotations

import numpy as np

from pqpf.verify.bootstrap import DailySums, bootstrap_skills, brier_crps_names, brier_crps_skills, sum_name
from pqpf.verify.reliability import ReliabilityTable as BrierDecomposition
from pqpf.verify.report import format_decomposition, format_skill_intervals


def test_skill_interval_table_has_a_column_per_skill_and_a_crps_line():
    thresholds = (1.0, 5.0)
    daily = DailySums(brier_crps_names(thresholds))
    rng = np.random.default_rng(1)
    for d in range(10):
        values = {name: rng.uniform(50, 100) for name in daily.names}
        for t in thresholds:
            values[sum_name("sum_wo", t)] = 10.0 + rng.uniform()
            values[sum_name("sse_model", t)] = 0.8 * values[sum_name("sse_ref", t)]
        daily.add(f"202501{d:02d}", values)
    text = format_skill_intervals(bootstrap_skills(daily, brier_crps_skills(thresholds)), thresholds)
    lines = text.splitlines()
    assert "BSS vs ref [5%, 95%]" in lines[0] and "BSS vs clim [5%, 95%]" in lines[0]
    assert lines[2].startswith("    1 mm  +0.200 [+0.200, +0.200]")  # sse ratio fixed at 0.8 every day
    assert lines[-2].startswith("CRPS skill vs GRAF (binned) ")
    assert "over 10 init dates, 1000 replicates" in lines[-1]


def test_decomposition_table_prints_every_component():
    table = BrierDecomposition([0.0, 0.5, 1.0])
    table.update([0.2, 0.4, 0.6, 1.0], [0, 1, 1, 1])
    text = format_decomposition([(1.0, table.components())])
    assert text.splitlines()[2].split() == ["1", "mm", "0.14000", "0.04000", "0.06250", "0.18750", "0.02500",
                                            "0.02500"]


def test_reliability_intervals_print_populated_bins_and_mark_departures_outside_the_interval():
    from pqpf.verify.report import format_reliability_intervals

    def iv(est, lo, hi):
        return {"estimate": est, "low": lo, "high": hi, "level": 0.9, "n_days": 6, "n_replicates": 100,
                "n_valid": 100}

    curve = {"count": [50000, 3000, 999, 2000], "mean_forecast": [0.03, 0.15, 0.25, 0.85],
             "observed_frequency": [0.04, 0.16, 0.5, 0.73]}
    cells = {0: ((0.04, 0.035, 0.045), (0.01, 0.005, 0.015)), 1: ((0.16, 0.12, 0.2), (0.01, -0.03, 0.05)),
             2: ((0.5, 0.4, 0.6), (0.25, 0.15, 0.35)), 3: ((0.73, 0.61, 0.84), (-0.12, -0.24, -0.01))}
    intervals = {}
    for b, (freq, gap) in cells.items():
        intervals[f"observed_frequency@0.25mm@b{b}"] = iv(*freq)
        intervals[f"reliability_gap@0.25mm@b{b}"] = iv(*gap)
    result = {"per_threshold": [{"threshold_mm": 0.25, "reliability_curve_model": curve}], "intervals": intervals,
              "reliability_dates": {"0.25mm": [6, 6, 6, 6]}}
    text = format_reliability_intervals(result)
    lines = text.splitlines()
    assert lines[0].startswith("Reliability of the model (bins with >= 1000 points") and "90 % interval" in lines[0]
    assert "by chance happens to about 10 % of the bins" in lines[0]
    assert lines[1] == " 0.25 mm 0.030->0.040 [0.035, 0.045]*  0.15->0.16 [0.12, 0.20]   0.85->0.73 [0.61, 0.84]*"
    assert "0.25->0.50" not in text  # 999 points
    # a bin filled on two dates has a degenerate bootstrap interval: its date count instead, no mark
    result["reliability_dates"] = {"0.25mm": [6, 6, 6, 2]}
    assert format_reliability_intervals(result).splitlines()[1].endswith("0.85->0.73 [2 dates]")
    assert format_reliability_intervals({"per_threshold": result["per_threshold"], "intervals": {}}) == ""
