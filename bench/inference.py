#!/usr/bin/env python3
"""Full-field inference: pqpf's stitcher against MONAI's sliding_window_inference and a naive loop.

All three blend the same windows (size N, stride S, the last one flush with each edge)
with the same tent weight ``psi (x) psi`` and run the same model (random weights, eval
mode) with the same batch size and thread count on the same random (5, H, W) input:

1. ours: :func:`pqpf.stitching.stitch` with softmax as ``post``, timed three times:
   keeping all K bin probabilities (like-for-like with MONAI, which accumulates every
   output channel), with the reduction to the exceedance probabilities of the configured
   thresholds (what ``resunet_inference`` does), and with ``channels_last=False`` (the
   windows in the contiguous layout MONAI uses, to show what the layout contributes);
2. MONAI ``sliding_window_inference`` with the tent passed as ``roi_weight_map``;
3. a naive loop: one window per model call, weights and their sum accumulated per window.

Prints the median wall time of each, the ratios ours/MONAI and naive/ours, the window
counts of ours and MONAI, the seam error (RMS difference from the whole-field forward
pass, which has no seams) of each, the extra memory each needs (peak RSS during the run
minus RSS before it), and PASS/FAIL against the target ours <= 0.9 x MONAI.

    python bench/inference.py [--model resunet|cnn] [--window 64] [--stride 32]
        [--batch 16] [--threads 2] [--shape 1308 1524] [--repeats R] [--truth-shape H W]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_RATIO = 0.9
IN_CHANNELS = 5


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("resunet", "cnn"), default="resunet",
                        help="the pqpf ResUNet ('default' hyper-parameters) or a small fixed-seed CNN")
    parser.add_argument("--window", type=int, default=64, help="window size N (px)")
    parser.add_argument("--stride", type=int, default=32, help="window stride S (px)")
    parser.add_argument("--batch", type=int, default=16, help="windows per model call")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--shape", type=int, nargs=2, default=(1308, 1524), metavar=("NY", "NX"))
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per method, median reported (default 3 for cnn, 1 for resunet)")
    parser.add_argument("--truth-shape", type=int, nargs=2, default=None, metavar=("NY", "NX"),
                        help="domain of the seam-error check (default: the full domain; the "
                             "whole-field 'default' ResUNet pass at 1308 x 1524 peaks at about 3 GB "
                             "RSS, so pass a smaller sub-domain on a small machine; the stitchers are "
                             "then run again on that sub-domain)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive batch-1 loop")
    parser.add_argument("--seed", type=int, default=20251201)
    return parser.parse_args(argv)


def _build_model(name: str, model_hparams, seed: int):
    """The ResUNet of ``model_hparams`` or the small CNN, random weights, eval mode."""
    import torch

    torch.manual_seed(seed)
    n_bins = len(model_hparams.bin_edges_mm)
    if name == "resunet":
        from pqpf.model.resunet import build_resunet as build_model

        return build_model(model_hparams, in_channels=IN_CHANNELS).eval()
    # Small fully convolutional CNN, zero padding, about 30 M multiply-adds per 64 x 64 window.
    width = 16
    return torch.nn.Sequential(
        torch.nn.Conv2d(IN_CHANNELS, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(width, n_bins, 3, padding=1),
    ).eval()


def _naive(model, softmax, field, window_px: int, stride_px: int) -> np.ndarray:
    """The straightforward loop: one window per call, weights summed as we go."""
    import torch

    from pqpf.stitching import tent_weights_2d, window_starts

    x = torch.from_numpy(field)
    w = torch.from_numpy(tent_weights_2d(window_px).astype(np.float32))
    _, ny, nx = field.shape
    acc = None
    wsum = torch.zeros((ny, nx))
    with torch.no_grad():
        for y in window_starts(ny, window_px, stride_px):
            for x0 in window_starts(nx, window_px, stride_px):
                out = softmax(model(x[None, :, y : y + window_px, x0 : x0 + window_px]))[0]
                if acc is None:
                    acc = torch.zeros((out.shape[0], ny, nx))
                acc[:, y : y + window_px, x0 : x0 + window_px] += out * w
                wsum[y : y + window_px, x0 : x0 + window_px] += w
    return (acc / wsum).numpy()


def _monai_windows(shape: tuple[int, int], window_px: int, overlap: float) -> list[tuple[int, int]]:
    """Window starts MONAI uses for this overlap (its scan interval is int(N * (1 - overlap)))."""
    from monai.data.utils import dense_patch_slices

    interval = int(window_px * (1 - overlap))
    slices = dense_patch_slices(shape, (window_px, window_px), (interval, interval))
    return [(s[0].start, s[1].start) for s in slices]


def _rss_mb() -> float:
    """Current resident set size of this process (Linux /proc), MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so RSS growth measures the next run."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the RSS deltas are then lower bounds
        pass


class _RssPeak:
    """Samples the RSS every 5 ms in a thread; ``peak - start`` is a run's extra memory."""

    def __enter__(self) -> _RssPeak:
        self.start = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    import torch
    from monai.inferers import sliding_window_inference

    from pqpf.config import ProbabilityConfig
    from pqpf.hparams import load_hparams
    from pqpf.ordinal import exceedance_matrix
    from pqpf.stitching import stitch, tent_weights_2d, window_starts

    torch.set_num_threads(args.threads)
    n, s, batch = args.window, args.stride, args.batch
    ny, nx = args.shape
    repeats = args.repeats or (3 if args.model == "cnn" else 1)
    truth_shape = tuple(args.truth_shape or (ny, nx))
    if not (n <= truth_shape[0] <= ny and n <= truth_shape[1] <= nx):
        raise SystemExit(f"--truth-shape must lie between the window and --shape, got {truth_shape}")

    model_hparams = load_hparams("default").model
    edges = model_hparams.bin_edges_mm
    model = _build_model(args.model, model_hparams, args.seed)
    with torch.inference_mode():
        n_bins = model(torch.zeros((1, IN_CHANNELS, n, n))).shape[1]
    reduction = exceedance_matrix(edges, ProbabilityConfig().thresholds_mm)  # (T, K)
    field = np.random.default_rng(args.seed).standard_normal((IN_CHANNELS, ny, nx)).astype(np.float32)
    n_params = sum(p.numel() for p in model.parameters())

    def softmax(z):
        return torch.softmax(z, dim=1)

    def predictor(z):
        return softmax(model(z))

    # Slightly less than 1 - S/N so that MONAI's int(N * (1 - overlap)) is S despite rounding.
    overlap = (n - s - 0.5) / n
    tent = torch.from_numpy(tent_weights_2d(n).astype(np.float32))
    ours_windows = [(int(a), int(b)) for a in window_starts(ny, n, s) for b in window_starts(nx, n, s)]
    monai_windows = _monai_windows((ny, nx), n, overlap)

    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "ours (K bins, like-for-like)": lambda f: stitch(model, f, n, s, batch, post=softmax),
        "ours (reduced to thresholds)": lambda f: stitch(model, f, n, s, batch, post=softmax,
                                                          reduction=reduction),
        "MONAI sliding_window_inference": lambda f: _monai(f),
        "ours (K bins, contiguous windows)": lambda f: stitch(model, f, n, s, batch, post=softmax,
                                                               channels_last=False),
    }
    if not args.no_naive:
        runners["naive batch-1 loop"] = lambda f: _naive(model, softmax, f, n, s)

    def _monai(f: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = sliding_window_inference(
                torch.from_numpy(f)[None], roi_size=(n, n), sw_batch_size=batch, predictor=predictor,
                overlap=overlap, mode="constant", roi_weight_map=tent,
            )
        return out[0].numpy()

    print(f"model {args.model} ({n_params / 1e6:.2f} M parameters, K={n_bins} bins), domain {ny} x {nx}, "
          f"window {n}, stride {s}, batch {batch}, threads {args.threads}, repeats {repeats}")
    print(f"windows: ours {len(ours_windows)}, MONAI {len(monai_windows)} "
          f"(overlap={overlap:.6f}), identical placement: {sorted(ours_windows) == sorted(monai_windows)}")
    if sorted(ours_windows) != sorted(monai_windows):
        print("WARNING: window placements differ; the comparison is not like-for-like")

    with torch.inference_mode():  # warm-up (allocator, oneDNN primitives)
        model(torch.from_numpy(field[:, :n, :n].copy())[None].expand(batch, -1, -1, -1).contiguous())

    times: dict[str, list[float]] = {name: [] for name in runners}
    extra_mb: dict[str, float] = {name: 0.0 for name in runners}
    outputs: dict[str, np.ndarray] = {}
    names = list(runners)
    for repeat in range(repeats):
        # Rotate the order so that no method always runs right after another's clean-up.
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            outputs.pop(name, None)
            gc.collect()
            _malloc_trim()
            with _RssPeak() as rss:
                start = time.perf_counter()
                outputs[name] = runners[name](field)
                times[name].append(time.perf_counter() - start)
            extra_mb[name] = max(extra_mb[name], rss.peak - rss.start)
            print(f"  run {repeat + 1}/{repeats} {name:34s} {times[name][-1]:8.2f} s", flush=True)

    median = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    print(f"\nwall time: median [best, worst] of {repeats}; peak extra RSS during the run "
          f"(input {field.nbytes / 2**20:.0f} MB, process {_rss_mb():.0f} MB now):")
    for name in runners:
        spread = f" [{best[name]:.2f}, {max(times[name]):.2f}]" if repeats > 1 else ""
        print(f"  {name:34s} {median[name]:8.2f} s{spread}   +{extra_mb[name]:6.0f} MB")

    ours_k, ours_t = "ours (K bins, like-for-like)", "ours (reduced to thresholds)"
    monai, naive = "MONAI sliding_window_inference", "naive batch-1 loop"
    like = median[ours_k] / median[monai]
    reduced = median[ours_t] / median[monai]
    print("\nratios from medians (from best times in brackets; best is less sensitive to other load):")
    print(f"  ours/MONAI like-for-like, both accumulate K={n_bins} channels: "
          f"{like:.3f} [{best[ours_k] / best[monai]:.3f}]")
    print(f"  ours/MONAI with reduction to {reduction.shape[0]} thresholds (production path): "
          f"{reduced:.3f} [{best[ours_t] / best[monai]:.3f}]")
    contiguous = "ours (K bins, contiguous windows)"
    print(f"  ours contiguous windows/MONAI: {median[contiguous] / median[monai]:.3f} "
          f"[{best[contiguous] / best[monai]:.3f}]")
    if naive in median:
        print(f"  naive/ours (like-for-like): {median[naive] / median[ours_k]:.2f} [{best[naive] / best[ours_k]:.2f}]")
    diff = np.abs(outputs["ours (K bins, like-for-like)"] - outputs["MONAI sliding_window_inference"]).max()
    print(f"\nmax |ours - MONAI| = {diff:.2e} (same windows and weights: should be float32 rounding)")

    # Seam error against the seamless whole-field forward pass.
    tny, tnx = truth_shape
    sub = field[:, :tny, :tnx].copy()
    with _RssPeak() as rss, torch.inference_mode():
        start = time.perf_counter()
        truth = predictor(torch.from_numpy(sub)[None])[0].numpy()
        whole_s = time.perf_counter() - start
    print(f"\nwhole-field forward pass on {tny} x {tnx}: {whole_s:.2f} s, +{rss.peak - rss.start:.0f} MB")
    where = ("the full domain" if (tny, tnx) == (ny, nx)
             else f"the {tny} x {tnx} sub-domain at the origin (stitched again there)")
    print(f"seam error, RMS of the K bin probabilities against the whole-field forward pass on {where}:")
    for name, run in runners.items():
        out = outputs[name] if (tny, tnx) == (ny, nx) else run(sub)
        if out.shape[0] == n_bins:
            rms = float(np.sqrt(np.mean((out - truth) ** 2)))
        else:  # reduced: compare with the reduced truth
            rms = float(np.sqrt(np.mean((out - np.einsum("tk,kyx->tyx", reduction, truth)) ** 2)))
            name += " [vs reduced truth]"
        print(f"  {name:54s} {rms:.3e}")

    def verdict(ratio: float) -> str:
        return f"{'PASS' if ratio <= TARGET_RATIO else 'FAIL'} ({ratio:.3f})"

    print(f"\ntarget ours <= {TARGET_RATIO} x MONAI, like-for-like: medians {verdict(like)}, "
          f"best times {verdict(best[ours_k] / best[monai])}; with reduction: medians "
          f"{verdict(reduced)}, best times {verdict(best[ours_t] / best[monai])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
