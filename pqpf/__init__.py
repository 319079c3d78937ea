"""pqpf: calibrated hourly probabilistic precipitation forecasts from a deterministic
km-scale model with a residual U-Net.

The package is organised by pipeline stage; see the README for the stages and the
command-line scripts that drive them. Nothing runs on import.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
