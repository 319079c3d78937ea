import dataclasses
import datetime as dt

import numpy as np
import pytest

from pqpf.config import PatchesConfig
from pqpf.sampling import (
    assign_splits,
    candidate_origins,
    sample_patches,
    training_inits,
    window_fractions,
)

CFG = PatchesConfig()


def test_training_window_ends_before_init_and_adds_previous_year():
    init = dt.datetime(2025, 12, 1, 0)
    inits = training_inits(init, 12, CFG)
    recent = [t for t in inits if t > init - dt.timedelta(days=61)]
    assert recent[0] == dt.datetime(2025, 10, 2, 0)
    # the last init verifies (init + 12 h) strictly before INIT
    assert recent[-1] == dt.datetime(2025, 11, 30, 0)
    assert all(t + dt.timedelta(hours=12) < init for t in inits)
    assert all(t.hour in (0, 12) for t in inits)
    old = [t for t in inits if t < init - dt.timedelta(days=61)]
    assert old[0] == init - dt.timedelta(days=365) and old[-1] == init - dt.timedelta(days=304)
    assert len(recent) == 2 * 60 - 1 and len(old) == 2 * 61 + 1
    no_prev = training_inits(init, 12, dataclasses.replace(CFG, previous_year=False))
    assert no_prev == recent


def test_splits_are_contiguous_blocks_with_gaps():
    cfg = dataclasses.replace(CFG, split_block_days=5, split_gap_h=12)
    inits = training_inits(dt.datetime(2025, 12, 1), 6, dataclasses.replace(cfg, previous_year=False))
    splits = assign_splits(inits, cfg)
    assert set(splits.values()) == {"train", "validation", "test"}
    kept = sorted(splits)
    # every pair of consecutive kept inits 12 h apart lies in the same split
    for a, b in zip(kept, kept[1:]):
        if b - a == dt.timedelta(hours=12):
            assert splits[a] == splits[b], (a, b)
    # blocks are whole: same block -> same split
    blocks = {}
    for t, s in splits.items():
        blocks.setdefault(int(t.timestamp() // (86400 * 5)), set()).add(s)
    assert all(len(s) == 1 for s in blocks.values())
    counts = {s: list(splits.values()).count(s) for s in ("train", "validation", "test")}
    assert counts["train"] > counts["validation"] > 0 and counts["test"] > 0
    assert assign_splits(inits, cfg) == splits  # deterministic


def test_candidates_cover_edges_and_window_fractions_are_exact():
    origins = candidate_origins((100, 130), 64, 16)
    assert origins[:, 0].max() == 36 and origins[:, 1].max() == 66
    assert (origins >= 0).all()
    rng = np.random.default_rng(0)
    mask = rng.random((100, 130)) < 0.3
    frac = window_fractions(mask, origins, 64)
    brute = np.array([mask[j:j + 64, i:i + 64].mean() for j, i in origins])
    assert np.allclose(frac, brute, atol=1e-12)


def test_sampling_favours_rain_rejects_poor_quality_and_weights_invert_inclusion():
    rng = np.random.default_rng(1)
    ny, nx = 160, 200
    graf = np.zeros((ny, nx), np.float32)
    graf[20:80, 20:100] = 3.0  # a wet area in the lower left
    mrms = graf.copy()
    quality = np.ones((ny, nx), np.float32)
    quality[:, 150:] = 0.1  # a radar hole on the right
    cfg = dataclasses.replace(CFG, patch_px=32, candidate_stride_px=8, patches_per_init=30, dry_share=0.2)
    counts_wet, counts_all, weights = 0, 0, []
    for seed in range(200):
        s = sample_patches(graf, mrms, quality, cfg, 0.5, np.random.default_rng(seed))
        assert (s.origins[:, 1] + 32 <= 150 + 0.3 * 32).all()  # poor-quality windows rejected
        wet = np.array([(graf[j:j + 32, i:i + 32] > 0).mean() for j, i in s.origins])
        counts_wet += int((wet > 0.5).sum())
        counts_all += len(s.origins)
        weights.append(s.weights)
    assert counts_wet / counts_all > 0.5  # the wet area holds far less than half the candidates
    # Horvitz-Thompson: the mean over draws of sum(weights) estimates the candidate count
    s0 = sample_patches(graf, mrms, quality, cfg, 0.5, rng)
    n_ok = s0.n_candidates - s0.n_rejected_quality
    assert np.mean([w.sum() for w in weights]) == pytest.approx(n_ok, rel=0.1)
    # a dry init gets fewer patches than a wet one
    dry = sample_patches(np.zeros_like(graf), np.zeros_like(mrms), quality, cfg, 0.5, rng)
    assert dry.expected == pytest.approx(0.5 * 30) and s0.expected > dry.expected


def test_split_shares_follow_config_and_every_split_sees_wet_and_dry_blocks():
    from pqpf.sampling import _split_pattern

    assert sorted(_split_pattern(np.array([0.7, 0.15, 0.15]))) == ["test"] + ["train"] * 5 + ["validation"]
    assert sorted(_split_pattern(np.array([0.6, 0.2, 0.2]))) == ["test"] + ["train"] * 3 + ["validation"]
    cfg = dataclasses.replace(CFG, split_block_days=2, split_fractions=(0.6, 0.2, 0.2), split_gap_h=0)
    start = dt.datetime(2025, 1, 1)
    inits = [start + dt.timedelta(hours=12 * k) for k in range(4 * 50)]  # 100 blocks
    rng = np.random.default_rng(3)
    # long dry spells: wetness persists over ~10 days, like the weather that broke the old split
    spell = np.repeat(rng.random(21) ** 2, 10)[: len(inits)]
    wetness = {t: float(w) for t, w in zip(inits, spell)}
    splits = assign_splits(inits, cfg, wetness)
    for name, share in (("train", 0.6), ("validation", 0.2), ("test", 0.2)):
        members = [t for t, s in splits.items() if s == name]
        assert len(members) / len(splits) == pytest.approx(share, abs=0.03)
        wet = np.array([wetness[t] for t in members])
        # each split spans the whole range of wetness, not one spell
        assert wet.min() < np.quantile(spell, 0.2) and wet.max() > np.quantile(spell, 0.8)
        assert wet.mean() == pytest.approx(spell.mean(), rel=0.25)


def test_three_blocks_still_give_every_split_one():
    cfg = dataclasses.replace(CFG, split_block_days=2, split_fractions=(0.6, 0.2, 0.2), split_gap_h=0)
    inits = [dt.datetime(2025, 7, 1) + dt.timedelta(hours=12 * k) for k in range(12)]  # 3 blocks
    for seed in range(10):
        splits = assign_splits(inits, dataclasses.replace(cfg, seed=seed), {t: 0.1 for t in inits})
        assert set(splits.values()) == {"train", "validation", "test"}
