"""Patch-sample figure: randomly chosen training patches, GRAF | MRMS | terrain difference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pqpf.plot.colours import amount_colourbar, amount_style, poor_quality_overlay, terrain_difference_style
from pqpf.plot.figure import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

__all__ = ["plot_patch_samples"]

#: Row labels of the figure, top to bottom.
_ROWS = ("GRAF (mm)", "MRMS (mm)", "terrain diff. (m)")
#: Opacity of the poor-quality grey on the small patch panels.
_POOR_ALPHA = 0.5


def _find_channel(names: Sequence[str], wanted: str | None, keys: Sequence[Sequence[str]],
                  what: str) -> int:
    """Index of channel ``wanted``, or of the first name containing all parts of a key."""
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


def _check_patches(
    features: ArrayLike, channel_names: Sequence[str], mrms: ArrayLike, quality: ArrayLike,
    labels: Sequence[str] | None, n: int,
) -> tuple[NDArray[np.generic], NDArray[np.float64], NDArray[np.float64]]:
    """The arrays of :func:`plot_patch_samples`, after checking their shapes."""
    f = np.asarray(features)
    mr = np.asarray(mrms, dtype=np.float64)
    qu = np.asarray(quality, dtype=np.float64)
    if f.ndim != 4 or f.shape[1] != len(channel_names):
        raise ValueError(f"features must have shape (N, C={len(channel_names)}, P, P), got {f.shape}")
    if mr.shape != (f.shape[0], *f.shape[2:]) or qu.shape != mr.shape:
        raise ValueError(f"mrms and quality must have shape {(f.shape[0], *f.shape[2:])}, "
                         f"got {mr.shape} and {qu.shape}")
    if f.shape[0] == 0:
        raise ValueError("features hold no patches: nothing to plot")
    if labels is not None and len(labels) != f.shape[0]:
        raise ValueError(f"labels must have {f.shape[0]} entries, got {len(labels)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return f, mr, qu


def _draw_column(
    axes: list[Axes], panels: list[tuple[NDArray[np.float64], Colormap, Normalize]],
    overlay: tuple[NDArray[np.float64], Colormap],
) -> list[AxesImage]:
    """One patch, top to bottom: GRAF, MRMS with the poor-quality ``overlay``, terrain.

    Patch row 0 is drawn at the bottom, one image pixel per patch pixel.
    """
    images = []
    for r, (ax, (data, cmap, norm)) in enumerate(zip(axes, panels, strict=True)):
        images.append(ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, origin="lower",
                                interpolation="nearest"))
        if r == 1:
            ax.imshow(overlay[0], cmap=overlay[1], origin="lower", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    return images


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
    path : path
        PNG to write (atomically).
    features : float array, shape (N, C, P, P)
        Patch features as stored in a patch file.
    channel_names : sequence of str, length C
        Names of the feature channels.
    mrms, quality : float arrays, shape (N, P, P)
        MRMS 1-h amount (mm) and quality index of each patch; points with quality below
        ``min_quality`` are shaded grey.
    n : int
        Number of patches drawn (at most N), chosen without replacement with ``seed``.
    seed : int
        Seed of the choice.
    graf_channel, terrain_channel : str, optional
        Channel names of the GRAF amount and of the terrain local difference (m);
        default the first name containing "graf" and the first containing "terrain"
        and "diff" (else "diff").
    graf_to_mm : callable, optional
        Maps the GRAF channel back to mm when the features store a transformed amount
        (e.g. ``np.expm1`` for ``log1p``); default identity.
    min_quality : float
        Quality below which MRMS is shaded.
    labels : sequence of str, length N, optional
        Text shown above each patch (e.g. valid time and origin); default its index.
    title : str
        Figure title; the number drawn is appended.

    Returns
    -------
    Path
        ``path``. Patch row 0 is drawn at the bottom of each panel (``origin="lower"``),
        one image pixel per patch pixel.
    """
    f, mr, qu = _check_patches(features, channel_names, mrms, quality, labels, n)
    ig = _find_channel(channel_names, graf_channel, [("graf",)], "GRAF amount")
    it = _find_channel(channel_names, terrain_channel, [("terrain", "diff"), ("diff",)],
                       "terrain difference")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(f.shape[0], size=min(n, f.shape[0]), replace=False))

    ncol = chosen.size
    fig = new_figure(1.75 * ncol + 1.3, 3 * 1.85 + 0.6)
    axes = fig.subplots(3, ncol, squeeze=False)
    cmap, norm = amount_style()
    terrain = f[chosen, it].astype(np.float64)
    span = float(np.nanmax(np.abs(terrain))) if np.isfinite(terrain).any() else 1.0
    t_cmap, t_norm = terrain_difference_style(span)
    images: list[AxesImage] = []  # of the last column, for the colour bars
    for c, idx in enumerate(chosen):
        graf = f[idx, ig].astype(np.float64)
        if graf_to_mm is not None:
            graf = np.asarray(graf_to_mm(graf), dtype=np.float64)
        panels = [(graf, cmap, norm), (mr[idx], cmap, norm), (terrain[c], t_cmap, t_norm)]
        images = _draw_column(list(axes[:, c]), panels, poor_quality_overlay(qu[idx], min_quality, _POOR_ALPHA))
        axes[0, c].set_title(labels[idx] if labels is not None else f"patch {idx}", fontsize=8)
    _finish(fig, axes, images, f"{title} ({chosen.size} of {f.shape[0]}; grey: MRMS quality < {min_quality:g})")
    return save_png(fig, path)


def _finish(fig: Figure, axes: Any, images: list[AxesImage], title: str) -> None:
    """Row names, the two colour bars and the title."""
    for r, name in enumerate(_ROWS):
        axes[r, 0].set_ylabel(name, fontsize=9)
    amount_colourbar(fig, images[0], list(axes[:2, :].ravel()), shrink=0.9, pad=0.01)
    bar = fig.colorbar(images[2], ax=list(axes[2, :]), shrink=0.9, pad=0.01)
    bar.ax.tick_params(labelsize=8)
    fig.suptitle(title, fontsize=10)
