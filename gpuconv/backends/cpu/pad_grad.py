"""pad2d's gradient on NumPy arrays: the interior of the padded gradient, plus, for reflect,
replicate and circular, every pad row and column added onto the input row/column it copied
(pad.index_map), one vectorised add per pad row or column, in a fixed order."""
from __future__ import annotations

import numpy as np

from ..._geometry import PadSpec
from .pad import index_map


def pad2d_input(grad: np.ndarray, spec: PadSpec) -> np.ndarray:
    t, b, l, r = spec.pads
    interior = grad[..., t:t + spec.h, l:l + spec.w]
    if spec.mode == "constant":
        return interior.copy()
    compute = np.dtype(np.float32 if grad.dtype == np.float16 else grad.dtype)
    dx = interior.astype(compute)  # a copy
    row_src, col_src = index_map(spec.h, t, b, spec.mode), index_map(spec.w, l, r, spec.mode)
    pad_rows = [*range(t), *range(t + spec.h, t + spec.h + b)]
    pad_cols = [*range(l), *range(l + spec.w, l + spec.w + r)]
    # the pad rows' gradient with their own pad columns folded in, then added onto their source rows
    edge = grad[..., pad_rows, l:l + spec.w].astype(compute)
    for j in pad_cols:
        source = (Ellipsis, col_src[j])
        dx[source] += grad[..., t:t + spec.h, j]
        edge[source] += grad[..., pad_rows, j]
    for k, i in enumerate(pad_rows):
        dx[..., row_src[i], :] += edge[..., k, :]
    return dx.astype(grad.dtype, copy=False)
