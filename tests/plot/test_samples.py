"""Patch-sample figure and its command: the panels show the patches' values."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps

from pqpf.cli import plot_graf_mrms_samples
from pqpf.config import Config, load_config, paths_below, write_config
from pqpf.dates import to_epoch_seconds
from pqpf.io.patchfile import PatchFileWriter
from pqpf.layout import patch_file_path, patch_samples_png_path
from pqpf.plot import plot_patch_samples
from pqpf.plot.colours import MISSING_COLOUR, amount_style

P = 8
NAMES = ["graf_log1p", "terrain_local_difference", "slope_x"]
INIT = dt.datetime(2025, 12, 1, 0)
LEAD = 6


def _patches(n):
    """``n`` alike patches: GRAF 3 mm in the bottom-left quadrant (rows 0-3, columns 0-3),
    20 mm in the top-right one, 0.7 mm elsewhere; MRMS 3 mm, missing at (0, 0), with poor
    quality in the top half (rows 4-7); terrain difference rising from -100 m (column 0)
    to +300 m (column 7)."""
    graf = np.full((n, P, P), 0.7)
    graf[:, :4, :4] = 3.0
    graf[:, 4:, 4:] = 20.0
    terrain = np.broadcast_to(np.linspace(-100.0, 300.0, P)[None, None, :], (n, P, P))
    feats = np.stack([np.log1p(graf), terrain, np.zeros((n, P, P))], axis=1).astype(np.float32)
    mrms = np.full((n, P, P), 3.0, np.float32)
    mrms[:, 0, 0] = np.nan
    quality = np.ones((n, P, P), np.float32)
    quality[:, 4:, :] = 0.2
    return feats, mrms, quality


def _panel(fig, row, col):
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is not None and (spec.rowspan.start, spec.colspan.start) == (row, col):
            return ax
    raise AssertionError(f"no panel at row {row}, column {col}")


def _palette(cmap):
    return np.rint(np.asarray(cmap.colors)[:, :3] * 255).astype(np.uint8)


def test_patch_panels_show_graf_mrms_and_terrain_values_at_their_pixels(tmp_path, kept_figures, png_rgb,
                                                                       pixel_of, rgb255):
    feats, mrms, quality = _patches(3)
    out = plot_patch_samples(tmp_path / "s.png", feats, NAMES, mrms, quality, n=3, graf_to_mm=np.expm1,
                             labels=["a", "b", "c"])
    fig, png = kept_figures[0], png_rgb(out)
    amount = _palette(amount_style()[0])

    def at(row, col, i, j):  # patch pixel (row i, column j) of a panel; row 0 is at the bottom
        r, c = pixel_of(_panel(fig, row, col), j, i, png.shape[0])
        return png[r[0], c[0]]

    for col in range(3):
        # GRAF row, back in mm through expm1: 3 mm class 4, 20 mm class 6, 0.7 mm class 2
        np.testing.assert_allclose(at(0, col, 1, 1), amount[4], atol=1)
        np.testing.assert_allclose(at(0, col, 6, 6), amount[6], atol=1)
        np.testing.assert_allclose(at(0, col, 6, 1), amount[2], atol=1)
        np.testing.assert_allclose(at(0, col, 1, 6), amount[2], atol=1)
        # MRMS row: 3 mm where quality is good, under a 50 % grey where it is poor;
        # the missing point is grey even with good quality
        np.testing.assert_allclose(at(1, col, 2, 3), amount[4], atol=1)
        np.testing.assert_allclose(at(1, col, 6, 3), rgb255((0.45, 0.45, 0.45, 0.5), under=amount[4] / 255),
                                   atol=1)
        np.testing.assert_allclose(at(1, col, 0, 0), rgb255(MISSING_COLOUR), atol=1)
        # terrain row, symmetric about 0 m: -100 m is 1/6 of the way below the centre of
        # the diverging scale (+-300 m), +300 m its top end
        terrain = colormaps["BrBG_r"]
        np.testing.assert_allclose(at(2, col, 3, 0), rgb255(terrain(0.5 - 100 / 600)), atol=1)
        np.testing.assert_allclose(at(2, col, 3, 7), rgb255(terrain(1.0)), atol=1)
        # patch row 0 is the southern edge: drawn at the bottom of the panel
        ax = _panel(fig, 0, col)
        px, py = ax.transAxes.transform([[0.25, 0.25], [0.75, 0.75]]).T
        rows, cols = (png.shape[0] - 1 - np.floor(py)).astype(int), np.floor(px).astype(int)
        np.testing.assert_allclose(png[rows, cols], amount[[4, 6]], atol=1)
    assert [_panel(fig, 0, c).get_title() for c in range(3)] == ["a", "b", "c"]
    assert [_panel(fig, r, 0).get_ylabel() for r in range(3)] == ["GRAF (mm)", "MRMS (mm)", "terrain diff. (m)"]


def test_patch_samples_draw_the_seeded_choice_in_index_order(tmp_path, kept_figures):
    n_all, n = 20, 6
    feats, mrms, quality = _patches(n_all)
    plot_patch_samples(tmp_path / "s.png", feats, NAMES, mrms, quality, n=n, seed=1)
    chosen = np.sort(np.random.default_rng(1).choice(n_all, size=n, replace=False))
    fig = kept_figures[0]
    assert [_panel(fig, 0, c).get_title() for c in range(n)] == [f"patch {k}" for k in chosen]
    assert fig.get_suptitle() == f"Sampled training patches ({n} of {n_all}; grey: MRMS quality < 0.5)"


def test_patch_samples_find_channels_and_validate_shapes(tmp_path):
    feats, mrms, quality = _patches(4)
    with pytest.raises(ValueError, match="no GRAF amount channel"):
        plot_patch_samples(tmp_path / "x.png", feats, ["a", "terrain_diff", "c"], mrms, quality)
    with pytest.raises(ValueError, match="terrain difference channel 'elevation' not among"):
        plot_patch_samples(tmp_path / "x.png", feats, NAMES, mrms, quality, terrain_channel="elevation")
    with pytest.raises(ValueError, match="features must have shape"):
        plot_patch_samples(tmp_path / "x.png", feats, NAMES[:2], mrms, quality)
    with pytest.raises(ValueError, match="mrms and quality must have shape"):
        plot_patch_samples(tmp_path / "x.png", feats, NAMES, mrms[:2], quality)
    with pytest.raises(ValueError, match="no patches"):
        plot_patch_samples(tmp_path / "x.png", feats[:0], NAMES, mrms[:0], quality[:0])
    with pytest.raises(ValueError, match="labels must have 4 entries"):
        plot_patch_samples(tmp_path / "x.png", feats, NAMES, mrms, quality, labels=["a"])
    assert not any(tmp_path.iterdir())


# ---- the command -----------------------------------------------------------------------------


def _site(root, n=3, names=NAMES):
    config = load_config(write_config(Config(source=root / "config.ini", paths=paths_below(root))))
    feats, mrms, quality = _patches(n)
    valid = to_epoch_seconds(INIT) - 86400 * 10 + 3600 * np.arange(n, dtype=np.int64)
    header = {"split": "train", "init": "2025120100", "lead_h": LEAD, "patch_px": P, "channel_names": names,
              "feature_schema_version": 1, "thresholds_mm": [1.0]}
    with PatchFileWriter(patch_file_path(config, "train", INIT, LEAD), header) as writer:
        if n:
            writer.append({"features": feats, "mrms": mrms, "quality": quality, "valid_time": valid,
                           "init_time": valid - 3600 * LEAD})
    return config


def test_samples_command_draws_the_patch_file_in_mm(tmp_path, kept_figures, png_rgb, pixel_of, capsys):
    config = _site(tmp_path)
    args = ["--config", str(config.source), "2025120100", str(LEAD), "--n", "3"]
    assert plot_graf_mrms_samples.main(args) == 0
    out = patch_samples_png_path(config, "train", INIT, LEAD)
    assert capsys.readouterr().out.strip() == str(out)
    fig, png = kept_figures[0], png_rgb(out)
    r, c = pixel_of(_panel(fig, 0, 2), 6, 6, png.shape[0])  # 20 mm stored as log1p
    np.testing.assert_allclose(png[r[0], c[0]], _palette(amount_style()[0])[6], atol=1)
    assert [_panel(fig, 0, k).get_title() for k in range(3)] == [
        "valid 2025-11-21 00Z", "valid 2025-11-21 01Z", "valid 2025-11-21 02Z"]
    assert fig.get_suptitle().startswith("train patches for init 2025120100 +6 h (3 of 3;")


def test_samples_command_refuses_an_empty_split_or_missing_channel_in_one_line(tmp_path, capsys):
    config = _site(tmp_path / "empty", n=0)
    assert plot_graf_mrms_samples.main(["--config", str(config.source), "2025120100", str(LEAD)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no patches in the train split" in err
    assert str(patch_file_path(config, "train", INIT, LEAD)) in err
    config = _site(tmp_path / "other", names=["graf_log1p", "height", "slope_x"])
    assert plot_graf_mrms_samples.main(["--config", str(config.source), "2025120100", str(LEAD)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no feature channel terrain_local_difference" in err
    assert not patch_samples_png_path(config, "train", INIT, LEAD).exists()


def test_samples_command_does_not_import_the_trainer_or_torch(tmp_path):
    config = _site(tmp_path)
    code = ("import sys; from pqpf.cli import plot_graf_mrms_samples as m; "
            f"assert m.main(['--config', {str(config.source)!r}, '2025120100', '6', '-q']) == 0; "
            "print(sorted(k for k in sys.modules if k.startswith(('pqpf.train', 'torch'))))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"
