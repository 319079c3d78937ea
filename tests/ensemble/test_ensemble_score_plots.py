"""Figures of the ensemble verification: what each draws, checked on the artists and the PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.image import imread

import pqpf.plot.ensemble_scores as figs
from pqpf.io.jsonio import to_plain
from pqpf.verify.ensemble_verifier import EnsembleCase, EnsembleSettings, EnsembleVerifier

SHAPE = (48, 64)


@pytest.fixture(scope="module")
def result(synth):
    """A verification result read back from JSON (NaN as None), as the stage stores it."""
    rng = np.random.default_rng(9)
    v = EnsembleVerifier(EnsembleSettings(synth.THRESHOLDS, synth.EDGES, 6, SHAPE, 4.0, n_replicates=50))
    for i in range(3):
        bins, obs, members, graf = synth.sample_case(rng, SHAPE, 6, "under-dispersive")
        v.update(EnsembleCase(members, obs, np.ones(SHAPE, bool), np.ones(SHAPE), bins, graf), f"2025120{i + 1}")
    return json.loads(json.dumps(to_plain(v.result())))


@pytest.fixture
def kept(monkeypatch):
    figures = []
    real = figs.save_png

    def keep(fig, path):
        fig.clear = lambda *a, **k: None
        figures.append(fig)
        return real(fig, path)

    monkeypatch.setattr(figs, "save_png", keep)
    return figures


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_rank_histogram_bars_are_frequencies_relative_to_uniform(tmp_path, result, kept):
    out = figs.plot_rank_histogram(tmp_path / "rank.png", result["rank_histogram"], "rank")
    ax = kept[0].axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, np.asarray(result["rank_histogram"]["frequency"]) * 7, rtol=1e-12)
    assert len(heights) == 7 and heights[0] > 1.5 and heights[-1] > 1.5  # U-shaped (under-dispersive)
    levels = sorted(line.get_ydata()[0] for line in ax.get_lines())
    assert levels == [0.5, 1.0, 2.0]
    figs.plot_rank_histogram(tmp_path / "rank_draws.png", result["rank_histogram"], "rank", result["unet_draws"])
    step = _lines(kept[1].axes[0])["random draws from the U-Net (expected)"]
    np.testing.assert_allclose(step.get_ydata()[:7], np.asarray(result["unet_draws"]["rank_frequency"]) * 7)
    assert np.all(np.abs(step.get_ydata()[:7] - 1) < 0.2)  # the U-Net is calibrated; the members are not
    bar_colour = np.rint(np.array(ax.patches[0].get_facecolor()[:3]) * 255)
    x, y = ax.patches[0].get_x() + 0.4, 0.8  # inside the first bar, between the 0.5 and 1 lines
    px, py = ax.transData.transform((x, y))
    png = imread(out)
    np.testing.assert_allclose(np.rint(png[png.shape[0] - 1 - int(py), int(px), :3] * 255), bar_colour, atol=1)


def test_spread_skill_diagram_plots_each_populated_class(tmp_path, result, kept):
    figs.plot_spread_skill(tmp_path / "ss.png", result["spread_skill"], "ss")
    ax = kept[0].axes[0]
    line = _lines(ax)["classes of spread"]
    b = result["spread_skill"]["binned"]
    ok = [i for i, (s, r, c) in enumerate(zip(b["spread"], b["rmse"], b["count"], strict=True))
          if s and r and c > 0]
    np.testing.assert_allclose(line.get_xdata(), [b["spread"][i] for i in ok])
    np.testing.assert_allclose(line.get_ydata(), [b["rmse"][i] for i in ok])
    assert f"{result['spread_skill']['ratio']:.3f}" in ax.get_title()


def test_fss_figure_has_a_panel_per_threshold_with_every_source_and_the_useful_level(tmp_path, result, kept):
    figs.plot_fss_scales(tmp_path / "fss.png", result["fss"], "fss")
    axes = [ax for ax in kept[0].axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["\u2265 1 mm", "\u2265 5 mm"]
    for k, ax in enumerate(axes):
        lines = _lines(ax)
        members = lines["members"]
        np.testing.assert_allclose(members.get_xdata(), 4.0 * np.arange(1, 42, 2))
        np.testing.assert_allclose(members.get_ydata(),
                                   result["fss"]["sources"]["members"]["per_threshold"][k]["fss"])
        assert {"raw GRAF", "U-Net median", "member probabilities", "U-Net probabilities"} <= set(lines)
        level = result["fss"]["sources"]["members"]["per_threshold"][k]["fss_useful"]
        assert lines[f"useful ({level:.3f})"].get_ydata()[0] == pytest.approx(level)


def test_spectra_figure_draws_power_and_ratios_to_mrms(tmp_path, result, kept):
    figs.plot_spectra(tmp_path / "spec.png", result["spectra"], "spectra")
    top, bottom = kept[0].axes[:2]
    s = result["spectra"]
    power = _lines(top)["members"]
    lam = np.asarray(s["members"]["wavelength_km"])
    np.testing.assert_allclose(power.get_xdata(), lam)
    np.testing.assert_allclose(power.get_ydata(), s["members"]["power"])
    ratio_label = f"members: {s['band_ratio_vs_mrms']['members']['ratio']:.2f} in band"
    np.testing.assert_allclose(_lines(bottom)[ratio_label].get_ydata(),
                               np.asarray(s["members"]["power"]) / np.asarray(s["mrms"]["power"]), rtol=1e-12)
    assert top.get_xlim()[0] > top.get_xlim()[1]  # long waves on the left
    band = [p for p in top.patches if p.get_facecolor()[3] > 0]
    assert len(band) == 1


def test_member_reliability_draws_members_and_unet_per_threshold(tmp_path, result, kept):
    figs.plot_member_reliability(tmp_path / "rel.png", result["brier"], "rel", min_count=1)
    panels = [ax for ax in kept[0].axes if ax.get_visible()]
    assert len(panels) == 6
    row = result["brier"][1]
    lines = _lines(panels[1])
    curve = row["reliability_curve_members"]
    ok = [i for i, c in enumerate(curve["count"]) if c >= 1 and curve["mean_forecast"][i] is not None]
    np.testing.assert_allclose(lines["members"].get_xdata(), [curve["mean_forecast"][i] for i in ok])
    assert "U-Net" in lines and f"{row['bss_members_vs_unet']:+.3f}" in panels[1].get_title()
    with pytest.raises(ValueError, match="nothing to plot"):
        figs.plot_member_reliability(tmp_path / "x.png", [], "")


def test_object_size_figure_draws_the_area_share_of_every_source_per_threshold(tmp_path, result, kept):
    figs.plot_object_sizes(tmp_path / "objects.png", result["objects"], "objects")
    objects = result["objects"]
    panels = kept[0].axes
    assert len(panels) == len(objects["thresholds_mm"])
    row = objects["sources"]["members"]["per_threshold"][0]
    line = _lines(panels[0])[f"members (largest {row['max_largest_px'] * 16:,.0f} km$^2$)"]
    share = np.array([np.nan if v is None else v for v in row["area_share_at_least_px"]])
    ok = np.isfinite(share) & (share > 0)
    sizes = np.asarray(objects["size_classes_px"])[ok]
    np.testing.assert_allclose(line.get_ydata(), [*share[ok], 0.0])  # down to 0 past the largest object's class
    np.testing.assert_allclose(line.get_xdata(), [*(sizes * 16.0), 2 * sizes[-1] * 16.0])
    assert sizes[-1] <= row["max_largest_px"] < 2 * sizes[-1]
    assert line.get_ydata()[0] == pytest.approx(1.0)  # every rain point is in an object of >= 1 point
    assert {f"{lab.split(' (')[0]}" for lab in _lines(panels[0])} == {"MRMS", "members", "U-Net median", "raw GRAF"}


def test_object_size_figure_says_so_where_no_source_has_an_object(tmp_path, result, kept):
    objects = json.loads(json.dumps(result["objects"]))
    for entry in objects["sources"].values():
        last = entry["per_threshold"][-1]
        last["area_share_at_least_px"] = [None] * len(last["area_share_at_least_px"])
    figs.plot_object_sizes(tmp_path / "none.png", objects, "objects")
    empty = kept[0].axes[-1]
    assert not empty.get_lines() and empty.get_legend() is None
    assert [t.get_text() for t in empty.texts] == ["no objects"]
