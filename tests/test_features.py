import datetime as dt
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from pqpf.augment import augment_batch_torch, augment_features, augment_spatial
from pqpf.errors import InputFileError
from pqpf.features import (
    FEATURE_SCHEMA_VERSION,
    SIGN_SYMMETRIC,
    build_features,
    channel_names,
    check_feature_schema,
)
from pqpf.normalisation import Normalisation, compute_normalisation

SPACING_M = 3000.0
VALID = dt.datetime(2024, 7, 2, 18)


def _terrain_from_height(height_m):
    """Terrain variables as the terrain stage defines them, on a uniform grid."""
    slope_y, slope_x = np.gradient(height_m, SPACING_M)
    smooth = gaussian_filter(height_m, sigma=2.0, mode="nearest")
    return {
        "height_local_difference": height_m - smooth,
        "slope_x": slope_x,
        "slope_y": slope_y,
    }


def _raw_inputs(rng, ny=13, nx=17):
    height = rng.normal(size=(ny, nx)).cumsum(axis=0).cumsum(axis=1) * 40.0 + 500.0
    graf = np.maximum(rng.gamma(0.4, 3.0, size=(ny, nx)) - 0.5, 0.0).astype(np.float32)
    return graf, height


def test_channel_names_base_order_and_time_channels():
    assert channel_names() == (
        "graf_log1p",
        "terrain_local_difference",
        "graf_x_terrain_difference",
        "slope_x",
        "slope_y",
    )
    assert channel_names(True)[5:] == ("hour_sin", "hour_cos", "doy_sin", "doy_cos")
    assert SIGN_SYMMETRIC == {"slope_x", "slope_y"}


def test_build_features_values_by_hand():
    graf = np.array([[0.0, -0.01], [np.e - 1.0, 9.0]], dtype=np.float32)
    terrain = {
        "height_local_difference": np.array([[100.0, -50.0], [2000.0, 0.0]]),
        "slope_x": np.full((2, 2), 0.01),
        "slope_y": np.full((2, 2), -0.02),
    }
    f = build_features(graf, terrain, dt.datetime(2024, 1, 1, 6), time_features=True)
    assert f.dtype == np.float32 and f.shape == (9, 2, 2)
    np.testing.assert_allclose(f[0], [[0.0, 0.0], [1.0, math.log(10.0)]], rtol=1e-6)
    np.testing.assert_allclose(f[2], [[0.0, 0.0], [2.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(f[3], 0.01, rtol=1e-6)
    np.testing.assert_allclose(f[4], -0.02, rtol=1e-6)
    # 06 UTC: a quarter of the day; 1 January 06 UTC: 0.25 days into the year.
    np.testing.assert_allclose(f[5], 1.0, atol=1e-7)
    np.testing.assert_allclose(f[6], 0.0, atol=1e-7)
    np.testing.assert_allclose(f[7], math.sin(2 * math.pi * 0.25 / 365.2425), atol=1e-7)
    np.testing.assert_allclose(f[8], math.cos(2 * math.pi * 0.25 / 365.2425), atol=1e-7)


def test_build_features_nan_graf_is_zero_with_warning_and_bad_inputs_raise():
    rng = np.random.default_rng(0)
    graf, height = _raw_inputs(rng, 6, 7)
    terrain = _terrain_from_height(height)
    graf[2, 3] = np.nan
    with pytest.warns(RuntimeWarning, match="1 NaN points"):
        f = build_features(graf, terrain, VALID)
    assert f[0, 2, 3] == 0.0 and np.isfinite(f).all()
    graf[2, 3] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        build_features(graf, terrain, VALID)
    graf[2, 3] = 1.0
    with pytest.raises(ValueError, match="shape"):
        build_features(graf[:5], terrain, VALID)
    with pytest.raises(ValueError, match="slope_y"):
        build_features(graf, {k: v for k, v in terrain.items() if k != "slope_y"}, VALID)


def test_build_features_on_a_patch_equals_the_patch_of_full_field_features():
    rng = np.random.default_rng(1)
    graf, height = _raw_inputs(rng, 30, 40)
    terrain = _terrain_from_height(height)
    full = build_features(graf, terrain, VALID, time_features=True)
    cut = {k: v[5:21, 10:26] for k, v in terrain.items()}
    patch = build_features(graf[5:21, 10:26], cut, VALID, time_features=True)
    assert np.array_equal(patch, full[:, 5:21, 10:26])


@pytest.mark.parametrize("transform_id", range(8))
def test_slope_rule_equals_np_gradient_of_transformed_height_exactly(transform_id):
    rng = np.random.default_rng(10 + transform_id)
    height = rng.normal(size=(13, 17))  # non-square catches swapped axes
    slope_y, slope_x = np.gradient(height)
    slopes = np.stack([slope_x, slope_y])
    moved = augment_spatial(height, transform_id)
    new_y, new_x = np.gradient(moved)
    got = augment_features(slopes, transform_id, ("slope_x", "slope_y"))
    assert got.shape == (2,) + moved.shape
    assert np.array_equal(got[0], new_x) and np.array_equal(got[1], new_y)


@pytest.mark.parametrize("transform_id", range(8))
def test_features_of_augmented_inputs_equal_augmented_features(transform_id):
    rng = np.random.default_rng(20 + transform_id)
    graf, height = _raw_inputs(rng, 16, 16)
    feats = build_features(graf, _terrain_from_height(height), VALID, time_features=True)
    graf_t = augment_spatial(graf, transform_id)
    height_t = augment_spatial(height, transform_id)
    feats_t = build_features(graf_t, _terrain_from_height(height_t), VALID, time_features=True)
    expected = augment_features(feats, transform_id, channel_names(True))
    # Slopes and GRAF are exact; the Gaussian smoothing sums in another order after a
    # rotation, so the local difference agrees to rounding only.
    names = channel_names(True)
    for c in ("graf_log1p", "slope_x", "slope_y", "hour_sin", "doy_cos"):
        i = names.index(c)
        assert np.array_equal(feats_t[i], expected[i]), c
    np.testing.assert_allclose(feats_t, expected, rtol=1e-5, atol=1e-4)


def test_eight_transforms_are_distinct_and_torch_matches_numpy():
    x = np.random.default_rng(3).normal(size=(2, 5, 6, 6)).astype(np.float32)
    names = channel_names()
    outs = [augment_features(x, t, names) for t in range(8)]
    assert len({o.tobytes() for o in outs}) == 8
    assert np.array_equal(outs[0], x)
    for t in range(8):
        got = augment_features(torch.from_numpy(x.copy()), t, names).numpy()
        assert np.array_equal(got, outs[t])
        assert np.array_equal(augment_spatial(torch.from_numpy(x), t).numpy(), augment_spatial(x, t))
    with pytest.raises(ValueError, match="0..7"):
        augment_spatial(x, 8)


def test_augmented_arrays_are_new_arrays_never_views_of_the_input():
    x = np.random.default_rng(4).normal(size=(5, 4, 4)).astype(np.float32)
    keep = x.copy()
    for t in range(8):
        augment_features(x, t, channel_names())[...] = 0
        augment_features(torch.from_numpy(x), t, channel_names())[...] = 0
        augment_spatial(x, t)[...] = 0
        augment_spatial(torch.from_numpy(x), t)[...] = 0
    assert np.array_equal(x, keep)


def _feature_batch(seed, n=6, p=16, time_features=False):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        graf, height = _raw_inputs(rng, p, p)
        out.append(build_features(graf, _terrain_from_height(height * 3), VALID, time_features))
    return np.stack(out)


def test_normalisation_commutes_with_augmentation():
    feats = _feature_batch(5)
    norm = compute_normalisation(feats, channel_names())
    for t in range(8):
        a = norm.apply_numpy(augment_features(feats, t, channel_names()))
        b = augment_features(norm.apply_numpy(feats), t, channel_names())
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_normalisation_statistics_weighted_and_streaming():
    feats = _feature_batch(6, n=7)
    w = np.array([1.0, 2.0, 0.0, 0.5, 1.0, 3.0, 1.0])
    names = channel_names()
    norm = compute_normalisation(feats, names, sample_weight=w, batch_size=2)
    pix_w = np.broadcast_to(w[:, None, None], (7, 16, 16))
    for i in range(3):
        mean = np.average(feats[:, i], weights=pix_w)
        std = math.sqrt(np.average((feats[:, i] - mean) ** 2, weights=pix_w))
        assert norm.mean[i] == pytest.approx(mean, rel=1e-9, abs=1e-12)
        assert norm.std[i] == pytest.approx(std, rel=1e-9)
    ms = 0.5 * (np.average(feats[:, 3] ** 2, weights=pix_w) + np.average(feats[:, 4] ** 2, weights=pix_w))
    assert norm.mean[3] == norm.mean[4] == 0.0
    assert norm.std[3] == norm.std[4] == pytest.approx(math.sqrt(ms), rel=1e-9)
    dropped = compute_normalisation(feats[w > 0], names, sample_weight=w[w > 0], batch_size=100)
    np.testing.assert_allclose(dropped.mean, norm.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dropped.std, norm.std, rtol=1e-9)


def test_normalisation_leaves_constant_channel_unscaled():
    feats = _feature_batch(7, n=3, time_features=True)  # one valid time: constant planes
    norm = compute_normalisation(feats, channel_names(True))
    i = channel_names(True).index("hour_cos")
    assert norm.std[i] == 1.0 and norm.mean[i] == pytest.approx(feats[0, i, 0, 0], abs=1e-7)
    assert np.abs(norm.apply_numpy(feats)[:, i]).max() < 1e-6


def test_normalisation_dict_survives_weights_only_checkpoint(tmp_path):
    norm = compute_normalisation(_feature_batch(8, n=2), channel_names())
    path = tmp_path / "ckpt.pt"
    torch.save({"normalisation": norm.to_dict()}, path)
    again = Normalisation.from_dict(torch.load(path, weights_only=True)["normalisation"])
    assert again == norm
    x = torch.randn(2, 5, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # the two paths round differently in float32: compare at float32 resolution of O(1)
    # values (a point near the mean has a tiny value and so no useful relative tolerance)
    np.testing.assert_allclose(again.apply_torch(x).numpy(), norm.apply_numpy(x.numpy()), rtol=1e-6, atol=1e-6)
    stale = dict(norm.to_dict(), feature_schema_version=FEATURE_SCHEMA_VERSION + 1)
    with pytest.raises(InputFileError, match="feature schema version"):
        Normalisation.from_dict(stale, source="old.pt")
    with pytest.raises(ValueError, match="do not match"):
        norm.check_channels(channel_names(True))
    with pytest.raises(InputFileError, match="feature schema"):
        check_feature_schema(0, "patches.cPick")


def test_augment_batch_torch_matches_per_sample_transforms():
    feats = torch.from_numpy(_feature_batch(9, n=10))
    obs = torch.randn(10, 16, 16)
    quality = torch.rand(10, 1, 16, 16)
    ids = torch.tensor([0, 3, 3, 7, 1, 5, 2, 6, 4, 7])
    out_f, (out_o, out_q) = augment_batch_torch(feats, [obs, quality], ids, channel_names())
    for b in range(10):
        t = int(ids[b])
        assert torch.equal(out_f[b], augment_features(feats[b], t, channel_names()))
        assert torch.equal(out_o[b], augment_spatial(obs[b], t))
        assert torch.equal(out_q[b], augment_spatial(quality[b], t))
    with pytest.raises(ValueError, match="square"):
        augment_batch_torch(feats[:, :, :, :8], [], ids, channel_names())


def test_reflection_padding_flips_the_normal_slope_like_a_mirrored_terrain():
    from pqpf.features import BASE_CHANNELS, pad_features

    rng = np.random.default_rng(5)
    h = rng.normal(size=(20, 24))
    pad = 5

    def slopes(height):
        gy, gx = np.gradient(height)
        return gx, gy

    sx, sy = slopes(h)
    field = np.stack([h, h * 0, h * 0, sx, sy]).astype(np.float32)
    padded = pad_features(field, pad, BASE_CHANNELS)
    mx, my = slopes(np.pad(h, pad, mode="reflect"))  # slopes of the mirrored terrain
    inner = np.zeros(padded.shape[1:], bool)
    inner[1:-1, 1:-1] = True  # np.gradient is one-sided on the outermost ring
    inner[pad:-pad, pad:-pad] = False  # the original domain keeps its own (edge) slopes
    for line in (pad, -pad - 1):  # on the mirror lines the edge slope is one-sided, not 0
        inner[line, :] = False
        inner[:, line] = False
    assert np.allclose(padded[3][inner], mx[inner], atol=1e-6)
    assert np.allclose(padded[4][inner], my[inner], atol=1e-6)
    assert np.array_equal(padded[:, pad:-pad, pad:-pad], field)
    assert np.allclose(padded[0], np.pad(h, pad, mode="reflect"))
