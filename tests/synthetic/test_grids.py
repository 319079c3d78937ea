"""The MRMS-like grids and the extended domain the weather is simulated on."""

from __future__ import annotations

import numpy as np
from conftest import MRMS_CONUS

from pqpf.grid import graf_like_grid
from pqpf.io.grib import read_mrms_qpe
from pqpf.synthetic import mrms_grid_for
from pqpf.synthetic.grids import extended_domain


def test_conus_mrms_grid_is_the_real_one(real_data):
    assert mrms_grid_for("conus").same_as(read_mrms_qpe(real_data(MRMS_CONUS)).grid)


def test_demo_mrms_grid_covers_the_model_domain_plus_a_quarter_degree_on_the_lattice():
    demo = mrms_grid_for("demo")
    lon, lat = graf_like_grid("demo").lonlat()
    west, north = demo.x0, demo.y0
    east, south = west + (demo.nx - 1) * demo.dx, north + (demo.ny - 1) * demo.dy
    assert west <= lon.min() - 0.24 and east >= lon.max() + 0.24
    assert south <= lat.min() - 0.24 and north >= lat.max() + 0.24
    assert (west - lon.min()) > -0.27  # ~0.25 degree margin, not more
    for edge in (west, north):
        assert abs(edge * 100 - round(edge * 100 - 0.5) - 0.5) < 1e-6  # centres on x.xx5
    assert demo.shape == (837, 1285)


def test_extended_domain_covers_the_mrms_grid_inside_a_larger_fft_domain():
    model = graf_like_grid("demo")
    mrms = mrms_grid_for("demo", model)
    dom = extended_domain(model, mrms)
    # the MRMS box (the Lambert domain's lon/lat bounding box + 0.25 degree) reaches up to
    # 37 points beyond the model grid; 3 more make the margin
    assert dom.margin == 40
    assert dom.grid.shape == (model.ny + 2 * dom.margin, model.nx + 2 * dom.margin)
    lon, lat = mrms.lonlat(slice(0, mrms.ny, 10))
    fj, fi = dom.grid.fractional_index(lon[:, ::10], lat[:, ::10])
    assert fj.min() >= 0 and fj.max() <= dom.grid.ny - 1 and fi.min() >= 0 and fi.max() <= dom.grid.nx - 1
    assert all(f >= 1.5 * n for f, n in zip(dom.fft_shape, dom.grid.shape, strict=True))
    inner = np.zeros(dom.grid.shape, dtype=bool)
    inner[dom.inner] = True
    assert inner.sum() == model.ny * model.nx
