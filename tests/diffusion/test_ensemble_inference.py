"""ensemble_inference.py end to end on a small synthetic archive in the real formats: the store
verify_ensemble.py reads, members deterministic by seed, ECC keeps the U-Net's quantiles."""

import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trainkit

from pqpf.config import load_config
from pqpf.diffusion.ecc import DEFAULT_ECC_LEVEL_SMOOTHING_PX
from pqpf.errors import PqpfError
from pqpf.io.ensemble_file import read_ensemble
from pqpf.io.probs_file import read_probabilities
from pqpf.io.registry import Registry
from pqpf.layout import (
    ensemble_gif_path,
    ensemble_path,
    ensemble_stamps_png_path,
    ensemble_verification_dir,
    probs_path,
    registry_path,
)
from pqpf.ordinal import bin_probs_from_exceedance, quantiles, stratum_means
from pqpf.stages.ensemble_inference import run_ensemble_inference

pytestmark = pytest.mark.slow  # one shared archive and two small models: ~1 min for the module

ROOT = Path(__file__).resolve().parent.parent.parent
START = dt.datetime(2025, 7, 1, 0)
END = dt.datetime(2025, 7, 8, 23)
INIT = dt.datetime(2025, 7, 7, 0)
HELD_OUT = [dt.datetime(2025, 7, 7, 12), dt.datetime(2025, 7, 8, 0)]
LEAD = 3
M = 4


def run(script, *args, check=True):
    res = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                         timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from pqpf.cli import save_remapped_mrms, terrain_height
    from pqpf.synthetic import generate_archive

    root = tmp_path_factory.mktemp("ens")
    config = generate_archive(root, START, END, (LEAD,), grid_name="demo", seed=3)
    text = config.source.read_text()
    config.source.write_text(text.replace(f"ndays_train = {config.patches.ndays_train}", "ndays_train = 6"))
    config = load_config(config.source)
    cfg = ["--config", str(config.source), "-q"]
    assert terrain_height.main(cfg) == 0
    assert save_remapped_mrms.main([START.strftime("%Y%m%d%H"), END.strftime("%Y%m%d%H"), *cfg]) == 0
    init = INIT.strftime("%Y%m%d%H")
    run("save_patched_graf_mrms.py", init, LEAD, *cfg)
    run("train_resunet.py", init, LEAD, *cfg, "--hparams-name", "tiny", "--max-epochs", "1", "--device", "cpu")
    run("train_diffusion.py", init, LEAD, *cfg, "--hparams-name", "diffusion_tiny", "--max-epochs", "2",
        "--device", "cpu")
    return config


def _ens(config, init, seed=5, ecc=False, plot=False, **sampler):
    run_ensemble_inference(config, init, LEAD, members=M, seed=seed, ecc=ecc, device="cpu", overwrite=True, plot=plot,
                           **sampler)
    return read_ensemble(ensemble_path(config, init, LEAD))


def test_ensemble_store_is_what_verify_ensemble_reads_and_members_are_deterministic(trained):
    torch.set_num_threads(1)
    config = trained
    # the script once (its output paths), the stage in-process for the rest; both on one
    # thread (another thread count sums the convolutions in another order: the last bit
    # differs and, rarely, a value rounds to the next 0.01 mm of the store's packing)
    res = run("ensemble_inference.py", HELD_OUT[0].strftime("%Y%m%d%H"), LEAD, "--members", M, "--seed", "5",
              "--no-ecc", "--threads", "1",
              "--config", str(config.source), "--device", "cpu", "-q")
    assert res.stdout.split() == [str(ensemble_path(config, HELD_OUT[0], LEAD)),
                                  str(ensemble_stamps_png_path(config, HELD_OUT[0], LEAD)),
                                  str(ensemble_gif_path(config, HELD_OUT[0], LEAD))]
    assert ensemble_stamps_png_path(config, HELD_OUT[0], LEAD).stat().st_size > 1000
    assert ensemble_gif_path(config, HELD_OUT[0], LEAD).read_bytes()[:6] == b"GIF89a"
    first = read_ensemble(ensemble_path(config, HELD_OUT[0], LEAD))
    ens = _ens(config, HELD_OUT[1])
    for init, e in zip(HELD_OUT, (first, ens)):
        assert e.members_mm.shape == (M, *e.grid.shape) and e.init == init and e.lead_h == LEAD
        assert np.isfinite(e.members_mm).all() and e.members_mm.min() >= 0
        assert e.provenance.seed == 5 and not e.provenance.ecc and e.provenance.sampler["n_steps"] == 6
        assert e.provenance.unet_checkpoint == read_probabilities(probs_path(config, init, LEAD)).attrs["checkpoint"]
        assert np.abs(e.members_mm[0] - e.members_mm[1]).mean() > 1e-3  # members differ
    again = _ens(config, HELD_OUT[0]).members_mm  # the same seed in another process: the same members
    np.testing.assert_array_equal(first.members_mm, again)
    other = _ens(config, HELD_OUT[0], seed=6).members_mm
    assert np.abs(first.members_mm - other).mean() > 1e-3
    _ens(config, HELD_OUT[0])
    span = [h.strftime("%Y%m%d%H") for h in HELD_OUT]
    run("verify_ensemble.py", *span, LEAD, "--config", str(config.source), "--no-plot", "-q")
    out = ensemble_verification_dir(config, HELD_OUT[0], HELD_OUT[-1], LEAD) / "ensemble_scores.json"
    scores = json.loads(out.read_text())
    assert scores["inits_used"] == span and scores["n_members"] == M and scores["ecc"] == "off"
    assert np.isfinite(scores["crps"]["crps_fair"]) and np.isfinite(scores["spread_skill"]["ratio"])


def test_ecc_members_hold_the_unet_quantiles_at_every_point(trained):
    torch.set_num_threads(1)
    config = trained
    init = HELD_OUT[1]
    ens = _ens(config, init, ecc=True, ecc_levels="quantile")
    assert ens.provenance.ecc
    probs = read_probabilities(probs_path(config, init, LEAD))
    bins = bin_probs_from_exceedance(np.clip(probs.prob.astype(np.float64), 0, 1))
    edges = (0.0, *probs.thresholds_mm)
    levels = [(r + 0.5) / M for r in range(M)]
    q = quantiles(bins, list(edges), levels, dim=0)
    q = np.where(q < edges[1], 0.0, q)
    # sorted at each point, the stored members are the U-Net's quantiles (to the 0.01 mm
    # packing; the probabilities file holds float32 exceedances, ECC used the float64 ones)
    np.testing.assert_allclose(np.sort(ens.members_mm, axis=0), q, atol=0.02, rtol=1e-3)
    assert ens.provenance.ecc_mode == "quantile"
    # ECC-S (the default): rank r's value lies in the U-Net's interval between the levels
    # r/M and (r+1)/M, at a level from the member's own smooth field (the default's width, recorded)
    strat = _ens(config, init, ecc=True)
    assert strat.provenance.ecc_mode == "stratified"
    assert strat.provenance.ecc_level_smoothing_px == DEFAULT_ECC_LEVEL_SMOOTHING_PX
    bounds = quantiles(bins, list(edges), [r / M for r in range(M)] + [1 - 1e-9], dim=0)
    bounds = np.where(bounds < edges[1], 0.0, bounds)
    ordered = np.sort(strat.members_mm, axis=0)
    slack = 0.02 + 1e-3 * bounds
    assert np.all((ordered >= bounds[:-1] - slack[:-1]) & (ordered <= bounds[1:] + slack[1:]))
    assert np.abs(ordered - q).max() > 0.1  # drawn inside the intervals, not at their midpoints
    # levels drawn point by point: the same ranks, other values inside the same intervals,
    # and rougher fields (each member's neighbouring points jump inside their intervals)
    pointwise = _ens(config, init, ecc=True, ecc_levels="stratified", ecc_level_smoothing_px=0.0)
    assert pointwise.provenance.ecc_level_smoothing_px == 0.0
    ordered0 = np.sort(pointwise.members_mm, axis=0)
    assert np.all((ordered0 >= bounds[:-1] - slack[:-1]) & (ordered0 <= bounds[1:] + slack[1:]))

    def roughness(members):
        return np.nanmean(np.abs(np.diff(members, axis=-1)))

    assert roughness(pointwise.members_mm) > 1.2 * roughness(strat.members_mm)
    # ECC-M: the interval means, which average to the U-Net's mean amount the store holds
    means = _ens(config, init, ecc=True, ecc_levels="mean")
    assert means.provenance.ecc_mode == "mean" and means.provenance.ecc_level_smoothing_px is None
    np.testing.assert_allclose(np.sort(means.members_mm, axis=0),
                               stratum_means(bins, list(edges), M, dim=0, zero_first_bin=True), atol=0.02, rtol=1e-3)
    np.testing.assert_allclose(means.members_mm.mean(axis=0), means.unet_mean_mm, atol=0.02, rtol=1e-3)
    # ranked by the smoothed z (default 2 px) or by z itself: the same values at every point,
    # arranged differently; the store says which
    assert means.provenance.extra["ecc_smoothing_px"] == 2.0 and means.provenance.ecc_template == "z smoothed 2 px"
    unsmoothed = _ens(config, init, ecc=True, ecc_levels="mean", ecc_smoothing_px=0.0)
    assert unsmoothed.provenance.ecc_template == "z smoothed 0 px"
    np.testing.assert_array_equal(np.sort(unsmoothed.members_mm, axis=0), np.sort(means.members_mm, axis=0))
    assert (np.abs(unsmoothed.members_mm - means.members_mm).max(axis=0) > 0.01).mean() > 0.05


def test_sampler_steps_and_churn_override_the_model_and_are_recorded(trained):
    torch.set_num_threads(1)
    config = trained
    init = HELD_OUT[0]
    default = _ens(config, init)
    assert default.provenance.sampler["n_steps"] == 6 and default.provenance.sampler["s_churn"] == 0.0
    steps = _ens(config, init, steps=3)
    assert steps.provenance.sampler["n_steps"] == 3 and steps.provenance.sampler["s_churn"] == 0.0
    churn = _ens(config, init, steps=3, churn=5.0)
    assert churn.provenance.sampler["n_steps"] == 3 and churn.provenance.sampler["s_churn"] == 5.0
    # each setting changes the members; the churn noise comes from the member's own generator
    assert np.abs(steps.members_mm - default.members_mm).mean() > 1e-4
    assert np.abs(churn.members_mm - steps.members_mm).mean() > 1e-4
    np.testing.assert_array_equal(_ens(config, init, steps=3, churn=5.0).members_mm, churn.members_mm)
    # the model's own settings given explicitly are the default
    np.testing.assert_array_equal(_ens(config, init, steps=6, churn=0.0).members_mm, default.members_mm)
    # a rerun without --overwrite keeps the finished store (a directory, written atomically)
    store = ensemble_path(config, init, LEAD)
    before = (store / ".zattrs").stat().st_mtime_ns
    again = run_ensemble_inference(config, init, LEAD, members=M, seed=5, ecc=False, device="cpu", plot=False,
                                   steps=6, churn=0)
    assert again.skipped and (store / ".zattrs").stat().st_mtime_ns == before
    # ... but refuses to pass off a store made with other settings as the one asked for
    with pytest.raises(PqpfError) as err:
        run_ensemble_inference(config, init, LEAD, members=M + 1, seed=9, device="cpu", plot=False, steps=3)
    assert str(err.value) == (f"{store} was made with other settings: members {M} (asked {M + 1}), seed 5 (asked 9), "
                              "ECC off (asked stratified), steps 6 (asked 3), ECC ranks off (asked z smoothed 2 px); "
                              "--overwrite replaces it")
    assert (store / ".zattrs").stat().st_mtime_ns == before
    # ECC-S levels drawn with another smoothing are other members too
    run_ensemble_inference(config, init, LEAD, members=M, seed=5, device="cpu", overwrite=True, plot=False)
    kept = rf"made with other settings: ECC level smoothing \(px\) {DEFAULT_ECC_LEVEL_SMOOTHING_PX} \(asked inf\);"
    with pytest.raises(PqpfError, match=kept):
        run_ensemble_inference(config, init, LEAD, members=M, seed=5, device="cpu", plot=False,
                               ecc_level_smoothing_px=math.inf)
    assert run_ensemble_inference(config, init, LEAD, members=M, seed=5, device="cpu", plot=False,
                                  ecc_level_smoothing_px=DEFAULT_ECC_LEVEL_SMOOTHING_PX).skipped
    # one level per member ("inf" in the store's attributes) is kept when asked again
    run_ensemble_inference(config, init, LEAD, members=M, seed=5, device="cpu", overwrite=True, plot=False,
                           ecc_level_smoothing_px=math.inf)
    assert read_ensemble(store).provenance.ecc_level_smoothing_px == "inf"
    assert run_ensemble_inference(config, init, LEAD, members=M, seed=5, device="cpu", plot=False,
                                  ecc_level_smoothing_px=math.inf).skipped


def test_missing_diffusion_model_and_bad_arguments_are_one_line(trained, tmp_path):
    config = trained
    cfg = ["--config", str(config.source), "--device", "cpu"]
    res = run("ensemble_inference.py", "2025070712", "4", *cfg, check=False)
    assert res.returncode != 0 and "diffusion" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = run("ensemble_inference.py", "2025070712", LEAD, "--seed", "-1", *cfg, check=False)
    assert res.returncode == 2 and "--seed" in res.stderr
    for option, value in (("--churn", "-1"), ("--churn", "nan"), ("--steps", "0"), ("--ecc-levels", "random")):
        res = run("ensemble_inference.py", "2025070712", LEAD, option, value, *cfg, check=False)
        assert res.returncode == 2 and option in res.stderr, (option, value, res.stderr)
    res = run("ensemble_inference.py", "2025070712", LEAD, "--no-ecc", "--ecc-levels", "stratified", *cfg, check=False)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "--no-ecc" in res.stderr
    for value in ("-1", "nan", "wide"):
        res = run("ensemble_inference.py", "2025070712", LEAD, "--ecc-level-smoothing", value, *cfg, check=False)
        assert res.returncode == 2 and "--ecc-level-smoothing" in res.stderr, (value, res.stderr)
    res = run("ensemble_inference.py", "2025070712", LEAD, "--ecc-levels", "mean", "--ecc-level-smoothing", "4", *cfg,
              check=False)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--ecc-level-smoothing applies to --ecc-levels stratified, not mean" in res.stderr
    assert list(Registry(registry_path(config)).read()["diffusion"]) == [LEAD]


def test_the_unet_is_matched_by_its_weights_not_its_path(trained):
    """A trainings directory copied elsewhere (HPC to laptop) still samples, and the same
    members; a U-Net retrained in place is refused; a diffusion checkpoint from before the
    weights digest falls back to the U-Net's path."""
    import dataclasses
    import shutil

    from pqpf.errors import PqpfError
    from pqpf.io.checkpoint import load_checkpoint, save_checkpoint
    from pqpf.stages.ensemble_inference import load_models_for_lead

    torch.set_num_threads(1)
    config = trained
    root = config.source.parent
    moved = root / "trainings_moved"
    shutil.rmtree(moved, ignore_errors=True)
    shutil.copytree(config.paths.trainings_dir, moved)
    source = root / "config_moved.ini"
    source.write_text(config.source.read_text().replace("trainings_dir = trainings\n",
                                                        "trainings_dir = trainings_moved\n"))
    other = load_config(source)
    assert other.paths.trainings_dir == moved
    here = _ens(config, HELD_OUT[0], seed=2)
    there = _ens(other, HELD_OUT[0], seed=2)
    np.testing.assert_array_equal(there.members_mm, here.members_mm)
    assert Path(there.provenance.unet_checkpoint).parent.parent == moved

    registry = Registry(registry_path(other))
    unet_path, diff_path = registry.checkpoint("resunet", LEAD), registry.checkpoint("diffusion", LEAD)
    original = trainkit.retrain_in_place(unet_path)  # the U-Net retrained at the same path
    with pytest.raises(PqpfError, match="has other weights; retrain the diffusion model"):
        load_models_for_lead(other, LEAD, "cpu")
    save_checkpoint(unet_path, original)
    load_models_for_lead(other, LEAD, "cpu")  # the same weights again: accepted
    # a diffusion checkpoint without the digest: matched by the path it recorded (the original)
    diffusion = load_checkpoint(diff_path)
    assert diffusion.model.extra["unet_weights_sha256"] == original.weights_digest()
    extra = {k: v for k, v in diffusion.model.extra.items() if k != "unet_weights_sha256"}
    save_checkpoint(diff_path, dataclasses.replace(diffusion, model=dataclasses.replace(diffusion.model, extra=extra)))
    with pytest.raises(PqpfError, match="has another file; retrain the diffusion model"):
        load_models_for_lead(other, LEAD, "cpu")
    load_models_for_lead(config, LEAD, "cpu")  # the original place: accepted
    shutil.rmtree(moved)
    source.unlink()


def test_members_take_the_calibrated_marginals_when_the_probabilities_are_calibrated(trained, tmp_path, caplog):
    """With [inference] calibrate applying the U-Net's map, ECC and the store's U-Net mean use
    the calibrated bins the probabilities file holds; the denoiser's conditioning stays raw."""
    import dataclasses
    import logging

    from pqpf.calibration import Calibration
    from pqpf.io.checkpoint import load_checkpoint
    from pqpf.ordinal import exceedance_probs
    from pqpf.verify.ensemble_fields import unet_mean_amount

    torch.set_num_threads(1)
    init = HELD_OUT[0]

    def site(setting):
        paths = dataclasses.replace(trained.paths, probs_dir=tmp_path / setting, plots_dir=tmp_path / "plots")
        return dataclasses.replace(trained, paths=paths,
                                   inference=dataclasses.replace(trained.inference, calibrate=setting))

    def ensemble(setting):
        config = site(setting)
        run_ensemble_inference(config, init, LEAD, members=M, seed=5, device="cpu", overwrite=True, plot=False,
                               ecc_levels="mean")
        return read_ensemble(ensemble_path(config, init, LEAD)), read_probabilities(probs_path(config, init, LEAD))

    raw, raw_probs = ensemble("false")
    cal, cal_probs = ensemble("true")
    assert (raw.provenance.extra["unet_calibrated"], cal.provenance.extra["unet_calibrated"]) == (0, 1)
    assert (raw_probs.attrs["calibrated"], cal_probs.attrs["calibrated"]) == (0, 1)
    unet_path = Registry(registry_path(trained)).checkpoint("resunet", LEAD)
    record = load_checkpoint(unet_path).model
    calibration = Calibration.from_dict(record.extra["calibration"])
    edges = tuple(record.bin_edges_mm)
    raw_bins = bin_probs_from_exceedance(np.clip(raw_probs.prob.astype(np.float64), 0, 1))
    cal_bins = bin_probs_from_exceedance(calibration.apply(exceedance_probs(raw_bins, edges, edges[1:], dim=0),
                                                           edges[1:]))
    # the stored U-Net mean and the members (ECC-M: their average is it) follow the calibrated bins
    np.testing.assert_allclose(cal.unet_mean_mm, unet_mean_amount(cal_bins, edges), atol=0.02, rtol=1e-3)
    np.testing.assert_allclose(cal.members_mm.mean(axis=0), cal.unet_mean_mm, atol=0.02, rtol=1e-3)
    assert np.nanmax(np.abs(cal.unet_mean_mm - raw.unet_mean_mm)) > 0.01  # a 1-epoch network: mostly dry
    # the same diffusion members and tie-breaks underneath: the same ranks
    below = cal.members_mm[:, None] < cal.members_mm[None, :] - 1e-3  # member i below member j
    assert below.sum() > 1000
    assert np.all(raw.members_mm[:, None] <= raw.members_mm[None, :] + 0.02, where=below)
    # a rerun without --overwrite does not keep members whose marginals the setting no longer gives
    flipped = dataclasses.replace(site("true"), inference=dataclasses.replace(trained.inference, calibrate="false"))
    with pytest.raises(PqpfError, match=r"was made with other settings: calibrated marginals 1 \(asked 0\);"):
        run_ensemble_inference(flipped, init, LEAD, members=M, seed=5, device="cpu", plot=False, ecc_levels="mean")
    # calibrated members beside a raw probabilities file (calibrate changed between the runs)
    # are not scored against it: one line names both files
    import shutil

    from pqpf.stages.verify_ensemble import verify_ensemble_range

    shutil.copy(probs_path(site("false"), init, LEAD), probs_path(site("true"), init, LEAD))
    with caplog.at_level(logging.ERROR), pytest.raises(PqpfError, match="1 unreadable"):
        verify_ensemble_range(site("true"), init, init, LEAD, plot=False)
    assert (f"{ensemble_path(site('true'), init, LEAD)}: its members took the calibrated U-Net marginals but "
            f"{probs_path(site('true'), init, LEAD)} holds raw probabilities") in caplog.text


def test_calibration_check_of_verification_reads_old_and_odd_attributes(tmp_path):
    """ECC members from before ``unet_calibrated`` was recorded took the raw marginals;
    members without ECC copy none; a malformed flag is one error naming its file."""
    from types import SimpleNamespace

    from pqpf.errors import InputFileError
    from pqpf.stages.verify_ensemble import _check_same_calibration

    def store(ecc, **extra):
        return SimpleNamespace(provenance=SimpleNamespace(ecc_mode=ecc, extra=extra))

    ens_path, probs = tmp_path / "e.zarr", tmp_path / "p.nc"
    for ens, attrs in ((store("mean"), {"calibrated": np.int64(0)}), (store("mean", unet_calibrated=np.int32(1)),
                                                                     {"calibrated": 1}),
                       (store("off", unet_calibrated=1), {"calibrated": 0}), (store("mean"), {})):
        _check_same_calibration(ens, attrs, ens_path, probs)  # accepted
    with pytest.raises(InputFileError, match=r"e.zarr: its members took the raw U-Net marginals but .*p.nc holds "
                                             r"calibrated"):
        _check_same_calibration(store("mean"), {"calibrated": np.int64(1)}, ens_path, probs)
    with pytest.raises(InputFileError, match=r"p.nc: attribute calibrated must be 0 or 1, got 'true'"):
        _check_same_calibration(store("mean", unet_calibrated=1), {"calibrated": "true"}, ens_path, probs)
    # both calibrated: the same map, or one side from before the map was recorded
    same = store("mean", unet_calibrated=1, unet_calibration_sha256="a1b2")
    for attrs in ({"calibrated": 1, "calibration_sha256": "a1b2"}, {"calibrated": 1}):
        _check_same_calibration(same, attrs, ens_path, probs)
    _check_same_calibration(store("mean", unet_calibrated=1), {"calibrated": 1, "calibration_sha256": "ffff"},
                            ens_path, probs)
    with pytest.raises(InputFileError, match=r"e.zarr: its members took the U-Net marginals of calibration map a1b2 "
                                             r"but .*p.nc holds map ffff \(calibrate_resunet.py refitted"):
        _check_same_calibration(same, {"calibrated": 1, "calibration_sha256": "ffff"}, ens_path, probs)


def test_many_inits_in_one_process_load_the_models_once_and_count_a_missing_init(trained, tmp_path, monkeypatch,
                                                                                  capsys):
    """--until/--every: the members of each init are those of a call of their own; an init
    without GRAF is counted and the rest run (exit 1); a bad range is a usage error."""
    import dataclasses

    from pqpf.cli import ensemble_inference
    from pqpf.config import write_config
    from pqpf.stages import ensemble_inference as stage
    from pqpf.stages import inference

    def moved(name):
        paths = dataclasses.replace(trained.paths, probs_dir=tmp_path / name / "probs",
                                    plots_dir=tmp_path / name / "plots")
        return load_config(write_config(dataclasses.replace(trained, paths=paths), tmp_path / f"{name}.ini"))

    many, one = moved("many"), moved("one")
    loads, unet_loads = [], []
    real = stage.load_models_for_lead
    monkeypatch.setattr(stage, "load_models_for_lead", lambda *a, **k: loads.append(1) or real(*a, **k))
    monkeypatch.setattr(inference, "load_model_for_lead", lambda *a, **k: unet_loads.append(1))
    broken = ensemble_path(many, dt.datetime(2025, 7, 7, 12), LEAD)
    broken.mkdir(parents=True)  # an unreadable kept store: this init's own problem, before any model loads
    status = ensemble_inference.main(["2025070712", str(LEAD), "--until", "2025070900", "--members", str(M),
                                      "--seed", "3", "--config", str(many.source), "--device", "cpu", "--no-plot",
                                      "-q"])
    out, err = capsys.readouterr()
    assert status == 1 and len(loads) == 1 and unet_loads == [], err + out  # the U-Net file reuses the models
    assert "ensemble_inference.py: 2 written, 0 skipped (already there), 2 failed (2025070712: " in out
    assert "; 2025070900: " in out
    broken.rmdir()
    assert ensemble_inference.main(["2025070712", str(LEAD), "--members", str(M), "--seed", "3", "--config",
                                    str(many.source), "--device", "cpu", "--no-plot", "-q"]) == 0
    capsys.readouterr()
    init = dt.datetime(2025, 7, 8, 0)
    run_ensemble_inference(one, init, LEAD, members=M, seed=3, device="cpu", plot=False)
    np.testing.assert_array_equal(read_ensemble(ensemble_path(many, init, LEAD)).members_mm,
                                  read_ensemble(ensemble_path(one, init, LEAD)).members_mm)
    loads.clear()
    assert ensemble_inference.main(["2025070712", str(LEAD), "--until", "2025070812", "--members", str(M), "--seed",
                                    "3", "--config", str(many.source), "--device", "cpu", "--no-plot", "-q"]) == 0
    assert "0 written, 3 skipped" in capsys.readouterr().out and loads == []
    for bad in (["--every", "6"], ["--until", "2025070700"]):
        assert ensemble_inference.main(["2025070712", str(LEAD), *bad, "--config", str(many.source)]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
