"""The parameters of the synthetic weather, radar network and forecast errors."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WeatherParams"]


@dataclass(frozen=True)
class WeatherParams:
    """Parameters of the synthetic weather (see the module docstring for the model)."""

    # latent field
    spectral_beta: float = 3.4
    outer_scale_km: float = 500.0
    lifetime_ref_h: float = 2.5
    lifetime_ref_km: float = 100.0
    lifetime_min_h: float = 0.75
    lifetime_max_h: float = 48.0
    # amounts
    gpd_shape: float = 0.2
    max_amount_mm: float = 120.0
    # regimes
    wet_fraction_max: float = 0.32
    wet_fraction_power: float = 1.5
    flow_speed_ms: float = 12.0
    flow_speed_sd_ms: float = 5.0
    flow_direction_sd_deg: float = 45.0
    scale_winter_mm: float = 0.6
    scale_summer_mm: float = 1.3
    scale_day_sd: float = 0.35
    diurnal_winter: float = 0.2
    diurnal_summer: float = 0.6
    diurnal_peak_lst_h: float = 17.0
    # orography
    oro_smooth_km: float = 12.0
    oro_w0_ms: float = 0.2
    oro_threshold_shift: float = 0.25
    oro_amount_factor: float = 0.3
    # radar
    radar_spacing_demo_km: float = 300.0
    radar_spacing_conus_km: float = 270.0
    radar_range_km: float = 230.0
    beam_elevation_deg: float = 0.5
    beam_width_deg: float = 0.95
    beam_height_scale_m: float = 4000.0
    qpe_underestimate: float = 0.35
    qpe_noise_sd: float = 0.1
    qpe_noise_sd_poor: float = 0.4
    # forecast errors
    position_error_km: float = 5.0
    position_error_km_per_h: float = 2.5
    timing_error_h: float = 0.3
    timing_error_h_per_h: float = 0.1
    diurnal_timing_bias_h: float = -1.0
    predictability_factor: float = 3.0
    predictability_offset_h: float = 0.5
    fcst_oro_fraction: float = 0.5
    fcst_oro_smooth_km: float = 32.0
    drizzle_band: float = 0.35
    drizzle_max_mm: float = 0.4
    heavy_half_mm: float = 10.0
    heavy_power: float = 0.35
    smooth_px: float = 0.6
    smooth_px_per_h: float = 0.08
