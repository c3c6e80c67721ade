"""Per-thread scratch buffers, reused from call to call.

A fresh multi-MiB array costs a page fault per 4 KiB page on first touch (about 1 us
each), which is as much as the arithmetic on it; so every worker thread keeps a flat
buffer per slot (tile arrays, transformed weights, pooling rows) and carves its arrays out
of it. config.workspace_bytes bounds what one call allocates (the callers plan their
tiles under it); at the end of a call release() drops every buffer larger than
min(KEEP_BYTES, cap / 2), so a lowered cap takes effect at once and between calls at
most threads * slots * KEEP_BYTES stay held. Scratch under SMALL_BYTES in all is a fresh
np.empty (cheaper than carving, for tiny calls whose fixed cost matters).
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ..._config import config

KEEP_BYTES = 16 << 20
SMALL_BYTES = 64 << 10  # below this, fresh arrays: malloc reuses small blocks without page faults
_ALIGN = 64  # bytes: a cache line, and AVX-512 vector alignment

_local = threading.local()
_held: list[dict] = []  # every thread's storage, so release() can reach them
_held_lock = threading.Lock()
_largest = 0  # bytes of the largest buffer that may be held: release() scans only when it exceeds the keep size


def arrays(*specs: tuple[tuple[int, ...], np.dtype], slot: str = "tile") -> list[np.ndarray]:
    """Uninitialised arrays of the given (shape, dtype), carved from this thread's buffer for
    `slot` (arrays from an earlier call with the same slot in this thread are overwritten)."""
    global _largest
    specs = [(shape if type(shape) is tuple else (shape,), np.dtype(dtype)) for shape, dtype in specs]
    counts = [math.prod(shape) * dtype.itemsize for shape, dtype in specs]
    if sum(counts) < SMALL_BYTES:
        return [np.empty(*spec) for spec in specs]
    sizes = [-(-count // _ALIGN) * _ALIGN for count in counts]
    storage = _local.__dict__
    if not storage.get("registered"):
        with _held_lock:
            _held.append(storage)
        storage["registered"] = True
    buffer = storage.get(slot)  # a view of the allocation that starts on an _ALIGN boundary
    if buffer is None or buffer.nbytes < sum(sizes):
        buffer = storage[slot] = None  # free the old one first (this local held it too): it is too small
        raw = np.empty(sum(sizes) + _ALIGN, dtype=np.uint8)
        buffer = raw[-raw.ctypes.data % _ALIGN:]
        with _held_lock:  # consistent with release()'s scan
            storage[slot] = buffer
            _largest = max(_largest, buffer.nbytes)
    out = []
    offset = 0
    for (shape, dtype), count, size in zip(specs, counts, sizes):
        out.append(buffer[offset:offset + count].view(dtype).reshape(shape))
        offset += size
    return out


def release() -> None:
    """Drop every thread's buffer that is larger than min(KEEP_BYTES, cap / 2)."""
    global _largest
    keep = min(KEEP_BYTES, config.workspace_bytes // 2)
    if _largest <= keep:
        return
    with _held_lock:
        largest = 0
        for storage in _held:
            for slot, buffer in list(storage.items()):
                if isinstance(buffer, np.ndarray):
                    if buffer.nbytes > keep:
                        storage[slot] = None
                    else:
                        largest = max(largest, buffer.nbytes)
        _largest = largest
