"""What verification prints and writes beside ``scores.json``: the Brier-skill table, the
skill intervals, the FSS table and CSV rows, the Brier decomposition.

Dicts in, strings and rows out: what the verification stage prints and writes beside
``scores.json``. The dicts are those of :meth:`pqpf.verify.fss.FssAccumulator.result`,
:func:`pqpf.verify.bootstrap.bootstrap_skills` and
:meth:`pqpf.verify.reliability.ReliabilityTable.components`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pqpf.verify.bootstrap import Interval, reliability_sum_name, sum_name

__all__ = [
    "format_report",
    "format_score_table",
    "events_ratio",
    "FSS_CSV_COLUMNS",
    "fss_csv_rows",
    "format_fss_table",
    "format_interval",
    "format_skill_intervals",
    "format_decomposition",
    "format_reliability_intervals",
    "RELIABILITY_MIN_POINTS",
]

#: Columns of :func:`fss_csv_rows` (``fss_scores.csv``).
FSS_CSV_COLUMNS: tuple[str, ...] = (
    "source", "threshold_mm", "width_px", "width_km", "fss", "fbs", "fbs_worst",
    "base_rate", "fss_useful", "useful",
)


def fss_csv_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per source, threshold and width with :data:`FSS_CSV_COLUMNS` (None for
    undefined values), for ``csv.DictWriter``."""
    rows = []
    for name, entry in result["sources"].items():
        for row in entry["per_threshold"]:
            level = row["fss_useful"]
            for i, width in enumerate(result["widths_px"]):
                fss = row["fss"][i]
                rows.append({
                    "source": name, "threshold_mm": row["threshold_mm"], "width_px": width,
                    "width_km": result["widths_km"][i], "fss": fss, "fbs": row["fbs"][i],
                    "fbs_worst": row["fbs_worst"][i], "base_rate": row["base_rate"], "fss_useful": level,
                    "useful": None if fss is None or level is None else fss >= level,
                })
    return rows


def _cell(value: float | None, fmt: str, width: int) -> str:
    return "n/a".rjust(width) if value is None else format(value, fmt).rjust(width)


def format_fss_table(result: Mapping[str, Any], show_widths_px: Sequence[int] = (1, 5, 11, 21, 41)) -> str:
    """The FSS table: a row per source and threshold.

    Parameters
    ----------
    result : mapping
        :meth:`FssAccumulator.result`.
    show_widths_px : sequence of int
        Widths shown as columns (those not in the result are left out).

    Returns
    -------
    str
        ``source, threshold, f0, FSS at the widths, useful from``; the useful scale is
        the first listed width reaching ``0.5 + f0/2`` (px and km) with the linearly
        interpolated width in parentheses.
    """
    widths = list(result["widths_px"])
    cols = [w for w in show_widths_px if w in widths]
    head = " source      thresh      f0 " + " ".join(f"{f'{w} px':>6}" for w in cols) + "   useful from"
    lines = [head, " " + "-" * (len(head) - 1)]
    for name, entry in result["sources"].items():
        for row in entry["per_threshold"]:
            cells = " ".join(_cell(row["fss"][widths.index(w)], ".3f", 6) for w in cols)
            px, ipx, km = row["useful_width_px"], row["useful_width_interp_px"], row["useful_width_km"]
            useful = "not reached" if px is None else (
                f"{px:g} px" + ("" if km is None else f" = {km:g} km") + f" ({ipx:.1f} px interp.)")
            lines.append(f" {name[:10]:<10} {row['threshold_mm']:5g} mm {_cell(row['base_rate'], '.4f', 7)} "
                         f"{cells}   {useful}")
    return "\n".join(lines)


def format_interval(interval: Interval | None, fmt: str = "+.3f") -> str:
    """``"+0.176 [+0.150, +0.201]"``; ``"n/a"`` for a missing or undefined estimate."""
    if interval is None or not math.isfinite(interval.estimate):
        return "n/a"
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return f"{interval.estimate:{fmt}} [n/a]"
    return f"{interval.estimate:{fmt}} [{interval.low:{fmt}}, {interval.high:{fmt}}]"


def format_skill_intervals(intervals: Mapping[str, Interval], thresholds_mm: Sequence[float]) -> str:
    """The skills of the verification table with their bootstrap intervals.

    Parameters
    ----------
    intervals : mapping
        :func:`bootstrap_skills` of :func:`brier_crps_skills` (keys ``bss_vs_ref@1mm``,
        ``bss_vs_clim@1mm``, ..., ``crpss_vs_raw_binned``).
    thresholds_mm : sequence of float

    Returns
    -------
    str
        Columns ``BSS vs ref [5%, 95%]`` and ``BSS vs clim [5%, 95%]`` per threshold,
        then a CRPS-skill line; the percentages follow the intervals' level.
    """
    any_iv = next(iter(intervals.values()), None)
    level = 0.9 if any_iv is None else any_iv.level
    lo, hi = f"{100 * (1 - level) / 2:g}%", f"{100 * (1 + level) / 2:g}%"
    lines = [f" thresh   {f'BSS vs ref [{lo}, {hi}]':<26} BSS vs clim [{lo}, {hi}]",
             " ------   " + "-" * 26 + " " + "-" * 26]
    for t in thresholds_mm:
        ref = format_interval(intervals.get(sum_name("bss_vs_ref", t)))
        clim = format_interval(intervals.get(sum_name("bss_vs_clim", t)))
        lines.append(f"{t:5g} mm  {ref:<26} {clim}")
    crps = intervals.get("crpss_vs_raw_binned")
    if crps is not None:
        lines.append(f"CRPS skill vs GRAF (binned) {format_interval(crps)}")
    if any_iv is not None:
        lines.append(f"({100 * level:g} % block-bootstrap intervals over {any_iv.n_days} init dates, "
                     f"{any_iv.n_replicates} replicates)")
    return "\n".join(lines)


#: Reliability bins with fewer points than this are left out of the printed intervals
#: (the issue's criterion; neighbouring points are strongly correlated).
RELIABILITY_MIN_POINTS = 1000
#: A bin filled on fewer init dates than this gets no interval (resampling one or two
#: dates gives a degenerate one).
RELIABILITY_MIN_DATES = 3


def _p(value: float) -> str:
    """A probability: two decimals, three below 0.1 (where most points are)."""
    return f"{value:.3f}" if abs(value) < 0.1 else f"{value:.2f}"


def format_reliability_intervals(result: Mapping[str, Any], min_points: int = RELIABILITY_MIN_POINTS,
                                 per_line: int = 4) -> str:
    """Each probability bin's mean forecast -> observed frequency with the bootstrap
    interval of the observed frequency, for the model's reliability curves.

    Bins with fewer than ``min_points`` points are left out; bins filled on fewer than
    :data:`RELIABILITY_MIN_DATES` init dates (``result["reliability_dates"]``) show their
    date count instead of an interval; ``*`` marks a bin whose interval of observed minus
    forecast excludes 0. Empty when the result has no ``observed_frequency@...`` intervals.
    """
    intervals = result.get("intervals") or {}
    dates = result.get("reliability_dates") or {}
    lines = []
    level = None
    for row in result["per_threshold"]:
        t = row["threshold_mm"]
        curve = row.get("reliability_curve_model") or {}
        n_dates = dates.get(f"{t:g}mm") or []
        cells = []
        for b, (count, p, o) in enumerate(zip(curve.get("count", []), curve.get("mean_forecast", []),
                                              curve.get("observed_frequency", []), strict=False)):
            iv = intervals.get(reliability_sum_name("observed_frequency", t, b))
            gap = intervals.get(reliability_sum_name("reliability_gap", t, b))
            if iv is None or gap is None or count < min_points or p is None or o is None:
                continue
            level = iv["level"]
            lo, hi = iv.get("low"), iv.get("high")
            few = b < len(n_dates) and n_dates[b] < RELIABILITY_MIN_DATES
            if few:
                span, outside = f"[{n_dates[b]} date{'s' if n_dates[b] != 1 else ''}]", False
            elif lo is None or hi is None:
                span, outside = "[n/a]", False
            else:
                span = f"[{_p(lo)}, {_p(hi)}]"
                outside = gap.get("low") is not None and gap.get("high") is not None and (
                    gap["low"] > 0 or gap["high"] < 0)
            cells.append(f"{_p(p)}->{_p(o)} {span}{'*' if outside else ' '}")
        for k in range(0, len(cells), per_line):
            head = f"{t:5g} mm " if k == 0 else " " * 9
            lines.append(head + "  ".join(cells[k:k + per_line]).rstrip())
    if not lines:
        return ""
    pct = f"{100 * (level or 0.9):g} %"
    head = (f"Reliability of the model (bins with >= {min_points} points: forecast -> observed [{pct} interval by "
            f"init date]; * = the interval of observed minus forecast excludes 0, which by chance happens to "
            f"about {100 - 100 * (level or 0.9):g} % of the bins of a reliable forecast):")
    return "\n".join([head, *lines])


def format_decomposition(rows: Sequence[tuple[float, Mapping[str, float]]]) -> str:
    """The Brier decomposition table: a row per threshold.

    Parameters
    ----------
    rows : sequence of (threshold_mm, components)
        Components as :meth:`pqpf.verify.reliability.ReliabilityTable.components`.

    Returns
    -------
    str
        ``BS, REL, RES, UNC, WBV, WBC`` per threshold (``BS = REL - RES + UNC + WBV -
        2 WBC``).
    """
    keys = ("brier_score", "reliability", "resolution", "uncertainty", "within_bin_variance",
            "within_bin_covariance")
    lines = [" thresh         BS        REL        RES        UNC        WBV        WBC",
             " ------   --------   --------   --------   --------   --------   --------"]
    for t, comp in rows:
        cells = "  ".join(_cell(_finite(comp.get(k)), ".2e" if 0 < abs(comp.get(k) or 0) < 1e-3 else ".5f", 9)
                          for k in keys)
        lines.append(f"{t:5g} mm {cells}")
    return "\n".join(lines)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def events_ratio(curve: Mapping[str, Any]) -> float | None:
    """Forecast over observed events of one threshold (the sum of ``P(>= t)`` over the
    weighted points against the weighted count of events), from a reliability curve;
    None without events. 1 is calibrated in the large; the RPS-trained U-Net's heavy tail
    showed as 2-4 (docs/calibration.md, section 11)."""
    weights = curve.get("weight") or curve.get("count") or []
    forecast = sum((f or 0.0) * w for f, w in zip(curve.get("mean_forecast") or [], weights))
    observed = sum((o or 0.0) * w for o, w in zip(curve.get("observed_frequency") or [], weights))
    return forecast / observed if observed > 0 else None


def format_score_table(result: dict[str, Any]) -> str:
    """The Brier-skill table the CLI and the demo print (``fc/obs``: :func:`events_ratio`)."""

    def f(value: Any, fmt: str) -> str:
        width = int("".join(c for c in fmt.split(".")[0] if c.isdigit()) or 0)
        if value is None:
            return "n/a".rjust(width)
        if fmt.endswith("f") and "+" not in fmt and 0 < abs(value) < 1e-3:
            return format(value, f"{width}.2e")  # small Brier scores and base rates
        return format(value, fmt)

    lines = [" thresh   base rate   BS model    BS ref   BSS vs ref  BSS vs clim   points  fc/obs",
             " ------   ---------   --------  --------   ----------  -----------  -------  ------"]
    for row in result["per_threshold"]:
        lines.append(
            f"{row['threshold_mm']:5g} mm  {f(row['base_rate'], '9.4f')}  {f(row['bs_model'], '9.5f')} "
            f"{f(row['bs_ref'], '9.5f')}   {f(row['bss_vs_ref'], '+10.3f')}  {f(row['bss_vs_clim'], '+11.3f')}"
            f"  {row['n']:7d}  {f(events_ratio(row.get('reliability_curve_model') or {}), '6.2f')}"
        )
    crps = result.get("crps") or {}
    if crps.get("crps_model") is not None:
        lines.append(
            f"CRPS on the bins (amounts at bin lower edges): model {crps['crps_model']:.4f} mm, "
            f"GRAF {f(crps.get('crps_raw_binned'), '.4f')} mm, skill {f(crps.get('crpss_vs_raw_binned'), '+.3f')}"
        )
        lines.append(f"(GRAF MAE on unbinned amounts {f(crps.get('mae_raw'), '.4f')} mm: "
                     "not comparable with the above)")
    return "\n".join(lines)


def format_report(result: Mapping[str, Any]) -> str:
    """Everything ``verify_resunet.py`` prints, from a ``scores.json`` result: the Brier-skill
    table, the skills with their bootstrap intervals, the FSS table and the Brier
    decomposition of the model (the last three when the result has them)."""
    parts = [format_score_table(dict(result))]
    thresholds = [row["threshold_mm"] for row in result["per_threshold"]]
    if result.get("intervals"):
        intervals = {k: _interval(d) for k, d in result["intervals"].items()}
        parts.append(format_skill_intervals(intervals, thresholds))
    reliability = format_reliability_intervals(result)
    if reliability:
        parts.append(reliability)
    if result.get("fss"):
        parts.append("Fractions skill score (neighbourhood widths in grid points):\n" + format_fss_table(result["fss"]))
    curves = [(row["threshold_mm"], row.get("reliability_curve_model") or {}) for row in result["per_threshold"]]
    if all("within_bin_variance" in c for _, c in curves):
        parts.append("Brier score decomposition of the model (BS = REL - RES + UNC + WBV - 2 WBC):\n"
                     + format_decomposition(curves))
    return "\n\n".join(parts)


def _interval(d: Mapping[str, Any]) -> Interval:
    """An :class:`Interval` back from its JSON form (None -> NaN)."""
    def num(key: str) -> float:
        return math.nan if d.get(key) is None else float(d[key])

    return Interval(num("estimate"), num("low"), num("high"), float(d["level"]), int(d["n_days"]),
                    int(d["n_replicates"]), int(d["n_valid"]))
