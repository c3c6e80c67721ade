"""Classic 2-D image kernels, as float64 (KH, KW) arrays for correlation (conv2d, correlate2d)."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._validate import as_array


def identity(size: int = 3) -> np.ndarray:
    _check_odd_size(size)
    k = np.zeros((size, size))
    k[size // 2, size // 2] = 1.0
    return k


def box(size: int = 3) -> np.ndarray:
    """Box blur: the mean of a size x size neighbourhood."""
    _check_size(size)
    return np.full((size, size), 1.0 / (size * size))


def gaussian(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """Normalised Gaussian blur, centred on the middle of a size x size grid."""
    _check_size(size)
    if not (isinstance(sigma, (int, float)) and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma={sigma!r}: must be a finite number > 0")
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r ** 2) / (2 * sigma ** 2))
    k = np.outer(g, g)
    return k / k.sum()


def sharpen() -> np.ndarray:
    return np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64)


def sobel_x() -> np.ndarray:
    """Responds to intensity rising left to right (under correlation)."""
    return np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)


def sobel_y() -> np.ndarray:
    """Responds to intensity rising top to bottom (under correlation)."""
    return sobel_x().T.copy()


def prewitt_x() -> np.ndarray:
    return np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=np.float64)


def prewitt_y() -> np.ndarray:
    return prewitt_x().T.copy()


def scharr_x() -> np.ndarray:
    return np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], dtype=np.float64)


def scharr_y() -> np.ndarray:
    return scharr_x().T.copy()


def laplacian() -> np.ndarray:
    """4-neighbour Laplacian."""
    return np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)


def emboss() -> np.ndarray:
    return np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)


NAMED = {
    "identity": identity, "box": box, "gaussian": gaussian, "sharpen": sharpen,
    "sobel_x": sobel_x, "sobel_y": sobel_y, "prewitt_x": prewitt_x, "prewitt_y": prewitt_y,
    "scharr_x": scharr_x, "scharr_y": scharr_y, "laplacian": laplacian, "emboss": emboss,
}


def bank(kernels: Iterable[str | ArrayLike], in_channels: int = 1, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Stack 2-D kernels (arrays or names from NAMED) into a conv2d weight (F, in_channels, KH, KW).

    Every kernel is applied to each input channel and the channel responses are averaged,
    so a bank built for RGB gives filter responses of the grey image. Kernels of different
    sizes are zero-padded (centred) to the largest size.
    """
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels={in_channels!r}: must be an int >= 1")
    kernels = list(kernels)
    if not kernels:
        raise ValueError("kernels is empty: give at least one kernel")
    for i, k in enumerate(kernels):
        if isinstance(k, str) and k not in NAMED:
            raise ValueError(f"kernels[{i}]={k!r}: unknown name; expected one of {sorted(NAMED)}")
    mats = [NAMED[k]() if isinstance(k, str) else as_array(k, f"kernels[{i}]").astype(np.float64)
            for i, k in enumerate(kernels)]
    for i, m in enumerate(mats):
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"kernels[{i}] has shape {m.shape}: expected a non-empty 2-D kernel")
    kh = max(m.shape[0] for m in mats)
    kw = max(m.shape[1] for m in mats)
    out = np.zeros((len(mats), in_channels, kh, kw), dtype=np.float64)
    for i, m in enumerate(mats):
        t, l = (kh - m.shape[0]) // 2, (kw - m.shape[1]) // 2
        out[i, :, t:t + m.shape[0], l:l + m.shape[1]] = m / in_channels
    return out.astype(dtype)


def _check_size(size):
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size={size!r}: must be an int >= 1")


def _check_odd_size(size):
    _check_size(size)
    if size % 2 == 0:
        raise ValueError(f"size={size!r}: must be odd so the kernel has a centre")
