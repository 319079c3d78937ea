"""The synthetic radar network: sites, quality index and the QPE's errors.

The network of the demo grid with seed 0, built with :mod:`pqpf.synthetic.radar`'s
functions; the QPE's error model is checked on a constant truth, where the formula
``QPE = T (1 - 0.35 (1 - Q)) exp(sigma n - sigma^2 / 2)``, ``sigma = 0.1 + 0.4 (1 - Q)``
can be inverted for the noise ``n``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from pqpf.grid import graf_like_grid
from pqpf.synthetic import WeatherParams, mrms_grid_for
from pqpf.synthetic.grids import extended_domain
from pqpf.synthetic.radar import MRMS_NO_COVERAGE, Observer, radar_quality, radar_sites, site_on_hills
from pqpf.synthetic.terrain import synthetic_terrain

PARAMS = WeatherParams()
VALID = dt.datetime(2024, 6, 1, 12)


@pytest.fixture(scope="module")
def network():
    model = graf_like_grid("demo")
    mrms = mrms_grid_for("demo", model)
    dom = extended_domain(model, mrms)
    terrain = synthetic_terrain(dom.grid, 0)
    lattice = radar_sites(mrms, PARAMS.radar_spacing_demo_km, 0)
    sites = site_on_hills(lattice, dom.grid, terrain, PARAMS.radar_siting_radius_km)
    rq = radar_quality(mrms, dom.grid, terrain, sites, PARAMS, diagnostics=True)
    return model, mrms, dom, terrain, lattice, rq


def test_sites_stand_on_the_highest_ground_nearby(network):
    _, _, dom, terrain, lattice, rq = network
    assert len(lattice) == 12  # a 300 km lattice over the ~13 x 8 degree MRMS box
    r_px = round(PARAMS.radar_siting_radius_km * 1000.0 / abs(dom.grid.dx))  # 3 points of 4 km
    fj, fi = dom.grid.fractional_index(lattice[:, 0], lattice[:, 1])
    mj, mi = dom.grid.fractional_index(rq.sites_lonlat[:, 0], rq.sites_lonlat[:, 1])
    checked = 0
    for j, i, sj, si in zip(*(np.rint(v).astype(int) for v in (fj, fi, mj, mi)), strict=True):
        if r_px <= j < dom.grid.ny - r_px and r_px <= i < dom.grid.nx - r_px:
            assert terrain[sj, si] == terrain[j - r_px:j + r_px + 1, i - r_px:i + r_px + 1].max()
            checked += 1
    assert checked >= 6


def test_quality_falls_with_range_and_behind_mountains(network):
    model, mrms, _, _, _, rq = network
    q, dist, blocked = rq.quality, rq.nearest_km, rq.blockage
    assert 0.0 <= q.min() and q.max() <= 1.0
    near, far = (dist > 20) & (dist < 80), (dist > 150) & (dist < 220)
    assert q[near].mean() > q[far].mean() + 0.3
    ring = (dist > 40) & (dist < 120)
    assert q[ring & (blocked > 0.5)].mean() < 0.5 * q[ring & (blocked < 0.05)].mean()
    assert q[dist > PARAMS.radar_range_km + 1.0].max() == 0.0
    lon, lat = mrms.lonlat()
    fj, fi = model.fractional_index(lon, lat)
    inside = (fj >= 0) & (fj <= model.ny - 1) & (fi >= 0) & (fi <= model.nx - 1)
    # pins the beam geometry and blockage on seed 0's terrain: 30 % of the model domain
    # below 0.5
    assert (q[inside] < 0.5).mean() == pytest.approx(0.29528, rel=5e-3)


def test_a_lower_beam_height_scale_lowers_the_quality_far_out(network):
    _, mrms, dom, terrain, _, rq = network
    lower = dataclasses.replace(PARAMS, beam_height_scale_m=2000.0)
    q = radar_quality(mrms, dom.grid, terrain, rq.sites_lonlat, lower).quality
    far = (rq.nearest_km > 150) & (rq.nearest_km < 220)
    assert q[far].mean() < 0.6 * rq.quality[far].mean()


@pytest.fixture(scope="module")
def constant_truth(network):
    """QPE of a constant 2 mm truth, the quality, and the noise ``n`` inverted from it."""
    _, mrms, dom, _, _, rq = network
    observer = Observer(mrms, dom.grid, rq.quality, 0, PARAMS)
    qpe = observer.observe(np.full(dom.grid.shape, 2.0, dtype=np.float32), VALID)
    q = observer.quality
    covered = qpe != MRMS_NO_COVERAGE
    bias = 1.0 - PARAMS.qpe_underestimate * (1.0 - q)
    sd = PARAMS.qpe_noise_sd + PARAMS.qpe_noise_sd_poor * (1.0 - q)
    with np.errstate(divide="ignore", invalid="ignore"):
        noise = np.where(covered, (np.log(qpe / (2.0 * bias)) + 0.5 * sd * sd) / sd, np.nan)
    return qpe, q, covered, noise


def test_qpe_is_minus_three_exactly_where_quality_is_zero(constant_truth):
    qpe, q, covered, _ = constant_truth
    assert np.array_equal(~covered, q == 0.0)
    assert set(np.unique(qpe[~covered])) == {MRMS_NO_COVERAGE}
    assert (qpe[covered] > 0.0).all()


def test_qpe_noise_is_standard_normal_with_a_correlation_of_a_few_cells(constant_truth):
    # inverting the documented formula gives the noise n: mean 0, sd 1, correlation
    # exp(-1 / (4 * 1.5^2)) = 0.895 between neighbours for a Gaussian smoothing of 1.5 cells
    _, _, covered, noise = constant_truth
    n = noise[covered]
    assert abs(n.mean()) < 0.05 and n.std() == pytest.approx(1.0, abs=0.05)
    pairs = np.isfinite(noise[:, :-1]) & np.isfinite(noise[:, 1:])
    lag1 = np.corrcoef(noise[:, :-1][pairs], noise[:, 1:][pairs])[0, 1]
    assert lag1 == pytest.approx(np.exp(-1.0 / (4 * PARAMS.qpe_noise_sigma_px**2)), abs=0.02)


def test_qpe_underestimates_and_is_noisier_where_quality_is_poor(constant_truth):
    qpe, q, covered, _ = constant_truth
    good, poor = covered & (q > 0.9), covered & (q > 0.0) & (q < 0.3)
    ratio_good, ratio_poor = qpe[good] / 2.0, qpe[poor] / 2.0
    assert np.mean(ratio_good) == pytest.approx(np.mean(1.0 - 0.35 * (1.0 - q[good])), rel=0.02)
    assert np.mean(ratio_poor) == pytest.approx(np.mean(1.0 - 0.35 * (1.0 - q[poor])), rel=0.02)
    assert np.mean(ratio_poor) < 0.8
    assert np.std(np.log(ratio_poor)) > 2.5 * np.std(np.log(ratio_good))


def test_dry_truth_gives_exactly_zero_where_covered(network):
    _, mrms, dom, _, _, rq = network
    observer = Observer(mrms, dom.grid, rq.quality, 0, PARAMS)
    qpe = observer.observe(np.zeros(dom.grid.shape, dtype=np.float32), VALID)
    assert set(np.unique(qpe)) <= {0.0, MRMS_NO_COVERAGE}
