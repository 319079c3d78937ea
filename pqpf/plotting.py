"""PNG figures: probability maps, GRAF and MRMS side by side, patch samples, reliability.

Maps are drawn in the grid's own projection coordinates (metres on the GRAF Lambert
grid), with equal aspect, and overlaid with coastlines, borders and US state lines from
:mod:`pqpf.basemap`; nothing is downloaded and cartopy is not needed. Figures are built
with matplotlib's object interface on an Agg canvas created inside each function (no
pyplot, no global backend switch, nothing left open), and written atomically.

Colour scales: amounts use discrete levels 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50 mm on a
light-to-dark sequential palette (below 0.1 mm is left white); probabilities use ten
0.1-wide classes of a perceptually ordered palette with probabilities below 0.02 left
white; missing data is light grey.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.plot.basemap import project_boundaries
from pqpf.grid import Grid
from pqpf.io.atomic import atomic_path

__all__ = [
    "AMOUNT_LEVELS_MM",
    "draw_boundaries",
    "forecast_title",
    "plot_probability_maps",
    "plot_fields_side_by_side",
    "plot_patch_samples",
    "plot_reliability",
]

logger = logging.getLogger(__name__)

#: Class boundaries (mm) of the amount colour scale; above the last is its own colour.
AMOUNT_LEVELS_MM: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0)
#: Class boundaries of the probability colour scale.
PROB_LEVELS: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
#: Probabilities below this are not coloured.
_PROB_MIN_SHOWN = 0.02
_MISSING_COLOUR = "#d4d4d4"
_LINE_COLOUR = "#1f1f1f"
#: Line width (points) and opacity per boundary kind.
_LINE_STYLE: dict[str, tuple[float, float]] = {
    "coastline": (0.7, 0.9),
    "lake": (0.6, 0.9),
    "country": (0.8, 0.9),
    "state": (0.45, 0.75),
}
_DPI = 120


# ---- figure plumbing --------------------------------------------------------------------


def _figure(width_in: float, height_in: float) -> Any:
    """A matplotlib Figure on its own Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and release it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, facecolor="white")
    fig.clear()
    logger.info("wrote %s", path)
    return path


def _amount_style() -> tuple[Any, Any]:
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    colours = colormaps["YlGnBu"](np.linspace(0.18, 1.0, len(AMOUNT_LEVELS_MM) - 1))
    cmap = ListedColormap(colours, name="pqpf_amount").with_extremes(
        under=(1.0, 1.0, 1.0, 0.0), over="#c51b8a", bad=_MISSING_COLOUR)
    return cmap, BoundaryNorm(AMOUNT_LEVELS_MM, cmap.N)


def _prob_style() -> tuple[Any, Any]:
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    colours = colormaps["magma_r"](np.linspace(0.04, 0.88, len(PROB_LEVELS) - 1))
    cmap = ListedColormap(colours, name="pqpf_prob").with_extremes(
        under=(1.0, 1.0, 1.0, 0.0), bad=_MISSING_COLOUR)
    return cmap, BoundaryNorm(PROB_LEVELS, cmap.N)


def _extent(grid: Grid) -> tuple[float, float, float, float]:
    """Outer cell edges ``(left, right, bottom, top)`` in projection coordinates."""
    xs = (grid.x0 - 0.5 * grid.dx, grid.x0 + (grid.nx - 0.5) * grid.dx)
    ys = (grid.y0 - 0.5 * grid.dy, grid.y0 + (grid.ny - 0.5) * grid.dy)
    return min(xs), max(xs), min(ys), max(ys)


def _check_field(name: str, field: ArrayLike, grid: Grid) -> NDArray[np.float64]:
    a = np.asarray(field, dtype=np.float64)
    if a.shape != grid.shape:
        raise ValueError(f"{name} must have the grid's shape {grid.shape}, got {a.shape}")
    return a


def _show_field(ax: Any, grid: Grid, field: NDArray[np.float64], cmap: Any, norm: Any) -> Any:
    """Draw a grid field in projection coordinates; returns the image for a colour bar."""
    data = np.ma.masked_invalid(field)
    if grid.dx < 0:
        data = data[:, ::-1]
    origin = "lower" if grid.dy > 0 else "upper"
    return ax.imshow(data, cmap=cmap, norm=norm, origin=origin, extent=_extent(grid),
                     interpolation="antialiased", interpolation_stage="rgba", zorder=1)


def draw_boundaries(ax: Any, grid: Grid, colour: str = _LINE_COLOUR,
                    scale: float = 1.0) -> int:
    """Overlay coastlines, lake shores, country and state borders on a map axes.

    Parameters
    ----------
    ax : matplotlib Axes
        Axes whose data coordinates are ``grid``'s projection coordinates.
    grid : Grid
        The grid of the fields drawn on ``ax``.
    colour : str
        Line colour.
    scale : float
        Multiplier of the line widths (smaller for small panels).

    Returns
    -------
    int
        Number of polylines drawn.
    """
    from matplotlib.collections import LineCollection

    lines = project_boundaries(grid)
    count = 0
    for kind in ("state", "lake", "coastline", "country"):
        pieces = lines.get(kind, [])
        if not pieces:
            continue
        width, alpha = _LINE_STYLE[kind]
        ax.add_collection(LineCollection(pieces, colors=colour, linewidths=width * scale,
                                         alpha=alpha, zorder=3, capstyle="round"),
                          autolim=False)
        count += len(pieces)
    return count


def _map_axes(ax: Any, grid: Grid, title: str) -> None:
    left, right, bottom, top = _extent(grid)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("white")
    ax.set_title(title, fontsize=10)


def _panel_size(grid: Grid, width_in: float) -> tuple[float, float]:
    left, right, bottom, top = _extent(grid)
    return width_in, width_in * (top - bottom) / (right - left)


def forecast_title(what: str, init: dt.datetime, lead_h: int) -> str:
    """``"<what>  init 2025-12-04 12 UTC  +12 h  valid 2025-12-05 00 UTC"``."""
    valid = init + dt.timedelta(hours=lead_h)
    return (f"{what}   init {init:%Y-%m-%d %H} UTC  +{lead_h} h   "
            f"valid {valid:%Y-%m-%d %H} UTC")


def _fmt_mm(value: float) -> str:
    return f"{value:g}"


# ---- maps ----------------------------------------------------------------------------------


def _amount_colourbar(fig: Any, image: Any, axes: Any, **kw: Any) -> None:
    bar = fig.colorbar(image, ax=axes, spacing="uniform", extend="max", **kw)
    bar.set_ticks(AMOUNT_LEVELS_MM, labels=[_fmt_mm(v) for v in AMOUNT_LEVELS_MM])
    bar.set_label("mm", fontsize=9)
    bar.ax.tick_params(labelsize=8)


def plot_probability_maps(
    path: str | Path,
    grid: Grid,
    graf_mm: ArrayLike,
    prob: ArrayLike,
    thresholds_mm: Sequence[float],
    title: str,
    show_thresholds: Sequence[float] = (1.0, 5.0, 10.0, 25.0),
) -> Path:
    """Map panels: GRAF 1-h amount and P(obs >= t) for several thresholds.

    Parameters
    ----------
    path : path
        PNG to write (atomically).
    grid : Grid
        Grid of the fields.
    graf_mm : float array, shape (ny, nx)
        GRAF 1-h amount (mm); NaN where missing.
    prob : float array, shape (T, ny, nx)
        Exceedance probabilities in [0, 1] for ``thresholds_mm``.
    thresholds_mm : sequence of float, length T
        Thresholds of ``prob`` (mm).
    title : str
        Figure title (e.g. from :func:`forecast_title`).
    show_thresholds : sequence of float
        Thresholds to draw; each must be in ``thresholds_mm``.

    Returns
    -------
    Path
        ``path``.
    """
    g = _check_field("graf_mm", graf_mm, grid)
    p = np.asarray(prob, dtype=np.float64)
    t = [float(v) for v in thresholds_mm]
    if p.shape != (len(t), *grid.shape):
        raise ValueError(f"prob must have shape (T={len(t)}, {grid.ny}, {grid.nx}), got {p.shape}")
    missing = [s for s in show_thresholds if not any(np.isclose(s, t))]
    if missing:
        raise ValueError(f"show_thresholds {missing} not among thresholds_mm {t}")
    index = [int(np.argmin(np.abs(np.asarray(t) - s))) for s in show_thresholds]

    npanel = 1 + len(index)
    ncols = min(3, npanel)
    nrows = -(-npanel // ncols)
    pw, ph = _panel_size(grid, 4.6)
    fig = _figure(ncols * pw + 1.2, nrows * (ph + 0.45) + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    amount_cmap, amount_norm = _amount_style()
    prob_cmap, prob_norm = _prob_style()

    image = _show_field(axes[0], grid, g, amount_cmap, amount_norm)
    _map_axes(axes[0], grid, "GRAF 1-h amount (mm)")
    draw_boundaries(axes[0], grid)
    _amount_colourbar(fig, image, axes[0], shrink=0.85, pad=0.01)

    prob_image = None
    for ax, k in zip(axes[1:], index):
        shown = np.where(p[k] < _PROB_MIN_SHOWN, -1.0, p[k])  # below: white ("under")
        prob_image = _show_field(ax, grid, shown, prob_cmap, prob_norm)
        _map_axes(ax, grid, f"P(1-h amount \u2265 {_fmt_mm(t[k])} mm)")
        draw_boundaries(ax, grid)
    spare = list(axes[npanel:])
    for ax in spare:
        ax.set_axis_off()
    if prob_image is not None:
        if spare:  # a horizontal colour bar in the first free panel
            cax = spare[0].inset_axes([0.06, 0.55, 0.88, 0.09])
            bar = fig.colorbar(prob_image, cax=cax, orientation="horizontal",
                               ticks=PROB_LEVELS)
            spare[0].text(0.5, 0.3, f"white: probability below {_PROB_MIN_SHOWN:g}\n"
                          "grey: no forecast", ha="center", va="top", fontsize=9,
                          transform=spare[0].transAxes)
        else:
            bar = fig.colorbar(prob_image, ax=list(axes[1:npanel]), ticks=PROB_LEVELS,
                               shrink=0.85, pad=0.01)
        bar.set_label("probability", fontsize=9)
        bar.ax.tick_params(labelsize=8)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_fields_side_by_side(
    path: str | Path,
    grid: Grid,
    graf_mm: ArrayLike,
    mrms_mm: ArrayLike,
    quality: ArrayLike,
    title: str,
    min_quality: float = 0.5,
) -> Path:
    """GRAF | MRMS | MRMS quality, on the same map.

    Parameters
    ----------
    graf_mm, mrms_mm : float arrays, shape (ny, nx)
        Forecast and observed 1-h amounts (mm); NaN where missing (grey).
    quality : float array, shape (ny, nx)
        MRMS radar quality index in [0, 1]. Points below ``min_quality`` are shaded
        grey on the MRMS panel (they are not used for training or verification) and
        outlined on the quality panel.
    """
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    g = _check_field("graf_mm", graf_mm, grid)
    m = _check_field("mrms_mm", mrms_mm, grid)
    q = _check_field("quality", quality, grid)
    pw, ph = _panel_size(grid, 4.6)
    fig = _figure(3 * pw + 1.5, ph + 0.9)
    axes = fig.subplots(1, 3)
    cmap, norm = _amount_style()
    image = _show_field(axes[0], grid, g, cmap, norm)
    _map_axes(axes[0], grid, "GRAF 1-h amount (mm)")
    _show_field(axes[1], grid, m, cmap, norm)
    poor = np.where(np.isfinite(q) & (q >= min_quality), np.nan, 1.0)
    shade = ListedColormap([(0.45, 0.45, 0.45, 0.45)]).with_extremes(bad=(0, 0, 0, 0))
    _show_field(axes[1], grid, poor, shade, None)
    _map_axes(axes[1], grid, f"MRMS 1-h amount (mm); grey: quality < {min_quality:g}")
    _amount_colourbar(fig, image, list(axes[:2]), shrink=0.85, pad=0.01)

    q_levels = np.round(np.linspace(0.0, 1.0, 11), 2)
    q_cmap = ListedColormap(colormaps["cividis"](np.linspace(0.0, 1.0, 10)),
                            name="pqpf_quality").with_extremes(bad=_MISSING_COLOUR)
    q_image = _show_field(axes[2], grid, q, q_cmap, BoundaryNorm(q_levels, q_cmap.N))
    if np.nanmin(q, initial=1.0) < min_quality < np.nanmax(q, initial=0.0):
        axes[2].contour(grid.x, grid.y, np.nan_to_num(q, nan=0.0), levels=[min_quality],
                        colors="white", linewidths=0.8, zorder=2)
    _map_axes(axes[2], grid, f"MRMS quality (white line: {min_quality:g})")
    bar = fig.colorbar(q_image, ax=axes[2], ticks=q_levels[::2], shrink=0.85, pad=0.01)
    bar.ax.tick_params(labelsize=8)
    for ax in axes:
        draw_boundaries(ax, grid, colour="#000000" if ax is not axes[2] else "#f0f0f0")
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


# ---- patches ---------------------------------------------------------------------------------


def _find_channel(names: Sequence[str], wanted: str | None, keys: Sequence[Sequence[str]],
                  what: str) -> int:
    lowered = [n.lower() for n in names]
    if wanted is not None:
        if wanted not in names:
            raise ValueError(f"{what} channel {wanted!r} not among channels {list(names)}")
        return list(names).index(wanted)
    for key in keys:
        for i, name in enumerate(lowered):
            if all(part in name for part in key):
                return i
    raise ValueError(f"no {what} channel among {list(names)}; name it explicitly")


def plot_patch_samples(
    path: str | Path,
    features: ArrayLike,
    channel_names: Sequence[str],
    mrms: ArrayLike,
    quality: ArrayLike,
    n: int = 8,
    seed: int = 0,
    graf_channel: str | None = None,
    terrain_channel: str | None = None,
    graf_to_mm: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None = None,
    min_quality: float = 0.5,
    labels: Sequence[str] | None = None,
    title: str = "Sampled training patches",
) -> Path:
    """A grid of randomly chosen patches: GRAF amount, MRMS, terrain difference.

    Parameters
    ----------
    features : float array, shape (N, C, P, P)
        Patch features as stored in a patch file.
    channel_names : sequence of str, length C
        Names of the feature channels.
    mrms, quality : float arrays, shape (N, P, P)
        MRMS 1-h amount (mm) and quality index of each patch; points with quality below
        ``min_quality`` are shaded grey.
    n : int
        Number of patches drawn (at most N), chosen without replacement with ``seed``.
    graf_channel, terrain_channel : str, optional
        Channel names of the GRAF amount and of the terrain local difference (m);
        default the first name containing "graf" and the first containing "terrain"
        and "diff" (else "diff").
    graf_to_mm : callable, optional
        Maps the GRAF channel back to mm when the features store a transformed amount
        (e.g. ``np.expm1`` for ``log1p``); default identity.
    labels : sequence of str, length N, optional
        Text shown above each patch (e.g. valid time and origin); default its index.
    """
    from matplotlib.colors import ListedColormap, TwoSlopeNorm

    f = np.asarray(features)
    mr = np.asarray(mrms, dtype=np.float64)
    qu = np.asarray(quality, dtype=np.float64)
    if f.ndim != 4 or f.shape[1] != len(channel_names):
        raise ValueError(f"features must have shape (N, C={len(channel_names)}, P, P), got {f.shape}")
    if mr.shape != (f.shape[0], *f.shape[2:]) or qu.shape != mr.shape:
        raise ValueError(f"mrms and quality must have shape {(f.shape[0], *f.shape[2:])}, "
                         f"got {mr.shape} and {qu.shape}")
    if labels is not None and len(labels) != f.shape[0]:
        raise ValueError(f"labels must have {f.shape[0]} entries, got {len(labels)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ig = _find_channel(channel_names, graf_channel, [("graf",)], "GRAF amount")
    it = _find_channel(channel_names, terrain_channel, [("terrain", "diff"), ("diff",)],
                       "terrain difference")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(f.shape[0], size=min(n, f.shape[0]), replace=False))

    ncol = chosen.size
    fig = _figure(1.75 * ncol + 1.3, 3 * 1.85 + 0.6)
    axes = fig.subplots(3, ncol, squeeze=False)
    cmap, norm = _amount_style()
    shade = ListedColormap([(0.45, 0.45, 0.45, 0.5)]).with_extremes(bad=(0, 0, 0, 0))
    terrain = f[chosen, it].astype(np.float64)
    span = float(np.nanmax(np.abs(terrain))) if np.isfinite(terrain).any() else 1.0
    t_norm = TwoSlopeNorm(vcenter=0.0, vmin=-max(span, 1.0), vmax=max(span, 1.0))
    images = [None, None, None]
    for c, idx in enumerate(chosen):
        graf = f[idx, ig].astype(np.float64)
        if graf_to_mm is not None:
            graf = np.asarray(graf_to_mm(graf), dtype=np.float64)
        poor = np.where(np.isfinite(qu[idx]) & (qu[idx] >= min_quality), np.nan, 1.0)
        panels = [(graf, cmap, norm), (mr[idx], cmap, norm), (terrain[c], "BrBG_r", t_norm)]
        for r, (data, cm, nm) in enumerate(panels):
            ax = axes[r, c]
            images[r] = ax.imshow(np.ma.masked_invalid(data), cmap=cm, norm=nm, origin="lower",
                                  interpolation="nearest")
            if r == 1:
                ax.imshow(poor, cmap=shade, origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, c].set_title(labels[idx] if labels is not None else f"patch {idx}", fontsize=8)
    for r, name in enumerate(("GRAF (mm)", "MRMS (mm)", "terrain diff. (m)")):
        axes[r, 0].set_ylabel(name, fontsize=9)
    _amount_colourbar(fig, images[0], list(axes[:2, :].ravel()), shrink=0.9, pad=0.01)
    bar = fig.colorbar(images[2], ax=list(axes[2, :]), shrink=0.9, pad=0.01)
    bar.ax.tick_params(labelsize=8)
    fig.suptitle(f"{title} ({chosen.size} of {f.shape[0]}; grey: MRMS quality < {min_quality:g})",
                 fontsize=10)
    return _save(fig, path)


# ---- reliability -----------------------------------------------------------------------------


def _curve(entry: Mapping[str, Any]) -> tuple[NDArray[np.float64], ...]:
    def arr(key: str) -> NDArray[np.float64]:
        return np.array([np.nan if v is None else v for v in entry[key]], dtype=np.float64)

    return arr("mean_forecast"), arr("observed_frequency"), arr("frequency_of_use")


def _fmt_score(value: Any) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.3f}"


def _fmt_rate(value: Any) -> str:
    """A base rate: 3 decimals, or 3 significant digits below 1e-3 (25 mm is rarer)."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"


def plot_reliability(
    path: str | Path,
    per_threshold: Sequence[Mapping[str, Any]],
    title: str,
    min_count: int = 100,
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
    from matplotlib.ticker import LogLocator, NullFormatter

    if not per_threshold:
        raise ValueError("per_threshold is empty: nothing to plot")
    npanel = len(per_threshold)
    ncols = min(3, npanel)
    nrows = -(-npanel // ncols)
    fig = _figure(4.3 * ncols, 4.3 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    model_colour, ref_colour = "#d62728", "#1f77b4"
    for ax, entry in zip(axes, per_threshold):
        base = entry.get("base_rate")
        ax.plot([0, 1], [0, 1], color="0.35", lw=0.9, zorder=1)
        if base is not None and np.isfinite(base):
            ax.axhline(base, color="0.55", lw=0.8, ls=":", zorder=1)
            ax.axvline(base, color="0.55", lw=0.8, ls=":", zorder=1)
            ax.plot([0, 1], [base / 2, (1 + base) / 2], color="0.55", lw=0.8, ls="--", zorder=1)
        edges = None
        freqs = []
        for key, colour, label, bss in (
            ("reliability_curve_ref", ref_colour, "smoothed GRAF", entry.get("bss_ref_vs_clim")),
            ("reliability_curve_model", model_colour, "U-Net", entry.get("bss_vs_clim")),
        ):
            curve = entry.get(key)
            if curve is None:
                continue
            mean_fcst, obs_freq, freq = _curve(curve)
            count = np.asarray(curve["count"])
            ok = np.isfinite(mean_fcst) & (count >= min_count)
            ax.plot(mean_fcst[ok], obs_freq[ok], "o-", color=colour, ms=4, lw=1.5,
                    label=f"{label} (BSS clim {_fmt_score(bss)})", zorder=3)
            edges = np.asarray(curve["prob_bin_edges"])
            freqs.append((freq, colour))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("forecast probability", fontsize=9)
        ax.set_ylabel("observed frequency", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25, lw=0.5)
        n = entry.get("n", 0)
        ax.set_title(
            f"\u2265 {_fmt_mm(entry['threshold_mm'])} mm   n={n:,}   base rate "
            f"{_fmt_rate(base)}\n"
            f"U-Net BSS vs smoothed GRAF {_fmt_score(entry.get('bss_vs_ref'))}", fontsize=9)
        ax.legend(loc="lower right", fontsize=7, frameon=True)
        if edges is not None and freqs:
            inset = ax.inset_axes([0.07, 0.6, 0.36, 0.32])
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
    for ax in axes[npanel:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)
