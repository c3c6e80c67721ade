"""conv2d by im2col: per tile, copy every kernel tap's window into a column matrix and
multiply it by the weights with one BLAS matmul per group.

Tile = (images n0:n1, output rows r0:r1). Each tap's window over the tile is one
contiguous slice per (image, channel) (_windows.py), so the column matrix is built with
kh*kw plain copies; when the output grid is the output itself (native windows) the matmul
writes straight into the output.
Runs every shape (all strides, dilations, groups, padding modes).
"""
from __future__ import annotations

import math

import numpy as np

from ..._geometry import ConvSpec
from . import _tiles, _workspace
from ._threads import parallel_items
from ._windows import Windows

NAME = "im2col"


def applicable(spec: ConvSpec) -> str | None:
    """None: this algorithm runs every convolution."""
    return None


def tile_bytes(spec: ConvSpec, itemsize: int, images: int, rows: int, windows: Windows) -> int:
    slab = math.prod(windows.slab_shape(images, rows)) if not windows.native else 0
    length = rows * windows.grid_w
    cols = spec.c * spec.kh * spec.kw * length
    result = spec.f * length
    return itemsize * (slab + images * (cols + result)) + 3 * 64


def conv2d(x: np.ndarray, wmat: np.ndarray, bias, spec: ConvSpec, out: np.ndarray) -> None:
    """out (n, f, oh, ow) = conv of x; wmat is (groups, f/groups, c/groups*kh*kw) in the compute dtype."""
    compute = wmat.dtype
    windows = Windows(spec, x)
    plan = _tiles.plan(spec, lambda n, r: tile_bytes(spec, compute.itemsize, n, r, windows), NAME)
    g, fg, kg = spec.groups, spec.f // spec.groups, wmat.shape[2]
    direct_out = windows.native and out.dtype == compute  # the grid is the output's: matmul into it

    def run_tile(i: int) -> None:
        n0, n1, r0, r1 = plan.tiles[i]
        nt, rows = n1 - n0, r1 - r0
        length = rows * windows.grid_w
        slab, cols, res = _workspace.arrays(
            (windows.slab_shape(nt, rows), compute), ((nt, spec.c, spec.kh * spec.kw, length), compute),
            ((nt, g, fg, 0 if direct_out else length), compute))
        tile = windows.load(x, n0, n1, r0, rows, slab)
        for t in range(spec.kh * spec.kw):
            tile.apply(t, _copy, cols[:, :, t])
        target = out[n0:n1, :, r0:r1]
        if direct_out:
            res = view_as(target, (nt, g, fg, length))  # a tile has whole output rows
        np.matmul(wmat, cols.reshape(nt, g, kg, length), out=res)
        store(res.reshape(nt, spec.f, rows, windows.grid_w), bias, target)

    parallel_items(run_tile, len(plan.tiles), plan.threads)
    _workspace.release()


def _copy(window: np.ndarray, part: np.ndarray) -> None:
    np.copyto(part, window)


def store(result: np.ndarray, bias, out: np.ndarray) -> None:
    """out (n, f, rows, width) = result (n, f, rows, grid_w)[..., :width] (+ bias per output
    channel), cast to out's dtype; result may be out itself. result is contiguous per
    (image, channel): the bias goes on it as a whole (adding it while copying short output
    rows is twice as slow), then one copy with merged axes."""
    n, f, rows, grid_w = result.shape
    if bias is not None:
        flat = view_as(result, (n, f, rows * grid_w))
        np.add(flat, bias[:, None], out=flat)
    if np.shares_memory(result, out):
        return
    target = view_as(out, (n * f, rows, out.shape[3]))  # out's (n, f) merge: a tile has every channel
    target[...] = view_as(result, (n * f, rows, grid_w))[..., :out.shape[3]]


def view_as(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """a reshaped without copying (a write through it must reach a); raises if impossible."""
    view = a.view()
    view.shape = shape
    return view
