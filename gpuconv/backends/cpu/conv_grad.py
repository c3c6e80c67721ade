"""conv2d's gradients on NumPy arrays (zero padding; other modes are folded by the API layer).

Input gradient algorithms:
- "col2im" (every shape): GEMM of the transposed weights with the gradient, scattered back
  tap by tap (col2im.py);
- the forward algorithms ("im2col", "winograd", "shifted", "direct") at stride 1: dx is the
  correlation of the gradient with the flipped weights, W^T per group (F and C swapped), with
  pads (kh-1)*dh - top above and h + top - oh below (likewise columns); a negative pad crops
  gradient rows that only reach the padding. That conv runs through conv.py, each algorithm
  with its own rules applied to it.
Weight gradient algorithms: "im2col" and "shifted" (weight_grad.py).
"""
from __future__ import annotations

import numpy as np

from ..._geometry import ConvSpec, conv_spec
from ..._validate import accumulation_dtype
from . import _tiles, col2im, conv, weight_grad

FORWARD_ALGORITHMS = tuple(name for name in conv.ALGORITHMS if name != "auto")
INPUT_ALGORITHMS = ("auto", col2im.NAME, *FORWARD_ALGORITHMS)
WEIGHT_ALGORITHMS = ("auto", *weight_grad.ALGORITHMS)


def _correlation(spec: ConvSpec):
    """(rows, cols, spec) of dx as a stride-1 conv: gradient rows/cols slices, and that conv's spec."""
    slices, pads = [], []
    for k, d, before, size, n_out in ((spec.kh, spec.dilation[0], spec.pads[0], spec.h, spec.oh),
                                      (spec.kw, spec.dilation[1], spec.pads[2], spec.w, spec.ow)):
        above, below = (k - 1) * d - before, size + before - n_out
        slices.append(slice(max(0, -above), n_out - max(0, -below)))
        pads.append((max(0, above), max(0, below)))
    rows, cols = slices
    shape = (spec.n, spec.f, rows.stop - rows.start, cols.stop - cols.start)
    weights = (spec.c, spec.filters_per_group, spec.kh, spec.kw)
    return rows, cols, conv_spec(shape, weights, 1, tuple(pads), spec.dilation, spec.groups, "zeros")


def input_rule(spec: ConvSpec, name: str) -> str | None:
    """None when `name` can compute spec's input gradient, else the rule it needs."""
    if name in ("auto", col2im.NAME):
        return None
    if spec.stride != (1, 1):
        return f"the input gradient by {name} needs stride 1 (a strided convolution's runs {col2im.NAME!r})"
    rule = conv._MODULES[name].applicable(_correlation(spec)[2])
    return None if rule is None else f"the input gradient by {name} is a conv with the flipped weights: {rule}"


def applicable_input_algorithms(spec: ConvSpec) -> tuple[str, ...]:
    return tuple(name for name in INPUT_ALGORITHMS if input_rule(spec, name) is None)


def choose_input(spec: ConvSpec) -> str:
    """col2im where the correlation would copy more columns than col2im (fewer input channels than
    filters per group) or multiply inserted zeros (stride > 1); else the forward's choice for the
    correlation."""
    if spec.stride != (1, 1) or spec.c < spec.f:
        return col2im.NAME
    return conv.choose(_correlation(spec)[2])


def conv2d_input(grad: np.ndarray, w: np.ndarray, spec: ConvSpec, algorithm: str) -> np.ndarray:
    _check(algorithm, INPUT_ALGORITHMS, input_rule(spec, algorithm) if algorithm in INPUT_ALGORITHMS else None,
           "input")
    name = choose_input(spec) if algorithm == "auto" else algorithm
    if name == col2im.NAME:
        # float16 runs in float32 (tiles add into one another: float16 would round twice there)
        compute = accumulation_dtype(grad.dtype)
        dx = col2im.conv2d_input(grad.astype(compute, copy=False), w.astype(compute, copy=False), spec)
        return dx.astype(grad.dtype, copy=False)
    rows, cols, flipped = _correlation(spec)
    g, fg, cg = spec.groups, spec.filters_per_group, spec.channels_per_group
    # W^T of each group, flipped: (c, f/groups, kh, kw)
    w_flipped = w.reshape(g, fg, cg, spec.kh, spec.kw)[..., ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    with _tiles.fixed_partition():  # the same tiles, so the same bits, for every thread count
        return conv.conv2d(grad[:, :, rows, cols],
                           np.ascontiguousarray(w_flipped).reshape(flipped.f, fg, spec.kh, spec.kw), None, flipped,
                           "auto" if algorithm == "auto" else name)


def weight_rule(spec: ConvSpec, name: str) -> str | None:
    return None if name == "auto" else weight_grad.applicable(spec, name)


def applicable_weight_algorithms(spec: ConvSpec) -> tuple[str, ...]:
    return tuple(name for name in WEIGHT_ALGORITHMS if weight_rule(spec, name) is None)


def choose_weight(spec: ConvSpec) -> str:
    """shifted where the forward takes it (flat-shift windows of whole rows), else im2col."""
    return "shifted" if conv.choose(spec) == "shifted" else "im2col"


def conv2d_weight(x: np.ndarray, grad: np.ndarray, spec: ConvSpec, algorithm: str) -> np.ndarray:
    _check(algorithm, WEIGHT_ALGORITHMS, weight_rule(spec, algorithm) if algorithm in WEIGHT_ALGORITHMS else None,
           "weight")
    return weight_grad.conv2d_weight(x, grad, spec, choose_weight(spec) if algorithm == "auto" else algorithm)


def _check(algorithm: str, offered: tuple[str, ...], rule: str | None, which: str) -> None:
    if algorithm not in offered:
        raise ValueError(f"algorithm={algorithm!r}: the numpy backend's {which} gradient offers {offered}")
    if rule is not None:
        raise ValueError(f"algorithm={algorithm!r} cannot run this {which} gradient: {rule}")
