"""conv2d by im2col: per tile, copy every kernel tap's window into a column matrix and
multiply it by the weights with one BLAS matmul per group.

Tile = (images n0:n1, output rows r0:r1); _tile_runner.for_each_tile plans and runs them.
Each tap's window over the tile is one contiguous slice per (image, channel)
(_tap_windows.py), so the column matrix is built with one strided copy per stride phase (one in
all for unpadded windows); when the output grid is the output itself (unpadded windows) the
matmul writes straight into the output.
Runs every shape (all strides, dilations, groups, padding modes). A pointwise convolution
(1x1, stride 1, no padding) of a C-contiguous input needs no column matrix at all.
"""
from __future__ import annotations

import numpy as np

from ..._config import config
from ..._geometry import ConvSpec
from . import _blas
from ._tile_runner import for_each_tile, store
from ._views import view_as

NAME = "im2col"


def applicable(spec: ConvSpec) -> str | None:
    """None: this algorithm runs every convolution."""
    return None


def conv2d(x: np.ndarray, wmat: np.ndarray, bias, spec: ConvSpec, out: np.ndarray) -> None:
    """out (n, f, oh, ow) = conv of x; wmat is (groups, f/groups, c/groups*kh*kw) in the compute dtype."""
    if is_pointwise(spec) and x.dtype == wmat.dtype and x.flags.c_contiguous:
        # The column matrix is the input itself: one batched matmul, on BLAS's threads.
        with _blas.limit(config.num_threads):
            np.matmul(wmat, view_as(x, (spec.n, spec.groups, spec.channels_per_group, spec.h * spec.w)),
                      out=view_as(out, (spec.n, spec.groups, spec.filters_per_group, spec.out_pixels)))
        store(out, bias, None)
        return
    def body(tile, result, cols):
        tile.clear_spare(cols)
        tile.copy_all(cols)
        nt, g, _, length = result.shape
        np.matmul(wmat, cols.reshape(nt, g, wmat.shape[2], length), out=result)

    for_each_tile(x, bias, spec, out, wmat.dtype, NAME, (spec.c, spec.taps), body, unpadded_ok=True)


def is_pointwise(spec: ConvSpec) -> bool:
    """A 1x1 kernel at stride 1 without padding: each output pixel reads only its own input pixel."""
    return spec.kh == spec.kw == 1 and spec.stride == (1, 1) and spec.pads == (0, 0, 0, 0)
