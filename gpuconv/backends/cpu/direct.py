"""conv2d by direct multiply-accumulate: for each input channel of a group and each kernel
tap, out += weight * shifted input, as whole-tile vector operations.

Costs 2 * (C/groups) * KH * KW passes over the tile's output. Made for depthwise layers, it
lost to im2col or shifted on every shape measured (conv.choose never takes it); it stays as
an independent method to force. Tiles and tap windows are im2col's (_tile_runner.py, _tap_windows.py).
Runs every shape.
"""
from __future__ import annotations

import numpy as np

from ..._geometry import ConvSpec
from ._tile_runner import for_each_tile
from ._views import view_as

NAME = "direct"


def applicable(spec: ConvSpec) -> str | None:
    """None: this algorithm runs every convolution."""
    return None


def conv2d(x: np.ndarray, wmat: np.ndarray, bias, spec: ConvSpec, out: np.ndarray) -> None:
    g, fg, cg, taps = spec.groups, spec.filters_per_group, spec.channels_per_group, spec.taps
    # weights[j, t] broadcasts over (images, groups, filters of the group, columns)
    weights = wmat.reshape(g, fg, cg, taps).transpose(2, 3, 0, 1)[..., None]

    def body(tile, acc, product):
        nt = acc.shape[0]
        tile.clear_spare(acc)
        tile.clear_spare(product)
        for j in range(cg):
            for t in range(taps):
                def multiply(window, part, w=weights[j, t]):
                    np.multiply(view_as(window, (nt, g, cg, window.shape[-1]))[:, :, j:j + 1], w, out=part)
                if j == 0 and t == 0:
                    tile.apply(t, multiply, acc)
                else:
                    tile.apply(t, multiply, product)
                    np.add(acc, product, out=acc)

    for_each_tile(x, bias, spec, out, wmat.dtype, NAME, (g, fg), body)
