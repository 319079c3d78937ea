"""Which inits, which patches, which split: the arrays-only part of patch extraction
(the stage, :mod:`pqpf.stages.patches`, reads the files and writes the patch files).

For ``save_patched_graf_mrms.py INIT LEAD``:

* **Training windows** (:func:`training_inits`): inits at the configured cycles from
  ``ndays_train`` days before INIT up to the last init whose verifying hour
  (init + LEAD) ends strictly before INIT, so every target was observed before the
  forecast being post-processed; plus, if ``previous_year``, the inits 10 to 12 months
  before INIT (``previous_year_start_days`` .. ``previous_year_end_days``): the same
  season's lead-in a year earlier.
* **Split** (:func:`assign_splits`): time is cut into contiguous blocks of
  ``split_block_days`` anchored at 1970-01-01; each block goes whole to train,
  validation or test, and inits within ``split_gap_h`` hours after a block of a
  different split are dropped, so no two neighbouring inits straddle splits. Blocks are
  stratified by the GRAF forecast's wet-area fraction (never by the observations) so
  that every split sees dry and wet weather in the configured shares; a split drawn
  wholly from a dry spell would make the validation score meaningless.
* **Sampling** (:func:`sample_patches`): candidate patch origins on a stride of
  ``candidate_stride_px`` (the last row/column flush with the domain edge). A candidate
  is rejected when more than ``max_poor_quality_fraction`` of its pixels have MRMS quality
  below ``[mrms] min_quality`` or missing MRMS. The expected number of patches of an init
  is ``patches_per_init * (0.5 + 1.5 * min(1, wet / 0.15))`` where ``wet`` is the
  domain's wet fraction (GRAF or MRMS >= ``wet_threshold_mm``): half as many on dry
  inits, up to twice as many on wet ones. Each acceptable candidate ``c`` is drawn
  independently (Poisson sampling) with probability
  ``pi_c = min(1, n * (dry_share / N + (1 - dry_share) * wet_c / sum(wet)))``, where
  ``wet_c`` is the candidate's wet-pixel fraction: wet areas are favoured while a
  ``dry_share`` of the draws ignores rain, so dry areas stay represented. The stored
  sampling weight is ``1 / pi_c`` (Horvitz-Thompson), which lets training undo the
  over-sampling of rain so that the forecast probabilities stay calibrated.
* The **smoothed-GRAF reference** probabilities are computed on the full field before
  patches are cut, so no patch edge biases them.

Everything is streamed: one init is read, sampled and appended to its split's file
before the next is read, so memory does not grow with the number of inits.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf.config import PatchesConfig
from pqpf.dates import to_epoch_seconds
from pqpf.quality import good_quality_mask

__all__ = [
    "PatchSample",
    "training_inits",
    "training_windows",
    "assign_splits",
    "candidate_origins",
    "window_fractions",
    "sample_patches",
    "cut_patches",
]

logger = logging.getLogger(__name__)

#: Expected patches per init scale from half (dry) to twice (wet fraction >= this).
_WET_SATURATION = 0.15


# --------------------------------------------------------------------------------------
# which inits, which split
# --------------------------------------------------------------------------------------


def _cycle_inits(first: dt.datetime, last: dt.datetime, cycles: tuple[int, ...]) -> list[dt.datetime]:
    day = dt.datetime(first.year, first.month, first.day)
    out = []
    while day <= last:
        for hour in sorted(cycles):
            when = day + dt.timedelta(hours=hour)
            if first <= when <= last:
                out.append(when)
        day += dt.timedelta(days=1)
    return out


def training_windows(init: dt.datetime, lead_h: int, cfg: PatchesConfig) -> list[tuple[dt.datetime, dt.datetime]]:
    """The periods (first, last init, inclusive; any hour) the training for (INIT, LEAD)
    draws its inits from, oldest first: the previous-year window, if any, then the
    ``ndays_train`` days before INIT. Its inits are those at the configured cycles
    (:func:`training_inits`); a forecast of any init in a window is in-sample.
    """
    last = init - dt.timedelta(hours=lead_h + 1)  # init + lead < INIT
    first = init - dt.timedelta(days=cfg.ndays_train)
    windows = [(first, last)]
    if cfg.previous_year:
        if cfg.previous_year_end_days >= cfg.previous_year_start_days:
            raise ValueError(
                "previous_year_start_days must exceed previous_year_end_days, got "
                f"{cfg.previous_year_start_days} and {cfg.previous_year_end_days}"
            )
        lo = init - dt.timedelta(days=cfg.previous_year_start_days)
        hi = init - dt.timedelta(days=cfg.previous_year_end_days)
        windows.insert(0, (lo, min(hi, first - dt.timedelta(hours=1))))
    return windows


def training_inits(init: dt.datetime, lead_h: int, cfg: PatchesConfig) -> list[dt.datetime]:
    """Inits used to train the model for (INIT, LEAD), oldest first.

    Parameters
    ----------
    init : datetime
        The init being post-processed; nothing verifying at or after it is used.
    lead_h : int
        Lead time (h).
    cfg : PatchesConfig
        ``ndays_train``, ``cycles`` and the previous-year window.
    """
    if any(not 0 <= c <= 23 for c in cfg.cycles):
        raise ValueError(f"cycles must be hours 0..23, got {cfg.cycles}")
    inits = [t for first, last in training_windows(init, lead_h, cfg) for t in _cycle_inits(first, last, cfg.cycles)]
    return sorted(set(inits))


def _block_of(when: dt.datetime, block_days: int) -> int:
    return int(to_epoch_seconds(when) // (86400 * block_days))


def _split_pattern(fractions: NDArray[np.float64]) -> list[str]:
    """Labels of one group of blocks: as many as the smallest held-out share needs,
    apportioned by largest remainders, with at least one block of each non-zero share."""
    held = [f for f in fractions[1:] if f > 0]
    size = int(math.ceil(1.0 / min(held) - 1e-9)) if held else 1
    exact = fractions * size
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts))[: size - counts.sum()]:
        counts[k] += 1
    for k in (1, 2):
        if fractions[k] > 0 and counts[k] == 0:
            counts[k] = 1
            counts[0] -= 1
    # Interleave: each label at its ideal evenly spaced position within the group.
    slots = []
    for name, count in zip(("train", "validation", "test"), counts):
        slots += [((k + 0.5) * size / count, name) for k in range(int(count))]
    return [name for _, name in sorted(slots)]


def assign_splits(
    inits: list[dt.datetime], cfg: PatchesConfig, wetness: dict[dt.datetime, float] | None = None
) -> dict[dt.datetime, str]:
    """Assign each init to "train", "validation" or "test" by contiguous date blocks.

    Blocks are ranked by ``wetness`` (e.g. the GRAF wet-area fraction of their inits;
    the forecast, never the observations) and labelled in turn with the repeating,
    interleaved pattern of :func:`_split_pattern` from a seeded random offset
    (systematic sampling), so every run of consecutive ranks holds the shares.
    Every split thus gets blocks from the dry and the wet end of the period's weather,
    in the configured shares; without ``wetness`` the ranking is by time. Inits within
    ``split_gap_h`` after a block of another split are left out (absent from the
    returned dict). Deterministic for a given seed, set of blocks and wetness.
    """
    if cfg.split_block_days < 1:
        raise ValueError(f"split_block_days must be >= 1, got {cfg.split_block_days}")
    fractions = np.asarray(cfg.split_fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or fractions[0] <= 0:
        raise ValueError(f"split_fractions must be three non-negative shares, training > 0, got {cfg.split_fractions}")
    fractions = fractions / fractions.sum()
    members: dict[int, list[dt.datetime]] = {}
    for t in inits:
        members.setdefault(_block_of(t, cfg.split_block_days), []).append(t)
    if not members:
        return {}
    def block_wetness(b: int) -> float:
        return float(np.mean([wetness.get(t, 0.0) for t in members[b]])) if wetness else float(b)
    ranked = sorted(members, key=lambda b: (block_wetness(b), b))
    pattern = _split_pattern(fractions)
    offset = int(np.random.default_rng([cfg.seed, len(ranked)]).integers(len(pattern)))
    split_of_block = {b: pattern[(i + offset) % len(pattern)] for i, b in enumerate(ranked)}
    # Fewer blocks than the pattern: still hold out one block for each split with a
    # share, taking training blocks from the middle of the wetness ranking.
    if len(ranked) >= 3:
        for name, share in (("validation", fractions[1]), ("test", fractions[2])):
            if share > 0 and name not in split_of_block.values():
                train_blocks = [b for b in ranked if split_of_block[b] == "train"]
                split_of_block[train_blocks[len(train_blocks) // 2]] = name
    out: dict[dt.datetime, str] = {}
    gap = dt.timedelta(hours=cfg.split_gap_h)
    for t in sorted(inits):
        b = _block_of(t, cfg.split_block_days)
        prev = b - 1
        block_start = dt.datetime(1970, 1, 1) + dt.timedelta(days=b * cfg.split_block_days)
        if (
            prev in split_of_block
            and split_of_block[prev] != split_of_block[b]
            and t - block_start < gap
        ):
            continue
        out[t] = split_of_block[b]
    return out


# --------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------


def candidate_origins(shape: tuple[int, int], patch_px: int, stride_px: int) -> NDArray[np.int32]:
    """Lower-left origins ``(j, i)`` of candidate patches, the last ones flush with the edge.

    Returns an int32 array of shape (n, 2).
    """
    ny, nx = shape
    if patch_px > ny or patch_px > nx:
        raise ValueError(f"patch_px {patch_px} exceeds the domain {shape}")
    if stride_px < 1:
        raise ValueError(f"candidate_stride_px must be >= 1, got {stride_px}")

    def starts(n: int) -> NDArray[np.int64]:
        s = np.arange(0, n - patch_px + 1, stride_px)
        return np.unique(np.append(s, n - patch_px))

    jj, ii = np.meshgrid(starts(ny), starts(nx), indexing="ij")
    return np.stack([jj.ravel(), ii.ravel()], axis=1).astype(np.int32)


def window_fractions(mask: NDArray[np.bool_], origins: NDArray[np.int32], patch_px: int) -> NDArray[np.float64]:
    """Fraction of True pixels in each patch, via a summed-area table (O(1) per patch)."""
    sat = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    sat[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1)
    j, i = origins[:, 0].astype(np.int64), origins[:, 1].astype(np.int64)
    p = patch_px
    total = sat[j + p, i + p] - sat[j, i + p] - sat[j + p, i] + sat[j, i]
    return total / float(p * p)


@dataclass(frozen=True)
class PatchSample:
    """The patches drawn from one init: origins (n, 2), sampling weights 1/pi (n,), counts."""

    origins: NDArray[np.int32]
    weights: NDArray[np.float32]
    n_candidates: int
    n_rejected_quality: int
    expected: float
    wet_fraction: float


def sample_patches(
    graf_mm: NDArray[np.float32],
    mrms_mm: NDArray[np.float32],
    quality: NDArray[np.float32],
    cfg: PatchesConfig,
    min_quality: float,
    rng: np.random.Generator,
) -> PatchSample:
    """Draw the patches of one init (see the module docstring for the design).

    Returns origins (n, 2), sampling weights ``1 / pi`` (n,), and counts for the summary.
    """
    poor = ~good_quality_mask(mrms_mm, quality, min_quality)
    wet = (np.nan_to_num(graf_mm) >= cfg.wet_threshold_mm) | (np.nan_to_num(mrms_mm) >= cfg.wet_threshold_mm)
    good = ~poor
    domain_wet = float(wet[good].mean()) if good.any() else 0.0
    origins = candidate_origins(graf_mm.shape, cfg.patch_px, cfg.candidate_stride_px)
    poor_frac = window_fractions(poor, origins, cfg.patch_px)
    ok = poor_frac <= cfg.max_poor_quality_fraction
    n_rejected = int((~ok).sum())
    origins = origins[ok]
    n_ok = len(origins)
    expected = cfg.patches_per_init * (0.5 + 1.5 * min(1.0, domain_wet / _WET_SATURATION))
    if n_ok == 0:
        return PatchSample(origins[:0], np.zeros(0, np.float32), int(ok.size), n_rejected, expected, domain_wet)
    wet_c = window_fractions(wet, origins, cfg.patch_px)
    share = np.full(n_ok, 1.0 / n_ok)
    if wet_c.sum() > 0:
        share = cfg.dry_share / n_ok + (1.0 - cfg.dry_share) * wet_c / wet_c.sum()
    pi = np.minimum(1.0, expected * share)
    take = rng.random(n_ok) < pi
    return PatchSample(
        origins[take], (1.0 / pi[take]).astype(np.float32), int(ok.size), n_rejected,
        float(pi.sum()), domain_wet,
    )


def cut_patches(array: NDArray[Any], origins: NDArray[np.int32], p: int) -> NDArray[Any]:
    """Patches (n, ..., p, p) of an array (..., ny, nx) at the given origins."""
    if len(origins) == 0:
        return np.zeros((0, *array.shape[:-2], p, p), dtype=array.dtype)
    return np.stack([array[..., j:j + p, i:i + p] for j, i in origins])
