"""Per-thread scratch buffers, reused from call to call.

A fresh multi-MiB array costs a page fault per 4 KiB page on first touch (about 1 us
each), which is as much as the arithmetic on it; so every worker thread keeps a flat
buffer per slot (tile arrays, transformed weights, pooling rows) and carves its arrays out
of it. config.workspace_bytes bounds what one call allocates (the callers plan their
tiles under it); at the end of a call release() drops every buffer larger than
min(KEEP_BYTES, cap / 2), so a lowered cap takes effect at once and between calls at
most threads * slots * KEEP_BYTES stay held.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ..._config import config

KEEP_BYTES = 16 << 20
_ALIGN = 64  # bytes: a cache line, and AVX-512 vector alignment

_local = threading.local()
_held: list[threading.local] = []  # every thread's storage, so release() can reach them
_held_lock = threading.Lock()


def arrays(*specs: tuple[tuple[int, ...], np.dtype], slot: str = "tile") -> list[np.ndarray]:
    """Uninitialised arrays of the given (shape, dtype), carved from this thread's buffer for
    `slot` (arrays from an earlier call with the same slot in this thread are overwritten)."""
    specs = [(shape if isinstance(shape, tuple) else (shape,), dtype) for shape, dtype in specs]
    counts = [math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in specs]
    sizes = [-(-count // _ALIGN) * _ALIGN for count in counts]
    if not getattr(_local, "registered", False):
        with _held_lock:
            _held.append(_local.__dict__)
        _local.registered = True
    buffer = _local.__dict__.get(slot)
    if buffer is None or buffer.nbytes < sum(sizes) + _ALIGN:
        _local.__dict__[slot] = buffer = None  # free the old one first: it is too small
        _local.__dict__[slot] = buffer = np.empty(sum(sizes) + _ALIGN, dtype=np.uint8)
    offset = -buffer.ctypes.data % _ALIGN
    out = []
    for (shape, dtype), count, size in zip(specs, counts, sizes):
        out.append(buffer[offset:offset + count].view(dtype).reshape(shape))
        offset += size
    return out


def release() -> None:
    """Drop every thread's buffer that is larger than min(KEEP_BYTES, cap / 2)."""
    keep = min(KEEP_BYTES, config.workspace_bytes // 2)
    with _held_lock:
        for storage in _held:
            for slot, buffer in list(storage.items()):
                if isinstance(buffer, np.ndarray) and buffer.nbytes > keep:
                    storage[slot] = None
