"""The stitcher on a leading batch of fields (B, C, H, W) -> (B, K, H, W)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from pqpf.stitching import stitch


def _cnn(seed: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 6, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(6, 3, 3, padding=1)
    ).eval()


def _fields(b: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, 2, *shape)).astype(np.float32)


@pytest.mark.parametrize(("shape", "pad_mode"), [((37, 53), "none"), ((37, 53), "reflect"), ((9, 70), "none")])
def test_batched_stitch_equals_stitching_each_field_alone(shape, pad_mode):
    torch.set_num_threads(1)
    net, fields = _cnn(), _fields(4, shape)
    batched = stitch(net, fields, 16, 8, batch_size=7, pad_mode=pad_mode)
    assert batched.shape == (4, 3, *shape)
    for b in range(4):
        alone = stitch(net, fields[b], 16, 8, batch_size=7, pad_mode=pad_mode)
        np.testing.assert_allclose(batched[b], alone, rtol=0, atol=2e-6)


def test_batch_of_one_is_bit_identical_to_the_unbatched_call():
    net, fields = _cnn(), _fields(1, (40, 45))
    np.testing.assert_array_equal(stitch(net, fields, 16, 8)[0], stitch(net, fields[0], 16, 8))


def test_batched_result_does_not_depend_on_batch_size_or_layout():
    net, fields = _cnn(), _fields(3, (33, 41), seed=5)
    ref = stitch(net, fields, 16, 8, batch_size=1, channels_last=False)
    for batch_size, layout in [(2, True), (5, False), (64, None)]:
        out = stitch(net, fields, 16, 8, batch_size=batch_size, channels_last=layout)
        np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6)


def test_identity_model_reproduces_every_field_exactly_in_float64():
    # float32-representable values: the weighted sums are exact in float64
    fields = _fields(3, (21, 50), seed=2).astype(np.float64)
    out = stitch(lambda z: z, fields, 16, 5, pad_mode="reflect", dtype=torch.float64)
    np.testing.assert_array_equal(out, fields)


def test_each_model_call_mixes_windows_of_several_fields():
    calls: list[int] = []

    def model(windows: torch.Tensor) -> torch.Tensor:
        calls.append(windows.shape[0])
        return windows

    stitch(model, _fields(3, (16, 32)), 16, 16, batch_size=4)
    # 2 window places x 3 fields = 6 windows, in calls of 4 and 2
    assert calls == [4, 2]


def test_progress_false_logs_no_progress_lines(caplog):
    with caplog.at_level(logging.INFO, logger="pqpf.stitching"):
        stitch(lambda z: z, _fields(2, (20, 20)), 16, 8, progress=False)
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    with caplog.at_level(logging.INFO, logger="pqpf.stitching"):
        stitch(lambda z: z, _fields(2, (20, 20)), 16, 8)
    assert any("windows" in r.getMessage() for r in caplog.records)


def test_five_dimensional_inputs_are_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"shape \(C, H, W\), got shape \(1, 2, 2, 8, 8\)"):
        stitch(lambda z: z, np.zeros((1, 2, 2, 8, 8), np.float32), 8, 4)
