import math
import shutil
import warnings

import numpy as np
import pyproj
import pytest
from conftest import HRRR_FULL, MRMS_CONUS, MRMS_CROP
from mrms_archive import count_builds, small_lambert_grid

from pqpf.errors import GridMismatchError, InputFileError
from pqpf.grid import EARTH_RADIUS_M, LATLON, Grid
from pqpf.io.grib import read_graf, read_mrms_qpe
from pqpf.remap_methods import METHODS, latlon_cell_area_m2
from pqpf.remapping import RegridWeights, cached_weights

R = EARTH_RADIUS_M
# A spherical 0.05 degree lat/lon source, north row first like MRMS, and a 16 km Lambert
# target well inside it (about 12 source cells per target cell).
SRC = Grid(LATLON, 140, 200, -102.975, 41.975, 0.05, -0.05, earth_a=R, earth_b=R)
DST = small_lambert_grid(38.5, -98.0, ny=14, nx=18, d_m=16000.0)
LCC = "+proj=lcc +lat_1=38.5 +lat_2=38.5 +lat_0=38.5 +lon_0=-97.5 +x_0=0 +y_0=0 +R=6371229 +units=m"


@pytest.fixture(scope="module")
def weights():
    return {m: RegridWeights.build(SRC, DST, m) for m in METHODS}


def _smooth_field(grid, seed=0):
    rng = np.random.default_rng(seed)
    lon, lat = grid.lonlat()
    field = 5.0 + 4.0 * np.sin(np.radians(lon) * 40.0) * np.cos(np.radians(lat) * 30.0)
    return (field + rng.gamma(0.5, 2.0, grid.shape)).astype(np.float32)


def _spherical_row_area(grid):
    """R^2 dlon (sin(top) - sin(bottom)) per row, written out independently."""
    lat = grid.y0 + grid.dy * np.arange(grid.ny)
    half = abs(grid.dy) / 2.0
    return R**2 * math.radians(abs(grid.dx)) * (
        np.sin(np.radians(lat + half)) - np.sin(np.radians(lat - half))
    )


def _geod_row_area(grid, rows):
    """Area of one cell per row from pyproj.Geod (edges densified so that the polygon
    follows the parallels, not geodesics)."""
    geod = pyproj.Geod(a=grid.earth_a, b=grid.earth_b)
    half_x, half_y = abs(grid.dx) / 2.0, abs(grid.dy) / 2.0
    t = np.linspace(-half_x, half_x, 9)
    out = []
    for j in rows:
        lat = grid.y0 + grid.dy * j
        lons = np.concatenate([t, t[::-1]])
        lats = np.concatenate([np.full(t.size, lat - half_y), np.full(t.size, lat + half_y)])
        area, _ = geod.polygon_area_perimeter(lons, lats)
        out.append(abs(area))
    return np.array(out)


def _brute_force(grid_in, values, quality, grid_out, rows, cols, row_area):
    """Slow independent conservative remap: Python loops over target cells; the centres
    of source cells ``rows x cols`` projected one point at a time with pyproj."""
    proj = pyproj.Proj(LCC)
    lat = grid_in.y0 + grid_in.dy * np.asarray(rows)
    lon = grid_in.x0 + grid_in.dx * np.asarray(cols)
    xs = np.empty((lat.size, lon.size))
    ys = np.empty_like(xs)
    for a, la in enumerate(lat):
        for b, lo in enumerate(lon):
            xs[a, b], ys[a, b] = proj(float(lo), float(la))
    v = values[np.ix_(rows, cols)].astype(np.float64)
    q = quality[np.ix_(rows, cols)].astype(np.float64)
    area = np.broadcast_to(np.asarray(row_area)[:, None], v.shape)
    precip = np.full(grid_out.shape, np.nan)
    qual = np.zeros(grid_out.shape)
    frac = np.zeros(grid_out.shape)
    for jt in range(grid_out.ny):
        yt = grid_out.y0 + jt * grid_out.dy
        near_y = np.abs(ys - yt) <= abs(grid_out.dy) / 2
        for it in range(grid_out.nx):
            xt = grid_out.x0 + it * grid_out.dx
            inside = near_y & (np.abs(xs - xt) <= abs(grid_out.dx) / 2)
            total = area[inside].sum()
            if total == 0:
                continue
            ok = inside & np.isfinite(v)
            frac[jt, it] = area[ok].sum() / total
            qual[jt, it] = (area[ok] * q[ok]).sum() / total
            if ok.any():
                precip[jt, it] = (area[ok] * v[ok]).sum() / area[ok].sum()
    return precip, qual, frac


# ---- geometry ---------------------------------------------------------------------------


def test_cell_area_is_exact_on_sphere_and_ellipsoid():
    assert np.allclose(latlon_cell_area_m2(SRC), _spherical_row_area(SRC), rtol=1e-12)
    mrms_like = Grid(LATLON, 3500, 7000, -129.995, 54.995, 0.01, -0.01,
                     earth_a=6378160.0, earth_b=6356775.0)
    rows = [0, 1000, 2500, 3499]
    got = latlon_cell_area_m2(mrms_like, slice(0, 3500))[rows]
    assert np.allclose(got, _geod_row_area(mrms_like, rows), rtol=1e-6)
    # sub-cells tile the cell
    sub = latlon_cell_area_m2(SRC, slice(3, 4), subsample=4)
    assert sub.size == 4 and sub.sum() * 4 == pytest.approx(latlon_cell_area_m2(SRC)[3], rel=1e-12)


# ---- behaviour of the three methods ---------------------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
def test_constant_field_stays_constant(weights, method):
    w = weights[method]
    const = np.float32(2.7)
    out = w.apply(np.full(SRC.shape, const, np.float32), np.full(SRC.shape, 0.8, np.float32))
    assert w.covered.all()  # the target lies well inside the source
    assert np.allclose(out.precipitation, const, rtol=2e-7, atol=0)
    assert np.allclose(out.quality, 0.8, rtol=2e-7, atol=0)
    assert np.array_equal(out.valid_fraction, np.ones(DST.shape, np.float32))
    # with missing cells, the remaining ones are renormalised: still constant
    holes = np.full(SRC.shape, const, np.float32)
    holes[np.random.default_rng(1).uniform(size=SRC.shape) < 0.3] = np.nan
    out = w.apply(holes)
    got = out.precipitation[out.valid_fraction > 0]
    assert got.size > 0.5 * DST.ny * DST.nx
    # two float32 sums of ~12 terms divided: a few units in the last place
    assert np.allclose(got, const, rtol=1e-6, atol=0)
    assert np.isnan(out.precipitation[out.valid_fraction == 0]).all()
    assert out.quality is None
    assert out.precipitation.dtype == np.float32 and out.valid_fraction.dtype == np.float32


@pytest.mark.parametrize("amount", [1.0, 2.5, 5.0, 10.0, 25.0])
def test_uniform_threshold_amount_stays_an_event_after_remapping(weights, amount):
    """An area of exactly a threshold amount remaps to one float32 ulp either side of it
    (2.5 mm: 46 % of these cells below); every cell must still count as reaching it and
    fall into its bin."""
    from pqpf.ordinal import bin_index, reaches

    edges = (0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 3.5, 5.0, 7.5, 10.0, 15.0, 25.0, 40.0)
    holes = np.full(SRC.shape, amount, np.float32)
    holes[np.random.default_rng(2).uniform(size=SRC.shape) < 0.2] = np.nan
    out = weights["conservative"].apply(holes).precipitation
    got = out[np.isfinite(out)]
    assert got.size > 0.5 * DST.ny * DST.nx
    assert reaches(got, amount).all()
    assert (bin_index(got, edges) == edges.index(amount)).all()


def test_conservative_regrid_keeps_domain_total(weights):
    w = weights["conservative"]
    values = _smooth_field(SRC)
    out = w.apply(values)
    # which source centres fall inside the target domain, decided independently
    lon, lat = np.meshgrid(SRC.x0 + SRC.dx * np.arange(SRC.nx), SRC.y0 + SRC.dy * np.arange(SRC.ny))
    x, y = pyproj.Proj(LCC)(lon, lat)
    xe0, xe1 = DST.x0 - DST.dx / 2, DST.x0 + DST.dx * (DST.nx - 0.5)
    ye0, ye1 = DST.y0 - DST.dy / 2, DST.y0 + DST.dy * (DST.ny - 0.5)
    inside = (x >= xe0) & (x < xe1) & (y >= ye0) & (y < ye1)
    area = np.broadcast_to(_spherical_row_area(SRC)[:, None], SRC.shape)
    total_in = float((area * values)[inside].sum())
    total_out = float((w.row_sums.reshape(DST.shape) * out.precipitation).sum())
    assert total_out == pytest.approx(total_in, rel=1e-5)
    assert w.row_sums.sum() == pytest.approx(area[inside].sum(), rel=1e-9)


def test_conservative_equals_brute_force_with_holes(weights):
    rng = np.random.default_rng(3)
    values = _smooth_field(SRC, seed=3)
    values[rng.uniform(size=SRC.shape) < 0.25] = np.nan
    values[60:75, 80:110] = np.nan  # a block so that some target cells are fully missing
    quality = rng.uniform(0.0, 1.0, SRC.shape).astype(np.float32)
    out = weights["conservative"].apply(values, quality)
    ref_p, ref_q, ref_f = _brute_force(
        SRC, values, quality, DST, np.arange(SRC.ny), np.arange(SRC.nx), _spherical_row_area(SRC)
    )
    assert (ref_f == 0).sum() >= 1 and ((ref_f > 0) & (ref_f < 1)).sum() > 100
    assert np.array_equal(np.isnan(out.precipitation), np.isnan(ref_p))
    assert np.allclose(out.precipitation, ref_p, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert np.allclose(out.valid_fraction, ref_f, rtol=1e-5, atol=1e-6)
    assert np.allclose(out.quality, ref_q, rtol=1e-5, atol=1e-6)


def test_nearest_picks_the_containing_cell(weights):
    ids = np.arange(SRC.ny * SRC.nx, dtype=np.float32).reshape(SRC.shape)
    out = weights["nearest"].apply(ids)
    idx = out.precipitation.astype(np.int64).ravel()
    assert np.array_equal(idx.astype(np.float32), out.precipitation.ravel())
    j, i = np.divmod(idx, SRC.nx)
    xx, yy = np.meshgrid(DST.x0 + DST.dx * np.arange(DST.nx), DST.y0 + DST.dy * np.arange(DST.ny))
    lon, lat = pyproj.Proj(LCC)(xx.ravel(), yy.ravel(), inverse=True)
    assert np.all(np.abs(lon - (SRC.x0 + SRC.dx * i)) <= abs(SRC.dx) / 2 + 1e-9)
    assert np.all(np.abs(lat - (SRC.y0 + SRC.dy * j)) <= abs(SRC.dy) / 2 + 1e-9)


def test_bilinear_reproduces_linear_function_of_lon_lat(weights):
    lon, lat = np.meshgrid(SRC.x0 + SRC.dx * np.arange(SRC.nx), SRC.y0 + SRC.dy * np.arange(SRC.ny))
    field = (0.5 * lon + 2.0 * lat + 100.0).astype(np.float32)
    out = weights["bilinear"].apply(field)
    xx, yy = np.meshgrid(DST.x0 + DST.dx * np.arange(DST.nx), DST.y0 + DST.dy * np.arange(DST.ny))
    lon_t, lat_t = pyproj.Proj(LCC)(xx, yy, inverse=True)
    expect = 0.5 * lon_t + 2.0 * lat_t + 100.0
    assert np.allclose(out.precipitation, expect, rtol=0, atol=2e-5)
    # and differs from nearest (it really interpolates)
    near = weights["nearest"].apply(field).precipitation
    assert np.abs(near - expect).max() > 0.005


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="conservative, nearest, bilinear"):
        RegridWeights.build(SRC, DST, "patch")
    with pytest.raises(ValueError, match="shape"):
        RegridWeights.build(SRC, DST, "nearest").apply(np.zeros((3, 3), np.float32))


def test_target_outside_the_source_is_missing_with_quality_zero():
    # a target half outside the source domain (west edge at -102.975)
    grid = small_lambert_grid(38.5, -103.0, ny=10, nx=12, d_m=16000.0)
    for method in METHODS:
        out = RegridWeights.build(SRC, grid, method).apply(
            np.ones(SRC.shape, np.float32), np.ones(SRC.shape, np.float32)
        )
        west, east = out.valid_fraction[:, :2], out.valid_fraction[:, -2:]
        assert (west == 0).all() and (east == 1).all(), method
        assert np.isnan(out.precipitation[:, :2]).all() and (out.quality[:, :2] == 0).all()


def test_subsampling_converges_to_area_overlap():
    # A 0.25 degree source (about 22 x 28 km) onto 16 km cells: by centres alone, many
    # target cells get no source cell; sub-cells fill them and converge as 1/s.
    coarse = Grid(LATLON, 40, 50, -104.0, 42.0, 0.25, -0.25, earth_a=R, earth_b=R)
    lon, lat = coarse.lonlat()
    values = (np.sin(np.radians(lon) * 60.0) + 2.0 + 0.1 * lat).astype(np.float32)
    out = {s: RegridWeights.build(coarse, DST, "conservative", subsample=s).apply(values).precipitation
           for s in (1, 2, 4, 8, 32)}
    assert np.isnan(out[1]).sum() > 50 and not np.isnan(out[2]).any()
    err = {s: float(np.mean(np.abs(out[s] - out[32]))) for s in (2, 4, 8)}
    assert err[8] < 0.6 * err[4] < 0.6 * 0.6 * err[2]
    with pytest.raises(ValueError, match="subsample"):
        RegridWeights.build(coarse, DST, "nearest", subsample=2)


# ---- real data ----------------------------------------------------------------------------


def test_real_mrms_crop_onto_lambert_grid_matches_brute_force(real_data):
    field = read_mrms_qpe(real_data(MRMS_CROP))
    grid_in = field.grid
    # where the crop rains: at its west edge (the target reaches a little beyond it)
    grid_out = small_lambert_grid(34.7, -84.95, ny=20, nx=20, d_m=4000.0)
    values = field.values.copy()
    rng = np.random.default_rng(5)
    values[rng.uniform(size=values.shape) < 0.1] = np.nan
    quality = rng.uniform(0, 1, values.shape).astype(np.float32)
    out = RegridWeights.build(grid_in, grid_out, "conservative").apply(values, quality)
    # source cells that can reach the target: a lat/lon box around its corners
    lon_t, lat_t = grid_out.lonlat()
    rows = np.nonzero((grid_in.y > lat_t.min() - 0.1) & (grid_in.y < lat_t.max() + 0.1))[0]
    cols = np.nonzero((grid_in.x > lon_t.min() - 0.1) & (grid_in.x < lon_t.max() + 0.1))[0]
    ref_p, ref_q, ref_f = _brute_force(
        grid_in, values, quality, grid_out, rows, cols, _geod_row_area(grid_in, rows)
    )
    assert np.nanmax(ref_p) > 1.0  # real rain inside
    assert 0.9 < (ref_f > 0).mean() < 1.0
    assert np.allclose(out.precipitation, ref_p, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert np.allclose(out.valid_fraction, ref_f, rtol=1e-5, atol=1e-6)
    assert np.allclose(out.quality, ref_q, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_real_conus_mrms_onto_full_hrrr_grid_matches_brute_force(real_data):
    field = read_mrms_qpe(real_data(MRMS_CONUS))
    grid_in = field.grid
    grid_out = read_graf(real_data(HRRR_FULL), 12).grid
    assert (grid_out.ny, grid_out.nx, grid_out.lat_1, grid_out.lon_0) == (1059, 1799, 38.5, -97.5)
    weights = RegridWeights.build(grid_in, grid_out, "conservative")
    out = weights.apply(field.values)
    values = field.values.ravel()

    # Independent vectorised reference: every source centre projected with a PROJ string
    # spelled out here, assigned by rounding, accumulated with np.bincount.
    proj = pyproj.Proj(LCC)
    row_area = _geod_row_area(grid_in, range(grid_in.ny))
    lon_c = -129.995 + 0.01 * np.arange(7000)
    lat_c = 54.995 - 0.01 * np.arange(3500)
    n_out = grid_out.ny * grid_out.nx
    num = np.zeros(n_out)
    den = np.zeros(n_out)
    target_of = np.full(values.size, -1, np.int64)
    for j0 in range(0, 3500, 250):
        lon, lat = np.meshgrid(lon_c, lat_c[j0:j0 + 250])
        x, y = proj(lon, lat)
        it = np.rint((x - grid_out.x0) / grid_out.dx)
        jt = np.rint((y - grid_out.y0) / grid_out.dy)
        ok = (it >= 0) & (it < grid_out.nx) & (jt >= 0) & (jt < grid_out.ny)
        tgt = np.where(ok, jt * grid_out.nx + it, -1).astype(np.int64).ravel()
        target_of[j0 * 7000:(j0 + lat.shape[0]) * 7000] = tgt
        area = np.repeat(row_area[j0:j0 + 250], 7000)
        v = values[j0 * 7000:(j0 + lat.shape[0]) * 7000]
        sel = tgt >= 0
        num += np.bincount(tgt[sel], weights=area[sel] * v[sel], minlength=n_out)
        den += np.bincount(tgt[sel], weights=area[sel], minlength=n_out)
    covered = den > 0
    assert np.array_equal(covered, weights.covered.ravel())
    assert 0.95 < covered.mean() < 1.0  # HRRR reaches a little beyond the MRMS domain
    ref = np.where(covered, num / np.where(covered, den, 1.0), np.nan)
    got = out.precipitation.ravel()
    assert np.allclose(got, ref, rtol=1e-5, atol=1e-4, equal_nan=True)
    assert np.allclose(weights.row_sums, den, rtol=1e-6)

    # Area-weighted rain total over the HRRR domain = source total over the cells inside.
    total_out = float(np.nansum(weights.row_sums * got))
    inside = target_of >= 0
    total_in = float((np.repeat(row_area, 7000)[inside] * values[inside]).sum())
    assert total_in > 1e10  # m^2 mm: a real amount of rain
    assert total_out == pytest.approx(total_in, rel=1e-5)

    # Python loop over a few hundred rainy target cells: membership tested directly.
    rng = np.random.default_rng(0)
    rainy = np.flatnonzero(np.nan_to_num(got) > 1.0)
    assert rainy.size > 1000
    for t in rng.choice(rainy, 300, replace=False):
        jt, it = divmod(int(t), grid_out.nx)
        xt, yt = grid_out.x0 + it * grid_out.dx, grid_out.y0 + jt * grid_out.dy
        lon_t, lat_t = proj(xt, yt, inverse=True)
        rows = np.nonzero(np.abs(lat_c - lat_t) < 0.04)[0]
        cols = np.nonzero(np.abs(lon_c - lon_t) < 0.05)[0]
        lon, lat = np.meshgrid(lon_c[cols], lat_c[rows])
        x, y = proj(lon, lat)
        inside_t = (np.abs(x - xt) <= abs(grid_out.dx) / 2) & (np.abs(y - yt) <= abs(grid_out.dy) / 2)
        area = np.broadcast_to(row_area[rows][:, None], inside_t.shape)
        v = field.values[np.ix_(rows, cols)]
        expect = (area * v)[inside_t].sum() / area[inside_t].sum()
        assert got[t] == pytest.approx(expect, rel=1e-5, abs=1e-4), (jt, it)


# ---- storage and cache -------------------------------------------------------------------


def test_weights_roundtrip_without_pickle(tmp_path, weights):
    w = weights["conservative"]
    path = w.save(tmp_path / "w.npz")
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["w.npz"]
    with np.load(path, allow_pickle=False) as npz:
        assert "meta" in npz.files
    back = RegridWeights.load(path, SRC, DST, "conservative")
    assert back.fingerprint == w.fingerprint
    assert (back.matrix != w.matrix).nnz == 0 and back.matrix.indices.dtype == np.int32
    values = _smooth_field(SRC)
    assert np.array_equal(back.apply(values).precipitation, w.apply(values).precipitation)


def test_weights_for_other_grids_or_method_are_refused(tmp_path, weights):
    path = weights["conservative"].save(tmp_path / "w.npz")
    other = small_lambert_grid(38.0, -97.0, ny=14, nx=18, d_m=16000.0)
    with pytest.raises(GridMismatchError, match="target grid"):
        RegridWeights.load(path, SRC, other, "conservative")
    with pytest.raises(GridMismatchError, match="method conservative"):
        RegridWeights.load(path, SRC, DST, "nearest")
    shifted = Grid(LATLON, 140, 200, -102.965, 41.975, 0.05, -0.05, earth_a=R, earth_b=R)
    with pytest.raises(GridMismatchError, match="source grid"):
        RegridWeights.load(path, shifted, DST, "conservative")


def test_cache_builds_once_then_loads(tmp_path, monkeypatch):
    calls = count_builds(monkeypatch)
    first = cached_weights(tmp_path, SRC, DST, "conservative")
    second = cached_weights(tmp_path, SRC, DST, "conservative")
    assert len(calls) == 1
    assert (first.matrix != second.matrix).nnz == 0
    cached_weights(tmp_path, SRC, DST, "bilinear")
    assert len(calls) == 2 and len(list(tmp_path.glob("*.npz"))) == 2


def test_cache_rebuilds_foreign_or_corrupt_file_with_warning(tmp_path, monkeypatch):
    calls = count_builds(monkeypatch)
    other = small_lambert_grid(38.0, -97.0, ny=14, nx=18, d_m=16000.0)
    built_other = cached_weights(tmp_path / "a", SRC, other, "conservative")
    cached_weights(tmp_path / "b", SRC, DST, "conservative")
    assert len(calls) == 2
    # a file for another target grid under this grid's cache name: refused and rebuilt
    name = next((tmp_path / "b").glob("*.npz")).name
    shutil.copyfile(next((tmp_path / "a").glob("*.npz")), tmp_path / "b" / name)
    with pytest.warns(UserWarning, match="target grid"):
        w = cached_weights(tmp_path / "b", SRC, DST, "conservative")
    assert len(calls) == 3 and w.grid_out.same_as(DST) and not built_other.grid_out.same_as(DST)
    assert RegridWeights.load(tmp_path / "b" / name, SRC, DST).grid_out.same_as(DST)
    # a damaged file: warned about and rebuilt
    (tmp_path / "b" / name).write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.warns(UserWarning, match="not a readable weights file"):
        cached_weights(tmp_path / "b", SRC, DST, "conservative")
    assert len(calls) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached_weights(tmp_path / "b", SRC, DST, "conservative")  # now good again
    assert len(calls) == 4
    with pytest.raises(InputFileError, match="file not found"):
        RegridWeights.load(tmp_path / "none.npz", SRC, DST)
