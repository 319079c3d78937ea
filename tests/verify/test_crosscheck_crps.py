"""The binned CRPS (the verification's crps_bins) against the `scores` library's crps_cdf
on the CDF of the ordinal-bin forecast."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from scores.probability import crps_cdf

from pqpf.verify.scores import crps_bins

EDGES = np.array([0.0, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0])
#: Width of the ramp that stands in for each jump of the step CDF (mm); the CRPS moves by
#: less than this per edge.
RAMP_MM = 1e-9


def _step_cdf(prob_bins):
    """The forecast CDF of crps_bins' convention (mass p_k at the lower edge e_k) as
    piecewise-linear values for crps_cdf: F = sum_{k<=m} p_k on [e_m, e_{m+1}), each jump a
    ramp of RAMP_MM ending at the edge, 1 beyond the last edge."""
    cdf = np.clip(np.cumsum(prob_bins, axis=0), 0.0, 1.0)  # value on [e_m, e_{m+1}); round-off clipped
    k, n = prob_bins.shape
    thresholds = [EDGES[0]]
    values = [cdf[0]]
    for m in range(1, k):
        thresholds += [EDGES[m] - RAMP_MM, EDGES[m]]
        values += [cdf[m - 1], cdf[m]]
    thresholds.append(EDGES[-1] + 10.0)
    values.append(np.ones(n))
    return xr.DataArray(np.stack(values, axis=1), dims=("point", "threshold"),
                        coords={"threshold": thresholds})


def test_crps_bins_equals_scores_crps_cdf_of_the_step_cdf_at_the_obs_bins_lower_edge():
    rng = np.random.default_rng(1)
    n = 300
    prob_bins = rng.dirichlet(np.full(EDGES.size, 0.5), n).T
    obs = np.round(rng.gamma(0.4, 6.0, n), 2)
    ours = crps_bins(prob_bins, EDGES, obs)
    # crps_bins scores the observation moved to the lower edge of its bin
    lower_edge = EDGES[np.searchsorted(EDGES, obs, side="right") - 1]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="numba is not available")
        theirs = crps_cdf(_step_cdf(prob_bins), xr.DataArray(lower_edge, dims="point"),
                          threshold_dim="threshold", preserve_dims=["point"])["total"].values
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=EDGES.size * RAMP_MM)
    assert ours.mean() > 0.1  # not a vacuous comparison


def test_crps_of_a_one_bin_forecast_is_the_distance_of_lower_edges():
    prob_bins = np.zeros((EDGES.size, 1))
    prob_bins[3, 0] = 1.0  # all mass at 0.5 mm
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="numba is not available")
        theirs = crps_cdf(_step_cdf(prob_bins), xr.DataArray([5.0], dims="point"), threshold_dim="threshold",
                          preserve_dims=["point"])["total"].values
    assert crps_bins(prob_bins, EDGES, np.array([7.3]))[0] == pytest.approx(4.5, abs=1e-12)
    assert theirs[0] == pytest.approx(4.5, abs=1e-8)
