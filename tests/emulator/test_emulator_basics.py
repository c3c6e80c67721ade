"""The emulator runs CUDA programs with CUDA's semantics: each construct in a small kernel,
compared with NumPy, in every thread order."""

from __future__ import annotations

import numpy as np
import pytest

from emu_support import kernel_path, run_conv_tiled

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
def test_tiled_conv_matches_numpy(emulator, order, k):
    rng = np.random.default_rng()
    n, c, h, w, f = 2, 3, 37, 21, 4
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((f, c, k, k), dtype=np.float32)
    y = np.full((n, f, h - k + 1, w - k + 1), np.nan, np.float32)
    run_conv_tiled(emulator, x, wt, y)
    np.testing.assert_allclose(y, _valid_correlation(x, wt), rtol=1e-5, atol=1e-5)


def test_python_int_for_int_parameter_is_type_error(emulator):
    mod = emulator.Module(path=kernel_path("conv_tiled.cu"), name_expressions=("conv_tiled<3>",))
    fn = mod.get_function("conv_tiled<3>")
    x = np.zeros((1, 1, 18, 18), np.float32)
    w = np.zeros((1, 1, 3, 3), np.float32)
    y = np.zeros((1, 1, 16, 16), np.float32)
    with pytest.raises(TypeError, match="parameter is int, pass np.int32"):
        fn((1, 1, 1), (16, 16), (x, w, y, 1, np.int32(18), np.int32(18), np.int32(1)))
    with pytest.raises(TypeError, match="int64 scalar"):
        fn((1, 1, 1), (16, 16), (x, w, y, np.int64(1), np.int32(18), np.int32(18), np.int32(1)))
    with pytest.raises(TypeError, match="dtype float64"):
        fn((1, 1, 1), (16, 16), (x.astype(np.float64), w, y, np.int32(1), np.int32(18), np.int32(18), np.int32(1)))
