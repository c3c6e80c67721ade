"""The tensor-core convolution of the CUDA backends (cuda/conv_implicit_gemm_tc.cu): when it applies,
its grid, shared memory and weight layout, and its launch.

float16 multiplies on tensor cores in float16 with float32 accumulation (compute capability >= 7.0);
float32 only when the call allows TF32 (precision="tf32"; compute capability >= 8.0), TF32 products
with float32 accumulation; float64 never (the SIMT kernels compute it).
"""
from __future__ import annotations

import numpy as np

from .. import _kernels
from . import is_cupy_array

ALGORITHM = "implicit_gemm_tc"
FILE = "conv_implicit_gemm_tc.cu"
MIN_CAPABILITY = {np.dtype(np.float16): 70, np.dtype(np.float32): 80}  # sm_70 HMMA, sm_80 TF32


def refusal(dtype, precision: str, capability: int) -> str | None:
    """Why the tensor-core kernel cannot compute `dtype` under `precision` on this device, or None."""
    dtype = np.dtype(dtype)
    if dtype not in MIN_CAPABILITY:
        return f"it computes float16, and float32 with precision='tf32'; {dtype} has no tensor-core path here"
    if dtype == np.float32 and precision != "tf32":
        return ("it computes float32 in TF32 (10-bit mantissa products), so only when asked: pass "
                "precision='tf32' or run inside gpuconv.precision('tf32')")
    if capability < MIN_CAPABILITY[dtype]:
        return (f"{dtype} tensor cores need compute capability >= {MIN_CAPABILITY[dtype] / 10:.1f}; this device has "
                f"{capability / 10:.1f}")
    return None


def block_m(filters_per_group: int) -> int:
    """Filters per block tile: 64 when a group has at most 64 (a 128-row tile would be half empty)."""
    k = _kernels.constants(FILE)
    return k["TC_BM_NARROW"] if filters_per_group <= k["TC_BM_NARROW"] else k["TC_BM_WIDE"]


def shared_bytes(itemsize: int, bm: int) -> int:
    """Dynamic shared memory of one block: TC_STAGES weight tiles (bm rows of TC_BK values) and two
    im2col tiles (TC_BK rows of TC_BN values) during the main loop, then the float accumulator tile
    (bm rows of TC_BN floats) in the same memory; every row padded by TC_ROW_PAD_BYTES."""
    k = _kernels.constants(FILE)
    pad = k["TC_ROW_PAD_BYTES"]
    weights = bm * (k["TC_BK"] * itemsize + pad)
    columns = k["TC_BK"] * (k["TC_BN"] * itemsize + pad)
    accumulators = bm * (k["TC_BN"] * 4 + pad)
    return max(k["TC_STAGES"] * weights + 2 * columns, accumulators)


class TensorCorePlan:
    """Tile, grid, block, shared memory and padded reduction length of conv2d_implicit_gemm_tc for one call."""

    def __init__(self, spec, dtype, precision: str, capability: int, max_shared: int):
        from .cuda import MAX_GRID_X, MAX_GRID_YZ, _ceil_div  # here: cuda.py imports this module

        reason = refusal(dtype, precision, capability)
        if reason:
            raise ValueError(f"algorithm={ALGORITHM!r} cannot run this call: {reason}")
        k = _kernels.constants(FILE)
        fg, pixels = spec.filters_per_group, spec.n * spec.out_pixels
        self.block_m = block_m(fg)
        self.block = (k["TC_THREADS"], 1, 1)
        self.grid = (_ceil_div(pixels, k["TC_BN"]), spec.groups * _ceil_div(fg, self.block_m), 1)
        if self.grid[0] > MAX_GRID_X or self.grid[1] > MAX_GRID_YZ:
            raise ValueError(f"algorithm={ALGORITHM!r} needs groups * ceil(F/groups / {self.block_m}) <= {MAX_GRID_YZ} "
                             f"and ceil(N*OH*OW / {k['TC_BN']}) <= {MAX_GRID_X}; got groups={spec.groups}, "
                             f"F={spec.f}, N*OH*OW={pixels}")
        self.shared = shared_bytes(np.dtype(dtype).itemsize, self.block_m)
        if self.shared > max_shared:
            raise ValueError(f"algorithm={ALGORITHM!r} needs {self.shared} bytes of shared memory per block; this "
                             f"device allows {max_shared}")
        self.k_total = spec.reduction
        self.k_padded = _ceil_div(self.k_total, k["TC_BK"]) * k["TC_BK"]

    def weights(self, xp, w):
        """w (F, C/groups, KH, KW) as the kernel reads it: (groups, F/groups, K) rows zero-padded to a
        multiple of TC_BK, C-contiguous and 16-byte aligned (the kernel copies whole rows 16 bytes at
        a time). w itself when it already is all that (K a multiple of TC_BK)."""
        f = w.shape[0]
        rows = w.reshape(f, self.k_total)
        if self.k_padded == self.k_total and rows.flags.c_contiguous and _address(rows) % 16 == 0:
            return rows
        padded = xp.zeros((f, self.k_padded), dtype=w.dtype)
        padded[:, :self.k_total] = rows
        return padded


def _address(a) -> int:
    """The address of a's first element (NumPy or CuPy)."""
    return a.data.ptr if is_cupy_array(a) else a.ctypes.data
