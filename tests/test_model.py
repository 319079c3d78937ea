import dataclasses

import numpy as np
import pytest
import torch

from pqpf.config import ProbabilityConfig
from pqpf.hparams import load_hparams
from pqpf.model.resunet import ResUNet, count_parameters
from pqpf.model.resunet import build_resunet as build_model
from pqpf.ordinal import (
    bin_index,
    cdf_at_edges,
    exceedance_matrix,
    exceedance_probs,
    pointwise_quantiles,
    probs_from_logits,
    quantiles,
    stratum_means,
    validate_bin_edges,
)

EDGES = (0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 3.5, 5.0, 7.5, 10.0, 15.0, 25.0, 40.0)
THRESHOLDS = ProbabilityConfig().thresholds_mm


@pytest.fixture(autouse=True)
def _few_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _random_probs(rng, shape, k=None):
    k = len(EDGES) if k is None else k
    logits = rng.normal(scale=2.0, size=shape[:1] + (k,) + shape[1:])
    return probs_from_logits(logits, dim=1).astype(np.float64)


@pytest.mark.parametrize("shape", [(37, 53), (3, 5), (1, 1), (64, 64)])
@pytest.mark.parametrize("depth", [2, 3])
def test_output_shape_matches_input_for_any_size(shape, depth):
    torch.manual_seed(0)
    net = ResUNet(5, 14, base_width=4, depth=depth).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 5, *shape))
    assert out.shape == (2, 14) + shape and torch.isfinite(out).all()


def test_translation_of_input_translates_output_away_from_borders():
    # Batch norm in eval mode is pointwise, so the network is translation-equivariant
    # for shifts that are multiples of 2**depth, away from the zero-padded borders.
    torch.manual_seed(1)
    net = ResUNet(3, 6, base_width=4, depth=2, norm="batch").eval()
    torch.nn.init.normal_(net.head.weight)  # an O(1) output, so the check has teeth
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        out = net(x)
        out_shift = net(torch.roll(x, shifts=(8, 4), dims=(-2, -1)))
    core = out[..., 30:60, 30:60]
    moved = out_shift[..., 38:68, 34:64]
    assert core.abs().mean() > 0.02
    assert torch.allclose(core, moved, atol=1e-5)
    assert not torch.allclose(out_shift[..., 30:60, 30:60], core, atol=1e-3)


def test_attention_gates_add_exactly_their_parameters():
    base, depth = 8, 3
    with_gates = count_parameters(ResUNet(5, 14, base, depth, attention=True))
    without = count_parameters(ResUNet(5, 14, base, depth, attention=False))
    expected = 0
    for level in range(depth):
        c = base * 2**level
        c_int = c // 2
        expected += c * c_int + (c * c_int + c_int) + (c_int + 1)  # theta, phi, psi
    assert with_gates - without == expected


def test_same_seed_gives_identical_outputs_and_another_seed_differs():
    x = torch.randn(2, 5, 24, 24)

    def run(seed):
        torch.manual_seed(seed)
        net = ResUNet(5, 14, 8, 2)
        with torch.no_grad():
            return net(x)

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_gradients_reach_the_first_layer():
    torch.manual_seed(5)
    net = ResUNet(5, 14, 8, 2)
    out = net(torch.randn(2, 5, 16, 16))
    (out * torch.randn_like(out)).sum().backward()
    grad = net.encoders[0].conv1.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0


def test_initial_forecast_is_the_prior():
    torch.manual_seed(6)
    net = ResUNet(5, 14, 8, 2).eval()
    x = torch.randn(2, 5, 16, 16) * 3
    with torch.no_grad():
        p = torch.softmax(net(x), dim=1)
    assert torch.allclose(p, torch.full_like(p, 1 / 14), atol=2e-3)
    prior = np.linspace(1, 14, 14)[::-1] ** 2
    prior = prior / prior.sum()
    net.set_prior(prior)
    with torch.no_grad():
        p = torch.softmax(net(x), dim=1)
    # Relative as well: the tiny head moves the logits by ~0.01, i.e. p by ~1 % of itself
    # (the resize decoder's 3x3 convolutions give somewhat larger features than 2x2 ones).
    assert torch.allclose(p, torch.tensor(prior, dtype=p.dtype).view(1, -1, 1, 1).expand_as(p),
                          atol=2e-3, rtol=2e-2)


def test_unknown_norm_lists_valid_names():
    with pytest.raises(ValueError, match="batch, group, instance"):
        ResUNet(5, 14, norm="layer")


@pytest.mark.parametrize("norm", ["batch", "group", "instance"])
def test_tiny_hparams_model_trains_on_a_batch(norm):
    hp = load_hparams("tiny")
    assert (hp.model.base_width, hp.model.depth) == (8, 2)
    torch.manual_seed(7)
    net = build_model(dataclasses.replace(hp.model, norm=norm), in_channels=5)
    assert net.n_bins == len(hp.model.bin_edges_mm)
    x = torch.randn(16, 5, 64, 64)
    out = net(x)
    assert out.shape == (16, 14, 64, 64)
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


# ---- bins ---------------------------------------------------------------------------


def test_validate_bin_edges_names_the_problem():
    assert validate_bin_edges(EDGES, THRESHOLDS).dtype == np.float64
    with pytest.raises(ValueError, match="threshold 2.5 mm is not a bin edge"):
        validate_bin_edges((0, 1, 2, 5), (1, 2.5))
    with pytest.raises(ValueError, match="first bin edge must be 0"):
        validate_bin_edges((0.1, 1, 2))
    with pytest.raises(ValueError, match="strictly increasing"):
        validate_bin_edges((0, 1, 1, 2))


def test_bin_index_lower_edges_nan_and_negative():
    obs = np.array([0.0, 0.0998, 0.1, 0.3, 25.0, 39.9, 40.0, 300.0, -0.001, np.nan])
    want = [0, 0, 1, 2, 12, 12, 13, 13, 0, -1]
    assert bin_index(obs, EDGES).tolist() == want
    got = bin_index(torch.tensor(obs, dtype=torch.float64), EDGES)
    assert got.dtype == torch.int64 and got.tolist() == want


def test_amounts_a_float32_ulp_below_an_edge_reach_it():
    """A uniform 2.5 mm area remapped in float32 can read 2.4999998: one ulp below an edge
    is still that edge's bin and event; 2e-4 mm below it is not."""
    from pqpf.ordinal import AMOUNT_ATOL_MM, reaches

    edges = np.asarray(EDGES, dtype=np.float64)
    below = np.nextafter(edges[1:].astype(np.float32), np.float32(0))  # one ulp low
    far = (edges[1:] - 2 * AMOUNT_ATOL_MM).astype(np.float64)
    want = list(range(1, len(EDGES)))
    assert bin_index(below, EDGES).tolist() == want
    assert bin_index(torch.from_numpy(below), EDGES).tolist() == want
    assert bin_index(far, EDGES).tolist() == [k - 1 for k in want]
    assert reaches(below, edges[1:].astype(np.float32)).all()
    assert not reaches(far, edges[1:]).any()
    assert reaches(torch.from_numpy(below), torch.from_numpy(edges[1:].astype(np.float32))).all()


def test_softmax_and_cdf_agree_between_numpy_and_torch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 14, 3, 4))
    p_np = probs_from_logits(logits)
    p_t = probs_from_logits(torch.tensor(logits)).numpy()
    np.testing.assert_allclose(p_np, p_t, rtol=1e-6)
    cdf = cdf_at_edges(p_t, dim=1)
    assert cdf.shape == (2, 13, 3, 4)
    np.testing.assert_allclose(cdf[:, -1], 1 - p_t[:, -1], atol=1e-12)
    np.testing.assert_allclose(cdf_at_edges(torch.tensor(p_t), dim=1).numpy(), cdf, atol=1e-12)


def test_exceedance_is_monotone_in_unit_interval_and_matches_matrix():
    rng = np.random.default_rng(1)
    p = _random_probs(rng, (3, 8, 9)).astype(np.float32)
    ex = exceedance_probs(p, EDGES, THRESHOLDS)
    assert ex.shape == (3, 6, 8, 9)
    assert (ex >= 0).all() and (ex <= 1).all() and (np.diff(ex, axis=1) <= 0).all()
    m = exceedance_matrix(EDGES, THRESHOLDS)
    assert m.shape == (6, 14) and set(np.unique(m)) == {0.0, 1.0}
    np.testing.assert_allclose(np.einsum("tk,bkyx->btyx", m, p), ex, atol=1e-6)
    np.testing.assert_allclose(ex[:, 0], 1 - p[:, 0] - p[:, 1], atol=1e-6)  # 0.25 mm = edge 2
    ex_t = exceedance_probs(torch.from_numpy(p), EDGES, THRESHOLDS)
    np.testing.assert_allclose(ex_t.numpy(), ex, atol=1e-6)
    assert (torch.diff(ex_t, dim=1) <= 0).all()


def _binned_cdf(x, p, edges, scale):
    """CDF of the binned distribution: uniform in closed bins, exponential tail."""
    f = 0.0
    for k in range(len(edges) - 1):
        if x < edges[k + 1]:
            return f + p[k] * max(x - edges[k], 0.0) / (edges[k + 1] - edges[k])
        f += p[k]
    return f + p[-1] * (1 - np.exp(-(x - edges[-1]) / scale))


def test_quantiles_are_monotone_and_invert_the_cdf():
    rng = np.random.default_rng(2)
    p = _random_probs(rng, (4, 3, 2))
    p[0, 3:, 0, 0] = 0.0  # zero-probability bins, renormalised
    p[0, :, 0, 0] /= p[0, :, 0, 0].sum()
    levels = np.array([0.0, 0.05, 0.3, 0.5, 0.9, 0.99, 0.999])
    q = quantiles(p, EDGES, levels)
    assert q.shape == (4, 7, 3, 2) and (np.diff(q, axis=1) >= 0).all()
    for b, y, x in np.ndindex(4, 3, 2):
        for i, level in enumerate(levels):
            f = _binned_cdf(float(q[b, i, y, x]), p[b, :, y, x], EDGES, 15.0)
            assert f == pytest.approx(level, abs=2e-5)
    assert q[0, -1, 0, 0] <= EDGES[3]  # no mass above 0.5 mm
    median = quantiles(torch.from_numpy(p), EDGES, 0.5)
    assert median.shape == (4, 3, 2) and np.array_equal(median, q[:, 3])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        quantiles(p, EDGES, [0.5, 1.0])


def test_quantile_at_edge_cdf_is_the_edge():
    p = np.array([0.5, 0.25, 0.25])
    q = quantiles(p, (0.0, 1.0, 5.0), [0.5, 0.75, 0.875], dim=0)
    np.testing.assert_allclose(q, [1.0, 5.0, 5.0 + 4.0 * np.log(2.0)], rtol=1e-6)


def test_stratum_means_by_hand():
    p = np.array([0.5, 0.25, 0.25])  # uniform [0, 1), uniform [1, 5), exponential above 5 (scale 4: mean 9)
    np.testing.assert_allclose(stratum_means(p, (0.0, 1.0, 5.0), 2, dim=0), [0.5, 6.0], rtol=1e-6)
    np.testing.assert_allclose(stratum_means(p, (0.0, 1.0, 5.0), 4, dim=0), [0.25, 0.75, 3.0, 9.0], rtol=1e-6)
    np.testing.assert_allclose(stratum_means(p, (0.0, 1.0, 5.0), 4, dim=0, zero_first_bin=True),
                               [0.0, 0.0, 3.0, 9.0], rtol=1e-6)
    np.testing.assert_allclose(stratum_means(p, (0.0, 1.0, 5.0), 1, dim=0), [0.25 + 0.75 + 2.25], rtol=1e-6)
    with pytest.raises(ValueError, match=">= 1"):
        stratum_means(p, (0.0, 1.0, 5.0), 0, dim=0)
    # a total short of 1 (e.g. rounded file values) is renormalised, so the means still rise
    short = np.zeros(len(EDGES))
    short[0], short[-1] = 0.5, 0.01
    means = stratum_means(short, EDGES, 8, dim=0)
    np.testing.assert_allclose(means, stratum_means(short / 0.51, EDGES, 8, dim=0), rtol=1e-6)
    assert (np.diff(means) >= 0).all() and means[-1] > 1.0  # the tail


def test_stratum_means_integrate_the_quantile_function_and_keep_the_mean():
    rng = np.random.default_rng(5)
    p = _random_probs(rng, (6,))  # (6 points, K bins)
    p[0, 4:] = 0.0  # zero-probability bins, renormalised
    p[0] /= p[0].sum()
    n, fine = 8, 4000
    means = stratum_means(p, EDGES, n, dim=1)
    assert means.shape == (6, n) and (np.diff(means, axis=1) >= 0).all()
    # the midpoint rule over 4000 levels per interval (the tail's log singularity at 1 is integrable)
    levels = (np.arange(n * fine) + 0.5) / (n * fine)
    q = pointwise_quantiles(p.T, EDGES, np.broadcast_to(levels[:, None], (levels.size, 6)))
    numeric = q.reshape(n, fine, 6).astype(np.float64).mean(axis=1).T
    np.testing.assert_allclose(means, numeric, rtol=2e-3, atol=1e-5)
    # each mean lies between the quantiles at its interval's ends
    ends = quantiles(p, EDGES, (np.arange(n + 1)[:-1] / n).tolist(), dim=1)
    assert (means >= ends - 1e-5).all() and (means[:, :-1] <= ends[:, 1:] + 1e-5).all()
    # their average is the distribution's mean: bin centres, the tail at e_K-1 + its scale
    widths = np.diff(EDGES)
    centres = np.append(np.asarray(EDGES[:-1]) + widths / 2, EDGES[-1] + widths[-1])
    np.testing.assert_allclose(means.mean(axis=1), p @ centres, rtol=1e-5)
    centres[0] = 0.0  # the first bin a point mass at 0 mm
    np.testing.assert_allclose(stratum_means(p, EDGES, n, dim=1, zero_first_bin=True).mean(axis=1), p @ centres,
                               rtol=1e-5)


def _batchnorm_net_with_statistics(norm: str = "batch") -> ResUNet:
    """A random ResUNet whose batch norms hold the statistics of their own activations."""
    torch.manual_seed(3)
    net = ResUNet(5, 14, base_width=8, depth=3, norm=norm)
    torch.nn.init.normal_(net.head.weight)  # an O(1) output, so comparisons have teeth
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
        net.train()(torch.randn(4, 5, 48, 48))
    return net.eval()


def test_folding_batch_norms_keeps_the_function_and_the_original_network():
    from pqpf.model.resunet import fold_batchnorm

    net = _batchnorm_net_with_statistics().double()  # float64: the same function to rounding
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 5, 40, 56, dtype=torch.float64)
    with torch.no_grad():
        ref, out = net(x), folded(x)
    assert ref.abs().mean() > 0.01
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # untouched
    group = _batchnorm_net_with_statistics("group")
    assert fold_batchnorm(group) is group  # nothing to fold


def test_batchnorm_statistics_are_recomputed_as_a_plain_average_over_the_batches():
    from pqpf.model.norms import recompute_batchnorm_statistics

    torch.manual_seed(0)
    conv1, bn1 = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)
    drop, conv2, bn2 = torch.nn.Dropout(0.5), torch.nn.Conv2d(4, 2, 1), torch.nn.BatchNorm2d(2)
    net = torch.nn.Sequential(conv1, bn1, torch.nn.ReLU(), drop, conv2, bn2).train()
    batches = [torch.randn(2 + k, 3, 9, 9) * (1 + k) + k for k in range(3)]  # unequal sizes and scales
    assert recompute_batchnorm_statistics(net, iter(batches)) == 3
    with torch.no_grad():
        h1 = [conv1(x) for x in batches]
        h2 = [conv2(torch.relu((h - h.mean((0, 2, 3), keepdim=True))
                               / torch.sqrt(h.var((0, 2, 3), unbiased=False, keepdim=True) + bn1.eps)
                               * bn1.weight.view(1, -1, 1, 1) + bn1.bias.view(1, -1, 1, 1))) for h in h1]
    for bn, hs in ((bn1, h1), (bn2, h2)):  # each batch counts the same; dropout was off
        torch.testing.assert_close(bn.running_mean, torch.stack([h.mean((0, 2, 3)) for h in hs]).mean(0))
        torch.testing.assert_close(bn.running_var, torch.stack([h.var((0, 2, 3)) for h in hs]).mean(0))
        assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 3
    assert all(m.training for m in net.modules())  # modes restored
    net.eval()
    recompute_batchnorm_statistics(net, batches[:1])
    assert not any(m.training for m in net.modules())
    with pytest.raises(ValueError, match="no batches"):
        recompute_batchnorm_statistics(net, [])
    assert bn1.momentum == 0.1
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    assert recompute_batchnorm_statistics(plain, batches) == 0
