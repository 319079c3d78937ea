import dataclasses
import datetime as dt
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pygrib
import pytest

from conftest import MRMS_CONUS, ROOT
from pqpf.config import PathsConfig, load_config
from pqpf.grid import graf_like_grid
from pqpf.io.grib import read_graf, read_grib_messages, read_mrms_qpe, read_mrms_quality, read_terrain_grib
from pqpf.layout import graf_archive_path, graf_laptop_path, mrms_raw_path
from pqpf.synthetic import generate_archive, main, mrms_grid_for
from pqpf.synthetic.grids import extended_domain
from pqpf.synthetic.radar import Observer, build_observer, radar_quality, radar_sites, site_on_hills
from pqpf.synthetic.regimes import regime_at
from pqpf.synthetic.terrain import synthetic_terrain
from pqpf.synthetic.weather import Weather

QPE = "MultiSensor_QPE_01H_Pass2_00.00"
RQI = "RadarAccumulationQualityIndex_01H_00.00"
# A 64 x 80 piece of the demo grid keeps the archive tests fast. Its first point is not
# on GRIB's micro-degree lattice, so it reads back a few cm off (the named grids are exact).
SMALL = graf_like_grid("demo").subgrid(68, 132, 85, 165)
# Across the 2024040512 archive switch: inits 2024040512 (old), 2024040600, 2024040612 (new).
START, END = dt.datetime(2024, 4, 5, 6), dt.datetime(2024, 4, 6, 18)
LEADS = (1, 6)


def _same_grid_to_grib_precision(a, b):
    """Equal grids, the first point allowed to differ by GRIB's micro-degree rounding."""
    moved = dataclasses.replace(b, x0=a.x0, y0=a.y0)
    return a.same_as(moved) and abs(a.x0 - b.x0) < 0.1 and abs(a.y0 - b.y0) < 0.1


def _hours(a, b):
    return [a + dt.timedelta(hours=h) for h in range(int((b - a).total_seconds() // 3600) + 1)]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "archive"
    config = generate_archive(out, START, END, LEADS, "demo", seed=3, model_grid=SMALL)
    return out, config


# ---- layout and config ------------------------------------------------------------------


def test_archive_holds_exactly_the_files_layout_names(archive):
    out, config = archive
    inits = [dt.datetime(2024, 4, 5, 12), dt.datetime(2024, 4, 6, 0), dt.datetime(2024, 4, 6, 12)]
    expected = {out / "config.ini", config.paths.graf_terrain_grib}
    expected |= {graf_archive_path(config, i, lead) for i in inits for lead in LEADS}
    expected |= {mrms_raw_path(config, p, t) for p in (QPE, RQI) for t in _hours(START, END)}
    assert {p for p in out.rglob("*") if p.is_file()} == expected
    # the literal names: old archive up to the switch, unpadded lead, MRMS names
    assert (out / "graf/hdo-graflr_conus/20240405/12/grid.hdo-graflr_conus.20240405T180000Z."
            "20240405T120000Z.PT6H.CONUS@4km.APCP.SFC.grb2").is_file()
    assert (out / "graf/hdo-graf_conus/20240406/00/grid.hdo-graf_conus.20240406T010000Z."
            "20240406T000000Z.PT1H.CONUS@4km.APCP.SFC.grb2").is_file()
    assert (out / "mrms_raw/MultiSensor_QPE_01H_Pass2_00.00/20240405/"
            "MRMS_MultiSensor_QPE_01H_Pass2_00.00_20240405-060000.grib2.gz").is_file()
    assert (out / "mrms_raw/RadarAccumulationQualityIndex_01H_00.00/20240406/"
            "MRMS_RadarAccumulationQualityIndex_01H_00.00_20240406-180000.grib2.gz").is_file()
    # the laptop layout of the config is the archive itself
    assert graf_laptop_path(config, inits[0], 6) == graf_archive_path(config, inits[0], 6)


def test_config_loads_with_every_path_inside_the_archive_and_relative(archive, tmp_path):
    out, config = archive
    assert load_config(out / "config.ini") == config
    for f in dataclasses.fields(PathsConfig):
        value = getattr(config.paths, f.name)
        if isinstance(value, Path):
            assert value.is_relative_to(out.resolve()), f.name
    assert config.training.hparams_name == "tiny"
    assert config.terrain.smoothing_sigma_px == 8.0
    assert config.patches.cycles == (0, 12) and config.patches.previous_year is False
    assert config.patches.ndays_train == 1 and config.graf.lead_max_h >= max(LEADS)
    assert config.paths.graf_archive_switch == dt.datetime(2024, 4, 5, 12)
    # relative paths: a moved archive's config points into its new place
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(out / "config.ini", moved / "config.ini")
    assert load_config(moved / "config.ini").paths.mrms_raw_dir == moved.resolve() / "mrms_raw"


# ---- formats -------------------------------------------------------------------------------


def test_graf_files_read_back_on_the_model_grid_with_their_times(archive):
    _, config = archive
    init = dt.datetime(2024, 4, 6, 0)
    for lead in LEADS:
        field = read_graf(graf_archive_path(config, init, lead), lead, init=init)
        assert _same_grid_to_grib_precision(field.grid, SMALL)
        assert field.valid_time == init + dt.timedelta(hours=lead)
        assert np.isfinite(field.values).all() and field.values.min() >= 0.0


def test_mrms_files_read_back_with_product_ids_sentinels_and_quality(archive):
    _, config = archive
    when = dt.datetime(2024, 4, 6, 3)
    mrms = mrms_grid_for("demo", SMALL)
    qpe = read_mrms_qpe(mrms_raw_path(config, QPE, when), expected_id=(209, 6, 37), valid=when)
    quality = read_mrms_quality(mrms_raw_path(config, RQI, when), valid=when)
    assert qpe.grid.same_as(mrms) and quality.grid.same_as(mrms)
    assert qpe.attrs["grib_id"] == (209, 6, 37)
    raw = pygrib.fromstring(gzip.decompress(mrms_raw_path(config, QPE, when).read_bytes()))
    values = raw.values
    assert raw["longitudeOfFirstGridPointInDegrees"] > 180.0  # written 0..360, like MRMS
    assert round(raw["latitudeOfFirstGridPointInDegrees"] * 1000) % 10 == 5  # x.xx5 lattice
    assert set(np.unique(values[values < 0])) == {-3.0}
    assert (values == -3.0).sum() > 100  # beyond radar range exists
    assert (quality.values[values == -3.0] == 0.0).all()
    assert (values[quality.values > 0.0] >= 0.0).all()
    assert 0.0 <= quality.values.min() and quality.values.max() <= 1.0
    assert np.array_equal(np.isnan(qpe.values), values == -3.0)


def test_terrain_grib_reads_on_the_model_grid(archive):
    _, config = archive
    terrain = read_terrain_grib(config.paths.graf_terrain_grib)
    assert _same_grid_to_grib_precision(terrain.grid, SMALL)
    assert 0.0 <= terrain.values.min() and terrain.values.max() < 3700.0
    assert read_grib_messages(config.paths.graf_terrain_grib)[0]["shortName"] == "orog"


def test_mrms_grids_match_the_real_conus_grid_and_the_lattice(real_data):
    conus = mrms_grid_for("conus")
    real = read_mrms_qpe(real_data(MRMS_CONUS))
    assert conus.same_as(real.grid)
    demo = mrms_grid_for("demo")
    model = graf_like_grid("demo")
    lon, lat = model.lonlat()
    west, north = demo.x0, demo.y0
    east, south = west + (demo.nx - 1) * demo.dx, north + (demo.ny - 1) * demo.dy
    assert west <= lon.min() - 0.24 and east >= lon.max() + 0.24
    assert south <= lat.min() - 0.24 and north >= lat.max() + 0.24
    assert west <= lon.min() - 0.24 and (west - lon.min()) > -0.27  # ~0.25 degree margin
    for edge in (west, north):
        assert abs(edge * 100 - round(edge * 100 - 0.5) - 0.5) < 1e-6  # centres on x.xx5


# ---- determinism ---------------------------------------------------------------------------


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_identical_bytes_and_a_longer_run_repeats_them(archive, tmp_path):
    out, _ = archive
    short_end = dt.datetime(2024, 4, 5, 17)
    again = tmp_path / "again"
    generate_archive(again, START, short_end, LEADS, "demo", seed=3, model_grid=SMALL)
    mine, theirs = _files(again), _files(out)
    shared = [k for k in mine if k.name != "config.ini"]
    assert len(shared) == 12 * 2 + 2 + 1  # 12 hours of MRMS, init 12Z x 2 leads, terrain
    for key in shared:
        assert mine[key] == theirs[key], key


def test_another_seed_gives_other_weather(archive, tmp_path):
    out, config = archive
    other = generate_archive(tmp_path / "other", START, START + dt.timedelta(hours=8), (6,),
                             "demo", seed=4, model_grid=SMALL)
    init = dt.datetime(2024, 4, 5, 12)
    a = read_graf(graf_archive_path(config, init, 6), 6).values
    b = read_graf(graf_archive_path(other, init, 6), 6).values
    assert not np.array_equal(a, b)
    ta = read_terrain_grib(config.paths.graf_terrain_grib).values
    tb = read_terrain_grib(other.paths.graf_terrain_grib).values
    assert np.abs(ta - tb).mean() > 100.0


def test_rerun_keeps_existing_files_and_completes_missing_ones(archive, tmp_path):
    out, config = archive
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victim = mrms_raw_path(load_config(copy / "config.ini"), QPE, dt.datetime(2024, 4, 6, 2))
    victim.unlink()
    kept = copy / "static" / "GRAF_CONUS_terrain.grb2"
    kept.write_bytes(b"placeholder")
    generate_archive(copy, START, END, LEADS, "demo", seed=3, model_grid=SMALL)
    assert victim.read_bytes() == (out / victim.relative_to(copy)).read_bytes()
    assert kept.read_bytes() == b"placeholder"  # existing files are not rewritten
    generate_archive(copy, START, END, LEADS, "demo", seed=3, overwrite=True, model_grid=SMALL)
    assert kept.read_bytes() == config.paths.graf_terrain_grib.read_bytes()


# ---- realism of the weather ------------------------------------------------------------------

N_DAYS = 16
W_START = dt.datetime(2024, 6, 1, 0)


def _slope(field, dx_km=4.0):
    """Log-log slope of the radially averaged power spectrum, wavelengths 16-200 km."""
    f = field - field.mean()
    ny, nx = f.shape
    power = np.abs(np.fft.fft2(f * np.outer(np.hanning(ny), np.hanning(nx)))) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(ny, dx_km), np.fft.fftfreq(nx, dx_km), indexing="ij"))
    edges = np.logspace(np.log10(1 / 200.0), np.log10(1 / 16.0), 12)
    centres = np.sqrt(edges[:-1] * edges[1:])
    means = [power[(k >= a) & (k < b)].mean() for a, b in zip(edges[:-1], edges[1:])]
    return np.polyfit(np.log(centres), np.log(means), 1)[0]


@pytest.fixture(scope="module")
def weather():
    """Sixteen June days on the demo grid: the truth and its orographic forcing every two
    hours (odd hours), and forecasts at leads 1 and 12 valid at 01 and 13 UTC (the same
    valid times for both leads, from different inits)."""
    model = graf_like_grid("demo")
    mrms = mrms_grid_for("demo", model)
    dom = extended_domain(model, mrms)
    w = Weather(dom, synthetic_terrain(dom.grid, 0), seed=0)
    w.model, w.mrms = model, mrms
    w.observer = build_observer(mrms, dom.grid, w.terrain_ext, "demo", 0, w.params)
    w.sites = site_on_hills(radar_sites(mrms, w.params.radar_spacing_demo_km, 0), dom.grid, w.terrain_ext,
                            w.params.radar_siting_radius_km)
    w.start(W_START - dt.timedelta(hours=1))
    truth, forcing, fcst = [], [], {1: [], 12: []}
    for _ in range(24 * N_DAYS):
        w.step()
        if w.time.hour % 2 == 0:
            continue
        truth.append(w.truth()[w.dom.inner])
        regime = regime_at(w.seed, w.time - dt.timedelta(minutes=30), w.params)
        forcing.append(w.orographic_forcing(regime, w.grad_truth)[w.dom.inner])
        if w.time.hour in (1, 13):
            for lead in fcst:
                f = w.forecast(w.time - dt.timedelta(hours=lead), lead)
                fcst[lead].append((f, truth[-1], forcing[-1]))
    return w, np.array(truth), np.array(forcing), fcst


def _pairs(fcst, lead):
    return tuple(np.array([p[k] for p in fcst[lead]]) for k in range(3))


def test_wet_area_is_plausible_and_varies_between_days(weather):
    _, truth, _, _ = weather
    daily = (truth >= 0.1).reshape(N_DAYS, 12, -1).mean(axis=(1, 2))
    assert 0.01 < daily.mean() < 0.25
    assert daily.min() < 0.05 and daily.max() - daily.min() > 0.05  # dry and wet days
    assert daily.max() < 0.4


def test_hourly_amounts_are_heavy_tailed(weather):
    _, truth, _, _ = weather
    wet = truth[truth >= 0.1]
    median, p99 = np.percentile(wet, [50, 99])
    assert 0.3 < median < 2.0
    assert p99 > 5.0 * median
    assert (wet < 2.0).mean() > 0.6  # most wet points are light
    assert 20.0 < wet.max() < 150.0


def test_truth_has_a_rain_like_spectral_slope(weather):
    _, truth, _, _ = weather
    slopes = [_slope(t) for t in truth if (t >= 0.1).mean() > 0.03]
    assert len(slopes) > 40
    assert -3.4 < np.mean(slopes) < -2.4


def test_windward_slopes_get_more_rain_than_the_lee(weather):
    _, truth, forcing, _ = weather
    ratio = truth[forcing > 0.5].mean() / truth[forcing < -0.5].mean()
    assert 1.8 < ratio < 8.0


def test_forecast_orographic_signal_is_weaker_than_the_truths(weather):
    _, _, _, fcst = weather
    f, t, s = _pairs(fcst, 1)
    ratio_truth = t[s > 0.5].mean() / t[s < -0.5].mean()
    ratio_fcst = f[s > 0.5].mean() / f[s < -0.5].mean()
    assert ratio_fcst < 0.7 * ratio_truth


def test_forecast_error_grows_with_lead(weather):
    _, _, _, fcst = weather
    corr = {}
    for lead in fcst:
        f, t, _ = _pairs(fcst, lead)
        corr[lead] = np.corrcoef(f.ravel(), t.ravel())[0, 1]
    assert corr[1] > 0.45
    assert corr[1] > corr[12] + 0.2
    assert corr[12] > 0.05  # still some skill


def test_forecast_has_too_much_light_and_too_little_heavy_rain(weather):
    _, _, _, fcst = weather
    f, t, _ = _pairs(fcst, 1)
    assert (f >= 0.1).mean() > 1.15 * (t >= 0.1).mean()
    assert (f >= 5.0).mean() < 0.8 * (t >= 5.0).mean()
    assert np.percentile(f, 99.9) < np.percentile(t, 99.9)


def test_forecasts_from_different_inits_differ_at_the_same_valid_time(weather):
    _, _, _, fcst = weather
    for (f1, _, _), (f12, _, _) in zip(fcst[1][:4], fcst[12][:4]):
        assert not np.array_equal(f1, f12)


def test_radar_quality_falls_with_range_and_behind_mountains(weather):
    w, _, _, _ = weather
    rq = radar_quality(w.mrms, w.dom.grid, w.terrain_ext, w.sites, w.params, diagnostics=True)
    q, dist, blocked = rq.quality, rq.nearest_km, rq.blockage
    assert 0.0 <= q.min() and q.max() <= 1.0
    near, far = (dist > 20) & (dist < 80), (dist > 150) & (dist < 220)
    assert q[near].mean() > q[far].mean() + 0.3
    ring = (dist > 40) & (dist < 120)
    assert q[ring & (blocked > 0.5)].mean() < 0.5 * q[ring & (blocked < 0.05)].mean()
    assert q[dist > 235].max() == 0.0
    # poor-quality regions exist inside the model domain
    lon, lat = w.mrms.lonlat()
    fj, fi = w.model.fractional_index(lon, lat)
    inside = (fj >= 0) & (fj <= w.model.ny - 1) & (fi >= 0) & (fi <= w.model.nx - 1)
    assert 0.05 < (q[inside] < 0.5).mean() < 0.7


def test_mrms_underestimates_and_is_noisier_where_quality_is_poor(weather):
    w, truth, _, _ = weather
    params = w.params
    exact = Observer(w.mrms, w.dom.grid, w.observer.quality, 0,
                      dataclasses.replace(params, qpe_underestimate=0.0, qpe_noise_sd=0.0,
                                          qpe_noise_sd_poor=0.0))
    w.start(W_START)
    w.step()
    ratios = {"good": [], "poor": []}
    for _ in range(6):
        w.step()
        t = w.truth()
        obs, ref = w.observer.observe(t, w.time), exact.observe(t, w.time)
        wet = ref > 0.5
        q = w.observer.quality
        for name, sel in (("good", wet & (q > 0.9)), ("poor", wet & (q < 0.3) & (q > 0))):
            ratios[name].append(obs[sel] / ref[sel])
    good, poor = np.concatenate(ratios["good"]), np.concatenate(ratios["poor"])
    assert np.median(good) == pytest.approx(1.0, abs=0.08)
    assert np.median(poor) < 0.8
    assert np.std(np.log(poor)) > 1.5 * np.std(np.log(good))


# ---- command line -----------------------------------------------------------------------------


def test_cli_writes_the_archive(tmp_path):
    out = tmp_path / "cli"
    status = subprocess.run(
        [sys.executable, "-m", "pqpf.synthetic", "--out", str(out), "--start", "2024060100",
         "--end", "2024060102", "--leads", "1,6", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert status.returncode == 0, status.stderr
    config = load_config(out / "config.ini")
    init = dt.datetime(2024, 6, 1, 0)
    for lead in (1, 6):
        field = read_graf(graf_archive_path(config, init, lead), lead, init)
        assert field.grid.same_as(graf_like_grid("demo"))
    for hour in range(3):
        assert mrms_raw_path(config, QPE, init + dt.timedelta(hours=hour)).is_file()
    assert not mrms_raw_path(config, QPE, init + dt.timedelta(hours=3)).exists()


@pytest.mark.parametrize("argv, words", [
    (["--start", "2024023000", "--end", "2024030100"], "2024023000"),
    (["--start", "2024030200", "--end", "2024030100"], "before start"),
    (["--start", "2024030100", "--end", "2024030100", "--leads", "0"], "leads must be"),
    (["--start", "2024030100", "--end", "2024030100", "--leads", "a,b"], "comma-separated"),
])
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as exc:
        status = main(["--out", str(tmp_path / "x"), *argv])
        raise SystemExit(status)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err
    assert not (tmp_path / "x").exists()
