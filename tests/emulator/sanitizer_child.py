"""Runs one kernel of kernels/sanitizer.cu or kernels/tensor_cores.cu; started by
test_emulator_sanitizers.py in a child process whose environment (gpuconv.emulator.sanitizer_env)
preloads ASan or TSan. Prints "RESULT <values>" when a kernel ran to the end (each kernel named
on the command line, in turn)."""

import sys

import numpy as np

from emu_support import kernel_path
from gpuconv.emulator import Module

BLOCK = 64


# kernels/tensor_cores.cu; "_synced": the same kernel with its barrier
TENSOR_CORE_KERNELS = ("load_past_the_end", "neighbour_copy", "neighbour_copy_synced", "store_then_other_warp_reads",
                       "store_then_other_warp_reads_synced", "streamed_sum<3>", "warp_gemm")
WARP_GEMM = "warp_gemm<16, 16, 16, __half, nvcuda::wmma::row_major, nvcuda::wmma::col_major, true, false>"


def tensor_core_kernel(kernel: str) -> None:
    mod = Module(path=kernel_path("tensor_cores.cu"), options=("-std=c++17",),
                 name_expressions=("streamed_sum<3>", WARP_GEMM))
    rng = np.random.default_rng(0)
    halves = [rng.standard_normal(256).astype(np.float16) for _ in range(2)]
    synced = np.int32(kernel.endswith("_synced"))
    name = kernel.removesuffix("_synced")
    if name == "streamed_sum<3>":
        y = np.zeros(1024, np.float32)
        mod.get_function(name)(1, 256, (rng.standard_normal(3000).astype(np.float32), y, np.int32(3000)))
    elif name == "warp_gemm":
        y = np.zeros(256, np.float32)
        mod.get_function(WARP_GEMM)(1, 32, (*halves, np.zeros(256, np.float32), y, np.int32(16), np.int32(16),
                                            np.int32(16), np.float32(1)))
    elif name == "neighbour_copy":
        y = np.zeros(256, np.float32)
        mod.get_function(name)(1, 64, (rng.standard_normal(256).astype(np.float32), y, synced))
    elif name == "store_then_other_warp_reads":
        y = np.zeros(256, np.float32)
        mod.get_function(name)(1, 64, (*halves, y, synced))
    else:  # load_past_the_end
        y = np.zeros(256, np.float32)
        mod.get_function(name)(1, 32, (*halves, y))
    print("RESULT", y[:4])


def main(kernel: str) -> None:
    if kernel in TENSOR_CORE_KERNELS:
        return tensor_core_kernel(kernel)
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
    for name in sys.argv[1:]:
        main(name)
