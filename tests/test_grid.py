import numpy as np
import pygrib
import pytest
from conftest import HRRR_CROP, MRMS_CROP, NAM_TERRAIN

from pqpf.grid import LAMBERT, Grid
from pqpf.io.grib import read_graf, read_mrms_qpe, read_terrain_grib


def test_lambert_coordinates_match_pygrib_latlons(real_data):
    path = real_data(HRRR_CROP)
    field = read_graf(path, 12)
    lon, lat = field.grid.lonlat()
    ref_lat, ref_lon = pygrib.open(str(path))[1].latlons()
    ref_lon = (ref_lon + 180) % 360 - 180
    assert np.abs(lat - ref_lat).max() < 1e-6
    assert np.abs(lon - ref_lon).max() < 1e-6


def test_nam_lambert_grid_matches_pygrib(real_data):
    path = real_data(NAM_TERRAIN)
    field = read_terrain_grib(path)
    lon, lat = field.grid.lonlat()
    msg = pygrib.open(str(path)).select(shortName="orog")[0]
    ref_lat, ref_lon = msg.latlons()
    assert np.abs(lat - ref_lat).max() < 1e-5
    assert np.abs(lon - ((ref_lon + 180) % 360 - 180)).max() < 1e-5


def test_latlon_grid_corners_and_index_roundtrip(real_data):
    grid = read_mrms_qpe(real_data(MRMS_CROP)).grid
    lon, lat = grid.lonlat()
    assert lat[0, 0] == pytest.approx(39.645) and lon[0, 0] == pytest.approx(274.655 - 360)
    assert lat[-1, -1] == pytest.approx(33.755) and lon[-1, -1] == pytest.approx(283.125 - 360)
    j, i = grid.fractional_index(lon + 360.0, lat)  # the 0..360 convention maps the same
    assert np.allclose(j, np.arange(grid.ny)[:, None]) and np.allclose(i, np.arange(grid.nx)[None, :])


def test_latlon_index_owns_points_just_west_of_first_column():
    grid = Grid("latitude_longitude", 10, 10, x0=-129.995, y0=54.995, dx=0.01, dy=-0.01)
    j, i = grid.fractional_index(np.array([-129.999, 230.011]), np.array([54.999, 54.99]))
    assert np.round(i).tolist() == [0, 1] and np.round(j).tolist() == [0, 0]


def test_cf_roundtrip_and_fingerprint():
    grid = Grid(LAMBERT, 20, 30, -1000.0, 2000.0, 4000.0, 4000.0, 33.0, 45.0, 39.0, -97.5)
    name, attrs = grid.cf_grid_mapping()
    assert name == "lambert_conformal_conic" and attrs["standard_parallel"] == [33.0, 45.0]
    again = Grid.from_cf(attrs, grid.x, grid.y)
    assert again.same_as(grid) and again.fingerprint() == grid.fingerprint()
    moved = Grid(LAMBERT, 20, 30, -1000.0, 2004.0, 4000.0, 4000.0, 33.0, 45.0, 39.0, -97.5)
    assert moved.fingerprint() != grid.fingerprint() and not moved.same_as(grid)


def test_subgrid_coordinates_are_the_slice_of_the_parent():
    grid = Grid(LAMBERT, 20, 30, -1000.0, 2000.0, 4000.0, 4000.0, 38.5, 38.5, 38.5, -97.5)
    sub = grid.subgrid(5, 15, 10, 30)
    lon, lat = grid.lonlat()
    slon, slat = sub.lonlat()
    assert np.array_equal(slon, lon[5:15, 10:30]) and np.array_equal(slat, lat[5:15, 10:30])
    with pytest.raises(ValueError):
        grid.subgrid(0, 21, 0, 5)
