"""A small denoiser trained briefly with the masked EDM loss learns a known mixture."""

from __future__ import annotations

import math

import torch
from torch import nn

from pqpf.diffusion.edm import EDMDenoiser, masked_edm_loss
from pqpf.diffusion.network import DiffusionUNet, NetworkSize
from pqpf.diffusion.sampler import SamplerConfig, heun_sample, member_generators, whole_field_denoiser

W, MU, S = (0.3, 0.7), (-1.0, 1.5), (0.2, 0.3)


def _mixture(n: int, weight_first: torch.Tensor | float, gen: torch.Generator) -> torch.Tensor:
    first = torch.rand(n, generator=gen) < weight_first
    z = torch.randn(n, generator=gen)
    return torch.where(first, MU[0] + S[0] * z, MU[1] + S[1] * z)


class _MLP(nn.Module):
    """F(x_in, c_noise): a pointwise MLP on [x_in, cos/sin(w c_noise)]."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.register_buffer("freq", torch.logspace(0, 2, 8))
        self.body = nn.Sequential(nn.Linear(17, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                  nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1))

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        angles = c_noise[:, None] * self.freq
        return self.body(torch.cat([x_in, torch.cos(angles), torch.sin(angles)], dim=1))


def _train(denoiser, batches, steps, lr, p_mean=-1.2):
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(denoiser.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        clean, weight, cond = batches(gen)
        loss, _ = masked_edm_loss(denoiser, clean, weight, cond, sigma_data=denoiser.sigma_data, p_mean=p_mean,
                                  generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return denoiser.eval()


def test_mlp_denoiser_learns_a_one_dimensional_mixture():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    sigma_data = math.sqrt(sum(w * (s**2 + m**2) for w, m, s in zip(W, MU, S, strict=True)))  # 1.396

    def batches(gen):
        clean = _mixture(512, W[0], gen)[:, None]
        weight = (torch.rand(512, 1, generator=gen) > 0.1).float()  # 10 % masked, filled with NaN
        return torch.where(weight > 0, clean, torch.full_like(clean, float("nan"))), weight, None

    # 2500 steps: ~7 s on one idle thread
    denoiser = _train(EDMDenoiser(_MLP(), sigma_data), batches, steps=2500, lr=2e-3)
    x = heun_sample(lambda z, s: denoiser(z, s, None), (1,), member_generators(0, range(8000)),
                    SamplerConfig(n_steps=32))[:, 0]
    first = x < 0.25
    print(f"first-component weight {first.float().mean().item():.3f} (truth 0.3)")
    assert abs(first.float().mean().item() - W[0]) < 0.04  # binomial standard error 0.005
    assert abs(x[first].median().item() - MU[0]) < 0.1 and abs(x[~first].median().item() - MU[1]) < 0.1
    assert abs(x[first].std().item() - S[0]) < 0.08 and abs(x[~first].std().item() - S[1]) < 0.08


def test_unet_denoiser_learns_a_mixture_whose_weight_is_set_by_the_conditioning():
    # Each pixel is an independent draw from the mixture; its first-component weight is
    # 0.2 in fields whose conditioning channel is 0 and 0.8 where it is 1. One level (5 x 5
    # receptive field) suits independent pixels. P_mean is EDM's -1.2 moved by
    # ln(sigma_data / 0.5) = ln(1.4 / 0.5) = +1.0, so the training noise levels cover the
    # sigma ~ 1 where the two components separate (measured: -1.2 gives 0.25/0.76, -0.2 0.22/0.78).
    torch.manual_seed(1)
    torch.set_num_threads(1)
    size = NetworkSize(widths=(16,), blocks_per_level=1, embed_dim=32, n_frequencies=8)

    def batches(gen):
        cond = (torch.rand(8, 1, 1, 1, generator=gen) < 0.5).float().expand(8, 1, 16, 16)
        clean = _mixture(8 * 256, (0.2 + 0.6 * cond).flatten(), gen).reshape(8, 1, 16, 16)
        return clean, torch.ones_like(clean), cond

    # 800 steps: ~10 s on one idle thread
    denoiser = _train(EDMDenoiser(DiffusionUNet(1, 1, size), 1.4), batches, steps=800, lr=3e-3, p_mean=-0.2)
    weights = []
    for value in (0.0, 1.0):
        cond = torch.full((1, 16, 16), value)
        x = heun_sample(whole_field_denoiser(denoiser, cond), (1, 16, 16), member_generators(0, range(32)),
                        SamplerConfig(n_steps=32))
        weights.append((x < 0.25).float().mean().item())  # 8192 draws: standard error 0.0044
    print(f"first-component weight: cond 0 {weights[0]:.3f} (truth 0.2), cond 1 {weights[1]:.3f} (truth 0.8)")
    assert abs(weights[0] - 0.2) < 0.05 and abs(weights[1] - 0.8) < 0.05, weights
