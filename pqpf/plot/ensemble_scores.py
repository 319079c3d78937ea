"""Figures of the ensemble verification (PNG): rank histogram, spread-error diagram, FSS
against scale, power spectra, reliability of the member probabilities, rain area by object size.

Each takes the matching part of :meth:`pqpf.verify.ensemble_verifier.EnsembleVerifier.result`
(or the same read back from ``ensemble_scores.json``, where NaN is None) and writes one
PNG atomically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pqpf.plot.colours import format_mm
from pqpf.plot.figure import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["SOURCE_STYLE", "plot_rank_histogram", "plot_spread_skill", "plot_fss_scales", "plot_spectra",
           "plot_member_reliability", "plot_object_sizes"]

#: Colour and legend label of each forecast source on every figure.
SOURCE_STYLE: dict[str, tuple[str, str]] = {
    "members": ("#d62728", "members"),
    "ens_prob": ("#ff7f0e", "member probabilities"),
    "unet_prob": ("#1f77b4", "U-Net probabilities"),
    "unet_p50": ("#17becf", "U-Net median"),
    "unet_mean": ("#1f77b4", "U-Net conditional mean"),
    "unet": ("#1f77b4", "U-Net"),
    "graf": ("#7f7f7f", "raw GRAF"),
    "mrms": ("#000000", "MRMS"),
}


def _arr(values: Sequence[float | None]) -> NDArray[np.float64]:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _fmt(value: float | None, fmt: str = "+.3f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def plot_rank_histogram(path: str | Path, rank: Mapping[str, Any], title: str,
                        unet_draws: Mapping[str, Any] | None = None) -> Path:
    """Rank histogram as frequency relative to uniform (1 = flat), with the 0.5 and 2 lines.

    Parameters
    ----------
    path : path
        PNG to write.
    rank : mapping
        ``result["rank_histogram"]``: ``frequency`` (M + 1 values summing to 1).
    title : str
    unet_draws : mapping, optional
        ``result["unet_draws"]``: the histogram random draws from the U-Net would give
        (``rank_frequency``), drawn as a line over the bars.
    """
    freq = _arr(rank["frequency"])
    n = freq.size
    fig = new_figure(6.0, 4.0)
    ax = fig.subplots()
    ax.bar(np.arange(n), freq * n, width=0.85, color=SOURCE_STYLE["members"][0], label="observed rank")
    ax.axhline(1.0, color="black", lw=1.0, label="uniform")
    if unet_draws:
        ax.step(np.arange(n + 1) - 0.5, np.append(_arr(unet_draws["rank_frequency"]) * n, np.nan), where="post",
                color=SOURCE_STYLE["unet_mean"][0], lw=1.5, label="random draws from the U-Net (expected)")
    for level in (0.5, 2.0):
        ax.axhline(level, color="0.5", lw=0.8, ls="--")
    ax.set_xticks(np.arange(n))
    ax.set_xlabel(f"rank of MRMS among {n - 1} members (ties at random)", fontsize=9)
    ax.set_ylabel("frequency / uniform frequency", fontsize=9)
    ax.set_ylim(0, max(2.2, float(np.nanmax(freq * n)) * 1.1 if np.isfinite(freq).any() else 2.2))
    ax.set_title(f"{title}\nmin {_fmt(rank.get('min_over_uniform'), '.2f')}, "
                 f"max {_fmt(rank.get('max_over_uniform'), '.2f')} x uniform", fontsize=10)
    ax.legend(fontsize=8, loc="upper center")
    ax.tick_params(labelsize=8)
    return save_png(fig, path)


def plot_spread_skill(path: str | Path, spread_skill: Mapping[str, Any], title: str) -> Path:
    """Spread-error diagram: RMSE of the ensemble mean against the spread, per class of spread.

    Parameters
    ----------
    path : path
    spread_skill : mapping
        ``result["spread_skill"]``: ``ratio`` and ``binned`` (``spread``, ``rmse``, ``count``).
    title : str
    """
    binned = spread_skill["binned"]
    spread, rmse, count = _arr(binned["spread"]), _arr(binned["rmse"]), np.asarray(binned["count"])
    ok = np.isfinite(spread) & np.isfinite(rmse) & (spread > 0) & (rmse > 0) & (count > 0)
    fig = new_figure(5.0, 4.6)
    ax = fig.subplots()
    top = max(1.0, float(np.nanmax(np.concatenate([spread[ok], rmse[ok]]))) * 1.5) if ok.any() else 1.0
    ax.plot([1e-2, top], [1e-2, top], color="0.4", lw=0.9, label="spread = RMSE")
    ax.plot(spread[ok], rmse[ok], "o-", color=SOURCE_STYLE["members"][0], ms=5, label="classes of spread")
    for s, r, c in zip(spread[ok], rmse[ok], count[ok], strict=True):
        ax.annotate(f"{c:,}", (s, r), textcoords="offset points", xytext=(4, -10), fontsize=6, color="0.3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-2, top)
    ax.set_ylim(1e-2, top)
    ax.set_aspect("equal")
    ax.set_xlabel("ensemble spread sqrt((M+1)/M var) (mm)", fontsize=9)
    ax.set_ylabel("RMSE of the ensemble mean (mm)", fontsize=9)
    ax.set_title(f"{title}\nspread-skill ratio {_fmt(spread_skill.get('ratio'), '.3f')}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.tick_params(labelsize=8)
    return save_png(fig, path)


def plot_fss_scales(path: str | Path, fss: Mapping[str, Any], title: str,
                    sources: Sequence[str] = ("members", "graf", "unet_p50", "ens_prob", "unet_prob")) -> Path:
    """FSS against neighbourhood width, one panel per threshold, with the useful level.

    Parameters
    ----------
    path : path
    fss : mapping
        ``result["fss"]`` (:meth:`pqpf.verify.fss.FssAccumulator.result`).
    title : str
    sources : sequence of str
        Sources drawn (those present), in this order.
    """
    widths_km = fss["widths_km"] if all(w is not None for w in fss["widths_km"]) else fss["widths_px"]
    unit = "km" if widths_km is fss["widths_km"] else "px"
    n = len(fss["thresholds_mm"])
    fig = new_figure(4.6 * n, 4.2)
    axes = list(fig.subplots(1, n, squeeze=False).ravel())
    for k, ax in enumerate(axes):
        level = None
        for name in (s for s in sources if s in fss["sources"]):
            row = fss["sources"][name]["per_threshold"][k]
            colour, label = SOURCE_STYLE.get(name, ("#9467bd", name))
            ax.plot(widths_km, _arr(row["fss"]), marker="o", ms=3, lw=1.3, color=colour, label=label,
                    ls="--" if name.endswith("prob") else "-")
            level = row["fss_useful"]
        if "members" in sources and "members" in fss.get("pairs", {}):
            pairs = fss["pairs"]["members"]["per_threshold"][k]
            ax.plot(widths_km, _arr(pairs["fss"]), marker="x", ms=3, lw=1.0, color=SOURCE_STYLE["members"][0],
                    ls="-.", label="members vs one another")
        if level is not None:
            ax.axhline(level, color="0.4", lw=0.8, ls=":", label=f"useful ({level:.3f})")
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"neighbourhood width ({unit})", fontsize=9)
        ax.set_ylabel("FSS", fontsize=9)
        ax.set_title(f"\u2265 {format_mm(fss['thresholds_mm'][k])} mm", fontsize=10)
        ax.grid(alpha=0.25, lw=0.5)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


def _band(ax: Axes, band_km: Sequence[float]) -> None:
    ax.axvspan(min(band_km), max(band_km), color="#ffe8a0", alpha=0.6, zorder=0, lw=0)


def plot_spectra(path: str | Path, spectra: Mapping[str, Any], title: str,
                 sources: Sequence[str] = ("mrms", "members", "unet_mean", "graf")) -> Path:
    """Radially averaged power spectra (top) and their ratio to MRMS (bottom).

    Parameters
    ----------
    path : path
    spectra : mapping
        ``result["spectra"]``: per source ``wavelength_km`` and ``power``, and
        ``band_ratio_vs_mrms`` (its ``band_km`` is shaded).
    title : str
    sources : sequence of str
    """
    ref = _arr(spectra["mrms"]["power"])
    band = next(iter(spectra["band_ratio_vs_mrms"].values()))["band_km"]
    fig = new_figure(6.2, 7.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    for ax in (top, bottom):
        _band(ax, band)
    for name in (s for s in sources if s in spectra):
        lam, power = _arr(spectra[name]["wavelength_km"]), _arr(spectra[name]["power"])
        colour, label = SOURCE_STYLE[name]
        ok = np.isfinite(power) & (power > 0)
        top.plot(lam[ok], power[ok], color=colour, lw=1.5, label=label)
        if name != "mrms":
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = power / ref
            okr = np.isfinite(ratio) & (ratio > 0)
            band_ratio = spectra["band_ratio_vs_mrms"].get(name, {}).get("ratio")
            bottom.plot(lam[okr], ratio[okr], color=colour, lw=1.5,
                        label=f"{label}: {_fmt(band_ratio, '.2f')} in band")
    top.set_yscale("log")
    top.set_ylabel("power (mm$^2$ per annulus)", fontsize=9)
    top.legend(fontsize=8)
    bottom.axhline(1.0, color="black", lw=0.9)
    for level in (1 / 1.5, 1.5):
        bottom.axhline(level, color="0.5", lw=0.8, ls="--")
    bottom.set_yscale("log")
    bottom.set_ylabel("power / MRMS", fontsize=9)
    bottom.legend(fontsize=7)
    bottom.set_xscale("log")
    bottom.invert_xaxis()  # long waves on the left; the axes share x
    for ax in (top, bottom):
        ax.grid(alpha=0.25, lw=0.5, which="both")
        ax.tick_params(labelsize=8)
    bottom.set_xlabel("wavelength (km)", fontsize=9)
    top.set_title(f"{title}\nshaded: {band[0]:g}-{band[1]:g} km", fontsize=10)
    return save_png(fig, path)


def plot_member_reliability(path: str | Path, brier: Sequence[Mapping[str, Any]], title: str,
                            min_count: int = 100) -> Path:
    """Reliability diagrams of the member probabilities beside the U-Net's, one panel per threshold.

    Parameters
    ----------
    path : path
    brier : sequence of mapping
        ``result["brier"]``: per threshold ``threshold_mm``, ``base_rate``, the Brier skills
        and ``reliability_curve_members`` / ``reliability_curve_unet``.
    title : str
    min_count : int
        Probability bins with fewer points are not drawn.
    """
    if not brier:
        raise ValueError("brier is empty: nothing to plot")
    ncols = min(3, len(brier))
    nrows = -(-len(brier) // ncols)
    fig = new_figure(4.2 * ncols, 4.3 * nrows + 0.5)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax, row in zip(axes, brier, strict=False):
        ax.plot([0, 1], [0, 1], color="0.35", lw=0.9)
        base = row.get("base_rate")
        if base is not None and math.isfinite(base):
            ax.plot([0, 1], [base / 2, (1 + base) / 2], color="0.55", lw=0.8, ls="--")
        for key, source in (("reliability_curve_unet", "unet"), ("reliability_curve_members", "members")):
            curve = row[key]
            mean_f, obs_f = _arr(curve["mean_forecast"]), _arr(curve["observed_frequency"])
            ok = np.isfinite(mean_f) & np.isfinite(obs_f) & (np.asarray(curve["count"]) >= min_count)
            colour, label = SOURCE_STYLE[source]
            ax.plot(mean_f[ok], obs_f[ok], "o-", ms=4, lw=1.4, color=colour, label=label)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_title(f"\u2265 {format_mm(row['threshold_mm'])} mm: BSS members vs U-Net "
                     f"{_fmt(row.get('bss_members_vs_unet'))}\n(fair {_fmt(row.get('bss_fair_members_vs_unet'))})",
                     fontsize=9)
        ax.set_xlabel("forecast probability", fontsize=9)
        ax.set_ylabel("observed frequency", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25, lw=0.5)
    for ax in axes[len(brier):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


def plot_object_sizes(path: str | Path, objects: Mapping[str, Any], title: str) -> Path:
    """Rain area by object size, one panel per threshold: the share of the area at or
    above the threshold that lies in objects of at least a given size, for every source.

    Parameters
    ----------
    path : path
    objects : mapping
        ``result["objects"]`` (:meth:`pqpf.verify.objects.ObjectSizes.result`).
    title : str
    """
    thresholds = objects["thresholds_mm"]
    sizes = _arr(objects["size_classes_px"])
    dx = objects.get("dx_km")
    scale, unit = (dx * dx, "km$^2$") if dx else (1.0, "grid points")
    fig = new_figure(3.0 * len(thresholds) + 0.6, 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(thresholds), sharey=True))
    for ax, (k, t) in zip(axes, enumerate(thresholds), strict=True):
        for name, entry in objects["sources"].items():
            row = entry["per_threshold"][k]
            share = _arr(row["area_share_at_least_px"])
            ok = np.isfinite(share) & (share > 0)
            if not ok.any():
                continue
            colour, label = SOURCE_STYLE[name]
            # down to 0 where the class of the largest object ends
            x = np.append(sizes[ok], 2 * sizes[ok][-1]) * scale
            ax.step(x, np.append(share[ok], 0.0), where="post", color=colour, lw=1.6 if name == "mrms" else 1.2,
                    label=f"{label} (largest {row['max_largest_px'] * scale:,.0f} {unit})")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_title(f">= {format_mm(t)} mm", fontsize=9)
        ax.set_xlabel(f"object size at least ({unit})", fontsize=8)
        ax.grid(alpha=0.25, lw=0.5, which="both")
        ax.tick_params(labelsize=7)
        if ax.get_lines():
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, "no objects", transform=ax.transAxes, ha="center", va="center", fontsize=8)
    axes[0].set_ylabel("share of the rain area", fontsize=9)
    fig.suptitle(f"{title}\nrain objects: connected areas at or above the threshold", fontsize=10)
    return save_png(fig, path)
