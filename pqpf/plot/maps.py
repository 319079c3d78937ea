"""Map figures: GRAF amount with exceedance probabilities, and GRAF | MRMS | quality.

Every panel is drawn in the grid's projection coordinates with coastlines and borders
(:mod:`pqpf.plot.basemap`) on the colour scales of :mod:`pqpf.plot.colours`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.grid import Grid
from pqpf.plot.basemap import draw_boundaries
from pqpf.plot.colours import (
    PROB_LEVELS,
    PROB_MIN_SHOWN,
    QUALITY_LEVELS,
    amount_colourbar,
    amount_style,
    format_mm,
    poor_quality_overlay,
    prob_style,
    quality_style,
)
from pqpf.plot.figure import check_field, map_axes, new_figure, panel_size, save_png, show_field

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

__all__ = ["forecast_title", "plot_fields_side_by_side", "plot_probability_maps"]

#: Width (inches) of one map panel.
_PANEL_IN = 4.6


def forecast_title(what: str, init: dt.datetime, lead_h: int) -> str:
    """``"<what>   init 2025-12-04 12 UTC  +12 h   valid 2025-12-05 00 UTC"``."""
    valid = init + dt.timedelta(hours=lead_h)
    return (f"{what}   init {init:%Y-%m-%d %H} UTC  +{lead_h} h   "
            f"valid {valid:%Y-%m-%d %H} UTC")


def _check_probabilities(
    grid: Grid, prob: ArrayLike, thresholds_mm: Sequence[float], show_thresholds: Sequence[float]
) -> tuple[NDArray[np.float64], list[float], list[int]]:
    """``prob`` as float64, the thresholds as floats and the indices of the ones shown."""
    p = np.asarray(prob, dtype=np.float64)
    t = [float(v) for v in thresholds_mm]
    if p.shape != (len(t), *grid.shape):
        raise ValueError(f"prob must have shape (T={len(t)}, {grid.ny}, {grid.nx}), got {p.shape}")
    missing = [s for s in show_thresholds if not any(np.isclose(s, t))]
    if missing:
        raise ValueError(f"show_thresholds {missing} not among thresholds_mm {t}")
    return p, t, [int(np.argmin(np.abs(np.asarray(t) - s))) for s in show_thresholds]


def _probability_colourbar(fig: Figure, image: AxesImage, prob_axes: list[Axes], spare: list[Axes]) -> None:
    """Colour bar of the probability panels: horizontal in the first free panel (with a
    note on the white and grey), else vertical beside the panels."""
    if spare:
        cax = spare[0].inset_axes((0.06, 0.55, 0.88, 0.09))
        bar = fig.colorbar(image, cax=cax, orientation="horizontal", ticks=PROB_LEVELS)
        spare[0].text(0.5, 0.3, f"white: probability below {PROB_MIN_SHOWN:g}\n"
                      "grey: no forecast", ha="center", va="top", fontsize=9,
                      transform=spare[0].transAxes)
    else:
        bar = fig.colorbar(image, ax=prob_axes, ticks=PROB_LEVELS, shrink=0.85, pad=0.01)
    bar.set_label("probability", fontsize=9)
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
        Exceedance probabilities in [0, 1] for ``thresholds_mm``; NaN where missing
        (grey). Probabilities below 0.02 are left white.
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
    g = check_field("graf_mm", graf_mm, grid)
    p, t, index = _check_probabilities(grid, prob, thresholds_mm, show_thresholds)
    npanel = 1 + len(index)
    ncols = min(3, npanel)
    nrows = -(-npanel // ncols)
    pw, ph = panel_size(grid, _PANEL_IN)
    fig = new_figure(ncols * pw + 1.2, nrows * (ph + 0.45) + 0.5)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    amount_cmap, amount_norm = amount_style()
    prob_cmap, prob_norm = prob_style()

    image = show_field(axes[0], grid, g, amount_cmap, amount_norm)
    map_axes(axes[0], grid, "GRAF 1-h amount (mm)")
    draw_boundaries(axes[0], grid)
    amount_colourbar(fig, image, axes[0], shrink=0.85, pad=0.01)

    prob_image = None
    for ax, k in zip(axes[1:npanel], index, strict=True):
        shown = np.where(p[k] < PROB_MIN_SHOWN, -1.0, p[k])  # below: white ("under")
        prob_image = show_field(ax, grid, shown, prob_cmap, prob_norm)
        map_axes(ax, grid, f"P(1-h amount \u2265 {format_mm(t[k])} mm)")
        draw_boundaries(ax, grid)
    spare = axes[npanel:]
    for ax in spare:
        ax.set_axis_off()
    if prob_image is not None:
        _probability_colourbar(fig, prob_image, axes[1:npanel], spare)
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


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
    path : path
        PNG to write (atomically).
    grid : Grid
        Grid of the fields.
    graf_mm, mrms_mm : float arrays, shape (ny, nx)
        Forecast and observed 1-h amounts (mm); NaN where missing (grey).
    quality : float array, shape (ny, nx)
        MRMS radar quality index in [0, 1]. Points below ``min_quality`` are shaded
        grey on the MRMS panel (they are not used for training or verification) and
        outlined on the quality panel.
    title : str
        Figure title (e.g. from :func:`forecast_title`).
    min_quality : float
        Quality below which MRMS is not trusted.

    Returns
    -------
    Path
        ``path``.
    """
    g = check_field("graf_mm", graf_mm, grid)
    m = check_field("mrms_mm", mrms_mm, grid)
    q = check_field("quality", quality, grid)
    pw, ph = panel_size(grid, _PANEL_IN)
    fig = new_figure(3 * pw + 1.5, ph + 0.9)
    axes = list(fig.subplots(1, 3))
    cmap, norm = amount_style()
    image = show_field(axes[0], grid, g, cmap, norm)
    map_axes(axes[0], grid, "GRAF 1-h amount (mm)")
    show_field(axes[1], grid, m, cmap, norm)
    poor, shade = poor_quality_overlay(q, min_quality, alpha=0.45)
    show_field(axes[1], grid, poor, shade, None)
    map_axes(axes[1], grid, f"MRMS 1-h amount (mm); grey: quality < {min_quality:g}")
    amount_colourbar(fig, image, axes[:2], shrink=0.85, pad=0.01)

    q_cmap, q_norm = quality_style()
    q_image = show_field(axes[2], grid, q, q_cmap, q_norm)
    if np.nanmin(q, initial=1.0) < min_quality < np.nanmax(q, initial=0.0):
        axes[2].contour(grid.x, grid.y, np.nan_to_num(q, nan=0.0), levels=[min_quality],
                        colors="white", linewidths=0.8, zorder=2)
    map_axes(axes[2], grid, f"MRMS quality (white line: {min_quality:g})")
    bar = fig.colorbar(q_image, ax=axes[2], ticks=QUALITY_LEVELS[::2], shrink=0.85, pad=0.01)
    bar.ax.tick_params(labelsize=8)
    for ax in axes:
        draw_boundaries(ax, grid, colour="#000000" if ax is not axes[2] else "#f0f0f0")
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)
