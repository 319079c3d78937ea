"""A synthetic GRAF + MRMS archive in the real file formats (``python -m pqpf.synthetic``).

The archive lets the whole pipeline run, and its skill numbers mean something, without
access to the real data::

    python -m pqpf.synthetic --out DIR --start 2024060100 --end 2024063023 --leads 1,6,12

writes into ``DIR``

* GRAF-like forecasts: GRIB2, Lambert conformal grid (:func:`pqpf.grid.graf_like_grid`),
  1-h accumulated precipitation ending at each lead, WINC names and directory layout
  (old ``hdo-graflr_conus`` archive for inits up to 2024040512, new one after);
* MRMS: gzipped GRIB2 ``MultiSensor_QPE_01H_Pass2_00.00`` (209/6/37) and
  ``RadarAccumulationQualityIndex_01H_00.00`` for every hour of the range, on a
  0.01 degree latitude/longitude grid in the public archive's layout, -3 outside radar
  coverage;
* the terrain height as GRIB2 orography;
* ``DIR/config.ini`` with every ``[paths]`` key inside ``DIR``, written relative to
  ``DIR`` so the archive can be moved.

Grids
-----
``demo``: 200 x 250 points at 4 km over Colorado; its MRMS grid is the 0.01 degree
lattice (cell centres at x.xx5 degrees, first row north, longitudes written 0..360)
covering the model domain's bounding box plus 0.25 degree. ``conus``: 1308 x 1524 at
4 km; its MRMS grid is exactly the real CONUS grid (3500 x 7000 from 54.995N 230.005E).
The weather is simulated on the model grid extended by a margin that covers the MRMS
grid (``_ExtendedDomain``), inside a larger periodic FFT domain.

Weather model (all numbers in :class:`WeatherParams`)
----------------------------------------------------
*Truth.* A latent Gaussian field ``z`` (unit variance) with power spectrum
``S(k) ~ (k^2 + k0^2)^(-beta/2)``, ``beta = 3.4``, ``k0 = 2 pi / 500 km``, on a periodic
domain 1.5 times the simulated one. Every hour each Fourier mode is advected by the
current flow (an exact phase shift) and follows an AR(1) with lag-1 correlation
``exp(-1 h / T(L))``, lifetime ``T(L) = 2.5 h * L / 100 km`` clipped to 0.75..48 h: small
scales decorrelate fast, large ones persist. Rain falls where ``z + 0.25 s > q``: ``q`` is
the Gaussian quantile of the wet-area fraction ``f`` of the current regime and ``s`` the
orographic forcing ``tanh(w / 0.2 m s-1)`` of the upslope wind ``w = V . grad(h)`` on
terrain smoothed over 12 km (positive on windward slopes, negative in the lee). The
amount at a wet point maps the conditional exceedance probability of ``z`` to a
generalised Pareto distribution (shape 0.2, scale ``sigma``), times ``exp(0.3 s)``,
capped at 120 mm. Measured over 16 days on the demo grid (four seeds, June and
January): hourly wet (>= 0.1 mm) amounts have a median of 0.5-1.1 mm, 70-90 % are below
2 mm, the 99th percentile is 9-11 times the median and the maximum 20-80 mm; the mean
on windward slopes (``s > 0.5``) is 3-4 times that in the lee (``s < -0.5``); the
spectral slope of the hourly amounts (radially averaged power spectral density
``|F(k)|^2``, wavelengths 16-200 km) is -2.75 to -3.0, within the -2.5 to -3 reported
for rain fields.

*Regimes.* Every UTC day has four independent N(0,1) draws, smoothed over five days
(weights 1,2,3,2,1) and interpolated in time, that set the wet fraction
``f = 0.32 u^2.2`` (``u`` their normal CDF: many dry days, up to ~30 % wet area), the
flow speed (12 +- 5 m/s, 3..30) and direction (towards grid east +- 45 degrees) and the
amount scale ``sigma`` (0.6 mm in winter to 1.3 mm in summer, times ``exp(0.35 eta)``).
A diurnal cycle multiplies ``f`` by ``1 + a cos(2 pi (LST - 17 h) / 24 h)``, ``a`` = 0.2
in winter to 0.6 in summer, with local solar time from each point's longitude.

*Terrain.* Plateaus (a random field with spectral exponent 4.5, 0-1600 m) plus ridge
lines (``4 + area / 800 000 km2`` random curved crests of 250-800 km, mostly north-south,
1400-3000 m high, 12-40 km e-folding width on a three times wider base) plus fractal
hills (exponent 3.2) whose amplitude grows near the ridges; softly capped near 3600 m.

*MRMS.* Radar sites on a jittered lattice (300 km apart for ``demo``, 270 km for
``conus``), moved to the highest ground within 12 km, 30 m above it. Along each radial
the quality is ``(1 - blocked fraction) exp(-(beam height above ground / 4 km)^2)``
for a 0.5 degree beam, 0.95 degree wide, with the 4/3 earth radius, the blocked fraction
coming from the terrain horizon seen from the radar; the quality index is the best
radar's value and 0 beyond 230 km (a quarter to a third of the demo model domain is below
0.5). The QPE is the truth interpolated bilinearly to the 0.01 degree grid, times
``1 - 0.35 (1 - Q)`` (an underestimate where quality is poor) and a log-normal
multiplicative noise of standard deviation ``0.1 + 0.4 (1 - Q)``, correlated over a few
km; -3 beyond radar range. The quality index does not change with time.

*GRAF.* For init ``I`` and lead ``L`` (valid ``V``): the truth's latent field at ``V``,
shifted by a position error (``5 + 2.5 L`` km per component; the direction persists
within a run) and a timing error (``0.3 + 0.1 L`` h, as a shift along the flow and the
regime at the shifted time; the diurnal cycle runs 1 h early), with every Fourier mode
mixed with an independent per-init field moving with the flow, weight
``sqrt(1 - rho^2)``, ``rho = exp(-(L + 0.5 h) / (3 T(L)))`` (missed and false cells,
small scales first). Orographic forcing at half the truth's, on terrain smoothed over
32 km; drizzle (up to 0.4 mm) where the latent field is just below the rain threshold
(too much light rain); amounts compressed as ``R (1 + R / 10 mm)^-0.35`` (too little
heavy rain); Gaussian smoothing of ``0.6 + 0.08 L`` grid points. Measured as above: the
gridpoint correlation with the truth is 0.55-0.77 at lead 1 and 0.07-0.38 at lead 12;
the forecast has 1.3-1.65 times the truth's frequency of >= 0.1 mm and 0.4-0.7 times its
frequency of >= 5 mm; its windward/lee ratio is about half the truth's.

Determinism: all random numbers come from :class:`numpy.random.SeedSequence` keyed by
the seed and absolute times (regime days, hours, inits), and the truth state starts at
``start`` from a draw keyed by ``start``. The archive is therefore a function of
``(start, seed)``: the same arguments give byte-identical files (with the same numpy
and ecCodes), and a run with the same start and a later end repeats every file of the
shorter run.

Speed (2 shared cores): ``demo`` over 30 days (1440 MRMS files, 60 inits x 3 leads)
takes about 40 s (31 s of CPU) and 210 MB; ``conus`` takes about 10 s to set up
(radar quality and interpolation weights, 1.9 GB peak memory) and 2.5 s per hour
(QPE files of ~3 MB, quality files of 4.4 MB, GRAF files of 1 MB). Packing: see
:mod:`pqpf.io.grib_write`.

Config written (the choices): ``[paths]`` relative to ``DIR``
(``graf_dir = graf/hdo-graf_conus``, ``graf_dir_old = graf/hdo-graflr_conus``,
``graf_laptop_dir = graf`` so the laptop layout equals the archive, terrain GRIB in
``static/``, terrain netCDF in ``terrain/``, ``mrms_raw``, ``mrms_remapped``, ``patches``,
``trainings``, ``probs``, ``plots``); ``[graf] lead_max_h`` = max(48, largest lead);
``[terrain] smoothing_sigma_px = 8`` (32 km at 4 km spacing); ``[training]
hparams_name = tiny``; ``[patches] ndays_train = min(60, days in range - 3)`` (at least
1), ``previous_year`` only when the range spans more than 13 months, ``cycles`` = the
cycles generated; an archive shorter than 90 days gets 2-day split blocks and a
0.6/0.2/0.2 split so that wet and dry spells reach every split.
"""

from pqpf.synthetic.archive import generate_archive
from pqpf.synthetic.cli import build_parser, main
from pqpf.synthetic.grids import mrms_grid_for
from pqpf.synthetic.params import WeatherParams

__all__ = ["WeatherParams", "build_parser", "generate_archive", "main", "mrms_grid_for"]
