"""The stage commands on a small synthetic archive: patches, inference, verification,
plots. One archive (8 days, demo grid, lead 3 h) and a one-epoch model are shared by
the tests of this module."""

import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pqpf.config import load_config
from pqpf.dates import from_epoch_seconds
from pqpf.features import build_features
from pqpf.io.checkpoint import load_checkpoint
from pqpf.io.grib import read_graf
from pqpf.io.netcdf import read_grid_netcdf
from pqpf.io.patchfile import load_patch_file
from pqpf.io.terrain_file import read_terrain
from pqpf.layout import graf_archive_path, mrms_remapped_path, patch_file_path, probs_path

pytestmark = pytest.mark.slow  # one shared archive and model: ~45 s for the module

ROOT = Path(__file__).resolve().parent.parent
START = dt.datetime(2025, 7, 1, 0)
END = dt.datetime(2025, 7, 8, 23)
INIT = dt.datetime(2025, 7, 7, 0)
LEAD = 3


def run(script, *args, check=True):
    res = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True,
                         text=True, timeout=900, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    from pqpf.cli import save_remapped_mrms, terrain_height
    from pqpf.synthetic import generate_archive

    root = tmp_path_factory.mktemp("stages")
    config = generate_archive(root, START, END, (LEAD,), grid_name="demo", seed=3)
    text = config.source.read_text()  # train on all six days before INIT
    config.source.write_text(text.replace(f"ndays_train = {config.patches.ndays_train}", "ndays_train = 6"))
    config = load_config(config.source)
    cfg = ["--config", str(config.source), "-q"]
    assert terrain_height.main(cfg) == 0
    assert save_remapped_mrms.main([START.strftime("%Y%m%d%H"), END.strftime("%Y%m%d%H"), *cfg]) == 0
    return config


@pytest.fixture(scope="module")
def trained(archive):
    cfg = archive.source
    run("save_patched_graf_mrms.py", INIT.strftime("%Y%m%d%H"), LEAD, "--config", cfg, "-q")
    run("train_resunet.py", INIT.strftime("%Y%m%d%H"), LEAD, "--config", cfg, "--hparams-name", "tiny",
        "--max-epochs", "1", "--device", "cpu", "-q")
    return archive


def test_patches_are_cut_from_the_stage_inputs_and_splits_do_not_overlap(trained):
    config = trained
    data = {s: load_patch_file(patch_file_path(config, s, INIT, LEAD)) for s in ("train", "validation", "test")}
    inits = {s: set(d.get("inits_used", [])) for s, d in data.items()}
    for s, d in data.items():  # the trailer lists exactly the inits whose patches are in the file
        assert inits[s] == {f"{from_epoch_seconds(int(t)):%Y%m%d%H}" for t in d["init_time"]} or d["n_patches"] == 0
    assert not (inits["train"] & inits["validation"]) and not (inits["train"] & inits["test"])
    assert not (inits["validation"] & inits["test"])
    train = data["train"]
    assert train["n_patches"] > 50 and train["features"].dtype == np.float32
    assert train["features"].shape[1:] == (5, 64, 64) and train["ref_prob"].shape[1:] == (6, 64, 64)
    assert (train["weights"] >= 1.0).all()  # 1/pi with pi <= 1
    assert (train["valid_time"] - train["init_time"] == 3600 * LEAD).all()
    assert (train["valid_time"] < int((INIT - dt.datetime(1970, 1, 1)).total_seconds())).all()
    # one patch recomputed from the files it came from
    k = int(np.argmax(train["weights"] < np.median(train["weights"])))
    init = from_epoch_seconds(int(train["init_time"][k]))
    j, i = (int(v) for v in train["origins"][k])
    graf = read_graf(graf_archive_path(config, init, LEAD), LEAD, init=init)
    terrain = read_terrain(config.paths.terrain_file)
    full = build_features(np.nan_to_num(graf.values), terrain, graf.valid_time)
    assert np.array_equal(train["features"][k], full[:, j:j + 64, i:i + 64])
    mrms = read_grid_netcdf(mrms_remapped_path(config, graf.valid_time), ["precipitation", "quality"])
    assert np.array_equal(train["mrms"][k], mrms.data["precipitation"][j:j + 64, i:i + 64], equal_nan=True)
    assert np.array_equal(train["quality"][k], mrms.data["quality"][j:j + 64, i:i + 64])
    assert 0.0 <= train["ref_prob"].min() and train["ref_prob"].max() <= 1.0


def test_patch_extraction_counts_missing_inputs_and_skips_finished_outputs(trained, tmp_path):
    config = trained
    res = run("save_patched_graf_mrms.py", INIT.strftime("%Y%m%d%H"), LEAD, "--config", config.source)
    assert "exists; use --overwrite" in res.stderr
    # ... but not when the configuration now asks for other patches: one line, files untouched
    train = patch_file_path(config, "train", INIT, LEAD)
    before = train.stat().st_mtime_ns
    changed = config.source.parent / "config_changed.ini"
    text = config.source.read_text()
    n = config.patches.patches_per_init
    assert f"patches_per_init = {n}\n" in text
    changed.write_text(text.replace(f"patches_per_init = {n}\n", f"patches_per_init = {n + 5}\n")
                       .replace("dry_share = ", "dry_share = 0.5\n# was: "))
    try:
        res = run("save_patched_graf_mrms.py", INIT.strftime("%Y%m%d%H"), LEAD, "--config", changed, check=False)
    finally:
        changed.unlink()
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert (f"{train} was made with other settings: [patches] patches_per_init {n} (asked {n + 5}), "
            f"[patches] dry_share {config.patches.dry_share:g} (asked 0.5); --overwrite cuts the three split files "
            "again") in res.stderr
    assert train.stat().st_mtime_ns == before
    # the same settings written otherwise (the cycles in another order) are the same patches
    cycles = ", ".join(str(c) for c in config.patches.cycles)
    assert len(config.patches.cycles) > 1 and f"cycles = {cycles}\n" in text
    changed.write_text(text.replace(f"cycles = {cycles}\n",
                                    f"cycles = {', '.join(str(c) for c in reversed(config.patches.cycles))}\n"))
    try:
        res = run("save_patched_graf_mrms.py", INIT.strftime("%Y%m%d%H"), LEAD, "--config", changed)
    finally:
        changed.unlink()
    assert "exists; use --overwrite" in res.stderr and train.stat().st_mtime_ns == before
    # a copy of the archive with one GRAF file and one MRMS hour missing
    copy = tmp_path / "copy"
    shutil.copytree(config.source.parent, copy, ignore=shutil.ignore_patterns("mrms_raw", "trainings", "patches"))
    cfg2 = load_config(copy / "config.ini")
    graf_archive_path(cfg2, dt.datetime(2025, 7, 3, 0), LEAD).unlink()
    mrms_remapped_path(cfg2, dt.datetime(2025, 7, 4, 12 + LEAD)).unlink()
    res = run("save_patched_graf_mrms.py", INIT.strftime("%Y%m%d%H"), LEAD, "--config", cfg2.source)
    line = [x for x in res.stderr.splitlines() if "inits used" in x][0]
    assert "1 mrms" in line and "graf" in line
    skipped = json.dumps([load_patch_file(patch_file_path(cfg2, s, INIT, LEAD)).get("inits_used", [])
                          for s in ("train", "validation", "test")])
    assert "2025070300" not in skipped and "2025070412" not in skipped


def test_inference_writes_cf_probabilities_and_reruns_skip(trained):
    config = trained
    init = dt.datetime(2025, 7, 7, 12)
    res = run("resunet_inference.py", init.strftime("%Y%m%d%H"), LEAD, "--config", config.source)
    nc, png = res.stdout.split()
    assert Path(nc) == probs_path(config, init, LEAD) and Path(png).stat().st_size > 50_000
    ds = read_grid_netcdf(nc)
    assert ds.grid.same_as(read_terrain(config.paths.terrain_file).grid)
    assert ds.data["prob_exceed"].shape == (13, 200, 250)
    assert ds.time == init + dt.timedelta(hours=LEAD)
    import xarray as xr

    x = xr.open_dataset(nc)
    assert x["prob_exceed"].attrs["grid_mapping"] == "lambert_conformal_conic"
    assert "lat" in x.coords and "lon" in x.coords
    # the shipped sets are batch norm: the default windows are 256 px, overlapping by half a patch
    patch = load_checkpoint(config.paths.trainings_dir / f"resunet_{INIT:%Y%m%d%H}_{LEAD}h" / "best.pt").model.patch_px
    assert (x.attrs["window_px"], x.attrs["stride_px"]) == (256, 256 - patch // 2)
    mtime = Path(nc).stat().st_mtime_ns
    res = run("resunet_inference.py", init.strftime("%Y%m%d%H"), LEAD, "--config", config.source)
    assert Path(nc).stat().st_mtime_ns == mtime


def test_inference_errors_are_one_line(trained, tmp_path):
    config = trained
    res = run("resunet_inference.py", "2026010100", LEAD, "--config", config.source, check=False)
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "GRAF forecast not found" in res.stderr and "20260101T000000Z" in res.stderr
    res = run("resunet_inference.py", "2025070712", 99, "--config", config.source, check=False)
    assert res.returncode == 2 and "outside the configured range" in res.stderr
    # a lead without a model falls back to the nearest registered lead, with a warning
    empty = tmp_path / "empty"
    shutil.copytree(config.source.parent, empty,
                    ignore=shutil.ignore_patterns("mrms_raw", "trainings", "patches", "probs"))
    res = run("resunet_inference.py", "2025070712", LEAD, "--config", empty / "config.ini", check=False)
    assert res.returncode == 1 and "no trained model" in res.stderr and res.stderr.count("\n") == 1
    # a registered checkpoint that has gone, and a missing terrain file: one line each
    broken = tmp_path / "broken"
    shutil.copytree(config.source.parent, broken, ignore=shutil.ignore_patterns("mrms_raw", "patches", "probs"))
    cfg3 = load_config(broken / "config.ini")
    best = next(cfg3.paths.trainings_dir.glob("resunet_*/best.pt"))
    best.unlink()
    res = run("resunet_inference.py", "2025070712", LEAD, "--config", cfg3.source, check=False)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and f"{best}: checkpoint not found" in res.stderr
    cfg3.paths.terrain_file.unlink()
    res = run("resunet_inference.py", "2025070712", LEAD, "--config", cfg3.source, check=False)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and str(cfg3.paths.terrain_file) in res.stderr


@pytest.fixture(scope="module")
def verified(trained):
    """Probabilities for three held-out inits and their verification (the CLI's output)."""
    for init in (dt.datetime(2025, 7, 7, 0), dt.datetime(2025, 7, 7, 12), dt.datetime(2025, 7, 8, 0)):
        run("resunet_inference.py", init.strftime("%Y%m%d%H"), LEAD, "--config", trained.source, "--no-plot", "-q")
    res = run("verify_resunet.py", "2025070700", "2025070812", LEAD, "--config", trained.source)
    return trained, res


def test_verification_prints_skills_with_intervals_fss_and_the_decomposition(verified):
    config, res = verified
    assert "3 inits verified" in res.stdout and "BSS vs ref" in res.stdout
    assert "BSS vs ref [5%, 95%]" in res.stdout and "block-bootstrap intervals over 2 init dates" in res.stdout
    assert "Fractions skill score" in res.stdout and "useful from" in res.stdout
    assert "BS = REL - RES + UNC + WBV - 2 WBC" in res.stdout
    out_dir = config.paths.plots_dir / "verification_2025070700_2025070812_3h"
    scores = json.loads((out_dir / "scores.json").read_text())
    assert scores["weights"].startswith("true cell area")
    for row in scores["per_threshold"]:  # the exact decomposition adds up to the Brier score
        c = row["reliability_curve_model"]
        if row["bs_model"] is not None and row["base_rate"]:
            parts = (c["reliability"] - c["resolution"] + c["uncertainty"] + c["within_bin_variance"]
                     - 2 * c["within_bin_covariance"])
            assert parts == pytest.approx(row["bs_model"], rel=1e-9, abs=1e-12)
    iv = scores["intervals"]["bss_vs_ref@1mm"]
    assert iv["n_days"] == 2 and iv["low"] <= iv["estimate"] <= iv["high"]
    assert iv["estimate"] == pytest.approx(scores["per_threshold"][1]["bss_vs_ref"], rel=1e-9)
    curve = scores["per_threshold"][0]["reliability_curve_model"]  # each bin's observed frequency
    t0 = scores["per_threshold"][0]["threshold_mm"]
    shown = 0
    for b, (freq, count) in enumerate(zip(curve["observed_frequency"], curve["count"], strict=True)):
        if freq is not None:
            assert scores["intervals"][f"observed_frequency@{t0:g}mm@b{b}"]["estimate"] == pytest.approx(freq)
            shown += count >= 1000
    assert shown and "Reliability of the model (bins with >= 1000 points" in res.stdout
    fss = scores["fss"]
    assert set(fss["sources"]) == {"model", "reference", "graf"} and fss["widths_px"][:3] == [1, 3, 5]
    for entry in fss["sources"].values():
        for row in entry["per_threshold"]:
            values = [v for v in row["fss"] if v is not None]
            assert all(0.0 <= v <= 1.0 for v in values)
    rows = list(csv.DictReader(open(out_dir / "scores.csv")))
    assert {"bss_vs_ref_lo", "bss_vs_ref_hi"} <= set(rows[0])
    assert len(list(csv.DictReader(open(out_dir / "fss_scores.csv")))) == 3 * 3 * 21


def test_verification_reuses_up_to_date_scores_and_recomputes_when_inputs_change(verified):
    config, first = verified
    scores = config.paths.plots_dir / "verification_2025070700_2025070812_3h" / "scores.json"
    stamp = scores.stat().st_mtime_ns
    again = run("verify_resunet.py", "2025070700", "2025070812", LEAD, "--config", config.source)
    assert scores.stat().st_mtime_ns == stamp and again.stdout.splitlines()[1:8] == first.stdout.splitlines()[1:8]
    run("resunet_inference.py", "2025070812", LEAD, "--config", config.source, "--no-plot", "-q")
    res = run("verify_resunet.py", "2025070700", "2025070812", LEAD, "--config", config.source)
    assert "4 inits verified" in res.stdout and scores.stat().st_mtime_ns != stamp  # a new file: recomputed
    # an MRMS hour rewritten since (reprocessed data) makes the stored scores stale too
    stamp = scores.stat().st_mtime_ns
    mrms = mrms_remapped_path(config, dt.datetime(2025, 7, 7, LEAD))
    os.utime(mrms, ns=(mrms.stat().st_atime_ns, mrms.stat().st_mtime_ns + 10**9))
    res = run("verify_resunet.py", "2025070700", "2025070812", LEAD, "--config", config.source)
    assert "4 inits verified" in res.stdout and scores.stat().st_mtime_ns != stamp
    assert json.loads(scores.read_text())["inputs_digest"]


def test_verification_usage_and_input_errors_are_one_line(trained):
    res = run("verify_resunet.py", "2025070812", "2025070700", LEAD, "--config", trained.source, check=False)
    assert res.returncode == 2 and "before BEGIN" in res.stderr
    res = run("verify_resunet.py", "2025080100", "2025080212", LEAD, "--config", trained.source, check=False)
    assert res.returncode == 1 and "no probabilities files" in res.stderr and res.stderr.count("\n") == 1


def test_plot_scripts_draw_the_data_and_the_patches(trained):
    res = run("plot_graf_mrms.py", "2025070700", LEAD, "--config", trained.source)
    assert Path(res.stdout.strip()).stat().st_size > 50_000
    res = run("plot_graf_mrms_samples.py", INIT.strftime("%Y%m%d%H"), LEAD, "--config", trained.source, "--n", "4")
    assert Path(res.stdout.strip()).stat().st_size > 20_000


def test_inference_writes_grib2_probabilities_beside_the_netcdf(verified):
    """[output] formats includes grib2 by default: one template-4.9 message per threshold on
    the GRAF grid, values equal to the netCDF's within the 0.1 % packing."""
    from pqpf.io.probs_grib import read_probability_grib2
    from pqpf.layout import probs_grib_path

    config, _ = verified
    init = dt.datetime(2025, 7, 7, 0)
    back = read_probability_grib2(probs_grib_path(config, init, LEAD))
    nc = read_grid_netcdf(probs_path(config, init, LEAD))
    assert back.grid.same_as(nc.grid) and back.lead_h == LEAD and back.init == init
    np.testing.assert_allclose(back.thresholds_mm, nc.coords["threshold"], rtol=1e-6)
    np.testing.assert_allclose(back.prob, nc.data["prob_exceed"], atol=6e-4)


def test_verification_counts_a_corrupt_file_finishes_the_rest_and_fails(trained, tmp_path):
    config = trained
    copy = tmp_path / "copy"
    shutil.copytree(config.source.parent, copy, ignore=shutil.ignore_patterns("mrms_raw", "patches", "plots"))
    cfg2 = load_config(copy / "config.ini")
    for init in (dt.datetime(2025, 7, 7, 0), dt.datetime(2025, 7, 7, 12)):
        run("resunet_inference.py", init.strftime("%Y%m%d%H"), LEAD, "--config", cfg2.source, "--no-plot", "-q")
    probs_path(cfg2, dt.datetime(2025, 7, 7, 12), LEAD).write_bytes(b"not netcdf")
    res = run("verify_resunet.py", "2025070700", "2025070712", LEAD, "--config", cfg2.source, check=False)
    assert res.returncode == 1
    assert "1 inits verified" in res.stdout and "1 failed" in res.stdout and "2025070712" in res.stderr
    scores = json.loads((cfg2.paths.plots_dir / "verification_2025070700_2025070712_3h" / "scores.json").read_text())
    assert scores["inits_used"] == ["2025070700"] and scores["inits_failed"][0]["init"] == "2025070712"
    assert list(scores["checkpoints"].values()) == [1]

    # a file from a model with other bins (same thresholds, another interior edge): its
    # CRPS would be computed on the wrong edges, so it is refused and counted, not mixed in
    import netCDF4

    run("resunet_inference.py", "2025070712", LEAD, "--config", cfg2.source, "--no-plot", "-q", "--overwrite")
    with netCDF4.Dataset(probs_path(cfg2, dt.datetime(2025, 7, 7, 12), LEAD), "a") as nc:
        edges = nc["threshold"][:]
        edges[0] = 0.2  # 0.1 -> 0.2 mm
        nc["threshold"][:] = edges
    res = run("verify_resunet.py", "2025070700", "2025070712", LEAD, "--config", cfg2.source, check=False)
    assert res.returncode == 1 and "1 inits verified" in res.stdout
    assert "bin edges" in res.stderr and "2025070712_3h_probs.nc" in res.stderr


def test_inference_refuses_a_terrain_file_smoothed_differently_from_training(trained, tmp_path):
    config = trained
    copy = tmp_path / "copy"
    shutil.copytree(config.source.parent, copy, ignore=shutil.ignore_patterns("mrms_raw", "patches", "plots", "probs"))
    text = (copy / "config.ini").read_text()
    (copy / "config.ini").write_text(text.replace("smoothing_sigma_px = 8.0", "smoothing_sigma_px = 4.0"))
    run("terrain_height.py", "--config", copy / "config.ini", "--overwrite", "-q")
    res = run("resunet_inference.py", "2025070712", LEAD, "--config", copy / "config.ini", check=False)
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "smoothed with sigma 4 px" in res.stderr and "trained with 8 px" in res.stderr


def test_inference_writes_missing_probabilities_where_graf_is_missing(trained, tmp_path, monkeypatch):
    """Missing GRAF points are not 0 mm: every probability there is missing (NaN, or the
    fill value -1 of the 0/1 raw field), and the points next to them are still forecast."""
    import pqpf.io.grib
    import pqpf.stages.inference
    from pqpf.stages.inference import run_inference

    copy = tmp_path / "copy"
    shutil.copytree(trained.source.parent, copy, ignore=shutil.ignore_patterns("mrms_raw", "patches", "plots", "probs"))
    cfg = load_config(copy / "config.ini")
    real_read = pqpf.io.grib.read_graf

    def read_with_a_hole(*args, **kwargs):
        graf = real_read(*args, **kwargs)
        graf.values[80:100, 120:150] = np.nan
        return graf

    monkeypatch.setattr(pqpf.stages.inference, "read_graf", read_with_a_hole)
    init = dt.datetime(2025, 7, 7, 12)
    result = run_inference(cfg, init, LEAD, device="cpu", plot=False)
    ds = read_grid_netcdf(result.nc_path)
    hole = np.zeros((200, 250), bool)
    hole[80:100, 120:150] = True
    for name in ("prob_exceed", "prob_exceed_smoothed"):
        p = ds.data[name]
        assert np.isnan(p[:, hole]).all(), name
        assert np.isfinite(p[:, ~hole]).all(), name
    raw = ds.data["prob_exceed_raw"]
    assert raw.dtype == np.int8 and (raw[:, hole] == -1).all()  # read unmasked: the fill value
    assert set(np.unique(raw[:, ~hole]).tolist()) <= {0, 1}
    assert np.isnan(ds.data["graf_precipitation"][hole]).all()
    assert np.isfinite(ds.data["graf_precipitation"][~hole]).all()


def _write_compact(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """The arrays as one zlib-compressed netCDF (each on dimensions of its own), so a stage's
    output can be compared with a known-good file by :func:`conftest.assert_matches_golden`."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        for name, values in arrays.items():
            values = np.asarray(values)
            dims = tuple(f"{name}_{k}" for k in range(values.ndim))
            for dim, size in zip(dims, values.shape):
                ds.createDimension(dim, size)
            kind = "f8" if values.dtype.kind == "i" else values.dtype.str.lstrip("<>|=")
            var = ds.createVariable(name, kind, dims, zlib=True, complevel=4,
                                    **({"significant_digits": 5} if values.dtype.kind == "f" else {}))
            var[...] = values.astype(np.float64) if values.dtype.kind == "i" else values
    return path


def test_patch_extraction_matches_the_known_good_file(trained, tmp_path):
    """Every patch's place, time and weight, and the first patches' arrays, as on the day the
    known-good file was made (PQPF_REGENERATE=<dir> rewrites it after a deliberate change)."""
    from conftest import assert_matches_golden

    arrays = {}
    for split in ("train", "validation", "test"):
        data = load_patch_file(patch_file_path(trained, split, INIT, LEAD))
        for key in ("origins", "init_time", "weights"):
            arrays[f"{split}_{key}"] = data[key]
        if split == "train":
            for key in ("features", "mrms", "quality", "ref_prob"):
                arrays[f"train_{key}_first4"] = data[key][:4].astype(np.float32)
    assert_matches_golden(_write_compact(tmp_path / "patches.nc", arrays), "stages_patches_2025070700_3h.nc")


def test_inference_matches_the_known_good_file(verified, tmp_path):
    """The probabilities of a seeded one-epoch model (threads pinned to 1, so training is
    deterministic on a given torch build) at the six thresholds, to 2e-4."""
    from conftest import assert_matches_golden

    from pqpf.io.probs_file import read_probabilities

    config, _ = verified
    forecast = read_probabilities(probs_path(config, dt.datetime(2025, 7, 7, 12), LEAD))
    picked = forecast.index([0.25, 1.0, 2.5, 5.0, 10.0, 25.0])
    out = _write_compact(tmp_path / "probs.nc", {"prob_exceed": forecast.prob[picked],
                                                 "prob_exceed_smoothed": forecast.prob_smoothed[picked]})
    assert_matches_golden(out, "stages_probs_2025070712_3h.nc", atol=2e-4, rtol=0)


def test_verification_matches_the_known_good_file(verified, tmp_path):
    """Brier scores, skills, decomposition, CRPS and FSS of the three inits the fixture made.
    Verified over its own range: another test adds a fourth init to the fixture's range."""
    from conftest import assert_matches_golden

    config, _ = verified
    res = run("verify_resunet.py", "2025070700", "2025070800", LEAD, "--config", config.source)
    assert "3 inits verified" in res.stdout
    scores = json.loads((config.paths.plots_dir / "verification_2025070700_2025070800_3h" / "scores.json").read_text())
    keys = ("bs_model", "bs_ref", "bs_raw", "base_rate", "bss_vs_ref", "reliability_model", "resolution_model")
    rows = scores["per_threshold"]
    arrays = {key: np.array([np.nan if r[key] is None else r[key] for r in rows], np.float64) for key in keys}
    arrays["crps"] = np.array([scores["crps"]["crps_model"], scores["crps"]["crps_raw_binned"]])
    for source, entry in scores["fss"]["sources"].items():
        arrays[f"fss_{source}"] = np.array([[np.nan if v is None else v for v in row["fss"]]
                                            for row in entry["per_threshold"]])
    assert_matches_golden(_write_compact(tmp_path / "scores.nc", arrays), "stages_scores_2025070700_2025070800_3h.nc",
                          atol=1e-4, rtol=1e-3)


def test_many_inits_in_one_process_load_the_model_once_and_count_a_missing_init(verified, tmp_path, monkeypatch,
                                                                                 capsys):
    """Issue 10 item 6: --until/--every; a missing GRAF init is counted, the rest run, exit 1."""
    trained, _ = verified
    import dataclasses

    from pqpf.cli import resunet_inference
    from pqpf.config import write_config
    from pqpf.stages import inference

    other = write_config(dataclasses.replace(
        trained, paths=dataclasses.replace(trained.paths, probs_dir=tmp_path / "probs")), tmp_path / "config.ini")
    config = load_config(other)
    assert config.paths.probs_dir == tmp_path / "probs"
    loads = []
    real = inference.load_model_for_lead
    monkeypatch.setattr(inference, "load_model_for_lead", lambda *a, **k: loads.append(1) or real(*a, **k))
    status = resunet_inference.main(["2025070700", str(LEAD), "--until", "2025070912", "--every", "12",
                                     "--config", str(other), "--no-plot", "-q"])
    out, err = capsys.readouterr()
    assert status == 1 and len(loads) == 1, err + out
    assert "4 written, 0 skipped (already there), 2 failed (2025070900: " in out and "2025070912: " in out
    for init in ("2025070700", "2025070712", "2025070800", "2025070812"):
        one = probs_path(config, dt.datetime.strptime(init, "%Y%m%d%H"), LEAD)
        assert one.is_file()
    same = probs_path(trained, dt.datetime(2025, 7, 7, 12), LEAD)  # one process = one call per init
    from pqpf.io.probs_file import read_probabilities

    np.testing.assert_array_equal(read_probabilities(one.with_name(same.name)).prob, read_probabilities(same).prob)
    assert resunet_inference.main(["2025070700", str(LEAD), "--every", "6", "--config", str(other), "-q"]) == 2
    # inits without GRAF before any model is loaded are theirs alone: counted, not the end of the range
    assert resunet_inference.main(["2025070900", str(LEAD), "--until", "2025070912", "--config", str(other),
                                   "--no-plot", "-q"]) == 1
    assert "0 written, 0 skipped (already there), 2 failed (2025070900: " in capsys.readouterr().out
    assert resunet_inference.main(["2025070700", str(LEAD), "--every", "6", "--config", str(tmp_path / "none.ini"),
                                   "-q"]) == 2  # the usage error comes before the configuration is read


def test_a_model_from_another_grid_is_refused_unless_allowed_with_a_warning_naming_both(trained, caplog):
    """Issue 10 item 7."""
    import dataclasses
    import logging

    from pqpf.device import select_device
    from pqpf.errors import InputFileError
    from pqpf.stages.inference import check_provenance, load_model_for_lead

    model = load_model_for_lead(trained, LEAD, select_device("cpu"))
    terrain = read_terrain(trained.paths.terrain_file)
    other = dataclasses.replace(terrain, grid=terrain.grid.subgrid(0, 100, 0, 120),
                                fields={k: v[:100, :120] for k, v in terrain.fields.items()})
    with pytest.raises(InputFileError) as err:
        check_provenance(model, other, trained.paths.terrain_file)
    message = str(err.value)
    assert other.grid.describe() in message and terrain.grid.describe() in message and "--allow-other-grid" in message
    with caplog.at_level(logging.WARNING):
        check_provenance(model, other, trained.paths.terrain_file, allow_other_grid=True)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert other.grid.describe() in warned and terrain.grid.describe() in warned


def test_inference_applies_a_calibration_by_the_setting_and_what_it_was_fitted_on(trained, tmp_path, caplog):
    """[inference] calibrate: "auto" (default) applies a cross-fitted map only, "true" any
    map, "false" none; the file records which, and the log says it once."""
    import dataclasses
    import logging

    from pqpf.io.checkpoint import save_checkpoint
    from pqpf.io.probs_file import read_probabilities
    from pqpf.stages.inference import run_inference

    trainings = tmp_path / "trainings"
    shutil.copytree(trained.paths.trainings_dir, trainings)
    init = dt.datetime(2025, 7, 7, 12)

    def forecast(setting, name):
        paths = dataclasses.replace(trained.paths, trainings_dir=trainings, probs_dir=tmp_path / name)
        config = dataclasses.replace(trained, paths=paths,
                                     inference=dataclasses.replace(trained.inference, calibrate=setting))
        run_inference(config, init, LEAD, device="cpu", plot=False)
        return read_probabilities(probs_path(config, init, LEAD))

    assert trained.inference.calibrate == "auto"  # what the archive's config leaves to the default
    ckpt_path = next(trainings.glob("resunet_*/best.pt"))
    checkpoint = load_checkpoint(ckpt_path)
    assert checkpoint.model.extra["calibration"]["fitted_on"] == "validation"
    raw = forecast("false", "off")
    with caplog.at_level(logging.INFO, logger="pqpf.stages.inference"):
        auto = forecast("auto", "auto")
    assert "isotonic calibration fitted on validation not applied ([inference] calibrate = auto)" in caplog.text
    forced = forecast("true", "on")
    assert (raw.attrs["calibrated"], auto.attrs["calibrated"], forced.attrs["calibrated"]) == (0, 0, 1)
    np.testing.assert_array_equal(auto.prob, raw.prob)
    assert np.nanmax(np.abs(forced.prob - raw.prob)) > 0.01
    # the same map, cross-fitted: "auto" applies it
    extra = {**checkpoint.model.extra,
             "calibration": {**checkpoint.model.extra["calibration"], "fitted_on": "validation + out-of-fold"}}
    save_checkpoint(ckpt_path, dataclasses.replace(checkpoint, model=dataclasses.replace(checkpoint.model,
                                                                                          extra=extra)))
    crossfit = forecast("auto", "auto_crossfit")
    assert crossfit.attrs["calibrated"] == 1
    np.testing.assert_array_equal(crossfit.prob, forced.prob)


def _copy_for_calibration(verified, tmp_path, inits=("2025070700", "2025070712", "2025070800")):
    """A config in tmp_path (every path absolute) whose trainings, probabilities and plots
    are copies or folders in tmp_path; the archive's other inputs are the fixture's."""
    import dataclasses
    import re

    config, _ = verified
    shutil.copytree(config.paths.trainings_dir, tmp_path / "trainings")
    (tmp_path / "probs").mkdir()
    for init in inits:
        src = probs_path(config, dt.datetime.strptime(init, "%Y%m%d%H"), LEAD)
        shutil.copy2(src, tmp_path / "probs" / src.name)
    mine = {"trainings_dir": tmp_path / "trainings", "probs_dir": tmp_path / "probs", "plots_dir": tmp_path / "plots"}
    text = config.source.read_text()
    for f in dataclasses.fields(config.paths):
        value = mine.get(f.name, getattr(config.paths, f.name))
        if isinstance(value, Path):
            text = re.sub(rf"^{f.name} = .*$", f"{f.name} = {value}", text, flags=re.M)
    source = tmp_path / "config.ini"
    source.write_text(text)
    return load_config(source)


def test_calibration_refit_on_forecasts_pools_the_points_of_verification_and_inference_applies_it(verified,
                                                                                                   tmp_path):
    """calibrate_resunet.py: the sums it fits are verification's (weights and events per
    threshold, from verify_range itself); the map replaces the training's, which is kept;
    [inference] calibrate = auto applies it and the file says which map."""
    import dataclasses

    from pqpf.calibration import MIN_BLOCK_SHARE, Calibration
    from pqpf.io.probs_file import read_probabilities
    from pqpf.stages.calibrate import STEP_SHARE_OF_FORECASTS_FROM, forecast_sums
    from pqpf.stages.inference import run_inference
    from pqpf.stages.verify import verify_range

    config = _copy_for_calibration(verified, tmp_path)
    ckpt_path = next((tmp_path / "trainings").glob("resunet_*/best.pt"))
    checkpoint = load_checkpoint(ckpt_path)
    inits = [dt.datetime.strptime(i, "%Y%m%d%H") for i in ("2025070700", "2025070712", "2025070800")]
    fit, used, skipped = forecast_sums(config, inits, LEAD, ckpt_path, checkpoint.model, checkpoint.weights_digest())
    assert (used, skipped) == (["2025070700", "2025070712", "2025070800"], [])
    scores = verify_range(config, inits[0], inits[-1], LEAD, plot=False).result
    for row in scores["per_threshold"]:  # 0.25 ... 25 mm: the same points, weights and events
        w, _, wo = fit.sums[fit.thresholds_mm.index(row["threshold_mm"])]
        assert w.sum() == pytest.approx(row["weight"], rel=1e-9)
        assert wo.sum() / w.sum() == pytest.approx(row["base_rate"], rel=1e-9)

    # tools/synthetic_run_errors.py: each run's displacement from the archive's streams (seed 3),
    # on the same points; with --high 0 every good point with a forecast counts
    from pqpf.stages.common import ScoringWeights, read_probabilities_and_mrms
    from pqpf.synthetic.weather import run_errors

    res = run("tools/synthetic_run_errors.py", "2025070700", "2025070812", LEAD, "--config", config.source,
              "--seed", "3", "--high", "0")
    lines = res.stdout.splitlines()
    for init, line in zip(inits, lines):
        probs, mrms = read_probabilities_and_mrms(config, init, LEAD)
        _, good = ScoringWeights(config.mrms.min_quality)(probs.grid, mrms.precipitation_mm, mrms.quality)
        n = int((good & np.isfinite(probs.prob[probs.index([0.25])[0]])).sum())
        assert line.startswith(f"{init:%Y%m%d%H}  D {run_errors(3, init, LEAD).displacement_km:6.1f} km")
        assert f"0.25 mm: {n:6d} pts" in line
    mean_d = np.mean([run_errors(3, t, LEAD).displacement_km for t in inits])
    assert lines[3].startswith(f"3 inits: mean D {mean_d:.1f}")
    assert sum(int(line.split("(")[1].split()[0]) for line in lines[4:7]) == 3

    before = ckpt_path.read_bytes()
    res = run("calibrate_resunet.py", "2025070700", "2025070812", LEAD, "--config", config.source, "--dry-run")
    assert "+3 h, 3 inits on 2 dates" in res.stdout and "dry run" in res.stdout
    assert "    1 mm reliability (worst " in res.stdout and "    1 mm map: 0.1->" in res.stdout
    assert "rests on 2 init dates" in res.stderr  # fewer than a season: said, not refused
    assert ckpt_path.read_bytes() == before
    res = run("calibrate_resunet.py", "2025070700", "2025070812", LEAD, "--config", config.source, "-q")
    assert "(replacing the map fitted on validation)" in res.stdout
    extra = load_checkpoint(ckpt_path).model.extra
    stored = extra["calibration"]
    assert (stored["fitted_on"], stored["period"], stored["n_inits"], stored["n_dates"]) == (
        "forecasts", "2025070700..2025070800", 3, 2)
    assert extra["calibration_at_training"] == checkpoint.model.extra["calibration"]  # nothing of training lost
    expected = fit.fit(MIN_BLOCK_SHARE, STEP_SHARE_OF_FORECASTS_FROM).to_dict()
    assert stored["knots_x"] == expected["knots_x"] and stored["knots_y"] == expected["knots_y"]
    assert stored["knots_y"] != extra["calibration_at_training"]["knots_y"]
    assert load_checkpoint(ckpt_path).weights_digest() == checkpoint.weights_digest()

    init = dt.datetime(2025, 7, 7, 12)
    made = {}
    for setting in ("false", "auto"):
        paths = dataclasses.replace(config.paths, probs_dir=tmp_path / f"probs_{setting}")
        cfg = dataclasses.replace(config, paths=paths,
                                  inference=dataclasses.replace(config.inference, calibrate=setting))
        run_inference(cfg, init, LEAD, device="cpu", plot=False)
        made[setting] = read_probabilities(probs_path(cfg, init, LEAD))
    assert (made["false"].attrs["calibrated"], made["auto"].attrs["calibrated"]) == (0, 1)
    assert (made["false"].attrs["calibration_fitted_on"], made["auto"].attrs["calibration_fitted_on"]) == (
        "", "forecasts")
    assert (made["false"].attrs["calibration_sha256"], made["auto"].attrs["calibration_sha256"]) == (
        "", Calibration.from_dict(stored).digest())
    edges = checkpoint.model.bin_edges_mm
    mapped = Calibration.from_dict(stored).apply(made["false"].prob, edges[1:])
    diff = np.abs(made["auto"].prob - mapped)[np.isfinite(mapped)]
    assert np.quantile(diff, 0.999) < 2e-3  # the raw file holds 4 significant digits
    assert np.abs(made["auto"].prob - made["false"].prob)[np.isfinite(mapped)].max() > 0.02

    # A second fit replaces the first; the training's map stays where it was put.
    res = run("calibrate_resunet.py", "2025070700", "2025070712", LEAD, "--config", config.source, "-q")
    assert "(replacing the map fitted on forecasts)" in res.stdout
    extra = load_checkpoint(ckpt_path).model.extra
    assert extra["calibration"]["n_inits"] == 2 and extra["calibration_at_training"]["fitted_on"] == "validation"


def test_calibration_refit_refuses_in_sample_calibrated_foreign_or_changed_inputs_in_one_line(verified, tmp_path,
                                                                                                monkeypatch):
    import dataclasses

    import pqpf.stages.calibrate as stage
    from pqpf.errors import PqpfError
    from pqpf.io.probs_file import read_probabilities, write_probabilities
    from pqpf.stages.inference import run_inference

    config = _copy_for_calibration(verified, tmp_path)
    ckpt_path = next((tmp_path / "trainings").glob("resunet_*/best.pt"))
    before = ckpt_path.read_bytes()

    def refused(begin, end, *needles):
        res = run("calibrate_resunet.py", begin, end, LEAD, "--config", config.source, check=False)
        assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
        for needle in needles:
            assert needle in res.stderr, res.stderr
        assert ckpt_path.read_bytes() == before

    # forecasts inside the training window (the six days before INIT) are in-sample, at any hour
    run_inference(config, dt.datetime(2025, 7, 6, 0), LEAD, device="cpu", plot=False)
    refused("2025070600", "2025070812", "1 of the 4 inits (2025070600..2025070600) lie in the training window",
            "(2025070100..2025070620; INIT 2025070700, the training's [patches] ndays_train = 6)")
    off_cycle = probs_path(config, dt.datetime(2025, 7, 5, 3), LEAD)
    shutil.copy2(probs_path(config, dt.datetime(2025, 7, 7, 0), LEAD), off_cycle)
    refused("2025070503", "2025070800", "2 of the 5 inits (2025070503..2025070600) lie in the training window")
    off_cycle.unlink()
    # the window is the one the checkpoint recorded, whatever the configuration says now
    shorter = dataclasses.replace(config, patches=dataclasses.replace(config.patches, ndays_train=1))
    with pytest.raises(PqpfError, match="the training's \\[patches\\] ndays_train = 6"):
        stage.calibrate_from_forecasts(shorter, dt.datetime(2025, 7, 6, 0), dt.datetime(2025, 7, 8, 12), LEAD)
    probs_path(config, dt.datetime(2025, 7, 6, 0), LEAD).unlink()

    # a checkpoint retrained while the map was fitted is not overwritten with stale weights
    real_load = stage.load_checkpoint
    calls = []

    def load_then_retrained(path, *args, **kwargs):
        checkpoint = real_load(path, *args, **kwargs)
        calls.append(path)
        if len(calls) == 1:
            return checkpoint
        net = {k: v + 1 if v.is_floating_point() else v for k, v in checkpoint.net.items()}
        return dataclasses.replace(checkpoint, net=net, ema=None)

    monkeypatch.setattr(stage, "load_checkpoint", load_then_retrained)
    with pytest.raises(PqpfError, match="changed while the map was fitted"):
        stage.calibrate_from_forecasts(config, dt.datetime(2025, 7, 7, 0), dt.datetime(2025, 7, 8, 12), LEAD)
    monkeypatch.undo()
    assert ckpt_path.read_bytes() == before

    # a file calibrated already, and one made by another network
    run("resunet_inference.py", "2025070700", LEAD, "--config", config.source, "--calibrate", "true", "--overwrite",
        "--no-plot", "-q")  # the training's map, forced
    assert read_probabilities(probs_path(config, dt.datetime(2025, 7, 7, 0), LEAD)).attrs["calibrated"] == 1
    refused("2025070700", "2025070812", f"{probs_path(config, dt.datetime(2025, 7, 7, 0), LEAD)}:",
            "calibrated already", "--calibrate false --overwrite")
    other = probs_path(config, dt.datetime(2025, 7, 7, 12), LEAD)
    forecast = read_probabilities(other)
    digest = forecast.attrs["checkpoint_weights_sha256"]
    assert digest == load_checkpoint(ckpt_path).weights_digest()
    write_probabilities(other, dataclasses.replace(forecast, attrs={**forecast.attrs,
                                                                    "checkpoint_weights_sha256": "0" * 64}))
    refused("2025070712", "2025070812", f"{other}:", "made by another network (weights 000000000000)",
            f"(weights {digest[:12]})")
    # a file written before the digest was recorded: the training's INIT, lead and hparams
    older = {k: v for k, v in forecast.attrs.items() if k != "checkpoint_weights_sha256"}
    write_probabilities(other, dataclasses.replace(forecast, attrs={**older, "checkpoint_init": "2024010100"}))
    refused("2025070712", "2025070812", f"{other}:", "made by the model of INIT 2024010100")
