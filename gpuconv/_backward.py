"""Gradient dispatch shared by gpuconv.grad and conv_transpose2d: validated 4-D arrays of one
dtype and the FORWARD op's spec in, the backend's gradient out.

Backends compute convolution gradients for zero padding only; a reflect/replicate/circular
conv is a zero-padded conv of the explicitly padded input, so here
    dx = pad2d_input(conv2d_input over the padded input)      (the pads fold back)
    dw = conv2d_weight(pad2d(x), ...)
On NumPy arrays, where the padded input (or its gradient) would take more than a quarter of the
workspace cap, both run band by band of rows instead (the backend's calls on each band's geometry),
so that their scratch stays under the cap.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import _geometry as geometry
from ._config import config
from ._validate import accumulation_dtype, array_module
from .backends import select
from .backends.cpu._stride_phases import source_index
from .backends.cpu.pad_grad import fold_band


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
    # steps after the backend's add to its result: all in float32, float16 rounded once at the end
    compute = accumulation_dtype(dtype) if pad is not None or bias is not None else dtype
    # scratch beside the backend's: float32 copies of a float16 grad_out, the padded input's gradient
    whole_bytes = ((4 * grad_out.size if compute != dtype else 0)
                   + (compute.itemsize * math.prod(pad.out_shape) if pad is not None else 0))
    fits = whole_bytes <= config.workspace_bytes // 4
    if array_module(grad_out) is np and pad is not None and not fits:  # (no bias: conv_transpose2d pads zeros)
        return _banded_conv_input(grad_out, w, spec, pad, compute, algorithm, chosen)
    # (a float16 bias without a padding mode that does not fit goes over the cap: not banded yet)
    with config.reserve(whole_bytes if fits and array_module(grad_out) is np else 0):
        dx = chosen.conv2d_input(grad_out.astype(compute, copy=False), w.astype(compute, copy=False),
                                 backend_spec(spec), algorithm)
        if pad is not None:
            dx = chosen.pad2d_input(dx, pad)
    if bias is not None:
        dx += bias.astype(dx.dtype, copy=False)[:, None, None]
    return dx.astype(dtype, copy=False)


def _band_rows(row_bytes: int, fixed_bytes: int, what: str) -> int:
    """Rows per band whose scratch, fixed_bytes + rows * row_bytes, fits a quarter of the cap."""
    rows = (config.workspace_bytes // 4 - fixed_bytes) // row_bytes
    if rows < 1:
        raise MemoryError(f"{what} needs {row_bytes + fixed_bytes} bytes of scratch, more than a quarter of the "
                          f"cap of {config.workspace_bytes} bytes (gpuconv.set_workspace_limit or "
                          f"GPUCONV_WORKSPACE_MB raise it)")
    return rows


def _banded_conv_input(grad_out, w, spec, pad, compute, algorithm, chosen):
    """conv_input of a padding mode whose padded input's gradient exceeds a quarter of the workspace
    cap (NumPy arrays), band by band of input rows. The gradient of a band of padded-input rows comes
    from the output rows that reach it, by the backend on that band's geometry; the pad rows' come
    first and are held (they fold onto rows of other bands); each band is then folded as
    pad2d_input folds, cropped and rounded once."""
    (sh, _), (dh, _), (t, b, l, _) = spec.stride, spec.dilation, spec.pads
    bspec = backend_spec(spec)
    if algorithm == "auto":  # one method for every band: the whole convolution's
        algorithm = chosen.choose_grad_algorithms(bspec)[0]
    w = w.astype(compute, copy=False)
    reach = (spec.kh - 1) * dh  # padded rows below an output row's first that its window reads

    def padded_rows(r0: int, r1: int):
        """The gradient of padded-input rows r0:r1, (n, c, r1 - r0, padded width)."""
        out = np.zeros((spec.n, spec.c, r1 - r0, bspec.w), dtype=compute)
        o0, o1 = max(0, -(-(r0 - reach) // sh)), min(spec.oh, (r1 - 1) // sh + 1)
        if o0 < o1:
            i0, i1 = o0 * sh, (o1 - 1) * sh + reach + 1  # the rows those output rows read
            part = chosen.conv2d_input(grad_out[:, :, o0:o1].astype(compute), w,
                                       dataclasses.replace(bspec, h=i1 - i0, oh=o1 - o0), algorithm)
            lo, hi = max(r0, i0), min(r1, i1)
            out[:, :, lo - r0:hi - r0] = part[:, :, lo - i0:hi - i0]
        return out

    # per input row: its band row, the backend's result row, a row of grad_out (at most); beside them
    # the pad rows' gradients, the result's and grad_out's rows past the band (its halo)
    row_bytes = compute.itemsize * spec.n * (2 * spec.c * bspec.w + spec.f * spec.ow)
    fixed = compute.itemsize * spec.n * (spec.c * bspec.w * (t + b + reach + sh) + spec.f * spec.ow * (reach // sh + 1))
    rows = _band_rows(row_bytes, fixed, f"the input gradient of one row with padding_mode={spec.padding_mode!r}")
    dx = np.empty((spec.n, spec.c, spec.h, spec.w), dtype=grad_out.dtype)
    with config.reserve(rows * row_bytes + fixed):
        above, below = padded_rows(0, t), padded_rows(t + spec.h, t + spec.h + b)
        for a in range(0, spec.h, rows):
            e = min(spec.h, a + rows)
            band = padded_rows(t + a, t + e)
            fold_band(band, a, above, below, pad)
            np.copyto(dx[:, :, a:e], band[..., l:l + spec.w], casting="unsafe")
    return dx


def conv_weight(x, grad_out, spec: geometry.ConvSpec, algorithm: str, backend):
    """Gradient of conv2d (spec) with respect to its weights, shape (f, c/groups, kh, kw)."""
    if spec.n == 0:
        return _zeros(x, (spec.f, spec.channels_per_group, spec.kh, spec.kw), x.dtype)
    chosen, pad, bspec = select(x, backend), _mode_pad(spec), backend_spec(spec)
    if pad is None:
        return chosen.conv2d_weight(x, grad_out, bspec, algorithm)
    padded_bytes = x.dtype.itemsize * math.prod(pad.out_shape)
    if array_module(x) is not np:  # device memory: the padded input whole
        return chosen.conv2d_weight(chosen.pad2d(x, pad), grad_out, bspec, algorithm)
    if padded_bytes <= config.workspace_bytes // 4:
        padded = chosen.pad2d(x, pad)
        with config.reserve(padded_bytes):  # the backend's scratch and the padded input: under the cap together
            return chosen.conv2d_weight(padded, grad_out, bspec, algorithm)
    return _banded_conv_weight(x, grad_out, spec, bspec, chosen, algorithm)


def _banded_conv_weight(x, grad_out, spec, bspec, chosen, algorithm):
    """conv_weight of a padding mode whose padded input exceeds a quarter of the workspace cap (NumPy
    arrays): the padded input built band by band of output rows (its rows gathered by the mode's
    index map, then its columns padded), each band's weight gradient in float32 for float16, added
    up in band order and rounded once."""
    (sh, _), (dh, _), (top, _, left, right) = spec.stride, spec.dilation, spec.pads
    compute = accumulation_dtype(x.dtype)
    padded_w = spec.w + left + right
    # per output row: its share of the padded band (3 copies at most: a float16 gather, its float32 cast,
    # the padded rows) and of dy's band
    row_bytes = compute.itemsize * spec.n * (3 * spec.c * padded_w * sh + spec.f * spec.ow)
    halo_bytes = 3 * compute.itemsize * spec.n * spec.c * padded_w * (spec.kh - 1) * dh
    band = _band_rows(row_bytes, halo_bytes,
                      f"the weight gradient of one output row with padding_mode={spec.padding_mode!r}")
    if algorithm == "auto":  # one method for every band: the whole convolution's
        algorithm = chosen.choose_grad_algorithms(bspec)[1]
    dw = np.zeros((spec.f, spec.channels_per_group, spec.kh, spec.kw), dtype=compute)
    with config.reserve(band * row_bytes + halo_bytes):
        for o0 in range(0, spec.oh, band):
            o1 = min(spec.oh, o0 + band)
            r0, r1 = o0 * sh, (o1 - 1) * sh + (spec.kh - 1) * dh + 1  # the band's rows of the padded input
            rows = x[:, :, source_index(np.arange(r0, r1) - top, spec.h, spec.padding_mode)].astype(compute,
                                                                                                     copy=False)
            padded = chosen.pad2d(rows, geometry.PadSpec(spec.n, spec.c, r1 - r0, spec.w, (0, 0, left, right),
                                                         spec.padding_mode, 0.0))
            del rows
            band_spec = dataclasses.replace(bspec, h=r1 - r0, oh=o1 - o0)
            dw += chosen.conv2d_weight(padded, grad_out[:, :, o0:o1].astype(compute), band_spec, algorithm)
            del padded
    return dw.astype(x.dtype, copy=False)


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
