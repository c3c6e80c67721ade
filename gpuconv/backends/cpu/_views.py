"""Views of arrays without copying: a reshape that must not copy (view_as), and a strided window
over an array's memory (window_view), the building blocks of the tiles' column matrices."""
from __future__ import annotations

import numpy as np


def view_as(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """a reshaped without copying (a write through it must reach a); raises if impossible."""
    view = a.view()
    view.shape = shape
    return view


def window_view(a: np.ndarray, offset: int, shape, strides) -> np.ndarray:
    """A read-only view of a's memory from `offset` bytes past its first element, with the given
    shape and byte strides (as_strided's contract: the caller keeps it inside a's memory). Built
    directly on a C-contiguous a (where NumPy also checks the bounds), which is 4-8x cheaper than
    as_strided: it is on every tile's path."""
    if a.flags.c_contiguous:
        view = np.ndarray(shape, a.dtype, a, offset, strides)
    else:
        interface = dict(a.__array_interface__, shape=tuple(shape), strides=tuple(strides))
        interface["data"] = (interface["data"][0] + offset, True)
        view = np.asarray(_Memory(interface, a))
    view.flags.writeable = False
    return view


class _Memory:
    """Exposes an array interface to np.asarray and keeps the array that owns the memory alive."""

    def __init__(self, interface: dict, owner: np.ndarray):
        self.__array_interface__ = interface
        self.owner = owner
