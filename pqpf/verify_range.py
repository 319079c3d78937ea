"""The verification stage: scores of the probability files over a range of inits.

For every init in ``BEGIN..END`` (any hour) that has a probabilities file
(``resunet_inference.py``) and whose verifying hour has remapped MRMS, the model's,
the raw GRAF's and the smoothed-GRAF reference's exceedance probabilities are scored
against MRMS at the configured thresholds, on points whose MRMS quality is good, with
cos(latitude) weights, streaming through :class:`pqpf.verification.Verifier` (memory does
not grow with the number of inits). The forecast distribution for the CRPS comes from
the exceedance probabilities at every bin edge stored in the file.

Outputs in ``{plots_dir}/verification_{BEGIN}_{END}_{LEAD}h/``: ``scores.json`` (all
scores, the reliability tables and which inits were used or skipped), ``scores.csv``
(one row per threshold) and ``reliability.png``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf import __version__
from pqpf.config import Config
from pqpf.dates import format_yyyymmddhh, hour_range
from pqpf.errors import InputFileError, PqpfError
from pqpf.io.atomic import atomic_write_text
from pqpf.layout import mrms_remapped_path, probs_path, verification_dir
from pqpf.progress import Progress

__all__ = ["VerificationReport", "verify_range", "bin_probs_from_exceedance", "format_score_table"]

logger = logging.getLogger(__name__)


def bin_probs_from_exceedance(prob_exceed: NDArray[np.floating]) -> NDArray[np.float64]:
    """Bin probabilities (K, ...) from P(obs >= e_k) at the K-1 interior edges (K-1, ...).

    ``p_0 = 1 - P(>= e_1)``, ``p_k = P(>= e_k) - P(>= e_k+1)``, ``p_{K-1} = P(>= e_{K-1})``.
    Rounding in the stored file can make a difference slightly negative; those are
    clipped and the bins renormalised.
    """
    e = np.asarray(prob_exceed, dtype=np.float64)
    ones = np.ones((1, *e.shape[1:]))
    zeros = np.zeros((1, *e.shape[1:]))
    padded = np.concatenate([ones, e, zeros], axis=0)
    bins = np.clip(padded[:-1] - padded[1:], 0.0, None)
    total = bins.sum(axis=0, keepdims=True)
    return bins / np.where(total > 0, total, 1.0)


@dataclass
class VerificationReport:
    """What :func:`verify_range` did and found."""

    result: dict[str, Any]
    used: list[str] = field(default_factory=list)
    skipped_no_mrms: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    checkpoints: dict[str, int] = field(default_factory=dict)
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)


def _read_case(config: Config, init: dt.datetime, lead_h: int, thresholds: tuple[float, ...]):
    from pqpf.io.netcdf import read_grid_netcdf

    probs = read_grid_netcdf(probs_path(config, init, lead_h),
                             ["prob_exceed", "prob_exceed_raw", "prob_exceed_smoothed", "graf_precipitation", "lat"])
    edges_interior = tuple(float(t) for t in probs.coords["threshold"])
    missing = [t for t in thresholds if not any(abs(t - e) < 1e-6 for e in edges_interior)]
    if missing:
        raise InputFileError(probs.source, f"has no probabilities at {missing} mm")
    pick = [min(range(len(edges_interior)), key=lambda i: abs(edges_interior[i] - t)) for t in thresholds]
    valid = init + dt.timedelta(hours=lead_h)
    mrms = read_grid_netcdf(mrms_remapped_path(config, valid), ["precipitation", "quality", "valid_fraction"])
    if not mrms.grid.same_as(probs.grid):
        raise InputFileError(mrms.source, "remapped MRMS grid differs from the probabilities' grid")
    d = probs.data
    # stored with 4 significant digits: rounding may step a hair outside [0, 1]
    model = np.clip(d["prob_exceed"].astype(np.float64), 0.0, 1.0)
    raw = d["prob_exceed_raw"][pick].astype(np.float64)
    raw[raw < 0] = np.nan  # the fill value -1 marks missing GRAF
    return {
        "model": model[pick],
        "raw": raw,
        "ref": np.clip(d["prob_exceed_smoothed"][pick].astype(np.float64), 0.0, 1.0),
        "bins": bin_probs_from_exceedance(model),
        "edges": (0.0, *edges_interior),
        "graf": d["graf_precipitation"].astype(np.float64),
        "lat": d["lat"],
        "obs": mrms.data["precipitation"].astype(np.float64),
        "quality": mrms.data["quality"],
        "valid_fraction": mrms.data["valid_fraction"],
        "checkpoint": f"{probs.attrs.get('checkpoint', '?')} (lead {probs.attrs.get('checkpoint_lead_h', '?')} h)",
        "checkpoint_lead_h": probs.attrs.get("checkpoint_lead_h"),
    }


def verify_range(config: Config, begin: dt.datetime, end: dt.datetime, lead_h: int,
                 plot: bool = True, overwrite: bool = False) -> VerificationReport:
    """Score every init in ``begin..end`` that has a probabilities file and MRMS.

    An existing ``scores.json`` for the same range is reused (not recomputed) when it was
    computed from exactly the files and settings there are now (see
    :func:`_inputs_digest`) and ``overwrite`` is False; a new, removed or rewritten
    probabilities or MRMS file, or another threshold or quality minimum, makes it stale.

    Raises
    ------
    PqpfError
        When no init in the range could be verified.
    """
    from pqpf.verification import Verifier, cos_lat_weights, good_quality_mask

    thresholds = tuple(config.probability.thresholds_mm)
    inits = [t for t in hour_range(begin, end) if probs_path(config, t, lead_h).is_file()]
    report = VerificationReport(result={})
    if not inits:
        raise PqpfError(
            f"no probabilities files for +{lead_h} h between {format_yyyymmddhh(begin)} and "
            f"{format_yyyymmddhh(end)} in {config.paths.probs_dir} (run resunet_inference.py first)"
        )
    out_dir = verification_dir(config, begin, end, lead_h)
    digest = _inputs_digest(config, inits, lead_h)
    previous = _previous_result(out_dir / "scores.json", digest) if not overwrite else None
    if previous is not None:
        logger.info("%s is up to date (use --overwrite to recompute)", out_dir / "scores.json")
        report.result = previous
        report.used = previous["inits_used"]
        report.skipped_no_mrms = previous["inits_skipped_no_mrms"]
        report.failed = [(x["init"], x["error"]) for x in previous.get("inits_failed", [])]
        report.out_dir = out_dir
        report.files = [p for p in (out_dir / "scores.json", out_dir / "scores.csv", out_dir / "reliability.png")
                        if p.is_file()]
        return report
    verifier: Verifier | None = None
    weights_cache: dict[str, NDArray[np.float32]] = {}
    progress = Progress(len(inits), "inits", logger)
    for init in inits:
        valid = init + dt.timedelta(hours=lead_h)
        if not mrms_remapped_path(config, valid).is_file():
            report.skipped_no_mrms.append(format_yyyymmddhh(init))
            progress.step(note="no MRMS")
            continue
        try:
            case = _read_case(config, init, lead_h, thresholds)
        except PqpfError as exc:  # count it, finish the rest, fail at the end
            logger.error("%s", exc)
            report.failed.append((format_yyyymmddhh(init), str(exc)))
            progress.step(note="failed")
            continue
        if case["checkpoint_lead_h"] is not None and int(case["checkpoint_lead_h"]) != lead_h:
            logger.warning("%s +%d h was made with the model of lead %s h", format_yyyymmddhh(init), lead_h,
                           case["checkpoint_lead_h"])
        report.checkpoints[case["checkpoint"]] = report.checkpoints.get(case["checkpoint"], 0) + 1
        if verifier is None:
            verifier = Verifier(thresholds, bin_edges_mm=case["edges"])
            first_edges, first_grid = np.asarray(case["edges"]), case["lat"].shape
        mismatch = None
        if case["lat"].shape != first_grid:
            mismatch = f"grid {case['lat'].shape} differs from the first file's {first_grid}"
        elif np.asarray(case["edges"]).shape != first_edges.shape or not np.allclose(case["edges"], first_edges):
            mismatch = (f"bin edges {list(case['edges'])} differ from the first file's {first_edges.tolist()} "
                        "(made by another model): its CRPS would be wrong")
        if mismatch is not None:
            message = f"{probs_path(config, init, lead_h)}: {mismatch}"
            logger.error("%s", message)
            report.failed.append((format_yyyymmddhh(init), message))
            progress.step(note="failed")
            continue
        key = hashlib.blake2b(np.ascontiguousarray(case["lat"]).tobytes(), digest_size=16).hexdigest()
        if key not in weights_cache:
            weights_cache[key] = cos_lat_weights(case["lat"])
        good = good_quality_mask(case["obs"], case["quality"], config.mrms.min_quality)
        weight = np.where(good, weights_cache[key], 0.0)
        verifier.update(case["model"], case["raw"], case["ref"], case["obs"], weight,
                        model_bin_probs=case["bins"], graf_mm=case["graf"])
        report.used.append(format_yyyymmddhh(init))
        progress.step()
    if verifier is None:
        raise PqpfError(
            f"none of the {len(inits)} inits with probabilities could be verified "
            f"({len(report.skipped_no_mrms)} without remapped MRMS, {len(report.failed)} unreadable)"
        )
    if len(report.checkpoints) > 1:
        logger.warning("the verified files come from %d different models: %s", len(report.checkpoints),
                       "; ".join(f"{k} x{v}" for k, v in report.checkpoints.items()))
    result = verifier.result()
    report.result = result
    report.out_dir = out_dir
    meta = {"begin": format_yyyymmddhh(begin), "end": format_yyyymmddhh(end), "lead_h": int(lead_h),
            "inits_used": report.used, "inits_skipped_no_mrms": report.skipped_no_mrms,
            "inits_failed": [{"init": i, "error": e} for i, e in report.failed],
            "checkpoints": report.checkpoints,
            "min_quality": config.mrms.min_quality, "weights": "cos(latitude) on good-quality MRMS points",
            "pqpf_version": __version__, "inputs_digest": digest}
    json_path = out_dir / "scores.json"
    atomic_write_text(json_path, json.dumps({**meta, **result}, indent=1) + "\n")
    rows = verifier.to_csv_rows()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out_dir / "scores.csv"
    atomic_write_text(csv_path, buf.getvalue())
    report.files = [json_path, csv_path]
    if plot:
        from pqpf.plot import plot_reliability

        title = (f"+{lead_h} h forecasts initialised {format_yyyymmddhh(begin)}..{format_yyyymmddhh(end)} "
                 f"({len(report.used)} inits)")
        report.files.append(plot_reliability(out_dir / "reliability.png", result["per_threshold"], title))
    return report


def _inputs_digest(config: Config, inits: list[dt.datetime], lead_h: int) -> str:
    """A digest of what the scores depend on: every probabilities and MRMS file (path,
    size, modification time, or absent), the thresholds and the quality minimum. A file
    rewritten, an MRMS hour that has arrived since, or a changed setting changes it."""
    h = hashlib.sha256()
    h.update(repr((tuple(config.probability.thresholds_mm), config.mrms.min_quality, int(lead_h))).encode())
    for init in inits:
        for path in (probs_path(config, init, lead_h), mrms_remapped_path(config, init + dt.timedelta(hours=lead_h))):
            try:
                st = path.stat()
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}|absent\n".encode())
    return h.hexdigest()


def _previous_result(path: Path, inputs_digest: str) -> dict[str, Any] | None:
    """The stored result if it was computed from exactly these inputs, else None."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("inputs_digest") != inputs_digest or data.get("inits_failed"):
        return None
    return data


def format_score_table(result: dict[str, Any]) -> str:
    """The Brier-skill table the CLI and the demo print."""

    def f(value: Any, fmt: str) -> str:
        width = int("".join(c for c in fmt.split(".")[0] if c.isdigit()) or 0)
        if value is None:
            return "n/a".rjust(width)
        if fmt.endswith("f") and "+" not in fmt and 0 < abs(value) < 1e-3:
            return format(value, f"{width}.2e")  # small Brier scores and base rates
        return format(value, fmt)

    lines = [" thresh   base rate   BS model    BS ref   BSS vs ref  BSS vs clim   points",
             " ------   ---------   --------  --------   ----------  -----------  -------"]
    for row in result["per_threshold"]:
        lines.append(
            f"{row['threshold_mm']:5g} mm  {f(row['base_rate'], '9.4f')}  {f(row['bs_model'], '9.5f')} "
            f"{f(row['bs_ref'], '9.5f')}   {f(row['bss_vs_ref'], '+10.3f')}  {f(row['bss_vs_clim'], '+11.3f')}"
            f"  {row['n']:7d}"
        )
    crps = result.get("crps") or {}
    if crps.get("crps_model") is not None:
        lines.append(
            f"CRPS on the bins (amounts at bin lower edges): model {crps['crps_model']:.4f} mm, "
            f"GRAF {f(crps.get('crps_raw_binned'), '.4f')} mm, skill {f(crps.get('crpss_vs_raw_binned'), '+.3f')}"
        )
        lines.append(f"(GRAF MAE on unbinned amounts {f(crps.get('mae_raw'), '.4f')} mm: not comparable with the above)")
    return "\n".join(lines)
