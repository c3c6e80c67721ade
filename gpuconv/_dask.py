"""The public ops on dask arrays: a lazy dask array out, each chunk computed by a gpuconv backend.

Every op is checked at the call, eagerly: the eager op itself runs on a stand-in for x with an
empty batch (same channels, height and width, same array type), which validates every argument
and gives the result's dtype without computing anything. Then:

- spatial axes: output chunks follow x's chunks, moved to stride-aligned boundaries; each output
  chunk's block carries what its windows read of the neighbouring blocks (_dask_plan), through
  _dask_halo.map_halo, and runs the backend on a per-chunk spec whose pads are the global ones
  where the chunk touches a global edge and none elsewhere. conv2d's reflect and replicate modes
  pad there too when the edge chunks hold what the padding mirrors; circular (and shorter edge
  chunks) pad the whole array once (dask.array.pad) and then convolve without padding.
- channels: merged into chunks of whole groups for conv2d (one chunk when groups=1), kept for
  pooling, padding and depthwise convolution; batch chunks are always kept.
- backend: the one named by backend= / use_backend / GPUCONV_BACKEND, else the chunks' array
  type's ("numpy" for NumPy chunks, "cuda" for CuPy chunks); resolved here, sent by name.
"""
from __future__ import annotations

import dataclasses
import math

import dask.array as da
import numpy as np
from dask.array.utils import meta_from_array

from . import _api, _precision, _signal
from . import _geometry as geometry
from ._dask_halo import map_halo
from ._dask_plan import AxisPlan, group_chunks, plan_axis
from ._validate import array_module, as_array, check_ndim
from .backends import get_backend, is_cupy_array, requested_backend

# pad2d's and conv2d's mode names -> numpy.pad's
_NUMPY_PAD_MODES = {"constant": "constant", "zeros": "constant", "reflect": "reflect", "replicate": "edge",
                    "circular": "wrap"}


# ---- the ops (called by _api's shared functions: arrays in a 2-D layout, ndim=1 for a 1-D op's) -----
def conv(x, w, bias, stride, padding, dilation, groups, padding_mode, algorithm, precision, backend, ndim):
    x4, unbatched = _batched(x)
    empty = _api._conv(_stand_in(x4), w, bias, stride, padding, dilation, groups, padding_mode, algorithm, precision,
                       backend, ndim)
    if x4.size == 0:
        return _unbatch(_from_eager(empty), unbatched)
    name, precision = _backend_name(x4, backend), _precision.resolve(precision)
    w = as_array(w, "w").astype(empty.dtype, copy=False)
    bias = None if bias is None else as_array(bias, "bias").astype(empty.dtype, copy=False)
    spec = geometry.conv_spec(x4.shape, w.shape, stride, padding, dilation, groups, padding_mode, ndim)
    offsets = spec.pads[::2]
    x4, spec, row_chunks, col_chunks = _pad_split_axes(x4.astype(empty.dtype), spec)
    rows, cols = _spatial_plans(spec, row_chunks, col_chunks, spec.kh, spec.kw, offsets)
    cg, fg = spec.channels_per_group, spec.filters_per_group
    channel_chunks = group_chunks(x4.chunks[1], cg)
    _check_algorithm(name, algorithm, spec, rows, cols, channel_chunks, x4.chunks[0])
    out = map_halo(
        _conv_block, x4.rechunk({1: channel_chunks, 2: rows.in_chunks, 3: cols.in_chunks}),
        depth=[_borrowed(rows, cols)],
        chunks=(x4.chunks[0], tuple(c // cg * fg for c in channel_chunks), rows.out_chunks, cols.out_chunks),
        meta=meta_from_array(x4, ndim=4, dtype=empty.dtype),
        w=w, bias=bias, spec=spec, rows=rows, cols=cols, channel_bounds=_bounds(channel_chunks),
        backend=name, algorithm=algorithm, precision=precision)
    return _unbatch(out, unbatched)


def max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, backend, ndim):
    x4, unbatched = _batched(x)
    empty = _api._max_pool(_stand_in(x4), x4.dtype, kernel_size, stride, padding, dilation, ceil_mode,
                           return_indices, backend, ndim)
    if x4.size == 0:
        result = tuple(map(_from_eager, empty)) if return_indices else _from_eager(empty)
    else:
        spec = geometry.pool_spec(x4.shape, kernel_size, stride, padding, dilation, ceil_mode, ndim=ndim)
        result = _pool(x4, spec, "max_indices" if return_indices else "max", _backend_name(x4, backend))
    if return_indices:
        return tuple(_unbatch(r, unbatched) for r in result)
    return _unbatch(result, unbatched)


def avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, backend, ndim):
    x4, unbatched = _batched(x)
    empty = _api._avg_pool(_stand_in(x4), x4.dtype, kernel_size, stride, padding, ceil_mode, count_include_pad,
                           divisor_override, backend, ndim)
    if x4.size == 0:
        return _unbatch(_from_eager(empty), unbatched)
    spec = geometry.pool_spec(x4.shape, kernel_size, stride, padding, 1, ceil_mode, count_include_pad,
                              divisor_override, ndim)
    return _unbatch(_pool(x4.astype(empty.dtype), spec, "avg", _backend_name(x4, backend)), unbatched)


def pad2d(x, padding, mode, value, *, backend):
    """dask.array.pad with gpuconv's checks, modes and dtype: pure data movement, so no backend
    kernel runs; the padding joins the edge chunks (no thin chunks of padding)."""
    check_known(x, "x")
    check_ndim(x, "x", (2, 3, 4), "(H, W), (C, H, W) or (N, C, H, W)")
    empty = _api.pad2d(_stand_in(x if x.ndim > 2 else x[None]), padding, mode, value, backend=backend)
    if x.size == 0:
        return _from_eager(_api.pad2d(_stand_in(x, whole=True), padding, mode, value, backend=backend))
    _backend_name(x, backend)
    spec = geometry.pad_spec((1, 1) + x.shape[-2:], padding, mode, value)
    t, b, l, r = spec.pads
    out = global_pad(x.astype(empty.dtype), spec.pads, mode, spec.value)
    return out.rechunk({x.ndim - 2: _grow_edges(x.chunks[-2], t, b), x.ndim - 1: _grow_edges(x.chunks[-1], l, r)})


def correlate(image, kernel, mode, boundary, fillvalue, backend, flip):
    """scipy.signal's correlate2d / convolve2d: the image padded once by its boundary rule (its
    rows and columns gathered by _signal's own index maps), then a 'valid' conv2d."""
    check_known(image, "image")
    kernel = _api._on_device_of(image._meta, as_array(kernel, "kernel"), "kernel")
    layout = _signal.plan(image, kernel, mode, boundary, fillvalue, flip)
    padded = image.astype(layout.dtype)[layout.rows.clip(0)][:, layout.cols.clip(0)]
    fill = np.asarray(layout.fillvalue, layout.dtype)
    for outside in ((layout.rows < 0)[:, None], (layout.cols < 0)[None, :]):  # (H, 1) and (1, W): no full mask
        if outside.any():
            padded = da.where(outside, fill, padded)
    return conv(padded[None, None], layout.weights, None, 1, 0, 1, 1, "zeros", "auto", None, backend, 2)[0, 0]


# ---- chunk work (runs on the workers; module-level functions so that they pickle) --------------------
def _conv_block(block, *, w, bias, spec, rows, cols, channel_bounds, backend, algorithm, precision, block_id):
    x, local = _local(block, spec, rows, cols, block_id)
    cg, fg = spec.channels_per_group, spec.filters_per_group
    g0, g1 = channel_bounds[block_id[1]] // cg, channel_bounds[block_id[1] + 1] // cg
    local = dataclasses.replace(local, f=(g1 - g0) * fg, groups=g1 - g0)
    w = _api._on_device_of(x, w[g0 * fg:g1 * fg], "w")
    bias = None if bias is None else _api._on_device_of(x, bias[g0 * fg:g1 * fg], "bias")
    return get_backend(backend).conv2d(x, w, bias, local, algorithm, precision=precision)


def _pool_block(block, *, op, spec, rows, cols, backend, block_id):
    x, local = _local(block, spec, rows, cols, block_id)
    chosen = get_backend(backend)
    if op == "avg":
        return chosen.avg_pool2d(x, local)
    if op == "max":
        return chosen.max_pool2d(x, local, False)
    values, indices = chosen.max_pool2d(x, local, True)
    # local flat index in the chunk's window -> flat index in the whole H*W plane (-1 stays -1)
    row0, col0 = rows.window(block_id[-2]).origin, cols.window(block_id[-1]).origin
    r, c = divmod(indices, local.w)
    indices = array_module(indices).where(indices < 0, -1, (r + row0) * spec.w + (c + col0))
    # one block carries both results (int64 indices < 2**53 are exact in float64), so the window
    # pass runs once; _pool splits them again
    return array_module(values).stack([values.astype(np.float64), indices.astype(np.float64)])


def _local(block, spec, rows: AxisPlan, cols: AxisPlan, block_id):
    """The part of a block (with its halo) that one output chunk reads, and that chunk's spec
    (block_id ends with the block's row and column indices)."""
    r, q = rows.window(block_id[-2]), cols.window(block_id[-1])
    x = block[:, :, r.start:r.stop, q.start:q.stop]
    local = dataclasses.replace(spec, n=x.shape[0], c=x.shape[1], h=x.shape[2], w=x.shape[3],
                                pads=(r.before, r.after, q.before, q.after), oh=r.n_out, ow=q.n_out)
    return x, local


# ---- graph building ----------------------------------------------------------------------------------
def _pool(x4, spec, op, backend):
    rows, cols = _spatial_plans(spec, x4.chunks[2], x4.chunks[3], spec.kh, spec.kw, spec.pads[::2])
    out_chunks = (x4.chunks[0], x4.chunks[1], rows.out_chunks, cols.out_chunks)
    both = op == "max_indices"
    out = map_halo(
        _pool_block, x4.rechunk({2: rows.in_chunks, 3: cols.in_chunks}), depth=[_borrowed(rows, cols)],
        chunks=((2,),) + out_chunks if both else out_chunks, new_axis=[0] if both else (),
        meta=meta_from_array(x4, ndim=5 if both else 4, dtype=np.float64 if both else x4.dtype),
        op=op, spec=spec, rows=rows, cols=cols, backend=backend)
    if both:
        return out[0].astype(x4.dtype), out[1].astype(np.int64)
    return out


def _pad_split_axes(x4, spec):
    """A reflect/replicate/circular conv's padding applied to the whole array on the axes where
    the edge blocks cannot pad themselves, and the spec of the conv that remains. An axis of one
    chunk pads itself (in the block, with no copy), and so does a reflect or replicate axis whose
    edge chunks hold what their padding mirrors; circular reads the opposite edge, so a split
    circular axis, like an edge chunk too short to mirror, is padded here once, as a dask array.
    Also (row chunks, column chunks), that padding joined to the edge chunks."""
    rows, cols = x4.chunks[2:]
    if spec.padding_mode == "zeros" or spec.pads == (0, 0, 0, 0):
        return x4, spec, rows, cols
    pads = (*_global_pads(rows, spec.pads[:2], spec.stride[0], spec.padding_mode),
            *_global_pads(cols, spec.pads[2:], spec.stride[1], spec.padding_mode))
    if not any(pads):
        return x4, spec, rows, cols
    x4 = global_pad(x4, pads, spec.padding_mode)
    kept = tuple(p - q for p, q in zip(spec.pads, pads))
    spec = dataclasses.replace(spec, h=x4.shape[2], w=x4.shape[3], pads=kept,
                               padding_mode=spec.padding_mode if any(kept) else "zeros")
    return x4, spec, _grow_edges(rows, *pads[:2]), _grow_edges(cols, *pads[2:])


def _global_pads(chunks, pads, stride, mode) -> tuple[int, int]:
    """One axis's (before, after) padding to apply to the whole array: none where the edge blocks
    pad themselves. Planning moves a chunk boundary by less than the stride, so an edge chunk
    longer than pad + stride still holds the pad + 1 positions a reflection reads."""
    if len(chunks) == 1 or (mode != "circular" and min(chunks[0], chunks[-1]) > max(pads) + stride):
        return (0, 0)
    return tuple(pads)


def _spatial_plans(spec, row_chunks, col_chunks, kh, kw, offsets):
    """Row and column plans; offsets = the op's leading pads (top, left), which keep a "same"
    op's output chunks where the input's are (stride 1) or at a stride-th of them."""
    t, b, l, r = spec.pads
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    return (plan_axis(row_chunks, t, b, dh * (kh - 1) + 1, sh, spec.oh, offsets[0]),
            plan_axis(col_chunks, l, r, dw * (kw - 1) + 1, sw, spec.ow, offsets[1]))


def _borrowed(rows: AxisPlan, cols: AxisPlan) -> dict:
    """map_halo's depth: each block borrows what its windows read of the blocks before and after
    it; the global edges get nothing (their padding is the per-chunk spec's, or was applied before)."""
    return {2: rows.depth, 3: cols.depth}


def global_pad(x, pads, mode, value=0.0):
    """x padded on its last two axes with pad2d's / conv2d's padding mode, as one lazy dask array."""
    t, b, l, r = pads
    width = ((0, 0),) * (x.ndim - 2) + ((t, b), (l, r))
    mode = _NUMPY_PAD_MODES[mode]
    return da.pad(x, width, mode=mode, **({"constant_values": value} if mode == "constant" else {}))


def _check_algorithm(backend, algorithm, spec, rows, cols, channel_chunks, batch_chunks):
    """An explicit algorithm must run every chunk: checked here, at the call, for each distinct
    chunk geometry (a few: edge and inner chunks), not when the graph runs."""
    if algorithm == "auto":
        return
    chosen = get_backend(backend)
    if algorithm not in chosen.algorithms:
        raise ValueError(f"algorithm={algorithm!r}: the {backend} backend offers {chosen.algorithms}")
    cg, fg = spec.channels_per_group, spec.filters_per_group
    for r in {dataclasses.replace(rows.window(j), origin=0) for j in range(len(rows.out_chunks))}:
        for q in {dataclasses.replace(cols.window(j), origin=0) for j in range(len(cols.out_chunks))}:
            for c in set(channel_chunks):
                for n in set(batch_chunks):
                    local = dataclasses.replace(spec, n=n, c=c, f=c // cg * fg, groups=c // cg,
                                                h=r.stop - r.start, w=q.stop - q.start,
                                                pads=(r.before, r.after, q.before, q.after), oh=r.n_out, ow=q.n_out)
                    if algorithm not in chosen.applicable_algorithms(local):
                        raise ValueError(f"algorithm={algorithm!r} cannot run on every chunk of this dask array on "
                                         f"the {backend} backend (a chunk of {n}x{c}x{local.h}x{local.w} with pads "
                                         f"{local.pads}); use algorithm='auto' or other chunks")


# ---- helpers -----------------------------------------------------------------------------------------
def _batched(x, name="x"):
    """x as (N, C, H, W), and whether it was unbatched."""
    check_known(x, name)
    check_ndim(x, name, (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
    return (x[None], True) if x.ndim == 3 else (x, False)


def check_known(x, name):
    """x itself, if every chunk's size is known."""
    if any(math.isnan(s) for s in x.shape):
        raise ValueError(f"{name} is a dask array of unknown chunk sizes (shape {x.shape}): gpuconv needs every "
                         f"chunk's size to plan halos; call {name}.compute_chunk_sizes() first")
    return x


def _stand_in(x, whole=False):
    """An array of x's chunk type and dtype with x's shape, its batch (first axis) emptied unless whole."""
    shape = x.shape if whole else (0,) + x.shape[1:]
    return np.empty_like(x._meta, shape=shape)


def _from_eager(result):
    return da.from_array(result, chunks=result.shape, asarray=False)


def _unbatch(out, unbatched):
    return out[0] if unbatched else out


def _backend_name(x, backend) -> str:
    """The backend every chunk runs on, checked here so that a bad name fails at the call."""
    name = requested_backend(backend) or ("cuda" if is_cupy_array(x._meta) else "numpy")
    get_backend(name)
    return name


def _grow_edges(chunks, before, after):
    """Chunks of an axis padded by before/after, the padding joined to the edge chunks."""
    grown = list(chunks)
    grown[0] += before
    grown[-1] += after
    return tuple(grown)


def _bounds(chunks):
    return tuple(np.cumsum((0,) + tuple(chunks)).tolist())
