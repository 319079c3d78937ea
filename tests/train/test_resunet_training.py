import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import trainkit

from pqpf.errors import PqpfError
from pqpf.hparams import load_hparams
from pqpf.io.checkpoint import load_checkpoint
from pqpf.io.registry import Registry
from pqpf.layout import registry_path
from pqpf.stages.train import train_resunet as train

ROOT = Path(__file__).resolve().parent.parent.parent
TINY = load_hparams("tiny")


def _registry(config):
    return Registry(registry_path(config))


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PQPF_CONFIG="")
    return env


def _weights(path):
    return load_checkpoint(path).net


def test_training_writes_checkpoints_loadable_weights_only_and_registers(tmp_path):
    torch.set_num_threads(1)
    config = trainkit.make(tmp_path)
    result = train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=3)
    run = result.run_dir
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "epoch_001.pt", "epoch_002.pt", "epoch_003.pt"]
    state = torch.load(run / "epoch_003.pt", weights_only=True)
    assert state["format"] == "pqpf-checkpoint" and state["format_version"] == 2
    for key in ("optimizer", "scheduler", "epoch", "best_score", "bad_epochs"):
        assert key in state["training"], key
    for key in ("kind", "normalisation", "hparams", "feature_schema_version", "channel_names", "bin_edges_mm"):
        assert key in state["model"], key
    assert state["model"]["kind"] == "resunet" and state["training"]["epoch"] == 3
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert all(np.isfinite(r["val_rps"]) and r["samples_per_s"] > 0 for r in epochs)
    assert epochs[-1]["train_rps"] < epochs[0]["train_rps"]  # it learns
    assert "test" in rows[-1] and np.isfinite(rows[-1]["test"]["bss_1mm"])
    # The isotonic calibration fitted on the validation split sits in best.pt, as plain floats.
    best = torch.load(run / "best.pt", weights_only=True)["model"]["extra"]["calibration"]
    assert best["thresholds_mm"] == list(TINY.model.bin_edges_mm[1:])
    assert all(all(a <= b for a, b in zip(y, y[1:])) for y in best["knots_y"])
    reg = _registry(config).read()["resunet"]
    assert reg[6]["checkpoint"] == f"{run.name}/best.pt" and reg[6]["best_epoch"] == result.best_epoch
    assert _registry(config).checkpoint("resunet", 6) == run / "best.pt"
    # a second fresh start must not silently delete the first run
    with pytest.raises(PqpfError, match="--resume"):
        train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1)


def test_nearest_lead_and_warm_start(tmp_path):
    torch.set_num_threads(1)
    config = trainkit.make(tmp_path)
    train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1)
    assert _registry(config).nearest_lead("resunet", 9) == 6 and _registry(config).nearest_lead("resunet", 6) is None
    # warm start for lead 6 from "nearest" has nothing else registered
    with pytest.raises(PqpfError, match="no other lead"):
        train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1, init_from="nearest",
              overwrite=True)


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_weights(tmp_path):
    """Kill the process after its first checkpoint, resume, compare with an uninterrupted run."""
    args = [str(trainkit.INIT.strftime("%Y%m%d%H")), str(trainkit.LEAD), "--hparams-name", "tiny",
            "--device", "cpu", "--max-epochs", "4", "-q"]
    runs = {}
    for name in ("straight", "killed"):
        root = tmp_path / name
        root.mkdir()
        config = trainkit.make(root)
        cmd = [sys.executable, str(ROOT / "train_resunet.py"), "--config", str(root / "config.ini"), *args]
        run_dir = config.paths.trainings_dir / f"resunet_2025120100_{trainkit.LEAD}h"
        if name == "killed":
            proc = subprocess.Popen(cmd, env=_env(), start_new_session=True)
            deadline = time.time() + 300
            while not (run_dir / "epoch_001.pt").exists():
                assert proc.poll() is None and time.time() < deadline
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            done = sorted(p.name for p in run_dir.glob("epoch_*.pt"))
            assert "epoch_004.pt" not in done
            for ckpt in run_dir.glob("epoch_*.pt"):  # atomic writes: every checkpoint is whole
                load_checkpoint(ckpt)
            subprocess.run([*cmd, "--resume"], env=_env(), check=True)
        else:
            subprocess.run(cmd, env=_env(), check=True)
        runs[name] = run_dir
    a = _weights(runs["straight"] / "epoch_004.pt")
    b = _weights(runs["killed"] / "epoch_004.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    sa = load_checkpoint(runs["straight"] / "epoch_004.pt").training
    sb = load_checkpoint(runs["killed"] / "epoch_004.pt").training
    assert sa.best_score == sb.best_score and sa.bad_epochs == sb.bad_epochs


@pytest.mark.slow
def test_torchrun_two_ranks_see_different_data_and_write_one_set(tmp_path):
    config = trainkit.make(tmp_path, n=(50, 16, 16))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train_resunet.py"), "--config", str(tmp_path / "config.ini"),
           trainkit.INIT.strftime("%Y%m%d%H"), str(trainkit.LEAD), "--hparams-name", "tiny",
           "--device", "cpu", "--max-epochs", "2"]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    run = config.paths.trainings_dir / f"resunet_2025120100_{trainkit.LEAD}h"
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt", "epoch_001.pt", "epoch_002.pt", "hparams.yaml", "metrics.jsonl"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert len(rows) == 2  # one writer: one line per epoch
    for row in rows:
        assert row["world_size"] == 2
        d0, d1 = row["rank_sample_digests"]
        assert d0 != d1
        assert row["rank_sample_counts"] == [25, 25]
    # diagnostics are printed once, by rank 0
    assert res.stderr.count("train_rps") == 1
    assert list(_registry(config).read()["resunet"]) == [6]


def test_prefetching_threads_yield_the_same_batches_in_the_same_order(tmp_path):
    from pqpf.io.patchfile import load_patch_set
    from pqpf.layout import patch_file_path
    from pqpf.train.batches import BatchSource, BatchSpec, plan_epoch, prefetch

    config = trainkit.make(tmp_path)
    data = load_patch_set(patch_file_path(config, "train", trainkit.INIT, trainkit.LEAD))
    plan = plan_epoch(len(data), 5, 0, 1, 1234, 3, shuffle=True)
    source = BatchSource(data, plan, BatchSpec(0.5, False, True, 1.0))
    plain = list(prefetch(source, 0, False))
    threaded = list(prefetch(source, 3, False))
    assert len(plain) == len(threaded) == 10
    for a, b in zip(plain, threaded):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # every patch appears exactly once per epoch
    assert sorted(torch.cat([b["index"] for b in plain]).tolist()) == list(range(len(data)))


def test_thresholds_that_are_not_bin_edges_are_a_config_error_when_loaded(tmp_path):
    from pqpf.cli.train_resunet import main
    from pqpf.config import load_config
    from pqpf.errors import ConfigError

    config = trainkit.make(tmp_path)
    path = tmp_path / "config.ini"
    path.write_text(path.read_text().replace("thresholds_mm = 0.25, 1.0, 2.5, 5.0, 10.0, 25.0",
                                             "thresholds_mm = 0.3, 1"))
    with pytest.raises(ConfigError, match=r"disagree: .*0\.3"):
        load_hparams("tiny", thresholds_mm=load_config(path).probability.thresholds_mm)
    status = main([trainkit.INIT.strftime("%Y%m%d%H"), str(trainkit.LEAD), "--config", str(path),
                   "--hparams-name", "tiny", "--device", "cpu", "--max-epochs", "1"])
    assert status == 1
    assert config.paths.trainings_dir.exists() is False or not any(config.paths.trainings_dir.iterdir())


def test_sampling_weights_reach_batches_and_scores(tmp_path):
    import dataclasses

    from pqpf.io.patchfile import load_patch_set
    from pqpf.layout import patch_file_path
    from pqpf.model.loss import log_score_per_pixel, rps_per_pixel
    from pqpf.model.resunet import build_resunet
    from pqpf.normalisation import compute_normalisation
    from pqpf.ordinal import edge_weights
    from pqpf.train.batches import BatchSource, BatchSpec, plan_epoch
    from pqpf.train.distributed import DistributedContext
    from pqpf.train.resunet import ResUNetFamily

    torch.manual_seed(0)
    config = trainkit.make(tmp_path)
    data = load_patch_set(patch_file_path(config, "validation", trainkit.INIT, trainkit.LEAD))
    scale = float(data.weights.mean())
    plan = plan_epoch(len(data), 4, 0, 1, 0, 0, shuffle=False)
    weighted = BatchSource(data, plan, BatchSpec(0.5, False, True, scale))[0]
    plain = BatchSource(data, plan, BatchSpec(0.5, False, False, scale))[0]
    assert torch.allclose(weighted["weights"], torch.from_numpy(data.weights[:4] / scale))
    assert torch.equal(plain["weights"], torch.ones(4))

    net = build_resunet(TINY.model, 5).eval()
    norm = compute_normalisation(data.features, data.channel_names)
    edges = TINY.model.bin_edges_mm
    ctx = DistributedContext()
    with torch.no_grad():
        x = norm.apply_torch(torch.from_numpy(data.features))
        score = rps_per_pixel(net(x), torch.from_numpy(np.nan_to_num(data.mrms_mm)), edges,
                              torch.as_tensor(edge_weights(edges, "rps"))).numpy()
    valid = (data.quality >= 0.5) & np.isfinite(data.mrms_mm)
    w = np.broadcast_to(data.weights[:, None, None], valid.shape)
    by_hand = {True: (score * w)[valid].sum() / w[valid].sum(), False: score[valid].mean()}
    for use in (True, False):
        hp = dataclasses.replace(TINY, use_sampling_weights=use)
        family = ResUNetFamily(hp, data, 0.5)
        family.normalisation = norm
        got = family.evaluate(net, data, torch.device("cpu"), ctx, 4)["score"]
        assert got == pytest.approx(by_hand[use], rel=1e-5)
    assert by_hand[True] != pytest.approx(by_hand[False], rel=1e-3)
    # With the log score added, the family's score (named "rps_log") is the sum.
    with torch.no_grad():
        log = log_score_per_pixel(net(x), torch.from_numpy(np.nan_to_num(data.mrms_mm)), edges).numpy()
    family = ResUNetFamily(dataclasses.replace(TINY, log_score_weight=0.5), data, 0.5)
    family.normalisation = norm
    assert family.score_name == "rps_log"
    got = family.evaluate(net, data, torch.device("cpu"), ctx, 4)["score"]
    assert got == pytest.approx(((score + 0.5 * log) * w)[valid].sum() / w[valid].sum(), rel=1e-5)


def test_resume_with_other_hyper_parameters_is_refused(tmp_path):
    import dataclasses

    torch.set_num_threads(1)
    config = trainkit.make(tmp_path)
    train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1)
    other = dataclasses.replace(TINY, learning_rate=TINY.learning_rate * 2)
    with pytest.raises(PqpfError, match=r"learning_rate: 0.001 -> 0.002"):
        train(config, trainkit.INIT, trainkit.LEAD, other, device="cpu", max_epochs=2, resume=True)


def test_overwrite_takes_the_lead_out_of_the_registry_until_the_new_model_exists(tmp_path, monkeypatch):
    from pqpf.train.resunet import ResUNetFamily

    torch.set_num_threads(1)
    config = trainkit.make(tmp_path)
    train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1)
    assert 6 in _registry(config).read()["resunet"]

    def crash(*args, **kwargs):
        raise RuntimeError("node died")

    monkeypatch.setattr(ResUNetFamily, "evaluate", crash)  # the new training dies in its first epoch
    with pytest.raises(RuntimeError):
        train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1, overwrite=True)
    assert 6 not in _registry(config).read().get("resunet", {})  # never pointing at the deleted best.pt


def test_time_features_train_and_infer_with_the_same_channels(tmp_path):
    import dataclasses
    import datetime as dt

    from scipy.ndimage import gaussian_filter

    from pqpf.features import TIME_CHANNELS
    from pqpf.predict import predict_probabilities
    from pqpf.stages.inference import load_model_for_lead

    torch.set_num_threads(1)
    config = trainkit.make(tmp_path)
    hp = dataclasses.replace(TINY, time_features=True)
    result = train(config, trainkit.INIT, trainkit.LEAD, hp, device="cpu", max_epochs=1)
    record = load_checkpoint(result.best_checkpoint).model
    assert record.channel_names[-4:] == TIME_CHANNELS and len(record.channel_names) == 9
    assert tuple(record.normalisation["channel_names"]) == record.channel_names
    model = load_model_for_lead(config, trainkit.LEAD, torch.device("cpu"))
    assert model.time_features and len(model.channel_names) == 9
    rng = np.random.default_rng(0)
    h = gaussian_filter(rng.normal(0, 300, (40, 56)), 3)
    gy, gx = np.gradient(h, 4000.0)
    terrain = {"height_local_difference": h - gaussian_filter(h, 5), "slope_x": gx, "slope_y": gy}
    graf = np.maximum(gaussian_filter(rng.normal(size=(40, 56)), 2) * 10, 0).astype(np.float32)
    prob, edges = predict_probabilities(model, graf, terrain, dt.datetime(2025, 12, 2, 6), 16, 8, 4,
                                        torch.device("cpu"), calibrate=False)
    assert prob.shape == (13, 40, 56) and (np.diff(prob, axis=0) <= 1e-6).all()
    # the hour of day reaches the network: another valid hour gives other probabilities
    # (uncalibrated: the step functions of the isotonic maps can absorb the small
    # differences a network trained for one epoch makes)
    prob2, _ = predict_probabilities(model, graf, terrain, dt.datetime(2025, 12, 2, 18), 16, 8, 4,
                                     torch.device("cpu"), calibrate=False)
    assert not np.allclose(prob, prob2)


@pytest.mark.slow
def test_cosine_schedule_resumed_after_max_epochs_continues_the_same_curve(tmp_path):
    """--max-epochs stops a run early; resuming it must follow the schedule of the
    configured epochs, not restart the cosine from a period of --max-epochs."""
    import dataclasses

    torch.set_num_threads(1)
    hp = dataclasses.replace(TINY, lr_schedule="cosine", epochs=6, patience=10)
    runs = {}
    for name in ("straight", "stopped"):
        config = trainkit.make(tmp_path / name)
        if name == "stopped":
            train(config, trainkit.INIT, trainkit.LEAD, hp, device="cpu", max_epochs=2)
            # num_workers does not change the numbers: a resume may change it
            hp_resume = dataclasses.replace(hp, num_workers=1)
            result = train(config, trainkit.INIT, trainkit.LEAD, hp_resume, device="cpu", max_epochs=4, resume=True)
        else:
            result = train(config, trainkit.INIT, trainkit.LEAD, hp, device="cpu", max_epochs=4)
        rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
        runs[name] = ([r["lr"] for r in rows if "epoch" in r and "lr" in r], result.run_dir)
    lrs_straight, lrs_stopped = runs["straight"][0], runs["stopped"][0]
    assert lrs_straight == pytest.approx(lrs_stopped, rel=1e-12)
    # cosine over 6 epochs: epoch 4's row holds the rate after its step, lr0 (1 + cos(4 pi / 6)) / 2
    assert lrs_straight[3] == pytest.approx(hp.learning_rate * 0.5 * (1 + np.cos(np.pi * 4 / 6)), rel=1e-9)
    a, b = (_weights(run / "epoch_004.pt") for _, run in runs.values())
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_resume_restores_a_best_checkpoint_that_does_not_hold_the_best_epoch(tmp_path, caplog):
    import shutil

    torch.set_num_threads(1)
    config = trainkit.make(tmp_path)
    result = train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=2)
    run = result.run_dir
    best_epoch = load_checkpoint(run / "epoch_002.pt").training.best_epoch
    other = 2 if best_epoch == 1 else 1
    shutil.copyfile(run / f"epoch_{other:03d}.pt", run / "best.pt")  # what a kill between saves could leave
    result = train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=3, resume=True)
    assert "did not hold the best epoch" in caplog.text
    assert load_checkpoint(run / "best.pt").training.epoch == result.best_epoch


def test_warm_start_from_a_later_init_or_other_bins_is_refused(tmp_path):
    torch.set_num_threads(1)
    config = trainkit.make(tmp_path)
    result = train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1)
    state = torch.load(result.run_dir / "best.pt", weights_only=True)
    later_init = (trainkit.INIT.replace(year=trainkit.INIT.year + 1)).strftime("%Y%m%d%H")
    torch.save(dict(state, model=dict(state["model"], init=later_init)), tmp_path / "later.pt")
    with pytest.raises(PqpfError, match="after this run's"):
        train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1, overwrite=True,
              init_from=str(tmp_path / "later.pt"))
    edges = list(state["model"]["bin_edges_mm"])
    edges[1] = 0.2
    torch.save(dict(state, model=dict(state["model"], bin_edges_mm=edges)), tmp_path / "bins.pt")
    with pytest.raises(PqpfError, match="bin edges"):
        train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1, overwrite=True,
              init_from=str(tmp_path / "bins.pt"))
    # the run's own earlier model is fine
    torch.save(state, tmp_path / "same.pt")
    train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1, overwrite=True,
          init_from=str(tmp_path / "same.pt"))


@pytest.mark.slow
def test_a_second_training_of_the_same_run_is_refused_naming_the_holder(tmp_path):
    """Issue 11 item 12: two trainings of one INIT/LEAD both ran and wrote every epoch twice."""
    config = trainkit.make(tmp_path, n=(640, 64, 16))  # epochs long enough for a second start-up
    cmd = [sys.executable, str(ROOT / "train_resunet.py"), "--config", str(tmp_path / "config.ini"),
           trainkit.INIT.strftime("%Y%m%d%H"), str(trainkit.LEAD), "--hparams-name", "tiny", "--device", "cpu",
           "--max-epochs", "3", "-q"]
    run_dir = config.paths.trainings_dir / f"resunet_2025120100_{trainkit.LEAD}h"
    first = subprocess.Popen(cmd, env=_env())
    try:
        deadline = time.time() + 300
        while not (run_dir / "hparams.yaml").exists():
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        second = subprocess.run([*cmd, "--overwrite"], env=_env(), capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first run must still hold the lock for this test to mean anything"
    finally:
        assert first.wait(timeout=600) == 0
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 1 and len(lines) == 1
    assert str(run_dir) in lines[0] and f"pid {first.pid} on " in lines[0]
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if "epoch" in json.loads(line)]
    assert epochs == [1, 2, 3]
    assert _registry(config).checkpoint("resunet", trainkit.LEAD) == run_dir / "best.pt"
    # released with the process: a later resume or rerun is not refused
    assert subprocess.run([*cmd, "--overwrite", "--max-epochs", "1"], env=_env()).returncode == 0


def test_ema_weights_are_selected_on_saved_applied_and_resumed_exactly(tmp_path):
    """With ema_halflife_samples > 0 the validation score (hence the best epoch) is that of
    the averaged weights, the checkpoint keeps them as its ``ema``, inference applies them,
    and a stopped-and-resumed run ends with the same average as a straight one."""
    import dataclasses

    from pqpf.stages.inference import load_model_for_lead
    from pqpf.stages.train import patch_sets
    from pqpf.train.distributed import DistributedContext
    from pqpf.train.resunet import ResUNetFamily

    torch.set_num_threads(1)
    hp = dataclasses.replace(TINY, ema_halflife_samples=40.0, ema_rampup=0.05, epochs=3, patience=10)
    runs = {}
    for name in ("straight", "stopped"):
        config = trainkit.make(tmp_path / name)
        if name == "stopped":
            train(config, trainkit.INIT, trainkit.LEAD, hp, device="cpu", max_epochs=1)
            result = train(config, trainkit.INIT, trainkit.LEAD, hp, device="cpu", resume=True)
        else:
            result = train(config, trainkit.INIT, trainkit.LEAD, hp, device="cpu")
        runs[name] = (config, result)
    config, result = runs["straight"]
    last = load_checkpoint(result.run_dir / "epoch_003.pt")
    assert last.ema is not None and last.model.extra["ema_samples_seen"] == 3 * 48  # 48 training patches
    assert any(not torch.equal(last.ema[k], last.net[k]) for k in last.net if last.net[k].is_floating_point())
    other = load_checkpoint(runs["stopped"][1].run_dir / "epoch_003.pt")
    for key in last.net:
        assert torch.equal(last.net[key], other.net[key]) and torch.equal(last.ema[key], other.ema[key]), key
    # the recorded validation score is that of the averaged weights, scored as a plain network
    sets = patch_sets(config, trainkit.INIT, trainkit.LEAD)
    plain = ResUNetFamily(dataclasses.replace(hp, ema_halflife_samples=0.0), sets["train"], config.mrms.min_quality)
    net = plain.build()
    net.load_state_dict(last.ema)
    plain.restore(last)
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x]
    score = plain.evaluate(net, sets["validation"], torch.device("cpu"), DistributedContext(), 16)["score"]
    assert score == pytest.approx(rows[2]["val_rps"], rel=1e-6)
    # both the network and the average carry batch-norm statistics recomputed for their own
    # weights after the epoch: recomputing them again on the same draw changes nothing
    stats = [k for k in last.net if k.endswith(("running_mean", "running_var"))]
    assert stats and any(not torch.equal(last.ema[k], last.net[k]) for k in stats)
    for weights in (last.net, last.ema):
        again = plain.build()
        again.load_state_dict(weights)
        plain.after_epoch(again, torch.device("cpu"), 3)
        for key in stats:
            torch.testing.assert_close(again.state_dict()[key], weights[key], rtol=1e-4, atol=1e-6)
    # inference applies the averaged weights of the best checkpoint
    best = load_checkpoint(result.best_checkpoint)
    model = load_model_for_lead(config, trainkit.LEAD, torch.device("cpu"))
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, best.ema[key]), key


def test_a_run_checkpointed_before_the_ema_keys_existed_resumes(tmp_path):
    """Records written before ``ema_halflife_samples`` existed meant "no average": resuming
    such a run with today's set (EMA off) continues it; with an EMA it is refused."""
    import dataclasses

    torch.set_num_threads(1)
    config = trainkit.make(tmp_path)
    result = train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1)
    path = result.run_dir / "epoch_001.pt"
    state = torch.load(path, weights_only=True)
    for key in ("ema_halflife_samples", "ema_rampup"):
        del state["model"]["hparams"][key]
    torch.save(state, path)
    with pytest.raises(PqpfError, match="ema_halflife_samples: 0.0 -> 100"):
        train(config, trainkit.INIT, trainkit.LEAD, dataclasses.replace(TINY, ema_halflife_samples=100.0),
              device="cpu", max_epochs=2, resume=True)
    resumed = train(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=2, resume=True)
    assert load_checkpoint(resumed.run_dir / "epoch_002.pt").training.epoch == 2
