import datetime as dt
import json
import socket

import numpy as np
import pytest
from matplotlib.image import imread

import pqpf.plot.basemap as basemap
from pqpf.grid import graf_like_grid
from pqpf.plot import (
    draw_boundaries,
    forecast_title,
    plot_fields_side_by_side,
    plot_patch_samples,
    plot_probability_maps,
    plot_reliability,
)
from pqpf.plot.basemap import BOUNDARY_KINDS, clip_polyline, load_boundaries, project_boundaries
from pqpf.plot.figure import map_axes
from pqpf.verification import Verifier

THRESHOLDS = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in a test that must run offline")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _rain(grid, seed=0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(size=grid.shape), 6)
    noise /= noise.std()
    return np.where(noise > 0.5, 3 * (np.exp(1.8 * (noise - 0.5)) - 1), 0.0).astype(np.float32)


def _png(path):
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img[..., :3]


def _dark_pixels(img, level=0.45):
    return (img.max(axis=2) < level)


# ---- boundaries file and projection ------------------------------------------------------


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


def test_boundaries_file_is_small():
    from pqpf.plot.basemap import boundaries_path

    assert boundaries_path().stat().st_size < 1_500_000


def test_project_boundaries_puts_state_corners_where_grid_to_xy_says():
    grid = graf_like_grid("demo")
    state = np.vstack(project_boundaries(grid)["state"])
    # Colorado/Wyoming/Utah corner and the Four Corners, within 1 km of a vertex
    x, y = grid.to_xy(np.array([-109.05, -109.045]), np.array([41.0, 36.999]))
    for xi, yi in zip(x, y):
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
    for xi, yi in zip(x, y):
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


def test_boundary_pixels_lie_along_colorado_wyoming_border():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = graf_like_grid("demo")
    fig = Figure(figsize=(6, 4.8), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    map_axes(ax, grid, "")
    assert draw_boundaries(ax, grid) > 0
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[..., :3] / 255.0
    dark = _dark_pixels(img, 0.7)
    height = img.shape[0]

    def near_dark(lon, lat, radius=2):
        x, y = grid.to_xy(lon, lat)
        px, py = ax.transData.transform(np.column_stack([x, y])).T
        rows, cols = np.rint(height - py).astype(int), np.rint(px).astype(int)
        return np.array([dark[max(r - radius, 0):r + radius + 1,
                              max(c - radius, 0):c + radius + 1].any()
                         for r, c in zip(rows, cols)])

    on_border = near_dark(np.linspace(-108.8, -102.3, 60), np.full(60, 41.0))
    inside_wyoming = near_dark(np.linspace(-108.4, -104.6, 60), np.full(60, 41.6))
    assert on_border.mean() > 0.95
    assert inside_wyoming.mean() < 0.05


# ---- figures -----------------------------------------------------------------------------


def test_probability_maps_png_has_panels_colours_and_boundaries(tmp_path, no_network, monkeypatch):
    grid = graf_like_grid("demo")
    graf = _rain(grid)
    from pqpf.reference import smoothed_exceedance

    prob = smoothed_exceedance(graf, THRESHOLDS, 5.0)
    title = forecast_title("test", dt.datetime(2025, 12, 4, 12), 12)
    assert "valid 2025-12-05 00 UTC" in title
    out = plot_probability_maps(tmp_path / "p.png", grid, graf, prob, THRESHOLDS, title)
    assert out == tmp_path / "p.png"
    img = _png(out)
    assert img.shape[:2] == (1051, 1800)
    assert img.std() > 0.1
    assert len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]  # no temporary left

    # the same figure without boundary lines has clearly fewer dark pixels
    zero = np.zeros_like(graf)
    one = dict(show_thresholds=(1.0,))
    with_lines = _png(plot_probability_maps(tmp_path / "a.png", grid, zero, prob * 0, THRESHOLDS, "", **one))
    monkeypatch.setattr(basemap, "project_boundaries", lambda grid: {})
    without = _png(plot_probability_maps(tmp_path / "b.png", grid, zero, prob * 0, THRESHOLDS, "", **one))
    assert _dark_pixels(with_lines, 0.7).sum() > _dark_pixels(without, 0.7).sum() + 1500


def test_probability_maps_validate_shapes_and_thresholds(tmp_path):
    grid = graf_like_grid("demo")
    graf = np.zeros(grid.shape, np.float32)
    with pytest.raises(ValueError, match="prob must have shape"):
        plot_probability_maps(tmp_path / "x.png", grid, graf, np.zeros((2, 3, 3)), THRESHOLDS, "")
    with pytest.raises(ValueError, match="show_thresholds"):
        plot_probability_maps(tmp_path / "x.png", grid, graf, np.zeros((6, *grid.shape)), THRESHOLDS,
                              "", show_thresholds=(3.0,))
    assert not any(tmp_path.iterdir())


def test_fields_side_by_side_png(tmp_path):
    grid = graf_like_grid("demo")
    graf = _rain(grid, 1)
    mrms = np.roll(graf, 6, axis=1)
    mrms[:30, :40] = np.nan
    quality = np.clip(np.linspace(1.2, -0.2, grid.nx)[None, :] * np.ones(grid.shape), 0, 1)
    out = plot_fields_side_by_side(tmp_path / "s.png", grid, graf, mrms, quality, "GRAF vs MRMS")
    img = _png(out)
    assert img.shape[1] > 3 * img.shape[0] > 1200
    assert img.std() > 0.1


def test_patch_samples_png_and_channel_lookup(tmp_path):
    rng = np.random.default_rng(3)
    n, p = 20, 32
    graf = rng.gamma(0.5, 3, (n, p, p))
    feats = np.stack([np.log1p(graf), rng.normal(0, 100, (n, p, p)), rng.normal(size=(n, p, p))], 1)
    names = ["graf_log1p", "terrain_diff_m", "slope_x"]
    quality = np.ones((n, p, p))
    quality[:, :, :5] = 0.1
    out = plot_patch_samples(tmp_path / "patches.png", feats.astype(np.float32), names, graf, quality,
                             n=6, seed=1, graf_to_mm=np.expm1)
    img = _png(out)
    assert img.shape[1] > 1.5 * img.shape[0] and img.std() > 0.1
    with pytest.raises(ValueError, match="no GRAF amount channel"):
        plot_patch_samples(tmp_path / "x.png", feats, ["a", "terrain_diff", "c"], graf, quality)
    with pytest.raises(ValueError, match="features must have shape"):
        plot_patch_samples(tmp_path / "x.png", feats, names[:2], graf, quality)


def test_reliability_png_from_verifier_result_and_json(tmp_path):
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
    img = _png(out)
    assert img.shape[:2] == (int(round((4.3 * 2 + 0.5) * 120)), int(round(4.3 * 3 * 120)))
    assert img.std() > 0.1
    with pytest.raises(ValueError, match="empty"):
        plot_reliability(tmp_path / "none.png", [], "")


def test_latlon_grid_lines_are_cut_at_the_longitude_branch_not_drawn_across():
    from pqpf.grid import Grid

    # MRMS-like: rows north to south, first column at 129.95W; Alaska wraps to x > 180
    grid = Grid("latitude_longitude", 350, 700, x0=-129.95, y0=54.95, dx=0.1, dy=-0.1)
    lines = project_boundaries(grid)
    steps = [np.abs(np.diff(line[:, 0])).max() for v in lines.values() for line in v]
    assert max(steps) < 0.1
    state = np.vstack(lines["state"])
    x, y = grid.to_xy(np.array([-109.045]), np.array([36.999]))  # Four Corners
    assert np.hypot(state[:, 0] - x, state[:, 1] - y).min() < 0.01
