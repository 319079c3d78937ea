"""EDM preconditioning, loss weighting, training noise and the masked loss (Karras et al. 2022)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pqpf.diffusion.edm import (
    EDMDenoiser,
    edm_loss_weight,
    edm_preconditioning,
    estimate_sigma_data,
    masked_edm_loss,
    sample_training_sigma,
)
from pqpf.diffusion.network import DiffusionUNet

# (sigma, sigma_data) -> c_skip, c_out, c_in, c_noise, lambda, worked by hand:
# sigma = sd = 0.5: total 0.5; c_skip 0.25/0.5; c_out 0.25/sqrt(0.5); c_in 1/sqrt(0.5); ln(0.5)/4; 0.5/0.0625
# sigma = 2, sd = 0.5: total 4.25; 0.25/4.25; 1/sqrt(4.25); 1/sqrt(4.25); ln(2)/4; 4.25/1
# sigma = 0.1, sd = 1: total 1.01; 1/1.01; 0.1/sqrt(1.01); 1/sqrt(1.01); ln(0.1)/4; 1.01/0.01
HAND = [
    (0.5, 0.5, 0.5, 0.35355339, 1.41421356, -0.17328680, 8.0),
    (2.0, 0.5, 0.05882353, 0.48507125, 0.48507125, 0.17328680, 4.25),
    (0.1, 1.0, 0.99009901, 0.09950372, 0.99503719, -0.57564627, 101.0),
]


@pytest.mark.parametrize(("sigma", "sd", "c_skip", "c_out", "c_in", "c_noise", "lam"), HAND)
def test_preconditioning_and_loss_weight_match_hand_computed_values(sigma, sd, c_skip, c_out, c_in, c_noise, lam):
    got = edm_preconditioning(sigma, sd)
    np.testing.assert_allclose(got, [c_skip, c_out, c_in, c_noise], rtol=1e-7, atol=1e-8)
    assert edm_loss_weight(sigma, sd) == pytest.approx(lam, rel=1e-12)
    assert edm_loss_weight(sigma, sd) == pytest.approx(1 / got[1] ** 2, rel=1e-12)
    tensor = edm_preconditioning(torch.tensor([sigma], dtype=torch.float64), sd)
    np.testing.assert_allclose([t.item() for t in tensor], got, rtol=1e-12)


def test_preconditioning_gives_the_network_unit_variance_inputs_and_targets():
    # y ~ N(0, sd^2): Var(c_in (y + sigma n)) = 1 and the ideal F target (y - c_skip x)/c_out
    # has variance 1 at every sigma (Karras et al. 2022, appendix B.6)
    gen = torch.Generator().manual_seed(0)
    sd, n = 0.7, 400_000
    y = sd * torch.randn(n, generator=gen, dtype=torch.float64)
    noise = torch.randn(n, generator=gen, dtype=torch.float64)
    for sigma in (0.01, 0.3, 1.0, 20.0):
        c_skip, c_out, c_in, _ = edm_preconditioning(sigma, sd)
        x = y + sigma * noise
        assert float((c_in * x).var()) == pytest.approx(1.0, abs=0.01)
        assert float(((y - c_skip * x) / c_out).var()) == pytest.approx(1.0, abs=0.01)


def test_bad_sigma_data_is_refused():
    with pytest.raises(ValueError, match="sigma_data must be a positive finite number, got 0"):
        edm_preconditioning(1.0, 0)


def test_denoiser_combines_skip_and_network_with_the_coefficients():
    seen = {}

    def net(x_in, c_noise, cond):
        seen["x_in"], seen["c_noise"], seen["cond"] = x_in, c_noise, cond
        return torch.full_like(x_in, 3.0)

    module = torch.nn.Module()
    module.forward = net  # type: ignore[method-assign]
    denoiser = EDMDenoiser(module, sigma_data=0.5)
    x = torch.tensor([[[[1.0, -2.0]]], [[[0.5, 4.0]]]], dtype=torch.float64)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    out = denoiser(x, sigma, None)
    c = [edm_preconditioning(s, 0.5) for s in (0.5, 2.0)]
    expected = torch.stack([c[b][0] * x[b] + c[b][1] * 3.0 for b in range(2)])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(seen["x_in"], torch.stack([c[b][2] * x[b] for b in range(2)]))
    torch.testing.assert_close(seen["c_noise"], torch.tensor([c[0][3], c[1][3]], dtype=torch.float64))


def test_untrained_network_makes_the_denoiser_exactly_c_skip_x():
    net = DiffusionUNet(1, 2, "tiny")
    x, cond = torch.randn(2, 1, 16, 16), torch.randn(2, 2, 16, 16)
    out = EDMDenoiser(net, 0.5)(x, 1.5, cond)
    torch.testing.assert_close(out, x * 0.25 / (1.5**2 + 0.25), rtol=1e-6, atol=0)


def test_training_sigma_is_log_normal_with_p_mean_and_p_std():
    gen = torch.Generator().manual_seed(1)
    log_sigma = torch.log(sample_training_sigma(200_000, -1.2, 1.2, gen, dtype=torch.float64))
    # standard errors 1.2/sqrt(n) = 0.0027 (mean) and 0.0019 (std)
    assert float(log_sigma.mean()) == pytest.approx(-1.2, abs=0.011)
    assert float(log_sigma.std()) == pytest.approx(1.2, abs=0.008)


def test_masked_loss_is_the_weighted_mean_of_lambda_times_squared_error():
    # D = 0 everywhere: loss = lambda(sigma) * sum(w y^2) / sum(w)
    clean = torch.tensor([[[[1.0, 2.0, float("nan")]]]])
    weight = torch.tensor([[[[1.0, 3.0, 0.0]]]])
    sigma = torch.tensor([0.5])
    loss, wsum = masked_edm_loss(lambda x, s, c: torch.zeros_like(x), clean, weight, sigma_data=0.5,
                                 sigma=sigma, noise=torch.ones_like(clean))
    assert float(wsum) == 4.0
    assert float(loss) == pytest.approx(8.0 * (1 * 1 + 3 * 4) / 4, rel=1e-6)


def _per_pixel_denoiser(shape):
    theta = torch.nn.Parameter(torch.linspace(0.5, 1.5, int(np.prod(shape))).reshape(shape))
    return theta, (lambda x, s, c: theta * x)


def test_masked_pixels_contribute_exactly_zero_loss_and_gradient():
    gen = torch.Generator().manual_seed(2)
    clean = torch.randn(2, 1, 6, 6, generator=gen)
    weight = (torch.rand(2, 1, 6, 6, generator=gen) > 0.4).float()
    sigma, noise = torch.tensor([0.3, 2.0]), torch.randn(2, 1, 6, 6, generator=gen)
    results = []
    for fill in (0.0, 1e6, float("nan")):
        theta, denoiser = _per_pixel_denoiser(clean.shape)
        y = torch.where(weight > 0, clean, torch.full_like(clean, fill))
        loss, _ = masked_edm_loss(denoiser, y, weight, sigma=sigma, noise=noise)
        loss.backward()
        results.append((loss.item(), theta.grad.clone()))
    for loss_value, grad in results:
        assert math.isfinite(loss_value) and loss_value == results[0][0]
        assert torch.equal(grad, results[0][1])
        assert torch.all(grad[weight == 0] == 0) and torch.all(grad[weight > 0] != 0)


def test_fully_masked_batch_gives_zero_loss_and_zero_gradients():
    theta, denoiser = _per_pixel_denoiser((1, 1, 4, 4))
    clean = torch.full((1, 1, 4, 4), float("nan"))
    loss, wsum = masked_edm_loss(denoiser, clean, torch.zeros(1, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.item() == 0.0 and float(wsum) == 0.0 and torch.all(theta.grad == 0)


def test_masked_loss_refuses_negative_weights_and_shape_mismatch():
    with pytest.raises(ValueError, match="non-negative"):
        masked_edm_loss(lambda x, s, c: x, torch.zeros(1, 1, 2, 2), -torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="weight must have the shape of clean"):
        masked_edm_loss(lambda x, s, c: x, torch.zeros(1, 1, 2, 2), torch.ones(1, 2, 2))


def test_sigma_data_estimate_is_the_masked_root_mean_square():
    residual = torch.tensor([1.0, -2.0, float("nan"), 5.0])
    weight = torch.tensor([1.0, 1.0, 0.0, 2.0])
    assert estimate_sigma_data(residual, weight) == pytest.approx(math.sqrt((1 + 4 + 2 * 25) / 4), rel=1e-12)
    with pytest.raises(ValueError, match="no point with positive weight"):
        estimate_sigma_data(residual, torch.zeros(4))
