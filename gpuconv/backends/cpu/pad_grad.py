"""pad2d's gradient on NumPy arrays: pad.py's slice copies run backwards. pad2d fills the pad
columns of the input rows, then the pad rows over the whole width; its gradient first folds the
pad rows (whole width) onto the rows they copied, then the pad columns of the input rows onto
the columns they copied, and crops the input's part. It runs in bands of the input's rows
(several planes, or one plane in bands of rows) under the workspace cap, in the compute dtype
(float16 in float32, rounded once)."""
from __future__ import annotations

import numpy as np

from ..._geometry import PadSpec
from ..._validate import accumulation_dtype
from . import _workspace
from ._threads import parallel_items
from .pool import row_items


def pad_sources(before: int, size: int, after: int, mode: str) -> tuple[list[int], list[int]]:
    """The input index that each pad element copies: of the `before` pads, then of the `after` pads."""
    if mode == "replicate":
        return [0] * before, [size - 1] * after
    if mode == "circular":
        return [size - before + p for p in range(before)], list(range(after))
    if mode == "reflect":
        return [before - p for p in range(before)], [size - 2 - q for q in range(after)]
    raise ValueError(f"unknown padding mode {mode!r}")


def pad2d_input(grad: np.ndarray, spec: PadSpec) -> np.ndarray:
    t, b, l, r = spec.pads
    if spec.mode == "constant":
        return grad[..., t:t + spec.h, l:l + spec.w].copy()
    compute = accumulation_dtype(grad.dtype)
    n_planes, wp = spec.n * spec.c, grad.shape[-1]
    planes = grad.reshape(n_planes, grad.shape[-2], wp)
    dx = np.empty((n_planes, spec.h, spec.w), dtype=grad.dtype)
    above, below = pad_sources(t, spec.h, b, spec.mode)
    # a band, one row of replicate's pad sums, and the column pads that _fold_sides adds as a copy
    items = row_items(n_planes, spec.h, lambda rows: compute.itemsize * (rows + 1) * (wp + l + r),
                      f"the gradient of padding one row of width {wp}")

    def run(item: int) -> None:
        p0, p1, a, e = items[item]
        (band,) = _workspace.arrays(((p1 - p0, e - a, wp), compute), slot="pool")
        np.copyto(band, planes[p0:p1, t + a:t + e])
        fold_band(band, a, planes[p0:p1, :t], planes[p0:p1, t + spec.h:], spec)
        np.copyto(dx[p0:p1, a:e], band[..., l:l + spec.w], casting="unsafe")

    parallel_items(run, len(items), uses_blas=False)
    _workspace.release()
    return dx.reshape(spec.n, spec.c, spec.h, spec.w)


def fold_band(band: np.ndarray, a: int, above: np.ndarray, below: np.ndarray, spec: PadSpec) -> None:
    """Fold into band (..., e - a, padded width), the padded gradient's rows of input rows a:e, the
    gradients of the pad rows above and below the input (..., top or bottom, padded width) that
    copied those rows, then the pad columns of every row (in pad2d_input's order)."""
    t, b, l, r = spec.pads
    e = a + band.shape[-2]
    for pads, rows in zip(pad_sources(t, spec.h, b, spec.mode), (above, below)):
        if spec.mode == "replicate":
            if pads and a <= pads[0] < e:
                band[..., pads[0] - a, :] += rows.sum(axis=-2, dtype=band.dtype)
            continue
        for p, source in enumerate(pads):
            if a <= source < e:
                band[..., source - a, :] += rows[..., p, :]
    _fold_sides(band, l, spec.w, r, spec.mode)


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
