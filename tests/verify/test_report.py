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
