"""Generative ensemble: an EDM diffusion model of the U-Net's residual (SPEC section 8).

Modules
-------
:mod:`pqpf.diffusion.edm`
    EDM preconditioning, the denoiser wrapper, training noise levels and the masked loss.
:mod:`pqpf.diffusion.target`
    The variance-stabilising transform, the U-Net's central estimate and summaries,
    the residual target.
:mod:`pqpf.diffusion.network`
    The noise-conditioned residual U-Net ``F`` inside the denoiser.
:mod:`pqpf.diffusion.sampler`
    EDM time steps, Heun's sampler with optional churn, full-field stitched denoising.
:mod:`pqpf.diffusion.ecc`
    Ensemble copula coupling: the U-Net's marginals with the members' ranks.

The exponential moving average of the weights (the ones sampled with) is
:mod:`pqpf.train.ema`, shared with the U-Net's training.
"""
