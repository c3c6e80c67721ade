"""conv2d on NumPy arrays: im2col tiles and one BLAS matmul per tile and group.

Tiles are (images x output rows) chosen so that the im2col buffer, the padded input rows
and the matmul result together stay under config.workspace_bytes. Padding of every mode
is applied while gathering the tile's input rows, so the input is never padded whole.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..._config import config
from ..._geometry import ConvSpec
from .pad import gather_padded, index_map

ALGORITHMS = ("auto", "im2col")


def _tile_bytes(spec: ConvSpec, images: int, rows: int, itemsize: int) -> int:
    dk_h = spec.dilation[0] * (spec.kh - 1) + 1
    in_rows = (rows - 1) * spec.stride[0] + dk_h
    padded_w = spec.w + spec.pads[2] + spec.pads[3]
    cols = spec.c * spec.kh * spec.kw * rows * spec.ow
    return itemsize * images * (spec.c * in_rows * padded_w + cols + spec.f * rows * spec.ow)


def plan_tiles(spec: ConvSpec, itemsize: int) -> tuple[int, int]:
    """(images per tile, output rows per tile) under the workspace cap."""
    cap = config.workspace_bytes
    if _tile_bytes(spec, 1, spec.oh, itemsize) <= cap:
        per_image = _tile_bytes(spec, 1, spec.oh, itemsize)
        return max(1, min(spec.n, cap // per_image)), spec.oh
    rows = spec.oh
    while rows > 1 and _tile_bytes(spec, 1, rows, itemsize) > cap:
        rows = (rows + 1) // 2
    if _tile_bytes(spec, 1, rows, itemsize) > cap:
        raise MemoryError(f"one output row of this convolution needs {_tile_bytes(spec, 1, 1, itemsize)} bytes of "
                          f"workspace, more than the cap of {cap} bytes (gpuconv.set_workspace_limit)")
    return 1, rows


def conv2d(x: np.ndarray, w: np.ndarray, bias, spec: ConvSpec, algorithm: str) -> np.ndarray:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r}: the numpy backend offers {ALGORITHMS}")
    compute = np.float32 if x.dtype == np.float16 else x.dtype
    x = x.astype(compute, copy=False)
    g, fg, cg = spec.groups, spec.f // spec.groups, spec.c // spec.groups
    wmat = w.astype(compute, copy=False).reshape(g, fg, cg * spec.kh * spec.kw)
    out = np.empty(spec.out_shape, dtype=compute)
    images, rows = plan_tiles(spec, np.dtype(compute).itemsize)
    top, _, left, right = spec.pads
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    cols_map = index_map(spec.w, left, right, spec.padding_mode)
    row_map = index_map(spec.h, top, spec.pads[1], spec.padding_mode)
    for n0 in range(0, spec.n, images):
        n1 = min(spec.n, n0 + images)
        for r0 in range(0, spec.oh, rows):
            r1 = min(spec.oh, r0 + rows)
            in_rows = row_map[r0 * sh:(r1 - 1) * sh + dh * (spec.kh - 1) + 1]
            tile = gather_padded(x[n0:n1], in_rows, cols_map)
            nt, c, _, pw = tile.shape
            s = tile.strides
            # windows[n, c, i, j, a, b] = tile[n, c, i*sh + a*dh, j*sw + b*dw]
            windows = as_strided(tile, (nt, c, r1 - r0, spec.ow, spec.kh, spec.kw),
                                 (s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw), writeable=False)
            windows = windows.reshape(nt, g, cg, r1 - r0, spec.ow, spec.kh, spec.kw)
            cols = np.ascontiguousarray(windows.transpose(1, 2, 5, 6, 0, 3, 4)).reshape(g, -1, nt * (r1 - r0) * spec.ow)
            res = np.matmul(wmat, cols)  # (g, fg, nt * rows * ow)
            out[n0:n1, :, r0:r1] = res.reshape(spec.f, nt, r1 - r0, spec.ow).transpose(1, 0, 2, 3)
            del tile, cols, res  # free this tile's workspace before the next tile allocates its own
    if bias is not None:
        out += bias.astype(compute, copy=False)[:, None, None]
    return out
