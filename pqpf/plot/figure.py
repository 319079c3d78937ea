"""Figure plumbing shared by every plot: Agg figures, atomic PNGs, map axes in grid coordinates.

Figures are built with matplotlib's object interface on an Agg canvas created for each
figure (no pyplot, no global backend switch, nothing left open) and written atomically.
Maps are drawn in the grid's own projection coordinates (metres on the GRAF Lambert
grid) with equal aspect, so boundary lines from :mod:`pqpf.plot.basemap` overlay them
exactly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.grid import Grid
from pqpf.io.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

__all__ = [
    "DPI",
    "check_field",
    "grid_extent",
    "map_axes",
    "new_figure",
    "panel_size",
    "save_png",
    "show_field",
]

logger = logging.getLogger(__name__)

#: Resolution of every PNG (dots per inch).
DPI = 120


def new_figure(width_in: float, height_in: float) -> Figure:
    """A matplotlib Figure (constrained layout) on its own Agg canvas, no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically (white background) and release it; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    fig.clear()
    logger.info("wrote %s", path)
    return path


def grid_extent(grid: Grid) -> tuple[float, float, float, float]:
    """Outer cell edges ``(left, right, bottom, top)`` in projection coordinates."""
    xs = (grid.x0 - 0.5 * grid.dx, grid.x0 + (grid.nx - 0.5) * grid.dx)
    ys = (grid.y0 - 0.5 * grid.dy, grid.y0 + (grid.ny - 0.5) * grid.dy)
    return min(xs), max(xs), min(ys), max(ys)


def check_field(name: str, field: ArrayLike, grid: Grid) -> NDArray[np.float64]:
    """``field`` as float64, after checking it has ``grid``'s shape (``ValueError`` if not)."""
    a = np.asarray(field, dtype=np.float64)
    if a.shape != grid.shape:
        raise ValueError(f"{name} must have the grid's shape {grid.shape}, got {a.shape}")
    return a


def show_field(ax: Axes, grid: Grid, field: NDArray[np.float64], cmap: Colormap,
               norm: Normalize | None) -> AxesImage:
    """Draw a grid field in projection coordinates (NaN masked); returns the image.

    Each grid point fills its cell ``[x - dx/2, x + dx/2] x [y - dy/2, y + dy/2]``
    whichever way the grid's axes run.
    """
    data = np.ma.masked_invalid(field)
    if grid.dx < 0:
        data = data[:, ::-1]
    origin: Literal["lower", "upper"] = "lower" if grid.dy > 0 else "upper"
    return ax.imshow(data, cmap=cmap, norm=norm, origin=origin, extent=grid_extent(grid),
                     interpolation="antialiased", interpolation_stage="rgba", zorder=1)


def map_axes(ax: Axes, grid: Grid, title: str) -> None:
    """Limit ``ax`` to the grid's extent, equal aspect, no ticks, white background."""
    left, right, bottom, top = grid_extent(grid)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("white")
    ax.set_title(title, fontsize=10)


def panel_size(grid: Grid, width_in: float) -> tuple[float, float]:
    """``(width, height)`` in inches of a map panel ``width_in`` wide with the grid's aspect."""
    left, right, bottom, top = grid_extent(grid)
    return width_in, width_in * (top - bottom) / (right - left)
