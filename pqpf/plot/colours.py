"""Colour scales of every pqpf figure, defined once.

- Amounts (mm): discrete classes bounded by :data:`AMOUNT_LEVELS_MM` on a light-to-dark
  sequential palette (YlGnBu); below 0.1 mm is left uncoloured (the white axes show
  through), above 50 mm has its own colour.
- Probabilities: ten 0.1-wide classes (:data:`PROB_LEVELS`) of a perceptually ordered
  palette (magma, reversed); probabilities below :data:`PROB_MIN_SHOWN` are left
  uncoloured.
- MRMS quality index: ten 0.1-wide classes of cividis.
- Terrain local difference (m): a diverging palette centred on 0.
- Missing data (NaN) is :data:`MISSING_COLOUR` on every scale; MRMS points of poor quality
  are shaded with a translucent grey overlay (:func:`poor_quality_overlay`).

matplotlib is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, Colormap, TwoSlopeNorm
    from matplotlib.figure import Figure

__all__ = [
    "AMOUNT_LEVELS_MM",
    "LINE_COLOUR",
    "MISSING_COLOUR",
    "PROB_LEVELS",
    "PROB_MIN_SHOWN",
    "QUALITY_LEVELS",
    "amount_colourbar",
    "amount_style",
    "format_mm",
    "poor_quality_overlay",
    "prob_style",
    "quality_style",
    "terrain_difference_style",
]

#: Class boundaries (mm) of the amount colour scale; above the last is its own colour.
AMOUNT_LEVELS_MM: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0)
#: Class boundaries of the probability colour scale.
PROB_LEVELS: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
#: Probabilities below this are not coloured.
PROB_MIN_SHOWN = 0.02
#: Class boundaries of the MRMS quality index colour scale.
QUALITY_LEVELS: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
#: Colour of missing data (NaN) on every scale.
MISSING_COLOUR = "#d4d4d4"
#: Default colour of coastlines and borders.
LINE_COLOUR = "#1f1f1f"
#: Under-range colour: fully transparent, so the axes' white shows through.
_CLEAR = (1.0, 1.0, 1.0, 0.0)
_AMOUNT_OVER_COLOUR = "#c51b8a"
_POOR_QUALITY_GREY = (0.45, 0.45, 0.45)


def format_mm(value: float) -> str:
    """An amount or threshold in mm as the figures label it (``0.25``, ``1``, ``10``)."""
    return f"{value:g}"


def amount_style() -> tuple[Colormap, BoundaryNorm]:
    """Colour map and norm of 1-h amounts (mm); NaN is :data:`MISSING_COLOUR`."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    colours = colormaps["YlGnBu"](np.linspace(0.18, 1.0, len(AMOUNT_LEVELS_MM) - 1))
    cmap = ListedColormap(colours, name="pqpf_amount").with_extremes(
        under=_CLEAR, over=_AMOUNT_OVER_COLOUR, bad=MISSING_COLOUR)
    return cmap, BoundaryNorm(AMOUNT_LEVELS_MM, cmap.N)


def prob_style() -> tuple[Colormap, BoundaryNorm]:
    """Colour map and norm of probabilities in [0, 1]; NaN is :data:`MISSING_COLOUR`.

    Values below 0 take the transparent "under" colour: callers set probabilities
    below :data:`PROB_MIN_SHOWN` to a negative value to leave them white.
    """
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    colours = colormaps["magma_r"](np.linspace(0.04, 0.88, len(PROB_LEVELS) - 1))
    cmap = ListedColormap(colours, name="pqpf_prob").with_extremes(under=_CLEAR, bad=MISSING_COLOUR)
    return cmap, BoundaryNorm(PROB_LEVELS, cmap.N)


def quality_style() -> tuple[Colormap, BoundaryNorm]:
    """Colour map and norm of the MRMS quality index in [0, 1]."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(colormaps["cividis"](np.linspace(0.0, 1.0, len(QUALITY_LEVELS) - 1)),
                          name="pqpf_quality").with_extremes(bad=MISSING_COLOUR)
    return cmap, BoundaryNorm(QUALITY_LEVELS, cmap.N)


def terrain_difference_style(span_m: float) -> tuple[Colormap, TwoSlopeNorm]:
    """Diverging colour map and norm of terrain local difference (m), symmetric about 0.

    Parameters
    ----------
    span_m : float
        Largest absolute difference to show (m); at least 1 m is used.
    """
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm

    limit = max(span_m, 1.0)
    return colormaps["BrBG_r"], TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)


def poor_quality_overlay(
    quality: NDArray[np.float64], min_quality: float, alpha: float
) -> tuple[NDArray[np.float64], Colormap]:
    """A layer that greys out MRMS points of poor or missing quality.

    Parameters
    ----------
    quality : float array
        MRMS quality index in [0, 1]; NaN where missing.
    min_quality : float
        Points with quality below this (or NaN) are shaded.
    alpha : float
        Opacity of the grey, in [0, 1].

    Returns
    -------
    data, cmap
        ``data`` is 1 where shaded and NaN elsewhere; ``cmap`` draws 1 as translucent
        grey and NaN as fully transparent. Draw with ``imshow(data, cmap=cmap)``.
    """
    from matplotlib.colors import ListedColormap

    data: NDArray[np.float64] = np.where(np.isfinite(quality) & (quality >= min_quality), np.nan, 1.0)
    shade = ListedColormap([(*_POOR_QUALITY_GREY, alpha)]).with_extremes(bad=(0, 0, 0, 0))
    return data, shade


def amount_colourbar(fig: Figure, image: ScalarMappable, axes: Axes | Sequence[Axes],
                     shrink: float, pad: float) -> None:
    """A colour bar of the amount scale beside ``axes``, labelled at every class boundary."""
    bar = fig.colorbar(image, ax=axes, spacing="uniform", extend="max", shrink=shrink, pad=pad)
    bar.set_ticks(AMOUNT_LEVELS_MM, labels=[format_mm(v) for v in AMOUNT_LEVELS_MM])
    bar.set_label("mm", fontsize=9)
    bar.ax.tick_params(labelsize=8)
