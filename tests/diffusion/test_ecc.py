"""Ensemble copula coupling keeps the U-Net's quantiles and the members' ranks."""

from __future__ import annotations

import numpy as np
import pytest

from pqpf.diffusion.ecc import ecc_levels, ensemble_copula_coupling, member_ranks
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
    out = ensemble_copula_coupling(members, probs, EDGES, rng=0, dry_bin="uniform")
    expected = quantiles(probs, EDGES, ecc_levels(10).tolist(), dim=0)
    np.testing.assert_array_equal(np.sort(out, axis=0), expected)
    np.testing.assert_array_equal(np.argsort(out, axis=0, kind="stable"), np.argsort(members, axis=0))


def test_point_dry_bin_gives_exact_zeros_below_the_first_edge_and_ranks_are_kept_with_ties():
    rng = np.random.default_rng(2)
    members = np.where(rng.random((8, 30, 30)) < 0.5, 0.0, rng.gamma(0.7, 3.0, size=(8, 30, 30)))
    probs = _probs((30, 30), seed=3)
    out = ensemble_copula_coupling(members, probs, EDGES, rng=5)
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
