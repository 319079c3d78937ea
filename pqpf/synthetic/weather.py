"""The synthetic atmosphere: the true hourly precipitation and GRAF-like forecasts of it.

All numbers below are the defaults of :class:`~pqpf.synthetic.params.WeatherParams` (field
names in parentheses); ``Phi`` is the standard normal CDF, ``L`` a lead time (h), ``k`` a
wavenumber vector (rad/km) and ``lambda = 2 pi / |k|`` its wavelength (km).

Truth
-----
A latent Gaussian field ``z`` of unit variance lives on the periodic FFT domain around
the extended model grid (:func:`pqpf.synthetic.grids.extended_domain`), with power
spectrum ``(|k|^2 + k0^2)^(-beta/2)``, ``beta = 3.4`` (``spectral_beta``),
``k0 = 2 pi / 500 km`` (``outer_scale_km``). Each hour every Fourier mode is advected by
the flow ``V`` of the regime at the middle of the hour (an exact phase shift of ``V x 1 h``)
and follows an AR(1) in time::

    z_k(t) = phi_k exp(-i k . V 1h) z_k(t - 1h) + sqrt(1 - phi_k^2) A_k w_k(t)
    phi_k = exp(-1 h / T(lambda)),  T(lambda) = clip(2.5 h * lambda / 100 km, 0.75 h, 48 h)

(``lifetime_*``; ``A_k`` the spectral amplitude, ``w_k`` fresh white noise): small scales
decorrelate fast, large ones persist [Germann and Zawadzki 2002]. The hourly amount ending
at ``t`` is evaluated at the middle of the hour ``t - 30 min``:

* orographic forcing ``s = tanh(w / 0.2 m/s)`` (``oro_w0_ms``) of the upslope wind
  ``w = V . grad(h)``, ``h`` the terrain smoothed by a Gaussian of sigma 12 km
  (``oro_smooth_km``): positive on windward slopes, negative in the lee;
* threshold ``q = -Phi^-1(f')``, ``f' = clip(f (1 + a cos(2 pi (LST - 17 h) / 24 h)),
  1e-5, 0.6)`` (``diurnal_peak_lst_h``, ``wet_fraction_min``, ``wet_fraction_cap``) with
  the regime's wet fraction ``f`` and diurnal amplitude ``a`` and the local solar time
  ``LST = UTC + longitude / (15 degrees/h)``;
* rain where ``z' = z + 0.25 s > q`` (``oro_threshold_shift``), with the amount
  ``R = min(sigma (p^-xi - 1) / xi, 120 mm)``, ``p = Phi(-z') / Phi(-q)`` the conditional
  exceedance probability, ``xi = 0.2`` (``gpd_shape``), ``sigma`` the regime's scale: a
  generalised Pareto distribution [Coles 2001]; then ``min(R exp(0.3 s), 120 mm)``
  (``oro_amount_factor``, ``max_amount_mm``).

Forecast
--------
GRAF's forecast for init ``I`` and lead ``L`` (valid ``V = I + L``), from the truth's
latent field at ``V``. Unit normal errors: ``e_pos`` (two components) and ``e_time`` are
``0.8 x`` (a draw per init) ``+ 0.6 x`` (a draw per init and lead) (``run_error_weight``,
``lead_error_weight``), so errors persist within a run. Then:

* timing error ``tau = (0.3 h + 0.1 L) e_time`` (``timing_error_*``): the regime is the
  one at ``V - 30 min + tau``, the field is shifted by ``V_flow tau``;
* position error ``(5 km + 2.5 km/h L) e_pos`` (``position_error_*``), added to that shift;
* every mode keeps ``rho_k = exp(-(L + 0.5 h) / (3 T(lambda)))`` (``predictability_*``) of
  the shifted truth and takes ``sqrt(1 - rho_k^2)`` of an independent per-init field of the
  same spectrum moved by ``V_flow L``: missed and false cells, small scales first;
* orographic forcing at half the truth's (``fcst_oro_fraction``; in the threshold shift
  and the amount factor) on terrain smoothed by 32 km (``fcst_oro_smooth_km``);
* the diurnal cycle evaluated at ``V - 30 min + tau - 1 h`` (``diurnal_timing_bias_h``):
  the forecast's cycle peaks an hour later than the truth's;
* the amounts as for the truth (without the second cap), then compressed as
  ``R (1 + R / 10 mm)^-0.35`` (``heavy_*``: too little heavy rain), then drizzle
  ``0.4 mm ((z' - q + 0.35) / 0.35)^2`` where ``q - 0.35 < z' <= q`` (``drizzle_*``: too
  much light rain), then a Gaussian smoothing of ``0.6 + 0.08 L`` grid points (``smooth_*``).

Measured
--------
Truth on the demo model grid over 16 days from 1 June and from 1 January 2024, seeds 0-3,
every second hour (``tests/synthetic/test_weather.py`` pins seed 0 in June): wet
(>= 0.1 mm) amounts have a median of 0.47-1.13 mm, 69-94 % of them are below 2 mm, the
99th percentile is 8-12 times the median and the maximum 26-88 mm; the mean amount where
``s > 0.5`` is 2.8-3.7 times that where ``s < -0.5``; the spectral slope of the hourly
amounts (radially averaged power spectral density, wavelengths 16-200 km) is -2.8 to
-3.1. Forecasts valid at 01 and 13 UTC: the gridpoint correlation with the truth is
0.62-0.73 at lead 1 and 0.12-0.38 at lead 12; the forecast has 1.27-1.65 times the
truth's frequency of >= 0.1 mm and, at lead 1, 0.37-0.70 times its frequency of >= 5 mm;
its windward/lee ratio at lead 1 is 0.38-0.54 times the truth's.

References
----------
Germann, U., and I. Zawadzki (2002). Scale-dependence of the predictability of
precipitation from continental radar images. Part I. Mon. Wea. Rev., 130, 2859-2873.
Coles, S. (2001). An Introduction to Statistical Modeling of Extreme Values. Springer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pqpf.errors import PqpfError
from pqpf.synthetic.grids import ExtendedDomain
from pqpf.synthetic.params import WeatherParams
from pqpf.synthetic.regimes import Regime, regime_at
from pqpf.synthetic.spectral import SpectralDomain
from pqpf.synthetic.streams import STREAM_FCST, STREAM_FCST_LEAD, STREAM_HOUR, STREAM_START, hour_key, random_stream
from pqpf.synthetic.terrain import terrain_gradient

__all__ = ["RunErrors", "Weather", "WeatherStateError", "run_errors"]

_M_PER_KM = 1000.0
_KMH_PER_MS = 3.6
#: The earth turns 15 degrees of longitude per hour of local solar time.
_DEG_LON_PER_H = 15.0
_HOURS_PER_DAY = 24.0
#: Time step (h) of the truth.
_STEP_H = 1.0
#: An hourly accumulation ending at ``t`` is computed at ``t - 30 min``.
_HALF_HOUR = dt.timedelta(minutes=30)
#: Numerical floors: of the exceedance probability of the threshold, and of the
#: conditional exceedance probability (its amount is far above ``max_amount_mm``).
_TINY_PROB = 1e-300
_MIN_EXCEEDANCE = 1e-12


class WeatherStateError(PqpfError, RuntimeError):
    """The weather was asked for a field at a time its state is not at."""


def _gpd_amounts(z: NDArray[np.float32], q: NDArray[np.float32], scale_mm: float,
                 params: WeatherParams) -> NDArray[np.float32]:
    """Generalised Pareto amounts (mm) where ``z > q``, 0 elsewhere.

    Parameters
    ----------
    z, q : float32 arrays, same shape
        Standard normal latent field and rain threshold.
    scale_mm : float
        GPD scale ``sigma`` (mm).
    params : WeatherParams
        Gives the shape ``xi`` and the cap.

    Returns
    -------
    float32 array, shape of ``z``
        ``min(sigma (p^-xi - 1) / xi, max_amount_mm)``, ``p = Phi(-z) / Phi(-q)``.
    """
    from scipy.special import ndtr  # deferred: --help stays instant

    out = np.zeros(z.shape, dtype=np.float32)
    wet = z > q
    if not wet.any():
        return out
    p_exceed = ndtr(-z[wet].astype(np.float64)) / np.maximum(ndtr(-q[wet].astype(np.float64)), _TINY_PROB)
    xi = params.gpd_shape
    amount = scale_mm * (np.clip(p_exceed, _MIN_EXCEEDANCE, 1.0) ** (-xi) - 1.0) / xi
    out[wet] = np.minimum(amount, params.max_amount_mm)  # capped again after orography
    return out


@dataclass(frozen=True)
class RunErrors:
    """What GRAF's run of one init got wrong at one lead, for the whole domain.

    Attributes
    ----------
    tau_h : float
        Timing error (h): the forecast shows the regime and diurnal cycle of ``tau_h`` later.
    regime : Regime
        The regime at the middle of the hour plus ``tau_h``, whose flow moves the timing error.
    shift_x_km, shift_y_km : float
        Displacement of the run's retained truth along grid +x / +y: the position error
        plus the flow times ``tau_h``.
    """

    tau_h: float
    regime: Regime
    shift_x_km: float
    shift_y_km: float

    @property
    def displacement_km(self) -> float:
        """Length of the displacement (km)."""
        return float(np.hypot(self.shift_x_km, self.shift_y_km))


def _run_errors(seed: int, init: dt.datetime, lead_h: int, params: WeatherParams
                ) -> tuple[RunErrors, np.random.Generator]:
    """The run's errors, and its per-init stream positioned after them (the run's own field
    is drawn from it next)."""
    p = params
    rng_init = random_stream(seed, STREAM_FCST, hour_key(init))
    e_pos = rng_init.standard_normal(2)
    e_time = rng_init.standard_normal()
    rng_lead = random_stream(seed, STREAM_FCST_LEAD, hour_key(init), int(lead_h))
    e_pos = p.run_error_weight * e_pos + p.lead_error_weight * rng_lead.standard_normal(2)
    e_time = float(p.run_error_weight * e_time + p.lead_error_weight * rng_lead.standard_normal())
    lead = float(lead_h)
    mid = init + dt.timedelta(hours=lead_h) - _HALF_HOUR
    tau_h = (p.timing_error_h + p.timing_error_h_per_h * lead) * e_time
    regime = regime_at(seed, mid + dt.timedelta(hours=tau_h), p)
    sigma_km = p.position_error_km + p.position_error_km_per_h * lead
    u_kmh, v_kmh = regime.flow_u_ms * _KMH_PER_MS, regime.flow_v_ms * _KMH_PER_MS
    shift_x = sigma_km * e_pos[0] + u_kmh * tau_h
    shift_y = sigma_km * e_pos[1] + v_kmh * tau_h
    return RunErrors(tau_h, regime, float(shift_x), float(shift_y)), rng_init


def run_errors(seed: int, init: dt.datetime, lead_h: int, params: WeatherParams | None = None) -> RunErrors:
    """GRAF's errors for ``init`` and ``lead_h`` in an archive of ``seed``: what
    :meth:`Weather.forecast` applies, recomputed from the random streams alone (no field is
    made). They are the same everywhere in the domain and invisible in the forecast, which
    is why a post-processor of one run cannot know them (docs/calibration.md, section 14)."""
    return _run_errors(int(seed), init, lead_h, params or WeatherParams())[0]


class Weather:
    """The synthetic atmosphere on the extended model grid: the truth and GRAF-like forecasts.

    The truth is a state that steps forward one hour at a time; a forecast is made from
    the truth's state at its valid time (see the module docstring).

    Parameters
    ----------
    dom : ExtendedDomain
        The extended model grid and its periodic FFT domain.
    terrain_ext : float32 array, shape dom.grid.shape
        Terrain height (m) on the extended grid.
    seed : int
        Random seed of the archive.
    params : WeatherParams, optional
        The weather's parameters (default ``WeatherParams()``).
    """

    def __init__(self, dom: ExtendedDomain, terrain_ext: NDArray[np.float32], seed: int,
                 params: WeatherParams | None = None) -> None:
        self.params = params or WeatherParams()
        self.seed = int(seed)
        self.dom = dom
        ext = self.dom.grid
        self.dx_km = abs(ext.dx) / _M_PER_KM
        p = self.params
        self.spec = SpectralDomain(*self.dom.fft_shape, self.dx_km, p.spectral_beta, p.outer_scale_km)
        lifetime = p.lifetime_ref_h * self.spec.wavelength_km / p.lifetime_ref_km
        #: Lifetime ``T(lambda)`` (h) of every rfft2 mode, float64 (ny_fft, nx_fft // 2 + 1).
        self.lifetime_h = np.clip(lifetime, p.lifetime_min_h, p.lifetime_max_h)
        phi = np.exp(-_STEP_H / self.lifetime_h)
        self.phi = phi.astype(np.float32)
        self.innovation = (np.sqrt(1.0 - phi * phi) * self.spec.amp64).astype(np.float32)
        self.terrain_ext = terrain_ext
        self.grad_truth = terrain_gradient(self.terrain_ext, ext, p.oro_smooth_km)
        self.grad_fcst = terrain_gradient(self.terrain_ext, ext, p.fcst_oro_smooth_km)
        lon, _ = ext.lonlat()
        self.lst_offset_h = (lon / _DEG_LON_PER_H).astype(np.float32)
        self.state: NDArray[np.complex64] | None = None
        self.time: dt.datetime | None = None

    # ---- truth ---------------------------------------------------------------------

    def start(self, when: dt.datetime) -> None:
        """Draw a stationary state for time ``when`` (from a stream keyed by ``when``)."""
        rng = random_stream(self.seed, STREAM_START, hour_key(when))
        self.state = (self.spec.amp * self.spec.white(rng)).astype(np.complex64)
        self.time = when

    def step(self) -> None:
        """Advance the latent field by one hour: advection + scale-dependent AR(1)."""
        if self.state is None or self.time is None:
            raise WeatherStateError("call start() first")
        regime = regime_at(self.seed, self.time + _HALF_HOUR, self.params)
        shift = self.spec.phase(regime.flow_u_ms * _KMH_PER_MS, regime.flow_v_ms * _KMH_PER_MS)
        self.time = self.time + dt.timedelta(hours=_STEP_H)
        rng = random_stream(self.seed, STREAM_HOUR, hour_key(self.time))
        self.state = (self.phi * shift * self.state
                      + self.innovation * self.spec.white(rng)).astype(np.complex64)

    def _threshold(self, regime: Regime, when: dt.datetime) -> NDArray[np.float32]:
        """Rain threshold ``q`` of the latent field at every point (regime + diurnal cycle)."""
        from scipy.special import ndtri  # deferred: --help stays instant

        p = self.params
        lst = (when.hour + when.minute / 60.0 + self.lst_offset_h) % _HOURS_PER_DAY
        cycle = 1.0 + regime.diurnal_amplitude * np.cos(2.0 * np.pi * (lst - p.diurnal_peak_lst_h) / _HOURS_PER_DAY)
        frac = np.clip(regime.wet_fraction * cycle, p.wet_fraction_min, p.wet_fraction_cap)
        return (-ndtri(frac)).astype(np.float32)

    def orographic_forcing(self, regime: Regime, gradient: tuple[NDArray[np.float32], NDArray[np.float32]]
                           ) -> NDArray[np.float32]:
        """Forcing ``s = tanh(V . grad(h) / oro_w0_ms)`` in (-1, 1) on the extended grid.

        Parameters
        ----------
        regime : Regime
            Gives the flow ``V`` (m/s).
        gradient : pair of float32 arrays, shape dom.grid.shape
            Terrain gradient (m/m) along the grid's +x and +y (``grad_truth`` or ``grad_fcst``).
        """
        gx, gy = gradient
        upslope = regime.flow_u_ms * gx + regime.flow_v_ms * gy
        return np.tanh(upslope / self.params.oro_w0_ms).astype(np.float32)

    def _latent(self, spectrum: NDArray[np.complex64]) -> NDArray[np.float32]:
        ny, nx = self.dom.grid.shape
        return self.spec.to_real(spectrum)[:ny, :nx]

    def truth(self) -> NDArray[np.float32]:
        """True precipitation (mm) of the hour ending at the current time.

        Returns
        -------
        float32 array, shape dom.grid.shape
            On the extended grid (the MRMS observer samples beyond the model grid).
        """
        if self.state is None or self.time is None:
            raise WeatherStateError("call start() first")
        mid = self.time - _HALF_HOUR
        regime = regime_at(self.seed, mid, self.params)
        oro = self.orographic_forcing(regime, self.grad_truth)
        z = self._latent(self.state) + self.params.oro_threshold_shift * oro
        amounts = _gpd_amounts(z, self._threshold(regime, mid), regime.scale_mm, self.params)
        amounts *= np.exp(self.params.oro_amount_factor * oro)
        return np.minimum(amounts, self.params.max_amount_mm)

    # ---- forecast --------------------------------------------------------------------

    def forecast(self, init: dt.datetime, lead_h: int) -> NDArray[np.float32]:
        """GRAF-like precipitation (mm) of the hour ending at ``init + lead_h``.

        Must be called when the truth is at the valid time.

        Returns
        -------
        float32 array, shape of the model grid
            C-contiguous.

        Raises
        ------
        WeatherStateError
            If the truth is not at ``init + lead_h``.
        """
        from scipy import ndimage  # deferred: --help stays instant

        if self.state is None or self.time is None or self.time != init + dt.timedelta(hours=lead_h):
            raise WeatherStateError(f"the truth is at {self.time}, not at the valid time of "
                                    f"{init:%Y%m%d%H} + {lead_h} h")
        p = self.params
        lead = float(lead_h)
        run, rng_init = _run_errors(self.seed, init, lead_h, p)
        noise = self.spec.white(rng_init)  # the run's own field: the same stream, after its errors
        mid = self.time - _HALF_HOUR
        tau_h, regime, shift_x, shift_y = run.tau_h, run.regime, run.shift_x_km, run.shift_y_km
        u_kmh, v_kmh = regime.flow_u_ms * _KMH_PER_MS, regime.flow_v_ms * _KMH_PER_MS
        rho = np.exp(-(lead + p.predictability_offset_h)
                     / (p.predictability_factor * self.lifetime_h)).astype(np.float32)
        flow_shift = self.spec.phase(u_kmh * lead, v_kmh * lead)
        spectrum = (rho * self.spec.phase(shift_x, shift_y) * self.state
                    + np.sqrt(1.0 - rho * rho) * self.spec.amp * flow_shift * noise)
        oro = self.orographic_forcing(regime, self.grad_fcst)
        z = self._latent(spectrum.astype(np.complex64)) + p.fcst_oro_fraction * p.oro_threshold_shift * oro
        q = self._threshold(regime, mid + dt.timedelta(hours=tau_h + p.diurnal_timing_bias_h))
        amounts = _gpd_amounts(z, q, regime.scale_mm, p)
        amounts *= np.exp(p.fcst_oro_fraction * p.oro_amount_factor * oro)
        amounts = amounts * (1.0 + amounts / p.heavy_half_mm) ** (-p.heavy_power)
        band = (z > q - p.drizzle_band) & (z <= q)
        amounts[band] = p.drizzle_max_mm * ((z[band] - q[band] + p.drizzle_band) / p.drizzle_band) ** 2
        sigma_px = p.smooth_px + p.smooth_px_per_h * lead
        amounts = ndimage.gaussian_filter(amounts, sigma_px, mode="nearest")
        return np.ascontiguousarray(amounts[self.dom.inner], dtype=np.float32)
