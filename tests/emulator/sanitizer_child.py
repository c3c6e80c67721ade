"""Runs one kernel of kernels/sanitizer.cu; started by test_emulator_sanitizers.py in a child
process whose environment (gpuconv.emulator.sanitizer_env) preloads ASan or TSan.
Prints "RESULT <values>" when the kernel ran to the end."""

import sys

import numpy as np

from emu_support import kernel_path
from gpuconv.emulator import Module

BLOCK = 64


def main(kernel: str) -> None:
    mod = Module(path=kernel_path("sanitizer.cu"))
    fn = mod.get_function(kernel)
    rng = np.random.default_rng(0)
    n = 2 * BLOCK
    if kernel.startswith("histogram"):
        x = rng.integers(0, 4, n).astype(np.int32)
        bins = np.zeros(4, np.uint32)
        fn(2, BLOCK, (x, bins, np.int32(n)))
        assert (bins == np.bincount(x, minlength=4)).all(), bins
        print("RESULT", bins)
    elif kernel.startswith("shared_tree_sum"):
        x = rng.standard_normal(n).astype(np.float32)
        y = np.zeros(2, np.float32)
        fn(2, BLOCK, (x, y))
        print("RESULT", y)
    else:
        x = rng.standard_normal(n).astype(np.float32)
        y = np.zeros(n, np.float32)
        fn(2, BLOCK, (x, y, np.int32(n)), shared_mem=BLOCK * 4 + (4 if kernel == "shift_shared" else 0))
        print("RESULT", y[:4])


if __name__ == "__main__":
    main(sys.argv[1])
