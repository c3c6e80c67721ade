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


class _Geometry:
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
    geo = _Geometry(spec)
    plane = geo.phase_rows(rows) * geo.phase_w
    slab = spec.c * geo.sh * geo.sw * plane
    cols = spec.c * spec.kh * spec.kw * rows * geo.phase_w
    result = spec.f * rows * geo.phase_w
    return itemsize * images * (slab + cols + result)


def conv2d(x: np.ndarray, wmat: np.ndarray, bias, spec: ConvSpec, out: np.ndarray) -> None:
    """out (n, f, oh, ow) = conv of x; wmat is (groups, f/groups, c/groups*kh*kw) in the compute dtype."""
    compute = wmat.dtype
    geo = _Geometry(spec)
    plan = _tiles.plan(spec, lambda n, r: tile_bytes(spec, compute.itemsize, n, r), NAME)
    top, bottom, left, right = spec.pads
    rows_total = (spec.oh + geo.extra_rows + 1) * geo.sh
    row_src = _slab.source_map(spec.h, top, bottom, spec.padding_mode, rows_total)
    gathers = [_slab.PhaseGather(spec.w, _slab.source_map(spec.w, left, right, spec.padding_mode,
                                                          q + geo.sw * geo.phase_w)[q::geo.sw], q - left, geo.sw)
               for q in range(geo.sw)]
    g, kg = spec.groups, wmat.shape[2]
    taps = [(a, b) for a in range(spec.kh) for b in range(spec.kw)]

    def run_tile(i: int) -> None:
        n0, n1, r0, r1 = plan.tiles[i]
        nt, rows = n1 - n0, r1 - r0
        prow = geo.phase_rows(rows)
        length = rows * geo.phase_w
        slab, cols, res = _workspace.arrays(
            ((nt, spec.c, geo.sh, geo.sw, prow * geo.phase_w), compute),
            ((nt, spec.c, spec.kh * spec.kw, length), compute),
            ((nt, g, wmat.shape[1], length), compute))
        for p in range(geo.sh):
            first = r0 * geo.sh + p
            rsrc = row_src[first:first + prow * geo.sh:geo.sh]
            for q, gather in enumerate(gathers):
                gather.fill(x[n0:n1], rsrc, first - top, geo.sh, slab[:, :, p, q].reshape(nt, spec.c, prow, geo.phase_w))
        # Past the last valid column of the last row a window would leave the slab; those
        # columns are discarded, so the copies stop short and the rest is zeroed (leftover
        # scratch there could overflow in the matmul and raise floating-point warnings).
        valid = length - (geo.phase_w - spec.ow)
        for t, (a, b) in enumerate(taps):
            (p, da), (q, db) = geo.row_taps[a], geo.col_taps[b]
            start = da * geo.phase_w + db
            cols[:, :, t, :valid] = slab[:, :, p, q, start:start + valid]
        cols[..., valid:] = 0
        np.matmul(wmat, cols.reshape(nt, g, kg, length), out=res)
        store(res.reshape(nt, spec.f, rows, geo.phase_w)[..., :spec.ow], bias, out[n0:n1, :, r0:r1])

    parallel_items(run_tile, len(plan.tiles), plan.threads)
    _workspace.release()


def store(result: np.ndarray, bias, out: np.ndarray) -> None:
    """out = result (+ bias per output channel), cast to out's dtype."""
    if bias is None:
        np.copyto(out, result, casting="unsafe")
    else:
        np.add(result, bias[:, None, None], out=out, casting="unsafe")
