"""Reliability diagrams: the curves and inset bars drawn equal the table's numbers."""

import json

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from pqpf.plot import plot_reliability
from pqpf.plot.reliability import MODEL_COLOUR, REF_COLOUR
from pqpf.verify.verifier import Verifier

THRESHOLDS = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)
EDGES = np.round(np.linspace(0.0, 1.0, 11), 2).tolist()


def _table(mean, obs, count):
    count = np.asarray(count, dtype=np.float64)
    freq = count / count.sum()
    return {"prob_bin_edges": EDGES, "count": count.astype(int).tolist(),
            "mean_forecast": mean, "observed_frequency": obs,
            "frequency_of_use": [None if c == 0 else float(f) for c, f in zip(count, freq, strict=True)]}


# Bin 3 is empty (None, as JSON has it) and bin 6 holds 50 points, below min_count=100.
MODEL = _table([0.03, 0.14, 0.25, None, 0.46, 0.55, 0.66, 0.74, 0.85, 0.97],
               [0.02, 0.12, 0.30, None, 0.40, 0.60, 0.20, 0.80, 0.90, 0.95],
               [10000, 5000, 800, 0, 400, 300, 50, 200, 150, 120])
REF = _table([0.04, 0.15, 0.24, 0.35, 0.44, None, None, None, None, None],
             [0.10, 0.20, 0.15, 0.50, 0.30, None, None, None, None, None],
             [12000, 3000, 900, 600, 100, 0, 0, 0, 0, 0])
ENTRY = {"threshold_mm": 1.0, "n": 17020, "base_rate": 0.12, "bss_vs_ref": 0.15, "bss_vs_clim": 0.2,
         "bss_ref_vs_clim": 0.05, "reliability_curve_model": MODEL, "reliability_curve_ref": REF}


def _panel(fig, threshold_label):
    panels = [ax for ax in fig.axes if ax.get_title().startswith(f"\u2265 {threshold_label} mm ")]
    assert len(panels) == 1
    return panels[0]


def _curve_line(ax, colour):
    lines = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and to_rgb(ln.get_color()) == to_rgb(colour)]
    assert len(lines) == 1
    return lines[0]


def _bar_heights(inset, colour):
    return np.array([p.get_height() for p in inset.patches if to_rgb(p.get_facecolor()) == to_rgb(colour)])


def _as_float(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


@pytest.fixture(scope="module")
def hand_table_figure(tmp_path_factory, keeping_figures, png_rgb):
    with keeping_figures() as kept:
        out = plot_reliability(tmp_path_factory.mktemp("reliability") / "rel.png", [ENTRY], "lead 6 h")
    return kept[0], png_rgb(out)


def test_curves_are_the_tables_bins_with_enough_points(hand_table_figure):
    fig, _ = hand_table_figure
    ax = _panel(fig, "1")
    model = _curve_line(ax, MODEL_COLOUR)
    keep = [0, 1, 2, 4, 5, 7, 8, 9]  # not the empty bin 3, not bin 6 with 50 points
    np.testing.assert_array_equal(model.get_xdata(), _as_float(MODEL["mean_forecast"])[keep])
    np.testing.assert_array_equal(model.get_ydata(), _as_float(MODEL["observed_frequency"])[keep])
    ref = _curve_line(ax, REF_COLOUR)
    np.testing.assert_array_equal(ref.get_xdata(), [0.04, 0.15, 0.24, 0.35, 0.44])
    np.testing.assert_array_equal(ref.get_ydata(), [0.10, 0.20, 0.15, 0.50, 0.30])


def test_inset_bars_are_the_frequency_of_use(hand_table_figure):
    fig, _ = hand_table_figure
    (inset,) = _panel(fig, "1").child_axes
    assert inset.get_title() == "frequency of use" and inset.get_yscale() == "log"
    for table, colour in ((MODEL, MODEL_COLOUR), (REF, REF_COLOUR)):
        # every bin has a bar, the bins with few points too; an empty bin's has no height
        expected = _as_float(table["frequency_of_use"])
        np.testing.assert_allclose(_bar_heights(inset, colour), expected, rtol=1e-12, equal_nan=True)
    assert sum(_as_float(MODEL["frequency_of_use"])[[0, 1, 2, 4, 5, 6, 7, 8, 9]]) == pytest.approx(1.0, abs=1e-12)
    # log axis from below the rarest bin (50 / 17020 = 2.9e-3 -> 1e-3) to 1.5
    np.testing.assert_allclose(inset.get_ylim(), (1e-3, 1.5), rtol=1e-12)


def test_climatology_and_no_skill_lines_follow_the_base_rate(hand_table_figure):
    fig, _ = hand_table_figure
    ax = _panel(fig, "1")
    data = {tuple(np.round(np.concatenate([ln.get_xdata(), ln.get_ydata()]).astype(float), 12))
            for ln in ax.get_lines() if ln.get_marker() in ("None", "", None)}
    assert (0.0, 1.0, 0.0, 1.0) in data  # diagonal
    assert (0.0, 1.0, 0.12, 0.12) in data  # climatology, horizontal
    assert (0.12, 0.12, 0.0, 1.0) in data  # climatology, vertical
    assert (0.0, 1.0, 0.06, 0.56) in data  # no skill: halfway between diagonal and climatology


def test_panel_title_and_legend_state_sample_size_base_rate_and_skill(hand_table_figure):
    fig, _ = hand_table_figure
    ax = _panel(fig, "1")
    assert ax.get_title() == "\u2265 1 mm   n=17,020   base rate 0.120\nU-Net BSS vs smoothed GRAF +0.150"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["smoothed GRAF (BSS clim +0.050)", "U-Net (BSS clim +0.200)"]
    assert fig.get_suptitle() == "lead 6 h"


def test_model_markers_are_drawn_in_the_model_colour_where_the_curve_says(hand_table_figure, pixel_of, rgb255):
    fig, png = hand_table_figure
    ax = _panel(fig, "1")
    rows, cols = pixel_of(ax, [0.74, 0.85], [0.80, 0.90], png.shape[0])  # far from the reference curve
    for r, c in zip(rows, cols, strict=True):
        np.testing.assert_allclose(png[r, c], rgb255(MODEL_COLOUR), atol=1)


def test_reliability_from_verifier_result_through_json(tmp_path, kept_figures, png_rgb):
    rng = np.random.default_rng(4)
    v = Verifier(THRESHOLDS)
    n = 50_000
    scale = rng.gamma(0.5, 6, n) + 1e-3
    p_model = np.stack([np.exp(-t / scale) for t in THRESHOLDS])
    u = rng.uniform(size=n)
    obs = np.zeros(n)
    for k, t in enumerate(THRESHOLDS):
        obs = np.where(u < p_model[k], t + 0.01, obs)
    v.update(p_model, (p_model > 0.5).astype(float), np.clip(p_model * 1.2, 0, 1), obs, np.ones(n))
    per_threshold = json.loads(json.dumps(v.result()))["per_threshold"]
    out = plot_reliability(tmp_path / "rel.png", per_threshold, "lead 12 h")
    assert png_rgb(out).shape == (int(round((4.3 * 2 + 0.5) * 120)), int(round(4.3 * 3 * 120)), 3)
    fig = kept_figures[0]
    for entry in per_threshold:
        ax = _panel(fig, f"{entry['threshold_mm']:g}")
        table = entry["reliability_curve_model"]
        mean, obs_freq = _as_float(table["mean_forecast"]), _as_float(table["observed_frequency"])
        ok = np.isfinite(mean) & (np.asarray(table["count"]) >= 100)
        line = _curve_line(ax, MODEL_COLOUR)
        np.testing.assert_allclose(line.get_xdata(), mean[ok], rtol=1e-12)
        np.testing.assert_allclose(line.get_ydata(), obs_freq[ok], rtol=1e-12)
        (inset,) = ax.child_axes
        np.testing.assert_allclose(_bar_heights(inset, MODEL_COLOUR),
                                   np.where(_as_float(table["frequency_of_use"]) > 0,
                                            _as_float(table["frequency_of_use"]), np.nan),
                                   rtol=1e-12, equal_nan=True)
    assert ok.sum() >= 3  # the 25 mm panel still has a curve


def test_reliability_refuses_an_empty_table(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_reliability(tmp_path / "none.png", [], "")
    assert not any(tmp_path.iterdir())


def test_interval_bars_span_each_bins_bootstrap_interval(tmp_path, keeping_figures):
    """Bars at the model's mean forecast from low to high of observed_frequency@1mm@b{i};
    none for a bin below min_count (6) or a degenerate interval (low == high, bin 1)."""
    intervals = {f"observed_frequency@1mm@b{b}": {"low": 0.1 * b, "high": 0.1 * b + 0.05} for b in range(10)}
    intervals["observed_frequency@1mm@b1"] = {"low": 0.12, "high": 0.12}
    with keeping_figures() as kept:
        plot_reliability(tmp_path / "rel.png", [ENTRY], "lead 6 h", intervals=intervals)
    ax = _panel(kept[0], "1")
    bars = sorted((ln.get_xdata()[0], *ln.get_ydata()) for ln in ax.get_lines()
                  if ln.get_marker() in ("None", "", None) and len(ln.get_xdata()) == 2
                  and ln.get_xdata()[0] == ln.get_xdata()[1] and to_rgb(ln.get_color()) == to_rgb(MODEL_COLOUR))
    expected = [(MODEL["mean_forecast"][b], 0.1 * b, 0.1 * b + 0.05) for b in (0, 2, 4, 5, 7, 8, 9)]
    np.testing.assert_allclose(np.array(bars, dtype=float), expected, rtol=1e-12)
