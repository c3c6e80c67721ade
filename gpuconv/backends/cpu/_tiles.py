"""Tiles of a convolution: (images n0:n1, output rows r0:r1) sized to a per-thread budget.

Each algorithm says how many workspace bytes a tile of (images, rows) needs. A tile aims
at TARGET_BYTES (small enough to stay in cache, large enough for efficient matmuls); the
hard limit is config.workspace_bytes shared by all threads. There are at least as many
tiles as threads when the work can be split, and one thread for small convolutions.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Callable

from ..._config import config
from ..._geometry import ConvSpec
from . import _plan_cache

# Less work than this (in tile bytes) runs faster on the calling thread alone: handing tiles
# to the pool and sharing the GIL cost more than they save (measured on layers E and F).
MIN_PARALLEL_BYTES = 16 << 20
# Tiles whose results are summed (gradients) are cut for this many threads whatever the thread
# count, so that the sum runs in one order for every thread count (config's default maximum).
FIXED_PARTITION_THREADS = 8
TARGET_BYTES = 6 << 20  # measured on layers A-H: 2-4 MiB tiles pay too much per-tile overhead, 12 MiB lose the cache


@dataclass(frozen=True)
class Plan:
    threads: int
    tiles: tuple[tuple[int, int, int, int], ...]  # (n0, n1, r0, r1)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


_plans_cache = _plan_cache.PlanCache(8 << 20, lambda plan: 200 + 100 * len(plan.tiles))  # ~100 bytes a tile
_fixed: contextvars.ContextVar[bool] = contextvars.ContextVar("gpuconv_fixed_partition", default=False)


@contextlib.contextmanager
def fixed_partition():
    """Plans made inside the block cut their tiles for FIXED_PARTITION_THREADS threads (as if
    every plan() passed partition_threads): the tiles, and so every BLAS call, are the same for
    every thread count (Winograd's results depend on its matmuls' shapes)."""
    token = _fixed.set(True)
    try:
        yield
    finally:
        _fixed.reset(token)


def plan(spec: ConvSpec, tile_bytes: Callable[[int, int], int], algorithm: str, key, row_step: int = 1,
         reserved: int = 0, target_bytes: int | None = None, partition_threads: int | None = None) -> Plan:
    """Tiles for tile_bytes(images, rows); rows per tile is a multiple of row_step (but the last).
    `reserved` bytes of the cap are already taken (e.g. by transformed weights). The plan is
    memoised on the hashable `key`, which must determine tile_bytes, with the spec and settings.
    partition_threads: cut the tiles for that many threads whatever config.num_threads is (and run
    on at most that many), so that a sum over tiles adds in the same order for every thread count."""
    target_bytes = TARGET_BYTES if target_bytes is None else target_bytes
    if partition_threads is None and _fixed.get():
        partition_threads = FIXED_PARTITION_THREADS
    full_key = (key, spec, algorithm, row_step, reserved, target_bytes, MIN_PARALLEL_BYTES, config.workspace_bytes,
                config.num_threads, partition_threads)

    def make() -> Plan:
        if partition_threads is None:
            return _plan(spec, tile_bytes, algorithm, row_step, reserved, target_bytes, config.num_threads)
        found = _plan(spec, tile_bytes, algorithm, row_step, reserved, target_bytes, partition_threads)
        return Plan(min(found.threads, config.num_threads), found.tiles)

    return _plans_cache.get(full_key, make)


def _plan(spec: ConvSpec, tile_bytes: Callable[[int, int], int], algorithm: str, row_step: int,
          reserved: int, target_bytes: int, threads: int) -> Plan:
    cap = config.workspace_bytes - reserved
    smallest, one_image = tile_bytes(1, row_step), tile_bytes(1, spec.oh)
    threads = max(1, threads)
    if smallest * threads > cap or spec.n * one_image < MIN_PARALLEL_BYTES:
        threads = 1
    budget = cap // threads
    if smallest > budget:
        raise MemoryError(f"algorithm {algorithm!r}: the smallest tile of this convolution needs "
                          f"{smallest} bytes of workspace (and {reserved} more for the whole "
                          f"call), more than the cap of {config.workspace_bytes} bytes (gpuconv.set_workspace_limit or "
                          f"GPUCONV_WORKSPACE_MB raise it)")
    target = min(budget, max(target_bytes, smallest))
    if one_image <= target:
        images = max(1, min(target // one_image, _ceil_div(spec.n, threads)))
        count = threads * _ceil_div(_ceil_div(spec.n, images), threads)  # a multiple of the threads
        images = _ceil_div(spec.n, count)  # the same number of tiles, or fewer, evened out
        rows = spec.oh
    else:
        images = 1
        rows = row_step
        while rows + row_step <= spec.oh and tile_bytes(1, rows + row_step) <= target:
            rows += row_step
    if spec.n * _ceil_div(spec.oh, rows) < threads < _ceil_div(spec.oh, row_step) * spec.n:
        rows = row_step * _ceil_div(_ceil_div(spec.oh, row_step), _ceil_div(threads, spec.n))
    tiles = tuple((n0, min(spec.n, n0 + images), r0, min(spec.oh, r0 + rows))
                  for n0 in range(0, spec.n, images) for r0 in range(0, spec.oh, rows))
    return Plan(threads, tiles)
