"""The CUDA kernels in the emulator ("cuda-emu"): what the shared parity suite does not reach.

Tile boundaries of both conv kernels in every dimension, every implicit-GEMM tiling, the direct
kernel's global-memory fallback and its > 48 KB shared-memory path, every padding mode with
both algorithms, the 64-bit index instantiations (forced on small tensors), pooling options,
non-contiguous inputs, and thread orders. Every result is compared with the float64 reference
in gpuconv/_reference.py, outputs NaN-poisoned before the call.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _reference as ref
from gpuconv._geometry import conv_spec
from support import (DTYPES, as_reference_input, assert_close, assert_same, poisoned_numpy_backend, random_array,
                     stable_seed)

pytestmark = pytest.mark.emulator

ALGORITHMS = ("direct", "implicit_gemm")


@pytest.fixture
def cuda_module():
    from gpuconv.backends import cuda

    return cuda


def check_conv(x_shape, w_shape, dtype=np.float32, algorithm="auto", seed=0, bias=True, **kwargs):
    rng = np.random.default_rng(seed)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[0],), dtype) if bias else None
    expected = ref.conv2d(as_reference_input(x), as_reference_input(w), as_reference_input(b), **kwargs)
    with poisoned_numpy_backend():
        out = gpuconv.conv2d(x, w, b, **kwargs, algorithm=algorithm, backend="cuda-emu")
    assert isinstance(out, np.ndarray)
    assert_close(out, expected, dtype, f"cuda-emu conv2d[{algorithm}] x={x_shape} w={w_shape} {kwargs}")


# ---- direct kernel: 16 x 32 output tiles, batches of 4 filters ----------------------------------
@pytest.mark.parametrize("out_hw", [(1, 1), (15, 31), (16, 32), (17, 33)])
def test_direct_tile_boundaries(emu, out_hw):
    oh, ow = out_hw
    check_conv((1, 2, oh + 2, ow + 2), (5, 2, 3, 3), algorithm="direct")  # F=5: not a multiple of 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_padding_modes_both_algorithms(emu, algorithm, mode, dtype):
    check_conv((2, 4, 9, 11), (6, 2, 3, 4), dtype, algorithm, seed=stable_seed(mode, algorithm),
               padding=((2, 1), (3, 2)), groups=2, stride=(1, 2), padding_mode=mode)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", [
    dict(x=(2, 3, 10, 9), w=(4, 3, 1, 1)),                                  # 1x1
    dict(x=(1, 3, 11, 13), w=(2, 3, 2, 2), stride=3),                        # stride > kernel
    dict(x=(2, 5, 9, 8), w=(5, 1, 3, 3), groups=5, padding=1),               # depthwise, groups = C
    dict(x=(1, 6, 9, 9), w=(9, 2, 3, 3), groups=3, dilation=2, padding=2),   # grouped + dilated
    dict(x=(1, 2, 7, 12), w=(3, 2, 5, 7), padding="same", stride=2),         # even pads, "same"
])
def test_conv_shapes(emu, algorithm, case):
    case = dict(case)
    check_conv(case.pop("x"), case.pop("w"), algorithm=algorithm, **case)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("filters", [3, 6])  # filter batches of 1 and of 4
def test_direct_fallback_when_the_halo_tile_does_not_fit(emu, cuda_module, monkeypatch, filters, dtype):
    spec = conv_spec((1, 2, 20, 20), (filters, 2, 9, 9), 1, 1, 1, 1, "reflect")
    monkeypatch.setattr(cuda_module, "EMULATED_SHARED_BYTES", 4096)
    plan = emu._plan(spec, "direct", dtype)
    assert not plan.staged and plan.filter_batch == (4 if filters >= 4 else 1)
    check_conv((1, 2, 20, 20), (filters, 2, 9, 9), dtype, "direct", padding=1, padding_mode="reflect")


def test_direct_large_kernel_raises_the_shared_memory_attribute(emu):
    """A 47x47 float64 kernel: halo tile of 62 x 78 doubles plus the weights, over 48 KB, under 96 KB."""
    spec = conv_spec((1, 1, 50, 50), (1, 1, 47, 47), 1, 0, 1, 1, "zeros")
    plan = emu._plan(spec, "direct", np.float64)
    assert plan.staged and plan.shared > 48 * 1024
    check_conv((1, 1, 50, 50), (1, 1, 47, 47), np.float64, "direct", bias=False)


def test_direct_kernel_too_large_for_any_shared_memory(emu):
    """A 47x61 float64 kernel with stride 2 needs > 96 KB: the global-memory fallback runs."""
    spec = conv_spec((1, 1, 50, 64), (1, 1, 47, 61), 2, 0, 1, 1, "zeros")
    assert not emu._plan(spec, "direct", np.float64).staged
    check_conv((1, 1, 50, 64), (1, 1, 47, 61), np.float64, "direct", stride=2)


# ---- implicit GEMM: 64x64 (small) and 128x128 (large) tiles, BK = 8 -----------------------------
@pytest.mark.parametrize("filters", [1, 63, 64, 65])
@pytest.mark.parametrize("x_shape", [(1, 3, 1, 1), (1, 3, 7, 9), (1, 3, 8, 8), (1, 3, 5, 13), (2, 3, 5, 13)])
def test_implicit_gemm_small_tile_boundaries(emu, filters, x_shape):
    """BM = BN = 64: F and N*OH*OW of 1, 63, 64, 65 (and 130)."""
    check_conv(x_shape, (filters, 3, 1, 1), algorithm="implicit_gemm")


@pytest.mark.parametrize("channels", [7, 8, 9, 17])  # K = C crosses BK = 8
def test_implicit_gemm_k_boundaries(emu, channels):
    check_conv((1, channels, 6, 5), (3, channels, 1, 1), algorithm="implicit_gemm")


@pytest.mark.parametrize("index64", [False, True])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("tiling, filters", [("large", 129), ("wide", 65)])
def test_implicit_gemm_wider_tilings(emu, cuda_module, monkeypatch, dtype, tiling, filters, index64):
    """The 128x128 (8x8) and 64x128 (4x8) tilings, forced on a small shape crossing their tile edges
    (F = BM + 1, N*OH*OW = 130 = BN + 2), with 32- and 64-bit indices."""
    from gpuconv.backends import cuda_gemm

    monkeypatch.setattr(cuda_gemm, "FORCE_TILING", tiling)
    monkeypatch.setattr(cuda_module, "FORCE_INDEX64", index64)
    spec = conv_spec((2, 3, 5, 13), (filters, 3, 3, 3), 1, 1, 1, 1, "zeros")
    assert emu._plan(spec, "implicit_gemm", dtype).tiling == tiling
    check_conv((2, 3, 5, 13), (filters, 3, 3, 3), dtype, "implicit_gemm", padding=1)


# ---- 64-bit index instantiations, forced on small tensors -------------------------------------------
@pytest.fixture
def index64(cuda_module, monkeypatch):
    monkeypatch.setattr(cuda_module, "FORCE_INDEX64", True)
    assert cuda_module._index_type(np.zeros(1))[0] == "long long"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_conv_64bit_indices(emu, index64, algorithm, dtype):
    check_conv((2, 4, 9, 10), (6, 2, 3, 3), dtype, algorithm, groups=2, padding=2, padding_mode="reflect",
               dilation=(1, 2))


def test_pool_and_pad_64bit_indices(emu, index64):
    check_pool(np.float32, 3, 2, 1, dilation=2, ceil_mode=True)
    check_avg(np.float32, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    check_pad(np.float32, ((2, 1), (0, 3)), "circular")


# ---- pooling and padding ------------------------------------------------------------------------
def pool_input(dtype, seed, shape=(2, 3, 11, 13)):
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape, dtype)
    x[rng.random(shape) < 0.1] = np.nan
    x[rng.random(shape) < 0.05] = -np.inf
    return x


def check_pool(dtype, kernel_size, stride, padding, dilation=1, ceil_mode=False, seed=1, shape=(2, 3, 11, 13)):
    x = pool_input(dtype, seed, shape)
    expected, expected_idx = ref.max_pool2d(as_reference_input(x), kernel_size, stride, padding, dilation, ceil_mode)
    with poisoned_numpy_backend():
        out, idx = gpuconv.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, True, backend="cuda-emu")
        plain = gpuconv.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, backend="cuda-emu")
    what = f"cuda-emu max_pool2d k={kernel_size} s={stride} p={padding} d={dilation} ceil={ceil_mode}"
    assert_same(out, expected, dtype, what)
    assert_same(plain, expected, dtype, what)
    assert_same(idx, expected_idx, np.int64, what + " indices")


def check_avg(dtype, kernel_size, stride, padding, ceil_mode=False, count_include_pad=True, divisor_override=None,
              seed=2):
    x = random_array(np.random.default_rng(seed), (2, 3, 11, 13), dtype)
    expected = ref.avg_pool2d(as_reference_input(x), kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override)
    with poisoned_numpy_backend():
        out = gpuconv.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                                 backend="cuda-emu")
    assert_close(out, expected, dtype, f"cuda-emu avg_pool2d k={kernel_size} s={stride} p={padding} ceil={ceil_mode} "
                                       f"include_pad={count_include_pad} divisor={divisor_override}")


def check_pad(dtype, padding, mode, value=0.0, seed=3):
    x = random_array(np.random.default_rng(seed), (2, 3, 5, 6), dtype)
    expected = ref.pad2d(as_reference_input(x), ref.explicit_pads(padding), mode, value)
    with poisoned_numpy_backend():
        out = gpuconv.pad2d(x, padding, mode, value, backend="cuda-emu")
    assert_same(out, expected.astype(dtype), dtype, f"cuda-emu pad2d {padding} {mode}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", [
    (3, 2, 1, 1, False), (3, 2, 1, 1, True), ((2, 3), (3, 1), (1, 1), 1, True), (3, 1, 1, (2, 3), False),
    (2, None, 0, 1, True), ((3, 1), 4, (1, 0), 3, True), (1, 1, 0, 1, False),
])
def test_max_pool_options(emu, dtype, params):
    check_pool(dtype, *params)


def test_max_pool_window_entirely_in_padding_gives_minus_inf_and_index_minus_one(emu):
    """Kernel width 2, dilation 3, left pad 1 on a 2-wide input: the only window taps columns -1 and 2."""
    check_pool(np.float32, (1, 2), 2, (0, 1), dilation=(1, 3), shape=(1, 2, 3, 2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", [
    (3, 2, 1, False, True, None), (3, 2, 1, True, False, None), ((2, 4), (1, 3), (1, 2), True, True, None),
    (3, 2, 1, True, True, 5), (2, None, 0, False, False, None), (5, 3, 2, True, False, None),
])
def test_avg_pool_options(emu, dtype, params):
    check_avg(dtype, *params)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_modes(emu, dtype, mode):
    check_pad(dtype, ((4, 1), (2, 5)), mode, value=2.5 if mode == "constant" else 0.0)


# ---- inputs ---------------------------------------------------------------------------------------
def test_non_contiguous_inputs(emu):
    rng = np.random.default_rng(4)
    x = random_array(rng, (2, 7, 9, 3), np.float32).transpose(0, 3, 1, 2)[:, :, ::2]  # (2, 3, 5, 7), strided
    w = random_array(rng, (4, 6, 3, 3), np.float32)[:, ::2]
    expected = ref.conv2d(as_reference_input(x), as_reference_input(w), padding=1)
    for algorithm in ALGORITHMS:
        assert_close(gpuconv.conv2d(x, w, padding=1, algorithm=algorithm, backend="cuda-emu"), expected, np.float32,
                     f"strided inputs, {algorithm}")
    assert_same(gpuconv.pad2d(x, 1, "reflect", backend="cuda-emu"),
                ref.pad2d(as_reference_input(x), (1, 1, 1, 1), "reflect").astype(np.float32))


# ---- thread orders ------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["forward", "reverse", "random"])
def test_thread_orders(emu, order):
    from gpuconv import emulator

    emulator.set_order(order, seed=7)
    try:
        for algorithm in ALGORITHMS:
            check_conv((2, 3, 9, 17), (5, 3, 3, 3), algorithm=algorithm, padding=1, padding_mode="circular")
        check_pool(np.float32, 3, 2, 1, ceil_mode=True)
        check_avg(np.float32, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    finally:
        emulator.set_order("forward")
