"""Gather padded, stride-phased input slabs for one tile of a convolution.

A conv with stride s reads padded input positions o*s + k*d. Splitting the padded input
into s phases (positions p, p + s, p + 2s, ...) turns every kernel tap into a plain
shift inside one phase, so a tap's window over a whole tile of rows is ONE contiguous
1-D slice of a flattened phase plane. Output columns are computed on a "wide" grid of
`phase_w` columns per row; the columns past the output width are discarded. Padding of
every mode is applied while gathering, through index maps (source position of every
padded position, -1 for zeros); the input is never padded whole.
"""
from __future__ import annotations

import numpy as np

from .pad import index_map


def source_map(size: int, before: int, after: int, mode: str, length: int) -> np.ndarray:
    """Source index of padded positions 0 .. length-1 (position 0 = `before` pixels before the
    input); positions past the padded extent only feed discarded outputs and read zeros (-1)."""
    padded = index_map(size, before, after, mode)
    out = np.full(max(length, padded.size), -1, dtype=np.intp)
    out[:padded.size] = padded
    return out[:length]


def tap_phases(kernel: int, dilation: int, stride: int) -> list[tuple[int, int]]:
    """(phase, shift) of each kernel tap: tap k reads phase (k*d) % s at offset (k*d) // s."""
    return [((k * dilation) % stride, (k * dilation) // stride) for k in range(kernel)]


class Phases:
    """spec's padded input split into row_step x col_step phases: phase (p, q) holds the padded
    positions (p + i*row_step, q + j*col_step), `width` columns per row; fill() reads padded
    rows 0 .. length-1 at most."""

    def __init__(self, spec, row_step: int, col_step: int, length: int, width: int):
        top, bottom, left, right = spec.pads
        self.top, self.row_step = top, row_step
        self.row_src = source_map(spec.h, top, bottom, spec.padding_mode, length)
        self.gathers = [PhaseGather(spec.w, source_map(spec.w, left, right, spec.padding_mode,
                                                       q + col_step * width)[q::col_step], q - left, col_step)
                        for q in range(col_step)]

    def fill(self, x: np.ndarray, first: int, count: int, plane) -> None:
        """plane(p, q) = `count` rows of phase (p, q) of x's padded images, from padded row first + p."""
        for p in range(self.row_step):
            start = first + p
            rsrc = self.row_src[start:start + count * self.row_step:self.row_step]
            for q, gather in enumerate(self.gathers):
                gather.fill(x, rsrc, start - self.top, self.row_step, plane(p, q))


def _interior(count: int, first: int, step: int, size: int) -> tuple[int, int]:
    """[i0, i1): the positions i < count whose natural source first + i*step lies in [0, size)
    (every padding mode maps those to themselves)."""
    i0 = max(0, -(first // step) if first < 0 else 0)
    i1 = min(count, (size - 1 - first) // step + 1) if size - 1 - first >= 0 else 0
    return (i0, i1) if i1 > i0 else (0, 0)


class PhaseGather:
    """Fills planes out[..., i, j] = x[..., row_src[i], col_src[j]] (0 where a source is -1) for
    one column phase: col_src[j] == col_first + j*col_step wherever that lies inside x."""

    def __init__(self, width: int, col_src: np.ndarray, col_first: int, col_step: int):
        self.col_src, self.col_first, self.col_step = col_src, col_first, col_step
        self.j0, self.j1 = _interior(col_src.size, col_first, col_step, width)
        border = np.r_[0:self.j0, self.j1:col_src.size]
        src = col_src[border]
        self.zero_cols = [slice(int(a), int(b) + 1) for a, b in _runs(border[src < 0])]
        self.copy_cols, self.copy_src = border[src >= 0], src[src >= 0]

    def fill(self, x: np.ndarray, row_src: np.ndarray, row_first: int, row_step: int, out: np.ndarray) -> None:
        i0, i1 = _interior(row_src.size, row_first, row_step, x.shape[-2])
        if i1 > i0:
            inside = x[..., row_first + i0 * row_step:row_first + (i1 - 1) * row_step + 1:row_step, :]
            self._fill_columns(inside, out[..., i0:i1, :])
        for i in (*range(i0), *range(i1, row_src.size)):
            if row_src[i] < 0:
                out[..., i, :] = 0
            else:
                self._fill_columns(x[..., row_src[i]:row_src[i] + 1, :], out[..., i:i + 1, :])

    def _fill_columns(self, rows: np.ndarray, out: np.ndarray) -> None:
        """out[..., j] = rows[..., col_src[j]] (0 where it is -1) for every column j."""
        j0, j1, step = self.j0, self.j1, self.col_step
        cs = self.col_first + j0 * step
        out[..., j0:j1] = rows[..., cs:cs + (j1 - j0 - 1) * step + 1:step]
        for cols in self.zero_cols:
            out[..., cols] = 0
        if self.copy_cols.size:
            out[..., self.copy_cols] = rows[..., self.copy_src]


def _runs(sorted_ints: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive integers as (first, last)."""
    if sorted_ints.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_ints) != 1)
    starts = np.r_[sorted_ints[0], sorted_ints[breaks + 1]]
    ends = np.r_[sorted_ints[breaks], sorted_ints[-1]]
    return list(zip(starts.tolist(), ends.tolist()))
