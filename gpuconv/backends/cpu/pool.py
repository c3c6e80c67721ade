"""Max and average pooling on NumPy arrays.

Max and sum over a window are separable: reduce each input row over the kernel's columns,
then those row results over the kernel's rows. Each pass is one strided operation per
kernel tap, applied only to the outputs whose tap lies inside the input, so padding is
never materialised. Planes (N*C) go in chunks small enough for the row results to stay in
cache (a plane too large for that goes in bands of output rows), spread over the worker
threads. Max pooling with indices scans the 2-D taps in
PyTorch's order instead (its tie and NaN rules need the row-major tap order).
"""
from __future__ import annotations

import numpy as np

from ..._config import config
from ..._geometry import PoolSpec
from . import _workspace
from ._threads import parallel_items

CHUNK_BYTES = 512 << 10  # row results of a chunk of planes: about L2-sized (measured best of 128K-4M)


def tap_outputs(n_out: int, stride: int, offset: int, size: int) -> slice:
    """Outputs o whose tap at input position o*stride + offset lies in [0, size)."""
    lo = max(0, -(offset // stride))
    hi = min(n_out - 1, (size - 1 - offset) // stride)
    return slice(lo, max(hi + 1, lo))


def axis_taps(n_out: int, stride: int, dilation: int, k: int, pad: int, size: int):
    """(tap, output slice, input slice) of each kernel tap along one axis that reaches the input:
    output o reads input o*stride + tap*dilation - pad."""
    taps = []
    for a in range(k):
        out = tap_outputs(n_out, stride, a * dilation - pad, size)
        if out.stop > out.start:
            start = out.start * stride + a * dilation - pad
            taps.append((a, out, slice(start, (out.stop - 1) * stride + a * dilation - pad + 1, stride)))
    return taps


def _taps(spec: PoolSpec) -> list[tuple[slice, slice, slice, slice]]:
    """(output rows, output cols, input rows, input cols) slices of every tap that reaches the
    input, in row-major tap order."""
    rows = axis_taps(spec.oh, spec.stride[0], spec.dilation[0], spec.kh, spec.pads[0], spec.h)
    cols = axis_taps(spec.ow, spec.stride[1], spec.dilation[1], spec.kw, spec.pads[2], spec.w)
    return [(orow, ocol, irow, icol) for _, orow, irow in rows for _, ocol, icol in cols]


def _item_budget() -> int:
    """Scratch bytes of one work item: CHUNK_BYTES, less where the cap is lower. Every thread
    holds one item's scratch at a time, and one more block of at most that size (a divisor block)."""
    return min(CHUNK_BYTES, config.workspace_bytes // (2 * max(1, config.num_threads)))


def _work_items(spec: PoolSpec, itemsize: int) -> list[tuple[int, int, int, int]]:
    """(planes p0:p1, output rows i0:i1) per work item: several whole planes when their row
    results fit CHUNK_BYTES, else one plane in bands of output rows."""
    n_planes = spec.n * spec.c

    def plane_bytes(rows: int) -> int:
        in_rows = min(spec.h, (rows - 1) * spec.stride[0] + (spec.kh - 1) * spec.dilation[0] + 1)
        return itemsize * spec.ow * (in_rows + rows)

    budget = _item_budget()
    if plane_bytes(spec.oh) <= budget:
        chunk = budget // plane_bytes(spec.oh)
        return [(p0, min(n_planes, p0 + chunk), 0, spec.oh) for p0 in range(0, n_planes, chunk)]
    if 2 * plane_bytes(1) > config.workspace_bytes:
        raise MemoryError(f"pooling one output row of a {spec.h}x{spec.w} plane needs {plane_bytes(1)} bytes "
                          f"of workspace, more than the cap of {config.workspace_bytes} bytes "
                          f"(gpuconv.set_workspace_limit)")
    band = 1
    while band < spec.oh and plane_bytes(band + 1) <= budget:
        band += 1
    return [(p, p + 1, i0, min(spec.oh, i0 + band)) for p in range(n_planes) for i0 in range(0, spec.oh, band)]


def _separable(planes: np.ndarray, spec: PoolSpec, op, fill_value, acc_dtype, out: np.ndarray, finish) -> None:
    """acc[p, i, j] = op-reduction over window (i, j)'s in-bounds taps of planes[p] (fill_value
    where it has none), work item by work item in the worker threads; finish(acc, p0, p1, i0, i1)
    turns it into out[p0:p1, i0:i1]. acc is that part of out itself when out has acc_dtype."""
    cols = axis_taps(spec.ow, spec.stride[1], spec.dilation[1], spec.kw, spec.pads[2], spec.w)
    (sh, dh), top = (spec.stride[0], spec.dilation[0]), spec.pads[0]
    items = _work_items(spec, np.dtype(acc_dtype).itemsize)

    def reduce_taps(src, taps, n_out, dst, along_rows):
        """dst = op over taps of src, along axis -2 (along_rows) or -1."""
        def at(s):
            return (Ellipsis, s, slice(None)) if along_rows else (Ellipsis, s)
        rest = taps[1:]
        if taps and taps[0][1] == slice(0, n_out):  # a tap that every output has initialises them
            np.copyto(dst, src[at(taps[0][2])])
        else:
            dst.fill(fill_value)
            rest = taps
        for _, o, i in rest:
            view = dst[at(o)]
            op(view, src[at(i)], out=view)

    def run(item):
        p0, p1, i0, i1 = items[item]
        r_lo = min(spec.h, max(0, i0 * sh - top))
        r_hi = max(r_lo, min(spec.h, (i1 - 1) * sh - top + (spec.kh - 1) * dh + 1))
        in_place = out.dtype == acc_dtype
        row_result, acc = _workspace.arrays(((p1 - p0, r_hi - r_lo, spec.ow), acc_dtype),
                                            ((p1 - p0, 0 if in_place else i1 - i0, spec.ow), acc_dtype), slot="pool")
        if in_place:
            acc = out[p0:p1, i0:i1]
        reduce_taps(planes[p0:p1, r_lo:r_hi], cols, spec.ow, row_result, along_rows=False)
        rows = axis_taps(i1 - i0, sh, dh, spec.kh, top - i0 * sh + r_lo, r_hi - r_lo)
        reduce_taps(row_result, rows, i1 - i0, acc, along_rows=True)
        finish(acc, p0, p1, i0, i1)

    parallel_items(run, len(items))
    _workspace.release()


def _first_tap(n_out, stride, dilation, k, pad, size):
    """Input position of each output's first in-bounds tap, -1 where every tap is padding."""
    start = np.arange(n_out) * stride - pad
    first = np.where(start < 0, start + dilation * (-(start // dilation)), start)
    ok = (first < size) & (first <= start + dilation * (k - 1))
    return np.where(ok, first, -1)


def max_pool2d(x: np.ndarray, spec: PoolSpec, return_indices: bool):
    planes = x.reshape(-1, spec.h, spec.w)
    if not return_indices:
        out = np.empty((planes.shape[0], spec.oh, spec.ow), dtype=x.dtype)
        # np.maximum propagates NaN; the reduction happens in out itself
        _separable(planes, spec, np.maximum, -np.inf, x.dtype, out, lambda *_: None)
        return out.reshape(spec.out_shape)
    return _max_pool_with_indices(planes, spec)


def _max_pool_with_indices(planes: np.ndarray, spec: PoolSpec):
    out = np.empty((planes.shape[0], spec.oh, spec.ow), dtype=planes.dtype)
    idx = np.empty(out.shape, dtype=np.int64)
    top, _, left, _ = spec.pads
    # PyTorch starts each window at its first in-bounds tap; windows with none get -1.
    fr = _first_tap(spec.oh, spec.stride[0], spec.dilation[0], spec.kh, top, spec.h)
    fc = _first_tap(spec.ow, spec.stride[1], spec.dilation[1], spec.kw, left, spec.w)
    init_idx = np.where((fr[:, None] >= 0) & (fc[None, :] >= 0), fr[:, None] * spec.w + fc[None, :], -1)
    taps = _taps(spec)
    # per tap: three boolean masks the size of a chunk's output (a plane at least)
    chunk = max(1, _item_budget() // (3 * spec.oh * spec.ow))
    n_planes = planes.shape[0]

    def run(item):
        p0, p1 = item * chunk, min(n_planes, (item + 1) * chunk)
        o = out[p0:p1]
        o.fill(-np.inf)
        src = planes[p0:p1]
        ix = idx[p0:p1]
        ix[...] = init_idx
        for orow, ocol, irow, icol in taps:
            v = src[:, irow, icol]
            view = o[:, orow, ocol]
            better = (v > view) | np.isnan(v)  # PyTorch's rule: strictly greater, or NaN
            np.copyto(view, v, where=better)
            flat = (np.arange(irow.start, irow.stop, irow.step)[:, None] * spec.w
                    + np.arange(icol.start, icol.stop, icol.step)[None, :])
            np.copyto(ix[:, orow, ocol], flat, where=better)

    parallel_items(run, -(-n_planes // chunk))
    return out.reshape(spec.out_shape), idx.reshape(spec.out_shape)


def divisor_factors(spec: PoolSpec) -> tuple[np.ndarray, np.ndarray]:
    """(oh,) and (ow,) factors whose outer product is the divisor of average pooling,
    PyTorch's count_include_pad rule (divisor_override wins)."""
    if spec.divisor_override is not None:
        return np.full(spec.oh, float(spec.divisor_override)), np.ones(spec.ow)
    counts = []
    for n_out, s, k, pad_before, pad_after, size in (
            (spec.oh, spec.stride[0], spec.kh, spec.pads[0], spec.pads[1], spec.h),
            (spec.ow, spec.stride[1], spec.kw, spec.pads[2], spec.pads[3], spec.w)):
        start = np.arange(n_out) * s - pad_before
        if spec.count_include_pad:
            counts.append(np.minimum(start + k, size + pad_after) - start)
        else:
            counts.append(np.minimum(start + k, size) - np.maximum(start, 0))
    return counts[0].astype(np.float64), counts[1].astype(np.float64)


def avg_pool2d(x: np.ndarray, spec: PoolSpec) -> np.ndarray:
    planes = x.reshape(-1, spec.h, spec.w)
    acc_dtype = np.float32 if x.dtype == np.float16 else x.dtype
    out = np.empty((planes.shape[0], spec.oh, spec.ow), dtype=x.dtype)
    row_factor, col_factor = (f.astype(acc_dtype) for f in divisor_factors(spec))

    def finish(acc, p0, p1, i0, i1):
        # integer counts: the products are exact, as is the divisor they form
        np.divide(acc, np.multiply.outer(row_factor[i0:i1], col_factor), out=out[p0:p1, i0:i1], casting="unsafe")

    _separable(planes, spec, np.add, 0, acc_dtype, out, finish)
    return out.reshape(spec.out_shape)
