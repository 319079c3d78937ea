"""Radially averaged power spectra of 2-D fields."""

from __future__ import annotations

import numpy as np
import pytest

from pqpf.verify.ensemble import PowerSpectrum


def _power_law_field(shape, beta, dx_km, rng):
    """Gaussian random field with 2-D spectral density |k|^-beta (periodic)."""
    ky = np.fft.fftfreq(shape[0], dx_km)[:, None]
    kx = np.fft.fftfreq(shape[1], dx_km)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf
    spectrum = np.fft.fft2(rng.standard_normal(shape)) * k ** (-beta / 2)
    return np.fft.ifft2(spectrum).real


@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_power_law_slope_is_recovered(beta):
    rng = np.random.default_rng(0)
    spec = PowerSpectrum((128, 160), dx_km=4.0)
    for _ in range(20):
        spec.update(_power_law_field((128, 160), beta, 4.0, rng))
    res = spec.result()
    lam, power = np.array(res["wavelength_km"]), np.array(res["power"])
    band = (lam >= 16) & (lam <= 128)  # the 16-128 km band of the targets
    slope = np.polyfit(np.log(1 / lam[band]), np.log(power[band]), 1)[0]
    assert slope == pytest.approx(-beta, abs=0.1), slope


def test_a_sinusoid_puts_its_variance_in_its_wavelength_bin_without_a_taper():
    ny, nx, dx = 64, 64, 3.0
    y = np.arange(ny)[:, None] * np.ones((1, nx))
    field = 2.0 * np.cos(2 * np.pi * y / 16)  # wavelength 16 px = 48 km, variance 2
    spec = PowerSpectrum((ny, nx), dx_km=dx, window=None, detrend=None)
    spec.update(field)
    res = spec.result()
    lam, power = np.array(res["wavelength_km"]), np.array(res["power"])
    peak = int(np.argmax(power))
    assert lam[peak] == pytest.approx(48.0)
    assert power[peak] * spec._cells[peak] == pytest.approx(2.0, rel=1e-12)  # Parseval
    assert np.delete(power, peak).max() < 1e-20


def test_white_noise_is_flat_and_its_spectrum_sums_to_the_variance():
    rng = np.random.default_rng(1)
    spec = PowerSpectrum((64, 64), dx_km=1.0, window="hann")
    spec.update(rng.standard_normal((40, 64, 64)))  # a stack: 40 fields
    power = np.array(spec.result()["power"])
    # Hann-tapered white noise keeps its variance on average: flat at 1 / (64 * 64) per cell
    assert np.all(np.abs(power[2:] * 64 * 64 - 1) < 0.15)
    assert spec.result()["n_fields"] == 40


def test_missing_points_are_filled_and_fields_with_too_few_are_skipped():
    rng = np.random.default_rng(2)
    field = rng.standard_normal((32, 32))
    holes = field.copy()
    holes[:2] = np.nan  # 6 % missing
    spec = PowerSpectrum((32, 32), dx_km=1.0, min_valid_fraction=0.9)
    spec.update(holes)
    too_many = field.copy()
    too_many[:8] = np.nan
    spec.update(too_many)
    res = spec.result()
    assert res["n_fields"] == 1 and res["n_skipped"] == 1 and np.all(np.isfinite(res["power"]))


def test_plane_detrend_removes_a_ramp_entirely():
    yy, xx = np.indices((32, 48))
    spec = PowerSpectrum((32, 48), dx_km=2.0, detrend="plane")
    spec.update(3.0 + 0.5 * yy - 0.2 * xx)
    assert max(spec.result()["power"]) < 1e-25


def test_merge_adds_fields_and_refuses_other_grids():
    rng = np.random.default_rng(3)
    fields = rng.standard_normal((4, 32, 32))
    one, a, b = (PowerSpectrum((32, 32), 4.0) for _ in range(3))
    one.update(fields)
    a.update(fields[:1])
    b.update(fields[1:])
    np.testing.assert_allclose(a.merge(b).result()["power"], one.result()["power"], rtol=1e-12)
    with pytest.raises(ValueError, match="cannot merge"):
        one.merge(PowerSpectrum((32, 32), 3.0))
    with pytest.raises(ValueError, match=r"fields must have shape \(32, 32\)"):
        one.update(np.zeros((16, 16)))
