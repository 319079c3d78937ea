"""Helpers for the plot tests: keep saved figures for inspection, read pixels back.

The figure functions write a PNG and release their figure. The ``kept_figures`` fixture
lets the real writer run but keeps each figure's axes alive, so a test can find where a
grid point landed (through the axes' data-to-pixel transform) and read that pixel in the
PNG written, i.e. exactly what a user sees.
"""

from __future__ import annotations

import contextlib
import socket

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.image import imread

import pqpf.plot.figure as figure_module
import pqpf.plot.maps as maps_module
import pqpf.plot.reliability as reliability_module
import pqpf.plot.samples as samples_module

_WRITERS = (maps_module, reliability_module, samples_module)


@contextlib.contextmanager
def _keeping_figures():
    kept = []
    real = figure_module.save_png

    def save_and_keep(fig, path):
        fig.clear = lambda *args, **kwargs: None  # the real writer clears; keep the axes
        kept.append(fig)
        return real(fig, path)

    with pytest.MonkeyPatch.context() as mp:
        for module in _WRITERS:
            mp.setattr(module, "save_png", save_and_keep)
        yield kept


@pytest.fixture(scope="session")
def keeping_figures():
    """Context manager factory: ``with keeping_figures() as kept:`` collects, not
    cleared, every figure the plot functions save inside the block (for module fixtures)."""
    return _keeping_figures


@pytest.fixture
def kept_figures():
    """List that receives every figure the plot functions save during the test, not cleared."""
    with _keeping_figures() as kept:
        yield kept


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in a test that must run offline")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="session")
def png_rgb():
    """``png_rgb(path)``: the PNG's pixels as uint8 (H, W, 3), row 0 at the top."""
    def read(path):
        img = imread(path)
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] in (3, 4)
        return np.rint(img[..., :3] * 255.0).astype(np.uint8)

    return read


@pytest.fixture(scope="session")
def pixel_of():
    """``pixel_of(ax, x, y, height)``: (row, col) arrays of the pixels that data
    coordinates (x, y) of ``ax`` fall in, in an image ``height`` rows high."""
    def locate(ax, x, y, height):
        xy = np.column_stack([np.atleast_1d(x), np.atleast_1d(y)]).astype(np.float64)
        px, py = ax.transData.transform(xy).T
        return (height - 1 - np.floor(py)).astype(int), np.floor(px).astype(int)

    return locate


@pytest.fixture(scope="session")
def rgb255():
    """``rgb255(colour, under=None)``: a matplotlib colour as uint8 RGB; a translucent
    colour is blended over ``under`` (default white), as Agg composites it."""
    def convert(colour, under=(1.0, 1.0, 1.0)):
        r, g, b, a = to_rgba(colour)
        blended = a * np.array([r, g, b]) + (1.0 - a) * np.asarray(under, dtype=np.float64)
        return np.rint(blended * 255.0).astype(np.uint8)

    return convert


@pytest.fixture(scope="session")
def axes_titled():
    """``axes_titled(fig, title)``: the one axes of ``fig`` with that title."""
    def find(fig, title):
        found = [ax for ax in fig.axes if ax.get_title() == title]
        assert len(found) == 1, [ax.get_title() for ax in fig.axes]
        return found[0]

    return find
