"""Ensemble copula coupling keeps the U-Net's quantiles and the members' ranks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pqpf.diffusion.ecc import coherent_uniforms, ecc_levels, ensemble_copula_coupling, member_ranks
from pqpf.ordinal import quantiles

EDGES = [0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 3.5, 5.0, 7.5, 10.0, 15.0, 25.0, 40.0]


def _probs(shape, seed=0):
    rng = np.random.default_rng(seed)
    return np.moveaxis(rng.dirichlet(np.full(len(EDGES), 0.7), size=shape), -1, 0)


def test_levels_are_the_midpoints_of_m_equal_intervals():
    np.testing.assert_allclose(ecc_levels(4), [0.125, 0.375, 0.625, 0.875])


def test_output_has_exactly_the_unet_quantiles_and_the_members_ranks():
    rng = np.random.default_rng(1)
    members = rng.gamma(0.5, 2.0, size=(10, 12, 9))  # distinct values: no ties
    probs = _probs((12, 9))
    out = ensemble_copula_coupling(members, probs, EDGES, rng=0, dry_bin="uniform", levels="quantile")
    expected = quantiles(probs, EDGES, ecc_levels(10).tolist(), dim=0)
    np.testing.assert_array_equal(np.sort(out, axis=0), expected)
    np.testing.assert_array_equal(np.argsort(out, axis=0, kind="stable"), np.argsort(members, axis=0))


def test_point_dry_bin_gives_exact_zeros_below_the_first_edge_and_ranks_are_kept_with_ties():
    rng = np.random.default_rng(2)
    members = np.where(rng.random((8, 30, 30)) < 0.5, 0.0, rng.gamma(0.7, 3.0, size=(8, 30, 30)))
    probs = _probs((30, 30), seed=3)
    out = ensemble_copula_coupling(members, probs, EDGES, rng=5, levels="quantile")
    q = quantiles(probs, EDGES, ecc_levels(8).tolist(), dim=0)
    np.testing.assert_array_equal(np.sort(out, axis=0), np.where(q < 0.1, 0.0, q).astype(np.float32))
    # every pair of members in strict order keeps it (tied members may go either way)
    below = members[:, None] < members[None, :]  # (i, j, y, x): member i drier than member j
    assert np.all(out[:, None] <= out[None, :], where=below)
    assert below.sum() > 15_000  # the check is not vacuous (of 8 * 7 / 2 * 900 = 25 200 pairs)


def test_ties_are_broken_uniformly_at_random_and_reproducibly():
    members = np.zeros((5, 4000))  # every member dry everywhere
    ranks = member_ranks(members, np.random.default_rng(9))
    counts = np.stack([(ranks == r).sum(axis=1) for r in range(5)])  # member x rank
    # each member takes each rank with probability 1/5: 800 +- 4 * sqrt(4000 * 0.16) = 800 +- 101
    assert np.all(np.abs(counts - 800) < 101)
    np.testing.assert_array_equal(ranks, member_ranks(members, np.random.default_rng(9)))


def test_missing_members_or_probabilities_give_nan_and_bad_shapes_are_refused():
    members = np.ones((3, 2, 2))
    members[1, 0, 0] = np.nan
    probs = _probs((2, 2))
    probs[:, 1, 1] = np.nan
    out = ensemble_copula_coupling(members, probs, EDGES, rng=0)
    assert np.isnan(out[:, 0, 0]).all() and np.isnan(out[:, 1, 1]).all() and np.isfinite(out[:, 0, 1]).all()
    with pytest.raises(ValueError, match=r"need members \(M, ...\) and prob_bins \(K=14, ...\)"):
        ensemble_copula_coupling(members, probs[:, :1], EDGES, rng=0)


def test_pointwise_quantiles_equal_quantiles_at_the_same_levels():
    from pqpf.ordinal import pointwise_quantiles

    probs = _probs((7, 5), seed=4)
    levels = [0.0, 0.05, 0.3, 0.5, 0.97, 0.999]
    expected = quantiles(probs, EDGES, levels, dim=0)
    per_point = np.broadcast_to(np.array(levels)[:, None, None], (len(levels), 7, 5))
    np.testing.assert_array_equal(pointwise_quantiles(probs, EDGES, per_point), expected)
    # a level that differs between points takes each point's own distribution
    mixed = np.where(np.arange(5)[None, None, :] % 2 == 0, 0.3, 0.97) * np.ones((1, 7, 5))
    got = pointwise_quantiles(probs, EDGES, mixed)[0]
    np.testing.assert_array_equal(got[:, ::2], expected[2][:, ::2])
    np.testing.assert_array_equal(got[:, 1::2], expected[4][:, 1::2])
    with pytest.raises(ValueError, match="levels"):
        pointwise_quantiles(probs, EDGES, np.ones((1, 7, 5)))
    with pytest.raises(ValueError, match="same points"):
        pointwise_quantiles(probs, EDGES, np.full((1, 5, 7), 0.5))


def test_stratified_levels_keep_the_ranks_and_put_each_value_in_its_rank_interval():
    rng = np.random.default_rng(6)
    m = 6
    members = rng.gamma(0.5, 2.0, size=(m, 40, 30))
    probs = _probs((40, 30), seed=7)
    out = ensemble_copula_coupling(members, probs, EDGES, rng=3, dry_bin="uniform", levels="stratified")
    np.testing.assert_array_equal(np.argsort(out, axis=0, kind="stable"), np.argsort(members, axis=0))
    bounds = quantiles(probs, EDGES, [r / m for r in range(m)] + [1 - 1e-12], dim=0)
    ordered = np.sort(out, axis=0)
    assert np.all((ordered >= bounds[:-1] - 1e-5) & (ordered <= bounds[1:] + 1e-5))
    # not the midpoints: the values move inside their intervals, reproducibly by the rng
    assert np.abs(ordered - quantiles(probs, EDGES, ecc_levels(m).tolist(), dim=0)).max() > 0.1
    np.testing.assert_array_equal(
        out, ensemble_copula_coupling(members, probs, EDGES, rng=3, dry_bin="uniform", levels="stratified"))
    with pytest.raises(ValueError, match="unknown ECC levels"):
        ensemble_copula_coupling(members, probs, EDGES, rng=3, levels="random")


def test_stratified_members_are_random_draws_from_the_unet_distribution_the_midpoints_are_not():
    # One U-Net distribution at 20 000 points, exchangeable members: every member's values
    # must follow it (F(x) uniform), tails included; ECC-Q gives each member only M values.
    m, n = 4, 20_000
    probs = np.broadcast_to(_probs((), seed=8)[:, None], (len(EDGES), n))
    members = np.random.default_rng(9).normal(size=(m, n))
    levels = np.array([0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98])
    q = quantiles(probs[:, :1], EDGES, levels.tolist(), dim=0)[:, 0]
    tol = 4 * np.sqrt(levels * (1 - levels) / n)
    out = ensemble_copula_coupling(members, probs, EDGES, rng=1, dry_bin="uniform", levels="stratified",
                                   level_smoothing_px=0)
    for member in out:
        below = (member[None, :] <= q[:, None]).mean(axis=1)
        assert np.all(np.abs(below - levels) < tol), below
    # ECC-Q: the lowest and highest 1/(2M) of the distribution never occur
    out = ensemble_copula_coupling(members, probs, EDGES, rng=1, dry_bin="uniform", levels="quantile")
    assert out.min() >= quantiles(probs[:, :1], EDGES, [0.125], dim=0)[0, 0] - 1e-6
    assert out.max() <= quantiles(probs[:, :1], EDGES, [0.875], dim=0)[0, 0] + 1e-6


def test_stratified_levels_do_not_depend_on_the_chunk_size_and_share_ecc_q_tie_breaks(monkeypatch):
    import pqpf.diffusion.ecc as ecc

    rng = np.random.default_rng(4)
    members = np.where(rng.random((5, 300)) < 0.6, 0.0, rng.gamma(0.7, 3.0, size=(5, 300)))  # many ties
    probs = _probs((300,), seed=5)
    kw = {"rng": 8, "dry_bin": "uniform"}  # no zeros made of draws below the first edge: no new ties
    whole = ensemble_copula_coupling(members, probs, EDGES, levels="stratified", level_smoothing_px=0, **kw)
    coherent = ensemble_copula_coupling(members, probs, EDGES, levels="stratified", **kw)
    quant = ensemble_copula_coupling(members, probs, EDGES, levels="quantile", **kw)
    monkeypatch.setattr(ecc, "_CHUNK", 7)  # 43 chunks, the last one short
    np.testing.assert_array_equal(
        ensemble_copula_coupling(members, probs, EDGES, levels="stratified", level_smoothing_px=0, **kw), whole)
    np.testing.assert_array_equal(ensemble_copula_coupling(members, probs, EDGES, levels="stratified", **kw), coherent)
    # the same ranks as ECC-Q (ties broken by the same keys): the same order at every point
    # where the quantiles differ
    distinct = (np.diff(np.sort(quant, axis=0), axis=0) > 0).all(axis=0)
    assert distinct.sum() > 50
    np.testing.assert_array_equal(np.argsort(whole[:, distinct], axis=0), np.argsort(quant[:, distinct], axis=0))
    np.testing.assert_array_equal(np.argsort(coherent[:, distinct], axis=0), np.argsort(quant[:, distinct], axis=0))


def test_coherent_uniforms_are_uniform_at_every_point_with_the_gaussian_filter_s_correlation():
    """Before the normal CDF the fields are stationary unit Gaussians whose correlation at a
    lag of d points is exp(-d^2 / (4 s^2)) (white noise filtered by a Gaussian of sd s)."""
    from scipy.special import ndtri
    from scipy.stats import kstest

    s, fields = 3.0, coherent_uniforms(300, (40, 50), 3.0, np.random.default_rng(2))
    assert fields.shape == (300, 40, 50) and fields.dtype == np.float32
    assert 0 < fields.min() and fields.max() < 1
    for y, x in ((0, 0), (20, 25), (39, 49)):  # edges too: the filter is periodic
        assert kstest(fields[:, y, x], "uniform").pvalue > 1e-3
    g = ndtri(fields.astype(np.float64))
    np.testing.assert_allclose(g.var(), 1.0, atol=0.05)  # exact by Parseval, up to Monte Carlo error
    for d in (1, 3, 6):
        rho = np.mean(g[:, :, :-d] * g[:, :, d:]) / np.mean(g * g)
        assert abs(rho - np.exp(-d * d / (4 * s * s))) < 0.03, (d, rho)
    # inf: one value per field; an empty grid: nothing
    const = coherent_uniforms(4, (6, 7), float("inf"), np.random.default_rng(4))
    assert (const == const[:, :1, :1]).all() and np.unique(const[:, 0, 0]).size == 4
    assert coherent_uniforms(3, (0, 5), 4.0, np.random.default_rng(4)).shape == (3, 0, 5)


@pytest.mark.parametrize("space, s", [((40, 50), 3.0), ((41, 37), 8.0), ((5,), 50.0), ((1, 9), 2.0), ((6, 4, 5), 1.5)])
def test_coherent_uniforms_have_exactly_unit_variance_by_parseval(space, s):
    """Fed a unit impulse instead of white noise, the field is the filter's impulse
    response scaled by the normalisation: its squared values must sum to exactly 1 (the
    variance white noise gets), on odd, even, 1-D and 3-D grids and grids shorter than
    the filter."""
    from scipy.special import ndtri

    class Impulse:
        def standard_normal(self, shape):
            out = np.zeros(shape)
            out[(0,) * len(shape)] = 1.0
            return out

    field = ndtri(coherent_uniforms(1, space, s, Impulse())[0].astype(np.float64))  # type: ignore[arg-type]
    np.testing.assert_allclose(np.sum(field ** 2), 1.0, rtol=2e-3)


def test_coherent_stratified_levels_keep_the_intervals_and_ranks_and_move_smoothly_inside_them():
    """Member m's level (r + U_m) / M: U_m is uniform, independent between members and
    smooth in space (0: independent at every point; inf: one per member)."""
    rng = np.random.default_rng(5)
    m, n = 8, 120
    members = rng.gamma(0.5, 2.0, size=(m, n, n))
    probs = np.broadcast_to(_probs((), seed=9)[:, None, None], (len(EDGES), n, n))  # one distribution
    grid = np.linspace(0.0, 1 - 1e-9, 200_001)
    q = quantiles(probs[:, :1, :1], EDGES, grid.tolist(), dim=0)[:, 0, 0]
    ranks = member_ranks(members, np.random.default_rng(0))

    def position(out):  # where each value sits inside its rank's interval: U_m at that point
        return np.interp(out, q, grid) * m - ranks

    neighbour = {}
    for sigma in (0.0, 4.0, float("inf")):
        out = ensemble_copula_coupling(members, probs, EDGES, rng=1, dry_bin="uniform", levels="stratified",
                                       level_smoothing_px=sigma)
        np.testing.assert_array_equal(np.argsort(out, axis=0, kind="stable"), np.argsort(members, axis=0))
        u = position(out)
        assert u.min() > -1e-3 and u.max() < 1 + 1e-3  # inside the rank's interval
        neighbour[sigma] = float(np.corrcoef(u[:, :, :-1].ravel(), u[:, :, 1:].ravel())[0, 1])
        if math.isinf(sigma):  # one position per member, whatever rank it holds
            assert np.ptp(u, axis=(1, 2)).max() < 1e-4 and np.unique(np.round(u[:, 0, 0], 4)).size == m
            continue
        assert abs(u.mean() - 0.5) < 0.05 and abs(u.var() - 1 / 12) < 0.015  # uniform, pooled
        assert abs(np.corrcoef(u[0].ravel(), u[1].ravel())[0, 1]) < 0.2  # members' fields independent
    assert abs(neighbour[0.0]) < 0.02 and neighbour[4.0] > 0.95
    # with the dry bin a point mass (the default), a level inside it gives exactly 0 mm
    dry = ensemble_copula_coupling(members, probs, EDGES, rng=1, levels="stratified", level_smoothing_px=4.0)
    wet = ensemble_copula_coupling(members, probs, EDGES, rng=1, dry_bin="uniform", levels="stratified",
                                   level_smoothing_px=4.0)
    below = wet < EDGES[1]
    assert below.mean() > 0.1 and (dry[below] == 0).all()
    np.testing.assert_array_equal(dry[~below], wet[~below])
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="level_smoothing_px"):
            ensemble_copula_coupling(members, probs, EDGES, rng=1, levels="stratified", level_smoothing_px=bad)


def test_interval_means_keep_the_unet_mean_at_every_point_and_the_members_ranks():
    from pqpf.ordinal import stratum_means
    from pqpf.verify.ensemble_fields import unet_mean_amount

    rng = np.random.default_rng(6)
    members = np.where(rng.random((8, 20, 25)) < 0.4, 0.0, rng.gamma(0.7, 3.0, size=(8, 20, 25)))  # ties
    probs = _probs((20, 25), seed=7)
    out = ensemble_copula_coupling(members, probs, EDGES, rng=2, levels="mean")
    # the values: the interval means of the U-Net's distribution (first bin a point mass at 0 mm)
    np.testing.assert_array_equal(np.sort(out, axis=0),
                                  stratum_means(probs, EDGES, 8, dim=0, zero_first_bin=True))
    # their average: the U-Net's mean amount, at every point (ECC-Q's falls short of it)
    mean = unet_mean_amount(probs, EDGES)
    np.testing.assert_allclose(out.mean(axis=0), mean, rtol=1e-5)
    q_out = ensemble_copula_coupling(members, probs, EDGES, rng=2, levels="quantile")
    assert (q_out.mean(axis=0) < mean - 1e-3).mean() > 0.9
    # the members' order, with the same tie-breaks as ECC-Q
    below = members[:, None] < members[None, :]
    assert np.all(out[:, None] <= out[None, :], where=below) and below.sum() > 5000
    distinct = (np.diff(np.sort(q_out, axis=0), axis=0) > 0).all(axis=0)
    assert distinct.sum() > 50
    np.testing.assert_array_equal(np.argsort(out[:, distinct], axis=0), np.argsort(q_out[:, distinct], axis=0))
    np.testing.assert_array_equal(out, ensemble_copula_coupling(members, probs, EDGES, rng=2, levels="mean"))


def test_the_top_interval_mean_is_exceeded_with_probability_one_over_e_m_for_an_exponential_tail():
    """Why ECC-M's top rank bin falls below uniform even for a calibrated forecast, in the
    case of an exponential tail: an exponential variable exceeds its mean above any
    threshold with probability 1/e, so the top bin is (M+1)/(e M) of uniform there."""
    from pqpf.ordinal import stratum_means

    edges, m = (0.0, 0.1, 0.25), 8
    probs = np.array([0.0, 0.0, 1.0])  # all mass in the open bin: exponential above 0.25 mm, scale 0.15 mm
    top = float(stratum_means(probs, edges, m, dim=0)[-1])
    draws = 0.25 + np.random.default_rng(0).exponential(0.15, size=400_000)
    frac = (draws > top).mean()
    assert frac == pytest.approx(np.exp(-1) / m, abs=4 * np.sqrt(frac / draws.size))
    assert frac * (m + 1) < 0.5 < (m + 1) / (2 * m)  # ECC-M's top bin vs ECC-Q's


def test_ranking_by_the_latent_variable_keeps_wet_ranks_and_orders_dry_members_coherently():
    """Where every member is dry but the U-Net gives rain a chance, ranking by amount puts
    the wettest interval's value on a random member at each point (pixel noise); ranking
    by the model's variable z (dry members below 0 by how dry they are, a smooth field)
    gives it to the least dry member, coherently. Ranks of distinct amounts are the same."""
    from scipy.ndimage import gaussian_filter

    from pqpf.diffusion.target import inverse_transform_amount

    rng = np.random.default_rng(4)
    m, n = 8, 96
    z = np.stack([gaussian_filter(rng.normal(0, 1, (n, n)), 6) * 12 for _ in range(m)])  # smooth latent fields
    z[:, :, : n // 2] -= 3.0  # left half: every member dry (z < 0)
    amounts = inverse_transform_amount(z.astype(np.float32))
    assert (amounts[:, :, : n // 2] == 0).all() and (amounts[:, :, n // 2:] > 0).mean() > 0.3
    probs = np.zeros((len(EDGES), n, n))
    probs[0], probs[4] = 0.7, 0.3  # P(rain in [1, 1.5) mm) = 0.3 everywhere
    by_amount = ensemble_copula_coupling(amounts, probs, EDGES, rng=0, levels="mean")
    by_latent = ensemble_copula_coupling(z, probs, EDGES, rng=0, levels="mean")
    np.testing.assert_array_equal(np.sort(by_amount, axis=0), np.sort(by_latent, axis=0))  # same marginals
    wet = amounts[:, None] < amounts[None, :]  # strict order of amounts: kept by both
    assert np.all(by_latent[:, None] <= by_latent[None, :], where=wet) and wet.sum() > 50_000

    def neighbour_correlation(f):  # of one member's field with itself shifted one column, dry half
        a, b = f[:, :, : n // 2 - 1].ravel(), f[:, :, 1: n // 2].ravel()
        return float(np.corrcoef(a, b)[0, 1])

    assert abs(neighbour_correlation(by_amount)) < 0.05  # a new random member every pixel
    assert neighbour_correlation(by_latent) > 0.9  # the member whose z is least negative, in patches


def test_smoothed_rank_templates_keep_every_point_s_values_and_arrange_them_coherently():
    """Members close to one another swap ranks from point to point; ranking by a smoothed
    z arranges the same values at every point in larger coherent areas."""
    from pqpf.diffusion.ecc import rank_template

    rng = np.random.default_rng(7)
    m, n = 8, 80
    common = np.stack([np.full((n, n), 0.3 * k) for k in range(m)])  # members in a fixed order ...
    z = common + rng.normal(0, 1.0, (m, n, n))  # ... that point noise scrambles
    probs = _probs((n, n), seed=8)
    np.testing.assert_array_equal(rank_template(z, 0), z.astype(np.float32))
    corr = []
    for sigma in (0, 1, 2, 4):
        out = ensemble_copula_coupling(rank_template(z, sigma), probs, EDGES, rng=0, levels="mean")
        np.testing.assert_array_equal(
            np.sort(out, axis=0), np.sort(ensemble_copula_coupling(z, probs, EDGES, rng=0, levels="mean"), axis=0))
        ranks = member_ranks(rank_template(z, sigma), np.random.default_rng(0)).astype(float)
        corr.append(np.corrcoef(ranks[:, :, :-1].ravel(), ranks[:, :, 1:].ravel())[0, 1])
    assert corr[0] < 0.4 and all(b > a for a, b in zip(corr, corr[1:])) and corr[1] > 0.9, corr
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="smoothing_px"):
            rank_template(z, bad)
    # one bad value costs one point, not a smoothing window of points, and its neighbours'
    # templates average only the finite values around them
    holed = z.copy()
    holed[3, 40, 40], holed[5, 0, 7] = np.nan, np.inf
    template = rank_template(holed, 2)
    assert np.argwhere(~np.isfinite(template)).tolist() == [[3, 40, 40], [5, 0, 7]]
    far = np.ones((n, n), bool)
    far[30:51, 30:51] = far[:11, :18] = False
    np.testing.assert_allclose(template[:, far], rank_template(z, 2)[:, far], atol=1e-5)
    assert np.nanmax(np.abs(template[3, 39:42, 39:42] - rank_template(z, 2)[3, 39:42, 39:42])) > 1e-3
    out = ensemble_copula_coupling(template, probs, EDGES, rng=0)
    assert np.isnan(out[:, 40, 40]).all() and np.isnan(out[:, 0, 7]).all()
    assert np.isfinite(out).sum() == out.size - 2 * m
