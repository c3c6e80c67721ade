"""Gradients of max and average pooling on NumPy arrays, in work items of the input's rows
(several planes, or one plane in bands of rows: pool.row_items, under the workspace cap) on the
worker threads. Each item gathers every output that reaches its rows, so each input element
sums its terms within one item, in a fixed order: the same bits for every thread count and
every banding, float16 rounded once.

- max: each output's gradient goes to the flat index its window picked (the forward's indices,
  or found again by the forward); one np.bincount per item sums them where windows overlap
  (in float64, in output order); indices outside the item's rows, and -1 (a window with no input
  tap), go to a spare bin.
- avg: the gradient over the divisor, spread back separably: along the columns, one strided add
  per kernel column, then along the rows, one per kernel row (pool._axis_taps: only the taps that
  read the input).
"""
from __future__ import annotations

import numpy as np

from ..._geometry import PoolSpec
from ..._validate import accumulation_dtype, float_dtype
from . import _workspace
from ._threads import parallel_items
from .pool import _axis_taps, _divisor, index_geometry, max_with_indices, row_items


def _outputs(n_out: int, stride: int, k: int, pad: int, a: int, e: int) -> tuple[int, int]:
    """[o0, o1) of the outputs (dilation 1 along this axis or not: k is the window's span) whose
    window [o * stride - pad, o * stride - pad + k) meets input rows [a, e)."""
    o0 = max(0, -(-(a + pad - k + 1) // stride))
    return min(o0, n_out), max(min(o0, n_out), min(n_out, (e - 1 + pad) // stride + 1))


def _reach(rows: int, stride: int, k: int) -> int:
    """Most outputs whose windows (of span k) meet `rows` consecutive input rows."""
    return (rows + k - 2) // stride + 1


def max_pool2d_input(grad: np.ndarray, x: np.ndarray, indices, spec: PoolSpec) -> np.ndarray:
    """indices None: each item finds the maxima of its outputs again (the forward's rule), so no
    index array of the whole output is held."""
    planes, ow, w = spec.n * spec.c, spec.ow, spec.w
    span = (spec.kh - 1) * spec.dilation[0] + 1
    flat_grad = grad.reshape(planes, spec.oh * ow)
    flat_index = None if indices is None else indices.reshape(planes, spec.oh * ow)
    x_planes, geometry = (x.reshape(planes, spec.h, w), index_geometry(spec)) if indices is None else (None, None)
    found_bytes = 0 if indices is not None else 8 + float_dtype(x.dtype).itemsize + 2  # index, maximum, two masks
    dx = np.empty((planes, spec.h, w), dtype=grad.dtype)
    # bins and bincount's float64 weights per output, its float64 sums per input element
    items = row_items(planes, spec.h, lambda rows: (16 + found_bytes) * min(spec.oh, _reach(rows, spec.stride[0], span))
                      * ow + 8 * (rows * w + 1), f"the gradient of max pooling one row of a {spec.h}x{w} plane")

    def run(item: int) -> None:
        p0, p1, a, e = items[item]
        o0, o1 = _outputs(spec.oh, spec.stride[0], span, spec.pads[0], a, e)
        band = (e - a) * w
        (bins,) = _workspace.arrays(((p1 - p0, (o1 - o0) * ow), np.int64), slot="pool")
        if indices is None:
            shape = (p1 - p0, o1 - o0, ow)
            found, index, *masks = _workspace.arrays((shape, float_dtype(x.dtype)), (shape, np.int64),
                                                     (shape, np.bool_), (shape, np.bool_), slot="pool_found")
            max_with_indices(x_planes[p0:p1], spec, geometry, o0, o1, found, index, *masks)
            index = index.reshape(p1 - p0, -1)
        else:
            index = flat_index[p0:p1, o0 * ow:o1 * ow]
        # bin of plane p's index i: p * band + i - a * w; outside rows a:e and -1 go to one spare bin
        np.add(index, (np.arange(p1 - p0) * band - a * w)[:, None], out=bins)
        bins[(index < a * w) | (index >= e * w)] = (p1 - p0) * band
        sums = np.bincount(bins.ravel(), weights=flat_grad[p0:p1, o0 * ow:o1 * ow].ravel(),
                           minlength=(p1 - p0) * band + 1)
        np.copyto(dx[p0:p1, a:e], sums[:-1].reshape(p1 - p0, e - a, w), casting="unsafe")

    parallel_items(run, len(items))
    _workspace.release()
    return dx.reshape(spec.n, spec.c, spec.h, spec.w)


def avg_pool2d_input(grad: np.ndarray, spec: PoolSpec) -> np.ndarray:
    compute = accumulation_dtype(grad.dtype)
    planes, (sh, sw), top = spec.n * spec.c, spec.stride, spec.pads[0]
    flat_grad = grad.reshape(planes, spec.oh, spec.ow)
    dx = np.empty((planes, spec.h, spec.w), dtype=grad.dtype)
    row_factor, col_factor, divisor = _divisor(spec, compute)
    cols = _axis_taps(spec.ow, sw, 1, spec.kw, spec.pads[2], spec.w)
    in_place = dx.dtype == compute

    def band_bytes(rows: int) -> int:  # scaled gradient (and its divisor), its column spread, the result
        outs = min(spec.oh, _reach(rows, sh, spec.kh))
        return compute.itemsize * (2 * outs * spec.ow + outs * spec.w + (0 if in_place else rows * spec.w))

    items = row_items(planes, spec.h, band_bytes, f"the gradient of average pooling one row of a "
                                                  f"{spec.h}x{spec.w} plane")

    def run(item: int) -> None:
        p0, p1, a, e = items[item]
        o0, o1 = _outputs(spec.oh, sh, spec.kh, top, a, e)
        scaled, spread, result, plane = _workspace.arrays(
            ((p1 - p0, o1 - o0, spec.ow), compute), ((p1 - p0, o1 - o0, spec.w), compute),
            ((p1 - p0, e - a, spec.w) if not in_place else (0,), compute),
            ((o1 - o0, spec.ow) if divisor is None else (0,), compute), slot="pool")
        if in_place:
            result = dx[p0:p1, a:e]
        if divisor is None:  # integer counts: the products are exact
            np.multiply.outer(row_factor[o0:o1], col_factor, out=plane)
        np.divide(flat_grad[p0:p1, o0:o1], plane if divisor is None else divisor[o0:o1], out=scaled)
        spread.fill(0)
        for _, out_cols, in_cols in cols:
            target = spread[..., in_cols]
            np.add(target, scaled[..., out_cols], out=target)
        result.fill(0)
        for _, out_rows, in_rows in _axis_taps(o1 - o0, sh, 1, spec.kh, top - o0 * sh + a, e - a):
            target = result[:, in_rows]
            np.add(target, spread[:, out_rows], out=target)
        if not in_place:
            np.copyto(dx[p0:p1, a:e], result, casting="unsafe")

    parallel_items(run, len(items), uses_blas=False)
    _workspace.release()
    return dx.reshape(spec.n, spec.c, spec.h, spec.w)
