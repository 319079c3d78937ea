"""Decoder up-sampling layers of the U-Net, by name (``model.upsample``).

Names are listed without importing torch, so hyper-parameter validation stays light;
torch is imported when a layer is built (as in :mod:`pqpf.model.norms`).

* ``"resize"``: nearest-neighbour 2x resize, then a 3x3 convolution (Odena et al. 2016).
  Every output point sees the same kernel, so a constant input stays constant away from
  the zero-padded border: no checkerboard.
* ``"transpose"``: a 2x2 stride-2 transposed convolution. Each of the four output
  phases (even/odd row x even/odd column) has its own 2x2 kernel tap, so a constant input
  comes out 2-periodic unless the taps happen to agree: the checkerboard of issue 10.
  Checkpoints written before the choice existed use it.

Odena, A., V. Dumoulin and C. Olah (2016). Deconvolution and checkerboard artifacts.
Distill, doi:10.23915/distill.00003.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["UPSAMPLE_MODES", "PADDING_MODES", "make_upsample"]

UPSAMPLE_MODES: tuple[str, ...] = ("resize", "transpose")
#: How the 3x3 convolutions pad their input (``model.padding``): "replicate" keeps a
#: constant field constant up to the window edge, so windows blend without a pattern;
#: "zeros" (torch's default, checkpoints from before the choice) darkens the window rims.
PADDING_MODES: tuple[str, ...] = ("replicate", "zeros")


def make_upsample(name: str, c_in: int, c_out: int, padding: str = "zeros") -> nn.Module:
    """The 2x up-sampling layer ``name`` from ``c_in`` to ``c_out`` channels (``padding``: of its conv)."""
    from torch import nn

    if name == "transpose":
        return nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
    if name == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1,
                                                                                padding_mode=padding))  # type: ignore[arg-type]
    raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {name!r}")
