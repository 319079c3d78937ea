"""Transform, the U-Net's central estimate and summaries, the residual target."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from pqpf.diffusion.target import (
    amount_from_residual,
    bin_log1p_moments,
    central_estimate,
    inverse_transform_amount,
    residual_target,
    summary_matrix,
    transform_amount,
    unet_summaries,
)
from pqpf.ordinal import exceedance_probs

EDGES = [0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 3.5, 5.0, 7.5, 10.0, 15.0, 25.0, 40.0]
PROBS = np.array([0.30, 0.08, 0.07, 0.08, 0.06, 0.08, 0.06, 0.06, 0.05, 0.04, 0.04, 0.04, 0.02, 0.02])


def _sample_binned(probs, edges, n, rng, dry_bin):
    """Draws from the binned distribution: uniform in closed bins, exponential tail."""
    edges = np.asarray(edges)
    k = rng.choice(edges.size, size=n, p=probs)
    upper = np.append(edges[1:], np.inf)
    y = edges[k] + rng.random(n) * np.where(np.isfinite(upper[k]), upper[k] - edges[k], 0.0)
    tail = k == edges.size - 1
    y[tail] = edges[-1] + rng.exponential(edges[-1] - edges[-2], tail.sum())
    if dry_bin == "point":
        y[k == 0] = 0.0
    return y


def test_transform_pair_round_trips_and_clips_at_zero():
    a = np.array([0.0, 0.05, 1.0, 40.0, np.nan], dtype=np.float32)
    np.testing.assert_allclose(inverse_transform_amount(transform_amount(a)), a, rtol=1e-6)
    np.testing.assert_array_equal(inverse_transform_amount(np.array([-0.5, -3.0])), [0.0, 0.0])
    assert transform_amount(np.array([-1e-7]))[0] == 0.0
    t = torch.tensor([-0.2, 0.0, math.log(3.0)])
    torch.testing.assert_close(inverse_transform_amount(t), torch.tensor([0.0, 0.0, 2.0]))


@pytest.mark.parametrize("dry_bin", ["point", "uniform"])
def test_bin_moments_equal_numerical_integrals(dry_bin):
    mean, second = bin_log1p_moments(EDGES, dry_bin=dry_bin)
    for k in range(1 if dry_bin == "point" else 0, len(EDGES) - 1):
        a, b = EDGES[k], EDGES[k + 1]
        m1 = integrate.quad(lambda y: math.log1p(y), a, b, epsabs=0, epsrel=1e-13)[0] / (b - a)
        m2 = integrate.quad(lambda y: math.log1p(y) ** 2, a, b, epsabs=0, epsrel=1e-13)[0] / (b - a)
        assert mean[k] == pytest.approx(m1, rel=1e-10) and second[k] == pytest.approx(m2, rel=1e-10)
    s, e = 15.0, 40.0  # tail: exponential with mean excess s above e
    m1 = integrate.quad(lambda t: math.log1p(e + t) * math.exp(-t / s) / s, 0, math.inf, epsrel=1e-13)[0]
    assert mean[-1] == pytest.approx(m1, rel=1e-10)
    if dry_bin == "point":
        assert mean[0] == 0.0 and second[0] == 0.0


@pytest.mark.parametrize("dry_bin", ["point", "uniform"])
def test_central_estimate_and_spread_match_monte_carlo(dry_bin):
    rng = np.random.default_rng(0)
    z = np.log1p(_sample_binned(PROBS, EDGES, 2_000_000, rng, dry_bin))
    se = z.std() / math.sqrt(z.size)
    mu = central_estimate(PROBS[:, None], EDGES, dim=0, dry_bin=dry_bin)[0, 0]
    assert abs(mu - z.mean()) < 4 * se, (mu, z.mean(), se)
    summaries = unet_summaries(PROBS[:, None], EDGES, [1.0, 10.0], dim=0, dry_bin=dry_bin)[:, 0]
    assert summaries[0] == pytest.approx(mu, rel=1e-12)
    assert summaries[1] == pytest.approx(z.std(), rel=3e-3)
    y = np.expm1(z)
    np.testing.assert_allclose(summaries[2:], [(y >= 1.0).mean(), (y >= 10.0).mean()], atol=2e-3)


def test_central_estimate_is_the_same_in_torch_and_numpy_and_keeps_the_bin_axis():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(len(EDGES)), size=(2, 5, 7)).transpose(0, 3, 1, 2)  # (B, K, H, W)
    np_mu = central_estimate(probs, EDGES)
    torch_mu = central_estimate(torch.from_numpy(probs), EDGES)
    assert np_mu.shape == (2, 1, 5, 7) and torch_mu.shape == (2, 1, 5, 7)
    np.testing.assert_allclose(torch_mu.numpy(), np_mu, rtol=1e-12)
    summaries = unet_summaries(torch.from_numpy(probs).float(), EDGES, [0.25, 5.0])
    assert summaries.shape == (2, 4, 5, 7) and summaries.dtype == torch.float32
    expected = exceedance_probs(probs, EDGES, [0.25, 5.0])
    np.testing.assert_allclose(summaries[:, 2:].numpy(), expected, atol=1e-6)


def test_certain_dry_pixel_has_zero_central_estimate_and_zero_spread_with_a_point_dry_bin():
    probs = np.zeros((len(EDGES), 1))
    probs[0] = 1.0
    out = unet_summaries(probs, EDGES, [0.1], dim=0)
    np.testing.assert_array_equal(out[:, 0], [0.0, 0.0, 0.0])
    # uniform over [0, 0.1): mean (1.1 ln 1.1 - 0.1) / 0.1
    uniform = central_estimate(probs, EDGES, dim=0, dry_bin="uniform")[0, 0]
    assert uniform == pytest.approx((1.1 * math.log(1.1) - 0.1) / 0.1, rel=1e-12)


def test_summary_matrix_rows_are_moments_then_exceedances():
    m = summary_matrix(EDGES, [1.0, 25.0])
    assert m.shape == (4, len(EDGES))
    np.testing.assert_array_equal(m[2], (np.array(EDGES) >= 1.0).astype(float))
    np.testing.assert_array_equal(m[3], (np.array(EDGES) >= 25.0).astype(float))
    with pytest.raises(ValueError, match="threshold 3.0 mm is not a bin edge"):
        summary_matrix(EDGES, [3.0])


def test_residual_target_round_trips_and_keeps_missing_as_nan():
    amount = torch.tensor([0.0, 0.3, 12.0, float("nan")])
    central = torch.tensor([0.1, 0.2, 2.0, 0.5])
    r = residual_target(amount, central)
    torch.testing.assert_close(r[:3], torch.log1p(amount[:3]) - central[:3])
    assert torch.isnan(r[3])
    torch.testing.assert_close(amount_from_residual(r, central)[:3], amount[:3], rtol=1e-6, atol=1e-7)
    # a residual below -central gives exactly 0 mm
    assert amount_from_residual(torch.tensor([-1.0]), torch.tensor([0.2])).item() == 0.0
