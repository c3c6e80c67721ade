"""Gradients of max and average pooling on NumPy arrays, over chunks of planes on the worker
threads (each plane's sums run in a fixed order: the same bits for every thread count).

- max: each output's gradient goes to the flat index its window picked (the forward's indices,
  or found again by the forward); one np.bincount per chunk sums them where windows overlap
  (in float64, in output order), windows with no input tap (index -1) pass nothing.
- avg: the gradient over the divisor, spread back separably: along the columns, one strided add
  per kernel column, then along the rows, one per kernel row (pool._axis_taps: only the taps that
  read the input).
"""
from __future__ import annotations

import numpy as np

from ..._config import config
from ..._geometry import PoolSpec
from . import _workspace
from ._threads import parallel_items
from .pool import _axis_taps, _item_budget, divisor_factors, max_pool2d


def _chunks(planes: int, plane_bytes: int) -> list[tuple[int, int]]:
    """(p0, p1) runs of planes whose scratch fits a work item's budget (one plane at least)."""
    if plane_bytes > config.workspace_bytes // max(1, config.num_threads):
        raise MemoryError(f"the gradient of pooling one plane needs {plane_bytes} bytes of workspace, more than "
                          f"the cap of {config.workspace_bytes} bytes per thread (gpuconv.set_workspace_limit)")
    chunk = max(1, _item_budget() // plane_bytes)
    return [(p0, min(planes, p0 + chunk)) for p0 in range(0, planes, chunk)]


def max_pool2d_input(grad: np.ndarray, x: np.ndarray, indices, spec: PoolSpec) -> np.ndarray:
    if indices is None:
        indices = max_pool2d(x, spec, True)[1]
    planes, plane, outputs = spec.n * spec.c, spec.h * spec.w, spec.oh * spec.ow
    flat_grad, flat_index = grad.reshape(planes, outputs), indices.reshape(planes, outputs)
    dx = np.empty((planes, plane), dtype=grad.dtype)
    chunks = _chunks(planes, 8 * (2 * outputs + plane))

    def run(item: int) -> None:
        p0, p1 = chunks[item]
        (bins,) = _workspace.arrays((((p1 - p0), outputs), np.int64), slot="pool")
        # bin of plane p's index i: p * plane + i; -1 goes to one spare bin past the end
        np.add(flat_index[p0:p1], (np.arange(p1 - p0) * plane)[:, None], out=bins)
        bins[flat_index[p0:p1] < 0] = (p1 - p0) * plane
        sums = np.bincount(bins.ravel(), weights=flat_grad[p0:p1].ravel(), minlength=(p1 - p0) * plane + 1)
        np.copyto(dx[p0:p1], sums[:-1].reshape(p1 - p0, plane), casting="unsafe")

    parallel_items(run, len(chunks))
    _workspace.release()
    return dx.reshape(spec.n, spec.c, spec.h, spec.w)


def avg_pool2d_input(grad: np.ndarray, spec: PoolSpec) -> np.ndarray:
    compute = np.dtype(np.float32 if grad.dtype == np.float16 else grad.dtype)
    planes = spec.n * spec.c
    flat_grad = grad.reshape(planes, spec.oh, spec.ow)
    dx = np.empty((planes, spec.h, spec.w), dtype=grad.dtype)
    row_factor, col_factor = divisor_factors(spec)
    divisor = np.multiply.outer(row_factor, col_factor).astype(compute)
    rows = _axis_taps(spec.oh, spec.stride[0], 1, spec.kh, spec.pads[0], spec.h)
    cols = _axis_taps(spec.ow, spec.stride[1], 1, spec.kw, spec.pads[2], spec.w)
    in_place = dx.dtype == compute
    plane_bytes = compute.itemsize * (spec.oh * spec.ow + spec.oh * spec.w + (0 if in_place else spec.h * spec.w))
    chunks = _chunks(planes, plane_bytes)

    def run(item: int) -> None:
        p0, p1 = chunks[item]
        scaled, spread, result = _workspace.arrays(
            ((p1 - p0, spec.oh, spec.ow), compute), ((p1 - p0, spec.oh, spec.w), compute),
            ((p1 - p0, spec.h, spec.w) if not in_place else (0,), compute), slot="pool")
        if in_place:
            result = dx[p0:p1]
        np.divide(flat_grad[p0:p1], divisor, out=scaled)
        spread.fill(0)
        for _, out_cols, in_cols in cols:
            target = spread[..., in_cols]
            np.add(target, scaled[..., out_cols], out=target)
        result.fill(0)
        for _, out_rows, in_rows in rows:
            target = result[:, in_rows]
            np.add(target, spread[:, out_rows], out=target)
        if not in_place:
            np.copyto(dx[p0:p1], result, casting="unsafe")

    parallel_items(run, len(chunks))
    _workspace.release()
    return dx.reshape(spec.n, spec.c, spec.h, spec.w)
