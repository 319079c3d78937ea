"""Decoder up-sampling: no checkerboard with ``resize`` (issue 10 item 2).

A stride-2 transposed convolution applies a different kernel tap to even and odd output
points, so even a constant field comes out 2-periodic; a nearest resize followed by a
3x3 convolution applies one kernel everywhere. GroupNorm keeps a constant field constant
(its statistics are per channel), as do max-pooling, the residual blocks and the
attention gates, so with ANY weights a constant input gives a constant output away from
the zero-padded border.
"""

import dataclasses

import pytest
import torch

from pqpf.hparams import hparams_from_dict, hparams_to_dict, load_hparams
from pqpf.model.resunet import ResUNet, build_resunet

SIZE = 96
#: Well beyond the receptive-field radius of a depth-2 network (about 30 points).
MARGIN = 36


def _random_net(upsample: str, seed: int, padding: str) -> ResUNet:
    torch.manual_seed(seed)
    net = ResUNet(3, 5, base_width=4, depth=2, norm="group", upsample=upsample, padding=padding).double().eval()
    with torch.no_grad():
        for p in net.parameters():  # weights AND biases random, head included
            p.normal_(0.0, 0.5)
    return net


def _interior_spread(upsample: str, seed: int, padding: str = "zeros") -> float:
    net = _random_net(upsample, seed, padding)
    value = torch.randn(1, 3, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x = value.expand(1, 3, SIZE, SIZE).contiguous()
    with torch.no_grad():
        out = net(x)[..., MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert out.abs().max() > 1e-3  # a non-trivial output
    return float((out.amax(dim=(-2, -1)) - out.amin(dim=(-2, -1))).max())


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_resize_upsampling_keeps_a_constant_input_constant_in_the_interior(seed, padding):
    assert _interior_spread("resize", seed, padding) < 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transposed_convolution_makes_a_checkerboard_of_a_constant_input(seed):
    # The documented cause of the checkerboard: with random weights the interior output
    # of a constant input is NOT constant (2-periodic) with stride-2 transposed convs.
    assert _interior_spread("transpose", seed) > 1e-3
    assert _interior_spread("transpose", seed, "replicate") > 1e-3


def test_default_hparams_use_resize_and_old_records_load_as_transpose():
    hp = load_hparams("tiny")
    assert hp.model.upsample == "resize" and hp.model.padding == "replicate"
    record = hparams_to_dict(hp)
    del record["model"]["upsample"], record["model"]["padding"]  # a checkpoint from before the keys
    old = hparams_from_dict(record, "old checkpoint")
    assert old.model.upsample == "transpose" and old.model.padding == "zeros"
    net = build_resunet(old.model, in_channels=5)
    assert isinstance(net.ups[0], torch.nn.ConvTranspose2d)
    assert hparams_from_dict(hparams_to_dict(hp), "new").model.upsample == "resize"


def test_transpose_checkpoint_weights_load_into_the_rebuilt_network():
    hp = load_hparams("tiny")
    old_model = dataclasses.replace(hp.model, upsample="transpose", padding="zeros")
    weights = build_resunet(old_model, in_channels=5).state_dict()
    record = hparams_to_dict(dataclasses.replace(hp, model=old_model))
    del record["model"]["upsample"], record["model"]["padding"]
    rebuilt = build_resunet(hparams_from_dict(record, "old").model, in_channels=5)
    rebuilt.load_state_dict(weights)  # strict: every key and shape fits
