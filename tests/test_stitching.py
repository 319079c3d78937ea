"""Properties of the full-field stitcher (SPEC section 5)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pqpf import stitching
from pqpf.stitching import stitch, tent_weights_1d, tent_weights_2d, weight_sum, window_starts

# (ny, nx, N, S): smaller than one window, exactly one, one plus one, primes.
SMALL_DOMAINS = [
    (5, 9, 16, 8),
    (1, 1, 8, 4),
    (16, 16, 16, 8),
    (17, 17, 16, 8),
    (97, 131, 32, 16),
    (97, 131, 32, 32),
    (97, 131, 32, 7),
]
PAD_MODES = ["none", "reflect"]


def _identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


def _seeded_cnn(in_channels: int, out_channels: int, seed: int, pointwise: bool) -> torch.nn.Module:
    """A small fixed-seed CNN; 3x3 convolutions with zero padding unless pointwise."""
    torch.manual_seed(seed)
    kernel, pad = (1, 0) if pointwise else (3, 1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(in_channels, 8, kernel, padding=pad),
        torch.nn.Tanh(),
        torch.nn.Conv2d(8, 8, kernel, padding=pad),
        torch.nn.Tanh(),
        torch.nn.Conv2d(8, out_channels, kernel, padding=pad),
    )
    return net.eval()


def _field(shape: tuple[int, ...], seed: int = 0, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- windows and weights ---------------------------------------------------------------


@pytest.mark.parametrize(("length", "n", "s", "expected"), [
    (100, 32, 16, [0, 16, 32, 48, 64, 68]),
    (96, 32, 32, [0, 32, 64]),
    (97, 32, 32, [0, 32, 64, 65]),
    (32, 32, 16, [0]),
    (33, 32, 16, [0, 1]),
    (5, 32, 16, [0]),
])
def test_window_starts_are_regular_then_flush_with_the_edge(length, n, s, expected):
    assert window_starts(length, n, s).tolist() == expected


@pytest.mark.parametrize(("args", "message"), [
    ((100, 0, 1), "window_px must be a positive integer, got 0"),
    ((100, 32, -2), "stride_px must be a positive integer, got -2"),
    ((100, 32, 33), "stride_px must not exceed window_px"),
    ((0, 32, 16), "length must be a positive integer, got 0"),
    ((100, 32.0, 16), "window_px must be a positive integer, got 32.0"),
])
def test_window_starts_rejects_bad_arguments_with_the_received_value(args, message):
    with pytest.raises(ValueError, match=message):
        window_starts(*args)


def test_tent_weights_match_the_formula():
    assert tent_weights_1d(6).tolist() == [1, 3, 5, 5, 3, 1]
    assert tent_weights_1d(5).tolist() == [1, 3, 5, 3, 1]
    psi = tent_weights_1d(64)
    assert psi.dtype == np.int64
    i = np.arange(64)
    np.testing.assert_array_equal(psi, 2 * np.minimum(i, 63 - i) + 1)
    np.testing.assert_array_equal(tent_weights_2d(64), np.outer(psi, psi))


@pytest.mark.parametrize(("ny", "nx", "n", "s"), [*SMALL_DOMAINS, (1308, 1524, 64, 32)])
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_every_point_is_covered(ny, nx, n, s, pad_mode):
    total = weight_sum((ny, nx), n, s, pad_mode)
    assert total.shape == (ny, nx)
    assert total.min() >= 1.0


def _brute_force_weight_sum(ny: int, nx: int, n: int, s: int, pad: int) -> np.ndarray:
    """Python-loop accumulation of the 2-D tent over every window, in Python ints."""
    psi = [2 * min(i, n - 1 - i) + 1 for i in range(n)]
    hy, hx = ny + 2 * pad, nx + 2 * pad
    starts_y = sorted(set(list(range(0, hy - n + 1, s)) + [hy - n]))
    starts_x = sorted(set(list(range(0, hx - n + 1, s)) + [hx - n]))
    total = np.zeros((hy, hx), dtype=np.int64)
    for y0, x0 in itertools.product(starts_y, starts_x):
        for dy, dx in itertools.product(range(n), range(n)):
            total[y0 + dy, x0 + dx] += psi[dy] * psi[dx]
    return total[pad : pad + ny, pad : pad + nx]


@pytest.mark.parametrize(("pad_mode", "pad"), [("none", 0), ("reflect", 4)])
def test_weight_sum_equals_brute_force_integer_accumulation(pad_mode, pad):
    expected = _brute_force_weight_sum(23, 29, 9, 3, pad)  # N // 2 = 4
    total = weight_sum((23, 29), 9, 3, pad_mode)
    assert total.dtype == np.float64
    np.testing.assert_array_equal(total, expected.astype(np.float64))


def test_weight_sum_is_cached_and_read_only():
    stitching._weight_sum_cached.cache_clear()
    first = weight_sum((101, 103), 16, 8)
    second = weight_sum((101, 103), 16, 8)
    assert first is second
    info = stitching._weight_sum_cached.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0] = 0.0


def test_weight_sum_rejects_unknown_names_listing_valid_ones():
    with pytest.raises(ValueError, match="unknown pad_mode 'wrap'; valid: none, reflect, replicate"):
        weight_sum((10, 10), 8, 4, "wrap")
    with pytest.raises(ValueError, match="unknown weight 'gauss'; valid: constant, tent"):
        weight_sum((10, 10), 8, 4, "none", "gauss")


# --- stitching properties --------------------------------------------------------------


@pytest.mark.parametrize(("ny", "nx", "n", "s"), SMALL_DOMAINS)
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_identity_model_reproduces_input_exactly_in_float64(ny, nx, n, s, pad_mode):
    # float32-representable values: w * x and the sums of such products are then exact in
    # float64, so sum(w x) / sum(w) returns x bit for bit.
    x = _field((2, ny, nx)).astype(np.float64)
    out = stitch(_identity, x, n, s, batch_size=5, pad_mode=pad_mode, dtype=torch.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_identity_model_reproduces_arbitrary_float64_to_rounding(pad_mode):
    x = np.random.default_rng(3).standard_normal((2, 97, 131))
    out = stitch(_identity, x, 32, 7, pad_mode=pad_mode, dtype=torch.float64)
    np.testing.assert_allclose(out, x, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize(("ny", "nx", "n", "s"), SMALL_DOMAINS)
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_identity_model_reproduces_input_in_float32(ny, nx, n, s, pad_mode):
    x = _field((3, ny, nx))
    out = stitch(_identity, x, n, s, batch_size=7, pad_mode=pad_mode)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, x, rtol=1e-6, atol=1e-6)


def _mean_model(batch: torch.Tensor) -> torch.Tensor:
    """Output depends on the whole window: tanh of the window mean, broadcast."""
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    return torch.tanh(mean).expand(-1, 2, batch.shape[2], batch.shape[3])


@pytest.mark.parametrize(("ny", "nx", "n", "s"), SMALL_DOMAINS)
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_constant_input_gives_constant_output(ny, nx, n, s, pad_mode):
    x = np.full((3, ny, nx), 0.3, dtype=np.float32)
    out = stitch(_mean_model, x, n, s, pad_mode=pad_mode)
    assert out.shape == (2, ny, nx)
    np.testing.assert_allclose(out, np.tanh(0.3), rtol=1e-6, atol=0)


def test_pointwise_model_equals_whole_field_forward_pass():
    net = _seeded_cnn(3, 4, seed=11, pointwise=True)
    x = _field((3, 97, 131), seed=1)
    with torch.inference_mode():
        truth = net(torch.from_numpy(x)[None])[0].numpy()
    for pad_mode in PAD_MODES:
        out = stitch(net, x, 32, 16, pad_mode=pad_mode)
        np.testing.assert_allclose(out, truth, rtol=0, atol=1e-6)


def test_result_does_not_depend_on_batch_size():
    net = _seeded_cnn(3, 4, seed=5, pointwise=False)
    x = _field((3, 97, 131), seed=2)
    n_windows = len(window_starts(97, 32, 16)) * len(window_starts(131, 32, 16))
    results = [stitch(net, x, 32, 16, batch_size=b) for b in (1, 3, 16, n_windows + 5)]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=0, atol=1e-6)


def test_linear_reduction_equals_reducing_the_stitched_output():
    net = _seeded_cnn(3, 5, seed=7, pointwise=False)
    x = _field((3, 97, 131), seed=4)
    # Exceedance-style reduction: P(bin >= t) = sum of the bins from t upwards.
    reduction = np.triu(np.ones((5, 5), dtype=np.float32))[1:]

    def softmax(z):
        return torch.softmax(z, dim=1)

    full = stitch(net, x, 32, 16, post=softmax)
    np.testing.assert_allclose(full.sum(axis=0), 1.0, atol=1e-6)
    reduced = stitch(net, x, 32, 16, post=softmax, reduction=reduction)
    assert reduced.shape == (4, 97, 131)
    np.testing.assert_allclose(reduced, np.einsum("tk,kyx->tyx", reduction, full), rtol=0, atol=1e-6)


def test_tent_weights_cut_the_seam_error_of_constant_weights(capsys):
    # Zero padding inside the CNN makes window edges differ from the interior; the
    # whole-field forward pass (same zero padding at the domain edge) is the truth.
    net = _seeded_cnn(3, 2, seed=1234, pointwise=False)
    x = _field((3, 97, 131), seed=9)
    with torch.inference_mode():
        truth = net(torch.from_numpy(x)[None])[0].numpy()

    def rms(a):
        return float(np.sqrt(np.mean((a - truth) ** 2)))

    tent = rms(stitch(net, x, 32, 16, weight="tent"))
    constant = rms(stitch(net, x, 32, 16, weight="constant"))
    with capsys.disabled():
        print(f"\nseam RMS error: tent {tent:.3e}, constant {constant:.3e}, ratio {tent / constant:.3f}")
    assert constant > 1e-3  # the seams are really there
    assert tent <= 0.2 * constant


def test_outputs_are_returned_as_numpy_for_tensor_inputs():
    x = torch.from_numpy(_field((2, 40, 50)))
    out = stitch(_identity, x, 16, 8)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, x.numpy(), atol=1e-6)


def test_stitch_rejects_bad_inputs_and_model_outputs():
    x = _field((2, 40, 50))
    with pytest.raises(ValueError, match=r"inputs must be an array or tensor of shape \(C, H, W\), got shape "
                                         r"\(40, 50\)"):
        stitch(_identity, x[0], 16, 8)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        stitch(_identity, x, 16, 8, batch_size=0)
    with pytest.raises(ValueError, match=r"model must map \(B, C, 16, 16\) to \(B, K, 16, 16\); got \(4, 2, 8, 8\)"):
        stitch(lambda b: b[:, :, :8, :8], x, 16, 8, batch_size=4)
    with pytest.raises(ValueError, match="reduction has 3 columns but the model gives 2 channels"):
        stitch(_identity, x, 16, 8, reduction=np.ones((1, 3)))
    with pytest.raises(ValueError, match="stride_px must not exceed window_px"):
        stitch(_identity, x, 16, 17)


def test_channels_last_and_contiguous_windows_agree():
    net = _seeded_cnn(3, 4, seed=3, pointwise=False)
    x = _field((3, 97, 131), seed=6)
    last = stitch(net, x, 32, 16, channels_last=True)
    contiguous = stitch(net, x, 32, 16, channels_last=False)
    np.testing.assert_allclose(last, contiguous, rtol=0, atol=1e-6)


def test_model_refusing_channels_last_input_falls_back_to_contiguous_windows():
    calls = []

    def flattening_model(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.is_contiguous())
        return batch.view(batch.shape[0], -1).view(batch.shape)  # .view needs contiguous

    x = _field((2, 40, 50))
    out = stitch(flattening_model, x, 16, 8, batch_size=4, channels_last=True)
    np.testing.assert_allclose(out, x, rtol=1e-6, atol=1e-6)
    assert calls[:2] == [False, True] and all(calls[1:])


@pytest.mark.parametrize(("setting", "patch", "independent", "expected"), [
    ((0, 0), 64, False, (64, 32)),     # group norm: the training patch at half stride
    ((0, 0), 64, True, (256, 224)),    # batch norm: large windows overlapping by half a patch
    ((0, 0), 128, True, (256, 192)),
    ((128, 0), 64, True, (128, 96)),
    ((128, 0), 64, False, (128, 64)),
    ((0, 48), 64, True, (256, 48)),
    ((32, 40), 64, False, (32, 32)),   # the stride is capped at the window
    ((48, 0), 128, True, (48, 24)),    # never below half the window
])
def test_inference_window_defaults_follow_the_network_and_set_values_win(setting, patch, independent, expected):
    from pqpf.stitching import inference_window

    assert inference_window(*setting, patch, independent) == expected


@pytest.mark.parametrize(("domain", "expected"), [(164, (164, 132)), (1000, (256, 224)), (40, (40, 20))])
def test_window_independent_windows_are_capped_by_the_domain_and_still_overlap(domain, expected):
    from pqpf.stitching import inference_window

    assert inference_window(0, 0, 64, True, domain) == expected
    assert inference_window(0, 0, 64, False, domain) == (64, 32)  # group norm: the patch, always
    assert inference_window(0, 0, 512, True) == (512, 256)  # never below the training patch


def test_windows_per_call_holds_about_sixteen_64px_windows_of_points():
    from pqpf.stitching import windows_per_call

    assert [windows_per_call(0, n) for n in (32, 64, 128, 256, 512)] == [64, 16, 4, 1, 1]
    assert windows_per_call(3, 256) == 3
