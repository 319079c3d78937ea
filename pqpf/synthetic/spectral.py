"""Gaussian random fields on a periodic domain, built and evolved in Fourier space.

A field of power spectrum ``S(k) ~ (|k|^2 + k0^2)^(-beta/2)`` (``k0 = 2 pi / outer scale``)
is the inverse FFT of ``A_k W_k``, ``A_k = S(k)^(1/2)`` normalised to unit variance and
``W_k`` the FFT of unit white noise. Shifts are exact phase factors ``exp(-i k . d)``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["SpectralDomain", "gaussian_random_field"]

#: Guard against dividing by the standard deviation of a constant field.
_MIN_STD = 1e-12


class SpectralDomain:
    """Fourier-space operations on a periodic ``(ny, nx)`` domain of spacing ``dx_km``.

    Parameters
    ----------
    ny, nx : int
        Domain shape (points).
    dx_km : float
        Grid spacing (km), the same along both axes.
    beta : float
        Spectral exponent: power spectrum ``(|k|^2 + k0^2)^(-beta/2)``.
    outer_km : float
        Outer scale (km): ``k0 = 2 pi / outer_km``.

    Attributes
    ----------
    kx, ky : float64 arrays, shapes (1, nx // 2 + 1) and (ny, 1)
        Wavenumbers (rad/km) of the ``rfft2`` modes.
    amp, amp64 : arrays, shape (ny, nx // 2 + 1)
        Amplitude of every mode for a field of unit variance (float32 and float64).
    wavelength_km : float64 array, shape (ny, nx // 2 + 1)
        ``2 pi / |k|`` (inf for the mean).
    """

    def __init__(self, ny: int, nx: int, dx_km: float, beta: float, outer_km: float) -> None:
        self.shape = (ny, nx)
        self.n = ny * nx
        ky = 2.0 * np.pi * np.fft.fftfreq(ny, d=dx_km)[:, None]
        kx = 2.0 * np.pi * np.fft.rfftfreq(nx, d=dx_km)[None, :]
        self.kx = kx.astype(np.float64)
        self.ky = ky.astype(np.float64)
        k = np.hypot(kx, ky)
        k0 = 2.0 * np.pi / outer_km
        amp = (k * k + k0 * k0) ** (-beta / 4.0)
        # Hermitian weight of each rfft column in the full spectrum.
        weight = np.full(amp.shape[1], 2.0)
        weight[0] = 1.0
        if nx % 2 == 0:
            weight[-1] = 1.0
        # irfft2 of amp * rfft2(white) has variance sum_full(amp^2) / n.
        amp /= math.sqrt(float((weight[None, :] * amp * amp).sum()) / self.n)
        self.amp64 = amp
        self.amp = amp.astype(np.float32)
        with np.errstate(divide="ignore"):
            self.wavelength_km = np.where(k > 0, 2.0 * np.pi / k, np.inf)

    def white(self, rng: np.random.Generator) -> NDArray[np.complex64]:
        """Spectrum of unit white noise (E|W_k|^2 = n)."""
        return np.fft.rfft2(rng.standard_normal(self.shape, dtype=np.float32)).astype(np.complex64)

    def phase(self, dx_km: float, dy_km: float) -> NDArray[np.complex64]:
        """Factor that shifts a field by ``(dx, dy)`` km (periodic, exact)."""
        arg = self.kx * dx_km + self.ky * dy_km
        return np.exp(-1j * arg).astype(np.complex64)

    def to_real(self, spectrum: NDArray[np.complex64]) -> NDArray[np.float32]:
        """The real field, shape ``(ny, nx)``, of an ``rfft2`` spectrum."""
        return np.fft.irfft2(spectrum, s=self.shape).astype(np.float32)


def gaussian_random_field(shape: tuple[int, int], dx_km: float, beta: float, outer_km: float,
                          rng: np.random.Generator) -> NDArray[np.float32]:
    """A periodic Gaussian field of spectrum ``(|k|^2 + k0^2)^(-beta/2)``, mean 0, variance 1.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)``.
    dx_km : float
        Grid spacing (km).
    beta : float
        Spectral exponent.
    outer_km : float
        Outer scale (km), ``k0 = 2 pi / outer_km``.
    rng : numpy.random.Generator
        Source of the white noise (``ny * nx`` float32 normals are drawn).

    Returns
    -------
    float32 array, shape ``shape``
        Standardised to sample mean 0 and sample standard deviation 1.
    """
    spec = SpectralDomain(shape[0], shape[1], dx_km, beta, outer_km)
    field = spec.to_real(spec.amp * spec.white(rng))
    return (field - field.mean()) / max(float(field.std()), _MIN_STD)
