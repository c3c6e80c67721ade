"""How a windowed op (conv, pooling) splits one spatial axis into chunks: pure arithmetic, no dask.

Along an axis of `size` input positions, padded by `before`/`after`, output o reads the input
positions [o*stride - before, o*stride - before + span) (span = dilation*(kernel-1) + 1), padding
where they leave [0, size). Output chunk j = outputs [o_j, o_j+1) starts its input chunk at
b_j = o_j*stride - before + offset, a stride-aligned boundary: its windows then read `offset`
positions of the chunk before (`lead`) and span - stride - offset of the chunk after (`lag`), and
padding only at the global edges. offset = the op's own leading pad makes b_j = o_j*stride, so
output chunks are the input's divided by the stride ("same" convolutions keep the chunks).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """What one output chunk reads from its block (its input chunk with the borrowed positions):
    block positions [start, stop), which are input positions [origin, origin + stop - start),
    padded by `before`/`after` positions."""

    start: int
    stop: int
    before: int
    after: int
    n_out: int
    origin: int


@dataclass(frozen=True)
class AxisPlan:
    size: int
    before: int
    after: int
    span: int
    stride: int
    offset: int
    out_bounds: tuple[int, ...]  # 0 = o_0 < o_1 < ... < o_J = number of outputs

    @property
    def depth(self) -> tuple[int, int]:
        """(lead, lag): positions a block borrows from the chunk before and after it (none when the
        axis is one chunk)."""
        if len(self.out_bounds) == 2:
            return (0, 0)
        return (self.offset, max(0, self.span - self.stride - self.offset))

    @property
    def in_bounds(self) -> tuple[int, ...]:
        """Input chunk boundaries: 0, b_1, ..., size."""
        inner = tuple(o * self.stride - self.before + self.offset for o in self.out_bounds[1:-1])
        return (0, *inner, self.size)

    @property
    def in_chunks(self) -> tuple[int, ...]:
        return _sizes(self.in_bounds)

    @property
    def out_chunks(self) -> tuple[int, ...]:
        return _sizes(self.out_bounds)

    def window(self, j: int) -> Window:
        o0, o1 = self.out_bounds[j], self.out_bounds[j + 1]
        lo = o0 * self.stride - self.before  # first input position output chunk j reads
        hi = (o1 - 1) * self.stride - self.before + self.span  # one past its last
        block_start = self.in_bounds[j] - (self.depth[0] if j else 0)
        start, stop = max(lo, 0), min(hi, self.size)
        # pooling's ceil_mode windows may run past the padding; they read nothing there
        return Window(start - block_start, stop - block_start, max(0, -lo), min(self.after, max(0, hi - self.size)),
                      o1 - o0, start)


def _sizes(bounds):
    return tuple(b - a for a, b in zip(bounds, bounds[1:]))


def plan_axis(chunks, before: int, after: int, span: int, stride: int, n_out: int, offset: int) -> AxisPlan:
    """Output chunks that follow the input's chunks as closely as stride alignment allows.

    Each existing input boundary c becomes the output boundary nearest to (c + before - offset) /
    stride; boundaries that would leave an input chunk smaller than what its neighbours borrow (or
    empty), or an output chunk empty, are dropped, merging those chunks with their neighbours."""
    size = sum(chunks)
    minimum = max(offset, span - stride - offset, 1)
    bounds, last_in = [0], 0
    position = 0
    for c in chunks[:-1]:
        position += c
        o = (position + before - offset + stride // 2) // stride
        b = o * stride - before + offset
        if bounds[-1] < o < n_out and b - last_in >= minimum and size - b >= minimum:
            bounds.append(o)
            last_in = b
    bounds.append(n_out)
    return AxisPlan(size, before, after, span, stride, offset, tuple(bounds))


def group_chunks(chunks, group_size: int) -> tuple[int, ...]:
    """Channel chunks that hold whole groups: each boundary rounded to the nearest multiple of
    group_size (dropping duplicates). group_size = C merges every chunk into one."""
    total = sum(chunks)
    bounds, position = [0], 0
    for c in chunks[:-1]:
        position += c
        b = (position + group_size // 2) // group_size * group_size
        if bounds[-1] < b < total:
            bounds.append(b)
    bounds.append(total)
    return _sizes(bounds)
