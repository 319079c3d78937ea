"""The noise-conditioned residual U-Net inside the denoiser."""

from __future__ import annotations

import pytest
import torch

from pqpf.diffusion.network import NETWORK_SIZES, DiffusionUNet, NetworkSize, build_network, count_parameters


def _randomise_head(net: DiffusionUNet, seed: int = 0) -> DiffusionUNet:
    """The head starts at zero (F = 0); give it weights so outputs carry information."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.head.weight.copy_(0.1 * torch.randn(net.head.weight.shape, generator=gen))
    return net.eval()


def test_named_sizes_have_the_documented_parameter_counts():
    counts = {name: count_parameters(DiffusionUNet(1, 8, name)) for name in NETWORK_SIZES}
    assert counts == {"tiny": 12_425, "laptop": 307_729, "default": 4_587_553}


@pytest.mark.parametrize("shape", [(16, 16), (37, 45), (5, 3)])
def test_output_has_the_input_shape_for_any_size(shape):
    net = _randomise_head(DiffusionUNet(1, 3, "tiny"))
    out = net(torch.randn(2, 1, *shape), torch.tensor([0.1, -0.4]), torch.randn(2, 3, *shape))
    assert out.shape == (2, 1, *shape) and torch.isfinite(out).all()


def test_output_depends_on_the_noise_level_and_the_conditioning():
    torch.manual_seed(0)
    net = _randomise_head(DiffusionUNet(1, 2, "tiny"))
    x, cond = torch.randn(1, 1, 16, 16), torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        base = net(x, torch.tensor([0.0]), cond)
        other_noise = net(x, torch.tensor([1.0]), cond)
        other_cond = net(x, torch.tensor([0.0]), cond + 1.0)
    assert (base - other_noise).abs().mean() > 1e-3 * base.abs().mean()
    assert (base - other_cond).abs().mean() > 1e-3 * base.abs().mean()


def test_network_is_local_a_point_change_moves_only_its_neighbourhood():
    torch.manual_seed(1)
    net = _randomise_head(DiffusionUNet(1, 1, "laptop"))
    x, cond = torch.randn(1, 1, 128, 128), torch.randn(1, 1, 128, 128)
    x2 = x.clone()
    x2[0, 0, 20, 20] += 5.0
    with torch.no_grad():
        diff = (net(x2, torch.zeros(1), cond) - net(x, torch.zeros(1), cond)).abs()[0, 0]
    # laptop: measured receptive radius 48 px (at the 1/4 level, 2 + 2 blocks of two 3x3
    # convolutions and the up-sampling conv, 4 px each, plus the finer levels)
    far = torch.ones_like(diff, dtype=torch.bool)
    far[: 20 + 49, : 20 + 49] = False
    assert diff[far].max().item() == 0.0
    assert diff[20, 20] > 0 and diff[20 + 40, 20].item() > 0


def test_group_norm_variant_is_not_local():
    torch.manual_seed(1)
    size = NetworkSize(widths=(8, 16), norm="group")
    net = _randomise_head(DiffusionUNet(1, 0, size))
    x = torch.randn(1, 1, 64, 64)
    x2 = x.clone()
    x2[0, 0, 5, 5] += 5.0
    with torch.no_grad():
        diff = (net(x2, torch.zeros(1), None) - net(x, torch.zeros(1), None)).abs()[0, 0]
    assert diff[50:, 50:].max() > 0  # the window-wide statistics carry the change everywhere


def test_shift_by_the_pooling_factor_shifts_the_output_in_the_interior():
    torch.manual_seed(2)
    net = _randomise_head(DiffusionUNet(1, 1, "laptop"))  # 3 levels: shifts by multiples of 4
    field = torch.randn(1, 2, 160, 160)
    with torch.no_grad():
        a = net(field[:, :1, :156, :156], torch.zeros(1), field[:, 1:, :156, :156])
        b = net(field[:, :1, 4:, 4:], torch.zeros(1), field[:, 1:, 4:, 4:])
    # points more than the receptive radius (48 px) from both inputs' edges
    torch.testing.assert_close(a[..., 52:104, 52:104], b[..., 48:100, 48:100], rtol=0, atol=1e-5)


def test_constant_input_gives_a_constant_interior_no_checkerboard():
    torch.manual_seed(3)
    net = _randomise_head(DiffusionUNet(1, 2, "laptop"))
    with torch.no_grad():
        out = net(torch.full((1, 1, 128, 128), 0.7), torch.tensor([0.3]), torch.full((1, 2, 128, 128), -0.2))
    interior = out[0, 0, 52:76, 52:76]  # beyond the receptive radius (48 px) from the edges
    assert (interior - interior.mean()).abs().max() < 1e-5 * max(1.0, interior.abs().max().item())


def test_bad_arguments_are_refused_with_the_received_value():
    with pytest.raises(ValueError, match="unknown network size 'huge'; valid: default, laptop, tiny"):
        DiffusionUNet(1, 2, "huge")
    with pytest.raises(ValueError, match="unknown norm 'batch'"):
        DiffusionUNet(1, 2, NetworkSize(widths=(8,), norm="batch"))
    net = DiffusionUNet(1, 2, "tiny")
    with pytest.raises(ValueError, match=r"cond must have shape \(B, 2, H, W\) like x_in, got None"):
        net(torch.zeros(1, 1, 8, 8), torch.zeros(1), None)
    assert build_network(1, 0, [4, 8]).size.widths == (4, 8)
