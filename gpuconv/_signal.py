"""scipy.signal's correlate2d / convolve2d on top of conv2d.

The boundary (fill with a value, wrap, symm) is applied by gathering the padded image band by
band: each band holds the padded rows of a run of output rows, within a quarter of the
workspace cap, and is correlated with the kernel by conv2d ("valid"). No padded copy of the
whole image is made, so the scratch of a call stays under the cap for any image size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._config import config
from ._validate import array_module, check_choice, check_ndim, check_value_fits, real_number, result_dtype

MODES = ("full", "valid", "same")
BOUNDARIES = {"fill": "fill", "pad": "fill", "wrap": "wrap", "circular": "wrap", "symm": "symm",
              "symmetric": "symm"}


@dataclass(frozen=True)
class Plan:
    """The padded image as index maps: padded row i (column j) holds image row rows[i] (column
    cols[j]), -1 for fillvalue; its 'valid' correlation with weights (1, 1, KH, KW) is the result."""

    rows: np.ndarray
    cols: np.ndarray
    weights: object
    dtype: np.dtype
    fillvalue: float


def correlate(image, kernel, mode, boundary, fillvalue, backend, flip: bool):
    """correlate2d (flip=False) or convolve2d (flip=True) of validated 2-D arrays image and kernel."""
    from ._api import conv2d

    layout = plan(image, kernel, mode, boundary, fillvalue, flip)
    kh, kw = layout.weights.shape[2:]
    oh, ow, dtype = layout.rows.size - kh + 1, layout.cols.size - kw + 1, layout.dtype
    xp = array_module(image)
    row_bytes = image.itemsize * image.shape[1] + 2 * dtype.itemsize * layout.cols.size  # a padded row, cast
    band = _band_rows(row_bytes, kh, oh)
    out = xp.empty((oh, ow), dtype=dtype)
    with config.reserve((band + kh - 1) * row_bytes + band * ow * dtype.itemsize):  # the band and its result
        for i0 in range(0, oh, band):
            i1 = min(oh, i0 + band)
            padded = _gather(image, layout.rows[i0:i1 + kh - 1], layout.cols, layout.fillvalue, dtype, xp)
            out[i0:i1] = conv2d(padded[None, None], layout.weights, backend=backend)[0, 0]
    return out


def plan(image, kernel, mode, boundary, fillvalue, flip: bool) -> Plan:
    """The arguments checked, and the padded image's index maps."""
    check_ndim(image, "image", (2,), "a 2-D array (H, W)")
    check_ndim(kernel, "kernel", (2,), "a 2-D array (KH, KW)")
    check_choice(mode, "mode", MODES)
    check_choice(boundary, "boundary", tuple(BOUNDARIES), "'fill', 'wrap', 'symm'")
    if image.size == 0 or kernel.size == 0:
        raise ValueError(f"image {tuple(image.shape)} and kernel {tuple(kernel.shape)} must both be non-empty")
    fillvalue = real_number(fillvalue, "fillvalue")
    (h, w), (kh, kw) = image.shape, kernel.shape
    if mode == "valid":
        if not ((h >= kh and w >= kw) or (h <= kh and w <= kw)):
            raise ValueError(f"mode='valid': image {(h, w)} and kernel {(kh, kw)} must be at least as large "
                             f"as one another in every dimension")
        boundary, fillvalue = "fill", 0.0  # no output reads the boundary (scipy swaps the inputs)
    # Output rows are rows r0 .. r0+oh-1 of the 'full' result (likewise columns).
    if mode == "full":
        (r0, oh), (c0, ow) = (0, h + kh - 1), (0, w + kw - 1)
    elif mode == "same":
        (r0, oh), (c0, ow) = ((((kh - 1) // 2, h), ((kw - 1) // 2, w)) if flip else ((kh // 2, h), (kw // 2, w)))
    else:
        (r0, oh), (c0, ow) = (min(h, kh) - 1, abs(h - kh) + 1), (min(w, kw) - 1, abs(w - kw) + 1)
    dtype = result_dtype(image, kernel)
    check_value_fits(fillvalue, "fillvalue", dtype)
    boundary = BOUNDARIES[boundary]
    rows = _sources(np.arange(oh + kh - 1) - (kh - 1 - r0), h, boundary)
    cols = _sources(np.arange(ow + kw - 1) - (kw - 1 - c0), w, boundary)
    return Plan(rows, cols, (kernel[::-1, ::-1] if flip else kernel)[None, None], dtype, fillvalue)


def _sources(positions: np.ndarray, size: int, boundary: str) -> np.ndarray:
    """Image index read at each position of a padded axis (position 0 = the image's first):
    fill -1 outside the image; wrap periodic; symm mirrored with the edge repeated (numpy's
    'symmetric', period 2 * size)."""
    if boundary == "wrap":
        return positions % size
    if boundary == "symm":
        folded = positions % (2 * size)
        return np.where(folded < size, folded, 2 * size - 1 - folded)
    return np.where((positions >= 0) & (positions < size), positions, -1)


def _band_rows(padded_row_bytes: int, kh: int, oh: int) -> int:
    """Output rows per band: the band's padded rows (and their copies) within a quarter of the cap."""
    budget = config.workspace_bytes // 4
    rows = budget // padded_row_bytes - (kh - 1)
    if rows < 1:
        raise MemoryError(f"correlating one output row needs {kh * padded_row_bytes} bytes of padded input rows, "
                          f"more than a quarter of the workspace cap of {config.workspace_bytes} bytes "
                          f"(gpuconv.set_workspace_limit or GPUCONV_WORKSPACE_MB raise it)")
    return min(rows, oh)


def _gather(image, rows: np.ndarray, cols: np.ndarray, fillvalue: float, dtype, xp):
    """image[rows][:, cols] in dtype, fillvalue where an index is -1."""
    band = xp.take(xp.take(image, xp.asarray(np.maximum(rows, 0)), axis=0), xp.asarray(np.maximum(cols, 0)), axis=1)
    band = band.astype(dtype, copy=False)
    if (rows < 0).any():
        band[xp.asarray(rows < 0)] = fillvalue
    if (cols < 0).any():
        band[:, xp.asarray(cols < 0)] = fillvalue
    return band
