"""The CUDA backends' launch variants, forced on small shapes: each GEMM tiling and split-K, 64-bit
indices, the direct kernel's unstaged (global-memory) path and its more-than-48-KB shared-memory path.

One source for the variant tests (tests/test_cuda_variants.py: the real GPU, and the emulator where
cheap) and the compute-sanitizer driver of `make gpu-check` (tools/gpucheck/sanitize_driver.py).
`recorded_launches` lists what each call launched, so a test can tell that the variant it forced ran.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from gpuconv import _kernels

@contextlib.contextmanager
def _patched(changes):
    """Set (object, attribute, value) for the block, restoring each afterwards."""
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in changes]
    try:
        for obj, name, value in changes:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


def forced(tiling: str | None = None, index64: bool = False, unstaged: bool = False, splits: int | None = None):
    """A context in which the CUDA backends plan the implicit GEMMs with `tiling` ("large", "wide",
    "small": _kernels.gemm_tilings says which a GEMM and dtype have) and/or `splits` K splits (the
    split-K reduction runs when > 1; the workspace cap may lower it), use the 64-bit index
    instantiations, and/or find no shared memory for the direct kernel's staged tile (so it takes
    the global-memory path)."""
    from gpuconv.backends import cuda, cuda_gemm

    changes = []
    if tiling is not None:
        changes.append((cuda_gemm, "FORCE_TILING", tiling))
    if splits is not None:
        changes.append((cuda_gemm, "FORCE_SPLITS", splits))
    if index64:
        changes.append((cuda, "FORCE_INDEX64", True))
    if unstaged:
        changes.append((cuda._Device, "max_shared_bytes", lambda self: 0))
    return _patched(changes)


class _Recorded:
    """A kernel function that logs each launch (file, name, grid, block, shared) and runs it;
    attribute reads and writes (max_dynamic_shared_size_bytes) reach the real function."""

    def __init__(self, function, file, name, log):
        object.__setattr__(self, "_real", (function, file, name, log))

    def __call__(self, grid, block, args, shared_mem=0):
        function, file, name, log = self._real
        log.append((file, name, tuple(grid), tuple(block), shared_mem))
        return function(grid, block, args, shared_mem=shared_mem)

    def __getattr__(self, attribute):
        return getattr(self._real[0], attribute)

    def __setattr__(self, attribute, value):
        setattr(self._real[0], attribute, value)


@contextlib.contextmanager
def recorded_launches():
    """Yields a list that receives (file, name expression, grid, block, shared bytes) per launch."""
    log: list = []
    real = _kernels.get_function

    def recording(file, name, device_kind):
        return _Recorded(real(file, name, device_kind), file, name, log)

    with _patched([(_kernels, "get_function", recording)]):
        yield log


@contextlib.contextmanager
def poisoned_cupy():
    """cupy.empty returns NaN-filled float arrays (integers: their maximum), so that an output
    element a kernel forgets to write shows on the GPU as it does in poisoned NumPy."""
    import cupy

    real = cupy.empty

    def empty(shape, dtype=float, order="C"):
        a = real(shape, dtype=dtype, order=order)
        kind = np.dtype(dtype).kind
        a.fill(np.nan if kind == "f" else np.iinfo(a.dtype).max if kind in "iu" else 0)
        return a

    with _patched([(cupy, "empty", empty)]):
        yield


@dataclass(frozen=True)
class Variant:
    """A conv2d call under forced(**force) and the kernel (name expression with {T} and {I} for the
    element and index types) it must launch."""

    name: str
    force: dict
    x_shape: tuple
    w_shape: tuple
    kwargs: dict
    kernel: str
    dtypes: tuple = ("float16", "float32", "float64")
    emulated: bool = True  # cheap enough for the emulator

    def kernel_name(self, dtype) -> str:
        index = "long long" if self.force.get("index64") else "int"
        return self.kernel.format(T=_kernels.ELEMENT_TYPES[np.dtype(dtype).name], I=index)


_GEMM = dict(padding=1, algorithm="implicit_gemm")
_GROUPED = dict(groups=2, padding=2, padding_mode="reflect", dilation=(1, 2))
# GEMM shapes cross the tile edges: F = BM + 1 filters, N*OH*OW = 2*5*13 = 130 = BN + 2 pixels.
CONV_VARIANTS = (
    Variant("gemm large", dict(tiling="large"), (2, 3, 5, 13), (129, 3, 3, 3), _GEMM,
            "conv2d_implicit_gemm<{T}, {I}, 128, 128, 8, 8>", dtypes=("float16", "float32")),
    Variant("gemm wide", dict(tiling="wide"), (2, 3, 5, 13), (65, 3, 3, 3), _GEMM,
            "conv2d_implicit_gemm<{T}, {I}, 64, 128, 4, 8>", dtypes=("float16", "float32")),
    Variant("gemm small", dict(tiling="small"), (2, 3, 5, 13), (65, 3, 3, 3), _GEMM,
            "conv2d_implicit_gemm<{T}, {I}, 64, 64, 4, 4>"),
    # K = 8*9 = 72: 9 k steps in 3 splits, summed by splitk_reduce (with the bias).
    Variant("gemm split-K", dict(splits=3), (2, 8, 6, 5), (9, 8, 3, 3), _GEMM, "splitk_reduce<{T}, {I}>"),
    Variant("gemm 64-bit indices", dict(index64=True), (2, 4, 9, 10), (6, 2, 3, 3),
            dict(_GROUPED, algorithm="implicit_gemm"), "conv2d_implicit_gemm<{T}, {I}, 64, 64, 4, 4>"),
    Variant("direct 64-bit indices", dict(index64=True), (2, 4, 9, 10), (6, 2, 3, 3),
            dict(_GROUPED, algorithm="direct"), "conv2d_direct<{T}, {I}, 1, true>"),
    Variant("direct unstaged", dict(unstaged=True), (1, 2, 20, 20), (6, 2, 9, 9),
            dict(padding=1, padding_mode="reflect", algorithm="direct"), "conv2d_direct<{T}, {I}, 4, false>"),
    # 47x47 float64 weights: a 62 x 78 halo tile plus the weights is over 48 KB (the attribute is
    # raised); about a minute in the emulator, which tests/test_cuda_kernels.py already runs once.
    Variant("direct over 48 KB shared", dict(), (1, 1, 50, 50), (1, 1, 47, 47), dict(algorithm="direct"),
            "conv2d_direct<{T}, {I}, 1, true>", dtypes=("float64",), emulated=False),
)
