"""conv2d's weight gradient: dw[group] = sum over images and output pixels of the gradient
(fg, pixels) times the im2col columns (cg*kh*kw, pixels) transposed, as one GEMM per tile and
group, with the reduction over pixels inside the GEMM.

- "im2col" (every shape): a tile's columns come from _tap_windows.py, laid out (C, taps, images,
  length) so that one GEMM reduces over all of the tile's images; the gradient is copied into
  the same layout (zero in the grid's spare columns, whose columns are zeroed too).
- "shifted" (stride 1, zero padding, output as wide as the input): the flat-shift columns of
  shifted.py over (image, block of groups, rows) tiles, the gradient read in place.

Determinism: tiles are cut for _tiles.FIXED_PARTITION_THREADS threads whatever the thread count;
each slot sums the GEMMs of a fixed run of consecutive tiles in order, then the slots are added
in order: the same bits for every thread count.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..._config import config
from ..._geometry import ConvSpec
from ..._validate import accumulation_dtype
from . import _tiles, _workspace, shifted
from ._threads import parallel_items
from ._tap_windows import tap_windows
from ._views import view_as

ALGORITHMS = ("im2col", "shifted")


def applicable(spec: ConvSpec, name: str) -> str | None:
    """None, or the rule that `name` needs."""
    if name == "shifted":
        return shifted.applicable(spec)
    return None


def _max_slots(result_bytes: int) -> int:
    """Most slots of the reduction (each holds a partial result): set by the cap, never by the thread count."""
    return max(1, min(_tiles.FIXED_PARTITION_THREADS, config.workspace_bytes // 4 // result_bytes))


def _reduce(tile_count: int, slots: int, threads: int, result_shape, compute, run_tile) -> np.ndarray:
    """Sum over tiles of run_tile(i, partial) (which writes tile i's terms into `partial`, a zeroed
    array of result_shape, by adding), slot by slot in tile order, then over the slots in order."""
    (acc,) = _workspace.arrays(((slots,) + tuple(result_shape), compute), slot="grad_sum")
    acc.fill(0)
    bounds = [tile_count * k // slots for k in range(slots + 1)]

    def run_slot(k: int) -> None:
        for i in range(bounds[k], bounds[k + 1]):
            run_tile(i, acc[k])

    parallel_items(run_slot, slots, min(threads, slots))
    total = acc[0].copy()
    for k in range(1, slots):
        total += acc[k]
    _workspace.release()
    return total


def _accumulate(partial: np.ndarray, a: np.ndarray, b: np.ndarray, temp: np.ndarray) -> None:
    """partial += a @ b."""
    np.matmul(a, b, out=temp)
    partial += temp


def conv2d_weight(x: np.ndarray, grad: np.ndarray, spec: ConvSpec, name: str) -> np.ndarray:
    """dw (f, c/groups, kh, kw) of a zero-padded conv2d (spec) of x, from its output gradient grad."""
    compute = accumulation_dtype(x.dtype)
    grad = np.ascontiguousarray(grad)
    run = _im2col if name == "im2col" else _shifted
    result = run(x, grad, spec, compute)
    return result.reshape(spec.f, spec.channels_per_group, spec.kh, spec.kw).astype(x.dtype, copy=False)


def _im2col(x, grad, spec: ConvSpec, compute) -> np.ndarray:
    windows = tap_windows(spec)
    g, fg = spec.groups, spec.filters_per_group
    taps, depth = spec.taps, spec.reduction
    grid_w, ow = windows.grid_w, spec.ow
    result_bytes = g * fg * depth * compute.itemsize
    max_slots = _max_slots(result_bytes)

    def tile_bytes(images: int, rows: int) -> int:
        length = images * rows * grid_w
        gathered = int(np.prod(windows.gather_shape(images, rows)))
        return compute.itemsize * (gathered + (spec.c * taps + spec.f) * length) + result_bytes + 4 * 64

    plan = _tiles.plan(spec, tile_bytes, "im2col weight gradient", key=(compute.itemsize, "dw"),
                       reserved=max_slots * result_bytes, partition_threads=_tiles.FIXED_PARTITION_THREADS)

    def run_tile(i: int, partial: np.ndarray) -> None:
        n0, n1, r0, r1 = plan.tiles[i]
        nt, rows = n1 - n0, r1 - r0
        length = rows * grid_w
        gathered, cols, gmat, temp = _workspace.arrays(
            (windows.gather_shape(nt, rows), compute), ((spec.c, taps, nt, length), compute),
            ((spec.f, nt, rows, grid_w), compute), ((g, fg, depth), compute))
        tile = windows.load(x, n0, n1, r0, rows, gathered)
        tile.copy_all(cols.transpose(2, 0, 1, 3))  # a view: copy_all only splits its axes
        if grid_w > ow:  # the spare columns of every grid row (and the last row's unwritten tail)
            view_as(cols, (spec.c, taps, nt, rows, grid_w))[..., ow:] = 0
            gmat[..., ow:] = 0
        np.copyto(gmat[..., :ow], grad[n0:n1, :, r0:r1].transpose(1, 0, 2, 3))
        _accumulate(partial, view_as(gmat, (g, fg, nt * length)),
                    view_as(cols, (g, depth, nt * length)).transpose(0, 2, 1), temp)

    slots = min(max_slots, len(plan.tiles))
    return _reduce(len(plan.tiles), slots, plan.threads, (g, fg, depth), compute, run_tile)


def _shifted(x, grad, spec: ConvSpec, compute) -> np.ndarray:
    g, cg, fg = spec.groups, spec.channels_per_group, spec.filters_per_group
    kh, kw, width = spec.kh, spec.kw, spec.w
    depth = spec.reduction
    converted = grad.dtype != compute
    result_bytes = g * fg * depth * compute.itemsize
    max_slots = _max_slots(result_bytes)

    def tile_bytes(groups: int, rows: int) -> int:
        length = rows * width
        per_group = cg * (shifted.band_length(spec, rows) + spec.taps * length) + fg * depth \
            + (fg * length if converted else 0)
        return compute.itemsize * groups * per_group + 4 * 64

    units = dataclasses.replace(spec, n=spec.n * g)  # one unit per (image, group)
    plan = _tiles.plan(units, tile_bytes, "shifted weight gradient", key=(compute.itemsize, converted, "dw"),
                       target_bytes=shifted.TARGET_BYTES, reserved=max_slots * result_bytes,
                       partition_threads=_tiles.FIXED_PARTITION_THREADS)

    def run_tile(i: int, partial: np.ndarray) -> None:
        u, u1, r0, r1 = plan.tiles[i]
        while u < u1:  # a tile's groups may span images: one pass per image
            n, j0 = divmod(u, g)
            j1 = min(g, j0 + u1 - u)
            run_groups(n, j0, j1, r0, r1, partial)
            u += j1 - j0

    def run_groups(n: int, j0: int, j1: int, r0: int, r1: int, partial: np.ndarray) -> None:
        groups, rows = j1 - j0, r1 - r0
        channels, length = groups * cg, rows * width
        band, cols, temp, gmat = _workspace.arrays(
            ((channels, shifted.band_length(spec, rows)), compute), ((channels, kh, kw, length), compute),
            ((groups, fg, depth), compute), ((groups, fg, length if converted else 0), compute))
        shifted.fill_columns(x, spec, n, j0 * cg, j1 * cg, r0, rows, band, cols)
        source = view_as(grad[n, j0 * fg:j1 * fg, r0:r1], (groups, fg, length))
        if converted:
            np.copyto(gmat, source)
            source = gmat
        _accumulate(partial[j0:j1], source, view_as(cols, (groups, depth, length)).transpose(0, 2, 1), temp)

    slots = min(max_slots, len(plan.tiles))
    return _reduce(len(plan.tiles), slots, plan.threads, (g, fg, depth), compute, run_tile)
