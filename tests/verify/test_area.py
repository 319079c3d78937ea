"""Area weights: Lambert cells against geodesic polygon areas, lat/lon cos(latitude), and
the size of the cos(latitude) error on the GRAF-like CONUS grid."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest

from pqpf.grid import LATLON, Grid, graf_like_grid
from pqpf.verify.area import area_weights, cell_area_m2, cos_lat_bias


def _geod(grid):
    return pyproj.Geod(a=grid.earth_a, b=grid.earth_b)


def _outline_lonlat(grid, x_edges, y_edges):
    """The outline of a rectangle of cell edges (x_edges/y_edges in projection units, every
    cell edge a vertex), anticlockwise, as lon/lat."""
    x = np.concatenate([x_edges, np.full(y_edges.size - 2, x_edges[-1]), x_edges[::-1],
                        np.full(y_edges.size - 2, x_edges[0])])
    y = np.concatenate([np.full(x_edges.size, y_edges[0]), y_edges[1:-1], np.full(x_edges.size, y_edges[-1]),
                        y_edges[-2:0:-1]])
    return grid.to_lonlat(x, y)


@pytest.mark.parametrize("name", ["demo", "conus"])
def test_lambert_cell_areas_sum_to_the_geodesic_area_of_the_domain(name):
    grid = graf_like_grid(name)
    x_edges = grid.x0 + grid.dx * (np.arange(grid.nx + 1) - 0.5)
    y_edges = grid.y0 + grid.dy * (np.arange(grid.ny + 1) - 0.5)
    lon, lat = _outline_lonlat(grid, x_edges, y_edges)
    true_area, _ = _geod(grid).polygon_area_perimeter(lon, lat)
    assert cell_area_m2(grid).sum() == pytest.approx(abs(true_area), rel=1e-3)
    assert cell_area_m2(grid).sum() == pytest.approx(abs(true_area), rel=1e-5)  # in fact far closer


def test_lambert_cells_equal_their_geodesic_polygons():
    grid = graf_like_grid("conus")
    areas = cell_area_m2(grid)
    for j, i in [(0, 0), (0, grid.nx - 1), (grid.ny - 1, 0), (grid.ny // 2, grid.nx // 2), (100, 1200)]:
        x_edges = grid.x0 + grid.dx * (i + np.linspace(-0.5, 0.5, 9))  # densified sides
        y_edges = grid.y0 + grid.dy * (j + np.linspace(-0.5, 0.5, 9))
        lon, lat = _outline_lonlat(grid, x_edges, y_edges)
        cell, _ = _geod(grid).polygon_area_perimeter(lon, lat)
        assert areas[j, i] == pytest.approx(abs(cell), rel=1e-5)


def test_lambert_weights_are_the_inverse_square_map_factor_measured_independently():
    grid = graf_like_grid("demo")
    weights = area_weights(grid)
    proj = pyproj.Proj(grid.proj4())
    lon, lat = grid.lonlat()
    factors = proj.get_factors(lon, lat)  # PROJ's own scale factors
    np.testing.assert_allclose(weights, 1.0 / np.asarray(factors.parallel_scale) ** 2, rtol=1e-5)
    assert weights.dtype == np.float32


def test_latlon_weights_stay_cos_latitude_and_are_proportional_to_area_on_a_sphere():
    grid = Grid(LATLON, 50, 80, -120.0, 50.0, 0.25, -0.5)
    _, lat = grid.lonlat()
    np.testing.assert_allclose(area_weights(grid), np.cos(np.radians(lat)), rtol=1e-6)
    areas = cell_area_m2(grid)
    np.testing.assert_allclose(areas / np.cos(np.radians(lat)),
                               grid.earth_a ** 2 * np.radians(0.25) * np.radians(0.5), rtol=1e-12)
    bias = cos_lat_bias(grid)
    assert bias["max_over_min"] == pytest.approx(1.0, abs=1e-9)


def test_cos_latitude_over_weights_the_south_of_the_graf_conus_grid_about_twofold():
    bias = cos_lat_bias(graf_like_grid("conus"))
    # measured: max/min 2.06, southern-most row / northern-most row 1.91, the southern half
    # of the rows gets 57.5 % of the weight for 49.6 % of the area (latitudes 12.1-61.3 N)
    assert bias["max_over_min"] == pytest.approx(2.06, abs=0.01)
    assert bias["south_over_north"] == pytest.approx(1.91, abs=0.01)
    assert bias["south_half_share"] == pytest.approx(0.575, abs=0.002)
    assert bias["south_half_area_share"] == pytest.approx(0.496, abs=0.002)
