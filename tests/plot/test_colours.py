"""Colour scales: class boundaries, out-of-range and missing colours, ordering."""

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from pqpf.plot.colours import (
    AMOUNT_LEVELS_MM,
    MISSING_COLOUR,
    PROB_LEVELS,
    amount_style,
    format_mm,
    poor_quality_overlay,
    prob_style,
    quality_style,
    terrain_difference_style,
)


def _luminance(rgba):
    rgb = np.asarray(rgba)[..., :3]
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def _colour(cmap, norm, value):
    return np.asarray(cmap(norm(np.ma.masked_invalid(np.array([value], dtype=np.float64))))[0])


def test_amount_classes_include_their_lower_boundary():
    cmap, norm = amount_style()
    colours = np.asarray(cmap.colors)
    assert len(colours) == len(AMOUNT_LEVELS_MM) - 1 == 8
    for k, (lo, hi) in enumerate(zip(AMOUNT_LEVELS_MM[:-1], AMOUNT_LEVELS_MM[1:], strict=True)):
        np.testing.assert_array_equal(_colour(cmap, norm, lo), colours[k])
        np.testing.assert_array_equal(_colour(cmap, norm, hi * 0.999), colours[k])


def test_amount_out_of_range_and_missing_colours():
    cmap, norm = amount_style()
    assert _colour(cmap, norm, 0.099)[3] == 0.0  # below 0.1 mm: transparent, the map shows white
    assert _colour(cmap, norm, 0.0)[3] == 0.0
    np.testing.assert_allclose(_colour(cmap, norm, 50.0), to_rgba("#c51b8a"))
    np.testing.assert_allclose(_colour(cmap, norm, 400.0), to_rgba("#c51b8a"))
    np.testing.assert_allclose(_colour(cmap, norm, np.nan), to_rgba(MISSING_COLOUR))


def test_probability_classes_are_tenths_and_one_takes_the_top_class():
    cmap, norm = prob_style()
    colours = np.asarray(cmap.colors)
    np.testing.assert_allclose(PROB_LEVELS, np.linspace(0, 1, 11), atol=1e-15)
    for value, k in ((0.0, 0), (0.0999, 0), (0.1, 1), (0.35, 3), (0.9, 9), (1.0, 9)):
        np.testing.assert_array_equal(_colour(cmap, norm, value), colours[k], err_msg=f"P={value}")
    assert _colour(cmap, norm, -1.0)[3] == 0.0  # the "not shown" marker is transparent
    np.testing.assert_allclose(_colour(cmap, norm, np.nan), to_rgba(MISSING_COLOUR))


@pytest.mark.parametrize("style", [amount_style, prob_style])
def test_amount_and_probability_scales_darken_class_by_class(style):
    colours = np.asarray(style()[0].colors)
    assert (np.diff(_luminance(colours)) < -0.02).all()


def test_quality_scale_brightens_and_missing_is_distinct_from_every_class():
    cmap, norm = quality_style()
    colours = np.asarray(cmap.colors)
    assert len(colours) == 10 and (np.diff(_luminance(colours)) > 0.02).all()
    np.testing.assert_array_equal(_colour(cmap, norm, 0.75), colours[7])
    for style in (amount_style, prob_style, quality_style):
        palette = np.asarray(style()[0].colors)[:, :3]
        assert np.abs(palette - np.asarray(to_rgba(MISSING_COLOUR))[:3]).sum(axis=1).min() > 0.1
    assert to_rgba(MISSING_COLOUR)[:3] != (1.0, 1.0, 1.0)


def test_poor_quality_overlay_covers_poor_and_missing_quality_only():
    quality = np.array([[0.2, 0.5, 0.9], [np.nan, 0.49, 1.0]])
    data, cmap = poor_quality_overlay(quality, 0.5, alpha=0.45)
    np.testing.assert_array_equal(np.isnan(data), [[False, True, True], [False, False, True]])
    assert np.nanmin(data) == np.nanmax(data) == 1.0
    np.testing.assert_allclose(cmap(1.0), (0.45, 0.45, 0.45, 0.45))
    np.testing.assert_allclose(cmap(np.ma.masked_invalid([np.nan]))[0], (0, 0, 0, 0))


def test_terrain_scale_is_symmetric_about_zero_with_at_least_one_metre():
    cmap, norm = terrain_difference_style(250.0)
    np.testing.assert_allclose(norm(np.array([-250.0, 0.0, 125.0, 250.0])), [0.0, 0.5, 0.75, 1.0])
    _, flat = terrain_difference_style(0.0)
    assert (flat.vmin, flat.vmax) == (-1.0, 1.0)
    assert cmap.name == "BrBG_r"


def test_format_mm_drops_trailing_zeros():
    assert [format_mm(v) for v in (0.25, 1.0, 10.0, 2.5)] == ["0.25", "1", "10", "2.5"]
