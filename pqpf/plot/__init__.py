"""Figures (PNG): probability maps, GRAF and MRMS side by side, patch samples, reliability.

Modules:

- :mod:`pqpf.plot.basemap`: coastlines and borders shipped with pqpf (no download),
  projected onto a grid, clipped, drawn on a map axes;
- :mod:`pqpf.plot.colours`: the colour scales and norms of every figure;
- :mod:`pqpf.plot.figure`: Agg figures without pyplot, atomic PNG writing, map axes;
- :mod:`pqpf.plot.maps`: probability map panels, GRAF | MRMS | quality;
- :mod:`pqpf.plot.reliability`: reliability diagrams with a frequency-of-use inset;
- :mod:`pqpf.plot.samples`: sampled training patches.

The figure functions are re-exported here. matplotlib is imported only when a figure is
drawn, so importing this package is cheap.
"""

from pqpf.plot.basemap import draw_boundaries
from pqpf.plot.colours import AMOUNT_LEVELS_MM
from pqpf.plot.maps import forecast_title, plot_fields_side_by_side, plot_probability_maps
from pqpf.plot.reliability import plot_reliability
from pqpf.plot.samples import plot_patch_samples

__all__ = [
    "AMOUNT_LEVELS_MM",
    "draw_boundaries",
    "forecast_title",
    "plot_fields_side_by_side",
    "plot_patch_samples",
    "plot_probability_maps",
    "plot_reliability",
]
