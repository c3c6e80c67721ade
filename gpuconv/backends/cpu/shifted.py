"""conv2d by im2col over whole output rows, for a block of groups at a time, with every
window taken as a flat shift: no gathered phase planes, no spare grid columns, no store pass.

It runs stride-1 convolutions with zero padding whose output is as wide as the input (the
"same" width of ResNet and depthwise layers). There the window of kernel tap (a, b) over a
band of output rows is ONE flat slice of the input band, shifted by a*dh*W + b*dw: the band
is copied once into a buffer with zeroed margins (the rows above and below the image, `left`
elements before, `right` after), every tap is copied out of it with one strided copy, and
the taps whose column wrapped around a row end are zeroed. The output grid is the output
itself, so the matmul (a batched matrix-vector product for depthwise layers) writes straight
into it. About eight NumPy calls per tile and group block; on small planes of few channels
those cost more than im2col's gathered phase planes (conv.choose).

Tiles are (groups, output rows) over the images' groups (_tiles.plan with one "image" per
group of an image), sized to TARGET_BYTES: on the 2-core reference machine smaller tiles
lose more to the threads' hand-offs of the GIL than they gain in cache.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..._geometry import ConvSpec
from . import _tiles, _workspace
from ._threads import parallel_items
from ._tile_runner import store
from ._views import view_as

NAME = "shifted"
# Measured on layers B and H: 2 MiB tiles 5-45% slower, 8 MiB about the same, 16-32 MiB 5-15% slower.
TARGET_BYTES = 4 << 20


def applicable(spec: ConvSpec) -> str | None:
    zero_padded = spec.padding_mode == "zeros" or spec.pads == (0, 0, 0, 0)
    if spec.stride != (1, 1) or spec.ow != spec.w or not zero_padded:
        return "shifted needs stride 1, zero padding and an output as wide as the input"
    return None


def band_length(spec: ConvSpec, rows: int) -> int:
    """Elements per channel of the band of input rows that `rows` output rows read, with its margins."""
    return spec.pads[2] + (rows + (spec.kh - 1) * spec.dilation[0]) * spec.w + spec.pads[3]


def fill_columns(x: np.ndarray, spec: ConvSpec, n: int, c0: int, c1: int, r0: int, rows: int, band: np.ndarray,
                 cols: np.ndarray) -> None:
    """cols (c1 - c0, kh, kw, rows * width) = every kernel tap's window over output rows r0:r0+rows of
    image n's channels c0:c1, through band (c1 - c0, band_length(spec, rows)), filled here."""
    kh, kw, (dh, dw), width = spec.kh, spec.kw, spec.dilation, spec.w
    top, _, left, _ = spec.pads
    channels = c1 - c0
    # band row k is input row r0 - top + k; rows outside the image are zero
    first = r0 - top
    lo, hi = max(first, 0), min(first + rows + (kh - 1) * dh, spec.h)
    head = left + (lo - first) * width
    tail = head + max(hi - lo, 0) * width
    band[:, :head] = 0
    band[:, tail:] = 0
    if hi > lo:
        view_as(band[:, head:tail], (channels, hi - lo, width))[...] = x[n, c0:c1, lo:hi]
    step_c, item = band.strides
    windows = as_strided(band, cols.shape, (step_c, dh * width * item, dw * item, item), writeable=False)
    np.copyto(cols, windows)
    # tap column b reads input column w + b*dw - left: outside [0, width) it wrapped to another row
    grid = view_as(cols, (channels, kh, kw, rows, width))
    for b in range(kw):
        first_valid = min(max(left - b * dw, 0), width)
        end_valid = max(min(width + left - b * dw, width), 0)
        if first_valid > 0:
            grid[:, :, b, :, :first_valid] = 0
        if end_valid < width:
            grid[:, :, b, :, end_valid:] = 0


def conv2d(x: np.ndarray, wmat: np.ndarray, bias, spec: ConvSpec, out: np.ndarray) -> None:
    """out (n, f, oh, ow) = conv of x; wmat is (groups, f/groups, c/groups*kh*kw) in the compute dtype."""
    g, cg, fg = spec.groups, spec.channels_per_group, spec.filters_per_group
    kh, kw, width = spec.kh, spec.kw, spec.w
    compute = wmat.dtype
    in_place = out.dtype == compute

    def tile_bytes(groups: int, rows: int) -> int:
        per_group = cg * (band_length(spec, rows) + spec.taps * rows * width) + (0 if in_place else fg * rows * width)
        return compute.itemsize * groups * per_group + 3 * 64

    units = dataclasses.replace(spec, n=spec.n * g)  # one unit per (image, group)
    plan = _tiles.plan(units, tile_bytes, NAME, key=(compute.itemsize, in_place), target_bytes=TARGET_BYTES)

    def run_tile(i: int) -> None:
        u, u1, r0, r1 = plan.tiles[i]
        while u < u1:  # a tile's groups may span images: one pass per image
            n, j0 = divmod(u, g)
            j1 = min(g, j0 + u1 - u)
            run_groups(n, j0, j1, r0, r1)
            u += j1 - j0

    def run_groups(n: int, j0: int, j1: int, r0: int, r1: int) -> None:
        groups, rows = j1 - j0, r1 - r0
        channels, length = groups * cg, rows * width
        band, cols, result = _workspace.arrays(
            ((channels, band_length(spec, rows)), compute), ((channels, kh, kw, length), compute),
            ((groups, fg, 0 if in_place else length), compute))
        fill_columns(x, spec, n, j0 * cg, j1 * cg, r0, rows, band, cols)
        f0, f1 = j0 * fg, j1 * fg
        target = out[n, f0:f1, r0:r1]
        if in_place:
            result = view_as(target, (groups, fg, length))
        np.matmul(wmat[j0:j1], view_as(cols, (groups, spec.reduction, length)), out=result)
        store(view_as(result, (1, f1 - f0, rows, width)), None if bias is None else bias[f0:f1],
              None if in_place else target[None])

    parallel_items(run_tile, len(plan.tiles), plan.threads)
    _workspace.release()
