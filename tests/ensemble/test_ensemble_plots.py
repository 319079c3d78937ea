"""Postage stamps and the member GIF: what each pixel shows, read back from the files."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.image import imread
from PIL import Image

import pqpf.plot.basemap as basemap
import pqpf.plot.ensemble as ensemble_plot
from pqpf.grid import graf_like_grid
from pqpf.plot.colours import MISSING_COLOUR, amount_style
from pqpf.plot.ensemble import member_title, plot_postage_stamps, write_member_gif

#: Grid points of the demo grid at least 30 km from any boundary line (tests/plot/test_maps.py).
POINTS = [(50, 40), (50, 125), (50, 210), (150, 125), (150, 210), (100, 125), (100, 210)]
HALF = 5  # stamps are ~1.25 px per grid point: an 11-point block keeps exact colours inside


def _palette():
    return np.rint(np.asarray(amount_style()[0].colors)[:, :3] * 255).astype(int)


def _blocks(grid, values, fill=0.0):
    field = np.full(grid.shape, fill)
    for (j, i), v in zip(POINTS, values, strict=False):
        field[j - HALF:j + HALF + 1, i - HALF:i + HALF + 1] = v
    return field


def _pixel(ax, x, y, height):
    px, py = ax.transData.transform(np.column_stack([np.atleast_1d(x), np.atleast_1d(y)])).T
    return (height - 1 - np.floor(py)).astype(int), np.floor(px).astype(int)


def _colour(img, ax, grid, j, i):
    rows, cols = _pixel(ax, grid.x[i], grid.y[j], img.shape[0])
    return img[rows[0], cols[0], :3].astype(int)


def _axes(fig, title):
    found = [ax for ax in fig.axes if ax.get_title() == title]
    assert len(found) == 1, [ax.get_title() for ax in fig.axes]
    return found[0]


@contextlib.contextmanager
def _keeping(monkeypatch):
    kept = []
    real = ensemble_plot.save_png

    def keep(fig, path):
        fig.clear = lambda *a, **k: None
        kept.append(fig)
        return real(fig, path)

    monkeypatch.setattr(ensemble_plot, "save_png", keep)
    yield kept


@pytest.fixture(scope="module")
def grid():
    return graf_like_grid("demo")


@pytest.fixture(scope="module")
def members(grid):
    # member k: block 0 holds amount_k (one class per member), block 1 is missing in member 0
    amounts = [0.3, 0.7, 1.5, 3.0, 7.0, 60.0]
    out = np.stack([_blocks(grid, [a, 0.05]) for a in amounts])
    j, i = POINTS[1]
    out[0, j - HALF:j + HALF + 1, i - HALF:i + HALF + 1] = np.nan
    return out, amounts


def test_stamps_draw_each_member_and_the_references_in_their_class_colour(tmp_path, grid, members, monkeypatch):
    m, amounts = members
    mrms = _blocks(grid, [2.0, np.nan, 12.0])
    quality = np.ones(grid.shape)
    quality[POINTS[2][0] - HALF:POINTS[2][0] + HALF + 1, POINTS[2][1] - HALF:POINTS[2][1] + HALF + 1] = 0.1
    with _keeping(monkeypatch) as kept:
        out = plot_postage_stamps(tmp_path / "s.png", grid, m, "stamps", mrms_mm=mrms, quality=quality,
                                  deterministic=[("U-Net mean", _blocks(grid, [0.6])), ("GRAF", _blocks(grid, [30.0]))])
    fig, img = kept[0], np.rint(imread(out)[..., :3] * 255).astype(int)
    palette = _palette()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["MRMS (grey: quality < 0.5)", "U-Net mean", "GRAF"] + [member_title(k, 6) for k in range(6)]
    assert member_title(2, 6) == "member 3 of 6"
    classes = [1, 2, 3, 4, 5, None]  # 0.3 in 0.25-0.5, 0.7 in 0.5-1, ... 60 above 50 mm
    for k, cls in enumerate(classes):
        want = palette[cls] if cls is not None else np.rint(np.array(to_rgba("#c51b8a")[:3]) * 255)
        got = _colour(img, _axes(fig, member_title(k, 6)), grid, *POINTS[0])
        np.testing.assert_allclose(got, want, atol=1, err_msg=f"member {k} ({amounts[k]} mm)")
        white = _colour(img, _axes(fig, member_title(k, 6)), grid, *POINTS[1])  # 0.05 mm: below the scale
        grey = np.rint(np.array(to_rgba(MISSING_COLOUR)[:3]) * 255)
        np.testing.assert_allclose(white, grey if k == 0 else [255, 255, 255], atol=1)
    mrms_ax = _axes(fig, "MRMS (grey: quality < 0.5)")
    np.testing.assert_allclose(_colour(img, mrms_ax, grid, *POINTS[0]), palette[3], atol=1)  # 2 mm: 1-2.5
    shaded = 0.45 * 0.45 + 0.55 * np.asarray(amount_style()[0].colors)[6, :3]  # 12 mm under the grey
    # Agg composites the translucent grey in 8 bits: within 3 levels of the exact blend
    np.testing.assert_allclose(_colour(img, mrms_ax, grid, *POINTS[2]), np.rint(shaded * 255), atol=3)
    np.testing.assert_allclose(_colour(img, _axes(fig, "U-Net mean"), grid, *POINTS[0]), palette[2], atol=1)
    np.testing.assert_allclose(_colour(img, _axes(fig, "GRAF"), grid, *POINTS[0]), palette[7], atol=1)


def test_stamps_draw_state_borders_and_nothing_else_differs_without_them(tmp_path, grid, members, monkeypatch):
    m = np.zeros((2, *grid.shape))
    with _keeping(monkeypatch) as kept:
        with_lines = imread(plot_postage_stamps(tmp_path / "a.png", grid, m, ""))
    ax = _axes(kept[0], member_title(0, 2))
    # the Colorado-Wyoming border along 41 N is dark on the stamp; 0.6 degrees north is white
    x, y = grid.to_xy(np.linspace(-108.8, -102.3, 30), np.full(30, 41.0))
    rows, cols = _pixel(ax, x, y, with_lines.shape[0])
    darkest = [with_lines[r - 1:r + 2, c - 1:c + 2, :3].sum(axis=2).min() / 3 for r, c in zip(rows, cols, strict=True)]
    assert max(darkest) < 0.9
    monkeypatch.setattr(basemap, "project_boundaries", lambda grid: {})
    without = imread(plot_postage_stamps(tmp_path / "b.png", grid, m, ""))
    assert with_lines.shape == without.shape
    changed = (with_lines != without).any(axis=2)
    inside = np.zeros_like(changed)
    height = with_lines.shape[0]
    for panel in (a for a in kept[0].axes if a.get_title()):
        x0, y0, x1, y1 = np.asarray(panel.get_window_extent().extents)
        inside[int(height - y1) + 3:int(height - y0) - 3, int(x0) + 3:int(x1) - 3] = True  # off the frames
    assert (changed & inside).sum() > 500  # the lines of both stamps...
    assert (without[changed & inside][:, :3] == 1.0).all()  # ...drawn where the empty map is white


def test_stamps_refuse_bad_shapes(tmp_path, grid):
    with pytest.raises(ValueError, match=r"members_mm must have shape \(M >= 1, 200, 250\), got \(200, 250\)"):
        plot_postage_stamps(tmp_path / "x.png", grid, np.zeros(grid.shape), "")
    with pytest.raises(ValueError, match="mrms_mm must have the grid's shape"):
        plot_postage_stamps(tmp_path / "x.png", grid, np.zeros((2, *grid.shape)), "", mrms_mm=np.zeros((3, 3)))
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def gif(tmp_path_factory, grid, members):
    """The GIF of the six members beside MRMS, and its figure (kept, not cleared)."""
    m, _ = members
    out = tmp_path_factory.mktemp("gif") / "e.gif"
    kept = []
    real = ensemble_plot.new_figure

    def keep(*args, **kwargs):
        fig = real(*args, **kwargs)
        fig.clear = lambda *a, **k: None
        kept.append(fig)
        return fig

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ensemble_plot, "new_figure", keep)
        write_member_gif(out, grid, m, "gif", mrms_mm=_blocks(grid, [2.0]), frame_ms=500)
    return out, kept[0]


def test_gif_has_one_frame_per_member_looping_at_the_frame_time(gif, members):
    path, _ = gif
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == len(members[0])
        assert im.info["loop"] == 0 and im.info["duration"] == 500
    assert sorted(p.name for p in path.parent.iterdir()) == ["e.gif"]  # no temporary left


def test_gif_frame_k_shows_member_k_in_its_class_colour(gif, grid, members):
    path, fig = gif
    member_ax, mrms_ax = (ax for ax in fig.axes if ax.get_title())
    assert member_ax.get_title() == member_title(5, 6) and mrms_ax.get_title() == "MRMS"
    with Image.open(path) as im:
        height = im.size[1]
        frames = []
        for k in range(im.n_frames):
            im.seek(k)
            frames.append(np.asarray(im.convert("RGB")).astype(int))
    palette = _palette()
    rows, cols = _pixel(member_ax, grid.x[POINTS[0][1]], grid.y[POINTS[0][0]], height)
    for k, cls in enumerate([1, 2, 3, 4, 5, None]):  # GIF palettes are per frame: a few levels of slack
        want = palette[cls] if cls is not None else np.rint(np.array(to_rgba("#c51b8a")[:3]) * 255)
        np.testing.assert_allclose(frames[k][rows[0], cols[0]], want, atol=8, err_msg=f"frame {k}")
    rows, cols = _pixel(mrms_ax, grid.x[POINTS[0][1]], grid.y[POINTS[0][0]], height)
    for frame in frames:  # the MRMS panel is the same in every frame: 2 mm
        np.testing.assert_allclose(frame[rows[0], cols[0]], palette[3], atol=8)
    assert all((frames[k] != frames[0]).any() for k in range(1, len(frames)))


def test_gif_is_deterministic(tmp_path, grid, members, gif):
    again = tmp_path / "again.gif"
    write_member_gif(again, grid, members[0], "gif", mrms_mm=_blocks(grid, [2.0]), frame_ms=500)
    assert again.read_bytes() == gif[0].read_bytes()


def test_gif_refuses_a_too_short_frame_time(tmp_path, grid):
    with pytest.raises(ValueError, match="frame_ms must be >= 20, got 5"):
        write_member_gif(tmp_path / "x.gif", grid, np.zeros((2, *grid.shape)), "", frame_ms=5)
    assert not any(tmp_path.iterdir())
