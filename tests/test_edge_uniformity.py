"""A dry, flat domain gives uniform probabilities up to its edges (issue 10 item 2).

Every feature is then constant, so any pattern comes from the windows: with zero-padded
3x3 convolutions each window's output has a rim (the network sees an artificial zero
border), and blending windows placed every ``stride`` points turns those rims into bands
with the stride's period, including near the domain edges. Replicate-padded convolutions
keep a constant field constant in every window, whatever the weights.
"""

import dataclasses
import datetime as dt

import numpy as np
import pytest
import torch

from pqpf.features import FEATURE_SCHEMA_VERSION, PAD_MODES, channel_names
from pqpf.hparams import hparams_to_dict, load_hparams
from pqpf.io.checkpoint import ModelRecord
from pqpf.model.resunet import build_resunet
from pqpf.normalisation import Normalisation
from pqpf.predict import LoadedModel, predict_probabilities

NY, NX = 90, 150


def _model(padding: str, seed: int) -> LoadedModel:
    torch.manual_seed(seed)
    hp = load_hparams("tiny")
    hp = dataclasses.replace(hp, model=dataclasses.replace(hp.model, padding=padding))
    names = channel_names(False)
    net = build_resunet(hp.model, len(names)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    norm = Normalisation(names, (0.3, 0.1, 0.05, 0.0, 0.0), (1.0,) * len(names))
    record = ModelRecord("resunet", hparams_to_dict(hp), "2025070700", 1, names, FEATURE_SCHEMA_VERSION,
                         norm.to_dict(), hp.model.bin_edges_mm, (0.25, 1.0), 32)
    return LoadedModel(net, norm, record, None)  # type: ignore[arg-type]


def _dry_flat(model: LoadedModel, pad_mode: str, wet_square: bool = False) -> np.ndarray:
    terrain = {k: np.zeros((NY, NX), np.float32) for k in ("height_local_difference", "slope_x", "slope_y")}
    graf = np.zeros((NY, NX), np.float32)
    if wet_square:
        graf[40:50, 70:80] = 5.0
    prob, _ = predict_probabilities(model, graf, terrain, dt.datetime(2025, 7, 7, 12), 32, 16, 8, "cpu", pad_mode)
    return prob


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("seed", [0, 1])
def test_dry_flat_domain_gives_uniform_probabilities_up_to_the_edges(pad_mode, seed):
    model = _model("replicate", seed)
    prob = _dry_flat(model, pad_mode)
    spread = prob.max(axis=(1, 2)) - prob.min(axis=(1, 2))
    assert spread.max() < 1e-3
    # ... and the model does depend on its input (a wet square changes the probabilities;
    # a uniform field of another value would not: GroupNorm removes a constant level).
    assert np.abs(_dry_flat(model, pad_mode, wet_square=True) - prob).max() > 1e-2


@pytest.mark.parametrize("pad_mode", ["reflect", "none"])
def test_zero_padded_convolutions_make_bands_on_a_dry_flat_domain(pad_mode):
    # The documented cause: the same random network with zero padding is not uniform.
    prob = _dry_flat(_model("zeros", 0), pad_mode)
    assert (prob.max(axis=(1, 2)) - prob.min(axis=(1, 2))).max() > 1e-3
