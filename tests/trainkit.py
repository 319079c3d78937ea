"""Small, learnable patch files and a config in a temporary directory, for training tests.

MRMS is a biased, noisy version of GRAF with an orographic boost (so features carry
information); quality has a poor region. No synthetic archive is needed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from pqpf.config import Config, GrafConfig, load_config, paths_below
from pqpf.config import write_config as write_config_file
from pqpf.dates import to_epoch_seconds
from pqpf.features import FEATURE_SCHEMA_VERSION, build_features, channel_names
from pqpf.io.patchfile import PatchFileWriter
from pqpf.layout import patch_file_path

INIT = dt.datetime(2025, 12, 1, 0)
LEAD = 6
THRESHOLDS = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)


def write_config(root: Path) -> Path:
    """config.ini in ``root`` with the standard layout below it."""
    return write_config_file(Config(source=root / "config.ini", paths=paths_below(root),
                                    graf=GrafConfig(lead_max_h=24)))


def _patches(n: int, p: int, rng: np.random.Generator, t0: int):
    feats, mrms, qual, ref, valid = [], [], [], [], []
    for k in range(n):
        h = gaussian_filter(rng.normal(0, 400, (p + 8, p + 8)), 3)[4:-4, 4:-4]
        gy, gx = np.gradient(h, 4000.0)
        diff = h - gaussian_filter(h, 4)
        terrain = {"height_local_difference": diff, "slope_x": gx, "slope_y": gy}
        wet = gaussian_filter(rng.normal(size=(p, p)), 2.5)
        graf = np.where(wet > 0.05, np.expm1(6 * wet), 0.0).astype(np.float32)
        truth = graf * 0.7 * (1 + 2 * np.clip(diff / 300, -0.5, 1)) * np.exp(rng.normal(0, 0.3, (p, p)))
        q = np.ones((p, p), np.float32)
        if k % 5 == 0:
            q[: p // 2] = 0.2
        f = build_features(graf, terrain, dt.datetime(2025, 11, 1) + dt.timedelta(hours=int(k)))
        feats.append(f)
        mrms.append(truth.astype(np.float32))
        qual.append(q)
        ref.append(np.stack([gaussian_filter((graf >= t).astype(np.float32), 1.5) for t in THRESHOLDS]))
        valid.append(t0 + 3600 * k)
    return (np.stack(feats), np.stack(mrms), np.stack(qual), np.stack(ref).astype(np.float16),
            np.array(valid, np.int64))


def write_patch_files(config, n=(48, 16, 16), p: int = 16, seed: int = 0, spread_days: bool = False,
                      grid=None) -> None:
    """Patch files of ``n`` train/validation/test patches; ``spread_days``: each block of
    8 patches of a split comes from its own init date (else all from one day); ``grid``
    (a :class:`pqpf.grid.Grid`): the grid the headers say the patches were cut from."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "validation", "test"), n):
        header = {"split": split, "init": "2025120100", "lead_h": LEAD, "patch_px": p,
                  "channel_names": list(channel_names(False)), "feature_schema_version": FEATURE_SCHEMA_VERSION,
                  "thresholds_mm": list(THRESHOLDS)}
        if grid is not None:
            header.update(grid=dataclasses.asdict(grid), grid_fingerprint=grid.fingerprint())
        with PatchFileWriter(patch_file_path(config, split, INIT, LEAD), header) as w:
            for chunk in range(0, count, 8):
                m = min(8, count - chunk)
                day = chunk // 8 if spread_days else 0
                f, mr, q, r, v = _patches(m, p, rng, to_epoch_seconds(INIT) - 86400 * (20 - day))
                w.append({"features": f, "mrms": mr, "quality": q, "ref_prob": r,
                          "origins": np.zeros((m, 2), np.int32),
                          "weights": rng.uniform(1.0, 3.0, m).astype(np.float32),
                          "init_time": v - 3600 * LEAD, "valid_time": v})


def make(root: Path, **kw):
    config = load_config(write_config(root))
    write_patch_files(config, **kw)
    return config


def retrain_in_place(checkpoint_path: Path):
    """Write other weights into a checkpoint, as a retraining at the same path would; returns
    the original :class:`pqpf.io.checkpoint.Checkpoint` (to put back)."""
    import dataclasses

    from pqpf.io.checkpoint import load_checkpoint, save_checkpoint

    original = load_checkpoint(checkpoint_path)
    weights = {k: v.clone() for k, v in original.inference_weights().items()}
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] += 0.01
    save_checkpoint(checkpoint_path, dataclasses.replace(original, net=weights, ema=None))
    return original
