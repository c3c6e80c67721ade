"""Memoisation of per-call work that depends only on a call's arguments (issue 9: host cost per call).

Two rules keep a cache from changing any answer:
- only a pure function of its arguments is memoised, and only its successful results: a call whose
  arguments fail validation raises every time, as without the cache;
- the key holds each argument's exact type beside its value, so arguments that compare equal but
  validate differently never share an entry (True == 1, 1.0 == 1, -0.0 == 0.0, [1] vs (1,)).
Arguments of any other type than the plain ones below are not cached: the call runs uncached.
Every cache is bounded: it is emptied when it reaches its size.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

_NONE = type(None)
_INTS_ONLY = frozenset((int,))


class _Uncacheable(Exception):
    pass


def _item_key(value):
    """value itself where its type cannot be confused (int, str, None, tuples of those), else a
    (type, value) pair; raises _Uncacheable for any other type."""
    kind = type(value)
    if kind is int or kind is str or kind is _NONE:
        return value
    if kind is tuple or kind is list:
        items = tuple(_item_key(item) for item in value)
        return items if kind is tuple else (list, items)
    if kind is bool:
        return bool, value
    if kind is float:
        return float, value.hex()  # tells -0.0 from 0.0; NaN keys never match, so NaN is never reused
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return kind, value.item().hex() if value.dtype.kind == "f" else value.item()
    raise _Uncacheable


def typed_key(args: tuple) -> tuple:
    """A hashable key that equals another only for arguments of the same types and values."""
    key = []
    for value in args:
        kind = type(value)
        if kind is int or kind is str or kind is _NONE or (kind is tuple and frozenset(map(type, value)) == _INTS_ONLY):
            key.append(value)  # the common cases first: sizes, modes, shapes
        elif kind is bool:
            key.append((bool, value))
        else:
            key.append(_item_key(value))
    return tuple(key)


def memoise(maxsize: int):
    """Memoise a pure function of plain arguments (see the module doc)."""

    def decorate(function):
        cache: dict = {}

        @functools.wraps(function)
        def cached(*args, **kwargs):
            try:
                key = typed_key(args) if not kwargs else (typed_key(args), *kwargs, typed_key(tuple(kwargs.values())))
            except _Uncacheable:
                return function(*args, **kwargs)
            found = cache.get(key)
            if found is None:
                found = function(*args, **kwargs)  # raises for invalid arguments: nothing is stored
                if len(cache) >= maxsize:
                    cache.clear()
                cache[key] = found
            return found

        cached.cache_clear = cache.clear
        return cached

    return decorate


class BoundedCache(dict):
    """A dict of values derived from a hashable key, emptied when it reaches maxsize entries."""

    def __init__(self, maxsize: int):
        super().__init__()
        self.maxsize = maxsize

    def put(self, key, value):
        if len(self) >= self.maxsize:
            self.clear()
        self[key] = value
        return value


def cached_hash(self) -> int:
    """__hash__ of a frozen dataclass hashed several times per call (the specs, keys of the caches):
    the hash of its fields, computed once and kept in the instance (see state_without_hash)."""
    found = self.__dict__.get("_hash")
    if found is None:
        found = hash(tuple(getattr(self, field.name) for field in dataclasses.fields(self)))
        object.__setattr__(self, "_hash", found)
    return found


def state_without_hash(self) -> dict:
    """__getstate__ that leaves the kept hash out: string hashes differ from process to process."""
    return {name: value for name, value in self.__dict__.items() if name != "_hash"}
