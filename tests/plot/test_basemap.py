"""Shipped boundaries: loading offline, projection, clipping, and the lines drawn."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pqpf.grid import Grid, graf_like_grid
from pqpf.plot.basemap import (
    BOUNDARY_KINDS,
    boundaries_path,
    clip_polyline,
    draw_boundaries,
    load_boundaries,
    project_boundaries,
)
from pqpf.plot.figure import map_axes


def test_boundaries_file_loads_offline_with_plausible_content(no_network):
    lines = load_boundaries()
    assert set(lines) == set(BOUNDARY_KINDS)
    assert 40 <= len(lines["state"]) <= 400
    assert len(lines["coastline"]) > 100
    allpts = np.vstack([np.vstack(v) for v in lines.values()])
    assert allpts[:, 0].min() >= -170.0 - 1e-4 and allpts[:, 0].max() <= -45.0 + 1e-4
    assert allpts[:, 1].min() >= 10.0 - 1e-4 and allpts[:, 1].max() <= 75.0 + 1e-4
    # the US-Canada border follows 49N from about 95.15W to 122.75W
    along = 0.0
    for line in lines["country"]:
        on = np.abs(line[:, 1] - 49.0) < 0.02
        seg = on[:-1] & on[1:]
        along += np.abs(np.diff(line[:, 0]))[seg].sum()
    assert along == pytest.approx(27.6, abs=0.5)


def test_boundaries_file_ships_in_the_package_data_and_is_small():
    path = boundaries_path()
    assert path.parent.name == "data" and path.parent.parent.name == "pqpf"
    assert path.stat().st_size < 1_500_000


def test_project_boundaries_puts_state_corners_where_grid_to_xy_says():
    grid = graf_like_grid("demo")
    state = np.vstack(project_boundaries(grid)["state"])
    # Colorado/Wyoming/Utah corner and the Four Corners, within 1 km of a vertex
    x, y = grid.to_xy(np.array([-109.05, -109.045]), np.array([41.0, 36.999]))
    for xi, yi in zip(x, y, strict=True):
        assert np.hypot(state[:, 0] - xi, state[:, 1] - yi).min() < 1000.0
    # every projected point lies within the grid's outer cell edges
    half = 0.5 * grid.dx
    assert state[:, 0].min() >= grid.x[0] - half - 1e-6 and state[:, 0].max() <= grid.x[-1] + half + 1e-6
    assert state[:, 1].min() >= grid.y[0] - half - 1e-6 and state[:, 1].max() <= grid.y[-1] + half + 1e-6


def test_projected_parallel_border_is_densified_and_curved():
    grid = graf_like_grid("demo")
    lines = project_boundaries(grid)["state"]
    lon = np.linspace(-108.9, -102.2, 50)
    x, y = grid.to_xy(lon, np.full_like(lon, 41.0))
    a = np.vstack([line[:-1] for line in lines])
    b = np.vstack([line[1:] for line in lines])
    d = b - a
    dist = []
    for xi, yi in zip(x, y, strict=True):
        t = np.clip(((xi - a[:, 0]) * d[:, 0] + (yi - a[:, 1]) * d[:, 1])
                    / np.maximum((d ** 2).sum(axis=1), 1e-9), 0, 1)
        dist.append(np.hypot(a[:, 0] + t * d[:, 0] - xi, a[:, 1] + t * d[:, 1] - yi).min())
    # the 41N border is a curve on the Lambert map (sagitta ~9 km over its 590 km); the
    # drawn line follows it within 0.5 km
    assert max(dist) < 500.0
    assert max(len(line) for line in lines) > 100  # densified


def test_clip_polyline_cuts_at_the_rectangle_and_keeps_crossing_segments():
    line = np.array([[-1.0, 0.5], [0.5, 0.5], [2.0, 0.5], [2.0, 2.0], [0.8, 3.0], [-0.2, 0.0]])
    pieces = clip_polyline(line, 0.0, 1.0, 0.0, 1.0)
    assert len(pieces) == 2
    np.testing.assert_allclose(pieces[0], [[0.0, 0.5], [0.5, 0.5], [1.0, 0.5]])
    # the last segment enters through y = 1 and leaves through x = 0
    np.testing.assert_allclose(pieces[1], [[0.8 - 2.0 / 3.0, 1.0], [0.0, 0.6]], atol=1e-12)
    # a segment with both ends outside that crosses the box is kept
    crossing = clip_polyline(np.array([[-1.0, 0.5], [2.0, 0.5]]), 0.0, 1.0, 0.0, 1.0)
    np.testing.assert_allclose(crossing[0], [[0.0, 0.5], [1.0, 0.5]])
    assert clip_polyline(np.array([[2.0, 2.0], [3.0, 3.0]]), 0.0, 1.0, 0.0, 1.0) == []


def test_latlon_grid_lines_are_cut_at_the_longitude_branch_not_drawn_across():
    # MRMS-like: rows north to south, first column at 129.95W; Alaska wraps to x > 180
    grid = Grid("latitude_longitude", 350, 700, x0=-129.95, y0=54.95, dx=0.1, dy=-0.1)
    lines = project_boundaries(grid)
    steps = [np.abs(np.diff(line[:, 0])).max() for v in lines.values() for line in v]
    assert max(steps) < 0.1
    state = np.vstack(lines["state"])
    x, y = grid.to_xy(np.array([-109.045]), np.array([36.999]))  # Four Corners
    assert np.hypot(state[:, 0] - x, state[:, 1] - y).min() < 0.01


def _draw(grid, **kwargs):
    fig = Figure(figsize=(6, 4.8), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    map_axes(ax, grid, "")
    count = draw_boundaries(ax, grid, **kwargs)
    canvas.draw()
    return ax, np.asarray(canvas.buffer_rgba())[..., :3].astype(int), count


def _pixels(ax, grid, lon, lat, height):
    x, y = grid.to_xy(lon, lat)
    px, py = ax.transData.transform(np.column_stack([x, y])).T
    return (height - 1 - np.floor(py)).astype(int), np.floor(px).astype(int)


def test_state_border_pixels_have_the_line_colour_and_the_rest_stays_white():
    grid = graf_like_grid("demo")
    # wide red lines: pixels on the line's axis are pure line colour at the state
    # lines' opacity 0.75 over white: (255, 64, 64)
    ax, img, count = _draw(grid, colour="#ff0000", scale=8.0)
    assert count == sum(len(v) for v in project_boundaries(grid).values())
    height = img.shape[0]
    lon = np.linspace(-108.8, -102.3, 60)
    lon = lon[np.abs(lon + 104.05) > 0.2]  # not at the Nebraska corner, where two lines cross
    rows, cols = _pixels(ax, grid, lon, np.full(lon.size, 41.0), height)
    np.testing.assert_allclose(img[rows, cols], np.tile([255, 64, 64], (lon.size, 1)), atol=2)
    # where the Colorado-Wyoming line meets the Nebraska line both blend: 255 * 0.25 ** 2 = 16
    rows, cols = _pixels(ax, grid, np.array([-104.053]), np.array([41.0]), height)
    np.testing.assert_allclose(img[rows[0], cols[0]], [255, 16, 16], atol=2)
    # inside Wyoming, 0.6 degrees (~65 km) from any border: untouched white
    rows, cols = _pixels(ax, grid, np.linspace(-108.4, -104.6, 60), np.full(60, 41.6), height)
    assert (img[rows, cols] == 255).all()
    # inside the frame, every non-white pixel is a blend of red over white
    inner = img[3:-3, 3:-3]
    drawn = inner[(inner != 255).any(axis=2)]
    assert len(drawn) > 10_000 and (drawn[:, 0] == 255).all() and (drawn[:, 1] == drawn[:, 2]).all()


def test_default_boundary_lines_are_thin_dark_grey_along_the_colorado_wyoming_border():
    grid = graf_like_grid("demo")
    ax, img, _ = _draw(grid)
    rows, cols = _pixels(ax, grid, np.linspace(-108.8, -102.3, 60), np.full(60, 41.0), img.shape[0])
    darkest = np.array([img[r - 1:r + 2, c - 1:c + 2].sum(axis=2).min() / 3 for r, c in zip(rows, cols, strict=True)])
    assert (darkest < 200).all()
    near = np.concatenate([img[r - 1:r + 2, c - 1:c + 2].reshape(-1, 3) for r, c in zip(rows, cols, strict=True)])
    assert (np.ptp(near, axis=1) <= 2).all()  # grey: equal channels
