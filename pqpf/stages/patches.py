"""The ``save_patched_graf_mrms.py`` stage: GRAF, remapped MRMS and terrain -> patch files.

Which inits, patches and splits is decided by :mod:`pqpf.sampling` (the design is in
its docstring); this module reads the inputs, cuts the patches and writes the three
patch files (format: :mod:`pqpf.io.patchfile`). Each init's GRAF and MRMS are read
once: its patches are spooled to a temporary directory beside the outputs while the
GRAF wet fractions that stratify the split are gathered; the split is then decided and
the spooled records streamed, in time order, into the three files. Memory holds one init
at a time. Missing GRAF or MRMS hours are skipped and counted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import pickle
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf.config import Config, PatchesConfig
from pqpf.dates import format_yyyymmddhh, to_epoch_seconds
from pqpf.errors import InputFileError, PqpfError
from pqpf.features import FEATURE_SCHEMA_VERSION, build_features, channel_names
from pqpf.io.atomic import SPOOL_PREFIX, owner_tag, remove_stale_temporaries
from pqpf.io.grib import read_graf
from pqpf.io.mrms_file import read_remapped_mrms
from pqpf.io.patchfile import PatchFileWriter, patch_file_header, read_patch_header, safe_loads
from pqpf.io.terrain_file import read_terrain
from pqpf.layout import PATCH_SPLITS, locate_graf, mrms_remapped_path, patch_file_path
from pqpf.progress import Progress
from pqpf.quality import good_quality_mask
from pqpf.reference import reference_sigma_px, smoothed_exceedance
from pqpf.sampling import PatchSample, assign_splits, cut_patches, sample_patches, training_inits
from pqpf.stages.common import kept
from pqpf.terrain import Terrain

__all__ = ["PatchSummary", "make_patch_files"]

logger = logging.getLogger(__name__)


@dataclass
class PatchSummary:
    """What :func:`make_patch_files` did."""

    inits_considered: int = 0
    inits_used: int = 0
    #: Inits assigned to each split (before patches are cut).
    split_inits: dict[str, int] = field(default_factory=lambda: {s: 0 for s in PATCH_SPLITS})
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
        per_split = ", ".join(f"{k} {v} from {self.split_inits[k]} inits (effective {self.effective_patches(k):.0f})"
                              for k, v in self.patches.items())
        return (
            f"inits used {self.inits_used}/{self.inits_considered} (skipped: {skipped}); "
            f"patches: {per_split}; wet pixels {wet:.1f}% (MRMS >= {self.wet_threshold_mm:g} mm)"
        )


def _extract_record(config: Config, when: dt.datetime, lead_h: int, terrain: Terrain, thresholds: tuple[float, ...],
                    sigma_px: float) -> tuple[dict[str, Any], float, PatchSample] | None:
    """Read one init's GRAF and MRMS once and cut its patches.

    Returns the record, the GRAF wet-area fraction (which stratifies the split) and the
    sample; None if an input is missing or the GRAF file unreadable.
    """
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
    observed = read_remapped_mrms(mrms_remapped_path(config, valid), terrain.grid)
    mrms_mm = observed.precipitation_mm.astype(np.float32)
    quality = observed.quality.astype(np.float32)
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
        "features": cut_patches(features, sample.origins, p).astype(np.float32),
        "mrms": cut_patches(mrms_mm, sample.origins, p).astype(np.float32),
        "quality": cut_patches(quality, sample.origins, p).astype(np.float32),
        "ref_prob": cut_patches(ref, sample.origins, p).astype(np.float16),
        "origins": sample.origins,
        "weights": sample.weights,
        "init_time": np.full(n, to_epoch_seconds(when), dtype=np.int64),
        "valid_time": np.full(n, to_epoch_seconds(valid), dtype=np.int64),
    }
    return record, wet, sample


def _available_inits(config: Config, init: dt.datetime, lead_h: int, summary: PatchSummary) -> list[dt.datetime]:
    """The training inits with both inputs on disk; the others are counted as skipped now,
    so that no held-out block is wasted on hours the archive does not have."""
    inits = training_inits(init, lead_h, config.patches)
    summary.inits_considered = len(inits)
    available = []
    for when in inits:
        if locate_graf(config, when, lead_h) is None:
            summary.skipped["graf"].append(format_yyyymmddhh(when))
        elif not mrms_remapped_path(config, when + dt.timedelta(hours=lead_h)).is_file():
            summary.skipped["mrms"].append(format_yyyymmddhh(when))
        else:
            available.append(when)
    if not available:
        span = f"{format_yyyymmddhh(inits[0])}..{format_yyyymmddhh(inits[-1])}" if inits else "-"
        raise PqpfError(
            f"no training inits for {format_yyyymmddhh(init)} +{lead_h} h: of {len(inits)} candidate inits "
            f"({span}), {len(summary.skipped['graf'])} have no GRAF file for +{lead_h} h and "
            f"{len(summary.skipped['mrms'])} no remapped MRMS for their valid hour"
        )
    return available


def _spool_records(config: Config, available: list[dt.datetime], lead_h: int, terrain: Terrain, spool: Path,
                   summary: PatchSummary) -> tuple[dict[dt.datetime, float], dict[dt.datetime, PatchSample]]:
    """Pass 1: read every init once, spool its record, note the forecast's wetness."""
    thresholds = tuple(config.probability.thresholds_mm)
    sigma_px = reference_sigma_px(config.probability, lead_h)
    wetness: dict[dt.datetime, float] = {}
    samples: dict[dt.datetime, PatchSample] = {}
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
    return wetness, samples


def _sampling(cfg: PatchesConfig) -> dict[str, Any]:
    """``[patches]`` as a patch file's header records it (plain values)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def _same(name: str, made: Any, asked: Any) -> bool:
    """Whether a recorded setting is the one asked for (cycles: as sets, the order is not used)."""
    if name == "[patches] cycles" and isinstance(made, (list, tuple)):
        return sorted(set(made)) == sorted(set(asked))
    return bool(made == asked)


def _check_kept(config: Config, lead_h: int, outputs: dict[str, Path]) -> None:
    """Refuse to keep patch files cut with other settings than the configuration asks for
    now: a rerun that only logged "exists" would train on, say, 40 patches from each of 24
    days where 12 from each of 50 were asked for. Compared: every ``[patches]`` key (one
    the header does not record, added since the file was written, as its default; the
    cycles as a set), the thresholds, the reference smoothing, the quality minimum, the
    feature schema and, when the terrain file is there, the grid and terrain smoothing."""
    want: dict[str, Any] = {
        "[probability] thresholds_mm": [float(t) for t in config.probability.thresholds_mm],
        "reference smoothing (px)": float(reference_sigma_px(config.probability, lead_h)),
        "[mrms] min_quality": float(config.mrms.min_quality), "feature schema": FEATURE_SCHEMA_VERSION}
    keys = ["thresholds_mm", "reference_sigma_px", "min_quality", "feature_schema_version"]
    if config.paths.terrain_file.is_file():
        terrain = read_terrain(config.paths.terrain_file)
        want.update({"grid": terrain.grid.fingerprint(), "terrain smoothing (px)": terrain.smoothing_sigma_px})
        keys += ["grid_fingerprint", "terrain_smoothing_sigma_px"]
    asked_patches, defaults = _sampling(config.patches), _sampling(PatchesConfig())
    for path in outputs.values():
        try:
            header = read_patch_header(path)
        except InputFileError as exc:
            raise PqpfError(f"{exc}; --overwrite replaces it") from None
        have = dict(zip(want, (header.get(k) for k in keys)))
        recorded = {**defaults, **(header.get("sampling") or {})}
        pairs = [(name, have[name], asked) for name, asked in want.items()]
        pairs += [(f"[patches] {k}", recorded[k], v) for k, v in asked_patches.items()]
        differ = [f"{name} {made} (asked {asked})" for name, made, asked in pairs if not _same(name, made, asked)]
        if differ:
            raise PqpfError(f"{path} was made with other settings: {', '.join(differ)}; --overwrite cuts the "
                            f"three split files again")


def _headers(config: Config, init: dt.datetime, lead_h: int, terrain: Terrain, splits: dict[dt.datetime, str]
             ) -> dict[str, dict[str, Any]]:
    cfg = config.patches
    grid = terrain.grid
    return {
        split: patch_file_header(
            split=split, init=format_yyyymmddhh(init), lead_h=lead_h, patch_px=cfg.patch_px,
            channel_names=channel_names(False), feature_schema_version=FEATURE_SCHEMA_VERSION,
            thresholds_mm=config.probability.thresholds_mm,
            reference_sigma_px=reference_sigma_px(config.probability, lead_h),
            min_quality=config.mrms.min_quality, grid=dict(dataclasses.asdict(grid)),
            grid_fingerprint=grid.fingerprint(), terrain_smoothing_sigma_px=terrain.smoothing_sigma_px,
            sampling=_sampling(cfg),
            inits_planned=[format_yyyymmddhh(t) for t, v in splits.items() if v == split],
        )
        for split in PATCH_SPLITS
    }


def _write_splits(config: Config, outputs: dict[str, Path], headers: dict[str, dict[str, Any]],
                  splits: dict[dt.datetime, str], samples: dict[dt.datetime, PatchSample], spool: Path,
                  summary: PatchSummary) -> None:
    """Pass 2: the spooled records, in time order, into their split's file. Either all
    three files appear complete or none does."""
    with ExitStack() as stack:
        writers = {s: stack.enter_context(PatchFileWriter(outputs[s], headers[s])) for s in PATCH_SPLITS}
        for when, split in sorted(splits.items()):
            record = safe_loads((spool / f"{format_yyyymmddhh(when)}.pkl").read_bytes())
            writers[split].append(record)
            writers[split].trailer_extra.setdefault("inits_used", []).append(format_yyyymmddhh(when))
            summary.inits_used += 1
            summary.patches[split] += len(record["weights"])
            good = good_quality_mask(record["mrms"], record["quality"], config.mrms.min_quality)
            summary.valid_pixels += int(good.sum())
            summary.wet_pixels += int((record["mrms"][good] >= config.patches.wet_threshold_mm).sum())
            summary.weights[split].append(samples[when].weights)


def _check_splits(splits: dict[dt.datetime, str], cfg: PatchesConfig, summary: PatchSummary) -> None:
    """Count the inits of each split; refuse, before anything is written, a split that
    the configured shares ask for but that got no init (training would fail later with
    advice that does not help)."""
    for name in splits.values():
        summary.split_inits[name] += 1
    empty = [name for name, share in zip(PATCH_SPLITS, cfg.split_fractions)
             if share > 0 and summary.split_inits[name] == 0]
    if empty:
        counts = ", ".join(f"{k} {v}" for k, v in summary.split_inits.items())
        raise PqpfError(
            f"the {' and '.join(empty)} split would be empty ({len(splits)} inits in blocks of "
            f"{cfg.split_block_days} days: {counts}); in [patches] lower split_block_days, raise ndays_train, "
            f"or change split_fractions = {', '.join(f'{f:g}' for f in cfg.split_fractions)}")


def make_patch_files(config: Config, init: dt.datetime, lead_h: int, overwrite: bool = False) -> PatchSummary:
    """Write the train/validation/test patch files for (INIT, LEAD).

    Existing complete outputs are kept unless ``overwrite``, if they were cut with the
    settings the configuration now gives.

    Raises
    ------
    PqpfError
        No usable init at all, a missing terrain file, or kept files cut with other settings.
    """
    cfg = config.patches
    outputs = {s: patch_file_path(config, s, init, lead_h) for s in PATCH_SPLITS}
    summary = PatchSummary(files=outputs, wet_threshold_mm=cfg.wet_threshold_mm)
    if not overwrite and all(p.is_file() for p in outputs.values()):
        _check_kept(config, lead_h, outputs)  # before kept() logs that they are kept
    if kept(*outputs.values(), overwrite=overwrite):
        return summary
    terrain = read_terrain(config.paths.terrain_file)
    available = _available_inits(config, init, lead_h, summary)
    config.paths.patch_dir.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_temporaries(config.paths.patch_dir)
    if removed:
        logger.info("removed %d temporaries of killed runs from %s", removed, config.paths.patch_dir)
    spool = Path(tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{owner_tag()}-", dir=config.paths.patch_dir))
    try:
        wetness, samples = _spool_records(config, available, lead_h, terrain, spool, summary)
        splits = assign_splits(sorted(wetness), cfg, wetness)
        summary.skipped["gap"] = [format_yyyymmddhh(t) for t in sorted(wetness) if t not in splits]
        if not splits:
            raise PqpfError(f"no usable inits for {format_yyyymmddhh(init)} +{lead_h} h "
                            f"({len(summary.skipped['graf'])} without readable GRAF)")
        _check_splits(splits, cfg, summary)
        headers = _headers(config, init, lead_h, terrain, splits)
        _write_splits(config, outputs, headers, splits, samples, spool, summary)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return summary
