import numpy as np
import properscoring
import pytest
import torch

from pqpf.config import ProbabilityConfig
from pqpf.model.loss import log_score_per_pixel, masked_rps_loss, rps_per_pixel
from pqpf.ordinal import THRESHOLD_EDGE_WEIGHT, bin_index, edge_weights
from pqpf.quality import good_quality_mask as observation_mask

EDGES = (0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 3.5, 5.0, 7.5, 10.0, 15.0, 25.0, 40.0)
THRESHOLDS = ProbabilityConfig().thresholds_mm
K = len(EDGES)


def _case(seed, b=2, h=5, w=6, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, K, h, w, generator=gen, dtype=dtype) * 2
    obs = torch.rand(b, h, w, generator=gen, dtype=dtype) ** 3 * 60  # 0..60 mm, skewed
    return logits, obs


def _brute_force_crps(p, obs_mm, edges):
    """CRPS of point masses p_k at the lower edges against the observation moved to
    the lower edge of its bin, by midpoint integration of (F(x) - H(x - y))^2.

    Every edge is a multiple of the step, so the integrand is constant on each cell
    and the midpoint rule is exact."""
    step = 0.005
    x = (np.arange(int(round(50.0 / step))) + 0.5) * step
    forecast_cdf = np.zeros_like(x)
    for pk, e in zip(p, edges):
        forecast_cdf += pk * (x >= e)
    y = edges[int(bin_index(np.array([obs_mm]), edges)[0])]
    obs_cdf = (x >= y).astype(float)
    return float(((forecast_cdf - obs_cdf) ** 2).sum() * step)


def test_rps_scheme_equals_textbook_three_category_example():
    # Categories [0, 1), [1, 5), [5, inf); forecast (0.2, 0.5, 0.3); obs 3 mm (middle).
    # Cumulative forecast (0.2, 0.7), cumulative observation (0, 1):
    # RPS = 0.2**2 + 0.3**2 = 0.13.
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)).view(1, 3, 1, 1)
    obs = torch.tensor([[[3.0]]], dtype=torch.float64)
    edges = (0.0, 1.0, 5.0)
    got = rps_per_pixel(logits, obs, edges, edge_weights(edges, "rps"))
    assert float(got) == pytest.approx(0.13, abs=1e-12)
    # obs 7 mm (top): (0.2)^2 + (0.7)^2 = 0.53; "crps" weights the edges by 1 and 4 mm.
    obs = torch.tensor([[[7.0]]], dtype=torch.float64)
    assert float(rps_per_pixel(logits, obs, edges, edge_weights(edges, "rps"))) == pytest.approx(0.53)
    crps = rps_per_pixel(logits, obs, edges, edge_weights(edges, "crps"))
    assert float(crps) == pytest.approx(1 * 0.04 + 4 * 0.49, abs=1e-12)


def test_crps_scheme_equals_brute_force_crps_of_discretised_distributions():
    logits, obs = _case(0, b=1, h=4, w=5)
    # On an edge, within the round-off tolerance below one (counts as on it), and just outside it.
    obs[0, 0, :5] = torch.tensor([0.0, 0.1, 40.0, 0.09999, 0.0998], dtype=torch.float64)
    score = rps_per_pixel(logits, obs, EDGES, edge_weights(EDGES, "crps"))
    probs = torch.softmax(logits, dim=1).numpy()
    for y, x in np.ndindex(4, 5):
        want = _brute_force_crps(probs[0, :, y, x], float(obs[0, y, x]), EDGES)
        assert float(score[0, y, x]) == pytest.approx(want, abs=1e-6)
        # An independent implementation: a weighted "ensemble" of the bin lower edges.
        y_edge = EDGES[int(bin_index(obs[0, y, x].numpy(), EDGES))]
        ref = properscoring.crps_ensemble(y_edge, np.array(EDGES), weights=probs[0, :, y, x])
        assert float(score[0, y, x]) == pytest.approx(float(ref), abs=1e-9)


def test_float32_logits_score_close_to_float64():
    logits, obs = _case(1)
    s64 = rps_per_pixel(logits, obs, EDGES, edge_weights(EDGES, "crps"))
    s32 = rps_per_pixel(logits.float(), obs.float(), EDGES, edge_weights(EDGES, "crps"))
    assert s32.dtype == torch.float32
    np.testing.assert_allclose(s32.numpy(), s64.numpy(), rtol=1e-5, atol=1e-5)


def test_edge_weights_schemes_and_errors():
    np.testing.assert_array_equal(edge_weights(EDGES, "rps"), np.ones(K - 1))
    np.testing.assert_allclose(edge_weights(EDGES, "crps"), np.diff(EDGES))
    w = edge_weights(EDGES, "threshold", THRESHOLDS)
    heavy = [EDGES[k + 1] for k in np.flatnonzero(w == THRESHOLD_EDGE_WEIGHT)]
    assert heavy == list(THRESHOLDS) and (w[w != THRESHOLD_EDGE_WEIGHT] == 1).all()
    with pytest.raises(ValueError, match="needs thresholds_mm"):
        edge_weights(EDGES, "threshold")
    with pytest.raises(ValueError, match="crps, rps, threshold"):
        edge_weights(EDGES, "brier")


@pytest.mark.parametrize("scheme, log_weight", [("rps", 0.0), ("crps", 0.0), ("threshold", 0.0), ("rps", 0.7)])
def test_masked_pixels_contribute_exactly_zero_loss_and_gradient(scheme, log_weight):
    logits, obs = _case(2, dtype=torch.float32)
    mask = torch.rand(obs.shape, generator=torch.Generator().manual_seed(9)) > 0.4
    obs_nan = torch.where(mask, obs, torch.full_like(obs, float("nan")))

    def run(lg, ob):
        lg = lg.clone().requires_grad_(True)
        loss, n = masked_rps_loss(lg, ob, mask, EDGES, scheme, thresholds_mm=THRESHOLDS, log_weight=log_weight)
        loss.backward()
        return loss.detach(), n, lg.grad

    loss, n, grad = run(logits, obs_nan)
    assert float(n) == int(mask.sum())
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert (grad.permute(0, 2, 3, 1)[~mask] == 0).all()
    assert (grad.permute(0, 2, 3, 1)[mask] != 0).any()
    # Garbage at masked points (huge/NaN logits, other amounts) changes nothing.
    junk = torch.where(mask.unsqueeze(1), logits, torch.full_like(logits, float("nan")))
    junk[:, 0][~mask] = 1e30
    loss2, _, grad2 = run(junk, torch.where(mask, obs, obs + 100))
    assert torch.equal(loss, loss2) and torch.equal(grad, grad2)
    # The value is the mean over valid points of the per-pixel score.
    w = edge_weights(EDGES, scheme, THRESHOLDS)
    want = (rps_per_pixel(logits, obs, EDGES, w) + log_weight * log_score_per_pixel(logits, obs, EDGES))[mask].mean()
    assert float(loss) == pytest.approx(float(want), rel=1e-6)


def test_log_score_is_minus_log_of_the_observed_bins_probability():
    # Bins [0, 1), [1, 5), [5, inf) with probabilities (0.2, 0.5, 0.3).
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)).view(1, 3, 1, 1).repeat(1, 1, 1, 4)
    obs = torch.tensor([[[0.0, 3.0, 5.0, 70.0]]], dtype=torch.float64)  # 5 mm is the lower edge of the top bin
    got = log_score_per_pixel(logits, obs, (0.0, 1.0, 5.0))
    assert got[0, 0].tolist() == pytest.approx([-np.log(0.2), -np.log(0.5), -np.log(0.3), -np.log(0.3)], rel=1e-12)
    # In the loss: the RPS (0.13 for 3 mm, see the textbook test) plus lambda times it.
    loss, _ = masked_rps_loss(logits[..., 1:2], obs[..., 1:2], torch.ones((1, 1, 1), dtype=torch.bool),
                              (0.0, 1.0, 5.0), log_weight=0.5)
    assert float(loss) == pytest.approx(0.13 - 0.5 * np.log(0.5), rel=1e-12)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="log_weight"):
            masked_rps_loss(logits, obs, torch.ones_like(obs, dtype=torch.bool), (0.0, 1.0, 5.0), log_weight=bad)


def _refit_biases(logits, obs, edges, score):
    """The K head biases minimising the mean ``score`` over fixed logits (B=1, K, 1, N)."""
    k = logits.shape[1]
    delta = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([delta], max_iter=500, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                            tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        loss = score(logits + delta.view(1, k, 1, 1), obs)
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(logits + delta.detach().view(1, k, 1, 1), dim=1)[0, :, 0]


def test_log_score_pins_the_bins_frequencies_where_the_rps_does_not():
    """Where the head biases are optimal, the log score's forecast frequency of every bin
    equals the observed one (its derivative in bias j is the sum of p_j - 1[obs in j]);
    the RPS's derivative weighs each point by its p_j, and with a forecast less sharp than
    the truth its optimum over-forecasts the upper edges (docs/calibration.md, section 11)."""
    edges = (0.0, 0.1, 1.0, 5.0, 25.0)
    k_bins, n = len(edges), 4000
    gen = torch.Generator().manual_seed(0)
    base = torch.log(torch.tensor([0.7, 0.15, 0.1, 0.04, 0.01], dtype=torch.float64))
    z = base[:, None] + torch.randn(k_bins, n, generator=gen, dtype=torch.float64)
    truth = torch.softmax(2.0 * z, dim=0)  # sharper than the forecast softmax(z)
    k = torch.multinomial(truth.T, 1, generator=gen)[:, 0]
    obs = (torch.tensor(edges, dtype=torch.float64)[k] + 0.01).view(1, 1, n)
    logits, mask = z.view(1, k_bins, 1, n), torch.ones((1, 1, n), dtype=torch.bool)
    observed = torch.stack([(k >= j).sum() for j in range(1, k_bins)]).double()

    def events_ratio(p):  # forecast / observed events at every inner edge
        return (p.flip(0).cumsum(0).flip(0)[1:].sum(dim=1) / observed).numpy()

    log_only = events_ratio(_refit_biases(logits, obs, edges, lambda lg, ob: log_score_per_pixel(lg, ob, edges).mean()))
    rps_only = events_ratio(_refit_biases(logits, obs, edges, lambda lg, ob: masked_rps_loss(lg, ob, mask, edges)[0]))
    both = events_ratio(_refit_biases(logits, obs, edges,
                                      lambda lg, ob: masked_rps_loss(lg, ob, mask, edges, log_weight=1.0)[0]))
    np.testing.assert_allclose(log_only, 1.0, atol=1e-6)
    assert rps_only[2] > 1.15  # >= 5 mm: 1.21 here
    assert np.abs(both - 1).max() < 0.6 * np.abs(rps_only - 1).max()


def test_no_valid_pixel_gives_zero_loss_with_zero_gradient():
    logits, obs = _case(3, dtype=torch.float32)
    logits.requires_grad_(True)
    loss, n = masked_rps_loss(logits, obs, torch.zeros_like(obs, dtype=torch.bool), EDGES)
    assert float(loss.detach()) == 0.0 and float(n) == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert (logits.grad == 0).all()


@pytest.mark.parametrize("scheme", ["rps", "crps", "threshold"])
def test_perfect_one_hot_forecast_scores_zero(scheme):
    _, obs = _case(4)
    k = bin_index(obs, EDGES)
    logits = torch.nn.functional.one_hot(k, K).permute(0, 3, 1, 2).double() * 60.0
    loss, _ = masked_rps_loss(logits, obs, torch.ones_like(obs, dtype=torch.bool), EDGES, scheme,
                              thresholds_mm=THRESHOLDS)
    assert float(loss) < 1e-20
    wrong = torch.roll(logits, 1, dims=1)
    assert float(masked_rps_loss(wrong, obs, torch.ones_like(obs, dtype=torch.bool), EDGES, scheme,
                                 thresholds_mm=THRESHOLDS)[0]) > 0.1


def test_sample_weight_zero_equals_dropping_the_sample():
    logits, obs = _case(5, b=4)
    mask = torch.rand(obs.shape, generator=torch.Generator().manual_seed(1)) > 0.2
    sw = torch.tensor([1.0, 0.0, 2.5, 0.5], dtype=torch.float64)
    loss, n = masked_rps_loss(logits, obs, mask, EDGES, "crps", sample_weight=sw)
    keep = sw > 0
    loss_k, n_k = masked_rps_loss(logits[keep], obs[keep], mask[keep], EDGES, "crps",
                                  sample_weight=sw[keep])
    assert float(loss) == pytest.approx(float(loss_k), rel=1e-12) and float(n) == float(n_k)
    # Manual weighted mean; scaling all weights changes nothing.
    score = rps_per_pixel(logits, obs, EDGES, edge_weights(EDGES, "crps"))
    num = sum(float(sw[b] * score[b][mask[b]].sum()) for b in range(4))
    den = sum(float(sw[b] * mask[b].sum()) for b in range(4))
    assert float(loss) == pytest.approx(num / den, rel=1e-12) and float(n) == pytest.approx(den)
    loss3, _ = masked_rps_loss(logits, obs, mask, EDGES, "crps", sample_weight=sw * 3)
    assert float(loss3) == pytest.approx(float(loss), rel=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        masked_rps_loss(logits, obs, mask, EDGES, sample_weight=-sw)
    with pytest.raises(ValueError, match="bool"):
        masked_rps_loss(logits, obs, mask.double(), EDGES)


@pytest.mark.parametrize("scheme", ["rps", "crps", "threshold"])
def test_expected_score_is_minimised_by_the_true_distribution(scheme):
    rng = np.random.default_rng(7)
    w = edge_weights(EDGES, scheme, THRESHOLDS)
    mid = np.append((np.array(EDGES[:-1]) + np.array(EDGES[1:])) / 2, 50.0)
    obs = torch.tensor(mid, dtype=torch.float64).view(K, 1, 1)  # one observation per bin
    for _ in range(5):
        true_p = rng.dirichlet(np.full(K, 0.5))
        candidates = [true_p] + [rng.dirichlet(np.full(K, 0.5)) for _ in range(50)]
        candidates += [np.clip(true_p + rng.normal(scale=0.02, size=K), 1e-9, None) for _ in range(50)]
        expected = []
        for c in candidates:
            logits = torch.tensor(np.log(c / c.sum() + 1e-300)).view(1, K, 1, 1).expand(K, K, 1, 1)
            score = rps_per_pixel(logits, obs, EDGES, w).view(K).numpy()
            expected.append(float(true_p @ score))
        assert int(np.argmin(expected)) == 0
        assert min(expected[1:]) > expected[0]


def test_observation_mask_excludes_missing_and_poor_quality():
    obs = np.array([1.0, np.nan, 0.0, 2.0, 3.0])
    quality = np.array([0.9, 0.9, 0.49, np.nan, 0.5])
    assert observation_mask(obs, quality, 0.5).tolist() == [True, False, False, False, True]
    got = observation_mask(torch.tensor(obs), torch.tensor(quality), 0.5)
    assert got.tolist() == [True, False, False, False, True]
