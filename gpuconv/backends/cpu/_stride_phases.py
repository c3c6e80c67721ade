"""A convolution's padded input split into stride phases, gathered tile by tile.

A conv with stride s reads padded input positions o*s + k*d. Splitting the padded input
into s phases (positions p, p + s, p + 2s, ...) turns every kernel tap into a plain
shift inside one phase, so a tap's window over a whole tile of rows is ONE contiguous
1-D slice of a flattened phase plane. Only the phases some tap reads are gathered (a
stride larger than the dilated kernel skips the others), so the gathered planes hold
at most taps x the tile's outputs. Output columns are computed on a "wide" grid of `phase_w`
columns per row; the columns past the output width are discarded. Padding of every mode is
applied while gathering: the interior of a phase is one strided slice of the input, and
only the positions in the padding (the border) have their sources listed. The input is
never padded whole.
"""
from __future__ import annotations

import numpy as np


def source_index(i, size: int, mode: str):
    """Input index read at position i of a padded axis (i < 0: before the input; scalar or
    array); -1 for a constant pad. reflect mirrors without repeating the edge (pads < size),
    replicate repeats it, circular wraps (pads <= size)."""
    if mode in ("zeros", "constant"):
        return np.where((i >= 0) & (i < size), i, -1)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    if mode == "circular":
        return i % size
    if mode == "reflect":
        i = np.abs(i)
        return np.where(i >= size, 2 * (size - 1) - i, i)
    raise ValueError(f"unknown padding mode {mode!r}")


def _padded_source(positions, size: int, before: int, after: int, mode: str):
    """source_index of padded positions (position 0 = `before` pixels before the input);
    positions past the padded extent only feed discarded outputs and read zeros (-1)."""
    return np.where(positions < before + size + after, source_index(positions - before, size, mode), -1)


def tap_phases(kernel: int, dilation: int, stride: int) -> list[tuple[int, int]]:
    """(phase, shift) of each kernel tap: tap k reads phase (k*d) % s at offset (k*d) // s."""
    return [((k * dilation) % stride, (k * dilation) // stride) for k in range(kernel)]


class Phases:
    """spec's padded input split into row_step x col_step phases: phase (p, q) holds the padded
    positions (p + i*row_step, q + j*col_step), `width` columns per row. Only the phases in
    `rows` x `cols` (default: all) are gathered, slot (i, j) holding phase (rows[i], cols[j])."""

    def __init__(self, spec, row_step: int, col_step: int, width: int, rows=None, cols=None):
        top, bottom, left, right = spec.pads
        self.rows = tuple(range(row_step) if rows is None else rows)
        self.row_step, self.h, self.top = row_step, spec.h, top
        # sources of the padded rows above and below the input
        self.above = source_index(np.arange(-top, 0), spec.h, spec.padding_mode)
        self.below = source_index(np.arange(spec.h, spec.h + bottom), spec.h, spec.padding_mode)
        self.gathers = [PhaseGather(spec.w, left, right, spec.padding_mode, q, col_step, width)
                        for q in (range(col_step) if cols is None else cols)]

    @property
    def nbytes(self) -> int:
        return self.above.nbytes + self.below.nbytes + sum(g.nbytes for g in self.gathers) + 256

    def _row_source(self, position: int) -> int:
        """Input row of padded row `position`; -1 for a zero row (constant padding, or past the
        padded extent: such rows feed discarded outputs only)."""
        i = position - self.top
        if i < 0:
            return int(self.above[position])
        if i < self.h:
            return i
        return int(self.below[i - self.h]) if i - self.h < self.below.size else -1

    def fill(self, x: np.ndarray, first: int, count: int, plane) -> None:
        """plane(i, j) = `count` rows of phase slot (i, j) of x's padded images, from padded row
        first + rows[i]."""
        for i, p in enumerate(self.rows):
            start = first + p
            i0, i1 = _interior(count, start - self.top, self.row_step, self.h)
            border = [(k, self._row_source(start + k * self.row_step)) for k in (*range(i0), *range(i1, count))]
            for j, gather in enumerate(self.gathers):
                gather.fill(x, i0, i1, start - self.top, self.row_step, border, plane(i, j))


def _interior(count: int, first: int, step: int, size: int) -> tuple[int, int]:
    """[i0, i1): the positions i < count whose natural source first + i*step lies in [0, size)
    (every padding mode maps those to themselves)."""
    i0 = max(0, -(first // step) if first < 0 else 0)
    i1 = min(count, (size - 1 - first) // step + 1) if size - 1 - first >= 0 else 0
    return (i0, i1) if i1 > i0 else (0, 0)


class PhaseGather:
    """Fills planes out[..., i, j] = padded x at (row i of the phase, column q + j*col_step) for
    one column phase q: columns j0 .. j1-1 read x's columns q - left + j*col_step (one strided
    slice); the border columns are listed with their sources (zero runs where there is none)."""

    def __init__(self, size: int, left: int, right: int, mode: str, q: int, col_step: int, width: int):
        self.col_first, self.col_step = q - left, col_step
        self.j0, self.j1 = _interior(width, q - left, col_step, size)
        border = np.r_[0:self.j0, self.j1:width]
        src = _padded_source(q + border * col_step, size, left, right, mode)
        self.zero_cols = [slice(int(a), int(b) + 1) for a, b in _runs(border[src < 0])]
        self.copy_cols, self.copy_src = border[src >= 0], src[src >= 0]

    @property
    def nbytes(self) -> int:
        return self.copy_cols.nbytes + self.copy_src.nbytes + 64 * len(self.zero_cols)

    def fill(self, x: np.ndarray, i0: int, i1: int, row_first: int, row_step: int, border, out: np.ndarray) -> None:
        """Rows i0 .. i1-1 of out from x's rows row_first + i*row_step; the border rows (k, source)
        from their source row (zeros for -1)."""
        if i1 > i0:
            inside = x[..., row_first + i0 * row_step:row_first + (i1 - 1) * row_step + 1:row_step, :]
            self._fill_columns(inside, out[..., i0:i1, :])
        for k, source in border:
            if source < 0:
                out[..., k, :] = 0
            else:
                self._fill_columns(x[..., source:source + 1, :], out[..., k:k + 1, :])

    def _fill_columns(self, rows: np.ndarray, out: np.ndarray) -> None:
        """out[..., j] = rows[..., source of column j] (0 where it has none) for every column j."""
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
