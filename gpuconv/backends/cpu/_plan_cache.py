"""Caches of per-shape plans (tile plans, tap windows, gather maps), bounded in bytes.

A plan costs tens of microseconds to build and is reused by every call of the same shape;
but its size grows with the shape (tiles, border maps), so a cache holds at most `max_bytes`
of them, least recently used first out, and never one larger than a quarter of that.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable

CACHES: list["PlanCache"] = []  # every cache, so tests can check the bounds


class PlanCache:
    def __init__(self, max_bytes: int, sizeof: Callable[[object], int]):
        self.max_bytes, self.nbytes = max_bytes, 0
        self._sizeof = sizeof
        self._items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()
        CACHES.append(self)

    def get(self, key: Hashable, make: Callable[[], object]):
        """The value memoised for key, else make()'s (memoised when it fits)."""
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found[0]
        value = make()
        size = self._sizeof(value)
        if size <= self.max_bytes // 4:
            with self._lock:
                if key not in self._items:
                    self._items[key] = (value, size)
                    self.nbytes += size
                    while self.nbytes > self.max_bytes:
                        _, (_, dropped) = self._items.popitem(last=False)
                        self.nbytes -= dropped
        return value
