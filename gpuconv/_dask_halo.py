"""A block function over dask arrays whose blocks borrow the edges of their neighbours: what
dask.array.map_overlap(..., boundary="none", trim=False) computes, in two tasks per block.

map_overlap makes about five tasks of every block (a slice of each neighbour and of the block
itself, their concatenation, the function); on a dask.distributed worker every task costs 2-3 ms
of scheduling (a 1-Mpixel band's filter bank computes in about 40). Here each block has one
`strips` task, which copies out the edges its neighbours borrow (only these travel between
workers), and one task that joins the block with its neighbours' strips and calls the function.
"""
from __future__ import annotations

import functools
import itertools

import dask.array as da
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ._validate import array_module


def map_halo(fn, *arrays, depth, chunks, meta, new_axis=(), **kwargs):
    """fn(*blocks, block_id=..., **kwargs) for every block index of `arrays` (equal block grids),
    each block extended on axis k by depth[i][k] = (lead, lag) positions of the blocks before and
    after it (nothing at the array's edges). depth[i] is a dict of axes, or 0 for none; a chunk
    shorter than what its neighbours borrow is a ValueError. block_id is the output block's index:
    the arrays' with a 0 inserted at each of new_axis (output axes of one chunk)."""
    grid = arrays[0].numblocks
    borrowing = [_borrowing_axes(a, d) for a, d in zip(arrays, depth)]
    call = functools.partial(fn, **kwargs)
    token = tokenize(call, *arrays, borrowing, chunks, new_axis)
    name = f"{getattr(fn, '__name__', 'halo').strip('_')}-{token}"
    graph = {}
    strips = [f"strips-{i}-{token}" if axes else None for i, axes in enumerate(borrowing)]
    for index in itertools.product(*map(range, grid)):
        parts = []
        for array, axes, strip in zip(arrays, borrowing, strips):
            if not axes:
                parts.append((array.name, *index))
                continue
            around = _neighbours(index, axes, grid)
            # this block's strips go to the receivers at index - offsets; it joins theirs at index + offsets
            graph[(strip, *index)] = (_strips, (array.name, *index), axes, [_negate(o) for o in around])
            parts.append((_join, (array.name, *index), axes, around,
                          [(strip, *_shifted(index, axes, o)) for o in around]))
        out_index = list(index)
        for axis in sorted(new_axis):
            out_index.insert(axis, 0)
        graph[(name, *out_index)] = (_apply, call, parts, tuple(out_index))
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=arrays)
    return da.Array(hlg, name, chunks=chunks, meta=meta)


def _borrowing_axes(array, depth) -> dict:
    """{axis: (lead, lag)} of the axes on which blocks borrow anything, checked against the chunks."""
    axes = {k: (lead, lag) for k, (lead, lag) in (depth or {}).items()
            if (lead, lag) != (0, 0) and array.numblocks[k] > 1}
    for k, (lead, lag) in axes.items():
        if min(array.chunks[k]) < max(lead, lag):
            raise ValueError(f"axis {k} has chunks {array.chunks[k]}: each must hold the {max(lead, lag)} "
                             f"positions its neighbours borrow")
    return axes


def _neighbours(index, axes, grid) -> list[tuple[int, ...]]:
    """Offsets (-1, 0 or 1 on each borrowing axis, not all 0) of the blocks around index."""
    ranges = [[o for o in (-1, 0, 1) if 0 <= index[k] + o < grid[k]] for k in axes]
    return [offsets for offsets in itertools.product(*ranges) if any(offsets)]


def _shifted(index, axes, offsets):
    moved = list(index)
    for k, o in zip(axes, offsets):
        moved[k] += o
    return moved


def _negate(offsets):
    return tuple(-o for o in offsets)


# ---- on the workers ----------------------------------------------------------------------------------
def _strips(block, axes, receivers):
    """{offsets: what the block at (this block's index - offsets) borrows from it}: on an axis of
    offset -1 (this block comes before) its last `lead` positions, +1 its first `lag`, 0 all. As
    copies: a strip held for a neighbour, or sent to another worker, does not keep the whole block."""
    out = {}
    for offsets in receivers:
        where = [slice(None)] * block.ndim
        for (k, (lead, lag)), o in zip(axes.items(), offsets):
            where[k] = slice(block.shape[k] - lead, None) if o < 0 else slice(0, lag) if o > 0 else slice(None)
        out[offsets] = block[tuple(where)].copy()
    return out


def _join(block, axes, around, strips):
    """block with what it borrows from the neighbours at `around` (offsets), one concatenation per axis."""
    pieces = {(0,) * len(axes): block}
    for offsets, lent in zip(around, strips):
        pieces[offsets] = lent[offsets]
    xp = array_module(block)
    for step, k in enumerate(reversed(axes)):  # the last axis first: rows of pieces become one piece
        position = len(axes) - 1 - step
        joined = {}
        for offsets in sorted(pieces):
            rest = offsets[:position]
            joined.setdefault(rest, []).append(pieces[offsets])
        pieces = {rest: row[0] if len(row) == 1 else xp.concatenate(row, axis=k) for rest, row in joined.items()}
    return pieces[()]


def _apply(call, parts, block_id):
    return call(*parts, block_id=block_id)
