"""How a windowed op (conv, pooling) splits one spatial axis into chunks: pure arithmetic, no dask.

Along an axis of `size` input positions, padded by `before`/`after`, output o reads the padded
positions [o*stride, o*stride + span) (span = dilation*(kernel-1) + 1), i.e. the input positions
[o*stride - before, o*stride - before + span). Output chunk j = outputs [o_j, o_j+1) therefore
reads the input [o_j*stride - before, o_j+1*stride - before + span - stride): if input chunk j
starts at o_j*stride - before (a stride-aligned boundary), it needs its own positions plus the
first `halo = span - stride` positions of chunk j+1 and nothing of chunk j-1. Padding exists
only where a chunk's window leaves the input, i.e. at the global edges.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """What one output chunk reads from its input block (which starts at the chunk's input boundary
    and carries the halo): block positions [start, stop), padded by `before`/`after` positions."""

    start: int
    stop: int
    before: int
    after: int
    n_out: int


@dataclass(frozen=True)
class AxisPlan:
    size: int
    before: int
    after: int
    span: int
    stride: int
    out_bounds: tuple[int, ...]  # 0 = o_0 < o_1 < ... < o_J = number of outputs

    @property
    def halo(self) -> int:
        return max(0, self.span - self.stride)

    @property
    def in_bounds(self) -> tuple[int, ...]:
        """Input chunk boundaries: 0, o_1*stride - before, ..., size."""
        inner = tuple(o * self.stride - self.before for o in self.out_bounds[1:-1])
        return (0, *inner, self.size)

    @property
    def in_chunks(self) -> tuple[int, ...]:
        return _sizes(self.in_bounds)

    @property
    def out_chunks(self) -> tuple[int, ...]:
        return _sizes(self.out_bounds)

    @property
    def depth(self) -> int:
        """Positions each block borrows from the next one (none when the axis is one chunk)."""
        return self.halo if len(self.out_bounds) > 2 else 0

    def window(self, j: int) -> Window:
        o0, o1 = self.out_bounds[j], self.out_bounds[j + 1]
        lo = o0 * self.stride - self.before  # first input position output chunk j reads
        hi = (o1 - 1) * self.stride - self.before + self.span  # one past its last
        block_start = self.in_bounds[j]
        start, stop = max(lo, 0), min(hi, self.size)
        # pooling's ceil_mode windows may run past the padding; they read nothing there
        return Window(start - block_start, stop - block_start, max(0, -lo), min(self.after, max(0, hi - self.size)),
                      o1 - o0)


def _sizes(bounds):
    return tuple(b - a for a, b in zip(bounds, bounds[1:]))


def plan_axis(chunks, before: int, after: int, span: int, stride: int, n_out: int) -> AxisPlan:
    """Output chunks that follow the input's chunks as closely as stride alignment allows.

    Each existing input boundary c becomes the output boundary nearest to (c + before) / stride;
    boundaries that would leave an input chunk smaller than the halo (or empty), or an output
    chunk empty, are dropped, merging those chunks with their neighbours."""
    size = sum(chunks)
    minimum = max(span - stride, 1)
    bounds, last_in = [0], 0
    position = 0
    for c in chunks[:-1]:
        position += c
        o = (position + before + stride // 2) // stride
        b = o * stride - before
        if bounds[-1] < o < n_out and b - last_in >= minimum and size - b >= minimum:
            bounds.append(o)
            last_in = b
    bounds.append(n_out)
    return AxisPlan(size, before, after, span, stride, tuple(bounds))


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
