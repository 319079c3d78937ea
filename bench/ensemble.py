#!/usr/bin/env python3
"""Cost of a diffusion ensemble member over the full grid, against one U-Net inference pass.

Anchor: one full-field pass of the 'default' ResUNet (the probabilities product) with
pqpf's stitcher at the ``[inference]`` defaults, timed in the same run. For each named
diffusion network size ('laptop', 'default'; random weights, eval mode, 1 data channel
and ``--cond`` conditioning channels) the EDM denoiser is run over the same domain with
the stitched sampler's window loop (:func:`pqpf.diffusion.sampler.stitched_denoiser`) at
``--evals`` noise levels; Heun's sampler with n steps calls it 2n - 1 times, so

    time per member = time per evaluation x (2n - 1) / members per batch

(the sampler's own arithmetic is a few element-wise operations per step and is
negligible). ``--full`` also runs the real 18-step sampler once for one member to check
that extrapolation. Peak memory: the largest extra RSS over the process's RSS before
each run (glibc heap trimmed between runs).

    python bench/ensemble.py [--shape 1308 1524] [--members 2] [--steps 18] [--evals 2]
        [--window 128 --stride 96] [--threads 2] [--full]

Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IN_CHANNELS = 5


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=2, default=(1308, 1524), metavar=("NY", "NX"))
    parser.add_argument("--sizes", nargs="+", default=["laptop", "default"], help="diffusion network sizes")
    parser.add_argument("--cond", type=int, default=8, help="conditioning channels (features + U-Net output)")
    parser.add_argument("--members", type=int, default=2, help="members denoised together (batched)")
    parser.add_argument("--steps", type=int, default=18, help="Heun steps (StormCast: 18)")
    parser.add_argument("--evals", type=int, default=2, help="timed denoiser evaluations per size")
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument("--batch", type=int, default=4, help="windows per network call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="also run the whole sampler once (1 member)")
    parser.add_argument("--seed", type=int, default=20251203)
    return parser.parse_args(argv)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class _Peak:
    """Extra RSS (MB) over the start of a ``with`` block, sampled every 5 ms."""

    def __enter__(self) -> _Peak:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self.start = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        self.extra = max(self.peak, _rss_mb()) - self.start


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    import torch

    from pqpf.config_sections import InferenceConfig
    from pqpf.diffusion.edm import EDMDenoiser
    from pqpf.diffusion.network import build_network, count_parameters
    from pqpf.diffusion.sampler import SamplerConfig, heun_sample, member_generators, stitched_denoiser
    from pqpf.hparams import load_hparams
    from pqpf.model.norms import WINDOW_INDEPENDENT_NORMS
    from pqpf.model.resunet import build_resunet, fold_batchnorm
    from pqpf.stitching import inference_window, stitch, windows_per_call

    torch.set_num_threads(args.threads)
    ny, nx = args.shape
    rng = np.random.default_rng(args.seed)
    evals_per_member = 2 * args.steps - 1

    torch.manual_seed(args.seed)
    unet_hp = load_hparams("default").model
    unet = fold_batchnorm(build_resunet(unet_hp, in_channels=IN_CHANNELS).eval())
    # The default [inference] settings as the inference stage resolves them (64-px patches).
    settings = InferenceConfig()
    window, stride = inference_window(settings.window_px, settings.stride_px, 64,
                                      unet_hp.norm in WINDOW_INDEPENDENT_NORMS)
    # Edge padding as the inference stage does it: half a training patch (predict.LoadedModel.stitching).
    pad = min(window, 64) // 2
    features = np.pad(rng.standard_normal((IN_CHANNELS, ny, nx)).astype(np.float32),
                      ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    with _Peak() as anchor:
        stitch(unet, features, window, stride, windows_per_call(settings.batch_size, window),
               post=lambda z: torch.softmax(z, dim=1), pad_mode="none", progress=False)
    print(f"domain {ny} x {nx}, threads {args.threads}; anchor: 'default' ResUNet ({unet_hp.norm} norm), one "
          f"stitched pass (window {window}, stride {stride}): {anchor.seconds:.2f} s, +{anchor.extra:.0f} MB")
    print(f"diffusion: {args.members} members per batch, {args.steps} Heun steps = {evals_per_member} "
          f"denoiser evaluations, windows {args.window}/{args.stride}, {args.cond} conditioning channels")

    cond = torch.from_numpy(rng.standard_normal((args.cond, ny, nx)).astype(np.float32))
    for size in args.sizes:
        torch.manual_seed(args.seed)
        denoiser = EDMDenoiser(build_network(1, args.cond, size)).eval()
        denoise = stitched_denoiser(denoiser, cond, args.window, args.stride, batch_size=args.batch)
        x = torch.from_numpy(rng.standard_normal((args.members, 1, ny, nx)).astype(np.float32))
        seconds, extra = [], []
        for sigma in np.geomspace(40.0, 0.05, args.evals):
            with _Peak() as run, torch.inference_mode():
                denoise(x * float(sigma), float(sigma))
            seconds.append(run.seconds)
            extra.append(run.extra)
        per_eval = float(np.median(seconds))
        per_member = per_eval * evals_per_member / args.members
        print(f"  {size:8s} {count_parameters(denoiser) / 1e6:5.2f} M parameters: {per_eval:7.2f} s per "
              f"evaluation of {args.members} members -> {per_member:7.1f} s per member = "
              f"{per_member / anchor.seconds:6.1f}x one U-Net pass; peak +{max(extra):.0f} MB")
        if args.full:
            with _Peak() as run:
                heun_sample(denoise, (1, ny, nx), member_generators(args.seed, [0]), SamplerConfig(n_steps=args.steps))
            print(f"           whole sampler, 1 member: {run.seconds:.1f} s "
                  f"({run.seconds / anchor.seconds:.1f}x one U-Net pass), peak +{run.extra:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
