"""_dask_halo.map_halo: each block with what it borrows of its neighbours, as dask.array.map_overlap
(boundary "none", no trim) gives it, in two tasks per block instead of about five."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import gpuconv
from gpuconv._dask_halo import map_halo
from support import assert_same


def _random_chunks(rng, size, smallest):
    """Chunks of an axis of `size`, each at least `smallest` long."""
    if size < 2 * smallest:
        return (size,)
    bounds = sorted(set(rng.integers(smallest, size - smallest + 1, size=rng.integers(0, 4)).tolist()))
    kept = [0]
    for b in bounds:
        if b - kept[-1] >= smallest and size - b >= smallest:
            kept.append(b)
    return tuple(np.diff(kept + [size]).tolist())


def _identity(*blocks, block_id):
    return blocks[0]


def _sum_with_ids(a, b, *, block_id, scale):
    """Two arrays' blocks (their own shapes: b borrows nothing) and the block's index in the result."""
    return (a.sum() * scale + b.sum() + np.asarray(block_id).sum()).reshape((1,) * (a.ndim + 1))


def test_blocks_are_map_overlaps(rng):
    """Random shapes, chunks and asymmetric depths on 1 to 3 of 4 axes: every block, halo included."""
    for _ in range(20):
        shape = tuple(rng.integers(3, 12, size=4).tolist())
        axes = rng.choice(4, rng.integers(1, 4), replace=False).tolist()
        depth = {k: tuple(rng.integers(0, 3, size=2).tolist()) for k in axes}
        smallest = max([1] + [max(d) for d in depth.values()])
        chunks = tuple(_random_chunks(rng, s, smallest) if k in depth else (s,) for k, s in enumerate(shape))
        x = da.from_array(rng.standard_normal(shape), chunks=chunks)
        expected = da.map_overlap(_identity, x, depth={k: depth.get(k, 0) for k in range(4)}, boundary="none",
                                  trim=False, allow_rechunk=False, block_id=(0,) * 4)
        got = map_halo(_identity, x, depth=[depth], chunks=expected.chunks, meta=x._meta)
        assert got.chunks == expected.chunks
        for block in np.ndindex(x.numblocks):
            assert_same(got.blocks[block].compute(scheduler="sync"), expected.blocks[block].compute(scheduler="sync"))


def test_arrays_without_halo_block_ids_new_axes_and_keywords(rng):
    """The second array borrows nothing and keeps its own chunks; new_axis inserts an axis of one
    chunk into block_id; keyword arguments reach every call."""
    a = da.from_array(rng.standard_normal((2, 9)), chunks=(1, (4, 5)))
    b = da.from_array(rng.standard_normal((2, 6)), chunks=(1, (1, 5)))
    out = map_halo(_sum_with_ids, a, b, depth=[{1: (1, 2)}, 0], chunks=((1, 1), (1,), (1, 1)), meta=a._meta,
                   new_axis=[1], scale=3.0)
    a_, b_ = a.compute(), b.compute()
    windows = [slice(0, 6), slice(3, 9)]  # block 0 borrows 2 of block 1, block 1 borrows 1 of block 0
    b_parts = [slice(0, 1), slice(1, 6)]
    expected = np.array([[[a_[i, windows[j]].sum() * 3 + b_[i, b_parts[j]].sum() + i + j for j in range(2)]]
                         for i in range(2)])
    assert_same(out.compute(), expected)


def test_a_chunk_shorter_than_what_is_borrowed_is_refused():
    x = da.ones((10,), chunks=((2, 8),))
    with pytest.raises(ValueError, match=r"axis 0 has chunks \(2, 8\): each must hold the 3 positions"):
        map_halo(_identity, x, depth=[{0: (3, 0)}], chunks=x.chunks, meta=x._meta)


def test_a_banded_filter_adds_four_tasks_per_band():
    """Bands of rows, a 'same' reflect conv of an unbatched image (the `large` command's): per band
    gpuconv adds its batch axis, the edge rows it lends, the conv and the batch axis's removal;
    no padding, slicing or concatenation tasks (map_overlap and dask.array.pad made 9 or 10)."""
    x = da.random.random((3, 64, 32), chunks=(3, 8, 32)).astype(np.float32)
    y = gpuconv.conv2d(x, np.ones((4, 3, 5, 5), np.float32), padding="same", padding_mode="reflect")
    added = len(dict(y.__dask_graph__())) - len(dict(x.__dask_graph__()))
    assert added <= 4 * x.numblocks[1], f"{added} tasks for {x.numblocks[1]} bands"
