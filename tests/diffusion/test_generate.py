"""Loading a trained diffusion model and sampling full-field members from it."""

import numpy as np
import pytest
import torch
import trainkit

from pqpf.diffusion.generate import load_diffusion, sample_members
from pqpf.errors import InputFileError
from pqpf.hparams import load_diffusion_hparams, load_hparams
from pqpf.io.checkpoint import load_checkpoint
from pqpf.stages.train import train_resunet
from pqpf.stages.train_diffusion import train_diffusion


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    config = trainkit.make(tmp_path_factory.mktemp("gen"))
    unet = train_resunet(config, trainkit.INIT, trainkit.LEAD, load_hparams("tiny"), device="cpu", max_epochs=1)
    diff = train_diffusion(config, trainkit.INIT, trainkit.LEAD, load_diffusion_hparams("diffusion_tiny"),
                           device="cpu", max_epochs=2)
    return unet.best_checkpoint, diff.best_checkpoint


def _cond(model, shape=(40, 36), seed=0):
    rng = np.random.default_rng(seed)
    cond = rng.normal(0, 1, (len(model.cond_names), *shape)).astype(np.float32)
    central = np.abs(rng.normal(0, 0.5, shape)).astype(np.float32)
    return cond, central


def test_loaded_model_samples_with_the_ema_weights(trained):
    _, path = trained
    ckpt = load_checkpoint(path)
    model = load_diffusion(ckpt, path, "cpu")
    state = model.denoiser.state_dict()
    assert all(torch.equal(state[k], ckpt.ema[k]) for k in ckpt.ema)
    assert model.denoiser.sigma_data == pytest.approx(ckpt.model.extra["sigma_data"])
    assert model.sampler.n_steps == 6 and model.sampler.rho == 7.0


def test_a_unet_checkpoint_is_refused(trained):
    unet_path, _ = trained
    with pytest.raises(InputFileError, match="not a diffusion one"):
        load_diffusion(load_checkpoint(unet_path), unet_path, "cpu")


def test_members_are_deterministic_by_seed_whatever_the_member_batch(trained):
    torch.set_num_threads(1)
    _, path = trained
    model = load_diffusion(load_checkpoint(path), path, "cpu")
    cond, central = _cond(model)
    # 16-px windows, stride 8, on a 40 x 36 field: stitched at every step
    a = sample_members(model, cond, central, 3, seed=7, window_px=16, stride_px=8, member_batch=3)
    b = sample_members(model, cond, central, 3, seed=7, window_px=16, stride_px=8, member_batch=1)
    c = sample_members(model, cond, central, 3, seed=8, window_px=16, stride_px=8, member_batch=3)
    assert a.shape == (3, 40, 36) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert np.abs(a - c).mean() > 1e-3  # another seed, other members
    assert np.abs(a[0] - a[1]).mean() > 1e-3  # members differ from each other
    with pytest.raises(ValueError, match="channels"):
        sample_members(model, cond[:-1], central, 1, seed=0, window_px=16, stride_px=8)
