"""conv2d's input gradient by col2im, for every shape (any stride, dilation, groups, pads).

Per tile (images n0:n1, gradient rows r0:r1) of the gradient (n, f, oh, ow):
1. cols = W^T @ grad, one GEMM per group: (cg*kh*kw, fg) @ (fg, rows*ow), the gradient read in
   place (float16 arrives as float32: conv_grad.py);
2. each kernel tap (a, b) adds its columns into the tile's block of input rows, one strided add
   over the outputs whose tap reads inside the input (taps that read padding pass nothing);
3. the block is added into dx.
Blocks of neighbouring row tiles overlap by the kernel's halo, so row tiles run in two waves
(even tiles, then odd ones; tile rows are at least the halo, so tiles of one wave never
overlap), and tiles are cut for a fixed number of threads (_tiles.FIXED_PARTITION_THREADS):
every element sums its terms in the same order for every thread count.

Against the correlation of the gradient with the flipped weights (conv_grad.py), col2im
multiplies no inserted zeros at stride > 1 and copies cg*kh*kw columns per gradient pixel
instead of fg*kh*kw per input pixel: it wins where C/groups is small or the stride is > 1.
"""
from __future__ import annotations

import numpy as np

from ..._geometry import ConvSpec
from . import _tiles, _workspace
from ._threads import parallel_items
from ._views import view_as
from .pool import tap_outputs

NAME = "col2im"


def row_step(spec: ConvSpec) -> int:
    """Rows per tile (a multiple of) that keep the input blocks of row tiles two apart disjoint:
    tile k's block ends before tile k+2's starts when rows * stride + stride >= the kernel's span."""
    span = (spec.kh - 1) * spec.dilation[0] + 1
    return max(1, -(-span // spec.stride[0]) - 1)


def block_rows(spec: ConvSpec, r0: int, r1: int) -> tuple[int, int]:
    """[first, end) of the input rows that gradient rows r0:r1 reach."""
    (sh, dh), top = (spec.stride[0], spec.dilation[0]), spec.pads[0]
    first = max(0, r0 * sh - top)
    end = min(spec.h, (r1 - 1) * sh - top + (spec.kh - 1) * dh + 1)
    return first, max(first, end)


def plan(spec: ConvSpec, itemsize: int) -> _tiles.Plan:
    """Tiles of the gradient (images, rows), cut for a fixed number of threads."""
    span = (spec.kh - 1) * spec.dilation[0] + 1

    def tile_bytes(images: int, rows: int) -> int:
        block = min(spec.h, (rows - 1) * spec.stride[0] + span)
        return itemsize * images * spec.c * (spec.taps * rows * spec.ow + block * spec.w) + 2 * 64

    return _tiles.plan(spec, tile_bytes, NAME, key=itemsize, row_step=row_step(spec),
                       partition_threads=_tiles.FIXED_PARTITION_THREADS)


def conv2d_input(grad: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """dx (n, c, h, w) of a zero-padded conv2d (spec) from its output gradient grad (n, f, oh, ow),
    both float32 or both float64."""
    g, fg, depth = spec.groups, spec.filters_per_group, spec.reduction
    kh, kw = spec.kh, spec.kw
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    # W^T per group: (g, cg*kh*kw, fg)
    wt = np.ascontiguousarray(w.reshape(g, fg, depth).transpose(0, 2, 1))
    grad = np.ascontiguousarray(grad)
    compute = grad.dtype
    tiling = plan(spec, compute.itemsize)
    dx = np.zeros((spec.n, spec.c, spec.h, spec.w), dtype=compute)
    col_taps = [(b, tap_outputs(spec.ow, sw, b * dw - spec.pads[2], spec.w)) for b in range(kw)]

    def run_tile(i: int) -> None:
        n0, n1, r0, r1 = tiling.tiles[i]
        nt, rows = n1 - n0, r1 - r0
        length = rows * spec.ow
        first, end = block_rows(spec, r0, r1)
        cols, block = _workspace.arrays(((nt, g, depth, length), compute), ((nt, spec.c, end - first, spec.w), compute))
        source = grad[n0:n1, :, r0:r1]
        if fg == 1:  # an outer product: NumPy's matmul over an inner dimension of 1 is 5-10x slower
            np.multiply(wt, view_as(source, (nt, g, 1, length)), out=cols)
        else:
            np.matmul(wt, view_as(source, (nt, g, fg, length)), out=cols)
        taps = view_as(cols, (nt, spec.c, kh, kw, rows, spec.ow))
        block.fill(0)
        for a in range(kh):
            out_rows = tap_outputs(rows, sh, r0 * sh + a * dh - spec.pads[0], spec.h)
            if out_rows.stop <= out_rows.start:
                continue
            row0 = (r0 + out_rows.start) * sh + a * dh - spec.pads[0] - first
            in_rows = slice(row0, row0 + (out_rows.stop - out_rows.start - 1) * sh + 1, sh)
            for b, out_cols in col_taps:
                if out_cols.stop <= out_cols.start:
                    continue
                col0 = out_cols.start * sw + b * dw - spec.pads[2]
                in_cols = slice(col0, col0 + (out_cols.stop - out_cols.start - 1) * sw + 1, sw)
                target = block[:, :, in_rows, in_cols]
                np.add(target, taps[:, :, a, b, out_rows, out_cols], out=target)
        region = dx[n0:n1, :, first:end]
        np.add(region, block, out=region)

    for items in waves(tiling.tiles):
        parallel_items(lambda k: run_tile(items[k]), len(items), tiling.threads)
    _workspace.release()
    return dx


def waves(tiles) -> tuple[list[int], list[int]]:
    """Indices of the even and of the odd row tiles of each image (tiles of whole images: all even)."""
    tile_rows = tiles[0][3] - tiles[0][2]
    return tuple([i for i, tile in enumerate(tiles) if (tile[2] // tile_rows) % 2 == wave] for wave in (0, 1))
