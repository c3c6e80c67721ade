"""conv2d by im2col: per tile, copy every kernel tap's window into a column matrix and
multiply it by the weights with one BLAS matmul per group.

Tile = (images n0:n1, output rows r0:r1); for_each_tile plans and runs them (for direct.py
too). Each tap's window over the tile is one contiguous slice per (image, channel)
(_windows.py), so the column matrix is built with one strided copy per stride phase (one in
all for unpadded windows); when the output grid is the output itself (unpadded windows) the
matmul writes straight into the output.
Runs every shape (all strides, dilations, groups, padding modes). A pointwise convolution
(1x1, stride 1, no padding) of a C-contiguous input needs no column matrix at all.
"""
from __future__ import annotations

import math

import numpy as np

from ..._config import config
from ..._geometry import ConvSpec
from . import _blas, _tiles, _workspace
from ._threads import parallel_items
from ._windows import windows as windows_of

NAME = "im2col"


def applicable(spec: ConvSpec) -> str | None:
    """None: this algorithm runs every convolution."""
    return None


def for_each_tile(x: np.ndarray, bias, spec: ConvSpec, out: np.ndarray, compute: np.dtype, name: str,
                  scratch: tuple[int, ...], body, unpadded_ok: bool = False) -> None:
    """Plans the tiles and runs them over the threads: body(tile, result, scratch) computes
    the tile's result (images, groups, filters per group, rows * grid_w) from its windows
    (_windows.TileWindows), with a scratch array of shape (images, *scratch, rows * grid_w).
    result is the output itself where the grid is the output's and the dtypes agree, else a
    buffer that is stored into the output (+ bias) afterwards. unpadded_ok: body only calls
    the windows' copy_all."""
    windows = windows_of(spec, unpadded_ok)
    g, fg = spec.groups, spec.f // spec.groups
    in_place = windows.unpadded and out.dtype == compute

    def tile_bytes(images: int, rows: int) -> int:
        length = rows * windows.grid_w
        per_image = (math.prod(scratch) + (0 if in_place else spec.f)) * length
        return compute.itemsize * (math.prod(windows.slab_shape(images, rows)) + images * per_image) + 8 * 64

    plan = _tiles.plan(spec, tile_bytes, name, key=(windows.unpadded, in_place, compute.itemsize, scratch))

    def run_tile(i: int) -> None:
        n0, n1, r0, r1 = plan.tiles[i]
        nt, rows = n1 - n0, r1 - r0
        length = rows * windows.grid_w
        slab, result, work = _workspace.arrays(
            (windows.slab_shape(nt, rows), compute), ((nt, g, fg, 0 if in_place else length), compute),
            ((nt, *scratch, length), compute))
        target = out[n0:n1, :, r0:r1]
        if in_place:
            result = view_as(target, (nt, g, fg, length))  # a tile has whole output rows
        body(windows.load(x, n0, n1, r0, rows, slab), result, work)
        store(view_as(result, (nt, spec.f, rows, windows.grid_w)), bias, None if in_place else target)

    parallel_items(run_tile, len(plan.tiles), plan.threads)
    _workspace.release()


def conv2d(x: np.ndarray, wmat: np.ndarray, bias, spec: ConvSpec, out: np.ndarray) -> None:
    """out (n, f, oh, ow) = conv of x; wmat is (groups, f/groups, c/groups*kh*kw) in the compute dtype."""
    if is_pointwise(spec) and x.dtype == wmat.dtype and x.flags.c_contiguous:
        # The column matrix is the input itself: one batched matmul, on BLAS's threads.
        g = spec.groups
        with _blas.limit(config.num_threads):
            np.matmul(wmat, view_as(x, (spec.n, g, spec.c // g, spec.h * spec.w)),
                      out=view_as(out, (spec.n, g, spec.f // g, spec.oh * spec.ow)))
        store(out, bias, None)
        return
    taps = spec.kh * spec.kw

    def body(tile, result, cols):
        tile.clear_spare(cols)
        tile.copy_all(cols)
        nt, g, _, length = result.shape
        np.matmul(wmat, cols.reshape(nt, g, wmat.shape[2], length), out=result)

    for_each_tile(x, bias, spec, out, wmat.dtype, NAME, (spec.c, taps), body, unpadded_ok=True)


def is_pointwise(spec: ConvSpec) -> bool:
    """A 1x1 kernel at stride 1 without padding: each output pixel reads only its own input pixel."""
    return spec.kh == spec.kw == 1 and spec.stride == (1, 1) and spec.pads == (0, 0, 0, 0)


def store(result: np.ndarray, bias, out: np.ndarray | None) -> None:
    """out (n, f, rows, width) = result (n, f, rows, grid_w)[..., :width] (+ bias per output
    channel), cast to out's dtype; out None: result is the output itself. result is
    contiguous per (image, channel): the bias goes on it as a whole (adding it while copying
    short output rows is twice as slow), then one copy with merged axes."""
    n, f, rows, grid_w = result.shape
    if bias is not None:
        flat = view_as(result, (n, f, rows * grid_w))
        np.add(flat, bias[:, None], out=flat)
    if out is None:
        return
    target = view_as(out, (n * f, rows, out.shape[3]))  # out's (n, f) merge: a tile has every channel
    target[...] = view_as(result, (n * f, rows, grid_w))[..., :out.shape[3]]


def view_as(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """a reshaped without copying (a write through it must reach a); raises if impossible."""
    view = a.view()
    view.shape = shape
    return view
