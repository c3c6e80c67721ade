"""A real kernel end to end: the tiled convolution of kernels/conv_tiled.cu matches NumPy in
every thread order (test_emulator_planted_bugs.py plants its bugs in the same kernel)."""

from __future__ import annotations

import numpy as np
import pytest

from emu_support import run_conv_tiled

pytestmark = pytest.mark.emulator


def _valid_correlation(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    n, c, h, wd = x.shape
    f, _, k, _ = w.shape
    oh, ow = h - k + 1, wd - k + 1
    out = np.zeros((n, f, oh, ow))
    for a in range(k):
        for b in range(k):
            out += np.einsum("nchw,fc->nfhw", x[:, :, a:a + oh, b:b + ow].astype(np.float64), w[:, :, a, b])
    return out


@pytest.mark.parametrize("k", [3, 5])
def test_tiled_conv_matches_numpy(emulator, order, k, rng):
    n, c, h, w, f = 2, 3, 37, 21, 4
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((f, c, k, k), dtype=np.float32)
    y = np.full((n, f, h - k + 1, w - k + 1), np.nan, np.float32)
    run_conv_tiled(emulator, x, wt, y)
    np.testing.assert_allclose(y, _valid_correlation(x, wt), rtol=1e-5, atol=1e-5)

