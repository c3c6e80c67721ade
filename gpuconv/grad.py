"""Gradients of gpuconv's ops, in torch.nn.grad's argument order, on every backend.

    dx = conv2d_input(x.shape, w, grad_output, stride, padding, dilation, groups, padding_mode)
    dw = conv2d_weight(x, w.shape, grad_output, stride, padding, dilation, groups, padding_mode)
    db = conv2d_bias(grad_output)
    dx = max_pool2d_input(grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices=idx)
    dx = avg_pool2d_input(grad_output, x.shape, kernel_size, stride, padding, ceil_mode, ...)
    dx = pad2d_input(grad_output, padding, mode)

Each takes the forward op's arguments (every option the forward accepts) and validates them
like the forward op; grad_output must have the forward output's shape. The result has the
forward input's shape (unbatched in, unbatched out), the array type of the arrays given and
their promoted float dtype. Max pooling routes each gradient to the element the forward picked
(first maximum, NaN wins: the forward's return_indices, or recomputed), summing where windows
overlap. The same inputs give the same bits for every thread count.
"""
from __future__ import annotations

import math
import re

import numpy as np

from . import _backward
from . import _geometry as geometry
from ._api import _check_algorithm, _input, _on_device_of
from ._torch_interop import accepts_torch
from ._validate import accumulation_dtype, as_array, check_bool, check_ndim, result_dtype
from .backends import is_dask_array

__all__ = ["conv2d_input", "conv2d_weight", "conv2d_bias", "max_pool2d_input", "avg_pool2d_input", "pad2d_input",
           "conv1d_input", "conv1d_weight", "conv1d_bias", "max_pool1d_input", "avg_pool1d_input"]


def _dask():
    """The dask path (gpuconv/_dask_grad.py), imported only when a dask array comes in."""
    from . import _dask_grad

    return _dask_grad


def _shape(value, name: str, lengths: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """A shape argument (input_shape, weight_shape) as a tuple of non-negative ints."""
    items = tuple(value) if isinstance(value, (tuple, list)) else None
    if items is None or len(items) not in lengths or not all(geometry._is_int(v) and v >= 0 for v in items):
        raise ValueError(f"{name}={value!r}: expected {layout} as a tuple of non-negative ints")
    return tuple(int(v) for v in items)


def _spec(build, name: str, shape, array_name: str):
    """build(shape), its errors about `array_name` (the forward op's array, here known only by its
    shape) also naming the shape argument."""
    try:
        return build(shape)
    except ValueError as exc:
        if re.search(rf"\b{array_name}\b", str(exc)):
            raise ValueError(f"{exc} ({array_name} being the forward op's {array_name}: {name}={shape})") from None
        raise


def _grad_output(grad_output, expected: tuple[int, ...], unbatched: bool, op: str, ndim: int):
    """grad_output as a 4-D array, checked against the forward op's output shape (a 1-D op's
    arrays have a height axis of 1 here; messages leave it out)."""
    expected = tuple(expected[1:] if unbatched else expected)
    if tuple(grad_output.shape) != expected:
        shown = [tuple(a[:-2]) + tuple(a[-1:]) if ndim == 1 else tuple(a) for a in (grad_output.shape, expected)]
        raise ValueError(f"grad_output has shape {shown[0]}: expected {shown[1]}, the shape of {op}'s output for "
                         f"these arguments")
    return grad_output[None] if unbatched else grad_output


# ---- convolution -----------------------------------------------------------------------------


@accepts_torch
def conv2d_input(input_shape, w, grad_output, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", *,
                 algorithm="auto", backend=None):
    """Gradient of conv2d(x, w, ...) with respect to x, for x of input_shape ((N, C, H, W) or (C, H, W))."""
    input_shape = _shape(input_shape, "input_shape", (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
    w = as_array(w, "w")
    check_ndim(w, "w", (4,), "(F, C/groups, KH, KW)")
    return _conv_input(input_shape, w, _input(grad_output, "grad_output"), stride, padding, dilation, groups,
                       padding_mode, algorithm, backend, ndim=2)


@accepts_torch
def conv1d_input(input_shape, w, grad_output, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", *,
                 algorithm="auto", backend=None):
    """Gradient of conv1d(x, w, ...) with respect to x, for x of input_shape ((N, C, L) or (C, L))."""
    input_shape = _shape(input_shape, "input_shape", (2, 3), "(N, C, L) or unbatched (C, L)")
    w, grad_output = as_array(w, "w"), _input(grad_output, "grad_output")
    check_ndim(w, "w", (3,), "(F, C/groups, K)")
    check_ndim(grad_output, "grad_output", (len(input_shape),), "(N, F, OL) or unbatched (F, OL)")
    dx = _conv_input(input_shape[:-1] + (1, input_shape[-1]), w[:, :, None, :], grad_output[..., None, :], stride,
                     padding, dilation, groups, padding_mode, algorithm, backend, ndim=1)
    return dx[..., 0, :]


def _conv_input(input_shape, w, grad_output, stride, padding, dilation, groups, padding_mode, algorithm, backend,
                ndim):
    """conv2d_input of a 2-D layout; ndim=1: a 1-D op's (height 1), its arguments its own."""
    if is_dask_array(grad_output):
        return _dask().conv_input(input_shape, w, grad_output, stride, padding, dilation, groups, padding_mode,
                                  algorithm, backend, ndim)
    w = _on_device_of(grad_output, w, "w", "grad_output")
    _check_algorithm(algorithm)
    unbatched = len(input_shape) == 3
    spec = _spec(lambda shape: geometry.conv_spec(shape, w.shape, stride, padding, dilation, groups, padding_mode,
                                                  ndim), "input_shape", (1,) * unbatched + input_shape, "x")
    grad_output = _grad_output(grad_output, spec.out_shape, unbatched, "conv2d" if ndim == 2 else "conv1d", ndim)
    dtype = result_dtype(w, grad_output)
    dx = _backward.conv_input(grad_output.astype(dtype, copy=False), w.astype(dtype, copy=False), spec, algorithm,
                              backend)
    return dx[0] if unbatched else dx


@accepts_torch
def conv2d_weight(x, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", *,
                  algorithm="auto", backend=None):
    """Gradient of conv2d(x, w, ...) with respect to w, for w of weight_shape (F, C/groups, KH, KW)."""
    x = _input(x, "x")
    check_ndim(x, "x", (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
    weight_shape = _shape(weight_shape, "weight_shape", (4,), "(F, C/groups, KH, KW)")
    return _conv_weight(x, weight_shape, _input(grad_output, "grad_output"), stride, padding, dilation, groups,
                        padding_mode, algorithm, backend, ndim=2)


@accepts_torch
def conv1d_weight(x, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", *,
                  algorithm="auto", backend=None):
    """Gradient of conv1d(x, w, ...) with respect to w, for w of weight_shape (F, C/groups, K)."""
    x, grad_output = _input(x, "x"), _input(grad_output, "grad_output")
    check_ndim(x, "x", (2, 3), "(N, C, L) or unbatched (C, L)")
    check_ndim(grad_output, "grad_output", (x.ndim,), "(N, F, OL) or unbatched (F, OL)")
    f, cg, k = _shape(weight_shape, "weight_shape", (3,), "(F, C/groups, K)")
    dw = _conv_weight(x[..., None, :], (f, cg, 1, k), grad_output[..., None, :], stride, padding, dilation, groups,
                      padding_mode, algorithm, backend, ndim=1)
    return dw[:, :, 0, :]


def _conv_weight(x, weight_shape, grad_output, stride, padding, dilation, groups, padding_mode, algorithm, backend,
                 ndim):
    """conv2d_weight of a 2-D layout; ndim=1: a 1-D op's (height 1), its arguments its own."""
    if is_dask_array(x) or is_dask_array(grad_output):
        return _dask().conv_weight(x, weight_shape, grad_output, stride, padding, dilation, groups, padding_mode,
                                   algorithm, backend, ndim)
    grad_output = _on_device_of(x, grad_output, "grad_output")
    _check_algorithm(algorithm)
    unbatched = x.ndim == 3
    x = x[None] if unbatched else x
    spec = _spec(lambda shape: geometry.conv_spec(x.shape, shape, stride, padding, dilation, groups, padding_mode,
                                                  ndim), "weight_shape", weight_shape, "w")
    grad_output = _grad_output(grad_output, spec.out_shape, unbatched, "conv2d" if ndim == 2 else "conv1d", ndim)
    dtype = result_dtype(x, grad_output)
    return _backward.conv_weight(x.astype(dtype, copy=False), grad_output.astype(dtype, copy=False), spec, algorithm,
                                 backend)


@accepts_torch
def conv2d_bias(grad_output):
    """Gradient of conv2d(x, w, bias) with respect to bias: grad_output summed over all but the channel axis."""
    grad_output = _input(grad_output, "grad_output")
    check_ndim(grad_output, "grad_output", (3, 4), "(N, F, OH, OW) or unbatched (F, OH, OW)")
    return _bias(grad_output)


@accepts_torch
def conv1d_bias(grad_output):
    """Gradient of conv1d(x, w, bias) with respect to bias: grad_output (N, F, OL) or (F, OL) summed
    over all but the channel axis."""
    grad_output = _input(grad_output, "grad_output")
    check_ndim(grad_output, "grad_output", (2, 3), "(N, F, OL) or unbatched (F, OL)")
    return _bias(grad_output[..., None, :])


def _bias(grad_output):
    dtype = result_dtype(grad_output)
    axes = (0, 2, 3) if grad_output.ndim == 4 else (1, 2)
    return grad_output.sum(axis=axes, dtype=accumulation_dtype(dtype)).astype(dtype, copy=False)


# ---- pooling and padding ---------------------------------------------------------------------


@accepts_torch
def max_pool2d_input(grad_output, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                     indices=None, backend=None):
    """Gradient of max_pool2d(x, ...) with respect to x. indices: the forward's return_indices
    (int flat index within H*W, -1 for none), or None to find the maxima again."""
    x = _input(x, "x")
    check_ndim(x, "x", (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
    return _max_pool_input(_input(grad_output, "grad_output"), x, kernel_size, stride, padding, dilation, ceil_mode,
                           None if indices is None else _input(indices, "indices"), backend, ndim=2)


@accepts_torch
def max_pool1d_input(grad_output, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                     indices=None, backend=None):
    """Gradient of max_pool1d(x, ...) with respect to x (N, C, L) or (C, L); indices are positions along L."""
    x, grad_output = _input(x, "x"), _input(grad_output, "grad_output")
    check_ndim(x, "x", (2, 3), "(N, C, L) or unbatched (C, L)")
    check_ndim(grad_output, "grad_output", (x.ndim,), "(N, C, OL) or unbatched (C, OL)")
    if indices is not None:
        indices = _input(indices, "indices")
        check_ndim(indices, "indices", (x.ndim,), "grad_output's shape")
        indices = indices[..., None, :]
    dx = _max_pool_input(grad_output[..., None, :], x[..., None, :], kernel_size, stride, padding, dilation,
                         ceil_mode, indices, backend, ndim=1)
    return dx[..., 0, :]


def _max_pool_input(grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices, backend, ndim):
    """max_pool2d_input of a 2-D layout; ndim=1: a 1-D op's (height 1), its arguments its own."""
    if is_dask_array(x) or is_dask_array(grad_output) or is_dask_array(indices):
        return _dask().max_pool_input(grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices,
                                      backend, ndim)
    grad_output = _on_device_of(x, grad_output, "grad_output")
    unbatched = x.ndim == 3
    x = x[None] if unbatched else x
    spec = geometry.pool_spec(x.shape, kernel_size, stride, padding, dilation, check_bool(ceil_mode, "ceil_mode"),
                              ndim=ndim)
    given_shape = tuple(grad_output.shape)
    grad_output = _grad_output(grad_output, spec.out_shape, unbatched, "max_pool2d" if ndim == 2 else "max_pool1d",
                               ndim)
    if indices is not None:
        indices = _checked_indices(_on_device_of(x, indices, "indices"), given_shape, spec.h * spec.w)
        indices = indices[None] if unbatched else indices
    dtype = result_dtype(x, grad_output)
    dx = _backward.max_pool_input(grad_output.astype(dtype, copy=False), x.astype(dtype, copy=False), indices, spec,
                                  backend)
    return dx[0] if unbatched else dx


def _checked_indices(indices, shape, plane: int):
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices has dtype {indices.dtype}: expected integers (max_pool2d's return_indices)")
    if tuple(indices.shape) != shape:
        raise ValueError(f"indices has shape {tuple(indices.shape)}: expected grad_output's shape {shape}")
    if indices.size and (int(indices.min()) < -1 or int(indices.max()) >= plane):
        raise ValueError(f"indices hold values in [{int(indices.min())}, {int(indices.max())}]: expected flat "
                         f"positions within the H*W = {plane} input plane (or -1 for a window with no input)")
    return indices.astype(np.int64, copy=False)


@accepts_torch
def avg_pool2d_input(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None, *, backend=None):
    """Gradient of avg_pool2d(x, ...) with respect to x, for x of input_shape."""
    input_shape = _shape(input_shape, "input_shape", (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
    return _avg_pool_input(_input(grad_output, "grad_output"), input_shape, kernel_size, stride, padding, ceil_mode,
                           count_include_pad, divisor_override, backend, ndim=2)


@accepts_torch
def avg_pool1d_input(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, *, backend=None):
    """Gradient of avg_pool1d(x, ...) with respect to x, for x of input_shape ((N, C, L) or (C, L))."""
    input_shape = _shape(input_shape, "input_shape", (2, 3), "(N, C, L) or unbatched (C, L)")
    grad_output = _input(grad_output, "grad_output")
    check_ndim(grad_output, "grad_output", (len(input_shape),), "(N, C, OL) or unbatched (C, OL)")
    dx = _avg_pool_input(grad_output[..., None, :], input_shape[:-1] + (1, input_shape[-1]), kernel_size, stride,
                         padding, ceil_mode, count_include_pad, None, backend, ndim=1)
    return dx[..., 0, :]


def _avg_pool_input(grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override, backend, ndim):
    """avg_pool2d_input of a 2-D layout; ndim=1: a 1-D op's (height 1), its arguments its own."""
    if is_dask_array(grad_output):
        return _dask().avg_pool_input(grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                                      count_include_pad, divisor_override, backend, ndim)
    unbatched = len(input_shape) == 3
    spec = _spec(lambda shape: geometry.pool_spec(shape, kernel_size, stride, padding, 1,
                                                  check_bool(ceil_mode, "ceil_mode"),
                                                  check_bool(count_include_pad, "count_include_pad"),
                                                  divisor_override, ndim),
                 "input_shape", (1,) * unbatched + input_shape, "x")
    grad_output = _grad_output(grad_output, spec.out_shape, unbatched, "avg_pool2d" if ndim == 2 else "avg_pool1d",
                               ndim)
    dx = _backward.avg_pool_input(grad_output.astype(result_dtype(grad_output), copy=False), spec, backend)
    return dx[0] if unbatched else dx


@accepts_torch
def pad2d_input(grad_output, padding, mode="constant", *, backend=None):
    """Gradient of pad2d(x, padding, mode) with respect to x (any fill value): grad_output cropped,
    and for reflect/replicate/circular the pads' gradients added to the elements they copied."""
    if is_dask_array(grad_output):
        return _dask().pad2d_input(grad_output, padding, mode, backend=backend)
    grad_output = as_array(grad_output, "grad_output")
    check_ndim(grad_output, "grad_output", (2, 3, 4), "(H, W), (C, H, W) or (N, C, H, W)")
    if isinstance(padding, str):
        raise ValueError(f"padding={padding!r}: pad2d_input takes an int, (ph, pw) or ((top, bottom), (left, right))")
    t, b, l, r = geometry.explicit_pads(padding, (0, 0), (1, 1), (1, 1), (1, 1))
    lead, (hp, wp) = tuple(grad_output.shape[:-2]), grad_output.shape[-2:]
    if hp < t + b or wp < l + r:
        raise ValueError(f"grad_output has shape {tuple(grad_output.shape)}: smaller than padding={padding!r} "
                         f"(pads (top, bottom, left, right)={(t, b, l, r)}), which it must contain")
    g4 = grad_output if grad_output.ndim == 4 else grad_output.reshape((math.prod(lead), 1, hp, wp))
    spec = geometry.pad_spec(g4.shape[:2] + (hp - t - b, wp - l - r), padding, mode, 0.0)
    dx = _backward.pad_input(g4.astype(result_dtype(g4), copy=False), spec, backend)
    return dx.reshape(lead + dx.shape[-2:])
