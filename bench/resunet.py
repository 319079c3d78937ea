#!/usr/bin/env python3
"""Forward-pass speed of pqpf's ResUNet for the shipped hyper-parameter sets.

Baseline, measured in the same run: MONAI's residual ``UNet`` (2 residual units per
level) with the same widths, depth, input channels and bins. Prints, per set, the
parameter counts, the convolution multiply-accumulates per patch (machine-independent),
the time per 64 x 64 patch (forward only, batch 32, no grad) and the
ratio ResUNet / baseline. Also times one forward+backward of the ``tiny`` model on a
(16, 5, 64, 64) batch.

    python bench/resunet.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _time_forward(net, x, repeats: int) -> float:
    import torch

    with torch.inference_mode():
        net(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            best = min(best, time.perf_counter() - t0)
    return best


def _conv_gmacs(net, x) -> float:
    """Multiply-accumulates of the convolutions for one sample (GMAC), counted by hooks."""
    import torch
    from torch import nn

    total = [0]

    def hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            total[0] += inputs[0].numel() * module.out_channels // module.groups * k
        else:
            total[0] += output.numel() * module.in_channels // module.groups * k

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.inference_mode():
        net(x[:1])
    for h in handles:
        h.remove()
    return total[0] / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    import torch
    from monai.networks.nets import UNet

    from pqpf.features import channel_names
    from pqpf.hparams import load_hparams
    from pqpf.model.resunet import build_resunet as build_model
    from pqpf.model.resunet import count_parameters

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c_in = len(channel_names())
    x = torch.randn(args.batch, c_in, 64, 64)
    print(f"threads={args.threads} batch={args.batch} patch=64x64, best of {args.repeats}")
    print(f"{'set':8s} {'params':>9s} {'base params':>11s} {'GMAC':>6s} {'base GMAC':>9s} "
          f"{'ms/patch':>9s} {'base ms/patch':>13s} {'ratio':>6s}")
    for name in ("tiny", "laptop", "default"):
        mh = load_hparams(name).model
        net = build_model(mh, c_in).eval()
        widths = tuple(mh.base_width * 2**level for level in range(mh.depth + 1))
        base = UNet(
            spatial_dims=2, in_channels=c_in, out_channels=len(mh.bin_edges_mm), channels=widths,
            strides=(2,) * mh.depth, num_res_units=2,
            norm=mh.norm if mh.norm != "group" else ("group", {"num_groups": 2}),
        ).eval()
        t_net = _time_forward(net, x, args.repeats) / args.batch * 1e3
        t_base = _time_forward(base, x, args.repeats) / args.batch * 1e3
        print(
            f"{name:8s} {count_parameters(net):9d} {count_parameters(base):11d} "
            f"{_conv_gmacs(net, x):6.3f} {_conv_gmacs(base, x):9.3f} "
            f"{t_net:9.2f} {t_base:13.2f} {t_net / t_base:6.2f}"
        )
    net = build_model(load_hparams("tiny").model, c_in)
    xb = torch.randn(16, c_in, 64, 64)
    net(xb).sum().backward()  # warm-up
    t0 = time.perf_counter()
    net(xb).sum().backward()
    print(f"tiny forward+backward (16, {c_in}, 64, 64): {time.perf_counter() - t0:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
