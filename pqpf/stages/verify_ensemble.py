"""The ``verify_ensemble.py`` stage: ensemble scores over a range of inits, beside the U-Net's.

For every init in ``BEGIN..END`` (any hour) with an ensemble store
(:func:`pqpf.layout.ensemble_path`), the U-Net probabilities file of the same init
(:func:`pqpf.layout.probs_path`) and remapped MRMS for its valid hour, the members, the
U-Net and raw GRAF are scored against MRMS on the points where MRMS quality is good
(:func:`pqpf.quality.good_quality_mask`) and every forecast is present, with true-area
weights (:func:`pqpf.verify.area.area_weights`), one init at a time
(:class:`pqpf.verify.ensemble_verifier.EnsembleVerifier`: memory does not grow with the
number of inits). The U-Net's distribution is rebuilt from its file's exceedance
probabilities at every bin edge.

How the CRPS is compared like for like: the members' fair CRPS (Ferro 2014) on the
unbinned MRMS amounts and the U-Net's CRPS of its continuous distribution (piecewise
linear CDF in the bins, dry bin a point mass at 0 mm, exponential tail:
:func:`pqpf.verify.ensemble.crps_binned_continuous`) on the same amounts, at exactly the
same points with the same weights. Both are then the CRPS (mm) of the same
observations; the fair CRPS removes the finite-ensemble penalty, so members drawn from
the U-Net's own distribution score its CRPS in expectation. (``verify_resunet.py``'s
CRPS moves amounts to bin edges and is not comparable.)

Outputs in ``{plots_dir}/verification_ensemble_{BEGIN}_{END}_{LEAD}h/``:
``ensemble_scores.json``, ``ensemble_scores.csv`` (:mod:`pqpf.verify.ensemble_report`)
and the figures of :mod:`pqpf.plot.ensemble_scores`. A rerun over the same files and
settings reuses ``ensemble_scores.json``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pqpf import __version__
from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh, hour_range
from pqpf.errors import InputFileError, PqpfError
from pqpf.grid import Grid
from pqpf.io.ensemble_file import EnsembleForecast, read_ensemble
from pqpf.io.mrms_file import read_remapped_mrms
from pqpf.io.probs_file import read_probabilities
from pqpf.io.scores_file import SCORES_SCHEMA, read_scores_json, write_scores_csv, write_scores_json
from pqpf.layout import ensemble_path, ensemble_verification_dir, mrms_remapped_path, probs_path
from pqpf.ordinal import bin_probs_from_exceedance
from pqpf.plot.ensemble_scores import (
    plot_fss_scales,
    plot_member_reliability,
    plot_object_sizes,
    plot_rank_histogram,
    plot_spectra,
    plot_spread_skill,
)
from pqpf.progress import Progress
from pqpf.quality import good_quality_mask
from pqpf.verify.area import area_weights
from pqpf.verify.ensemble_report import ensemble_csv_rows
from pqpf.verify.ensemble_verifier import EnsembleCase, EnsembleSettings, EnsembleVerifier
from pqpf.verify.objects import DEFAULT_OBJECT_THRESHOLDS_MM

__all__ = ["CRPS_COMPARISON", "ECC_CAVEAT", "ECC_M_CAVEAT", "ECC_S_CAVEAT", "FIGURES", "EnsembleVerificationReport",
           "verify_ensemble_range"]

logger = logging.getLogger(__name__)

#: How the members' and the U-Net's CRPS are compared (written to the scores).
CRPS_COMPARISON = (
    "members: fair CRPS (Ferro 2014) of the member amounts; U-Net: CRPS of its continuous distribution "
    "(piecewise-linear CDF within bins, dry bin a point mass at 0 mm, exponential tail); both on the "
    "unbinned MRMS amounts at the same points with the same true-area weights")
#: Written with the scores when the members were coupled to the U-Net's marginals (ECC).
ECC_CAVEAT = (
    "ECC members are the U-Net's quantiles at levels (r - 1/2)/M at every point, not random draws: the fair "
    "CRPS then looks better than the U-Net's by about E|X - X'|/(2M) (judge the plain CRPS skill), the spread "
    "is smaller than a random sample's, and a calibrated U-Net gives rank-histogram ends near (M+1)/(2M) of "
    "uniform; FSS and spectra are unaffected")
ECC_S_CAVEAT = (
    "ECC-S members are a stratified sample of the U-Net's distribution at every point (one level drawn inside "
    "each of M equal intervals): each member is a random draw from it, tails included, but the M values are more "
    "evenly spread than M independent draws, so the fair CRPS still looks better than the U-Net's by about "
    "E|X - X'|/(2M) (judge the plain CRPS skill), a calibrated U-Net gives rank-histogram ends near (M+1)/(2M) "
    "of uniform and a spread-skill ratio near sqrt((M+1)/(M-1)); drawn independently at every point (the store's "
    "ecc_level_smoothing_px 0) the levels add point-scale noise to the spectra (see the octaves), drawn from "
    "smooth fields (the default) they do not")
ECC_M_CAVEAT = (
    "ECC-M members are the means of the U-Net's distribution over M equal probability intervals at every point, "
    "not random draws: their average is the U-Net's mean amount; the fair CRPS and fair Brier scores look better "
    "than the U-Net's by about E|X - X'|/(2M), which grows with the members' spread (judge the plain scores); the "
    "spread-skill ratio is not read against 1 (1.05 for a calibrated U-Net on a test archive); and on a skewed "
    "tail the wettest member, the mean of the top interval, lies well above that interval's median, so even a "
    "calibrated U-Net gives a top rank-histogram bin below uniform ((M+1)/(e M) = 0.41 at M = 8 when the interval "
    "lies in an exponential tail, 0.35 on a test archive); FSS and spectra measure the members' structure, to "
    "which the jumps between interval means add power at the shortest wavelengths where ranks flip from point to "
    "point (the rank smoothing of the store's ecc_smoothing_px reduces that)")
#: Caveats of the verified members by ECC mode (EnsembleProvenance.ecc_mode).
_CAVEATS = {"quantile": ECC_CAVEAT, "stratified": ECC_S_CAVEAT, "mean": ECC_M_CAVEAT}
#: Figure files of a run, by what they show.
FIGURES = {"rank_histogram": "rank_histogram.png", "spread_skill": "spread_skill.png", "fss": "fss.png",
           "spectra": "spectra.png", "reliability": "reliability_members.png", "objects": "object_sizes.png"}
_JSON, _CSV = "ensemble_scores.json", "ensemble_scores.csv"


@dataclass
class EnsembleVerificationReport:
    """What :func:`verify_ensemble_range` did and found."""

    result: dict[str, Any]
    used: list[str] = field(default_factory=list)
    skipped_no_mrms: list[str] = field(default_factory=list)
    skipped_no_unet: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    models: dict[str, int] = field(default_factory=dict)
    ecc: set[str] = field(default_factory=set)
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)


def _grid_spacing_km(grid: Grid) -> float:
    """Nominal spacing (km): the projection's for Lambert, the ground's at the centre row else."""
    if grid.is_lambert:
        return abs(grid.dx) / 1000.0
    mid = grid.ny // 2
    dxg, dyg, _ = grid.ground_metrics(slice(mid, mid + 1))
    return float(np.sqrt(np.abs(dxg * dyg)).mean()) / 1000.0


@dataclass
class _Inputs:
    ensemble: EnsembleForecast
    case: EnsembleCase
    edges: tuple[float, ...]
    unet_checkpoint: str


def _flag(value: Any, path: Path, name: str) -> bool:
    """A 0/1 attribute as a bool; anything else is a corrupt file."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if number not in (0.0, 1.0):
        raise InputFileError(path, f"attribute {name} must be 0 or 1, got {value!r}")
    return bool(number)


def _check_same_calibration(ens: EnsembleForecast, probs_attrs: Mapping[str, Any], ens_path: Path,
                            probs_file: Path) -> None:
    """Members that took the U-Net's marginals (ECC) and the U-Net file must describe the
    same distribution (both calibrated with the same map, or both raw), or the members are
    scored against another forecast than the one they copy. A store from before ``unet_calibrated`` was
    recorded took the raw marginals; a probabilities file without ``calibrated`` (older
    still) is not checked, nor are members without ECC (they copy no marginals)."""
    if ens.provenance.ecc_mode == "off" or probs_attrs.get("calibrated") is None:
        return
    members = _flag(ens.provenance.extra.get("unet_calibrated", 0), ens_path, "unet_calibrated")
    unet = _flag(probs_attrs["calibrated"], probs_file, "calibrated")
    if members == unet:
        made, holds = ens.provenance.extra.get("unet_calibration_sha256"), probs_attrs.get("calibration_sha256")
        if members and made and holds and str(made) != str(holds):  # both recorded since 2026-12-06
            raise InputFileError(ens_path, f"its members took the U-Net marginals of calibration map {made} but "
                                 f"{probs_file} holds map {holds} (calibrate_resunet.py refitted it between the two "
                                 "runs); rerun one of them with --overwrite")
        return
    word = {True: "calibrated", False: "raw"}
    raise InputFileError(ens_path, f"its members took the {word[members]} U-Net marginals but "
                         f"{probs_file} holds {word[unet]} probabilities ([inference] calibrate changed "
                         "between the two runs); rerun one of them with --overwrite")


def _read(config: Config, init: dt.datetime, lead_h: int) -> _Inputs:
    ens_path = ensemble_path(config, init, lead_h)
    ens = read_ensemble(ens_path)
    probs = read_probabilities(probs_path(config, init, lead_h))
    mrms = read_remapped_mrms(mrms_remapped_path(config, init + dt.timedelta(hours=lead_h)))
    for what, grid in (("U-Net probabilities", probs.grid), ("remapped MRMS", mrms.grid)):
        if not grid.same_as(ens.grid):
            raise InputFileError(ens_path, f"grid differs from the {what}' ({grid.describe()})")
    if (ens.init, ens.lead_h) != (init, lead_h):
        raise InputFileError(ens_path, f"holds init {format_yyyymmddhh(ens.init)} +{ens.lead_h} h, expected "
                             f"{format_yyyymmddhh(init)} +{lead_h} h")
    _check_same_calibration(ens, probs.attrs, ens_path, probs_path(config, init, lead_h))
    bins = bin_probs_from_exceedance(np.clip(probs.prob.astype(np.float64), 0.0, 1.0))
    good = good_quality_mask(mrms.precipitation_mm, mrms.quality, config.mrms.min_quality)
    case = EnsembleCase(members_mm=ens.members_mm, obs_mm=mrms.precipitation_mm, good=good,
                        weight=np.ones(ens.grid.shape), unet_bins=bins, graf_mm=probs.graf_mm)
    return _Inputs(ens, case, (0.0, *probs.thresholds_mm), str(probs.attrs.get("checkpoint", "?")))


class _Run:
    """The verifier of a range, with the consistency checks across inits."""

    def __init__(self, config: Config, seed: int, n_replicates: int) -> None:
        self.config, self.seed, self.n_replicates = config, seed, n_replicates
        self.verifier: EnsembleVerifier | None = None
        self.grid: Grid | None = None
        self.weight: np.ndarray[Any, np.dtype[np.float32]] | None = None

    def mismatch(self, inputs: _Inputs) -> str | None:
        if self.verifier is None or self.grid is None:
            return None
        s = self.verifier.settings
        if not inputs.ensemble.grid.same_as(self.grid):
            return f"grid {inputs.ensemble.grid.describe()} differs from the first file's {self.grid.describe()}"
        if inputs.ensemble.n_members != s.n_members:
            return f"{inputs.ensemble.n_members} members, the first file had {s.n_members}"
        if len(inputs.edges) != len(s.edges_mm) or not np.allclose(inputs.edges, s.edges_mm):
            return f"the U-Net's bin edges {list(inputs.edges)} differ from the first file's {list(s.edges_mm)}"
        return None

    def add(self, inputs: _Inputs, day: str) -> None:
        if self.verifier is None:
            grid = inputs.ensemble.grid
            self.grid, self.weight = grid, area_weights(grid)
            self.verifier = EnsembleVerifier(EnsembleSettings(
                thresholds_mm=tuple(self.config.probability.thresholds_mm), edges_mm=inputs.edges,
                n_members=inputs.ensemble.n_members, shape=grid.shape, dx_km=_grid_spacing_km(grid),
                object_thresholds_mm=tuple(t for t in DEFAULT_OBJECT_THRESHOLDS_MM
                                           if np.isclose(inputs.edges, t).any()),
                seed=self.seed, n_replicates=self.n_replicates))
        case = inputs.case
        weighted = EnsembleCase(case.members_mm, case.obs_mm, case.good, np.asarray(self.weight), case.unet_bins,
                                case.graf_mm)
        self.verifier.update(weighted, day)


def _px(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def _model_key(ens: EnsembleForecast, unet_checkpoint: str) -> str:
    p = ens.provenance
    sampler = ", ".join(f"{k} {p.sampler[k]}" for k in ("n_steps", "s_churn") if k in p.sampler)
    return (f"diffusion {p.diffusion_checkpoint} on U-Net {p.unet_checkpoint}, ECC {p.ecc_mode}"
            f"{'' if not p.ecc else f' (ranks of {p.ecc_template})'}"
            f"{'' if p.ecc_level_smoothing_px is None else f' (levels smoothed {_px(p.ecc_level_smoothing_px)} px)'}"
            f", {sampler}; "
            f"U-Net file from {unet_checkpoint}")


def _score_inits(config: Config, inits: list[dt.datetime], lead_h: int, report: EnsembleVerificationReport,
                 run: _Run) -> EnsembleVerifier:
    progress = Progress(len(inits), "inits", logger)
    for init in inits:
        name = format_yyyymmddhh(init)
        if not mrms_remapped_path(config, init + dt.timedelta(hours=lead_h)).is_file():
            report.skipped_no_mrms.append(name)
            progress.step(note="no MRMS")
            continue
        if not probs_path(config, init, lead_h).is_file():
            logger.warning("%s: no U-Net probabilities file (%s); run resunet_inference.py to compare the "
                           "members with the U-Net there", name, probs_path(config, init, lead_h))
            report.skipped_no_unet.append(name)
            progress.step(note="no U-Net file")
            continue
        try:
            inputs = _read(config, init, lead_h)
            problem = run.mismatch(inputs)
            if problem is not None:
                raise InputFileError(ensemble_path(config, init, lead_h), problem)
        except PqpfError as exc:  # count it, finish the rest, fail at the end
            logger.error("%s", exc)
            report.failed.append((name, str(exc)))
            progress.step(note="failed")
            continue
        if inputs.ensemble.provenance.unet_checkpoint not in ("", inputs.unet_checkpoint):
            logger.warning("%s: the members were conditioned on %s but the U-Net file comes from %s", name,
                           inputs.ensemble.provenance.unet_checkpoint, inputs.unet_checkpoint)
        key = _model_key(inputs.ensemble, inputs.unet_checkpoint)
        report.models[key] = report.models.get(key, 0) + 1
        report.ecc.add(inputs.ensemble.provenance.ecc_mode)
        run.add(inputs, f"{init:%Y%m%d}")
        report.used.append(name)
        progress.step()
    if run.verifier is None:
        raise PqpfError(f"none of the {len(inits)} inits with an ensemble could be verified "
                        f"({len(report.skipped_no_mrms)} without remapped MRMS, {len(report.skipped_no_unet)} "
                        f"without U-Net probabilities, {len(report.failed)} unreadable)")
    return run.verifier


def _inputs_digest(config: Config, inits: list[dt.datetime], lead_h: int, settings: tuple[Any, ...]) -> str:
    """A digest of every input file (path, size, modification time, or absent) and the settings."""
    h = hashlib.sha256(repr((SCORES_SCHEMA, tuple(config.probability.thresholds_mm), config.mrms.min_quality,
                             int(lead_h), settings)).encode())
    for init in inits:
        store = ensemble_path(config, init, lead_h)
        for path in (store, store / ".zmetadata", probs_path(config, init, lead_h),
                     mrms_remapped_path(config, init + dt.timedelta(hours=lead_h))):
            try:
                st = path.stat()
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}|absent\n".encode())
    return h.hexdigest()


def _figures(out_dir: Path, result: dict[str, Any], title: str) -> list[Path]:
    return [plot_rank_histogram(out_dir / FIGURES["rank_histogram"], result["rank_histogram"], title,
                                result.get("unet_draws")),
            plot_spread_skill(out_dir / FIGURES["spread_skill"], result["spread_skill"], title),
            plot_fss_scales(out_dir / FIGURES["fss"], result["fss"], title),
            plot_spectra(out_dir / FIGURES["spectra"], result["spectra"], title),
            plot_member_reliability(out_dir / FIGURES["reliability"], result["brier"], title),
            *([plot_object_sizes(out_dir / FIGURES["objects"], result["objects"], title)]
              if result["objects"]["thresholds_mm"] else [])]


def _reuse(report: EnsembleVerificationReport, out_dir: Path, previous: dict[str, Any]) -> EnsembleVerificationReport:
    logger.info("%s is up to date (use --overwrite to recompute)", out_dir / _JSON)
    report.result, report.out_dir = previous, out_dir
    report.used, report.models = previous["inits_used"], previous.get("models", {})
    report.skipped_no_mrms = previous["inits_skipped_no_mrms"]
    report.skipped_no_unet = previous["inits_skipped_no_unet"]
    report.files = [p for p in [out_dir / _JSON, out_dir / _CSV, *(out_dir / f for f in FIGURES.values())]
                    if p.is_file()]
    return report


def verify_ensemble_range(config: Config, begin: dt.datetime, end: dt.datetime, lead_h: int, *, plot: bool = True,
                          overwrite: bool = False, n_replicates: int = 1000, seed: int = 0
                          ) -> EnsembleVerificationReport:
    """Score every init in ``begin..end`` that has an ensemble, U-Net probabilities and MRMS.

    Parameters
    ----------
    config : Config
    begin, end : datetime
        First and last init (inclusive).
    lead_h : int
    plot : bool
        Write the figures.
    overwrite : bool
        Recompute even when ``ensemble_scores.json`` was computed from the same files.
    n_replicates, seed
        Bootstrap replicates (intervals by init date) and the seed of the bootstrap and
        of the rank histogram's tie-breaking.

    Raises
    ------
    PqpfError
        No ensemble in the range, or none that could be verified.
    """
    inits = [t for t in hour_range(begin, end) if ensemble_path(config, t, lead_h).is_dir()]
    if not inits:
        raise PqpfError(f"no ensemble stores for +{lead_h} h between {format_yyyymmddhh(begin)} and "
                        f"{format_yyyymmddhh(end)} in {config.paths.probs_dir} (run ensemble_inference.py first)")
    report = EnsembleVerificationReport(result={})
    out_dir = ensemble_verification_dir(config, begin, end, lead_h)
    digest = _inputs_digest(config, inits, lead_h, (n_replicates, seed))
    previous = None if overwrite else read_scores_json(out_dir / _JSON)
    if previous is not None and previous.get("inputs_digest") == digest and not previous.get("inits_failed"):
        return _reuse(report, out_dir, previous)
    verifier = _score_inits(config, inits, lead_h, report, _Run(config, seed, n_replicates))
    if len(report.models) > 1:
        logger.warning("the verified ensembles come from %d model set-ups: %s", len(report.models),
                       "; ".join(f"{k} x{v}" for k, v in report.models.items()))
    report.result, report.out_dir = verifier.result(), out_dir
    # "on" is ECC-Q (the name stores and scores had before ECC-S existed)
    mode = next(iter(report.ecc))
    report.result["ecc"] = "mixed" if len(report.ecc) > 1 else {"off": "off", "quantile": "on"}.get(mode, mode)
    report.result["caveats"] = [_CAVEATS[mode] for mode in sorted(report.ecc) if mode in _CAVEATS]
    meta = {"begin": format_yyyymmddhh(begin), "end": format_yyyymmddhh(end), "lead_h": int(lead_h),
            "inits_used": report.used, "inits_skipped_no_mrms": report.skipped_no_mrms,
            "inits_skipped_no_unet": report.skipped_no_unet,
            "inits_failed": [{"init": i, "error": e} for i, e in report.failed], "models": report.models,
            "min_quality": config.mrms.min_quality, "weights": "true cell area on good-quality MRMS points",
            "crps_comparison": CRPS_COMPARISON, "pqpf_version": __version__, "inputs_digest": digest}
    report.files = [write_scores_json(out_dir / _JSON, {**meta, **report.result}),
                    write_scores_csv(out_dir / _CSV, ensemble_csv_rows(report.result))]
    if plot:
        title = (f"+{lead_h} h ensembles initialised {format_yyyymmddhh(begin)}..{format_yyyymmddhh(end)} "
                 f"({len(report.used)} inits, {verifier.settings.n_members} members)")
        report.files += _figures(out_dir, read_scores_json(out_dir / _JSON) or report.result, title)
    return report
