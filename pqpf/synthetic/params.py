"""The parameters of the synthetic weather, its radar network and the forecast errors.

Every number that shapes the synthetic weather, what the radars see of it and how the
GRAF-like forecast errs is a field of :class:`WeatherParams`; the formulas that use them
are in the docstrings of :mod:`pqpf.synthetic.weather`, :mod:`pqpf.synthetic.regimes`
and :mod:`pqpf.synthetic.radar`. Geometry (grids, terrain shapes, units) is in named
module constants of the module that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WeatherParams"]


@dataclass(frozen=True)
class WeatherParams:
    """Parameters of the synthetic weather, radar network and forecast errors.

    The defaults give the archive whose realism ``tests/synthetic`` pins. ``L`` below is a
    lead time (h), ``lambda`` a wavelength (km).

    References
    ----------
    Germann, U., and I. Zawadzki (2002). Scale-dependence of the predictability of
    precipitation from continental radar images. Part I. Mon. Wea. Rev., 130, 2859-2873
    (lifetimes that grow with scale).
    Coles, S. (2001). An Introduction to Statistical Modeling of Extreme Values.
    Springer (the generalised Pareto distribution).
    Doviak, R. J., and D. S. Zrnic (1993). Doppler Radar and Weather Observations,
    2nd ed. Academic Press (beam height with the 4/3 effective earth radius).
    """

    # ---- latent field (pqpf.synthetic.weather) ----
    #: Spectral exponent: power spectrum ``(k^2 + k0^2)^(-beta/2)``.
    spectral_beta: float = 3.4
    #: Outer scale (km): ``k0 = 2 pi / outer_scale_km``.
    outer_scale_km: float = 500.0
    #: Lifetime (h) of a mode of wavelength ``lifetime_ref_km``; ``T(lambda)`` grows linearly.
    lifetime_ref_h: float = 2.5
    #: Reference wavelength (km) of ``lifetime_ref_h``.
    lifetime_ref_km: float = 100.0
    #: Bounds (h) of the lifetime ``T(lambda)``.
    lifetime_min_h: float = 0.75
    lifetime_max_h: float = 48.0

    # ---- amounts (pqpf.synthetic.weather) ----
    #: Shape ``xi`` of the generalised Pareto distribution of wet amounts.
    gpd_shape: float = 0.2
    #: Largest hourly amount (mm) of the truth.
    max_amount_mm: float = 120.0

    # ---- regimes (pqpf.synthetic.regimes) ----
    #: Weights of the five-day running mean (centred on the day) of the daily draws.
    regime_day_weights: tuple[float, ...] = (1.0, 2.0, 3.0, 2.0, 1.0)
    #: Wet-area fraction of a day: ``wet_fraction_max * u ** wet_fraction_power``.
    wet_fraction_max: float = 0.32
    wet_fraction_power: float = 1.5
    #: Bounds of the wet fraction after the diurnal cycle (keeps the Gaussian quantile finite).
    wet_fraction_min: float = 1e-5
    wet_fraction_cap: float = 0.6
    #: Flow speed (m/s): mean, standard deviation of the daily draw, bounds.
    flow_speed_ms: float = 12.0
    flow_speed_sd_ms: float = 5.0
    flow_speed_min_ms: float = 3.0
    flow_speed_max_ms: float = 30.0
    #: Standard deviation (degrees) of the flow direction about grid east.
    flow_direction_sd_deg: float = 45.0
    #: GPD scale ``sigma`` (mm) in mid-winter and mid-summer, and the sd of its daily log factor.
    scale_winter_mm: float = 0.6
    scale_summer_mm: float = 1.3
    scale_day_sd: float = 0.35
    #: Day of the year (1 = 1 January) of mid-summer, and the length of the seasonal cycle (days).
    season_peak_doy: float = 200.0
    season_length_days: float = 365.25
    #: Relative amplitude of the diurnal cycle of the wet fraction in winter and summer.
    diurnal_winter: float = 0.2
    diurnal_summer: float = 0.6
    #: Local solar time (h) of the diurnal maximum of the wet fraction.
    diurnal_peak_lst_h: float = 17.0

    # ---- orography (pqpf.synthetic.weather) ----
    #: Gaussian sigma (km) of the terrain smoothing for the truth's upslope wind.
    oro_smooth_km: float = 12.0
    #: Upslope wind (m/s) of forcing ``tanh(1)``: ``s = tanh(w / oro_w0_ms)``.
    oro_w0_ms: float = 0.2
    #: Shift of the latent field by the forcing: rain where ``z + oro_threshold_shift * s > q``.
    oro_threshold_shift: float = 0.25
    #: Amount factor ``exp(oro_amount_factor * s)``.
    oro_amount_factor: float = 0.3

    # ---- radar network and QPE (pqpf.synthetic.radar) ----
    #: Distance (km) between radars on the ``demo`` and ``conus`` grids.
    radar_spacing_demo_km: float = 300.0
    radar_spacing_conus_km: float = 270.0
    #: A radar stands on the highest ground within this distance (km) of its lattice point.
    radar_siting_radius_km: float = 12.0
    #: Height (m) of the antenna above the ground.
    antenna_height_m: float = 30.0
    #: Range (km) beyond which a radar contributes nothing.
    radar_range_km: float = 230.0
    #: Elevation and (full) width of the beam (degrees).
    beam_elevation_deg: float = 0.5
    beam_width_deg: float = 0.95
    #: Beam height above ground (m) at which quality falls to ``1/e``.
    beam_height_scale_m: float = 4000.0
    #: QPE bias factor ``1 - qpe_underestimate * (1 - Q)``.
    qpe_underestimate: float = 0.35
    #: Standard deviation of the log-normal QPE noise: ``qpe_noise_sd + qpe_noise_sd_poor * (1 - Q)``.
    qpe_noise_sd: float = 0.1
    qpe_noise_sd_poor: float = 0.4
    #: Gaussian sigma (MRMS cells, ~1 km) of the spatial correlation of the QPE noise.
    qpe_noise_sigma_px: float = 1.5

    # ---- forecast errors (pqpf.synthetic.weather) ----
    #: Position error (km, per component): ``position_error_km + position_error_km_per_h * L``.
    position_error_km: float = 5.0
    position_error_km_per_h: float = 2.5
    #: Timing error (h): ``timing_error_h + timing_error_h_per_h * L``.
    timing_error_h: float = 0.3
    timing_error_h_per_h: float = 0.1
    #: Weights of the run's shared and the lead's own unit draws in a position or timing
    #: error (``0.8^2 + 0.6^2 = 1``: unit variance, correlation 0.64 between two leads).
    run_error_weight: float = 0.8
    lead_error_weight: float = 0.6
    #: Shift (h) of the time at which the forecast evaluates its diurnal cycle
    #: (-1: the phase of an hour earlier, so its cycle peaks an hour late).
    diurnal_timing_bias_h: float = -1.0
    #: Correlation of the forecast's modes with the truth's: ``exp(-(L + offset) / (factor T(lambda)))``.
    predictability_factor: float = 3.0
    predictability_offset_h: float = 0.5
    #: The forecast's orographic forcing as a fraction of the truth's, and its terrain smoothing (km).
    fcst_oro_fraction: float = 0.5
    fcst_oro_smooth_km: float = 32.0
    #: Drizzle: up to ``drizzle_max_mm`` where ``q - drizzle_band < z <= q``.
    drizzle_band: float = 0.35
    drizzle_max_mm: float = 0.4
    #: Heavy-rain compression ``R (1 + R / heavy_half_mm)^(-heavy_power)``.
    heavy_half_mm: float = 10.0
    heavy_power: float = 0.35
    #: Gaussian smoothing (model grid points): ``smooth_px + smooth_px_per_h * L``.
    smooth_px: float = 0.6
    smooth_px_per_h: float = 0.08
