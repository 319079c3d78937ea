"""Gaussian random fields on a periodic domain, built and evolved in Fourier space."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["SpectralDomain", "gaussian_random_field"]


class SpectralDomain:
    """Fourier-space operations on a periodic ``(ny, nx)`` domain of spacing ``dx_km``.

    ``amp`` is the amplitude of every ``rfft2`` mode for a field of unit variance with
    power spectrum ``(k^2 + k0^2)^(-beta/2)``, ``k0 = 2 pi / outer_km``.
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
        return np.fft.irfft2(spectrum, s=self.shape).astype(np.float32)


def gaussian_random_field(shape: tuple[int, int], dx_km: float, beta: float, outer_km: float,
                          rng: np.random.Generator) -> NDArray[np.float32]:
    """A periodic Gaussian field with spectrum ``(k^2 + k0^2)^(-beta/2)``, unit variance."""
    spec = SpectralDomain(shape[0], shape[1], dx_km, beta, outer_km)
    field = spec.to_real(spec.amp * spec.white(rng))
    return (field - field.mean()) / max(float(field.std()), 1e-12)
