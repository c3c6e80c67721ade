"""conv2d on NumPy arrays: pick an algorithm for the shape, run it in the compute dtype.

Algorithms (each a module with applicable(spec) -> None or the rule it needs, and
conv2d(x, wmat, bias, spec, out)):
- "im2col": tiled column matrix + BLAS matmul; runs every shape.
- "winograd": F(2x2, 3x3), 2.25x fewer multiplications; 3x3, stride 1, dilation 1, groups 1.
- "shifted": im2col whose windows are flat shifts of whole rows; stride 1, zero padding,
  output as wide as the input.
- "direct": per-tap multiply-accumulate; runs every shape, never the fastest measured
  (auto does not take it), kept as an independent method to force.
"""
from __future__ import annotations

import functools

import numpy as np

from ..._geometry import ConvSpec
from ..._validate import accumulation_dtype
from . import direct, im2col, shifted, winograd

_MODULES = {module.NAME: module for module in (im2col, winograd, shifted, direct)}
ALGORITHMS = ("auto", *_MODULES)
# Measured on the 2-core reference machine (docs/performance.md), 3x3 stride-1 layers:
WINOGRAD_MIN_CHANNELS = 96  # 64 channels: shifted 10-20% faster (56x56, 28x28), im2col (<= 20x20)
WINOGRAD_MIN_PIXELS = 14 * 14  # 512 channels of 7x7: shifted 30% faster
SHIFTED_MIN_PIXELS = 28 * 28  # smaller planes: im2col 10-30% faster, its calls are per tile, not per channel
SHIFTED_MIN_DEPTH = 1024  # (C/groups)*KH*KW from which shifted wins at any plane size (256x3x3 at 14x14: 2x)
# Filter banks over images (groups=1, at most 16 channels and 8 filters): im2col measured 1.0-1.85x
# faster than shifted at 1 and 2 threads (C 3-16, F 4-8, 3x3 and 5x5, planes 256²-1024²; C3 F4 5x5
# 1.8x), never more than 12 % slower. With more channels shifted can win again (C64 F8 56²: 0.78x).
FILTER_BANK_MAX_CHANNELS, FILTER_BANK_MAX_FILTERS = 16, 8


def applicable_algorithms(spec: ConvSpec) -> tuple[str, ...]:
    return ("auto", *(name for name, module in _MODULES.items() if module.applicable(spec) is None))


@functools.lru_cache(maxsize=1024)  # a function of the spec alone; called on every "auto" call
def choose(spec: ConvSpec) -> str:
    """The fastest applicable algorithm for this shape, by the measured thresholds above:
    Winograd where its matmuls dominate (many channels, planes not tiny); shifted for
    large planes or deep columns, except filter banks; im2col otherwise, and for pointwise
    layers (their column matrix is the input itself). Direct is never the fastest."""
    if im2col.is_pointwise(spec):
        return im2col.NAME
    if (winograd.applicable(spec) is None and min(spec.c, spec.f) >= WINOGRAD_MIN_CHANNELS
            and spec.out_pixels >= WINOGRAD_MIN_PIXELS):
        return winograd.NAME
    if shifted.applicable(spec) is None and not is_filter_bank(spec) and (spec.out_pixels >= SHIFTED_MIN_PIXELS
                                                                          or spec.reduction >= SHIFTED_MIN_DEPTH):
        return shifted.NAME
    return im2col.NAME


def is_filter_bank(spec: ConvSpec) -> bool:
    """A few filters over a few-channel image (groups=1): where im2col beats shifted."""
    return spec.groups == 1 and spec.c <= FILTER_BANK_MAX_CHANNELS and spec.f <= FILTER_BANK_MAX_FILTERS


def conv2d(x: np.ndarray, w: np.ndarray, bias, spec: ConvSpec, algorithm: str) -> np.ndarray:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r}: the numpy backend offers {ALGORITHMS}")
    if algorithm != "auto":
        rule = _MODULES[algorithm].applicable(spec)
        if rule is not None:
            raise ValueError(f"algorithm={algorithm!r} cannot run this convolution: {rule}")
    # w has the call's dtype; x may have another real dtype, cast while the tiles are gathered
    compute = accumulation_dtype(w.dtype)
    wmat = w.astype(compute, copy=False).reshape(spec.groups, spec.filters_per_group, spec.reduction)
    bias = None if bias is None else bias.astype(compute, copy=False)
    out = np.empty(spec.out_shape, dtype=w.dtype)
    if algorithm != "auto":
        _MODULES[algorithm].conv2d(x, wmat, bias, spec, out)
        return out
    try:
        _MODULES[choose(spec)].conv2d(x, wmat, bias, spec, out)
    except MemoryError:  # the choice needs more workspace than the cap allows: im2col keeps no weights copy
        im2col.conv2d(x, wmat, bias, spec, out)
    return out
