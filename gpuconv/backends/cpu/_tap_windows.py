"""The kernel taps' input windows over one tile of a convolution, each as ONE contiguous
slice per (image, channel), for im2col (copy them) and direct (multiply-accumulate them).

A tile is (images n0:n1, output rows r0:r1); its outputs are laid out on a grid of `grid_w`
columns per row, of which the first `ow` are real. Two sources:

- phased (every shape): the tile's padded input is gathered into stride-phase planes
  (_stride_phases.py) with grid_w = phase_w; tap (a, b) reads phase ((a*dh) % sh, (b*dw) % sw)
  at a flat offset. Only the phases some tap reads are gathered (slots of the planes). The spare
  columns are dropped when the result is stored.
- unpadded (no padding; im2col only, which asks for it): the input itself, grid_w = ow.
  copy_all copies every tap with one strided copy, and the result goes straight into the
  output (no gathered planes, no spare columns). For tall kernels over narrow outputs at
  stride 1 down the rows, it first copies the kw column shifts of the tile's input rows into
  a "stage" (in the planes' place): a tap's window is then ONE contiguous run of the stage,
  where from the input it is `rows` short rows (layer E: 0.15 -> 0.07 ms for the copy).
Reading padded windows as flat shifts of the input rows, zeroing the positions that wrap
around a row end, is shifted.py's method (stride 1, outputs as wide as the input); under
direct's per-tap passes it was measured slower than gathering the planes (layers G and H: 25-30%).
"""
from __future__ import annotations

import numpy as np

from ..._geometry import ConvSpec
from . import _plan_cache, _stride_phases
from ._views import window_view


# Measured on im2col: kernels of 5 rows and outputs 10-28 wide gained 15-110%; 3-row kernels
# and outputs 52-510 wide neither gained nor lost, or lost up to 45% (the stage is one more pass).
STAGE_MIN_KERNEL_ROWS = 5
STAGE_MAX_WIDTH = 32


_tap_windows_cache = _plan_cache.PlanCache(16 << 20, lambda w: w.nbytes)


def tap_windows(spec: ConvSpec, unpadded_ok: bool = False) -> "TapWindows":
    """The (memoised) tap windows of spec; unpadded_ok: the caller only uses copy_all."""
    return _tap_windows_cache.get((spec, unpadded_ok), lambda: TapWindows(spec, unpadded_ok))


class TapWindows:
    """How every kernel tap's window over a tile is read: from stride-phase planes gathered per
    tile (phased), or from the input itself (unpadded). load() gathers one tile."""

    def __init__(self, spec: ConvSpec, unpadded_ok: bool):
        self.spec = spec
        (self.sh, self.sw), (self.dh, self.dw) = spec.stride, spec.dilation
        self.unpadded = unpadded_ok and spec.pads == (0, 0, 0, 0)  # the grid is then the output's own
        self.taps = [(a, b) for a in range(spec.kh) for b in range(spec.kw)]
        if self.unpadded:
            self.grid_w = spec.ow
            self.staged = self.sh == 1 and spec.kh >= STAGE_MIN_KERNEL_ROWS and spec.ow <= STAGE_MAX_WIDTH
            self.extra_rows = (spec.kh - 1) * self.dh if self.staged else 0
            return
        row_phases = _stride_phases.tap_phases(spec.kh, self.dh, self.sh)
        col_phases = _stride_phases.tap_phases(spec.kw, self.dw, self.sw)
        rows, cols = sorted({p for p, _ in row_phases}), sorted({q for q, _ in col_phases})
        # (slot of its phase among the gathered planes, shift) of each tap
        self.row_phases = [(rows.index(p), shift) for p, shift in row_phases]
        self.col_phases = [(cols.index(q), shift) for q, shift in col_phases]
        self.grid_w = spec.ow + (spec.kw - 1) * self.dw // self.sw
        self.extra_rows = (spec.kh - 1) * self.dh // self.sh
        self.phases = _stride_phases.Phases(spec, self.sh, self.sw, self.grid_w, rows, cols)
        self.phase_groups = [(p, q, _progression(self.row_phases, p), _progression(self.col_phases, q))
                             for p in range(len(rows)) for q in range(len(cols))]

    @property
    def nbytes(self) -> int:
        return 1024 + 64 * len(self.taps) + (0 if self.unpadded else self.phases.nbytes)

    def gather_shape(self, images: int, rows: int) -> tuple[int, ...]:
        """Shape of the buffer a tile's input is gathered into: its phase planes (phased), its
        stage (unpadded and staged), () for none."""
        if self.unpadded:
            return (images, self.spec.c, self.spec.kw, rows + self.extra_rows, self.grid_w) if self.staged else ()
        return (images, self.spec.c, len(self.phases.rows), len(self.phases.gathers),
                (rows + self.extra_rows) * self.grid_w)

    def load(self, x: np.ndarray, n0: int, n1: int, r0: int, rows: int, gathered: np.ndarray | None) -> "TileWindows":
        """The windows of tile (images n0:n1, output rows r0:r0+rows), gathered into `gathered`
        (of gather_shape)."""
        if self.unpadded:
            return TileWindows(self, x[n0:n1], r0, rows, gathered)
        prows = rows + self.extra_rows
        self.phases.fill(x[n0:n1], r0 * self.sh, prows,
                         lambda p, q: gathered[:, :, p, q].reshape(n1 - n0, self.spec.c, prows, self.grid_w))
        return TileWindows(self, gathered, r0, rows)


def _progression(phases: list[tuple[int, int]], phase: int):
    """(first tap, tap step, count, first shift, shift step) of the taps that read slot `phase`:
    they form an arithmetic progression, and so do their shifts."""
    taps = [k for k, (p, _) in enumerate(phases) if p == phase]
    if not taps:
        return None
    step = taps[1] - taps[0] if len(taps) > 1 else 1
    shift_step = phases[taps[1]][1] - phases[taps[0]][1] if len(taps) > 1 else 0
    return taps[0], step, len(taps), phases[taps[0]][1], shift_step


class TileWindows:
    """Windows of one loaded tile: apply(t, fn, dst) calls fn(window, part of dst) for tap t,
    window being (images, C, n) and dst (..., rows * grid_w); the rest of dst, the spare
    columns that end the last row of a phased grid, is left alone: clear_spare(dst) zeroes
    those, once per buffer."""

    def __init__(self, windows: TapWindows, source: np.ndarray, r0: int, rows: int, stage: np.ndarray | None = None):
        self.windows, self.source, self.r0, self.rows, self.stage = windows, source, r0, rows, stage
        self.length = rows * windows.grid_w

    def apply(self, t: int, fn, dst: np.ndarray) -> None:
        tw = self.windows
        a, b = tw.taps[t]
        (p, da), (q, db) = tw.row_phases[a], tw.col_phases[b]
        start = da * tw.grid_w + db
        valid = self._valid()
        fn(self.source[:, :, p, q, start:start + valid], dst[..., :valid])

    def _valid(self) -> int:
        # Past the last real column of the last row a phased window would leave the planes.
        return self.length - (self.windows.grid_w - self.windows.spec.ow)

    def copy_all(self, cols: np.ndarray) -> None:
        """cols[:, :, t] = window of tap t for every tap, cols being (images, C, taps, length):
        one strided copy per stride phase, covering all its taps (for an unpadded source, one in all)."""
        tw = self.windows
        spec, grid_w, valid = tw.spec, tw.grid_w, self._valid()
        if tw.unpadded:
            x, first_row = self.source, self.r0 * tw.sh
            sn, sc, sy, sx = x.strides
            if tw.staged:  # stage[:, :, b, y] = input row r0 + y from column b*dw on, every sw-th
                np.copyto(self.stage, window_view(x, first_row * sy, self.stage.shape,
                                                  (sn, sc, tw.dw * sx, sy, tw.sw * sx)))
                tn, tc, tb, ty, _ = self.stage.strides
                views = window_view(self.stage, 0, (*x.shape[:2], spec.kh, spec.kw, self.length),
                                    (tn, tc, tw.dh * ty, tb, self.stage.itemsize))
            else:
                views = window_view(x, first_row * sy, (*x.shape[:2], spec.kh, spec.kw, self.rows, spec.ow),
                                    (sn, sc, tw.dh * sy, tw.dw * sx, tw.sh * sy, tw.sw * sx))
            np.copyto(cols.reshape(views.shape), views)
            return
        grid = cols.reshape(cols.shape[0], cols.shape[1], spec.kh, spec.kw, -1)
        planes = self.source
        n_stride, c_stride, p_stride, q_stride, _ = planes.strides
        item = planes.itemsize
        for p, q, rows, columns in tw.phase_groups:
            if rows is None or columns is None:
                continue
            a0, a_step, a_count, a_shift, a_shift_step = rows
            b0, b_step, b_count, b_shift, b_shift_step = columns
            views = window_view(planes, p * p_stride + q * q_stride + (a_shift * grid_w + b_shift) * item,
                                (planes.shape[0], planes.shape[1], a_count, b_count, valid),
                                (n_stride, c_stride, a_shift_step * grid_w * item, b_shift_step * item, item))
            np.copyto(grid[:, :, a0::a_step, b0::b_step, :valid][:, :, :a_count, :b_count], views)

    def clear_spare(self, dst: np.ndarray) -> None:
        if not self.windows.unpadded:
            dst[..., self._valid():] = 0
