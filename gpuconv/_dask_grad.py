"""gpuconv.grad's ops and conv_transpose2d on dask arrays (the forward ops: _dask.py).

The gradient with respect to the input is computed chunk by chunk of the input: chunk j's block
holds every grad_output element whose window touches the chunk, and the input positions those
windows read (_dask_plan.AxisPlan.grad_window); the backend's gradient over those windows, cut
to the chunk, is the chunk's gradient, so nothing is summed across blocks and the result equals
the eager one. The weight gradient is a sum over the blocks of the forward windows (float32 for
float16 data, then rounded once). As in _dask.py, the eager op checks every argument at the call
on stand-ins with an empty batch, and reflect/replicate/circular convs pad the whole array once
(their input gradient folds the padding back, also once).
"""
from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np
from dask.array.utils import meta_from_array

from . import _api, _backward, grad as eager
from . import _geometry as geometry
from ._dask import (_backend_name, _batched, _bounds, _grow_edges, _local, _spatial_plans, _stand_in, check_known,
                    global_pad)
from ._dask_halo import map_halo
from ._dask_plan import AxisPlan, group_chunks, plan_grad_axis
from ._validate import array_module, as_array, check_bool, check_ndim
from .backends import get_backend, is_dask_array


# ---- the ops (called by gpuconv.grad's and _api's shared functions: 2-D layout, ndim=1 for 1-D ops) ----
def conv_input(input_shape, w, grad_output, stride, padding, dilation, groups, padding_mode, algorithm, backend,
               ndim):
    unbatched = len(input_shape) == 3
    spec = eager._spec(lambda shape: geometry.conv_spec(shape, w.shape, stride, padding, dilation, groups,
                                                        padding_mode, ndim),
                       "input_shape", (1,) * unbatched + input_shape, "x")
    g4 = eager._grad_output(check_known(grad_output, "grad_output"), spec.out_shape, unbatched, _op("conv", ndim), ndim)
    empty = eager._conv_input((0,) + input_shape[-3:], w, _stand_in(g4), stride, padding, dilation, groups,
                              padding_mode, algorithm, backend, ndim)
    dx = _conv_input(g4, w, spec, empty.dtype, algorithm, _backend_name(g4, backend))
    return dx[0] if unbatched else dx


def conv_transpose(x, w, bias, stride, padding, output_padding, groups, dilation, algorithm, backend, ndim):
    x4, unbatched = _batched(x, "x")
    empty = _api._conv_transpose(_stand_in(x4), w, bias, stride, padding, output_padding, groups, dilation, algorithm,
                                 backend, ndim)
    spec = geometry.conv_transpose_spec(x4.shape, w.shape, stride, padding, output_padding, groups, dilation, ndim)
    if (spec.oh, spec.ow) != x4.shape[2:]:  # output_padding >= stride: rows no input element reaches
        x4 = global_pad(x4, (0, spec.oh - x4.shape[2], 0, spec.ow - x4.shape[3]), "constant")
    bias = None if bias is None else _api._on_device_of(x4._meta, as_array(bias, "bias"), "bias")
    out = _conv_input(x4, as_array(w, "w"), spec, empty.dtype, algorithm, _backend_name(x4, backend), bias)
    return out[0] if unbatched else out


def conv_weight(x, weight_shape, grad_output, stride, padding, dilation, groups, padding_mode, algorithm, backend,
                ndim):
    x4, unbatched = _batched(_dask(x, "x"), "x")
    spec = eager._spec(lambda shape: geometry.conv_spec(x4.shape, shape, stride, padding, dilation, groups,
                                                        padding_mode, ndim), "weight_shape", weight_shape, "w")
    g4 = eager._grad_output(check_known(_dask(grad_output, "grad_output"), "grad_output"), spec.out_shape, unbatched,
                            _op("conv", ndim), ndim)
    empty = eager._conv_weight(_stand_in(x4), weight_shape, _stand_in(g4), stride, padding, dilation, groups,
                               padding_mode, algorithm, backend, ndim)
    name = _backend_name(x4, backend)
    # float16 partial sums would lose what the eager op keeps: sum in float32, round once
    compute = np.promote_types(empty.dtype, np.float32)
    x4, g4 = x4.astype(compute), g4.astype(compute)
    row_chunks, col_chunks, offsets = x4.chunks[2], x4.chunks[3], spec.pads[::2]
    bspec = _backward.backend_spec(spec)
    if bspec.pads != spec.pads:  # reflect/replicate/circular: the conv of the padded input
        t, b, l, r = spec.pads
        x4 = global_pad(x4, spec.pads, spec.padding_mode)
        row_chunks, col_chunks = _grow_edges(row_chunks, t, b), _grow_edges(col_chunks, l, r)
    rows, cols = _spatial_plans(bspec, row_chunks, col_chunks, spec.kh, spec.kw, offsets)
    cg, fg = spec.channels_per_group, spec.filters_per_group
    c_chunks = group_chunks(x4.chunks[1], cg)
    f_chunks = tuple(c // cg * fg for c in c_chunks)
    parts = map_halo(
        _conv_weight_block, x4.rechunk({1: c_chunks, 2: rows.in_chunks, 3: cols.in_chunks}),
        g4.rechunk({0: x4.chunks[0], 1: f_chunks, 2: rows.out_chunks, 3: cols.out_chunks}),
        depth=[{2: rows.depth, 3: cols.depth}, 0], new_axis=[2],
        chunks=((1,) * x4.numblocks[0], f_chunks, (spec.reduction,), (1,) * len(rows.out_chunks),
                (1,) * len(cols.out_chunks)),
        meta=meta_from_array(x4, ndim=5, dtype=compute),
        spec=bspec, rows=rows, cols=cols, channel_bounds=_bounds(c_chunks), backend=name, algorithm=algorithm)
    return parts.sum(axis=(0, 3, 4)).reshape(empty.shape).astype(empty.dtype)


def max_pool_input(grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices, backend, ndim):
    x4, unbatched = _batched(_dask(x, "x"), "x")
    g = check_known(_dask(grad_output, "grad_output"), "grad_output")
    idx = None if indices is None else check_known(_dask(indices, "indices"), "indices")
    spec = geometry.pool_spec(x4.shape, kernel_size, stride, padding, dilation, check_bool(ceil_mode, "ceil_mode"),
                              ndim=ndim)
    g4 = eager._grad_output(g, spec.out_shape, unbatched, _op("max_pool", ndim), ndim)
    if idx is not None and idx.shape != g.shape:
        raise ValueError(f"indices has shape {idx.shape}: expected grad_output's shape {g.shape}")
    empty = eager._max_pool_input(_stand_in(g4), _stand_in(x4), kernel_size, stride, padding, dilation, ceil_mode,
                                  None if idx is None else _stand_in(g4).astype(idx.dtype), backend, ndim)
    g4 = g4.astype(empty.dtype)
    rows, cols = _grad_plans(spec, g4.chunks[2], g4.chunks[3], spec.kh, spec.kw, spec.pads[::2])
    arrays = [g4, x4.astype(empty.dtype).rechunk({0: g4.chunks[0], 1: g4.chunks[1]})]
    if idx is not None:
        arrays.append((idx[None] if unbatched else idx).astype(np.int64).rechunk(g4.chunks))
    dx = _grad_blocks(_max_pool_input_block, arrays, rows, cols, g4.chunks[:2], spec=spec,
                      backend=_backend_name(x4, backend))
    return dx[0] if unbatched else dx


def avg_pool_input(grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                   divisor_override, backend, ndim):
    unbatched = len(input_shape) == 3
    spec = eager._spec(lambda shape: geometry.pool_spec(shape, kernel_size, stride, padding, 1,
                                                        check_bool(ceil_mode, "ceil_mode"),
                                                        check_bool(count_include_pad, "count_include_pad"),
                                                        divisor_override, ndim),
                       "input_shape", (1,) * unbatched + input_shape, "x")
    g4 = eager._grad_output(check_known(grad_output, "grad_output"), spec.out_shape, unbatched, _op("avg_pool", ndim),
                            ndim)
    empty = eager._avg_pool_input(_stand_in(g4), (0,) + input_shape[-3:], kernel_size, stride, padding, ceil_mode,
                                  count_include_pad, divisor_override, backend, ndim)
    g4 = g4.astype(empty.dtype)
    rows, cols = _grad_plans(spec, g4.chunks[2], g4.chunks[3], spec.kh, spec.kw, spec.pads[::2])
    dx = _grad_blocks(_avg_pool_input_block, [g4], rows, cols, g4.chunks[:2], spec=spec,
                      backend=_backend_name(g4, backend))
    return dx[0] if unbatched else dx


def pad2d_input(grad_output, padding, mode, *, backend):
    g = check_known(grad_output, "grad_output")
    check_ndim(g, "grad_output", (2, 3, 4), "(H, W), (C, H, W) or (N, C, H, W)")
    try:
        empty = eager.pad2d_input(_stand_in(g if g.ndim > 2 else g[None]), padding, mode, backend=backend)
    except ValueError as exc:  # the stand-in has an empty batch: name grad_output's own shape
        raise ValueError(str(exc).replace(str((0,) + g.shape[-3 if g.ndim > 2 else -2:]), str(g.shape))) from None
    _backend_name(g, backend)
    return fold_padding(g.astype(empty.dtype), geometry.explicit_pads(padding, (0, 0), (1, 1), (1, 1), (1, 1)), mode)


def _op(name, ndim):
    return f"{name}{ndim}d"


# ---- chunk work --------------------------------------------------------------------------------------
def _conv_input_block(block, *, w, spec, rows, cols, channel_bounds, backend, algorithm, block_id):
    r, q = rows.grad_window(block_id[-2]), cols.grad_window(block_id[-1])
    g = block[:, :, r.g, q.g]
    cg, fg = spec.channels_per_group, spec.filters_per_group
    g0, g1 = channel_bounds[block_id[1]] // fg, channel_bounds[block_id[1] + 1] // fg
    local = dataclasses.replace(_local_spec(spec, g, r, q), c=(g1 - g0) * cg, f=(g1 - g0) * fg, groups=g1 - g0)
    w = _api._on_device_of(g, w[g0 * fg:g1 * fg], "w")
    return _place(get_backend(backend).conv2d_input(g, w, local, algorithm), r, q)


def _conv_weight_block(x_block, g, *, spec, rows, cols, channel_bounds, backend, algorithm, block_id):
    x, local = _local(x_block, spec, rows, cols, block_id)
    cg, fg = spec.channels_per_group, spec.filters_per_group
    g0, g1 = channel_bounds[block_id[1]] // cg, channel_bounds[block_id[1] + 1] // cg
    local = dataclasses.replace(local, f=(g1 - g0) * fg, groups=g1 - g0)
    dw = get_backend(backend).conv2d_weight(x, g, local, algorithm)
    return dw.reshape(1, dw.shape[0], -1, 1, 1)


def _max_pool_input_block(g_block, x_block, idx_block=None, *, spec, rows, cols, backend, block_id):
    r, q = rows.grad_window(block_id[-2]), cols.grad_window(block_id[-1])
    g = g_block[:, :, r.g, q.g]
    x = x_block[:, :, r.x.start:r.x.stop, q.x.start:q.x.stop]
    local = _local_spec(spec, g, r, q)
    indices = None
    if idx_block is not None:  # flat in the whole plane -> flat in the window's input
        idx = idx_block[:, :, r.g, q.g]
        row, col = idx // spec.w - r.x.origin, idx % spec.w - q.x.origin
        if ((idx < -1) | ((idx >= 0) & ((row < 0) | (row >= local.h) | (col < 0) | (col >= local.w)))).any():
            raise ValueError("indices hold positions outside their pooling windows: expected max_pool2d's "
                             "return_indices for these arguments (flat within H*W, or -1)")
        indices = array_module(idx).where(idx < 0, -1, row * local.w + col)
    return _place(get_backend(backend).max_pool2d_input(g, x, indices, local), r, q)


def _avg_pool_input_block(g_block, *, spec, rows, cols, backend, block_id):
    r, q = rows.grad_window(block_id[-2]), cols.grad_window(block_id[-1])
    g = g_block[:, :, r.g, q.g]
    return _place(get_backend(backend).avg_pool2d_input(g, _local_spec(spec, g, r, q)), r, q)


def _local_spec(spec, g, r, q):
    """The forward op's spec over the windows a gradient block covers (a pooling's channels are its
    grad_output block's; a convolution's are set by the caller)."""
    return dataclasses.replace(spec, n=g.shape[0], c=g.shape[1], h=r.x.stop - r.x.start, w=q.x.stop - q.x.start,
                               pads=(r.x.before, r.x.after, q.x.before, q.x.after), oh=r.x.n_out, ow=q.x.n_out)


def _place(dx, r, q):
    """The rows and columns of a window's gradient that lie in the chunk, zeros where no window
    reached (past the last window, or between windows of a stride larger than the kernel)."""
    part = dx[:, :, r.keep, q.keep]
    if part.shape[2:] == (r.length, q.length):
        return part
    out = array_module(dx).zeros(dx.shape[:2] + (r.length, q.length), dtype=dx.dtype)
    out[:, :, :part.shape[2], :part.shape[3]] = part
    return out


# ---- graph building ----------------------------------------------------------------------------------
def _conv_input(g4, w, spec, dtype, algorithm, backend, bias=None):
    """conv2d's input gradient for grad_output g4 (the whole of conv_transpose2d, with its bias), in
    dtype; float16 is computed in float32 and rounded once at the end, as the eager op."""
    compute = np.promote_types(dtype, np.float32)
    g4, w = g4.astype(compute), w.astype(compute, copy=False)
    bspec = _backward.backend_spec(spec)
    rows, cols = _grad_plans(bspec, g4.chunks[2], g4.chunks[3], spec.kh, spec.kw, spec.pads[::2])
    cg, fg = spec.channels_per_group, spec.filters_per_group
    f_chunks = group_chunks(g4.chunks[1], fg)
    c_chunks = tuple(f // fg * cg for f in f_chunks)
    dx = _grad_blocks(_conv_input_block, [g4.rechunk({1: f_chunks})], rows, cols, (g4.chunks[0], c_chunks),
                      w=w, spec=bspec, channel_bounds=_bounds(f_chunks), backend=backend, algorithm=algorithm)
    if bspec.pads != spec.pads:
        dx = fold_padding(dx, spec.pads, spec.padding_mode)
    if bias is not None:
        dx = dx + bias.astype(compute, copy=False)[:, None, None]
    return dx.astype(dtype)


def _grad_plans(spec, row_chunks, col_chunks, kh, kw, offsets):
    t, b, l, r = spec.pads
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    return (plan_grad_axis(row_chunks, spec.h, t, b, dh * (kh - 1) + 1, sh, offsets[0]),
            plan_grad_axis(col_chunks, spec.w, l, r, dw * (kw - 1) + 1, sw, offsets[1]))


def _grad_blocks(block_fn, arrays, rows: AxisPlan, cols: AxisPlan, lead_chunks, **kwargs):
    """The input gradient, block by block: arrays[0] is grad_output (by output chunks, borrowing
    the outputs whose windows reach each input chunk), arrays[1] if any the forward input (by input
    chunks, borrowing what those windows read), arrays[2] if any the indices (as grad_output)."""
    (g_rows, x_rows), (g_cols, x_cols) = rows.grad_depths, cols.grad_depths
    g_depth = {2: g_rows, 3: g_cols}
    x_depth = {2: x_rows, 3: x_cols}
    depths = [g_depth, x_depth, g_depth][:len(arrays)]
    by_chunks = [{2: rows.out_chunks, 3: cols.out_chunks}, {2: rows.in_chunks, 3: cols.in_chunks},
                 {2: rows.out_chunks, 3: cols.out_chunks}]
    arrays = [a.rechunk(c) for a, c in zip(arrays, by_chunks)]
    return map_halo(block_fn, *arrays, depth=depths, chunks=(*lead_chunks, rows.in_chunks, cols.in_chunks),
                    meta=meta_from_array(arrays[0], ndim=4), rows=rows, cols=cols, **kwargs)


def fold_padding(g, pads, mode: str):
    """The gradient of padding the last two axes by pads (top, bottom, left, right) in `mode`: the
    interior, plus for reflect, replicate and circular every pad position's gradient added onto the
    position it copied (float16 adds in float32, as the eager op)."""
    if mode in ("constant", "zeros"):
        return g[..., pads[0]:g.shape[-2] - pads[1], pads[2]:g.shape[-1] - pads[3]]
    compute = np.promote_types(g.dtype, np.float32)
    rows = _fold_axis(g.astype(compute), g.ndim - 2, pads[0], pads[1], mode)
    return _fold_axis(rows, g.ndim - 1, pads[2], pads[3], mode).astype(g.dtype)


def _fold_axis(g, axis: int, before: int, after: int, mode: str):
    size = g.shape[axis] - before - after

    def part(start, stop, step=1):
        return g[(slice(None),) * axis + (slice(start, stop, step),)]

    top, bottom = part(0, before), part(before + size, before + size + after)
    if mode == "reflect":  # pad position -k copies k, size-1+k copies size-1-k
        pieces = [(before, slice(1, before + 1), part(before - 1, None, -1) if before else top),
                  (after, slice(size - 1 - after, size - 1), part(before + size + after - 1, before + size - 1, -1))]
    elif mode == "replicate":
        pieces = [(before, slice(0, 1), top.sum(axis=axis, keepdims=True)),
                  (after, slice(size - 1, size), bottom.sum(axis=axis, keepdims=True))]
    else:  # circular: pad position -k copies size-k, size-1+k copies k-1
        pieces = [(before, slice(size - before, size), top), (after, slice(0, after), bottom)]
    dx = part(before, before + size)
    at = (slice(None),) * axis
    for count, where, value in pieces:
        if count:
            dx[at + (where,)] = dx[at + (where,)] + value
    return dx


def _dask(a, name):
    """a as a dask array (one chunk if it is not one yet: the other array of the call is one)."""
    return a if is_dask_array(a) else da.from_array(as_array(a, name), chunks=-1, asarray=False)
