#!/usr/bin/env python3
"""Which ``[inference]`` window/stride settings: speed against MONAI, seams and skill, in one run.

Anchor: MONAI's ``sliding_window_inference`` with 64-px windows at stride 32 (the
training patch size, four evaluations per grid point) and the tent weight, the setting
pqpf used before this benchmark chose its defaults. Each candidate ``N/S`` is pqpf's
stitcher with N-px windows at stride S, run on the network as the inference stage runs
it (batch norms folded into the convolutions, :func:`pqpf.model.resunet.fold_batchnorm`).
The network is fully convolutional, so windows larger than the training patch are
legal; with group norm (``--norm group``, the sets before 2026-12-04) its statistics
then come from a larger window, with batch norm (the default) nothing depends on the
window, which is why the skill is measured and not assumed.

1. Speed: the 'default' ResUNet (random weights, eval mode) over the full
   1308 x 1524 domain; wall time of each candidate and of the anchor in the same run,
   and the ratio candidate / anchor (target <= 0.5).
2. Seams: RMS of the K bin probabilities against one whole-field forward pass (no
   seams) on a sub-domain, same network.
3. Skill (with ``--demo-dir``): the demo's trained network run by the inference stage
   on every held-out init with each setting, then the verification stage; Brier skill
   vs the smoothed-GRAF reference at 0.25 / 1 / 2.5 mm (target: within 0.003 of 64/32).

    python bench/inference_settings.py [--demo-dir demo_run] [--settings 64/32 256/224 ...]
        [--norm batch|group] [--threads 2] [--batch 16] [--shape 1308 1524] [--seam-shape 768 768] [--repeats 1]

Run it alone on the machine: the ratios are only meaningful without other load.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_RATIO = 0.5
SKILL_TOLERANCE = 0.003
SKILL_THRESHOLDS = (0.25, 1.0, 2.5)
IN_CHANNELS = 5
ANCHOR = (64, 32)


def _setting(text: str) -> tuple[int, int]:
    try:
        window, stride = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WINDOW/STRIDE such as 256/224, got {text!r}") from None
    if not 1 <= stride <= window:
        raise argparse.ArgumentTypeError(f"need 1 <= stride <= window, got {text!r}")
    return window, stride


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", type=_setting, nargs="+",
                        default=[(64, 32), (64, 48), (128, 96), (256, 224), (512, 480)], metavar="N/S")
    parser.add_argument("--batch", type=int, default=16, help="windows per model call (64-px windows; "
                        "larger windows get proportionally fewer so each call holds about as many pixels)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--norm", choices=("batch", "group"), default=None,
                        help="norm of the timed network (default: the 'default' set's); the skill "
                             "part runs the demo's trained network, whatever its norm")
    parser.add_argument("--shape", type=int, nargs=2, default=(1308, 1524), metavar=("NY", "NX"))
    parser.add_argument("--seam-shape", type=int, nargs=2, default=(768, 768), metavar=("NY", "NX"))
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per method (median reported)")
    parser.add_argument("--demo-dir", type=Path, default=None,
                        help="a finished run_demo.py work directory (skill part; skipped without it)")
    parser.add_argument("--seed", type=int, default=20251201)
    return parser.parse_args(argv)


def _batch_for(window: int, batch_64: int) -> int:
    return max(1, round(batch_64 * (64 / window) ** 2))


def _network(args: argparse.Namespace):
    """The 'default' ResUNet with random weights (and ``--norm``), eval mode; the head's
    weights are O(1) (not the near-zero start of training) so the outputs vary in space
    and seams would show."""
    import torch

    from pqpf.hparams import load_hparams
    from pqpf.model.resunet import build_resunet

    torch.manual_seed(args.seed)
    hp = load_hparams("default").model
    if args.norm:
        hp = dataclasses.replace(hp, norm=args.norm)
    net = build_resunet(hp, in_channels=IN_CHANNELS).eval()
    torch.nn.init.normal_(net.head.weight)
    return net


def _speed(args: argparse.Namespace) -> dict[tuple[int, int], float]:
    """Wall time (median) of each setting and of MONAI's anchor on the full domain."""
    import torch
    from monai.inferers import sliding_window_inference

    from pqpf.model.resunet import fold_batchnorm
    from pqpf.stitching import stitch, tent_weights_2d

    net = _network(args)
    ours = fold_batchnorm(net)
    field = np.random.default_rng(args.seed).standard_normal((IN_CHANNELS, *args.shape)).astype(np.float32)

    def softmax(z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(z, dim=1)

    def monai() -> np.ndarray:
        n, s = ANCHOR
        with torch.inference_mode():
            out = sliding_window_inference(
                torch.from_numpy(field)[None], roi_size=(n, n), sw_batch_size=args.batch,
                predictor=lambda z: softmax(net(z)), overlap=(n - s - 0.5) / n, mode="constant",
                roi_weight_map=torch.from_numpy(tent_weights_2d(n).astype(np.float32)))
        return out[0].numpy()

    runners = {"MONAI 64/32": monai}
    for n, s in args.settings:
        runners[f"ours {n}/{s}"] = (lambda n=n, s=s: stitch(ours, field, n, s, _batch_for(n, args.batch),
                                                             post=softmax, progress=False))
    with torch.inference_mode():
        net(torch.zeros((2, IN_CHANNELS, 64, 64)))  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runners}
    for repeat in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            print(f"  run {repeat + 1}/{args.repeats} {name:16s} {times[name][-1]:7.2f} s", flush=True)
    median = {name: statistics.median(t) for name, t in times.items()}
    anchor = median["MONAI 64/32"]
    return {(n, s): median[f"ours {n}/{s}"] / anchor for n, s in args.settings} | {(0, 0): anchor}


def _seams(args: argparse.Namespace) -> dict[tuple[int, int], float]:
    """RMS against one whole-field pass on the seam sub-domain, per setting."""
    import torch

    from pqpf.model.resunet import fold_batchnorm
    from pqpf.stitching import stitch

    net = _network(args)
    ours = fold_batchnorm(net)
    field = np.random.default_rng(args.seed + 1).standard_normal((IN_CHANNELS, *args.seam_shape)).astype(np.float32)
    with torch.inference_mode():
        truth = torch.softmax(net(torch.from_numpy(field)[None]), dim=1)[0].numpy()
    out = {}
    for n, s in args.settings:
        probs = stitch(ours, field, n, s, _batch_for(n, args.batch), post=lambda z: torch.softmax(z, dim=1),
                       progress=False)
        out[(n, s)] = float(np.sqrt(np.mean((probs - truth) ** 2)))
    return out


def _held_out(demo_dir: Path) -> tuple[Path, list[dt.datetime], int]:
    """The demo's config, held-out inits (those with a probabilities file) and lead."""
    from pqpf.config import load_config

    config_path = next((p for p in (demo_dir / "config.ini", demo_dir / "archive" / "config.ini") if p.is_file()),
                       None)
    if config_path is None:
        raise SystemExit(f"--demo-dir {demo_dir}: no config.ini (run run_demo.py first)")
    config = load_config(config_path)
    inits, lead = [], 0
    for path in sorted(config.paths.probs_dir.glob("*_probs.nc")):
        stamp, lead_text = path.name.split("_")[:2]
        inits.append(dt.datetime.strptime(stamp, "%Y%m%d%H"))
        lead = int(lead_text.rstrip("h"))
    if not inits:
        raise SystemExit(f"--demo-dir {demo_dir}: no probabilities files in {config.paths.probs_dir}")
    return config_path, inits, lead


def _skill(args: argparse.Namespace) -> dict[tuple[int, int], tuple[float, ...]]:
    """Held-out Brier skill vs the reference at SKILL_THRESHOLDS, per setting."""
    from pqpf.config import load_config
    from pqpf.stages.inference import run_inference
    from pqpf.stages.verify import verify_range

    config_path, inits, lead = _held_out(args.demo_dir)
    base = load_config(config_path)
    out: dict[tuple[int, int], tuple[float, ...]] = {}
    with tempfile.TemporaryDirectory(prefix="pqpf-bench-settings-") as tmp:
        for n, s in args.settings:
            where = Path(tmp) / f"{n}_{s}"
            config = dataclasses.replace(
                base,
                paths=dataclasses.replace(base.paths, probs_dir=where / "probs", plots_dir=where / "plots"),
                inference=dataclasses.replace(base.inference, window_px=n, stride_px=s,
                                              batch_size=_batch_for(n, args.batch)),
                output=dataclasses.replace(base.output, formats=("netcdf",)),
            )
            for init in inits:
                run_inference(config, init, lead, device="cpu", plot=False)
            report = verify_range(config, inits[0], inits[-1], lead, plot=False)
            out[(n, s)] = tuple(_bss(report.result["per_threshold"], t) for t in SKILL_THRESHOLDS)
    return out


def _bss(rows: list[dict], threshold: float) -> float:
    """Brier skill vs the smoothed-GRAF reference at ``threshold`` from scores.json's rows."""
    for row in rows:
        if abs(row["threshold_mm"] - threshold) < 1e-9:
            return float(row["bss_vs_ref"])
    raise SystemExit(f"the demo's thresholds {[r['threshold_mm'] for r in rows]} do not include {threshold} mm")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if ANCHOR not in args.settings:
        args.settings.insert(0, ANCHOR)
    norm = type(_network(args).encoders[0].norm1).__name__
    print(f"'default' ResUNet ({norm}), domain {args.shape[0]} x {args.shape[1]}, threads {args.threads}, "
          f"batch {args.batch} x (64/N)^2 windows per call; anchor: MONAI sliding_window_inference 64/32")
    ratios = _speed(args)
    seams = _seams(args)
    skills = _skill(args) if args.demo_dir else {}
    anchor_skill = skills.get(ANCHOR)
    print(f"\nMONAI 64/32: {ratios[(0, 0)]:.2f} s")
    head = "  setting   ours/MONAI   seam RMS  " + "".join(f"  BSS {t:g} mm" for t in SKILL_THRESHOLDS)
    print(head)
    for setting in args.settings:
        line = f"  {setting[0]:>3d}/{setting[1]:<4d} {ratios[setting]:9.3f}   {seams[setting]:.2e}"
        if setting in skills:
            line += "".join(f"  {v:+10.4f}" for v in skills[setting])
            if anchor_skill is not None and setting != ANCHOR:
                worst = max(abs(a - b) for a, b in zip(skills[setting], anchor_skill))
                line += f"   |dBSS| max {worst:.4f} {'ok' if worst <= SKILL_TOLERANCE else 'TOO LARGE'}"
        ok = ratios[setting] <= TARGET_RATIO
        print(line + f"   speed {'PASS' if ok else 'FAIL'} (target <= {TARGET_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
