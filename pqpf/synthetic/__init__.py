"""A synthetic GRAF + MRMS archive in the real file formats (``python -m pqpf.synthetic``).

The archive lets the whole pipeline run, and its skill numbers mean something, without
access to the real data::

    python -m pqpf.synthetic --out DIR --start 2024060100 --end 2024063023 --leads 1,6,12

writes GRAF-like forecasts, MRMS QPE and quality files, the terrain and ``DIR/config.ini``
(see :mod:`pqpf.synthetic.archive`). Where each part lives:

==========================  =================================================================
:mod:`~.params`             :class:`WeatherParams`: every number of the weather, radars, errors
:mod:`~.weather`            the truth (latent field, threshold, amounts) and the forecasts
:mod:`~.regimes`            day-to-day wet fraction, flow and amount scale; season
:mod:`~.terrain`            plateaus, ridges and hills; terrain slopes
:mod:`~.radar`              radar sites, quality index, the QPE observed from the truth
:mod:`~.grids`              :func:`mrms_grid_for`; the extended domain of the simulation
:mod:`~.spectral`           Gaussian random fields in Fourier space
:mod:`~.streams`            the seeded random streams
:mod:`~.archive`            :func:`generate_archive`: the files and config.ini
:mod:`~.cli`                :func:`main`, :func:`build_parser`
==========================  =================================================================

Determinism: every random number comes from :class:`numpy.random.SeedSequence` keyed by
the seed and absolute times (regime days, hours, inits); the truth starts one hour
before ``start`` from a stationary state keyed by that hour. The archive is therefore a
function of ``(start, seed)``: the same arguments give byte-identical files (with the
same numpy and ecCodes), and a run with the same start and a later end repeats every
file of the shorter run.

Speed and size (2 shared cores): ``demo`` (200 x 250 points; MRMS 837 x 1285) over 30
days, lead 6 (1440 MRMS files, 60 GRAF files) took 40 s of CPU (57 s wall), 210 MB of
memory and 224 MB of disk. ``conus`` (1308 x 1524; the 3500 x 7000 MRMS grid) peaks at
1.9 GB; its set-up (radar quality, interpolation weights) and three MRMS hours and one
GRAF file took 16.5 s of CPU (35 s wall). On 1 June 2025 (seed 1) its QPE files were
9-10 MB, the quality files 4.1 MB and the GRAF file 2.2 MB; drier hours pack smaller.
Packing: see :mod:`pqpf.io.grib_write`.
"""

from pqpf.synthetic.archive import generate_archive
from pqpf.synthetic.cli import build_parser, main
from pqpf.synthetic.grids import mrms_grid_for
from pqpf.synthetic.params import WeatherParams

__all__ = ["WeatherParams", "build_parser", "generate_archive", "main", "mrms_grid_for"]
