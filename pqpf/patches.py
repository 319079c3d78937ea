"""Patch extraction for training: which inits, which patches, which split.

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

import dataclasses
import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf import __version__
from pqpf.config import Config, PatchesConfig
from pqpf.dates import format_yyyymmddhh, to_epoch_seconds
from pqpf.errors import InputFileError, PqpfError
from pqpf.layout import PATCH_SPLITS, locate_graf, mrms_remapped_path, patch_file_path
from pqpf.progress import Progress
from pqpf.verification import good_quality_mask

__all__ = [
    "training_inits",
    "assign_splits",
    "candidate_origins",
    "window_fractions",
    "sample_patches",
    "PatchSummary",
    "make_patch_files",
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
    last = init - dt.timedelta(hours=lead_h + 1)  # init + lead < INIT
    first = init - dt.timedelta(days=cfg.ndays_train)
    inits = _cycle_inits(first, last, cfg.cycles)
    if cfg.previous_year:
        if cfg.previous_year_end_days >= cfg.previous_year_start_days:
            raise ValueError(
                "previous_year_start_days must exceed previous_year_end_days, got "
                f"{cfg.previous_year_start_days} and {cfg.previous_year_end_days}"
            )
        lo = init - dt.timedelta(days=cfg.previous_year_start_days)
        hi = init - dt.timedelta(days=cfg.previous_year_end_days)
        inits = _cycle_inits(lo, min(hi, first - dt.timedelta(hours=1)), cfg.cycles) + inits
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
class _Sample:
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
) -> _Sample:
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
        return _Sample(origins[:0], np.zeros(0, np.float32), int(ok.size), n_rejected, expected, domain_wet)
    wet_c = window_fractions(wet, origins, cfg.patch_px)
    share = np.full(n_ok, 1.0 / n_ok)
    if wet_c.sum() > 0:
        share = cfg.dry_share / n_ok + (1.0 - cfg.dry_share) * wet_c / wet_c.sum()
    pi = np.minimum(1.0, expected * share)
    take = rng.random(n_ok) < pi
    return _Sample(
        origins[take], (1.0 / pi[take]).astype(np.float32), int(ok.size), n_rejected,
        float(pi.sum()), domain_wet,
    )


def _cut(array: NDArray[Any], origins: NDArray[np.int32], p: int) -> NDArray[Any]:
    """Patches (n, ..., p, p) of an array (..., ny, nx) at the given origins."""
    if len(origins) == 0:
        return np.zeros((0, *array.shape[:-2], p, p), dtype=array.dtype)
    return np.stack([array[..., j:j + p, i:i + p] for j, i in origins])


# --------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------


@dataclass
class PatchSummary:
    """What :func:`make_patch_files` did."""

    inits_considered: int = 0
    inits_used: int = 0
    skipped: dict[str, list[str]] = field(default_factory=lambda: {"graf": [], "mrms": [], "gap": []})
    patches: dict[str, int] = field(default_factory=lambda: {s: 0 for s in PATCH_SPLITS})
    wet_pixels: int = 0
    valid_pixels: int = 0
    wet_threshold_mm: float = 0.25
    weights: dict[str, list[NDArray[np.float32]]] = field(default_factory=lambda: {s: [] for s in PATCH_SPLITS})
    files: dict[str, Path] = field(default_factory=dict)

    def effective_patches(self, split: str) -> float:
        """Kish's effective sample size of the weighted patches, (sum w)^2 / sum w^2."""
        if not self.weights[split]:
            return 0.0
        w = np.concatenate(self.weights[split]).astype(np.float64)
        return float(w.sum() ** 2 / max((w**2).sum(), 1e-300))

    def line(self) -> str:
        """The one summary line the CLI prints."""
        wet = 100.0 * self.wet_pixels / max(self.valid_pixels, 1)
        skipped = ", ".join(f"{len(v)} {k}" for k, v in self.skipped.items() if v) or "none"
        per_split = ", ".join(f"{k} {v} (effective {self.effective_patches(k):.0f})" for k, v in self.patches.items())
        return (
            f"inits used {self.inits_used}/{self.inits_considered} (skipped: {skipped}); "
            f"patches: {per_split}; wet pixels {wet:.1f}% (MRMS >= {self.wet_threshold_mm:g} mm)"
        )


def _extract_record(config: Config, when: dt.datetime, lead_h: int, terrain: Any, thresholds: tuple[float, ...],
                    sigma_px: float) -> tuple[dict[str, Any], float, _Sample] | None:
    """Read one init's GRAF and MRMS once and cut its patches.

    Returns the record, the GRAF wet-area fraction (which stratifies the split) and the
    sample; None if an input is missing or the GRAF file unreadable.
    """
    from pqpf.features import build_features
    from pqpf.io.grib import read_graf
    from pqpf.mrms import read_remapped_mrms
    from pqpf.reference import smoothed_exceedance

    cfg = config.patches
    valid = when + dt.timedelta(hours=lead_h)
    graf_path = locate_graf(config, when, lead_h)
    if graf_path is None or not mrms_remapped_path(config, valid).is_file():
        return None
    try:
        graf = read_graf(graf_path, lead_h, init=when)
    except InputFileError as exc:
        logger.warning("skipping %s: %s", format_yyyymmddhh(when), exc)
        return None
    if not graf.grid.same_as(terrain.grid):
        raise InputFileError(graf_path, "GRAF grid differs from the terrain file's grid")
    observed = read_remapped_mrms(config, valid, terrain.grid)
    mrms_mm = observed.data["precipitation"].astype(np.float32)
    quality = observed.data["quality"].astype(np.float32)
    graf_mm = np.nan_to_num(graf.values, nan=0.0)
    # Where GRAF is missing the input says 0 mm; such points must not be learnt from.
    quality[~np.isfinite(graf.values)] = 0.0
    wet = float(np.mean(graf_mm >= cfg.wet_threshold_mm))
    rng = np.random.default_rng([cfg.seed, to_epoch_seconds(when) // 3600, lead_h])
    sample = sample_patches(graf_mm, mrms_mm, quality, cfg, config.mrms.min_quality, rng)
    features = build_features(graf_mm, terrain, valid, time_features=False)
    ref = smoothed_exceedance(graf_mm, thresholds, sigma_px)
    p = cfg.patch_px
    n = len(sample.origins)
    record = {
        "features": _cut(features, sample.origins, p).astype(np.float32),
        "mrms": _cut(mrms_mm, sample.origins, p).astype(np.float32),
        "quality": _cut(quality, sample.origins, p).astype(np.float32),
        "ref_prob": _cut(ref, sample.origins, p).astype(np.float16),
        "origins": sample.origins,
        "weights": sample.weights,
        "init_time": np.full(n, to_epoch_seconds(when), dtype=np.int64),
        "valid_time": np.full(n, to_epoch_seconds(valid), dtype=np.int64),
    }
    return record, wet, sample


def make_patch_files(
    config: Config, init: dt.datetime, lead_h: int, overwrite: bool = False
) -> PatchSummary:
    """Write the train/validation/test patch files for (INIT, LEAD).

    Each init's GRAF and MRMS are read once: its patches are cut and spooled to a
    temporary directory beside the outputs while the GRAF wet fractions that stratify
    the split are gathered; the split is then decided and the spooled records streamed,
    in time order, into the three files. Memory holds one init at a time. Missing GRAF
    or MRMS hours are skipped and counted. Existing complete outputs are kept unless
    ``overwrite``.

    Raises
    ------
    PqpfError
        No usable init at all, or a missing terrain file.
    """
    import pickle
    import shutil
    import tempfile

    from pqpf.features import FEATURE_SCHEMA_VERSION, channel_names
    from pqpf.io.patchfile import PatchFileWriter, safe_loads
    from pqpf.reference import reference_sigma_px
    from pqpf.terrain import read_terrain

    cfg = config.patches
    outputs = {s: patch_file_path(config, s, init, lead_h) for s in PATCH_SPLITS}
    summary = PatchSummary(files=outputs, wet_threshold_mm=cfg.wet_threshold_mm)
    if not overwrite and all(p.is_file() for p in outputs.values()):
        logger.info("patch files for %s +%d h exist; use --overwrite to redo them",
                    format_yyyymmddhh(init), lead_h)
        return summary

    terrain = read_terrain(config.paths.terrain_file)
    grid = terrain.grid
    thresholds = tuple(config.probability.thresholds_mm)
    sigma_px = reference_sigma_px(config.probability, lead_h)
    inits = training_inits(init, lead_h, cfg)
    summary.inits_considered = len(inits)
    # Inits without data are counted now and kept out of the split assignment, so that
    # no held-out block is wasted on hours the archive does not have.
    available = []
    for when in inits:
        if locate_graf(config, when, lead_h) is None:
            summary.skipped["graf"].append(format_yyyymmddhh(when))
        elif not mrms_remapped_path(config, when + dt.timedelta(hours=lead_h)).is_file():
            summary.skipped["mrms"].append(format_yyyymmddhh(when))
        else:
            available.append(when)
    if not available:
        raise PqpfError(
            f"no training inits for {format_yyyymmddhh(init)} +{lead_h} h: of {len(inits)} candidate inits "
            f"({format_yyyymmddhh(inits[0]) if inits else '-'}..{format_yyyymmddhh(inits[-1]) if inits else '-'}), "
            f"{len(summary.skipped['graf'])} have no GRAF file for +{lead_h} h and "
            f"{len(summary.skipped['mrms'])} no remapped MRMS for their valid hour"
        )

    config.paths.patch_dir.mkdir(parents=True, exist_ok=True)
    spool = Path(tempfile.mkdtemp(prefix=".spool-", dir=config.paths.patch_dir))
    try:
        # pass 1: read every init once, spool its record, note the forecast's wetness
        wetness: dict[dt.datetime, float] = {}
        samples: dict[dt.datetime, _Sample] = {}
        progress = Progress(len(available), "inits", logger)
        for when in available:
            got = _extract_record(config, when, lead_h, terrain, thresholds, sigma_px)
            if got is None:
                summary.skipped["graf"].append(format_yyyymmddhh(when))
                progress.step(note="input missing or unreadable")
                continue
            record, wetness[when], samples[when] = got
            with open(spool / f"{format_yyyymmddhh(when)}.pkl", "wb") as fh:
                pickle.dump(record, fh, protocol=pickle.HIGHEST_PROTOCOL)
            progress.step(note=f"{len(record['weights'])} patches")
        splits = assign_splits(sorted(wetness), cfg, wetness)
        summary.skipped["gap"] = [format_yyyymmddhh(t) for t in sorted(wetness) if t not in splits]
        if not splits:
            raise PqpfError(f"no usable inits for {format_yyyymmddhh(init)} +{lead_h} h "
                            f"({len(summary.skipped['graf'])} without readable GRAF)")
        # pass 2: the spooled records, in time order, into their split's file
        header_common = {
            "init": format_yyyymmddhh(init),
            "lead_h": int(lead_h),
            "patch_px": int(cfg.patch_px),
            "channel_names": list(channel_names(False)),
            "feature_schema_version": int(FEATURE_SCHEMA_VERSION),
            "thresholds_mm": [float(t) for t in thresholds],
            "reference_sigma_px": float(sigma_px),
            "min_quality": float(config.mrms.min_quality),
            "grid": {k: v for k, v in dataclasses.asdict(grid).items()},
            "grid_fingerprint": grid.fingerprint(),
            "terrain_smoothing_sigma_px": float(terrain.smoothing_sigma_px),
            "sampling": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in dataclasses.asdict(cfg).items()},
            "pqpf_version": __version__,
        }
        writers = {
            s: PatchFileWriter(outputs[s], {**header_common, "split": s,
                                            "inits_planned": [format_yyyymmddhh(t) for t, v in splits.items() if v == s]})
            for s in PATCH_SPLITS
        }
        for w in writers.values():
            w.__enter__()
        failed: BaseException | None = None
        try:
            for when, split in sorted(splits.items()):
                record = safe_loads((spool / f"{format_yyyymmddhh(when)}.pkl").read_bytes())
                writers[split].append(record)
                writers[split].trailer_extra.setdefault("inits_used", []).append(format_yyyymmddhh(when))
                summary.inits_used += 1
                summary.patches[split] += len(record["weights"])
                good = good_quality_mask(record["mrms"], record["quality"], config.mrms.min_quality)
                summary.valid_pixels += int(good.sum())
                summary.wet_pixels += int((record["mrms"][good] >= cfg.wet_threshold_mm).sum())
                summary.weights[split].append(samples[when].weights)
        except BaseException as exc:  # leave no partial outputs behind
            failed = exc
            raise
        finally:
            for w in writers.values():
                if failed is None:
                    w.__exit__(None, None, None)
                else:
                    w.__exit__(type(failed), failed, failed.__traceback__)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return summary
