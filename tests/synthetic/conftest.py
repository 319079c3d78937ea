"""``demo_archive``: four June days of the full demo grid (seed 1, leads 1 and 6), made once
per session with :func:`pqpf.synthetic.generate_archive` and read back with pqpf's GRIB
readers, for the realism pins of test_realism.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage

from pqpf.config import Config
from pqpf.grid import Grid
from pqpf.io.grib import read_graf, read_mrms_qpe, read_mrms_quality, read_terrain_grib
from pqpf.layout import graf_archive_path, mrms_raw_path
from pqpf.synthetic import generate_archive

DEMO_START, DEMO_END = dt.datetime(2025, 6, 1, 0), dt.datetime(2025, 6, 4, 23)
DEMO_LEADS = (1, 6)
DEMO_SEED = 1


def _hours(a: dt.datetime, b: dt.datetime) -> list[dt.datetime]:
    """Every hour from ``a`` to ``b`` inclusive."""
    return [a + dt.timedelta(hours=h) for h in range(int((b - a).total_seconds() // 3600) + 1)]


#: Box (rows, columns of 0.01 degree cells, ~5.6 x 4.3 km) averaged around the MRMS cell
#: nearest to a model grid point (spacing 4 km) to compare MRMS with GRAF.
BOX_PX = (5, 5)
#: The MRMS amounts are counted in bins of 0.1 mm (the QPE is packed to 0.1 mm).
BIN_MM = 0.1


@dataclass
class DemoArchive:
    """The demo archive read back with pqpf's readers and reduced while reading (the raw
    MRMS fields of 96 hours would take 400 MB).

    Attributes
    ----------
    wet_counts : dict threshold (mm) -> int
        MRMS points with QPE >= threshold, over all hours and covered points.
    n_covered : int
        MRMS points with coverage, summed over hours.
    bin_mm : float
        Width (mm) of the histogram bins.
    bin_counts : int64 array
        Histogram of the covered MRMS QPE in bins of ``bin_mm`` (``round(qpe / bin_mm)``).
    qpe_on_model : float32 array, shape (hour, y, x)
        MRMS QPE averaged over ``BOX_PX`` around each model grid point, NaN where a box
        has no coverage.
    quality_on_model : float32 array, shape (y, x)
        Quality index of the MRMS cell nearest to each model grid point.
    """

    config: Config
    model: Grid
    mrms: Grid
    valid_times: list[dt.datetime]
    no_coverage: np.ndarray  # bool (y, x) on the MRMS grid: QPE missing (-3)
    quality: np.ndarray  # (y, x) on the MRMS grid
    wet_counts: dict[float, int]
    n_covered: int
    bin_mm: float
    bin_counts: np.ndarray
    qpe_max_mm: float
    qpe_on_model: np.ndarray
    quality_on_model: np.ndarray
    graf_mm: dict[int, np.ndarray]  # lead -> (init, y, x) on the model grid
    graf_valid: dict[int, list[dt.datetime]]
    terrain_m: np.ndarray  # (y, x) on the model grid


def _box_mean(qpe: np.ndarray) -> np.ndarray:
    """Mean over ``BOX_PX`` of the finite values (NaN where none)."""
    valid = np.isfinite(qpe)
    total = ndimage.uniform_filter(np.where(valid, qpe, 0.0).astype(np.float64), BOX_PX, mode="constant")
    share = ndimage.uniform_filter(valid.astype(np.float64), BOX_PX, mode="constant")
    # running sums leave ~1e-17 where a box holds no finite value: half a cell is the cut
    enough = share > 0.5 / (BOX_PX[0] * BOX_PX[1])
    return np.where(enough, total / np.where(enough, share, 1.0), np.nan)


@pytest.fixture(scope="session")
def demo_archive(tmp_path_factory: pytest.TempPathFactory) -> DemoArchive:
    out = tmp_path_factory.mktemp("synthetic") / "demo"
    config = generate_archive(out, DEMO_START, DEMO_END, DEMO_LEADS, "demo", seed=DEMO_SEED)
    valid = _hours(DEMO_START, DEMO_END)
    quality = read_mrms_quality(mrms_raw_path(config, config.mrms.quality_product, DEMO_START))
    terrain = read_terrain_grib(config.paths.graf_terrain_grib)
    lon, lat = terrain.grid.lonlat()
    fj, fi = quality.grid.fractional_index(lon, lat)
    nj, ni = np.rint(fj).astype(int), np.rint(fi).astype(int)
    wet_counts = {0.25: 0, 1.0: 0}
    bins = np.zeros(0, dtype=np.int64)
    n_covered, qpe_max, on_model = 0, 0.0, []
    for t in valid:
        qpe = read_mrms_qpe(mrms_raw_path(config, config.mrms.qpe_product, t), valid=t).values
        covered = qpe[np.isfinite(qpe)]
        n_covered += covered.size
        for threshold in wet_counts:
            wet_counts[threshold] += int((covered >= threshold).sum())
        hist = np.bincount(np.rint(covered / BIN_MM).astype(np.int64))
        bins = np.pad(bins, (0, max(0, hist.size - bins.size)))
        bins[:hist.size] += hist
        qpe_max = max(qpe_max, float(covered.max()))
        on_model.append(_box_mean(qpe)[nj, ni].astype(np.float32))
        no_coverage = ~np.isfinite(qpe)
    inits = [t for t in valid if t.hour in config.patches.cycles]
    graf = {lead: np.array([read_graf(graf_archive_path(config, i, lead), lead, init=i).values for i in inits])
            for lead in DEMO_LEADS}
    graf_valid = {lead: [i + dt.timedelta(hours=lead) for i in inits] for lead in DEMO_LEADS}
    return DemoArchive(config, terrain.grid, quality.grid, valid, no_coverage, quality.values, wet_counts,
                       n_covered, BIN_MM, bins, qpe_max, np.array(on_model), quality.values[nj, ni], graf, graf_valid,
                       terrain.values)
