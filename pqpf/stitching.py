"""Full-field inference from overlapping windows blended with tent ("Manhattan") weights.

A fully convolutional network is run on windows of size ``N`` (its training patch size,
or larger when its output does not depend on the window: :func:`inference_window`)
placed with stride ``S`` over the whole domain. In each axis the windows start at
``0, S, 2S, ...`` and one more window is placed flush with the far edge, so every grid
point is covered (the original code left the last rows and columns uncovered). Each
window's output ``f`` is weighted by the separable tent

    psi(i) = 2 * min(i, N - 1 - i) + 1,   i = 0 .. N-1,     w = psi (x) psi,

which is largest in the window centre, where the network sees the most context, and
small (but never zero) at the window edges, where zero padding inside the network
distorts the output. The blended field is

    out = sum_windows(w * f) / sum_windows(w).

The weight sum is exact: windows form a grid and the weight is separable, so the sum is
the outer product of two 1-D integer sums (int64), converted to float64 once and cached
(:func:`weight_sum`).

An optional linear ``reduction`` (T, K), e.g. from K ordinal-bin probabilities to T
exceedance probabilities, is applied to each batch *before* accumulating. Because the
blend is linear, this equals reducing the blended K-channel field, while the
accumulator holds T instead of K channels.

Speed: the network forward pass dominates, so the rest is kept small. Per batch: one
``torch.stack`` of window views into a reused buffer, the model call, one weighting
multiply into a reused contiguous buffer, and one in-place add per window into a slice
of the accumulator; the final division is in place. No float64 unless asked, no
per-pixel Python work. On the CPU the windows are handed to the model in channels-last
layout (the field is rearranged to (H, W, C) once, so the batch buffer needs no further
copy), which spares oneDNN convolutions their layout conversions; this is where most of
the gain over MONAI's ``sliding_window_inference`` comes from (``bench/inference.py``).
Extra memory: one accumulator of K (or T) full fields, the padded input and its (H, W, C)
copy, a few batch buffers.

Precision: the accumulator has the working dtype. In float32 every point receives the sum
of at most ``(ceil(N/S) + 1)**2`` terms, each a float32 value times an integer weight below
``N**2`` (exact in float32 for N < 4096), so the relative rounding error is a few 1e-7, the
resolution of the float32 network outputs themselves; a float64 accumulator would double
the memory without improving the result. With float64 inputs and model the whole
computation is float64. NaN inputs spread through the model and the blend, on purpose.

A leading batch of B fields (B, C, H, W), e.g. ensemble members, goes through one window
loop (windows of all fields share the model calls) and gives (B, K, H, W); the memory
above is then per field.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from pqpf.features import PAD_MODES
from pqpf.progress import Progress

__all__ = [
    "LARGE_WINDOW_PX",
    "inference_window",
    "windows_per_call",
    "window_starts",
    "tent_weights_1d",
    "tent_weights_2d",
    "weight_sum",
    "stitch",
]

logger = logging.getLogger(__name__)


#: Window weights by name; each maps the window size N to N positive int64 weights.
_WEIGHTS: dict[str, Callable[[int], NDArray[np.int64]]] = {
    "tent": lambda n: 2 * np.minimum(np.arange(n), n - 1 - np.arange(n)).astype(np.int64) + 1,
    "constant": lambda n: np.ones(n, dtype=np.int64),
}

#: Edge padding (the names of :data:`pqpf.features.PAD_MODES`) -> torch padding mode. The
#: modes other than "none" pad every edge by ``N // 2`` points so that the edge points sit
#: at the centre of their first window.
_EDGE_PAD_MODES: dict[str, str] = {"reflect": "reflect", "replicate": "replicate"}


#: Window of full-field inference for a network whose output does not depend on the window
#: (:data:`pqpf.model.norms.WINDOW_INDEPENDENT_NORMS`). ``bench/inference_settings.py``
#: measured, for the batch-norm U-Net of the demo: 256/224 takes 0.22-0.25x the time of 64/32
#: windows through MONAI with the held-out Brier skill within 0.001 of 64/32; 512-px
#: windows were slower again (the activations no longer fit the caches).
LARGE_WINDOW_PX = 256


def inference_window(window_px: int, stride_px: int, patch_px: int, window_independent: bool,
                     domain_px: int | None = None) -> tuple[int, int]:
    """Window and stride for full-field inference: set values (> 0) win, 0 means the default.

    A network whose output depends on the window (group or instance norm) is run on
    windows of its training patch size ``patch_px`` at half that stride (each point seen
    by about four windows, the centre of one); a window-independent one on
    :data:`LARGE_WINDOW_PX` windows (at least the training patch) overlapping by half a
    training patch, enough for the tent weights to hide the window rims. For a
    window-independent network the window is also capped at ``domain_px`` (the shorter
    side of the padded domain: a larger window would only see padding) before the default
    stride is derived from it, so windows always overlap. The stride is capped at the window.
    """
    if window_px < 0 or stride_px < 0 or patch_px < 1:
        raise ValueError(f"need window_px, stride_px >= 0 and patch_px >= 1, got {window_px}, {stride_px}, {patch_px}")
    window = window_px or (max(LARGE_WINDOW_PX, patch_px) if window_independent else patch_px)
    if window_independent and domain_px is not None:
        window = max(1, min(window, domain_px))
    default_stride = max(window - patch_px // 2, window // 2) if window_independent else window // 2
    return window, min(stride_px or max(default_stride, 1), window)


#: Grid points per model call when no batch size is set: 16 windows of 64 x 64.
POINTS_PER_CALL = 16 * 64 * 64


def windows_per_call(batch_size: int, window_px: int) -> int:
    """``batch_size`` if set (> 0), else as many windows as hold :data:`POINTS_PER_CALL` points (>= 1)."""
    return batch_size if batch_size > 0 else max(1, POINTS_PER_CALL // (window_px * window_px))


def _check_window(window_px: int, stride_px: int) -> None:
    for name, value in (("window_px", window_px), ("stride_px", stride_px)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if stride_px > window_px:
        raise ValueError(
            f"stride_px must not exceed window_px (windows would leave gaps), "
            f"got stride_px={stride_px} > window_px={window_px}"
        )


def _check_weight(weight: str) -> None:
    if weight not in _WEIGHTS:
        raise ValueError(f"unknown weight {weight!r}; valid: {', '.join(sorted(_WEIGHTS))}")


def _check_pad_mode(pad_mode: str) -> None:
    if pad_mode not in PAD_MODES:
        raise ValueError(f"unknown pad_mode {pad_mode!r}; valid: {', '.join(PAD_MODES)}")


def window_starts(length: int, window_px: int, stride_px: int) -> NDArray[np.int64]:
    """First index of every window along one axis.

    Parameters
    ----------
    length : int
        Number of points along the axis (already padded, if padding is used), >= 1.
    window_px : int
        Window size N, >= 1.
    stride_px : int
        Distance S between consecutive window starts, 1 <= S <= N.

    Returns
    -------
    int64 array, shape (n_windows,)
        ``0, S, 2S, ...`` up to ``length - N``, plus ``length - N`` itself when the regular
        grid misses it, so the last window is flush with the edge and every point is
        covered. When ``length <= N`` the single start is 0 (the caller pads a shorter
        axis up to N, see :func:`stitch`).

    Raises
    ------
    ValueError
        If an argument is not a positive integer or ``stride_px > window_px``.
    """
    _check_window(window_px, stride_px)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    last = int(length) - int(window_px)
    if last <= 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, last + 1, int(stride_px), dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, np.int64(last))
    return starts


def tent_weights_1d(window_px: int) -> NDArray[np.int64]:
    """The tent ``psi(i) = 2 * min(i, N-1-i) + 1`` for ``i = 0 .. N-1``.

    Parameters
    ----------
    window_px : int
        Window size N, >= 1.

    Returns
    -------
    int64 array, shape (N,)
        Odd positive integers: 1 at both ends, ``N`` (odd N) or ``N - 1`` (even N) in the
        middle; symmetric.
    """
    _check_window(window_px, 1)
    return _WEIGHTS["tent"](int(window_px))


def tent_weights_2d(window_px: int) -> NDArray[np.int64]:
    """The separable 2-D tent ``w = psi (x) psi``, int64, shape (N, N)."""
    psi = tent_weights_1d(window_px)
    return np.outer(psi, psi)


def _pad_plan(length: int, window_px: int, pad_mode: str) -> tuple[int, int, str]:
    """Padding (before, after, torch mode) of one axis of ``length`` points.

    ``pad_mode="none"``: no padding when ``length >= N``; a shorter axis is padded up to N,
    centred (the odd point goes after), by reflection when the pad is shorter than the
    axis (torch's reflect needs that), else by replicating the edge value.
    ``pad_mode="reflect"``/``"replicate"``: ``N // 2`` on both sides (at least enough to
    reach N in total); reflection falls back to replication on an axis shorter than the pad.
    """
    if pad_mode == "none":
        total = max(window_px - length, 0)
        before = total // 2
        after = total - before
        mode = "reflect"
    else:
        before = window_px // 2
        after = max(window_px // 2, window_px - length - before)
        mode = _EDGE_PAD_MODES[pad_mode]
    if mode == "reflect" and max(before, after) >= length:
        mode = "replicate"
    return before, after, mode


def _axis_weight_sum(
    length: int, window_px: int, stride_px: int, pad_mode: str, weight: str
) -> NDArray[np.int64]:
    """Sum of the 1-D window weights over all windows at each point of one axis (int64)."""
    before, after, _ = _pad_plan(length, window_px, pad_mode)
    psi = _WEIGHTS[weight](window_px)
    total = np.zeros(before + length + after, dtype=np.int64)
    for start in window_starts(before + length + after, window_px, stride_px):
        total[start : start + window_px] += psi
    return total[before : before + length]


@functools.lru_cache(maxsize=32)
def _weight_sum_cached(
    ny: int, nx: int, window_px: int, stride_px: int, pad_mode: str, weight: str
) -> NDArray[np.float64]:
    sum_y = _axis_weight_sum(ny, window_px, stride_px, pad_mode, weight)
    sum_x = _axis_weight_sum(nx, window_px, stride_px, pad_mode, weight)
    # Separable weight on a grid of windows: sum_{a,b} psi(y-ya) psi(x-xb) = Sy(y) Sx(x).
    exact = np.outer(sum_y, sum_x)  # int64, exact
    result = exact.astype(np.float64)
    if np.any(result.astype(np.int64) != exact):  # pragma: no cover - needs > 2**53
        raise ValueError(f"weight sum exceeds float64's exact integers for N={window_px}")
    result.flags.writeable = False  # shared through the cache
    return result


def weight_sum(
    shape: tuple[int, int],
    window_px: int,
    stride_px: int,
    pad_mode: str = "none",
    weight: str = "tent",
) -> NDArray[np.float64]:
    """Sum of the window weights at every point of the domain, exact and cached.

    Parameters
    ----------
    shape : (int, int)
        Domain size (ny, nx) in grid points, before any padding.
    window_px, stride_px : int
        Window size N and stride S (1 <= S <= N).
    pad_mode : {"none", "reflect", "replicate"}
        Edge padding as in :func:`stitch` (it moves the windows, hence the sum).
    weight : {"tent", "constant"}
        Window weight; ``"constant"`` is plain averaging, kept for comparisons.

    Returns
    -------
    float64 array, shape (ny, nx), read-only
        Integer-valued and > 0 everywhere (every point is covered). Computed in int64
        and converted once; the same array object is returned for the same arguments.
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be (ny, nx), got {shape!r}")
    ny, nx = (int(n) for n in shape)
    if ny < 1 or nx < 1 or tuple(shape) != (ny, nx):
        raise ValueError(f"shape must hold two positive integers, got {shape!r}")
    _check_window(window_px, stride_px)
    _check_pad_mode(pad_mode)
    _check_weight(weight)
    return _weight_sum_cached(ny, nx, int(window_px), int(stride_px), pad_mode, weight)


def _model_device(model: Callable[[torch.Tensor], torch.Tensor]) -> torch.device:
    """The device of the model's first parameter, or the CPU."""
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for parameter in parameters():
            return parameter.device
    return torch.device("cpu")


def _as_tensor(
    data: NDArray | torch.Tensor, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        return data.detach().to(device=device, dtype=dtype)
    array = np.asarray(data)
    if not array.flags.writeable:  # torch.from_numpy warns on read-only arrays
        array = array.copy()
    return torch.from_numpy(array).to(device=device, dtype=dtype)


def _pad(fields: torch.Tensor, plan_y: tuple[int, int, str], plan_x: tuple[int, int, str]) -> torch.Tensor:
    """Pad a (B, C, H, W) tensor by the per-axis plans (each axis may use its own mode)."""
    (top, bottom, mode_y), (left, right, mode_x) = plan_y, plan_x
    out = fields
    if top or bottom:
        out = torch.nn.functional.pad(out, (0, 0, top, bottom), mode=mode_y)
    if left or right:
        out = torch.nn.functional.pad(out, (left, right, 0, 0), mode=mode_x)
    return out


class _Gather:
    """Copies batches of windows of a batch of (C, H, W) fields into one reused buffer.

    Windows are addressed by (field, y, x). With ``channels_last`` the fields are first
    rearranged once to (B, H, W, C), so each window is a (N, N, C) view and the batch
    buffer (n, N, N, C) is handed to the model as a channels-last (n, C, N, N) tensor
    without a further copy.
    """

    def __init__(self, fields: torch.Tensor, window_px: int, batch_size: int, channels_last: bool) -> None:
        self.channels_last = channels_last
        self.window_px = window_px
        channels = fields.shape[1]
        if channels_last:
            self.fields = fields.permute(0, 2, 3, 1).contiguous()
            shape = (batch_size, window_px, window_px, channels)
        else:
            self.fields = fields
            shape = (batch_size, channels, window_px, window_px)
        self.buffer = torch.empty(shape, dtype=fields.dtype, device=fields.device)

    def __call__(self, corners: list[tuple[int, int, int]]) -> torch.Tensor:
        n = self.window_px
        out = self.buffer[: len(corners)]
        if self.channels_last:
            torch.stack([self.fields[b, y : y + n, x : x + n] for b, y, x in corners], out=out)
            return out.permute(0, 3, 1, 2)
        return torch.stack([self.fields[b, :, y : y + n, x : x + n] for b, y, x in corners], out=out)


def stitch(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: NDArray | torch.Tensor,
    window_px: int,
    stride_px: int,
    batch_size: int = 16,
    reduction: NDArray | torch.Tensor | None = None,
    post: Callable[[torch.Tensor], torch.Tensor] | None = None,
    pad_mode: str = "none",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    weight: str = "tent",
    channels_last: bool | None = None,
    progress: bool = True,
) -> NDArray:
    """Run ``model`` on overlapping windows and blend them into one full field.

    Parameters
    ----------
    model : callable
        Maps a batch ``(B, C, N, N)`` to ``(B, K, N, N)``, e.g. a fully convolutional
        :class:`torch.nn.Module` in eval mode. Called under :func:`torch.inference_mode`.
    inputs : array or tensor, shape (C, H, W) or (B, C, H, W)
        The input channels over the whole domain; any H, W >= 1. With a leading batch
        axis, B fields (e.g. ensemble members) go through one window loop: each model
        call holds up to ``batch_size`` windows of any of them, and the result is the
        stack of the B results (each equal to stitching that field alone).
    window_px : int
        Window size N (see :func:`inference_window` for the defaults of the inference stage).
    stride_px : int
        Window stride S, 1 <= S <= N; N/2 gives each point about four windows.
    batch_size : int
        Windows per model call, >= 1. The result does not depend on it.
    reduction : array or tensor, shape (T, K), optional
        Linear map applied over the channel axis of each batch (after ``post``) before
        accumulating, e.g. bin probabilities -> exceedance probabilities; the result then
        has T channels and equals reducing the K-channel result.
    post : callable, optional
        Applied to each batch of model outputs first, e.g.
        ``lambda z: torch.softmax(z, dim=1)``.
    pad_mode : {"none", "reflect", "replicate"}
        "none": no padding, except that an axis shorter than N is padded up to N (centred,
        by reflection when the axis is long enough, else by replicating the edge) and the
        result cropped. "reflect"/"replicate": every edge is padded by ``N // 2`` points
        so that the edge points get the centre of a window rather than its rim
        (reflection falls back to replication on an axis shorter than ``N // 2 + 1``).
        Padding costs windows: 1308 x 1524 with N = 64, S = 32: 2058 instead of 1880.
    dtype : torch.dtype
        Dtype of the windows, the outputs and the accumulator (float32 or float64).
    device : torch.device or str, optional
        Where windows and accumulator live; default: the device of the model's
        parameters, or the CPU for a model without parameters.
    weight : {"tent", "constant"}
        Window weight; ``"constant"`` (plain averaging) is kept only for comparisons.
    channels_last : bool, optional
        Hand the windows to the model in channels-last memory layout; default: on the CPU
        only, where oneDNN convolutions then skip their layout conversions. Measured on 2
        cores: a plain CNN stitches about 20 % faster; the ``default`` ResUNet 5 to 10 %
        (its convolutions gain 12 %, but torch's GroupNorm is slower on channels-last
        input). A model that fails on channels-last input in the first batch is retried
        with contiguous windows. Results agree to float32 rounding (~1e-6).
    progress : bool
        Log progress lines (INFO) over the windows; off for callers that stitch many
        times per product, such as the diffusion sampler (twice per solver step).

    Returns
    -------
    numpy array, shape (K or T, H, W), or (B, K or T, H, W) for batched inputs, of ``dtype``
        ``sum(w * f) / sum(w)`` over the windows covering each point.

    Raises
    ------
    ValueError
        For bad shapes, sizes, modes, or a model output that is not (B, K, N, N).
    """
    _check_args(window_px, stride_px, pad_mode, weight, batch_size, dtype)
    shape_in = tuple(getattr(inputs, "shape", ()))
    if len(shape_in) not in (3, 4):
        raise ValueError(f"inputs must be an array or tensor of shape (C, H, W), got shape {shape_in} "
                         "(or (B, C, H, W) for a batch of fields)")
    device = torch.device(device) if device is not None else _model_device(model)
    field = _as_tensor(inputs, dtype, device)
    batched = field.ndim == 4
    plan = _plan(field if batched else field[None], int(window_px), stride_px, pad_mode, weight, dtype, device,
                 reduction, channels_last)
    logger.debug(
        "stitching %d windows of %d px (stride %d) over %d field(s) of %d x %d points, batch %d, %s windows",
        len(plan.corners), plan.n, stride_px, plan.field.shape[0], *plan.shape, batch_size,
        "channels-last" if plan.channels_last else "contiguous",
    )
    with torch.inference_mode():
        accumulator = _accumulate(model, plan, batch_size, post, progress)
        ny, nx = plan.shape
        top, left = plan.pads
        total = torch.tensor(weight_sum((ny, nx), plan.n, stride_px, pad_mode, weight), dtype=dtype, device=device)
        if accumulator.shape[2:] == (ny, nx):
            result = accumulator.div_(total)  # in place: no second full-size array
        else:
            result = accumulator[:, :, top : top + ny, left : left + nx] / total
    return (result if batched else result[0]).cpu().numpy()


def _check_args(window_px: int, stride_px: int, pad_mode: str, weight: str, batch_size: int,
                dtype: torch.dtype) -> None:
    _check_window(window_px, stride_px)
    _check_pad_mode(pad_mode)
    _check_weight(weight)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")


@dataclass
class _StitchPlan:
    """The padded fields (B, C, H', W'), the window corners (field, row, column), the
    window weight, the optional reduction, and the unpadded shape and leading pads."""

    field: torch.Tensor
    corners: list[tuple[int, int, int]]
    n: int
    weights: torch.Tensor
    reduce_matrix: torch.Tensor | None
    channels_last: bool
    shape: tuple[int, int]
    pads: tuple[int, int]


def _plan(field: torch.Tensor, n: int, stride_px: int, pad_mode: str, weight: str, dtype: torch.dtype,
          device: torch.device, reduction: NDArray | torch.Tensor | None, channels_last: bool | None) -> _StitchPlan:
    n_fields, _, ny, nx = field.shape
    if ny < 1 or nx < 1 or n_fields < 1:
        raise ValueError(f"inputs must not be empty, got shape {tuple(field.shape)}")
    plan_y = _pad_plan(ny, n, pad_mode)
    plan_x = _pad_plan(nx, n, pad_mode)
    field = _pad(field, plan_y, plan_x)
    # Window-major, field-minor: the B windows at one place are neighbours in a batch.
    corners = [(b, int(y), int(x)) for y in window_starts(field.shape[2], n, stride_px)
               for x in window_starts(field.shape[3], n, stride_px) for b in range(n_fields)]
    reduce_matrix = None
    if reduction is not None:
        reduce_matrix = _as_tensor(reduction, dtype, device)
        if reduce_matrix.ndim != 2:
            raise ValueError(f"reduction must have shape (T, K), got {tuple(reduce_matrix.shape)}")
    weights = torch.from_numpy(_WEIGHTS[weight](n)).to(device=device, dtype=dtype)
    weights = weights[:, None] * weights[None, :]  # exact: integers below 2**24
    layout_cl = device.type == "cpu" if channels_last is None else bool(channels_last)
    return _StitchPlan(field, corners, n, weights, reduce_matrix, layout_cl, (ny, nx), (plan_y[0], plan_x[0]))


def _model_batch(model: Callable[[torch.Tensor], torch.Tensor], gather: _Gather, chunk: list[tuple[int, int, int]],
                 first: bool, plan: _StitchPlan) -> tuple[torch.Tensor, _Gather]:
    """The model's output for one batch of windows (and the gatherer to keep using)."""
    try:
        return model(gather(chunk)), gather
    except RuntimeError:
        if not first or not gather.channels_last:
            raise
        # A model that reshapes with .view() may refuse channels-last input.
        logger.debug("model failed on channels-last windows; using contiguous ones", exc_info=True)
        gather = _Gather(plan.field, plan.n, gather.buffer.shape[0], False)
        return model(gather(chunk)), gather


def _reduce(out: torch.Tensor, plan: _StitchPlan, batch: int, dtype: torch.dtype) -> torch.Tensor:
    n = plan.n
    if out.ndim != 4 or out.shape[0] != batch or tuple(out.shape[2:]) != (n, n):
        raise ValueError(f"model must map (B, C, {n}, {n}) to (B, K, {n}, {n}); got {tuple(out.shape)} for B={batch}")
    out = out.to(dtype)
    if plan.reduce_matrix is None:
        return out
    if plan.reduce_matrix.shape[1] != out.shape[1]:
        raise ValueError(f"reduction has {plan.reduce_matrix.shape[1]} columns but the model gives "
                         f"{out.shape[1]} channels")
    return torch.einsum("tk,bkyx->btyx", plan.reduce_matrix, out)


def _accumulate(model: Callable[[torch.Tensor], torch.Tensor], plan: _StitchPlan, batch_size: int,
                post: Callable[[torch.Tensor], torch.Tensor] | None, progress: bool) -> torch.Tensor:
    """Sum of weight x output over every window, shape (B, K or T, H', W')."""
    n, dtype, device = plan.n, plan.weights.dtype, plan.weights.device
    tracker = Progress(len(plan.corners), "windows", logger) if progress else None
    accumulator: torch.Tensor | None = None
    weighted_buffer = torch.empty(0, dtype=dtype, device=device)
    gather = _Gather(plan.field, n, min(batch_size, len(plan.corners)), plan.channels_last)
    for first in range(0, len(plan.corners), batch_size):
        chunk = plan.corners[first : first + batch_size]
        out, gather = _model_batch(model, gather, chunk, first == 0, plan)
        out = _reduce(post(out) if post is not None else out, plan, len(chunk), dtype)
        if accumulator is None:
            accumulator = torch.zeros((plan.field.shape[0], out.shape[1], *plan.field.shape[2:]), dtype=dtype,
                                      device=device)
            weighted_buffer = torch.empty((gather.buffer.shape[0], *out.shape[1:]), dtype=dtype, device=device)
        # Weighting writes into a contiguous buffer: the model's output is left alone and
        # channels-last outputs are transposed in the same pass, so the per-window adds
        # below run over contiguous memory.
        weighted = torch.mul(out, plan.weights, out=weighted_buffer[: len(chunk)])
        for contribution, (b, y, x) in zip(weighted, chunk, strict=True):
            accumulator[b, :, y : y + n, x : x + n] += contribution
        if tracker is not None:
            tracker.step(len(chunk))
    if accumulator is None:  # pragma: no cover - there is always at least one window
        raise RuntimeError("no windows were stitched")
    return accumulator
