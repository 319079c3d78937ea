#!/usr/bin/env python3
"""Training throughput on the CPU: samples per second of the `laptop` configuration and
the share of step time spent waiting for data.

Builds a patch set in a temporary directory (64 x 64 patches of learnable synthetic
fields, the real feature builder), trains one epoch per setting through
pqpf.stages.train.train_resunet, and reads the per-epoch numbers the training writes to
metrics.jsonl. Baseline: the same epoch with synchronous batch assembly
(num_workers = 0); the other rows assemble the next batches in that many background
threads while the model trains.

    python bench/train.py [--hparams-name laptop] [--patches 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pqpf.config import Config, load_config, paths_below, write_config  # noqa: E402
from pqpf.features import FEATURE_SCHEMA_VERSION, build_features, channel_names  # noqa: E402
from pqpf.hparams import load_hparams  # noqa: E402
from pqpf.io.patchfile import PatchFileWriter  # noqa: E402
from pqpf.layout import patch_file_path  # noqa: E402

INIT = dt.datetime(2025, 12, 1)
LEAD = 6
THRESHOLDS = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)


def _write_patches(config, n_train: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    p = 64
    for split, n in (("train", n_train), ("validation", max(32, n_train // 8)), ("test", 16)):
        header = {"split": split, "init": "2025120100", "lead_h": LEAD, "patch_px": p,
                  "channel_names": list(channel_names()), "feature_schema_version": FEATURE_SCHEMA_VERSION,
                  "thresholds_mm": list(THRESHOLDS)}
        with PatchFileWriter(patch_file_path(config, split, INIT, LEAD), header) as writer:
            for start in range(0, n, 64):
                m = min(64, n - start)
                feats, mrms, ref = [], [], []
                for _ in range(m):
                    h = gaussian_filter(rng.normal(0, 400, (p, p)), 3)
                    gy, gx = np.gradient(h, 4000.0)
                    terrain = {"height_local_difference": h - gaussian_filter(h, 6), "slope_x": gx, "slope_y": gy}
                    z = gaussian_filter(rng.normal(size=(p, p)), 3)
                    graf = np.where(z > 0.05, np.expm1(8 * z), 0).astype(np.float32)
                    feats.append(build_features(graf, terrain, INIT))
                    mrms.append((graf * np.exp(rng.normal(0, 0.4, (p, p)))).astype(np.float32))
                    ref.append(np.stack([gaussian_filter((graf >= t).astype(np.float32), 2) for t in THRESHOLDS]))
                writer.append({
                    "features": np.stack(feats), "mrms": np.stack(mrms), "quality": np.ones((m, p, p), np.float32),
                    "ref_prob": np.stack(ref).astype(np.float16), "origins": np.zeros((m, 2), np.int32),
                    "weights": rng.uniform(1, 3, m).astype(np.float32),
                    "init_time": np.zeros(m, np.int64), "valid_time": np.full(m, 1_750_000_000, np.int64),
                })


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hparams-name", default="laptop")
    parser.add_argument("--patches", type=int, default=512, help="training patches (default 512)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", default="0,1,2", help="num_workers settings to time (default 0,1,2)")
    args = parser.parse_args()

    import torch

    from pqpf.stages.train import train_resunet as train

    torch.set_num_threads(args.threads)
    base = load_hparams(args.hparams_name)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = load_config(write_config(Config(source=root / "config.ini", paths=paths_below(root))))
        _write_patches(config, args.patches)
        for workers in (int(w) for w in args.workers.split(",")):
            hp = dataclasses.replace(base, num_workers=workers, epochs=2, patience=10)
            result = train(config, INIT, LEAD, hp, device="cpu", overwrite=True, register=False)
            metrics = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
            second = [m for m in metrics if m.get("epoch") == 2][0]  # the first epoch warms up
            rows.append((workers, second["samples_per_s"], second["data_wait_share"], second["train_seconds"]))
    print(f"\ntraining throughput, '{args.hparams_name}' hyper-parameters ({base.model.base_width} wide, depth "
          f"{base.model.depth}), batch {base.batch_size}, {args.patches} patches of 64x64, {args.threads} threads, CPU")
    print(f"{'num_workers':>11}  {'samples/s':>9}  {'data wait':>9}  {'epoch s':>7}  vs baseline")
    base_rate = rows[0][1]
    for workers, rate, wait, secs in rows:
        label = "baseline (synchronous)" if workers == 0 else f"{rate / base_rate:.2f}x"
        print(f"{workers:>11d}  {rate:>9.1f}  {100 * wait:>8.1f}%  {secs:>7.1f}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
