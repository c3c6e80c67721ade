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

import math
from typing import NamedTuple

import numpy as np

from ..._config import config
from ..._geometry import PoolSpec
from ..._validate import accumulation_dtype, float_dtype
from . import _plan_cache, _workspace
from ._threads import parallel_items

CHUNK_BYTES = 512 << 10  # row results of a chunk of planes: about L2-sized (measured best of 128K-4M)


def tap_outputs(n_out: int, stride: int, offset: int, size: int) -> slice:
    """Outputs o whose tap at input position o*stride + offset lies in [0, size)."""
    lo = max(0, -(offset // stride))
    hi = min(n_out - 1, (size - 1 - offset) // stride)
    return slice(lo, max(hi + 1, lo))


def _axis_taps(n_out: int, stride: int, dilation: int, k: int, pad: int, size: int):
    """(tap, output slice, input slice) of each kernel tap along one axis that reaches the input."""
    taps = []
    for a in range(k):
        out = tap_outputs(n_out, stride, a * dilation - pad, size)
        if out.stop > out.start:
            start = out.start * stride + a * dilation - pad
            taps.append((a, out, slice(start, (out.stop - 1) * stride + a * dilation - pad + 1, stride)))
    return taps


def _item_budget() -> int:
    """Scratch bytes of one work item: CHUNK_BYTES, less where the cap is lower. Every thread
    holds one item's scratch at a time, and one more block of at most that size (a divisor block)."""
    return min(CHUNK_BYTES, config.workspace_bytes // (2 * max(1, config.num_threads)))


def _work_items(spec: PoolSpec, plane_bytes) -> list[tuple[int, int, int, int]]:
    """(planes p0:p1, output rows i0:i1) per work item: several whole planes when the scratch of
    a plane (plane_bytes(output rows)) fits the item budget, else one plane in bands of output rows."""
    return row_items(spec.n * spec.c, spec.oh, plane_bytes,
                     f"pooling one output row of a {spec.h}x{spec.w} plane")


def row_items(n_planes: int, n_rows: int, band_bytes, what: str) -> list[tuple[int, int, int, int]]:
    """(planes p0:p1, rows r0:r1) per work item: several whole planes when the scratch of a plane's
    n_rows rows (band_bytes(rows)) fits the item budget, else one plane in bands of rows; MemoryError
    where one row (`what`) does not fit."""
    budget = _item_budget()
    if band_bytes(n_rows) <= budget:
        chunk = budget // max(1, band_bytes(n_rows))
        return [(p0, min(n_planes, p0 + chunk), 0, n_rows) for p0 in range(0, n_planes, chunk)]
    if 2 * band_bytes(1) > config.workspace_bytes:
        raise MemoryError(f"{what} needs {band_bytes(1)} bytes of workspace, more than the cap of "
                          f"{config.workspace_bytes} bytes (gpuconv.set_workspace_limit or GPUCONV_WORKSPACE_MB "
                          f"raise it)")
    band = 1
    while band < n_rows and band_bytes(band + 1) <= budget:
        band += 1
    return [(p, p + 1, r0, min(n_rows, r0 + band)) for p in range(n_planes) for r0 in range(0, n_rows, band)]


class _Reduction(NamedTuple):
    """The taps of one pass along an axis as index tuples: `first` (the input index of a first tap
    that every output has, which initialises them; None: fill first), `second` (the next tap's
    input index when every output has it too: the two make one operation), and (output index,
    input index) of the taps to reduce into them."""

    first: tuple | None
    second: tuple | None
    rest: list


def _reduction(taps, n_out: int, along_rows: bool) -> _Reduction:
    def at(s):
        return (Ellipsis, s, slice(None)) if along_rows else (Ellipsis, s)

    every = [o == slice(0, n_out) for o, _ in taps[:2]]
    if not every or not every[0]:
        return _Reduction(None, None, [(at(o), at(i)) for o, i in taps])
    if len(every) == 2 and every[1]:
        return _Reduction(at(taps[0][1]), at(taps[1][1]), [(at(o), at(i)) for o, i in taps[2:]])
    return _Reduction(at(taps[0][1]), None, [(at(o), at(i)) for o, i in taps[1:]])


class _Item(NamedTuple):
    """One work item: planes p0:p1, output rows i0:i1 from input rows r_lo:r_hi, the pass along its
    rows, and its scratch: the shapes of the row results and of the accumulator (None: out itself)."""

    p0: int
    p1: int
    i0: int
    i1: int
    r_lo: int
    r_hi: int
    rows: _Reduction
    row_shape: tuple
    acc_shape: tuple | None
    fresh_scratch: bool  # small: fresh arrays cost less than carving the workspace


class _SeparablePlan(NamedTuple):
    """What _separable derives from the spec and dtypes alone: the pass along the columns, the work
    items, and for average pooling the divisor (see _divisor)."""

    out_dtype: np.dtype
    acc_dtype: np.dtype
    cols: _Reduction
    items: list
    divisor: tuple | None


# ~150 bytes per work item; a plan of many items (huge planes in bands) is rebuilt per call.
_plans = _plan_cache.PlanCache(
    4 << 20, lambda plan: 200 + 150 * len(plan.items) + sum(a.nbytes for a in plan.divisor or () if a is not None))


def _separable_plan(spec: PoolSpec, dtype: np.dtype, average: bool) -> _SeparablePlan:
    """The plan of max (average=False) or average pooling of x of dtype."""
    return _plans.get((spec, dtype, average, config.workspace_bytes, config.num_threads),
                      lambda: _build_separable_plan(spec, dtype, average))


def _build_separable_plan(spec: PoolSpec, dtype: np.dtype, average: bool) -> _SeparablePlan:
    out_dtype = float_dtype(dtype)
    # float16 sums in float32; max pooling's reduction is exact in any dtype
    acc_dtype = accumulation_dtype(out_dtype) if average else out_dtype
    in_place = acc_dtype == out_dtype
    cols = [(o, i) for _, o, i in _axis_taps(spec.ow, spec.stride[1], spec.dilation[1], spec.kw, spec.pads[2], spec.w)]
    (sh, dh), top = (spec.stride[0], spec.dilation[0]), spec.pads[0]

    def plane_bytes(rows: int) -> int:  # the row results and the accumulator of `rows` output rows
        in_rows = min(spec.h, (rows - 1) * sh + (spec.kh - 1) * dh + 1)
        return acc_dtype.itemsize * spec.ow * (in_rows + rows)

    items = []
    for p0, p1, i0, i1 in _work_items(spec, plane_bytes):
        r_lo = min(spec.h, max(0, i0 * sh - top))
        r_hi = max(r_lo, min(spec.h, (i1 - 1) * sh - top + (spec.kh - 1) * dh + 1))
        rows = [(o, i) for _, o, i in _axis_taps(i1 - i0, sh, dh, spec.kh, top - i0 * sh + r_lo, r_hi - r_lo)]
        row_shape = (p1 - p0, r_hi - r_lo, spec.ow)
        acc_shape = None if in_place else (p1 - p0, i1 - i0, spec.ow)
        scratch = acc_dtype.itemsize * sum(math.prod(s) for s in (row_shape, acc_shape or ()))
        items.append(_Item(p0, p1, i0, i1, r_lo, r_hi, _reduction(rows, i1 - i0, along_rows=True), row_shape,
                           acc_shape, scratch < _workspace.SMALL_BYTES))
    divisor = _divisor(spec, acc_dtype) if average else None
    return _SeparablePlan(out_dtype, acc_dtype, _reduction(cols, spec.ow, along_rows=False), items, divisor)


def _reduce_taps(src, reduction: _Reduction, dst, op, fill_value) -> None:
    if reduction.first is None:
        dst.fill(fill_value)
    elif reduction.second is None:
        np.copyto(dst, src[reduction.first])
    elif src.dtype == dst.dtype:  # in tap order, as below: the first tap wins ties
        op(src[reduction.first], src[reduction.second], out=dst)
    else:  # in dst's dtype (float16 sums in float32; integers are read as float64)
        op(src[reduction.first], src[reduction.second], out=dst, dtype=dst.dtype)
    for o, i in reduction.rest:
        view = dst[o]
        op(view, src[i], out=view)


def _run_item(plan: _SeparablePlan, item: _Item, planes, out, op, fill_value) -> None:
    if item.fresh_scratch:
        row_result = np.empty(item.row_shape, plan.acc_dtype)
        acc = out[item.p0:item.p1, item.i0:item.i1] if item.acc_shape is None else np.empty(item.acc_shape,
                                                                                           plan.acc_dtype)
    else:
        row_result, acc = _workspace.arrays((item.row_shape, plan.acc_dtype), (item.acc_shape or (0,), plan.acc_dtype),
                                            slot="pool")
        if item.acc_shape is None:
            acc = out[item.p0:item.p1, item.i0:item.i1]
    _reduce_taps(planes[item.p0:item.p1, item.r_lo:item.r_hi], plan.cols, row_result, op, fill_value)
    _reduce_taps(row_result, item.rows, acc, op, fill_value)
    if plan.divisor is not None:
        rows, cols, plane = plan.divisor
        divisor = plane[item.i0:item.i1] if plane is not None else np.multiply.outer(rows[item.i0:item.i1], cols)
        np.divide(acc, divisor, out=out[item.p0:item.p1, item.i0:item.i1], casting="unsafe")


def _separable(planes: np.ndarray, spec: PoolSpec, op, fill_value, average: bool) -> np.ndarray:
    """out[p, i, j] = op-reduction over window (i, j)'s in-bounds taps of planes[p] (fill_value
    where it has none), divided by the divisor where average; work item by work item in the worker
    threads. The reduction runs in out itself where out has the accumulator's dtype."""
    plan = _separable_plan(spec, planes.dtype, average)
    out = np.empty((planes.shape[0], spec.oh, spec.ow), dtype=plan.out_dtype)
    if len(plan.items) == 1:  # a small plane: no thread pool (its bookkeeping costs more than the item)
        _run_item(plan, plan.items[0], planes, out, op, fill_value)
    else:
        parallel_items(lambda k: _run_item(plan, plan.items[k], planes, out, op, fill_value), len(plan.items),
                       uses_blas=False)
    _workspace.release()
    return out


def _first_tap(n_out, stride, dilation, k, pad, size):
    """Offset of each output's first in-bounds tap from its window's start, -1 where every tap is padding."""
    start = np.arange(n_out) * stride - pad
    first = np.where(start < 0, start + dilation * (-(start // dilation)), start)
    ok = (first < size) & (first <= start + dilation * (k - 1))
    return np.where(ok, first - start, -1)


def max_pool2d(x: np.ndarray, spec: PoolSpec, return_indices: bool):
    planes = x.reshape(-1, spec.h, spec.w)
    if not return_indices:  # np.maximum propagates NaN
        return _separable(planes, spec, np.maximum, -np.inf, average=False).reshape(spec.out_shape)
    return _max_pool_with_indices(planes, spec)


def _max_pool_with_indices(planes: np.ndarray, spec: PoolSpec):
    """The 2-D taps in PyTorch's row-major order. The index array first holds the winning tap's
    offset within its window (a scalar per tap), and the windows' start positions are added at
    the end: no array of indices per tap. Scratch: two masks per output of a work item."""
    out = np.empty((planes.shape[0], spec.oh, spec.ow), dtype=float_dtype(planes.dtype))
    idx = np.empty(out.shape, dtype=np.int64)
    geometry = index_geometry(spec)
    items = _work_items(spec, lambda rows: 2 * rows * spec.ow)

    def run(item):
        p0, p1, i0, i1 = items[item]
        shape = (p1 - p0, i1 - i0, spec.ow)
        masks = _workspace.arrays((shape, np.bool_), (shape, np.bool_), slot="pool")
        max_with_indices(planes[p0:p1], spec, geometry, i0, i1, out[p0:p1, i0:i1], idx[p0:p1, i0:i1], *masks)

    parallel_items(run, len(items))
    _workspace.release()
    return out.reshape(spec.out_shape), idx.reshape(spec.out_shape)


def index_geometry(spec: PoolSpec) -> tuple:
    """What max_with_indices needs of the spec: each window's first in-bounds tap (PyTorch starts
    each window there; windows with none get -1) and start, per axis, and the column taps."""
    (sh, sw), (dh, dw), (top, _, left, _) = spec.stride, spec.dilation, spec.pads
    return (_first_tap(spec.oh, sh, dh, spec.kh, top, spec.h), _first_tap(spec.ow, sw, dw, spec.kw, left, spec.w),
            np.arange(spec.oh) * sh - top, np.arange(spec.ow) * sw - left,
            _axis_taps(spec.ow, sw, dw, spec.kw, left, spec.w))


def max_with_indices(src, spec: PoolSpec, geometry, i0: int, i1: int, o, ix, better, nan) -> None:
    """Output rows i0:i1 of the planes src: their maxima into o and flat indices into ix; better and
    nan: boolean scratch of o's shape."""
    first_row, first_col, row_start, col_start, cols = geometry
    sh, dh, top = spec.stride[0], spec.dilation[0], spec.pads[0]
    o.fill(-np.inf)
    ix[...] = first_row[i0:i1, None] * spec.w
    ix += first_col
    for a, orow, irow in _axis_taps(i1 - i0, sh, dh, spec.kh, top - i0 * sh, spec.h):
        for b, ocol, icol in cols:
            v, view, mask, isnan = src[:, irow, icol], o[:, orow, ocol], better[:, orow, ocol], nan[:, orow, ocol]
            np.greater(v, view, out=mask)  # PyTorch's rule: strictly greater, or NaN
            np.logical_or(mask, np.isnan(v, out=isnan), out=mask)
            np.copyto(view, v, where=mask)
            np.copyto(ix[:, orow, ocol], a * dh * spec.w + b * spec.dilation[1], where=mask)
    ix += row_start[i0:i1, None] * spec.w
    ix += col_start
    ix[:, first_row[i0:i1] < 0] = -1
    ix[:, :, first_col < 0] = -1


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


MAX_DIVISOR_PLANE = 16384  # oh * ow values: the whole divisor plane is kept for outputs up to this


def _divisor(spec: PoolSpec, dtype: np.dtype) -> tuple:
    """(rows, cols, plane) of the divisor of every output position in dtype: its row and column
    factors, and their outer product where it has at most MAX_DIVISOR_PLANE values (else None: the
    rows of each work item are multiplied out when it runs); read-only."""
    rows, cols = (f.astype(dtype) for f in divisor_factors(spec))
    # integer counts: the products are exact
    plane = np.multiply.outer(rows, cols) if spec.oh * spec.ow <= MAX_DIVISOR_PLANE else None
    for a in (rows, cols, plane):
        if a is not None:
            a.flags.writeable = False
    return rows, cols, plane


def avg_pool2d(x: np.ndarray, spec: PoolSpec) -> np.ndarray:
    return _separable(x.reshape(-1, spec.h, spec.w), spec, np.add, 0, average=True).reshape(spec.out_shape)
