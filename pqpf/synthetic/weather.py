"""The synthetic atmosphere: the true hourly precipitation and GRAF-like forecasts of it."""

from __future__ import annotations

import datetime as dt

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.special import ndtr, ndtri

from pqpf.errors import PqpfError
from pqpf.synthetic.grids import ExtendedDomain
from pqpf.synthetic.params import WeatherParams
from pqpf.synthetic.regimes import Regime, regime_at
from pqpf.synthetic.spectral import SpectralDomain
from pqpf.synthetic.streams import STREAM_FCST, STREAM_FCST_LEAD, STREAM_HOUR, STREAM_START, hour_key, random_stream
from pqpf.synthetic.terrain import terrain_gradient

__all__ = ["Weather", "WeatherStateError"]


class WeatherStateError(PqpfError, RuntimeError):
    """The weather was asked for a field at a time its state is not at."""


def _gpd_amounts(z: NDArray[np.float32], q: NDArray[np.float32], scale_mm: float,
                 params: WeatherParams) -> NDArray[np.float32]:
    """Amounts (mm) where ``z > q``: the conditional exceedance probability of the
    standard normal ``z`` mapped to a generalised Pareto distribution; 0 elsewhere."""
    out = np.zeros(z.shape, dtype=np.float32)
    wet = z > q
    if not wet.any():
        return out
    p_exceed = ndtr(-z[wet].astype(np.float64)) / np.maximum(ndtr(-q[wet].astype(np.float64)), 1e-300)
    xi = params.gpd_shape
    amount = scale_mm * (np.clip(p_exceed, 1e-12, 1.0) ** (-xi) - 1.0) / xi
    out[wet] = np.minimum(amount, params.max_amount_mm)  # capped again after orography
    return out


class Weather:
    """The synthetic atmosphere on the extended domain: truth and forecasts."""

    def __init__(self, dom: ExtendedDomain, terrain_ext: NDArray[np.float32], seed: int,
                 params: WeatherParams | None = None) -> None:
        self.params = params or WeatherParams()
        self.seed = int(seed)
        self.dom = dom
        ext = self.dom.grid
        self.dx_km = abs(ext.dx) / 1000.0
        p = self.params
        self.spec = SpectralDomain(*self.dom.fft_shape, self.dx_km, p.spectral_beta, p.outer_scale_km)
        lifetime = p.lifetime_ref_h * self.spec.wavelength_km / p.lifetime_ref_km
        self.lifetime_h = np.clip(lifetime, p.lifetime_min_h, p.lifetime_max_h)
        phi = np.exp(-1.0 / self.lifetime_h)
        self.phi = phi.astype(np.float32)
        self.innovation = (np.sqrt(1.0 - phi * phi) * self.spec.amp64).astype(np.float32)
        self.terrain_ext = terrain_ext
        self.grad_truth = terrain_gradient(self.terrain_ext, ext, p.oro_smooth_km)
        self.grad_fcst = terrain_gradient(self.terrain_ext, ext, p.fcst_oro_smooth_km)
        lon, _ = ext.lonlat()
        self.lst_offset_h = (lon / 15.0).astype(np.float32)
        self.state: NDArray[np.complex64] | None = None
        self.time: dt.datetime | None = None

    # ---- truth ---------------------------------------------------------------------

    def start(self, when: dt.datetime) -> None:
        """Stationary initial state at ``when`` (keyed by it)."""
        rng = random_stream(self.seed, STREAM_START, hour_key(when))
        self.state = (self.spec.amp * self.spec.white(rng)).astype(np.complex64)
        self.time = when

    def step(self) -> None:
        """Advance the latent field by one hour: advection + scale-dependent AR(1)."""
        if self.state is None or self.time is None:
            raise WeatherStateError("call start() first")
        regime = regime_at(self.seed, self.time + dt.timedelta(minutes=30), self.params)
        shift = self.spec.phase(regime.flow_u_ms * 3.6, regime.flow_v_ms * 3.6)
        self.time = self.time + dt.timedelta(hours=1)
        rng = random_stream(self.seed, STREAM_HOUR, hour_key(self.time))
        self.state = (self.phi * shift * self.state
                      + self.innovation * self.spec.white(rng)).astype(np.complex64)

    def _threshold(self, regime: Regime, when: dt.datetime) -> NDArray[np.float32]:
        """Rain threshold of the latent field at every point (regime + diurnal cycle)."""
        lst = (when.hour + when.minute / 60.0 + self.lst_offset_h) % 24.0
        cycle = 1.0 + regime.diurnal_amplitude * np.cos(
            2.0 * np.pi * (lst - self.params.diurnal_peak_lst_h) / 24.0)
        frac = np.clip(regime.wet_fraction * cycle, 1e-5, 0.6)
        return (-ndtri(frac)).astype(np.float32)

    def orographic_forcing(self, regime: Regime, gradient: tuple[NDArray[np.float32], NDArray[np.float32]]
                           ) -> NDArray[np.float32]:
        gx, gy = gradient
        upslope = regime.flow_u_ms * gx + regime.flow_v_ms * gy
        return np.tanh(upslope / self.params.oro_w0_ms).astype(np.float32)

    def _latent(self, spectrum: NDArray[np.complex64]) -> NDArray[np.float32]:
        ny, nx = self.dom.grid.shape
        return self.spec.to_real(spectrum)[:ny, :nx]

    def truth(self) -> NDArray[np.float32]:
        """Hourly precipitation (mm) ending at the current time, on the extended grid."""
        if self.state is None or self.time is None:
            raise WeatherStateError("call start() first")
        mid = self.time - dt.timedelta(minutes=30)
        regime = regime_at(self.seed, mid, self.params)
        oro = self.orographic_forcing(regime, self.grad_truth)
        z = self._latent(self.state) + self.params.oro_threshold_shift * oro
        amounts = _gpd_amounts(z, self._threshold(regime, mid), regime.scale_mm, self.params)
        amounts *= np.exp(self.params.oro_amount_factor * oro)
        return np.minimum(amounts, self.params.max_amount_mm)

    # ---- forecast --------------------------------------------------------------------

    def forecast(self, init: dt.datetime, lead_h: int) -> NDArray[np.float32]:
        """GRAF-like hourly precipitation (mm) on the model grid for ``init + lead_h``.

        Must be called when the truth is at the valid time.
        """
        if self.state is None or self.time != init + dt.timedelta(hours=lead_h):
            raise WeatherStateError(f"the truth is at {self.time}, not at the valid time of "
                                    f"{init:%Y%m%d%H} + {lead_h} h")
        p = self.params
        lead = float(lead_h)
        rng_init = random_stream(self.seed, STREAM_FCST, hour_key(init))
        e_pos = rng_init.standard_normal(2)
        e_time = rng_init.standard_normal()
        noise = self.spec.white(rng_init)
        rng_lead = random_stream(self.seed, STREAM_FCST_LEAD, hour_key(init), int(lead_h))
        e_pos = 0.8 * e_pos + 0.6 * rng_lead.standard_normal(2)
        e_time = 0.8 * e_time + 0.6 * rng_lead.standard_normal()

        mid = self.time - dt.timedelta(minutes=30)
        tau_h = (p.timing_error_h + p.timing_error_h_per_h * lead) * e_time
        regime = regime_at(self.seed, mid + dt.timedelta(hours=tau_h), p)
        sigma_km = p.position_error_km + p.position_error_km_per_h * lead
        shift_x = sigma_km * e_pos[0] + regime.flow_u_ms * 3.6 * tau_h
        shift_y = sigma_km * e_pos[1] + regime.flow_v_ms * 3.6 * tau_h
        rho = np.exp(-(lead + p.predictability_offset_h)
                     / (p.predictability_factor * self.lifetime_h)).astype(np.float32)
        flow_shift = self.spec.phase(regime.flow_u_ms * 3.6 * lead, regime.flow_v_ms * 3.6 * lead)
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
