"""Max and average pooling on NumPy arrays.

One strided whole-array operation per kernel tap, applied only to the outputs whose tap
lies inside the input, so padding is never materialised. The planes (N*C) are split over
the worker threads.
"""
from __future__ import annotations

import numpy as np

from ..._geometry import PoolSpec
from ._threads import parallel_ranges


def tap_outputs(n_out: int, stride: int, offset: int, size: int) -> slice:
    """Outputs o whose tap at input position o*stride + offset lies in [0, size)."""
    lo = max(0, -(offset // stride))
    hi = min(n_out - 1, (size - 1 - offset) // stride)
    return slice(lo, max(hi + 1, lo))


def _taps(spec: PoolSpec):
    """(output rows, output cols, input rows, input cols) slices of every tap, row-major tap order."""
    sh, sw = spec.stride
    dh, dw = spec.dilation
    top, _, left, _ = spec.pads
    for a in range(spec.kh):
        off_h = a * dh - top
        orow = tap_outputs(spec.oh, sh, off_h, spec.h)
        if orow.stop <= orow.start:
            continue
        irow = slice(orow.start * sh + off_h, (orow.stop - 1) * sh + off_h + 1, sh)
        for b in range(spec.kw):
            off_w = b * dw - left
            ocol = tap_outputs(spec.ow, sw, off_w, spec.w)
            if ocol.stop <= ocol.start:
                continue
            icol = slice(ocol.start * sw + off_w, (ocol.stop - 1) * sw + off_w + 1, sw)
            yield (a, b), orow, ocol, irow, icol


def _first_tap(n_out, stride, dilation, k, pad, size):
    """Input position of each output's first in-bounds tap, -1 where every tap is padding."""
    start = np.arange(n_out) * stride - pad
    first = np.where(start < 0, start + dilation * (-(start // dilation)), start)
    ok = (first < size) & (first <= start + dilation * (k - 1))
    return np.where(ok, first, -1)


def max_pool2d(x: np.ndarray, spec: PoolSpec, return_indices: bool):
    planes = x.reshape(-1, spec.h, spec.w)
    out = np.empty((planes.shape[0], spec.oh, spec.ow), dtype=x.dtype)
    idx = np.empty(out.shape, dtype=np.int64) if return_indices else None
    top, _, left, _ = spec.pads
    if return_indices:
        # PyTorch starts each window at its first in-bounds tap; windows with none get -1.
        fr = _first_tap(spec.oh, spec.stride[0], spec.dilation[0], spec.kh, top, spec.h)
        fc = _first_tap(spec.ow, spec.stride[1], spec.dilation[1], spec.kw, left, spec.w)
        init_idx = np.where((fr[:, None] >= 0) & (fc[None, :] >= 0), fr[:, None] * spec.w + fc[None, :], -1)
    taps = list(_taps(spec))

    def run(p0, p1):
        o = out[p0:p1]
        o.fill(-np.inf)
        src = planes[p0:p1]
        if not return_indices:
            for _, orow, ocol, irow, icol in taps:
                view = o[:, orow, ocol]
                np.maximum(view, src[:, irow, icol], out=view)  # propagates NaN
            return
        ix = idx[p0:p1]
        ix[...] = init_idx
        for _, orow, ocol, irow, icol in taps:
            v = src[:, irow, icol]
            view = o[:, orow, ocol]
            better = (v > view) | np.isnan(v)  # PyTorch's rule: strictly greater, or NaN
            np.copyto(view, v, where=better)
            flat = (np.arange(irow.start, irow.stop, irow.step)[:, None] * spec.w
                    + np.arange(icol.start, icol.stop, icol.step)[None, :])
            np.copyto(ix[:, orow, ocol], flat, where=better)

    parallel_ranges(run, planes.shape[0])
    out = out.reshape(spec.out_shape)
    return (out, idx.reshape(spec.out_shape)) if return_indices else out


def divisor(spec: PoolSpec) -> np.ndarray:
    """(oh, ow) divisors of average pooling, PyTorch's count_include_pad rule."""
    if spec.divisor_override is not None:
        return np.full((spec.oh, spec.ow), spec.divisor_override, dtype=np.float64)
    counts = []
    for n_out, s, k, pad_before, pad_after, size in (
            (spec.oh, spec.stride[0], spec.kh, spec.pads[0], spec.pads[1], spec.h),
            (spec.ow, spec.stride[1], spec.kw, spec.pads[2], spec.pads[3], spec.w)):
        start = np.arange(n_out) * s - pad_before
        if spec.count_include_pad:
            counts.append(np.minimum(start + k, size + pad_after) - start)
        else:
            counts.append(np.minimum(start + k, size) - np.maximum(start, 0))
    return np.outer(counts[0], counts[1]).astype(np.float64)


def avg_pool2d(x: np.ndarray, spec: PoolSpec) -> np.ndarray:
    planes = x.reshape(-1, spec.h, spec.w)
    acc_dtype = np.float32 if x.dtype == np.float16 else x.dtype
    out = np.empty((planes.shape[0], spec.oh, spec.ow), dtype=x.dtype)
    div = divisor(spec).astype(acc_dtype)
    taps = list(_taps(spec))

    def run(p0, p1):
        acc = np.zeros((p1 - p0, spec.oh, spec.ow), dtype=acc_dtype)
        src = planes[p0:p1]
        for _, orow, ocol, irow, icol in taps:
            view = acc[:, orow, ocol]
            np.add(view, src[:, irow, icol], out=view)
        np.divide(acc, div, out=acc)
        out[p0:p1] = acc

    parallel_ranges(run, planes.shape[0])
    return out.reshape(spec.out_shape)
