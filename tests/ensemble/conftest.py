"""Synthetic ensembles with known properties, for the verification tests.

The U-Net's forecast is a smooth field of binned distributions (rain probability and an
exponential amount scale from two smooth latent fields). Observations and members are
drawn from exactly that binned distribution (uniform inside closed bins, the dry bin a
point mass at 0 mm, an exponential tail: the U-Net's continuous distribution as the
verification reads it) through a Gaussian copula: ``u = Phi(Z)`` with ``Z`` a smooth
unit-variance random field, one independent field per draw. So:

* "calibrated": members and observation are exchangeable at every point (flat rank
  histogram, spread-skill 1, the members' fair CRPS equals the U-Net's CRPS in
  expectation) and share the observation's spatial structure (member spectra match
  MRMS, the U-Net's conditional mean is smoother);
* "under-dispersive": members share most of one field ``Z`` (correlation ``rho``) that
  is independent of the observation's, so they agree with each other far more than with
  the observation.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from scipy.special import ndtr

EDGES = (0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 3.5, 5.0, 7.5, 10.0, 15.0, 25.0, 40.0)
THRESHOLDS = (0.25, 1.0, 2.5, 5.0, 10.0, 25.0)


def smooth_field(rng, shape, scale_px):
    """Unit-variance Gaussian random field with a Gaussian correlation of ``scale_px``."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    filt = np.exp(-2 * (np.pi * scale_px) ** 2 * (kx**2 + ky**2))
    f = np.fft.ifft2(np.fft.fft2(rng.standard_normal(shape)) * filt).real
    return (f - f.mean()) / f.std()


def unet_bins(rng, shape):
    """Bin probabilities (K, ny, nx): rain probability 5-80 %, exponential scale 0.7-4 mm."""
    wet = 0.05 + 0.75 / (1 + np.exp(-1.8 * smooth_field(rng, shape, 10.0)))
    scale = 0.7 + 3.3 / (1 + np.exp(-smooth_field(rng, shape, 14.0)))
    e = np.asarray(EDGES)
    exceed = wet[None] * np.exp(-(e[1:, None, None] - e[1]) / scale[None])  # P(Y >= e_k), k >= 1
    padded = np.concatenate([np.ones((1, *shape)), exceed, np.zeros((1, *shape))])
    return padded[:-1] - padded[1:]


def draw(bins, u):
    """Amounts (mm) at probability levels ``u`` (..., ny, nx) of the binned distributions."""
    e = np.asarray(EDGES)
    cdf = np.cumsum(bins, axis=0)
    lower = np.concatenate([np.zeros((1, *bins.shape[1:])), cdf[:-1]])
    k = np.clip((u[..., None, :, :] >= cdf).sum(axis=-3), 0, e.size - 1)
    take = np.take_along_axis
    p_k = take(np.broadcast_to(bins, (*u.shape[:-2], *bins.shape)), k[..., None, :, :], axis=-3)[..., 0, :, :]
    f_k = take(np.broadcast_to(lower, (*u.shape[:-2], *lower.shape)), k[..., None, :, :], axis=-3)[..., 0, :, :]
    width = np.append(np.diff(e), 0.0)
    frac = np.clip((u - f_k) / np.where(p_k > 0, p_k, 1.0), 0.0, 1.0)
    inside = e[k] + frac * width[k]
    tail = e[-1] - (e[-1] - e[-2]) * np.log(np.clip((1 - u) / np.where(p_k > 0, p_k, 1.0), 1e-300, 1.0))
    return np.where(k == 0, 0.0, np.where(k == e.size - 1, tail, inside))


def sample_case(rng, shape, n_members, kind="calibrated", rho=0.9, scale_px=3.0):
    """(bins, obs, members, graf) of one init."""
    bins = unet_bins(rng, shape)
    obs = draw(bins, ndtr(smooth_field(rng, shape, scale_px)))
    z = np.stack([smooth_field(rng, shape, scale_px) for _ in range(n_members)])
    if kind == "under-dispersive":
        z = rho * smooth_field(rng, shape, scale_px)[None] + np.sqrt(1 - rho**2) * z
    elif kind != "calibrated":
        raise ValueError(kind)
    members = draw(bins, ndtr(z))
    graf = np.roll(draw(bins, ndtr(smooth_field(rng, shape, scale_px))), 6, axis=1)  # displaced
    return bins, obs, members, graf


@pytest.fixture(scope="session")
def synth():
    """The generator functions and constants above."""
    return types.SimpleNamespace(EDGES=EDGES, THRESHOLDS=THRESHOLDS, smooth_field=smooth_field,
                                 unet_bins=unet_bins, draw=draw, sample_case=sample_case)
