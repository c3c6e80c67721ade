"""pad2d on NumPy arrays: the input copied into the middle of the output, then the padding
filled from the output itself with one slice copy per side and axis (no index maps, no
scratch): first the columns of the input rows, then whole padded rows."""
from __future__ import annotations

import numpy as np

from ..._geometry import PadSpec
from ..._validate import float_dtype


def pad2d(x: np.ndarray, spec: PadSpec) -> np.ndarray:
    t, b, l, r = spec.pads
    dtype = float_dtype(x.dtype)  # integer x is read as float64 as it is copied in
    if spec.mode == "constant":
        out = np.full(spec.out_shape, spec.value, dtype=dtype)
        out[..., t:t + spec.h, l:l + spec.w] = x
        return out
    out = np.empty(spec.out_shape, dtype=dtype)
    out[..., t:t + spec.h, l:l + spec.w] = x
    _fill_sides(out[..., t:t + spec.h, :], l, spec.w, r, spec.mode)
    _fill_sides(out.swapaxes(-1, -2), t, spec.h, b, spec.mode)
    return out


def _fill_sides(a: np.ndarray, before: int, size: int, after: int, mode: str) -> None:
    """Fill a[..., :before] and a[..., before + size:] from the input at a[..., before:before + size]
    by PyTorch's rule: reflect (mirror without the edge; pads < size), replicate (the edge),
    circular (wrap around; pads <= size)."""
    end = before + size
    if mode == "replicate":
        a[..., :before] = a[..., before:before + 1]
        a[..., end:] = a[..., end - 1:end]
    elif mode == "circular":
        a[..., :before] = a[..., size:end]
        a[..., end:] = a[..., before:before + after]
    elif mode == "reflect":
        a[..., :before] = a[..., 2 * before:before:-1]
        stop = end - 2 - after
        a[..., end:] = a[..., end - 2:stop if stop >= 0 else None:-1]
    else:
        raise ValueError(f"unknown padding mode {mode!r}")
