"""Helpers of the emulator tests."""

from pathlib import Path

import numpy as np

KERNELS = Path(__file__).parent / "kernels"
CONV_TILE = 16   # output tile (and block) side of kernels/conv_tiled.cu


def kernel_path(name: str) -> str:
    return str(KERNELS / name)


def run_conv_tiled(emulator, x: np.ndarray, w: np.ndarray, y: np.ndarray, options=()) -> None:
    """Runs kernels/conv_tiled.cu ("valid" cross-correlation) on x and w into y, one block per tile."""
    n, c, h, wd = x.shape
    f, _, k, _ = w.shape
    mod = emulator.Module(path=kernel_path("conv_tiled.cu"), options=options, name_expressions=(f"conv_tiled<{k}>",))
    grid = (-(-y.shape[3] // CONV_TILE), -(-y.shape[2] // CONV_TILE), n * f)
    mod.get_function(f"conv_tiled<{k}>")(grid, (CONV_TILE, CONV_TILE),
                                         (x, w, y, np.int32(c), np.int32(h), np.int32(wd), np.int32(f)))
