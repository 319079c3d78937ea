"""Map figures: what each grid point shows, read back from the written PNG."""

import datetime as dt

import numpy as np
import pytest

import pqpf.plot.basemap as basemap
from pqpf.grid import graf_like_grid
from pqpf.plot import forecast_title, plot_fields_side_by_side, plot_probability_maps
from pqpf.plot.colours import MISSING_COLOUR, amount_style, prob_style, quality_style

THRESHOLDS = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)
PROB_TITLE = "P(1-h amount \u2265 1 mm)"
AMOUNT_TITLE = "GRAF 1-h amount (mm)"
#: Grid points (row, column) of the demo grid at least 30 km from any drawn boundary.
POINTS = [(50, 40), (50, 125), (50, 210), (150, 125), (150, 210), (100, 125), (100, 210)]
#: Half-width (grid points) of the uniform block around each point: the image is
#: resampled with a smoothing filter, so only a block's interior keeps its exact colour.
HALF = 3


def _blocks(grid, values, fill=0.0):
    field = np.full(grid.shape, fill, np.float64)
    for (j, i), v in zip(POINTS, values, strict=False):
        field[j - HALF:j + HALF + 1, i - HALF:i + HALF + 1] = v
    return field


def _colour_at(fig, ax, png, pixel_of, j, i, grid):
    rows, cols = pixel_of(ax, grid.x[i], grid.y[j], png.shape[0])
    assert int(fig.bbox.height) == png.shape[0]  # Agg renders int(height) rows, y up from the last
    return png[rows[0], cols[0]]


def test_demo_points_are_away_from_boundary_lines():
    grid = graf_like_grid("demo")
    lines = np.vstack([np.vstack(v) for v in basemap.project_boundaries(grid).values() if v])
    for j, i in POINTS:  # vertices are at most ~5 km apart: 30 km leaves no line in a block
        assert np.hypot(lines[:, 0] - grid.x[i], lines[:, 1] - grid.y[j]).min() > 30_000.0


@pytest.fixture(scope="module")
def probability_map(tmp_path_factory, keeping_figures, png_rgb):
    """The demo grid with blocks of known probability and amount; returns what to inspect."""
    grid = graf_like_grid("demo")
    #            class 3  class 9  class 0  below  missing  P=1  class 0 edge
    prob_1mm = [0.35, 0.95, 0.03, 0.01, np.nan, 1.0, 0.02]
    #            2.5-5  over 50  below 0.1  missing  0.1 (lowest edge)  1-2.5  0.25-0.5
    graf_mm = [3.0, 60.0, 0.05, np.nan, 0.1, 2.0, 0.3]
    prob = np.zeros((len(THRESHOLDS), *grid.shape))
    prob[1] = _blocks(grid, prob_1mm)
    with keeping_figures() as kept:
        out = plot_probability_maps(tmp_path_factory.mktemp("maps") / "p.png", grid, _blocks(grid, graf_mm),
                                    prob, THRESHOLDS, "test", show_thresholds=(1.0,))
    return grid, kept[0], png_rgb(out), prob_1mm, graf_mm


def test_probability_map_colours_each_point_with_its_class_colour(probability_map, pixel_of, axes_titled):
    grid, fig, png, prob_1mm, _ = probability_map
    ax = axes_titled(fig, PROB_TITLE)
    cmap, _ = prob_style()
    palette = np.rint(np.asarray(cmap.colors)[:, :3] * 255).astype(np.uint8)
    expected_class = {0: 3, 1: 9, 2: 0, 5: 9, 6: 0}  # point -> class index; P = 1 is the top class
    for k, cls in expected_class.items():
        j, i = POINTS[k]
        got = _colour_at(fig, ax, png, pixel_of, j, i, grid)
        np.testing.assert_allclose(got, palette[cls], atol=1, err_msg=f"P={prob_1mm[k]}")
    assert len({tuple(palette[c]) for c in (0, 3, 9)}) == 3  # the classes are distinguishable


def test_probability_below_lowest_shown_is_white_and_missing_is_grey(probability_map, pixel_of, axes_titled,
                                                                     rgb255):
    grid, fig, png, _, _ = probability_map
    ax = axes_titled(fig, PROB_TITLE)
    below = _colour_at(fig, ax, png, pixel_of, *POINTS[3], grid)
    missing = _colour_at(fig, ax, png, pixel_of, *POINTS[4], grid)
    np.testing.assert_array_equal(below, [255, 255, 255])
    np.testing.assert_allclose(missing, rgb255(MISSING_COLOUR), atol=1)
    np.testing.assert_array_equal(rgb255(MISSING_COLOUR), [212, 212, 212])


def test_amount_panel_shows_the_amount_classes(probability_map, pixel_of, axes_titled, rgb255):
    grid, fig, png, _, graf_mm = probability_map
    ax = axes_titled(fig, AMOUNT_TITLE)
    cmap, _ = amount_style()
    palette = np.rint(np.asarray(cmap.colors)[:, :3] * 255).astype(np.uint8)
    # levels 0.1 0.25 0.5 1 2.5 5 ...: 3 mm is class 4, 0.1 mm class 0, 2 mm class 3, 0.3 mm class 1
    for k, expected in ((0, palette[4]), (4, palette[0]), (5, palette[3]), (6, palette[1]),
                        (1, rgb255("#c51b8a")), (2, [255, 255, 255]), (3, rgb255(MISSING_COLOUR))):
        got = _colour_at(fig, ax, png, pixel_of, *POINTS[k], grid)
        np.testing.assert_allclose(got, expected, atol=1, err_msg=f"GRAF {graf_mm[k]} mm")


def test_state_borders_are_drawn_where_the_boundaries_are(probability_map, pixel_of, axes_titled):
    grid, fig, png, _, _ = probability_map
    ax = axes_titled(fig, PROB_TITLE)
    grey = png.astype(int)

    def darkest_near(lon, lat, radius=1):
        x, y = grid.to_xy(lon, lat)
        rows, cols = pixel_of(ax, x, y, png.shape[0])
        return np.array([grey[r - radius:r + radius + 1, c - radius:c + radius + 1].sum(axis=2).min() / 3
                         for r, c in zip(rows, cols, strict=True)])

    # Colorado-Wyoming border along 41N; 0.6 degrees north is inside Wyoming
    on_border = darkest_near(np.linspace(-108.8, -102.3, 40), np.full(40, 41.0))
    inside = darkest_near(np.linspace(-108.4, -104.6, 40), np.full(40, 41.6))
    assert (on_border < 200).all()  # a 0.75 px dark grey line, antialiased over white
    assert (inside == 255).all()


def test_boundary_lines_are_the_only_difference_a_basemap_makes(tmp_path, png_rgb, monkeypatch, kept_figures):
    grid = graf_like_grid("demo")
    zero = np.zeros((len(THRESHOLDS), *grid.shape))
    with_lines = png_rgb(plot_probability_maps(tmp_path / "a.png", grid, zero[0], zero, THRESHOLDS, "",
                                               show_thresholds=(1.0,)))
    monkeypatch.setattr(basemap, "project_boundaries", lambda grid: {})
    without = png_rgb(plot_probability_maps(tmp_path / "b.png", grid, zero[0], zero, THRESHOLDS, "",
                                            show_thresholds=(1.0,)))
    changed = (with_lines != without).any(axis=2)
    assert changed.sum() > 1500  # every line pixel of two panels
    inside, panels = np.zeros_like(changed), np.zeros_like(changed)
    height = with_lines.shape[0]
    for ax in kept_figures[1].axes[:2]:  # the two map panels
        x0, y0, x1, y1 = np.asarray(ax.get_window_extent().extents)
        top, bottom, left, right = int(height - y1), int(height - y0), int(x0), int(x1)
        inside[top + 2:bottom - 2, left + 2:right - 2] = True  # 2 px in from the frame
        panels[top - 2:bottom + 3, left - 2:right + 3] = True
    assert not (changed & ~panels).any()  # nothing outside the maps (lines end on the frames)
    assert (without[changed & inside] == 255).all()  # where lines are, the empty map is white
    assert (with_lines[changed & inside].astype(int).sum(axis=1) < 3 * 255).all()  # ...and they darken it


def test_probability_maps_png_layout_and_atomic_write(tmp_path, png_rgb, no_network):
    grid = graf_like_grid("demo")
    prob = np.zeros((len(THRESHOLDS), *grid.shape))
    title = forecast_title("test", dt.datetime(2025, 12, 4, 12), 12)
    assert title == "test   init 2025-12-04 12 UTC  +12 h   valid 2025-12-05 00 UTC"
    out = plot_probability_maps(tmp_path / "p.png", grid, prob[0], prob, THRESHOLDS, title)
    assert out == tmp_path / "p.png"
    assert png_rgb(out).shape == (1051, 1800, 3)  # 2 x 3 panels at 120 dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]  # no temporary left


def test_probability_maps_validate_shapes_and_thresholds(tmp_path):
    grid = graf_like_grid("demo")
    graf = np.zeros(grid.shape, np.float32)
    with pytest.raises(ValueError, match="prob must have shape"):
        plot_probability_maps(tmp_path / "x.png", grid, graf, np.zeros((2, 3, 3)), THRESHOLDS, "")
    with pytest.raises(ValueError, match="show_thresholds"):
        plot_probability_maps(tmp_path / "x.png", grid, graf, np.zeros((6, *grid.shape)), THRESHOLDS,
                              "", show_thresholds=(3.0,))
    with pytest.raises(ValueError, match="graf_mm must have the grid's shape"):
        plot_probability_maps(tmp_path / "x.png", grid, graf[:5], np.zeros((6, *grid.shape)), THRESHOLDS, "")
    assert not any(tmp_path.iterdir())


def test_side_by_side_shows_amounts_poor_quality_shade_and_quality(tmp_path, kept_figures, png_rgb, pixel_of,
                                                                   axes_titled, rgb255):
    grid = graf_like_grid("demo")
    graf = _blocks(grid, [3.0, 0.0, 0.0, 0.0])
    mrms = _blocks(grid, [0.0, 3.0, 3.0, np.nan])
    quality = _blocks(grid, [1.0, 1.0, 0.2, np.nan], fill=0.75)
    out = plot_fields_side_by_side(tmp_path / "s.png", grid, graf, mrms, quality, "GRAF vs MRMS")
    fig, png = kept_figures[0], png_rgb(out)
    amount = np.asarray(amount_style()[0].colors)[4, :3]  # 2.5-5 mm
    shade = (0.45, 0.45, 0.45, 0.45)
    graf_ax = axes_titled(fig, AMOUNT_TITLE)
    mrms_ax = axes_titled(fig, "MRMS 1-h amount (mm); grey: quality < 0.5")
    quality_ax = axes_titled(fig, "MRMS quality (white line: 0.5)")
    np.testing.assert_allclose(_colour_at(fig, graf_ax, png, pixel_of, *POINTS[0], grid),
                               rgb255(amount), atol=1)
    np.testing.assert_allclose(_colour_at(fig, graf_ax, png, pixel_of, *POINTS[1], grid), [255] * 3, atol=0)
    expected_mrms = [rgb255(amount), rgb255(shade, under=amount),
                     rgb255(shade, under=np.asarray(rgb255(MISSING_COLOUR)) / 255.0)]
    for k, expected in zip((1, 2, 3), expected_mrms, strict=True):
        np.testing.assert_allclose(_colour_at(fig, mrms_ax, png, pixel_of, *POINTS[k], grid), expected,
                                   atol=1, err_msg=f"MRMS point {k}")
    palette = np.asarray(quality_style()[0].colors)[:, :3]
    for k, expected in ((1, rgb255(palette[9])), (3, rgb255(MISSING_COLOUR)), (4, rgb255(palette[7]))):
        np.testing.assert_allclose(_colour_at(fig, quality_ax, png, pixel_of, *POINTS[k], grid), expected,
                                   atol=1, err_msg=f"quality point {k}")
