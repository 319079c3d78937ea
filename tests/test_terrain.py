"""Terrain fields: slopes on real Lambert grids against analytic terrain and geodesic finite
differences, the projection metrics against PROJ, the exact slope rules under flips and
rotations, and the terrain_height.py stage end to end on real NAM orography."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyproj
import pytest
from conftest import HRRR_CROP, NAM_TERRAIN, ROOT

from pqpf.cli.terrain_height import main
from pqpf.errors import InputFileError
from pqpf.grid import LAMBERT, LATLON, Grid, graf_like_grid
from pqpf.io.grib import read_graf, read_terrain_grib
from pqpf.io.terrain_file import read_terrain, write_terrain
from pqpf.terrain import (
    TERRAIN_VARIABLES,
    Terrain,
    _axis_slopes,
    _smooth,
    compute_terrain_fields,
)

WGS84 = (6378137.0, 6356752.314245)
A_PLANE, B_PLANE = 0.012, -0.0047  # plane h = a x + b y, x/y projection metres


def _coarse_conus() -> Grid:
    """The GRAF CONUS domain (same projection and corner) at 12 km: the full range of
    map factor and convergence at 1/9 of the points."""
    conus = graf_like_grid("conus")
    return dataclasses.replace(conus, ny=437, nx=508, dx=12000.0, dy=12000.0)


def _wgs84_secant() -> Grid:
    """A Lambert grid on the WGS84 ellipsoid with two standard parallels (the finite-
    difference branch of ground_metrics)."""
    proto = Grid(LAMBERT, 2, 2, 0.0, 0.0, 1.0, 1.0, 33.0, 45.0, 39.0, -96.0, *WGS84)
    x0, y0 = proto.to_xy(np.array(-118.0), np.array(27.0))
    return Grid(LAMBERT, 120, 160, float(x0), float(y0), 25000.0, 25000.0,
                33.0, 45.0, 39.0, -96.0, *WGS84)


def _plane(grid: Grid) -> np.ndarray:
    xx, yy = np.meshgrid(grid.x, grid.y)
    return A_PLANE * xx + B_PLANE * yy


def _sample_points(grid: Grid, n: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """(j, i) of an n x n lattice of points including all four edges and corners."""
    jj = np.unique(np.linspace(0, grid.ny - 1, n).round().astype(int))
    ii = np.unique(np.linspace(0, grid.nx - 1, n).round().astype(int))
    J, I = np.meshgrid(jj, ii, indexing="ij")
    return J.ravel(), I.ravel()


def _geodesic_slopes(grid, height_at, lon, lat, step_m):
    """Slopes towards east and north by central differences along geodesics."""
    geod = pyproj.Geod(a=grid.earth_a, b=grid.earth_b)
    out = []
    for az_fwd, az_back in ((90.0, 270.0), (0.0, 180.0)):
        lon1, lat1, _ = geod.fwd(lon, lat, np.full_like(lon, az_fwd), np.full_like(lon, step_m))
        lon2, lat2, _ = geod.fwd(lon, lat, np.full_like(lon, az_back), np.full_like(lon, step_m))
        out.append((height_at(lon1, lat1) - height_at(lon2, lat2)) / (2.0 * step_m))
    return out


@pytest.fixture(scope="module")
def hrrr_grid(real_data):
    return read_graf(real_data(HRRR_CROP), 12).grid


# --------------------------------------------------------------------------------------
# projection metrics (ground_metrics) against PROJ and geodesics
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["hrrr", "conus", "sphere_secant", "wgs84_secant"])
def test_map_factor_and_convergence_match_proj_factors(which, request):
    if which == "hrrr":
        grid = request.getfixturevalue("hrrr_grid")
    elif which == "conus":
        grid = _coarse_conus()
    elif which == "sphere_secant":
        grid = dataclasses.replace(_wgs84_secant(), earth_a=6371229.0, earth_b=6371229.0)
    else:
        grid = _wgs84_secant()
    step_x, step_y, gamma = grid.ground_metrics()
    J, I = _sample_points(grid)
    lon, lat = grid.lonlat()
    factors = pyproj.Proj(grid.proj4()).get_factors(lon[J, I], lat[J, I])
    k = grid.dx / step_x[J, I]
    np.testing.assert_allclose(grid.dy / step_y[J, I], k, rtol=1e-12)
    # conformal: PROJ's parallel and meridional scales are both k
    np.testing.assert_allclose(k, factors.parallel_scale, rtol=1e-8)
    np.testing.assert_allclose(k, factors.meridional_scale, rtol=1e-8)
    # PROJ 9: meridian_convergence = -atan2(dx/dphi, dy/dphi), the bearing of grid north
    # clockwise from true north (Gauss-Bomford), i.e. true north counter-clockwise from
    # grid +y: the same angle and sign as ours.
    np.testing.assert_allclose(np.degrees(gamma[J, I]), factors.meridian_convergence, atol=1e-7)
    # east of the central meridian true north leans towards grid -x (gamma > 0)
    east = lon[J, I] > grid.lon_0 + 1.0
    assert east.any() and (gamma[J, I][east] > 0).all()


def test_convergence_rotates_grid_north_onto_the_meridian(hrrr_grid):
    """The north unit vector (-sin g, cos g) points along the projected meridian."""
    grid = hrrr_grid
    _, _, gamma = grid.ground_metrics()
    J, I = _sample_points(grid)
    lon, lat = grid.lonlat()
    x1, y1 = grid.to_xy(lon[J, I], lat[J, I] - 0.01)
    x2, y2 = grid.to_xy(lon[J, I], lat[J, I] + 0.01)
    along = np.arctan2(-(x2 - x1), y2 - y1)
    np.testing.assert_allclose(gamma[J, I], along, atol=1e-9)
    assert np.abs(gamma).max() > math.radians(3.0)  # the crop is ~13 deg east of lon_0


@pytest.mark.parametrize("earth", [(6371229.0, 6371229.0), WGS84, (6378160.0, 6356775.0)])
def test_latlon_ground_steps_are_parallel_and_meridian_arcs(earth):
    a, b = earth
    grid = Grid(LATLON, 300, 200, -125.0, 55.0, 0.01, -0.01, earth_a=a, earth_b=b)
    step_x, step_y, gamma = grid.ground_metrics()
    assert np.all(gamma == 0.0)
    lon, lat = grid.lonlat()
    if a == b:
        np.testing.assert_allclose(step_x, a * np.cos(np.radians(lat)) * math.radians(0.01), rtol=1e-12)
        np.testing.assert_allclose(step_y, -a * math.radians(0.01), rtol=1e-12)
    geod = pyproj.Geod(a=a, b=b)
    J, I = _sample_points(grid, 6)
    lo, la = lon[J, I], lat[J, I]
    _, _, across = geod.inv(lo - 0.005, la, lo + 0.005, la)
    _, _, along = geod.inv(lo, la + 0.005, lo, la - 0.005)
    np.testing.assert_allclose(step_x[J, I], across, rtol=1e-8)
    np.testing.assert_allclose(step_y[J, I], -np.asarray(along), rtol=1e-8)


# --------------------------------------------------------------------------------------
# analytic terrain on real Lambert grids
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["hrrr", "conus", "wgs84_secant"])
def test_tilted_plane_has_grid_slopes_a_k_and_b_k_everywhere(which, request):
    grid = {"hrrr": lambda: request.getfixturevalue("hrrr_grid"), "conus": _coarse_conus,
            "wgs84_secant": _wgs84_secant}[which]()
    fields = compute_terrain_fields(_plane(grid), grid, smoothing_sigma_px=3.0)
    k = grid.dx / grid.ground_metrics()[0]
    # float32 output: 6e-8 relative; the centred and one-sided differences of a plane in
    # projection coordinates are exact, so this holds on the edges too.
    for suffix in ("", "_smoothed"):
        np.testing.assert_allclose(fields[f"slope_x{suffix}"], A_PLANE * k, rtol=1e-6)
        np.testing.assert_allclose(fields[f"slope_y{suffix}"], B_PLANE * k, rtol=1e-6)
    np.testing.assert_allclose(fields["map_factor"], k, rtol=1e-6)
    # the odd-reflected smoothing keeps a plane a plane right up to the edges
    np.testing.assert_allclose(fields["height_smoothed"], fields["height"], rtol=1e-6, atol=1e-2)
    assert np.abs(fields["height_local_difference"]).max() < 0.02  # float32 of |h| <= 1e5 m


@pytest.mark.parametrize("which", ["hrrr", "conus", "wgs84_secant"])
def test_tilted_plane_east_north_slopes_match_geodesic_differences(which, request):
    grid = {"hrrr": lambda: request.getfixturevalue("hrrr_grid"), "conus": _coarse_conus,
            "wgs84_secant": _wgs84_secant}[which]()
    fields = compute_terrain_fields(_plane(grid), grid, smoothing_sigma_px=2.0)
    J, I = _sample_points(grid)
    lon, lat = grid.lonlat()

    def height_at(lo, la):
        x, y = grid.to_xy(lo, la)
        return A_PLANE * x + B_PLANE * y

    fd_east, fd_north = _geodesic_slopes(grid, height_at, lon[J, I], lat[J, I], 300.0)
    magnitude = np.hypot(fd_east, fd_north)
    # Central differences over +-300 m: truncation ~ (300 m / 6400 km)^2 ~ 2e-9 of the
    # gradient; the float32 output adds 6e-8; so 1e-6 of |grad h| is a safe bound.
    for suffix in ("", "_smoothed"):
        err_e = np.abs(fields[f"slope_east{suffix}"][J, I] - fd_east) / magnitude
        err_n = np.abs(fields[f"slope_north{suffix}"][J, I] - fd_north) / magnitude
        assert err_e.max() < 1e-6 and err_n.max() < 1e-6, (err_e.max(), err_n.max())
    # the rotation matters on this grid: without it east/north would be off by > 1 %
    no_rotation = np.abs(fields["slope_x"][J, I] - fd_east) / magnitude
    assert no_rotation.max() > 0.01


def test_latlon_plane_slopes_have_signs_of_rows_running_south():
    grid = Grid(LATLON, 80, 120, -110.0, 48.0, 0.05, -0.05)
    lon, lat = grid.lonlat()
    height = 200.0 * lon + 300.0 * lat  # m per degree
    fields = compute_terrain_fields(height, grid, 1.5)
    r = grid.earth_a
    per_deg_x = r * np.cos(np.radians(lat)) * math.radians(1.0)
    per_deg_y = r * math.radians(1.0)
    np.testing.assert_allclose(fields["slope_east"], 200.0 / per_deg_x, rtol=1e-6)
    np.testing.assert_allclose(fields["slope_north"], 300.0 / per_deg_y, rtol=1e-6)
    np.testing.assert_allclose(fields["slope_x"], fields["slope_east"], rtol=1e-6)
    # rows run north to south: height falls with the row index
    np.testing.assert_allclose(fields["slope_y"], -fields["slope_north"], rtol=1e-6)
    assert np.all(fields["convergence_angle"] == 0.0)


def test_smoothing_is_gaussian_inside_and_keeps_a_trend_up_to_the_edges():
    from scipy.ndimage import gaussian_filter

    grid = _coarse_conus().subgrid(0, 60, 0, 80)
    xx, yy = np.meshgrid(np.arange(80.0), np.arange(60.0))
    checker = 50.0 * (-1.0) ** (xx + yy)  # a 2-px oscillation, removed by sigma = 4 px
    height = 10.0 * xx - 3.0 * yy + 0.05 * xx * yy + checker
    fields = compute_terrain_fields(height, grid, smoothing_sigma_px=4.0)
    inner = (slice(17, -17), slice(17, -17))  # more than the 4 sigma kernel radius from edges
    np.testing.assert_allclose(
        _smooth(height, 4.0)[inner], gaussian_filter(height, 4.0)[inner], rtol=0, atol=1e-9
    )
    trend = 10.0 * xx - 3.0 * yy + 0.05 * xx * yy  # bilinear: reproduced exactly
    np.testing.assert_allclose(fields["height_smoothed"][inner], trend[inner], atol=1e-3)
    # at the edges the one-sided fit still averages the oscillation down to < 20 %
    assert np.abs(fields["height_smoothed"] - trend).max() < 10.0
    np.testing.assert_allclose(_smooth(trend, 4.0), trend, rtol=0, atol=1e-9)
    assert np.array_equal(
        fields["height_local_difference"], fields["height"] - fields["height_smoothed"]
    )


@pytest.mark.parametrize("where", [(0, 40), (30, 0), (0, 0), (30, 40)])
def test_smoothing_spreads_a_spike_on_the_edge_instead_of_pinning_it(where):
    height = np.zeros((60, 80))
    height[where] = 1000.0
    smooth = _smooth(height, 10.0)
    # interior: 1000 / (2 pi sigma^2) = 1.6 m; a one-sided local-linear fit gives the
    # edge point ~5.5 times the interior weight per edge it touches
    assert smooth[where] < 0.15 * 1000.0
    assert abs(smooth.sum() - 1000.0) < 1000.0  # spread, not lost or amplified wholesale


def test_compute_rejects_bad_input_with_what_it_got():
    grid = _coarse_conus().subgrid(0, 10, 0, 12)
    with pytest.raises(ValueError, match=r"shape \(10, 11\)"):
        compute_terrain_fields(np.zeros((10, 11)), grid, 1.0)
    bad = np.zeros((10, 12))
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        compute_terrain_fields(bad, grid, 1.0)
    with pytest.raises(ValueError, match="got -1"):
        compute_terrain_fields(np.zeros((10, 12)), grid, -1.0)


# --------------------------------------------------------------------------------------
# flips and 90-degree rotations (the rule augmentation relies on)
# --------------------------------------------------------------------------------------

# transform -> (new slope_x, new slope_y) from the transformed old (sx, sy)
_RULES = {
    "rot90_1": (lambda a: np.rot90(a, 1), lambda sx, sy: (sy, -sx)),
    "rot90_2": (lambda a: np.rot90(a, 2), lambda sx, sy: (-sx, -sy)),
    "rot90_3": (lambda a: np.rot90(a, 3), lambda sx, sy: (-sy, sx)),
    "rot90_-1": (lambda a: np.rot90(a, -1), lambda sx, sy: (-sy, sx)),
    "flip_x": (lambda a: np.flip(a, axis=1), lambda sx, sy: (-sx, sy)),
    "flip_y": (lambda a: np.flip(a, axis=0), lambda sx, sy: (sx, -sy)),
    "transpose": (lambda a: a.T, lambda sx, sy: (sy, sx)),
}


@pytest.mark.parametrize("name", sorted(_RULES))
def test_rotated_or_flipped_height_has_exactly_the_transformed_grid_slopes(name):
    transform, rule = _RULES[name]
    rng = np.random.default_rng(7)
    height = rng.normal(1000.0, 300.0, size=(37, 52))
    step = 4000.0  # constant ground spacing
    sx, sy = _axis_slopes(height, step, step)
    new_sx, new_sy = _axis_slopes(transform(height), step, step)
    want_x, want_y = rule(transform(sx), transform(sy))
    assert np.array_equal(new_sx, want_x) and np.array_equal(new_sy, want_y)
    # smoothing commutes with the transform up to the order of floating-point sums
    sm = _smooth(height, 3.0)
    new_sx, new_sy = _axis_slopes(_smooth(transform(height), 3.0), step, step)
    want_x, want_y = rule(*(transform(v) for v in _axis_slopes(sm, step, step)))
    np.testing.assert_allclose(new_sx, want_x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(new_sy, want_y, rtol=0, atol=1e-12)


def test_x_flip_on_a_lambert_grid_symmetric_about_lon0_flips_slope_x_sign():
    """On a real Lambert grid centred on the central meridian the map factor is mirror
    symmetric in x, so the full computation obeys the x-flip rule."""
    grid = Grid(LAMBERT, 60, 81, -40 * 4000.0, -200000.0, 4000.0, 4000.0, 38.5, 38.5, 38.5, -97.5)
    rng = np.random.default_rng(3)
    height = rng.normal(500.0, 100.0, size=grid.shape)
    f = compute_terrain_fields(height, grid, 2.0)
    g = compute_terrain_fields(np.flip(height, axis=1), grid, 2.0)
    for suffix in ("", "_smoothed"):
        scale = np.abs(f[f"slope_x{suffix}"]).max()
        np.testing.assert_allclose(g[f"slope_x{suffix}"], -np.flip(f[f"slope_x{suffix}"], 1),
                                   rtol=0, atol=1e-6 * scale)
        np.testing.assert_allclose(g[f"slope_y{suffix}"], np.flip(f[f"slope_y{suffix}"], 1),
                                   rtol=0, atol=1e-6 * scale)


# --------------------------------------------------------------------------------------
# Terrain, files
# --------------------------------------------------------------------------------------


def _small_terrain() -> Terrain:
    grid = _coarse_conus().subgrid(100, 130, 200, 240)
    xx, yy = np.meshgrid(np.arange(40.0), np.arange(30.0))
    height = 300.0 + 5.0 * xx + 20.0 * np.sin(yy / 3.0)
    return Terrain(grid, compute_terrain_fields(height, grid, 2.0), 2.0)


def test_terrain_roundtrips_through_netcdf_and_subsets(tmp_path):
    terrain = _small_terrain()
    path = write_terrain(tmp_path / "t.nc", terrain, source="/data/terrain.grb2")
    back = read_terrain(path)
    assert back.grid.same_as(terrain.grid) and back.smoothing_sigma_px == 2.0
    assert tuple(back.fields) == TERRAIN_VARIABLES
    for name in TERRAIN_VARIABLES:
        assert back[name].dtype == np.float32
        assert np.array_equal(back[name], terrain[name]), name
    sub = back.subset(5, 15, 10, 30)
    assert sub.grid.same_as(terrain.grid.subgrid(5, 15, 10, 30))
    assert np.array_equal(sub["slope_x"], terrain["slope_x"][5:15, 10:30])
    only = read_terrain(path, ["height", "slope_y"])
    assert set(only.fields) == {"height", "slope_y"}
    with pytest.raises(KeyError, match="available: height, slope_y"):
        only["slope_x"]


def test_read_terrain_names_the_file_when_missing_corrupt_or_incomplete(tmp_path):
    with pytest.raises(InputFileError, match="none.nc: file not found"):
        read_terrain(tmp_path / "none.nc")
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"CDF\x01 not really")
    with pytest.raises(InputFileError, match="junk.nc"):
        read_terrain(junk)
    terrain = _small_terrain()
    partial = Terrain(terrain.grid, {"height": terrain["height"]})
    path = write_terrain(tmp_path / "partial.nc", partial, source="x")
    with pytest.raises(InputFileError, match=r"partial.nc: variable 'height_smoothed' not found"):
        read_terrain(path)
    with pytest.raises(ValueError, match="valid names"):
        read_terrain(path, ["slope"])


def test_failed_write_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    import netCDF4

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(netCDF4.Variable, "setncatts", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_terrain(tmp_path / "t.nc", _small_terrain(), source="x")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# the stage on real NAM orography
# --------------------------------------------------------------------------------------

_PATH_KEYS = ("graf_dir", "graf_dir_old", "mrms_raw_dir", "mrms_remapped_dir", "patch_dir",
              "trainings_dir", "graf_laptop_dir", "probs_dir", "plots_dir")


def _write_config(tmp_path: Path, grib: Path, sigma_px: float = 2.0) -> Path:
    lines = ["[paths]"]
    lines += [f"{key} = {key}" for key in _PATH_KEYS]
    lines += [f"graf_terrain_grib = {grib}", "terrain_file = out/terrain_info.nc",
              "graf_archive_switch = 2024040512", "", "[terrain]",
              f"smoothing_sigma_px = {sigma_px}", ""]
    ini = tmp_path / "config.ini"
    ini.write_text("\n".join(lines))
    return ini


@pytest.fixture(scope="module")
def nam_run(real_data, tmp_path_factory):
    """terrain_height.py run once on the real NAM orography: (config, output, grib)."""
    tmp = tmp_path_factory.mktemp("nam")
    grib = real_data(NAM_TERRAIN)
    ini = _write_config(tmp, grib)
    assert main(["--config", str(ini), "-q"]) == 0
    return ini, tmp / "out" / "terrain_info.nc", grib


def test_stage_writes_cf_file_with_grid_mapping_readable_by_xarray(nam_run):
    import xarray as xr

    _, out, grib = nam_run
    with xr.open_dataset(out) as ds:
        assert set(TERRAIN_VARIABLES) <= set(ds.data_vars)
        assert "lat" in ds.coords and "lon" in ds.coords
        assert ds["height"].dims == ("y", "x") and ds["height"].dtype == np.float32
        assert ds["slope_east"].attrs["units"] == "m m-1"
        assert ds.attrs["source"] == str(grib) and ds.attrs["smoothing_sigma_px"] == 2.0
        gm_name = ds["height"].attrs["grid_mapping"]
        crs = pyproj.CRS.from_cf(ds[gm_name].attrs)
        # the grid mapping alone reproduces the projection coordinates of lat/lon
        to_xy = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
        x, y = to_xy.transform(ds["lon"].values.astype(float), ds["lat"].values.astype(float))
        xx, yy = np.meshgrid(ds["x"].values, ds["y"].values)
        assert np.abs(x - xx).max() < 5.0 and np.abs(y - yy).max() < 5.0  # float32 lat/lon
        assert float(ds["lat"].min()) < 13.0 and float(ds["lat"].max()) > 61.0


def test_stage_height_is_the_grib_and_local_difference_is_exact(nam_run):
    _, out, grib = nam_run
    terrain = read_terrain(out)
    field = read_terrain_grib(grib)
    assert terrain.grid.same_as(field.grid)
    assert np.array_equal(terrain["height"], field.values)
    assert np.array_equal(
        terrain["height_local_difference"], terrain["height"] - terrain["height_smoothed"]
    )


def test_stage_east_north_slopes_match_geodesic_differences_of_the_interpolated_height(nam_run):
    """Independent check: step +-100 m east/west and north/south from interior grid
    points along geodesics and difference a bilinear interpolant of the height in
    projection coordinates.

    At a grid node such tiny symmetric steps land in opposite cells, so the bilinear
    difference is the average of the forward and backward differences, i.e. the centred
    difference rotated to east/north, plus terms of first order in the step fraction
    eps = 100 m / 81 km = 1.2e-3 (the bilinear cross term of the two cells and the slight
    asymmetry of the two geodesic steps from the varying map factor). Those scale with
    eps times the terrain's second differences, a few 1e-6 m/m here; a wrong rotation or
    missing map factor gives errors of order the slope itself (up to 2.8e-2)."""
    from scipy.interpolate import RegularGridInterpolator

    _, out, _ = nam_run
    terrain = read_terrain(out)
    grid = terrain.grid
    lon, lat = grid.lonlat()
    J, I = (v.ravel() for v in np.mgrid[2 : grid.ny - 2, 2 : grid.nx - 2])
    for suffix, tol in (("", 2e-5), ("_smoothed", 1e-6)):
        interp = RegularGridInterpolator(
            (grid.y, grid.x), terrain[f"height{suffix}"].astype(np.float64)
        )

        def height_at(lo, la, interp=interp):
            x, y = grid.to_xy(lo, la)
            return interp(np.column_stack([y, x]))

        errors = {}
        for step_m in (100.0, 200.0):
            fd_e, fd_n = _geodesic_slopes(grid, height_at, lon[J, I], lat[J, I], step_m)
            errors[step_m] = np.concatenate(
                [fd_e - terrain[f"slope_east{suffix}"][J, I],
                 fd_n - terrain[f"slope_north{suffix}"][J, I]]
            )
        assert np.abs(errors[100.0]).max() < tol, (suffix, np.abs(errors[100.0]).max())
        # truncation, not a formula error: doubling the step doubles the difference
        ratio = np.abs(errors[200.0]).max() / np.abs(errors[100.0]).max()
        assert 1.7 < ratio < 2.3, ratio


def test_stage_slopes_are_physically_sane(nam_run):
    _, out, _ = nam_run
    terrain = read_terrain(out)
    grid = terrain.grid
    steepest = np.hypot(terrain["slope_east"], terrain["slope_north"])
    assert 0.005 < steepest.max() < 0.05  # 81 km cells: 3 km over 100 km at most
    np.testing.assert_allclose(
        steepest, np.hypot(terrain["slope_x"], terrain["slope_y"]), rtol=1e-5, atol=1e-9
    )
    lon, lat = grid.lonlat()
    plains = (lon > -104.0) & (lon < -100.0) & (lat > 35.0) & (lat < 45.0)
    assert plains.sum() >= 20
    # the High Plains fall eastward from the Rockies by ~1 km over ~400 km
    mean_east = float(terrain["slope_east"][plains].mean())
    assert -0.005 < mean_east < -0.001, mean_east
    # the map factor of NAM grid 211 (tangent at 25N) is 1 at 25N and grows northward
    k = terrain["map_factor"]
    assert abs(float(k[np.abs(lat - 25.0) < 0.5].min()) - 1.0) < 1e-4
    assert float(k.max()) > 1.2


def test_rerun_skips_and_overwrite_rewrites(nam_run, capsys):
    ini, out, _ = nam_run
    good = out.read_bytes()
    out.write_bytes(b"stale")  # an existing output is trusted as finished
    assert main(["--config", str(ini)]) == 0
    assert out.read_bytes() == b"stale"
    assert "exists; use --overwrite to redo it" in capsys.readouterr().err
    assert main(["--config", str(ini), "--overwrite", "-q"]) == 0
    assert out.read_bytes() != b"stale" and len(out.read_bytes()) == pytest.approx(len(good), rel=0.01)
    assert np.array_equal(read_terrain(out)["height"], read_terrain_grib(nam_run[2]).values)
    assert sorted(p.name for p in out.parent.iterdir()) == ["terrain_info.nc"]


def test_corrupt_grib_is_one_line_exit_1_and_no_output(real_data, tmp_path, capsys):
    truncated = tmp_path / "terrain.grb2"
    truncated.write_bytes(real_data(NAM_TERRAIN).read_bytes()[:50000])
    ini = _write_config(tmp_path, truncated)
    assert main(["--config", str(ini)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("terrain_height.py: error: ") and str(truncated) in err
    assert "truncated" in err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_missing_grib_script_prints_one_line_naming_it_and_exits_1(tmp_path):
    missing = tmp_path / "no_such_terrain.grb2"
    ini = _write_config(tmp_path, missing)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, str(ROOT / "terrain_height.py"), "--config", str(ini)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert lines == [f"terrain_height.py: error: {missing}: file not found"], res.stderr
    assert not (tmp_path / "out").exists()


def test_stage_output_matches_the_known_good_file(nam_run):
    from conftest import assert_matches_golden

    _, out, _ = nam_run
    assert_matches_golden(out, "terrain_nam211_sigma2.nc")
