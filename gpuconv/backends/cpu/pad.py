"""pad2d on NumPy arrays, by index maps: padded position -> source position."""
from __future__ import annotations

import numpy as np

from ..._geometry import PadSpec

# pad2d's mode names and conv2d's padding_mode names for the same rules.
_MODE_ALIASES = {"zeros": "constant"}


def index_map(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index of every padded position -before .. size+after-1; -1 marks a constant pad."""
    i = np.arange(-before, size + after)
    mode = _MODE_ALIASES.get(mode, mode)
    if mode == "constant":
        return np.where((i >= 0) & (i < size), i, -1)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    if mode == "circular":
        return i % size
    if mode == "reflect":  # pads < size, so one reflection suffices
        i = np.abs(i)
        return np.where(i >= size, 2 * (size - 1) - i, i)
    raise ValueError(f"unknown padding mode {mode!r}")


def pad2d(x: np.ndarray, spec: PadSpec) -> np.ndarray:
    t, b, l, r = spec.pads
    if spec.mode == "constant":
        out = np.full(spec.out_shape, spec.value, dtype=x.dtype)
        out[..., t:t + spec.h, l:l + spec.w] = x
        return out
    # reflect, replicate, circular: every padded position has a source (no -1 in the maps)
    rows = index_map(spec.h, t, b, spec.mode)
    cols = index_map(spec.w, l, r, spec.mode)
    return np.take(np.take(x, rows, axis=-2), cols, axis=-1)
