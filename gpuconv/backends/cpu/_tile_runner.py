"""Run a convolution tile by tile over its kernel taps' input windows, and store each tile's
result into the output: the loop im2col.py and direct.py share (shifted.py shares store).

A tile is (images n0:n1, output rows r0:r1), planned by _tiles.plan within the workspace cap;
its windows are _tap_windows.TileWindows, gathered into a per-thread workspace buffer.
"""
from __future__ import annotations

import math

import numpy as np

from ..._geometry import ConvSpec
from . import _tiles, _workspace
from ._tap_windows import tap_windows
from ._threads import parallel_items
from ._views import view_as


def for_each_tile(x: np.ndarray, bias, spec: ConvSpec, out: np.ndarray, compute: np.dtype, name: str,
                  scratch: tuple[int, ...], body, unpadded_ok: bool = False) -> None:
    """Plans the tiles and runs them over the threads: body(tile, result, scratch) computes
    the tile's result (images, groups, filters per group, rows * grid_w) from its windows
    (_tap_windows.TileWindows), with a scratch array of shape (images, *scratch, rows * grid_w).
    result is the output itself where the grid is the output's and the dtypes agree, else a
    buffer that is stored into the output (+ bias) afterwards. unpadded_ok: body only calls
    the windows' copy_all."""
    windows = tap_windows(spec, unpadded_ok)
    g, fg = spec.groups, spec.filters_per_group
    in_place = windows.unpadded and out.dtype == compute

    def tile_bytes(images: int, rows: int) -> int:
        length = rows * windows.grid_w
        per_image = (math.prod(scratch) + (0 if in_place else spec.f)) * length
        return compute.itemsize * (math.prod(windows.gather_shape(images, rows)) + images * per_image) + 8 * 64

    plan = _tiles.plan(spec, tile_bytes, name, key=(windows.unpadded, in_place, compute.itemsize, scratch))

    def run_tile(i: int) -> None:
        n0, n1, r0, r1 = plan.tiles[i]
        nt, rows = n1 - n0, r1 - r0
        length = rows * windows.grid_w
        gathered, result, work = _workspace.arrays(
            (windows.gather_shape(nt, rows), compute), ((nt, g, fg, 0 if in_place else length), compute),
            ((nt, *scratch, length), compute))
        target = out[n0:n1, :, r0:r1]
        if in_place:
            result = view_as(target, (nt, g, fg, length))  # a tile has whole output rows
        body(windows.load(x, n0, n1, r0, rows, gathered), result, work)
        store(view_as(result, (nt, spec.f, rows, windows.grid_w)), bias, None if in_place else target)

    parallel_items(run_tile, len(plan.tiles), plan.threads)
    _workspace.release()


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
