"""conv2d by im2col: per tile, copy every kernel tap's window into a column matrix and
multiply it by the weights with one BLAS matmul per group.

Tile = (images n0:n1, output rows r0:r1). The tile's input is gathered into stride-phase
planes (_slab.py), so each tap's window is one contiguous slice and the column matrix is
built with kh*kw plain copies. Columns use the wide grid of `phase_w` columns per output
row; the extra columns are computed and dropped when the result is stored.
Runs every shape (all strides, dilations, groups, padding modes).
"""
from __future__ import annotations

import numpy as np

from ..._geometry import ConvSpec
from . import _slab, _tiles, _workspace
from ._threads import parallel_items

NAME = "im2col"


def applicable(spec: ConvSpec) -> str | None:
    """None: this algorithm runs every convolution."""
    return None


class Geometry:
    """Phase-plane sizes of a tile with `rows` output rows."""

    def __init__(self, spec: ConvSpec):
        (self.sh, self.sw), (self.dh, self.dw) = spec.stride, spec.dilation
        self.row_taps = _slab.tap_phases(spec.kh, self.dh, self.sh)
        self.col_taps = _slab.tap_phases(spec.kw, self.dw, self.sw)
        self.phase_w = spec.ow + (spec.kw - 1) * self.dw // self.sw
        self.extra_rows = (spec.kh - 1) * self.dh // self.sh

    def phase_rows(self, rows: int) -> int:
        return rows + self.extra_rows


def tile_bytes(spec: ConvSpec, itemsize: int, images: int, rows: int) -> int:
    geo = Geometry(spec)
    plane = geo.phase_rows(rows) * geo.phase_w
    slab = spec.c * geo.sh * geo.sw * plane
    cols = spec.c * spec.kh * spec.kw * rows * geo.phase_w
    result = spec.f * rows * geo.phase_w
    return itemsize * images * (slab + cols + result)


def gather_phases(spec: ConvSpec, geo: Geometry):
    """gather(x, n0, n1, r0, slab): the padded stride-phase planes of images n0:n1 for output
    rows from r0 into slab (images, c, sh, sw, phase rows * phase_w)."""
    top, bottom, left, right = spec.pads
    row_src = _slab.source_map(spec.h, top, bottom, spec.padding_mode, (spec.oh + geo.extra_rows + 1) * geo.sh)
    gathers = [_slab.PhaseGather(spec.w, _slab.source_map(spec.w, left, right, spec.padding_mode,
                                                          q + geo.sw * geo.phase_w)[q::geo.sw], q - left, geo.sw)
               for q in range(geo.sw)]

    def gather(x: np.ndarray, n0: int, n1: int, r0: int, slab: np.ndarray) -> None:
        prow = slab.shape[-1] // geo.phase_w
        for p in range(geo.sh):
            first = r0 * geo.sh + p
            rsrc = row_src[first:first + prow * geo.sh:geo.sh]
            for q, phase in enumerate(gathers):
                phase.fill(x[n0:n1], rsrc, first - top, geo.sh, slab[:, :, p, q].reshape(n1 - n0, spec.c, prow, geo.phase_w))

    return gather


def conv2d(x: np.ndarray, wmat: np.ndarray, bias, spec: ConvSpec, out: np.ndarray) -> None:
    """out (n, f, oh, ow) = conv of x; wmat is (groups, f/groups, c/groups*kh*kw) in the compute dtype."""
    compute = wmat.dtype
    geo = Geometry(spec)
    plan = _tiles.plan(spec, lambda n, r: tile_bytes(spec, compute.itemsize, n, r), NAME)
    gather = gather_phases(spec, geo)
    g, kg = spec.groups, wmat.shape[2]
    taps = [(a, b) for a in range(spec.kh) for b in range(spec.kw)]

    def run_tile(i: int) -> None:
        n0, n1, r0, r1 = plan.tiles[i]
        nt, rows = n1 - n0, r1 - r0
        length = rows * geo.phase_w
        slab, cols, res = _workspace.arrays(
            ((nt, spec.c, geo.sh, geo.sw, geo.phase_rows(rows) * geo.phase_w), compute),
            ((nt, spec.c, spec.kh * spec.kw, length), compute),
            ((nt, g, wmat.shape[1], length), compute))
        gather(x, n0, n1, r0, slab)
        # Past the last valid column of the last row a window would leave the slab; those
        # columns are discarded: the copies stop short and the rest is zeroed.
        valid = length - (geo.phase_w - spec.ow)
        cols[..., valid:] = 0
        for t, (a, b) in enumerate(taps):
            (p, da), (q, db) = geo.row_taps[a], geo.col_taps[b]
            start = da * geo.phase_w + db
            cols[:, :, t, :valid] = slab[:, :, p, q, start:start + valid]
        np.matmul(wmat, cols.reshape(nt, g, kg, length), out=res)
        store(res.reshape(nt, spec.f, rows, geo.phase_w), bias, out[n0:n1, :, r0:r1])

    parallel_items(run_tile, len(plan.tiles), plan.threads)
    _workspace.release()


def store(result: np.ndarray, bias, out: np.ndarray) -> None:
    """out (n, f, rows, width) = result (n, f, rows, wide)[..., :width] (+ bias per output
    channel), cast to out's dtype. result is contiguous: the bias goes on it as a whole (adding
    it while copying short output rows is twice as slow), then one copy with merged axes."""
    n, f, rows, wide = result.shape
    if bias is not None:
        flat = result.reshape(n, f, rows * wide)
        np.add(flat, bias[:, None], out=flat)
    target = out.view()
    target.shape = (n * f, rows, out.shape[3])  # out's (n, f) always merge: a tile has every channel
    target[...] = result.reshape(n * f, rows, wide)[..., :out.shape[3]]
