"""The ensemble verification as text and CSV rows.

Dicts in (:meth:`pqpf.verify.ensemble_verifier.EnsembleVerifier.result`, or the same
read back from ``ensemble_scores.json`` with NaN as None), strings and rows out: the
table ``verify_ensemble.py`` prints and the tidy ``ensemble_scores.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pqpf.verify.ensemble_verifier import octave_interval_name
from pqpf.verify.report import format_fss_table

__all__ = ["ENSEMBLE_CSV_COLUMNS", "ensemble_csv_rows", "format_ensemble_table"]

#: Columns of :func:`ensemble_csv_rows`.
ENSEMBLE_CSV_COLUMNS: tuple[str, ...] = ("metric", "source", "threshold_mm", "width_px", "rank", "wavelength_km",
                                         "value", "ci_low", "ci_high")
#: FSS widths shown in the printed table (px).
_SHOW_WIDTHS = (1, 5, 11, 21, 41)


def _num(value: Any, fmt: str) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else format(float(value), fmt)


#: Interval ends beyond this are printed as "<-9.99" / ">+9.99" (a skill of a rare event
#: whose resampled reference score nearly vanishes; the JSON keeps the number).
_BOUND = 9.99


def _end(value: Any, fmt: str) -> str:
    if value is not None and math.isfinite(float(value)) and abs(float(value)) > _BOUND:
        return f"<-{_BOUND}" if value < 0 else f">+{_BOUND}"
    return _num(value, fmt)


def _iv(result: Mapping[str, Any], name: str, fmt: str = "+.3f") -> str:
    """``"+0.045 [+0.012, +0.079]"`` from ``result["intervals"][name]``."""
    iv = result.get("intervals", {}).get(name)
    if iv is None or iv.get("estimate") is None:
        return "n/a"
    if iv.get("low") is None or iv.get("high") is None:
        return f"{_num(iv['estimate'], fmt)} [n/a]"
    return f"{_num(iv['estimate'], fmt)} [{_end(iv['low'], fmt)}, {_end(iv['high'], fmt)}]"


def _crps_lines(r: Mapping[str, Any]) -> list[str]:
    c = r["crps"]
    return [
        "CRPS on unbinned amounts (mm), every forecast on the same points with the same weights:",
        f"  members, fair (Ferro 2014)           {_num(c['crps_fair'], '.4f')}",
        f"  members, plain ensemble CRPS         {_num(c['crps_plain'], '.4f')}",
        f"  U-Net, its continuous distribution   {_num(c['crps_unet'], '.4f')}   (dry bin at 0 mm)",
        f"  raw GRAF, absolute error             {_num(c['mae_graf'], '.4f')}",
        f"  skill of members vs U-Net  {_iv(r, 'crpss_fair_vs_unet')}   (plain CRPS: "
        f"{_iv(r, 'crpss_plain_vs_unet')})",
        f"  skill of members vs GRAF   {_iv(r, 'crpss_fair_vs_graf')}   U-Net vs GRAF {_iv(r, 'crpss_unet_vs_graf')}",
    ]


def _calibration_lines(r: Mapping[str, Any]) -> list[str]:
    ss, rank = r["spread_skill"], r["rank_histogram"]
    n = len(rank["frequency"])
    rel = " ".join(_num(f * n if f is not None else None, ".2f") for f in rank["frequency"])
    return [
        f"spread-skill ratio {_iv(r, 'spread_skill_ratio', '.3f')}   (spread {_num(ss['spread'], '.3f')} mm, "
        f"RMSE of the ensemble mean {_num(ss['rmse'], '.3f')} mm; 1 = calibrated)",
        *_amount_lines(r),
        f"rank histogram / uniform: {rel}",
        f"  lowest {_num(rank['min_over_uniform'], '.2f')}x, highest {_num(rank['max_over_uniform'], '.2f')}x "
        "uniform (ties among equal amounts broken at random)",
        *_draw_lines(r),
    ]


def _draw_lines(r: Mapping[str, Any]) -> list[str]:
    """What random draws from the U-Net would score (absent from scores of schema < 5)."""
    draws = r.get("unet_draws")
    if not draws:
        return []
    n = len(draws["rank_frequency"])
    rel = " ".join(_num(f * n if f is not None else None, ".2f") for f in draws["rank_frequency"])
    return [f"members drawn at random from the U-Net (expected): rank histogram / uniform {rel}",
            f"  lowest {_num(draws['min_over_uniform'], '.2f')}x, highest {_num(draws['max_over_uniform'], '.2f')}x; "
            f"spread-skill of the U-Net's distribution {_num(draws['ratio'], '.3f')} (its sd "
            f"{_num(draws['spread'], '.3f')} mm, RMSE of its mean {_num(draws['rmse'], '.3f')} mm): "
            "misses here are the U-Net's marginals, misses only above are how the members take them"]


def _amount_lines(r: Mapping[str, Any]) -> list[str]:
    amounts = r.get("amounts")  # absent from scores of schema < 4
    if not amounts:
        return []
    parts = [f"{label} {_iv(r, f'amount_ratio_{name}_vs_mrms', '.2f')}"
             for name, label in (("members", "members"), ("unet_mean", "U-Net mean"), ("graf", "raw GRAF"))]
    return [f"mean amount / MRMS's (areal totals): {', '.join(parts)}   "
            f"(MRMS {_num(amounts['mean_mm'].get('mrms'), '.3f')} mm)"]


def _brier_lines(r: Mapping[str, Any]) -> list[str]:
    lines = ["Brier scores of member probabilities (fraction of members) and the U-Net's:",
             " thresh   base rate  BS members   BS fair  BS U-Net   BSS members vs U-Net      fair BSS vs U-Net",
             " ------   ---------  ----------  --------  --------   ----------------------    ----------------------"]
    for row in r["brier"]:
        t = row["threshold_mm"]
        lines.append(f"{t:5g} mm  {_num(row['base_rate'], '9.4f')}  {_num(row['bs_members'], '10.5f')}  "
                     f"{_num(row['bs_members_fair'], '8.5f')}  {_num(row['bs_unet'], '8.5f')}   "
                     f"{_iv(r, f'bss_members_vs_unet@{t:g}mm'):<25} {_iv(r, f'bss_fair_members_vs_unet@{t:g}mm')}")
    return lines


def _fss_difference_lines(r: Mapping[str, Any], threshold_mm: float) -> list[str]:
    widths = [w for w in _SHOW_WIDTHS if w in r["fss"]["widths_px"]]
    lines = []
    for key, label in (("graf", "raw GRAF"), ("pairs", "members vs one another")):
        cells = ", ".join(f"{w} px {_iv(r, f'fss_members_minus_{key}@{threshold_mm:g}mm@{w}px')}" for w in widths)
        lines.append(f"FSS members - {label} at {threshold_mm:g} mm: {cells}")
    return lines


def _spectra_lines(r: Mapping[str, Any]) -> list[str]:
    s = r["spectra"]
    ratios = s["band_ratio_vs_mrms"]
    band = next(iter(ratios.values()))["band_km"]
    lines = [f"power spectra, {band[0]:g}-{band[1]:g} km, relative to MRMS ({s['mrms']['n_fields']} MRMS fields; "
             f"{s['mrms']['n_skipped']} left out for missing data):"]
    labels = {"members": "members", "unet_mean": "U-Net conditional mean", "graf": "raw GRAF"}
    for name, label in labels.items():
        x = ratios[name]
        lines.append(f"  {label:<23} {_iv(r, f'psd_ratio_{name}_vs_mrms', '.3f')}   per annulus "
                     f"{_num(x['min_ratio'], '.2f')}..{_num(x['max_ratio'], '.2f')}")
    octaves = s.get("octave_ratios_vs_mrms")  # scores written before it existed have none
    if octaves and octaves.get("members"):
        heads = " ".join(f"{o['band_km'][0]:g}-{o['band_km'][1]:g}".rjust(7) for o in octaves["members"])
        lines.append(f"  by octave (km)          {heads}")
        for name, label in labels.items():
            lines.append(f"  {label:<23} " + " ".join(_num(o["ratio"], ".2f").rjust(7) for o in octaves[name]))
        if any(_octave_key("members", o) in r.get("intervals", {}) for o in octaves["members"]):  # schema >= 7
            cells = [f"{_octave_label(o)} km {_iv(r, _octave_key('members', o), '.2f')}" for o in octaves["members"]]
            lines.append("  members by octave, with intervals: " + ", ".join(cells))
    return lines


def _octave_label(octave: Mapping[str, Any]) -> str:
    return f"{octave['band_km'][0]:g}-{octave['band_km'][1]:g}"


def _octave_key(source: str, octave: Mapping[str, Any]) -> str:
    """The octave's interval name, as the verifier gives it."""
    return octave_interval_name(source, octave["band_km"])


#: Labels of the object sources in the printed table.
_OBJECT_LABELS = {"mrms": "MRMS", "members": "members", "unet_p50": "U-Net median", "graf": "raw GRAF"}


def _object_lines(r: Mapping[str, Any]) -> list[str]:
    """Rain objects per threshold and source (absent from scores of schema < 6)."""
    objects = r.get("objects")
    if not objects or not objects["thresholds_mm"]:
        return []
    dx = objects.get("dx_km")
    lines = ["rain objects (connected areas at or above the threshold, points sharing an edge"
             + (f"; 1 px = {dx * dx:.3g} km2" if dx else "") + "):",
             " thresh  source         objects  point   point-weighted  largest (px):     size / MRMS's",
             "                        /field   share   size (px)       mean (max)"]
    for k, t in enumerate(objects["thresholds_mm"]):
        for name, entry in objects["sources"].items():
            row = entry["per_threshold"][k]
            ratio = "" if name == "mrms" else _iv(r, f"object_size_ratio_{name}_vs_mrms@{t:g}mm", ".2f")
            largest = f"{_num(row['mean_largest_px'], '.1f')} ({row['max_largest_px']})"
            lines.append((f"{(f'{t:g} mm') if name == 'mrms' else '':>7}  {_OBJECT_LABELS.get(name, name):<13} "
                          f"{_num(row['objects_per_field'], '.1f'):>7}  {_num(row['area_fraction'], '.2%'):>6}  "
                          f"{_num(row['point_weighted_size_px'], '.1f'):>10}      {largest:<16}  " + ratio).rstrip())
    lines.append("  (point-weighted size: the size of the object a point at or above the threshold belongs to)")
    return lines


def format_ensemble_table(result: Mapping[str, Any]) -> str:
    """The printed summary of an ensemble verification (intervals: block bootstrap by init date)."""
    crps = result["crps"]
    some: Mapping[str, Any] = next(iter(result.get("intervals", {}).values()), {})
    head = (f"{result['n_members']} members, {result['n_cases']} inits on {len(result['days'])} dates, "
            f"{int(crps['n']):,} good-quality MRMS points (true-area weights)")
    ecc = {"on": "on (quantile levels, ECC-Q)", "stratified": "on (stratified levels, ECC-S)",
           "mean": "on (interval means, ECC-M)"}.get(
        str(result.get("ecc", "")), str(result.get("ecc", "")))
    if ecc:
        head += f"; ensemble copula coupling {ecc}"
    parts = [head, *_crps_lines(result), *_calibration_lines(result), *_brier_lines(result),
             format_fss_table(result["fss"], show_widths_px=_SHOW_WIDTHS)]
    parts += [line for t in result["fss"]["thresholds_mm"] for line in _fss_difference_lines(result, t)]
    if result["fss"].get("pairs"):
        parts.append("  (members vs one another, Dey et al. 2014: what these members would score against an MRMS "
                     "indistinguishable from a member; below it = members farther from MRMS than from each other: "
                     "too alike at that scale, or biased in frequency)")
    parts += _spectra_lines(result)
    parts += _object_lines(result)
    parts += [f"note: {c}" for c in result.get("caveats", [])]
    if some:
        parts.append(f"[intervals: {100 * some['level']:g} % block bootstrap over {some['n_days']} init dates, "
                     f"{some['n_replicates']} replicates]")
    return "\n".join(parts)


def _row(metric: str, value: Any, source: str = "", interval: Mapping[str, Any] | None = None,
         **where: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in ENSEMBLE_CSV_COLUMNS}
    row.update({"metric": metric, "source": source or None, "value": value, **where})
    if interval is not None:
        row["ci_low"], row["ci_high"] = interval.get("low"), interval.get("high")
    return row


def _scalar_rows(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    iv = r.get("intervals", {})
    c, ss = r["crps"], r["spread_skill"]
    rows = [_row("crps", c["crps_fair"], "members_fair"), _row("crps", c["crps_plain"], "members_plain"),
            _row("crps", c["crps_unet"], "unet"), _row("crps", c["mae_graf"], "graf")]
    rows += [_row(k, c[k], interval=iv.get(k)) for k in ("crpss_fair_vs_unet", "crpss_plain_vs_unet",
                                                        "crpss_fair_vs_graf", "crpss_unet_vs_graf")]
    rows += [_row("spread_skill_ratio", ss["ratio"], interval=iv.get("spread_skill_ratio")),
             _row("spread", ss["spread"]), _row("rmse_ensemble_mean", ss["rmse"])]
    rows += [_row("rank_frequency", f, rank=k) for k, f in enumerate(r["rank_histogram"]["frequency"])]
    draws = r.get("unet_draws")
    if draws:
        rows += [_row("rank_frequency", f, "unet_draws", rank=k) for k, f in enumerate(draws["rank_frequency"])]
        rows += [_row(metric, draws[key], "unet_draws") for metric, key in
                 (("spread_skill_ratio", "ratio"), ("spread", "spread"), ("rmse_ensemble_mean", "rmse"))]
    amounts = r.get("amounts") or {"mean_mm": {}, "ratio_vs_mrms": {}}
    rows += [_row("mean_amount_mm", v, name) for name, v in amounts["mean_mm"].items()]
    rows += [_row("amount_ratio_vs_mrms", v, name, iv.get(f"amount_ratio_{name}_vs_mrms"))
             for name, v in amounts["ratio_vs_mrms"].items()]
    return rows


def ensemble_csv_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tidy rows (:data:`ENSEMBLE_CSV_COLUMNS`): one per score, source, threshold, width,
    rank or wavelength; ``ci_low``/``ci_high`` where a bootstrap interval exists."""
    iv = result.get("intervals", {})
    rows = _scalar_rows(result)
    for b in result["brier"]:
        t = b["threshold_mm"]
        for key in ("bs_members", "bs_members_fair", "bs_unet", "bs_graf", "bs_clim", "base_rate"):
            rows.append(_row(key, b[key], threshold_mm=t))
        for key in ("bss_members_vs_unet", "bss_fair_members_vs_unet", "bss_members_vs_clim", "bss_unet_vs_clim"):
            rows.append(_row(key, b[key], interval=iv.get(f"{key}@{t:g}mm"), threshold_mm=t))
    fss = result["fss"]
    for name, entry in fss["sources"].items():
        for row in entry["per_threshold"]:
            t = row["threshold_mm"]
            for w, value in zip(fss["widths_px"], row["fss"], strict=True):
                rows.append(_row("fss", value, name, iv.get(f"fss_{name}@{t:g}mm@{w}px"), threshold_mm=t,
                                 width_px=w))
            rows.append(_row("fss_useful_width_px", row["useful_width_px"], name, threshold_mm=t))
    for name, entry in fss.get("pairs", {}).items():  # the verifier pairs its "members" only
        for row in entry["per_threshold"]:
            t = row["threshold_mm"]
            for w, value in zip(fss["widths_px"], row["fss"], strict=True):
                rows.append(_row("fss_member_pairs", value, name, iv.get(f"fss_member_pairs@{t:g}mm@{w}px"),
                                 threshold_mm=t, width_px=w))
    for key in ("graf", "pairs"):  # the differences, with their intervals
        for t in fss["thresholds_mm"]:
            for w in fss["widths_px"]:
                got = iv.get(f"fss_members_minus_{key}@{t:g}mm@{w}px")
                if got is not None:
                    rows.append(_row(f"fss_members_minus_{key}", got.get("estimate"), interval=got, threshold_mm=t,
                                     width_px=w))
    spectra = result["spectra"]
    for name in ("mrms", "members", "unet_mean", "graf"):
        for lam, p in zip(spectra[name]["wavelength_km"], spectra[name]["power"], strict=True):
            rows.append(_row("power_spectrum", p, name, wavelength_km=lam))
    for name, x in spectra["band_ratio_vs_mrms"].items():
        rows.append(_row("power_ratio_vs_mrms_band", x["ratio"], name, iv.get(f"psd_ratio_{name}_vs_mrms")))
    # one row per octave, wavelength_km its shortest wavelength (the next row's is its longest)
    for name, octaves in spectra.get("octave_ratios_vs_mrms", {}).items():
        for o in octaves:
            rows.append(_row("power_ratio_vs_mrms_octave", o["ratio"], name, iv.get(_octave_key(name, o)),
                             wavelength_km=o["band_km"][0]))
    return rows + _object_rows(result)


def _object_rows(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    objects = r.get("objects")
    if not objects:
        return []
    iv = r.get("intervals", {})
    rows = []
    for name, entry in objects["sources"].items():
        for row in entry["per_threshold"]:
            t = row["threshold_mm"]
            rows += [_row(metric, row[key], name, threshold_mm=t) for metric, key in
                     (("objects_per_field", "objects_per_field"), ("objects_point_share", "area_fraction"),
                      ("objects_point_weighted_size_px", "point_weighted_size_px"),
                      ("objects_mean_largest_px", "mean_largest_px"), ("objects_max_largest_px", "max_largest_px"))]
            if name != "mrms":
                got = iv.get(f"object_size_ratio_{name}_vs_mrms@{t:g}mm")
                rows.append(_row("object_size_ratio_vs_mrms", got.get("estimate") if got else None, name, got,
                                 threshold_mm=t))
    return rows
