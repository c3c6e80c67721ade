"""conv2d on NumPy arrays: pick an algorithm for the shape, run it in the compute dtype.

Algorithms (each a module with applicable(spec) -> None or the rule it needs, and
conv2d(x, wmat, bias, spec, out)):
- "im2col": tiled column matrix + BLAS matmul; runs every shape.
- "winograd": F(2x2, 3x3), 2.25x fewer multiplications; 3x3, stride 1, dilation 1, groups 1.
- "depthwise": im2col over whole output rows per block of groups; stride 1, zero padding,
  output as wide as the input.
- "direct": per-tap multiply-accumulate; for the other depthwise convolutions.
"""
from __future__ import annotations

import numpy as np

from ..._geometry import ConvSpec
from . import depthwise, direct, im2col, winograd

_MODULES = {module.NAME: module for module in (im2col, winograd, depthwise, direct)}
ALGORITHMS = ("auto", *_MODULES)
WINOGRAD_MIN_CHANNELS = 16
DIRECT_MAX_MACS = 16  # (C/groups) * (F/groups) * KH * KW


def applicable_algorithms(spec: ConvSpec) -> tuple[str, ...]:
    return ("auto", *(name for name, module in _MODULES.items() if module.applicable(spec) is None))


def choose(spec: ConvSpec) -> str:
    """The fastest applicable algorithm for this shape (measured on a 2-core AVX-512 machine):
    Winograd where its matmuls dominate (enough channels); for many groups with a tiny
    matrix-vector product each (depthwise) the depthwise algorithm where it applies, else
    direct; im2col otherwise (also for a single group of few channels: its one
    matrix-vector product per tile beats direct's passes)."""
    per_group = (spec.c // spec.groups) * (spec.f // spec.groups) * spec.kh * spec.kw
    if winograd.applicable(spec) is None and min(spec.c, spec.f) >= WINOGRAD_MIN_CHANNELS:
        return winograd.NAME
    if spec.groups > 1 and per_group <= DIRECT_MAX_MACS:
        return depthwise.NAME if depthwise.applicable(spec) is None else direct.NAME
    return im2col.NAME


def conv2d(x: np.ndarray, w: np.ndarray, bias, spec: ConvSpec, algorithm: str) -> np.ndarray:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r}: the numpy backend offers {ALGORITHMS}")
    if algorithm != "auto":
        rule = _MODULES[algorithm].applicable(spec)
        if rule is not None:
            raise ValueError(f"algorithm={algorithm!r} cannot run this convolution: {rule}")
    compute = np.dtype(np.float32 if x.dtype == np.float16 else x.dtype)
    g = spec.groups
    wmat = w.astype(compute, copy=False).reshape(g, spec.f // g, -1)
    bias = None if bias is None else bias.astype(compute, copy=False)
    out = np.empty(spec.out_shape, dtype=x.dtype)
    if algorithm != "auto":
        _MODULES[algorithm].conv2d(x, wmat, bias, spec, out)
        return out
    try:
        _MODULES[choose(spec)].conv2d(x, wmat, bias, spec, out)
    except MemoryError:  # the choice needs more workspace than the cap allows: im2col keeps no weights copy
        im2col.conv2d(x, wmat, bias, spec, out)
    return out
