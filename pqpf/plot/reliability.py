"""Reliability (attributes) diagrams with a frequency-of-use inset, one panel per threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pqpf.plot.colours import format_mm
from pqpf.plot.figure import new_figure, save_png
from pqpf.verify.bootstrap import reliability_sum_name

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["MODEL_COLOUR", "REF_COLOUR", "plot_reliability"]

#: Colour of the U-Net's curve and bars.
MODEL_COLOUR = "#d62728"
#: Colour of the smoothed-GRAF reference's curve and bars.
REF_COLOUR = "#1f77b4"
#: (curve key, colour, legend label, key of its Brier skill against climatology), drawn in order.
_CURVES = (
    ("reliability_curve_ref", REF_COLOUR, "smoothed GRAF", "bss_ref_vs_clim"),
    ("reliability_curve_model", MODEL_COLOUR, "U-Net", "bss_vs_clim"),
)


def _curve(entry: Mapping[str, Any]) -> tuple[NDArray[np.float64], ...]:
    """Mean forecast, observed frequency and frequency of use of a curve (None -> NaN)."""
    def arr(key: str) -> NDArray[np.float64]:
        return np.array([np.nan if v is None else v for v in entry[key]], dtype=np.float64)

    return arr("mean_forecast"), arr("observed_frequency"), arr("frequency_of_use")


def _fmt_score(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.3f}"


def _fmt_rate(value: float | None) -> str:
    """A base rate: 3 decimals, or 3 significant digits below 1e-3 (25 mm is rarer)."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"


def _reference_lines(ax: Axes, base: float | None) -> None:
    """Diagonal; climatology (dotted) and the no-skill line (dashed) when the base rate is known."""
    ax.plot([0, 1], [0, 1], color="0.35", lw=0.9, zorder=1)
    if base is not None and np.isfinite(base):
        ax.axhline(base, color="0.55", lw=0.8, ls=":", zorder=1)
        ax.axvline(base, color="0.55", lw=0.8, ls=":", zorder=1)
        ax.plot([0, 1], [base / 2, (1 + base) / 2], color="0.55", lw=0.8, ls="--", zorder=1)


def _curves(
    ax: Axes, entry: Mapping[str, Any], min_count: int, intervals: Mapping[str, Any] | None = None
) -> tuple[NDArray[np.float64] | None, list[tuple[NDArray[np.float64], str]]]:
    """Draw the reference's and the model's curves (bins with at least ``min_count`` points),
    the model's with the bootstrap intervals of its observed frequencies when given.

    Returns the probability bin edges (None without curves) and, per curve drawn, its
    frequency of use and colour.
    """
    edges = None
    freqs = []
    for key, colour, label, bss_key in _CURVES:
        curve = entry.get(key)
        if curve is None:
            continue
        mean_fcst, obs_freq, freq = _curve(curve)
        count = np.asarray(curve["count"])
        ok = np.isfinite(mean_fcst) & (count >= min_count)
        ax.plot(mean_fcst[ok], obs_freq[ok], "o-", color=colour, ms=4, lw=1.5,
                label=f"{label} (BSS clim {_fmt_score(entry.get(bss_key))})", zorder=3)
        if key == "reliability_curve_model" and intervals:
            _interval_bars(ax, entry["threshold_mm"], mean_fcst, ok, intervals, colour)
        edges = np.asarray(curve["prob_bin_edges"], dtype=np.float64)
        freqs.append((freq, colour))
    return edges, freqs


def _interval_bars(ax: Axes, threshold_mm: float, mean_fcst: NDArray[np.float64], ok: NDArray[np.bool_],
                   intervals: Mapping[str, Any], colour: str) -> None:
    """Vertical bars: the bootstrap intervals of the observed frequency per bin."""
    for b in np.flatnonzero(ok):
        iv = intervals.get(reliability_sum_name("observed_frequency", threshold_mm, int(b))) or {}
        if iv.get("low") is not None and iv.get("high") is not None and iv["high"] > iv["low"]:
            ax.plot([mean_fcst[b]] * 2, [iv["low"], iv["high"]], color=colour, lw=1.0, alpha=0.7, zorder=2)


def _frame(ax: Axes, entry: Mapping[str, Any], base: float | None) -> None:
    """Unit square, labels, grid, the panel's title with n, base rate and skill, legend."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("forecast probability", fontsize=9)
    ax.set_ylabel("observed frequency", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.25, lw=0.5)
    n = entry.get("n", 0)
    ax.set_title(
        f"\u2265 {format_mm(entry['threshold_mm'])} mm   n={n:,}   base rate "
        f"{_fmt_rate(base)}\n"
        f"U-Net BSS vs smoothed GRAF {_fmt_score(entry.get('bss_vs_ref'))}", fontsize=9)
    ax.legend(loc="lower right", fontsize=7, frameon=True)


def _frequency_inset(ax: Axes, edges: NDArray[np.float64],
                     freqs: list[tuple[NDArray[np.float64], str]]) -> Axes:
    """Inset of side-by-side bars, one per curve, of each bin's frequency of use (log scale).

    Bars of empty bins are not drawn (their height is NaN). Returns the inset axes.
    """
    from matplotlib.ticker import LogLocator, NullFormatter

    inset = ax.inset_axes((0.07, 0.6, 0.36, 0.32))
    centres = 0.5 * (edges[:-1] + edges[1:])
    width = np.diff(edges)
    smallest = 1.0
    for j, (freq, colour) in enumerate(freqs):
        f_plot = np.where(np.isfinite(freq) & (freq > 0), freq, np.nan)
        inset.bar(centres + (j - 0.5) * width * 0.42, f_plot, width=width * 0.42,
                  color=colour, alpha=0.85)
        if np.isfinite(f_plot).any():
            smallest = min(smallest, float(np.nanmin(f_plot)))
    inset.set_yscale("log")
    # Fractions never exceed 1; without limits a panel whose forecasts all fall in
    # one bin gets an axis running to 10.
    inset.set_ylim(10 ** np.floor(np.log10(smallest) - 0.3), 1.5)
    inset.yaxis.set_major_locator(LogLocator(numticks=4))
    inset.yaxis.set_minor_formatter(NullFormatter())
    inset.set_xlim(0, 1)
    inset.set_title("frequency of use", fontsize=7, pad=2)
    inset.tick_params(labelsize=6, length=2)
    inset.set_facecolor((1, 1, 1, 0.85))
    return inset


def plot_reliability(
    path: str | Path,
    per_threshold: Sequence[Mapping[str, Any]],
    title: str,
    min_count: int = 100,
    intervals: Mapping[str, Any] | None = None,
) -> Path:
    """Reliability (attributes) diagrams, one panel per threshold.

    Parameters
    ----------
    path : path
        PNG to write.
    per_threshold : sequence of dict
        ``Verifier.result()["per_threshold"]`` (or the same read back from JSON): each
        with ``threshold_mm``, ``n``, ``base_rate``, ``bss_vs_ref``, ``bss_vs_clim``,
        ``bss_ref_vs_clim`` and the curves ``reliability_curve_model`` and
        ``reliability_curve_ref``.
    title : str
        Figure title (e.g. the lead and the date range).
    min_count : int
        Bins with fewer grid points than this are not drawn on the curves (neighbouring
        points are strongly correlated, so a few dozen are one or two rain cells and
        their observed frequency is noise); the frequency-of-use inset still shows them.
    intervals : mapping, optional
        ``scores.json``'s ``intervals``: the model's ``observed_frequency@{t}mm@b{i}``
        are drawn as vertical bars (block-bootstrap intervals by init date).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Each panel shows the diagonal (perfect reliability), the sample climatology
    (horizontal and vertical dotted lines) and the no-skill line halfway between the
    diagonal and climatology (Hsu and Murphy 1986), the model's and the reference's
    curves, and an inset with the frequency of use of each probability bin (log scale).

    References
    ----------
    Hsu, W.-R. and Murphy, A. H. (1986). The attributes diagram: a geometrical framework
    for assessing the quality of probability forecasts. Int. J. Forecasting, 2, 285-293.
    """
    if not per_threshold:
        raise ValueError("per_threshold is empty: nothing to plot")
    npanel = len(per_threshold)
    ncols = min(3, npanel)
    nrows = -(-npanel // ncols)
    fig = new_figure(4.3 * ncols, 4.3 * nrows + 0.5)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax, entry in zip(axes, per_threshold, strict=False):  # more axes than panels
        base = entry.get("base_rate")
        _reference_lines(ax, base)
        edges, freqs = _curves(ax, entry, min_count, intervals)
        _frame(ax, entry, base)
        if edges is not None and freqs:
            _frequency_inset(ax, edges, freqs)
    for ax in axes[npanel:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)
