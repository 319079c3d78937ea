"""Ensemble maps: postage stamps (PNG) and an animated GIF across members.

Every panel is a 1-h amount on the MRMS-style amount scale of :mod:`pqpf.plot.colours`
(below 0.1 mm white, missing grey), drawn in the grid's projection coordinates with the
shipped coastlines and state borders (:mod:`pqpf.plot.basemap`). The stamps put the
observation (MRMS, poor-quality points shaded) and the deterministic fields (the U-Net's
central estimate, GRAF) first, then one panel per member, all on one colour bar. The GIF
shows one member per frame (beside MRMS when given), frames in member order; the same
input gives the same bytes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.grid import Grid
from pqpf.io.atomic import atomic_path
from pqpf.plot.basemap import draw_boundaries
from pqpf.plot.colours import amount_colourbar, amount_style, poor_quality_overlay
from pqpf.plot.figure import DPI, check_field, map_axes, new_figure, panel_size, save_png, show_field

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

__all__ = ["member_title", "plot_postage_stamps", "write_member_gif"]

logger = logging.getLogger(__name__)

#: Width (inches) of one postage stamp and of one GIF panel.
_STAMP_IN = 2.6
_GIF_PANEL_IN = 4.2
#: Line-width multiplier of the borders on stamps (thin lines on small panels).
_STAMP_LINES = 0.6
#: Opacity of the grey over MRMS points of poor quality.
_POOR_ALPHA = 0.45


def member_title(index: int, n_members: int) -> str:
    """``"member 3 of 10"`` for index 2 (members are numbered from 1 on the figures)."""
    return f"member {index + 1} of {n_members}"


def _members(members_mm: ArrayLike, grid: Grid) -> NDArray[np.float64]:
    m = np.asarray(members_mm, dtype=np.float64)
    if m.ndim != 3 or m.shape[0] < 1 or m.shape[1:] != grid.shape:
        raise ValueError(f"members_mm must have shape (M >= 1, {grid.ny}, {grid.nx}), got {m.shape}")
    return m


def _reference_panels(grid: Grid, mrms_mm: ArrayLike | None, quality: ArrayLike | None, min_quality: float,
                      deterministic: Sequence[tuple[str, ArrayLike]]) -> list[tuple[str, NDArray[np.float64],
                                                                                   NDArray[np.float64] | None]]:
    """(title, field, quality or None) of the panels before the members."""
    panels: list[tuple[str, NDArray[np.float64], NDArray[np.float64] | None]] = []
    if mrms_mm is not None:
        q = None if quality is None else check_field("quality", quality, grid)
        label = "MRMS" + ("" if q is None else f" (grey: quality < {min_quality:g})")
        panels.append((label, check_field("mrms_mm", mrms_mm, grid), q))
    for label, values in deterministic:
        panels.append((label, check_field(label, values, grid), None))
    return panels


def _stamp(ax: Axes, grid: Grid, field: NDArray[np.float64], title: str, quality: NDArray[np.float64] | None,
           min_quality: float) -> AxesImage:
    cmap, norm = amount_style()
    image = show_field(ax, grid, field, cmap, norm)
    if quality is not None:
        poor, shade = poor_quality_overlay(quality, min_quality, alpha=_POOR_ALPHA)
        show_field(ax, grid, poor, shade, None)
    map_axes(ax, grid, title)
    ax.title.set_fontsize(9)
    draw_boundaries(ax, grid, scale=_STAMP_LINES)
    return image


def plot_postage_stamps(
    path: str | Path,
    grid: Grid,
    members_mm: ArrayLike,
    title: str,
    *,
    mrms_mm: ArrayLike | None = None,
    quality: ArrayLike | None = None,
    min_quality: float = 0.5,
    deterministic: Sequence[tuple[str, ArrayLike]] = (),
    ncols: int | None = None,
) -> Path:
    """Postage stamps: MRMS and deterministic fields first, then one map per member.

    Parameters
    ----------
    path : path
        PNG to write (atomically).
    grid : Grid
        Grid of the fields.
    members_mm : float array, shape (M, ny, nx)
        Member 1-h amounts (mm); NaN where missing (grey).
    title : str
        Figure title (e.g. :func:`pqpf.plot.maps.forecast_title`).
    mrms_mm : float array (ny, nx), optional
        The observed amount (mm), drawn first.
    quality : float array (ny, nx), optional
        MRMS quality index; points below ``min_quality`` are shaded grey on the MRMS panel.
    min_quality : float
        See ``quality``.
    deterministic : sequence of (label, field (ny, nx) in mm)
        Panels after MRMS, e.g. ``[("U-Net mean", unet_mm), ("GRAF", graf_mm)]``.
    ncols : int, optional
        Panels per row; default about the square root of the number of panels, 3 to 6.

    Returns
    -------
    Path
        ``path``. Panel titles: the labels, then :func:`member_title`.
    """
    members = _members(members_mm, grid)
    panels = _reference_panels(grid, mrms_mm, quality, min_quality, deterministic)
    panels += [(member_title(k, len(members)), members[k], None) for k in range(len(members))]
    n = len(panels)
    cols = ncols if ncols is not None else min(n, max(3, min(6, math.ceil(math.sqrt(n)))))
    if cols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    rows = -(-n // cols)
    pw, ph = panel_size(grid, _STAMP_IN)
    fig = new_figure(cols * pw + 0.9, rows * (ph + 0.3) + 0.5)
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    image = None
    for ax, (label, field, q) in zip(axes, panels, strict=False):
        drawn = _stamp(ax, grid, field, label, q, min_quality)
        if image is None:
            image = drawn
    for ax in axes[n:]:
        ax.set_axis_off()
    if image is not None:
        amount_colourbar(fig, image, axes, shrink=min(0.9, 0.35 + 0.15 * rows), pad=0.01)
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


# ---- animated GIF ------------------------------------------------------------------------


def _gif_writer(fps: float) -> Any:
    """matplotlib's Pillow writer, saving as GIF whatever the (temporary) file name."""
    from matplotlib.animation import PillowWriter

    class _GifWriter(PillowWriter):
        def finish(self) -> None:
            frames = self._frames  # type: ignore[attr-defined]
            frames[0].save(self.outfile, format="GIF", save_all=True, append_images=frames[1:],
                           duration=int(round(1000 / self.fps)), loop=0)

    return _GifWriter(fps=fps)  # type: ignore[arg-type]  # matplotlib takes any positive fps


def _gif_figure(grid: Grid, mrms_mm: NDArray[np.float64] | None) -> tuple[Figure, list[Axes]]:
    pw, ph = panel_size(grid, _GIF_PANEL_IN)
    ncols = 1 if mrms_mm is None else 2
    fig = new_figure(ncols * pw + 0.9, ph + 0.7)
    axes = list(fig.subplots(1, ncols, squeeze=False).ravel())
    return fig, axes


def write_member_gif(
    path: str | Path,
    grid: Grid,
    members_mm: ArrayLike,
    title: str,
    *,
    mrms_mm: ArrayLike | None = None,
    frame_ms: int = 700,
) -> Path:
    """An animated GIF with one frame per member (beside MRMS when given), looping.

    Parameters
    ----------
    path : path
        GIF to write (atomically).
    grid : Grid
    members_mm : float array, shape (M, ny, nx)
        Member 1-h amounts (mm).
    title : str
        Figure title, shown on every frame.
    mrms_mm : float array (ny, nx), optional
        Observed amount, a fixed panel on the right.
    frame_ms : int
        Display time of each frame (ms), >= 20.

    Returns
    -------
    Path
        ``path``. Frame k shows member k + 1 (panel title :func:`member_title`); frames
        are rendered by matplotlib and written by its Pillow writer, deterministic.
    """
    members = _members(members_mm, grid)
    if frame_ms < 20:
        raise ValueError(f"frame_ms must be >= 20, got {frame_ms}")
    obs = None if mrms_mm is None else check_field("mrms_mm", mrms_mm, grid)
    fig, axes = _gif_figure(grid, obs)
    cmap, norm = amount_style()
    image = show_field(axes[0], grid, members[0], cmap, norm)
    map_axes(axes[0], grid, member_title(0, len(members)))
    draw_boundaries(axes[0], grid)
    if obs is not None:
        show_field(axes[1], grid, obs, cmap, norm)
        map_axes(axes[1], grid, "MRMS")
        draw_boundaries(axes[1], grid)
    amount_colourbar(fig, image, axes, shrink=0.85, pad=0.01)
    fig.suptitle(title, fontsize=11)
    writer = _gif_writer(1000.0 / frame_ms)
    path = Path(path)
    with atomic_path(path) as tmp:
        writer.setup(fig, str(tmp), dpi=DPI)
        for k in range(len(members)):
            if k:
                image.remove()
                image = show_field(axes[0], grid, members[k], cmap, norm)
                axes[0].set_title(member_title(k, len(members)), fontsize=10)
            writer.grab_frame()
        writer.finish()
    fig.clear()
    logger.info("wrote %s (%d frames)", path, len(members))
    return path
