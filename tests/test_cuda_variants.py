"""The CUDA backends' launch variants, forced on small shapes (tests/cuda_variants.py), on the real GPU
(marked `gpu`: GPUCONV_REQUIRE_GPU=1 turns a missing GPU into a failure) and in the emulator where
cheap: every GEMM tiling, split-K, 64-bit indices (conv, pooling, padding), the direct kernel's unstaged path
and its more-than-48-KB shared-memory path. Each checks the launched kernel, then the result against
the float64 reference with the outputs poisoned before the call. Also the rule max pooling follows
for float32 subnormals, which CuPy's -ftz=true may change on the GPU."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpuconv
from gpuconv import _reference as ref
from cuda_variants import CONV_VARIANTS, forced, poisoned_cupy, recorded_launches
from support import (as_reference_input, assert_close, assert_same, poisoned_numpy_backend, random_array,
                     require_backend, to_backend)

CUDA_BACKENDS = [pytest.param("cuda-emu", marks=pytest.mark.emulator), pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(scope="module", params=CUDA_BACKENDS)
def cuda_backend(request) -> str:
    return require_backend(request.param)


def poisoned(backend: str):
    """Outputs of the backend's allocations NaN-filled (CuPy's on the GPU, NumPy's in the emulator)."""
    return poisoned_cupy() if backend == "cuda" else poisoned_numpy_backend()


def launched(log) -> list[str]:
    return [name for _, name, *_ in log]


@pytest.mark.parametrize("variant, dtype", [(v, d) for v in CONV_VARIANTS for d in v.dtypes],
                         ids=lambda p: p.name if hasattr(p, "name") else str(p))
def test_conv_variant(cuda_backend, variant, dtype):
    if cuda_backend == "cuda-emu" and not variant.emulated:
        pytest.skip("too slow for the emulator (tests/test_cuda_kernels.py runs this kernel once in float64)")
    seed = CONV_VARIANTS.index(variant) * 10 + ("float16", "float32", "float64").index(dtype)
    rng = np.random.default_rng(seed)
    x, w, b = (random_array(rng, shape, dtype) for shape in (variant.x_shape, variant.w_shape, variant.w_shape[:1]))
    options = {k: v for k, v in variant.kwargs.items() if k != "algorithm"}
    expected = ref.conv2d(*map(as_reference_input, (x, w, b)), **options)
    with forced(**variant.force), recorded_launches() as log, poisoned(cuda_backend):
        out = gpuconv.conv2d(*(to_backend(a, cuda_backend) for a in (x, w, b)), **variant.kwargs,
                             backend=cuda_backend)
    what = f"{cuda_backend} {variant.name} {dtype} (seed {seed})"
    assert variant.kernel_name(dtype) in launched(log), f"{what}: launched {launched(log)}"
    if variant.name == "direct over 48 KB shared":
        assert max(shared for *_, shared in log) > 48 * 1024, f"{what}: {log}"
    assert_close(out, expected, dtype, what)


def test_pool_and_pad_with_64bit_indices(cuda_backend):
    rng = np.random.default_rng(11)
    x = random_array(rng, (2, 3, 11, 13), np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    xd = to_backend(x, cuda_backend)
    values, indices = ref.max_pool2d(x, 3, 2, 1, 2, True)
    with forced(index64=True), recorded_launches() as log, poisoned(cuda_backend):
        out, idx = gpuconv.max_pool2d(xd, 3, 2, 1, 2, ceil_mode=True, return_indices=True, backend=cuda_backend)
        avg = gpuconv.avg_pool2d(xd, 3, 2, 1, ceil_mode=True, count_include_pad=False, backend=cuda_backend)
        padded = gpuconv.pad2d(xd, ((2, 1), (0, 3)), "circular", backend=cuda_backend)
    assert {"max_pool2d<float, long long>", "avg_pool2d<float, long long>", "pad2d<float, long long>"} <= \
        set(launched(log)), launched(log)
    assert_same(out, values, np.float32, "max_pool2d, 64-bit indices")
    assert_same(idx, indices, np.int64, "max_pool2d indices, 64-bit indices")
    assert_close(avg, ref.avg_pool2d(x, 3, 2, 1, True, False), np.float32, "avg_pool2d, 64-bit indices")
    assert_same(padded, ref.pad2d(x, (2, 1, 0, 3), "circular").astype(np.float32), np.float32, "pad2d, 64-bit")


# ---- float32 subnormals in max pooling ------------------------------------------------------------------
TINY = np.float32(1e-40)  # subnormal: float32's smallest normal is about 1.18e-38
# Windows of a 2x2 pooling (row-major taps) whose order under exact comparison differs from the
# order with subnormals flushed to (signed) zero, as CuPy compiles (-ftz=true):
SUBNORMAL_WINDOWS = np.array([
    [[TINY, 3 * TINY], [2 * TINY, 0]],      # exact: 3e-40 at 1; flushed: all tie at 0, the first wins
    [[0, TINY], [0, 0]],                    # exact: 1e-40 at 1; flushed: 0 at 0
    [[-TINY, 0], [-2 * TINY, -TINY]],       # exact: 0 at 1; flushed: -1e-40 at 0 (-0 == 0)
], dtype=np.float32)


def subnormal_input() -> np.ndarray:
    """(1, 3, 2, 2): one window per channel."""
    return SUBNORMAL_WINDOWS[None].copy()


def test_max_pool_compares_float32_subnormals_exactly_on_the_cpu_paths(backend):
    """The rule the README states for the NumPy backend and the emulator (and PyTorch's CPU): exact
    IEEE comparison, so the largest subnormal wins with its index."""
    if backend == "cuda":
        pytest.skip("the GPU's rule: test_gpu_max_pool_float32_subnormals")
    x = subnormal_input()
    values, indices = ref.max_pool2d(x.astype(np.float64), 2)
    out, idx = gpuconv.max_pool2d(x, 2, return_indices=True, backend=backend)
    assert_same(out, values.astype(np.float32), np.float32, f"{backend} max_pool2d of subnormals")
    assert_same(idx, indices, np.int64, f"{backend} max_pool2d indices of subnormals")
    assert idx.ravel().tolist() == [1, 1, 1]


def flushed_rule(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling of 2x2 windows with every comparison made on subnormals flushed to signed zero
    (-0 == 0) and the value itself moved unflushed: what CuPy's -ftz=true predicts (README, max pooling row)."""
    flushed = np.where(np.abs(x) < np.finfo(np.float32).tiny, np.float32(0), x)
    n, c = x.shape[:2]
    planes, keys = x.reshape(n * c, 4), flushed.reshape(n * c, 4)
    best = np.argmax(keys, axis=1)  # a tap replaces the running max only when strictly greater: the first max wins
    values = planes[np.arange(len(best)), best]
    return values.reshape(n, c, 1, 1), best.reshape(n, c, 1, 1).astype(np.int64)


@pytest.mark.gpu
def test_gpu_max_pool_float32_subnormals():
    """On the GPU, CuPy compiles with -ftz=true: the README predicts that comparisons then see
    float32 subnormals as zero, so a window of subnormals ties and its first element wins. The GPU
    must follow either that rule or the exact one; which one it follows is reported as a warning
    (the README states it)."""
    require_backend("cuda")
    import cupy

    x = subnormal_input()
    exact = ref.max_pool2d(x.astype(np.float64), 2)
    out, idx = gpuconv.max_pool2d(cupy.asarray(x), 2, return_indices=True, backend="cuda")
    got = (out.get(), idx.get())
    rules = {"exact": (exact[0].astype(np.float32), exact[1]), "flush-to-zero": flushed_rule(x)}
    followed = [name for name, (values, indices) in rules.items()
                if np.array_equal(got[1], indices) and np.array_equal(got[0].view(np.int32), values.view(np.int32))]
    assert followed, f"max_pool2d of subnormals on the GPU: values {got[0].ravel()}, indices {got[1].ravel()}: " \
                     f"neither rule ({rules})"
    warnings.warn(f"max_pool2d on this GPU compares float32 subnormals by the {followed[0]} rule", stacklevel=1)
