"""Gradient dispatch shared by gpuconv.grad and conv_transpose2d: validated 4-D arrays of one
dtype and the FORWARD op's spec in, the backend's gradient out.

Backends compute convolution gradients for zero padding only; a reflect/replicate/circular
conv is a zero-padded conv of the explicitly padded input, so here
    dx = pad2d_input(conv2d_input over the padded input)      (the pads fold back)
    dw = conv2d_weight(pad2d(x), ...)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import _geometry as geometry
from ._validate import array_module
from .backends import select


def _zeros(like, shape, dtype):
    return array_module(like).zeros(shape, dtype=dtype)


def backend_spec(spec: geometry.ConvSpec) -> geometry.ConvSpec:
    """The zero-padded conv whose gradients the backend computes for spec: spec itself for zero
    padding, else the same conv over the explicitly padded input."""
    if spec.padding_mode == "zeros" or spec.pads == (0, 0, 0, 0):
        return dataclasses.replace(spec, padding_mode="zeros")
    t, b, l, r = spec.pads
    return dataclasses.replace(spec, h=spec.h + t + b, w=spec.w + l + r, pads=(0, 0, 0, 0), padding_mode="zeros")


def _mode_pad(spec: geometry.ConvSpec) -> geometry.PadSpec | None:
    """The pad2d that a reflect/replicate/circular conv applies to its input; None for zero padding."""
    if spec.padding_mode == "zeros" or spec.pads == (0, 0, 0, 0):
        return None
    return geometry.PadSpec(spec.n, spec.c, spec.h, spec.w, spec.pads, spec.padding_mode, 0.0)


def conv_input(grad_out, w, spec: geometry.ConvSpec, algorithm: str, backend, bias=None):
    """Gradient of conv2d (spec) with respect to its input x, shape (n, c, h, w), plus `bias` per
    channel (conv_transpose2d's)."""
    if spec.n == 0:
        return _zeros(grad_out, (spec.n, spec.c, spec.h, spec.w), grad_out.dtype)
    chosen, pad, dtype = select(grad_out, backend), _mode_pad(spec), grad_out.dtype
    if dtype == np.float16 and (pad is not None or bias is not None):
        # steps after the backend's add to its result: all in float32, float16 rounded once at the end
        grad_out, w = grad_out.astype(np.float32), w.astype(np.float32)
    dx = chosen.conv2d_input(grad_out, w, backend_spec(spec), algorithm)
    if pad is not None:
        dx = chosen.pad2d_input(dx, pad)
    if bias is not None:
        dx += bias.astype(dx.dtype, copy=False)[:, None, None]
    return dx.astype(dtype, copy=False)


def conv_weight(x, grad_out, spec: geometry.ConvSpec, algorithm: str, backend):
    """Gradient of conv2d (spec) with respect to its weights, shape (f, c/groups, kh, kw)."""
    if spec.n == 0:
        return _zeros(x, (spec.f, spec.channels_per_group, spec.kh, spec.kw), x.dtype)
    chosen, pad = select(x, backend), _mode_pad(spec)
    return chosen.conv2d_weight(x if pad is None else chosen.pad2d(x, pad), grad_out, backend_spec(spec), algorithm)


def max_pool_input(grad_out, x, indices, spec: geometry.PoolSpec, backend):
    if x.size == 0:
        return _zeros(x, x.shape, grad_out.dtype)
    return select(x, backend).max_pool2d_input(grad_out, x, indices, spec)


def avg_pool_input(grad_out, spec: geometry.PoolSpec, backend):
    if grad_out.size == 0:
        return _zeros(grad_out, (spec.n, spec.c, spec.h, spec.w), grad_out.dtype)
    return select(grad_out, backend).avg_pool2d_input(grad_out, spec)


def pad_input(grad_out, spec: geometry.PadSpec, backend):
    if spec.n * spec.c * spec.h * spec.w == 0:
        return _zeros(grad_out, (spec.n, spec.c, spec.h, spec.w), grad_out.dtype)
    return select(grad_out, backend).pad2d_input(grad_out, spec)
