"""Diffusion training on the generic loop: learns, keeps EMA weights, resumes exactly, refuses a wrong U-Net."""

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

from pqpf.diffusion.network import NETWORK_SIZES
from pqpf.errors import ConfigError, PqpfError
from pqpf.hparams import DIFFUSION_NETWORKS, load_diffusion_hparams, load_hparams
from pqpf.io.checkpoint import load_checkpoint
from pqpf.io.registry import Registry
from pqpf.layout import registry_path
from pqpf.stages.train import train_resunet
from pqpf.stages.train_diffusion import train_diffusion

ROOT = Path(__file__).resolve().parent.parent.parent
TINY = load_diffusion_hparams("diffusion_tiny")
INIT_S = trainkit.INIT.strftime("%Y%m%d%H")


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PQPF_CONFIG="")


def _with_unet(root, **kw):
    torch.set_num_threads(1)
    config = trainkit.make(root, **kw)
    train_resunet(config, trainkit.INIT, trainkit.LEAD, load_hparams("tiny"), device="cpu", max_epochs=2)
    return config


def test_named_diffusion_sets_inherit_the_base_and_are_not_unet_sets():
    base = load_diffusion_hparams("diffusion")
    demo = load_diffusion_hparams("diffusion_demo")
    assert base.denoiser == "default" and TINY.denoiser == "tiny" and demo.denoiser == "tiny"
    assert TINY.p_mean == base.p_mean == -1.2 and TINY.sampler.rho == base.sampler.rho == 7.0
    assert base.sampler.n_steps == 18 and TINY.sampler.n_steps == 6
    assert set(DIFFUSION_NETWORKS) == set(NETWORK_SIZES)  # hparams names the sizes without importing torch
    with pytest.raises(ConfigError, match="diffusion set"):
        load_hparams("diffusion_tiny")
    with pytest.raises(ConfigError, match="U-Net set"):
        load_diffusion_hparams("tiny")


def test_diffusion_training_learns_keeps_ema_weights_and_registers_against_its_unet(tmp_path):
    config = _with_unet(tmp_path)
    result = train_diffusion(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu")
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "epoch" in r]
    assert len(epochs) == TINY.epochs
    # validation EDM loss at fixed noise levels falls (~0.88 -> 0.76 measured)
    assert epochs[-1]["val_edm"] < 0.95 * epochs[0]["val_edm"]
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.model.kind == "diffusion" and ckpt.ema is not None and ckpt.ema.keys() == ckpt.net.keys()
    assert any(not torch.equal(ckpt.ema[k], ckpt.net[k]) for k in ckpt.net if ckpt.net[k].is_floating_point())
    assert 0.05 < ckpt.model.extra["sigma_data"] < 5 and ckpt.model.extra["ema_samples_seen"] > 0
    reg = Registry(registry_path(config)).read()
    entry = reg["diffusion"][trainkit.LEAD]
    assert entry["checkpoint"] == f"{result.run_dir.name}/best.pt"
    assert entry["unet_checkpoint"] == reg["resunet"][trainkit.LEAD]["checkpoint"]
    assert np.isfinite(rows[-1]["test"]["edm"])


def test_evaluation_score_is_deterministic(tmp_path):
    config = _with_unet(tmp_path)
    a = train_diffusion(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1, register=False)
    b = train_diffusion(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1, register=False,
                        overwrite=True)
    assert a.best_score == b.best_score


def test_unet_of_another_init_or_none_is_refused_in_one_line(tmp_path):
    torch.set_num_threads(1)
    config = trainkit.make(tmp_path)
    with pytest.raises(PqpfError, match="no U-Net registered for lead 6 h"):
        train_diffusion(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu")
    train_resunet(config, trainkit.INIT, trainkit.LEAD, load_hparams("tiny"), device="cpu", max_epochs=1)
    later = trainkit.INIT.replace(day=2)
    for split in ("train", "validation", "test"):  # the same patches under a later INIT
        src = config.paths.patch_dir / f"GRAF_Unet_data_{split}_{INIT_S}_{trainkit.LEAD}h.cPick"
        src.rename(src.with_name(src.name.replace(INIT_S, later.strftime("%Y%m%d%H"))))
    with pytest.raises(PqpfError, match=r"trained for INIT 2025120100, not 2025120200") as err:
        train_diffusion(config, later, trainkit.LEAD, TINY, device="cpu")
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_killed_diffusion_training_resumes_to_the_same_weights_and_ema(tmp_path):
    args = [INIT_S, str(trainkit.LEAD), "--hparams-name", "diffusion_tiny", "--device", "cpu", "-q"]
    runs = {}
    for name in ("straight", "killed"):
        root = tmp_path / name
        root.mkdir()
        config = _with_unet(root, n=(96, 16, 16))
        cmd = [sys.executable, str(ROOT / "train_diffusion.py"), "--config", str(root / "config.ini"), *args]
        run_dir = config.paths.trainings_dir / f"diffusion_{INIT_S}_{trainkit.LEAD}h"
        if name == "killed":
            proc = subprocess.Popen(cmd, env=_env(), start_new_session=True)
            deadline = time.time() + 300
            while not (run_dir / "epoch_001.pt").exists():
                assert proc.poll() is None and time.time() < deadline
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            assert not (run_dir / "epoch_004.pt").exists()
            subprocess.run([*cmd, "--resume"], env=_env(), check=True)
        else:
            subprocess.run(cmd, env=_env(), check=True)
        runs[name] = load_checkpoint(run_dir / "epoch_004.pt")
    a, b = runs["straight"], runs["killed"]
    for weights in ("net", "ema"):
        wa, wb = getattr(a, weights), getattr(b, weights)
        assert wa.keys() == wb.keys()
        for key in wa:
            assert torch.equal(wa[key], wb[key]), (weights, key)
    assert a.model.extra["ema_samples_seen"] == b.model.extra["ema_samples_seen"]
    assert a.training.best_score == b.training.best_score


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_and_write_one_set(tmp_path):
    config = _with_unet(tmp_path, n=(50, 16, 16))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train_diffusion.py"), "--config", str(tmp_path / "config.ini"), INIT_S, str(trainkit.LEAD),
           "--hparams-name", "diffusion_tiny", "--device", "cpu", "--max-epochs", "2"]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    run = config.paths.trainings_dir / f"diffusion_{INIT_S}_{trainkit.LEAD}h"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert len(rows) == 2
    for row in rows:
        assert row["world_size"] == 2 and row["rank_sample_counts"] == [25, 25]
        assert row["rank_sample_digests"][0] != row["rank_sample_digests"][1]
    assert res.stderr.count("train_edm") == 1
    assert load_checkpoint(run / "best.pt").ema is not None
    assert list(Registry(registry_path(config)).read()["diffusion"]) == [trainkit.LEAD]


def test_resume_refuses_a_unet_retrained_since(tmp_path):
    """The digest of the U-Net's weights is checked on --resume too: epochs conditioned on
    another U-Net are not continued under the new one's name."""
    config = _with_unet(tmp_path)
    train_diffusion(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1)
    train_diffusion(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=2, resume=True)  # same U-Net
    unet_path = Registry(registry_path(config)).checkpoint("resunet", trainkit.LEAD)
    trainkit.retrain_in_place(unet_path)
    with pytest.raises(PqpfError, match="conditioned on a U-Net with other weights than .*again with --overwrite"):
        train_diffusion(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=3, resume=True)
