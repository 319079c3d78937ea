"""Exponential moving average of the weights."""

from __future__ import annotations

import io

import pytest
import torch

from pqpf.train.ema import EmaWeights


def _model(value: float) -> torch.nn.Module:
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(value)
        net.bias.fill_(value)
    return net


def test_average_follows_the_half_life_in_samples_exactly():
    model = _model(1.0)
    ema = EmaWeights(model, halflife_samples=64.0)
    with torch.no_grad():
        model.weight.fill_(3.0)
    for _ in range(4):
        ema.update(model, batch_size=32)  # 128 samples = two half-lives
    # 3 + (1 - 3) * 0.5 ** (128 / 64) = 2.5
    torch.testing.assert_close(ema.average["weight"], torch.full((1, 2), 2.5), rtol=1e-6, atol=0)
    torch.testing.assert_close(ema.average["bias"], torch.ones(1))  # the bias never moved
    assert ema.beta(32) == pytest.approx(0.5**0.5)


def test_batch_size_does_not_change_the_average_of_a_constant_model():
    averages = []
    for batch in (8, 32):
        model = _model(0.0)
        ema = EmaWeights(model, halflife_samples=100.0)
        with torch.no_grad():
            model.weight.fill_(1.0)
        for _ in range(256 // batch):
            ema.update(model, batch)
        averages.append(ema.average["weight"])
    torch.testing.assert_close(averages[0], averages[1], rtol=1e-6, atol=0)
    torch.testing.assert_close(averages[0], torch.full((1, 2), 1 - 0.5**2.56), rtol=1e-6, atol=0)


def test_rampup_caps_the_half_life_early():
    ema = EmaWeights(_model(0.0), halflife_samples=1e6, rampup=0.5)
    assert ema.beta(10) == pytest.approx(0.5 ** (10 / 5.0))  # half-life min(1e6, 0.5 * 10)


def test_state_round_trips_through_weights_only_load_and_copies_into_a_model():
    model = _model(2.0)
    ema = EmaWeights(model, 50.0, rampup=0.1)
    ema.update(_model(4.0), 10)
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    restored = EmaWeights(_model(0.0), 1.0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.samples_seen == 10 and restored.rampup == 0.1
    target = _model(0.0)
    restored.copy_to(target)
    torch.testing.assert_close(target.weight, ema.average["weight"])
