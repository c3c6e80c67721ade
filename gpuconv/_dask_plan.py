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

import dataclasses
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
class GradWindow:
    """What the gradient of one input chunk reads: outputs [g.start, g.stop) of its grad_output
    block, the input positions `x` that their windows read (relative to its input block), and the
    rows of that window's gradient that fall in the chunk (`keep`), the chunk's `length` rows."""

    g: slice
    x: Window
    keep: slice
    length: int


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
        """(lead, lag): positions an input block borrows from the chunk before and after it, for
        the op (none when the axis is one chunk)."""
        return (0, 0) if len(self.out_bounds) == 2 else op_depth(self.span, self.stride, self.offset)

    @property
    def grad_depths(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((lead, lag) of grad_output blocks, (lead, lag) of input blocks) for the gradient of input
        chunk j: every output whose window touches the chunk, and every position those windows read."""
        return ((0, 0), (0, 0)) if len(self.out_bounds) == 2 else grad_depth(self.span, self.stride, self.offset)

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
        """What output chunk j reads from its input block."""
        return self._window(self.out_bounds[j], self.out_bounds[j + 1],
                            self.in_bounds[j] - (self.depth[0] if j else 0))

    def grad_window(self, j: int) -> GradWindow:
        """What the gradient of input chunk j reads from its grad_output and input blocks."""
        (lead_g, lag_g), (lead_x, _) = self.grad_depths
        g0 = max(0, self.out_bounds[j] - lead_g)  # where grad_output block j starts
        g1 = min(self.out_bounds[-1], self.out_bounds[j + 1] + lag_g)
        b0, b1 = self.in_bounds[j], self.in_bounds[j + 1]
        x = self._window(g0, g1, max(0, b0 - lead_x))
        last = x.origin + x.stop - x.start  # one past the last input position the windows read
        return GradWindow(slice(0, g1 - g0), x, slice(b0 - x.origin, max(b0, min(last, b1)) - x.origin), b1 - b0)

    def _window(self, o0: int, o1: int, block_start: int) -> Window:
        lo = o0 * self.stride - self.before  # first input position outputs [o0, o1) read
        hi = (o1 - 1) * self.stride - self.before + self.span  # one past their last
        start, stop = max(lo, 0), min(hi, self.size)
        # pooling's ceil_mode windows may run past the padding; they read nothing there
        return Window(start - block_start, stop - block_start, max(0, -lo), min(self.after, max(0, hi - self.size)),
                      o1 - o0, start)


def op_depth(span: int, stride: int, offset: int) -> tuple[int, int]:
    return (offset, max(0, span - stride - offset))


def grad_depth(span: int, stride: int, offset: int) -> tuple[tuple[int, int], tuple[int, int]]:
    # window o reaches b_j from before iff o > o_j - (span - offset) / stride, and reaches below
    # b_j+1 iff o < o_j+1 + offset / stride
    lead, lag = max(0, -(-(span - offset) // stride) - 1), -(-offset // stride)
    return (lead, lag), (offset + lead * stride, max(0, span - stride - offset + lag * stride))


def _sizes(bounds):
    return tuple(b - a for a, b in zip(bounds, bounds[1:]))


def plan_axis(chunks, before: int, after: int, span: int, stride: int, n_out: int, offset: int) -> AxisPlan:
    """Output chunks for the op, following the input's chunks as closely as stride alignment allows.

    Each existing input boundary c becomes the output boundary nearest to (c + before - offset) /
    stride; boundaries that would leave an input chunk smaller than what its neighbours borrow (or
    empty), or an output chunk empty, are dropped, merging those chunks with their neighbours."""
    plan = AxisPlan(sum(chunks), before, after, span, stride, offset, (0, n_out))
    candidates = ((c + before - offset + stride // 2) // stride for c in _inner_bounds(chunks))
    return _choose(plan, candidates, max(*op_depth(span, stride, offset), 1), 1)


def plan_grad_axis(out_chunks, size: int, before: int, after: int, span: int, stride: int, offset: int) -> AxisPlan:
    """Chunks for the op's gradient with respect to its input, following grad_output's chunks: the
    same boundaries, dropped where a grad_output or input chunk would be smaller than what its
    neighbours borrow."""
    plan = AxisPlan(size, before, after, span, stride, offset, (0, sum(out_chunks)))
    g_depth, x_depth = grad_depth(span, stride, offset)
    return _choose(plan, _inner_bounds(out_chunks), max(*x_depth, 1), max(*g_depth, 1))


def _inner_bounds(chunks):
    position = 0
    for c in chunks[:-1]:
        position += c
        yield position


def _choose(plan: AxisPlan, candidates, min_in: int, min_out: int) -> AxisPlan:
    """plan with the candidate output boundaries that keep every input chunk >= min_in and every
    output chunk >= min_out, in order, greedily."""
    n_out = plan.out_bounds[-1]
    bounds, last_in = [0], 0
    for o in candidates:
        b = o * plan.stride - plan.before + plan.offset
        if (o - bounds[-1] >= min_out and n_out - o >= min_out and b - last_in >= min_in
                and plan.size - b >= min_in):
            bounds.append(o)
            last_in = b
    return dataclasses.replace(plan, out_bounds=(*bounds, n_out))


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
