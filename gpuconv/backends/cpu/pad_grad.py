"""pad2d's gradient on NumPy arrays: pad.py's slice copies run backwards. pad2d fills the pad
columns of the input rows, then the pad rows over the whole width; its gradient first folds the
pad rows (whole width) onto the rows they copied, then the pad columns of the input rows onto
the columns they copied, one slice add per side and axis, and crops the input's part."""
from __future__ import annotations

import numpy as np

from ..._geometry import PadSpec


def pad2d_input(grad: np.ndarray, spec: PadSpec) -> np.ndarray:
    t, b, l, r = spec.pads
    if spec.mode == "constant":
        return grad[..., t:t + spec.h, l:l + spec.w].copy()
    compute = np.dtype(np.float32 if grad.dtype == np.float16 else grad.dtype)
    folded = grad.astype(compute)  # a copy
    _fold_sides(folded.swapaxes(-1, -2), t, spec.h, b, spec.mode)
    _fold_sides(folded[..., t:t + spec.h, :], l, spec.w, r, spec.mode)
    return folded[..., t:t + spec.h, l:l + spec.w].astype(grad.dtype)


def _fold_sides(a: np.ndarray, before: int, size: int, after: int, mode: str) -> None:
    """The adjoint of pad._fill_sides: the gradients of a[..., :before] and a[..., before + size:]
    added onto the elements of a[..., before:before + size] that they were copied from."""
    end = before + size
    if mode not in ("replicate", "circular", "reflect"):
        raise ValueError(f"unknown padding mode {mode!r}")
    if before:
        source = {"replicate": (Ellipsis, slice(before, before + 1)), "circular": (Ellipsis, slice(size, end)),
                  "reflect": (Ellipsis, slice(2 * before, before, -1))}[mode]
        pads = a[..., :before]
        a[source] += pads.sum(axis=-1, keepdims=True) if mode == "replicate" else pads
    if after:
        stop = end - 2 - after
        source = {"replicate": (Ellipsis, slice(end - 1, end)), "circular": (Ellipsis, slice(before, before + after)),
                  "reflect": (Ellipsis, slice(end - 2, stop if stop >= 0 else None, -1))}[mode]
        pads = a[..., end:]
        a[source] += pads.sum(axis=-1, keepdims=True) if mode == "replicate" else pads
