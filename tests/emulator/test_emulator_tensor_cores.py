"""The emulator's tensor-core surface (kernels/tensor_cores.cu): nvcuda::wmma fragments, loads, stores
and mma_sync against NumPy in every thread order; the lane <-> element mapping drawn per launch;
the asynchronous-copy primitives; and every misuse rule, each with a planted bug.
The same kernel file compiles with NVRTC against CUDA's real <mma.h> and <cuda_pipeline.h>."""

from __future__ import annotations

import numpy as np
import pytest

from emu_support import KERNELS, kernel_path

pytestmark = pytest.mark.emulator

ROW, COL = "nvcuda::wmma::row_major", "nvcuda::wmma::col_major"
TF32 = "nvcuda::wmma::precision::tf32"
# (m, n, k, element type, layout of a, layout of b, c row-major?, round to TF32?)
GEMMS = [
    (16, 16, 16, "__half", ROW, COL, True, False),
    (16, 16, 16, "__half", COL, ROW, False, False),
    (32, 8, 16, "__half", ROW, ROW, True, False),
    (8, 32, 16, "__half", COL, COL, False, False),
    (16, 16, 16, "__nv_bfloat16", ROW, COL, True, False),
    (32, 8, 16, "__nv_bfloat16", COL, ROW, True, False),
    (8, 32, 16, "__nv_bfloat16", ROW, ROW, False, False),
    (16, 16, 8, TF32, ROW, ROW, True, True),
    (16, 16, 8, TF32, COL, COL, False, True),
    (16, 16, 8, TF32, ROW, COL, True, False),  # unrounded: the tensor cores read 19 bits
]
STREAMS = ("streamed_sum<2>", "streamed_sum<3>")


def gemm_name(m, n, k, element, la, lb, c_row, round_tf32):
    return (f"warp_gemm<{m}, {n}, {k}, {element}, {la}, {lb}, {'true' if c_row else 'false'}, "
            f"{'true' if round_tf32 else 'false'}>")


@pytest.fixture(scope="module")
def mod(emulator):
    return emulator.Module(path=kernel_path("tensor_cores.cu"), options=("-std=c++17",),
                           name_expressions=tuple(gemm_name(*g) for g in GEMMS) + STREAMS)


def tf32_round(a: np.ndarray) -> np.ndarray:
    """float32 -> the nearest TF32 value (10 mantissa bits), ties away from zero: cvt.rna.tf32.f32."""
    bits = a.astype(np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def tf32_truncate(a: np.ndarray) -> np.ndarray:
    return (a.astype(np.float32).view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)


def operand(rng, rows, cols, element, layout, pad):
    """(values as float64, the array the kernel reads, its leading dimension): `layout` row-major
    holds rows of `cols` (+ pad) values, column-major columns of `rows` (+ pad)."""
    values = rng.standard_normal((rows, cols))
    if element == "__half":
        values = values.astype(np.float16).astype(np.float64)
    elif element == "__nv_bfloat16":
        values = (values.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(np.float64)
    stored = values if layout == ROW else values.T
    lead = stored.shape[1] + pad
    memory = np.zeros((stored.shape[0], lead))
    memory[:, :stored.shape[1]] = stored
    if element == "__half":
        return values, memory.astype(np.float16), lead
    if element == "__nv_bfloat16":
        return values, (memory.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16), lead
    return values, memory.astype(np.float32), lead


@pytest.mark.parametrize("gemm", GEMMS, ids=lambda g: f"m{g[0]}n{g[1]}k{g[2]}-{g[3].split(':')[-1]}-"
                         f"{'RC'[g[4] == COL]}{'RC'[g[5] == COL]}{'-round' if g[7] else ''}")
def test_warp_gemm_matches_numpy(mod, order, gemm):
    m, n, k, element, la, lb, c_row, round_tf32 = gemm
    rng = np.random.default_rng(GEMMS.index(gemm))
    pad = 16 // (2 if element in ("__half", "__nv_bfloat16") else 4)  # 16 bytes
    a, a_mem, lda = operand(rng, m, k, element, la, pad)
    b, b_mem, ldb = operand(rng, k, n, element, lb, pad)
    c = rng.standard_normal((m, n)).astype(np.float32)
    ldc = n + 4 if c_row else m + 4
    c_mem = np.zeros((m, ldc) if c_row else (n, ldc), np.float32)
    (c_mem[:, :n] if c_row else c_mem[:, :m])[...] = c if c_row else c.T
    d_mem = np.full_like(c_mem, np.nan)
    mod.get_function(gemm_name(*gemm))(1, 32, (a_mem, b_mem, c_mem, d_mem, np.int32(lda), np.int32(ldb),
                                               np.int32(ldc), np.float32(2.0)))
    d = d_mem[:, :n] if c_row else d_mem[:, :m].T
    if element == TF32:
        a, b = (tf32_round(v) if round_tf32 else tf32_truncate(v) for v in (a, b))
    expected = 2 * (a.astype(np.float64) @ b.astype(np.float64) + c)
    np.testing.assert_allclose(d, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    assert np.isnan(d_mem[:, n if c_row else m:]).all()  # the padding columns are never written


def test_tf32_rounding_is_round_to_nearest_ties_away(mod):
    """1 + 2^-11 (a tie) rounds up to 1 + 2^-10; just below the tie rounds down; -x mirrors x."""
    values = np.array([1 + 2**-11, 1 + 2**-11 - 2**-23, -(1 + 2**-11), 3 * 2**-11, 1.0, np.inf], np.float32)
    np.testing.assert_array_equal(tf32_round(values), [1 + 2**-10, 1, -(1 + 2**-10), 3 * 2**-11, 1, np.inf])
    # The kernel's __float_to_tf32 agrees with tf32_round: a = diag(values) pulled through an identity b.
    a = np.zeros((16, 8 + 4), np.float32)
    a[np.arange(6), np.arange(6)] = values
    b = np.zeros((8, 16 + 4), np.float32)
    b[np.arange(8), np.arange(8)] = 1
    c = np.zeros((16, 20), np.float32)
    d = np.full_like(c, np.nan)
    mod.get_function(gemm_name(*GEMMS[7]))(1, 32, (a, b, c, d, np.int32(12), np.int32(20), np.int32(20),
                                                   np.float32(1.0)))
    np.testing.assert_array_equal(np.diag(d[:6, :6]), tf32_round(values))


def reveal_mapping(emulator, order, seed):
    mod = emulator.Module(path=kernel_path("tensor_cores.cu"), options=("-std=c++17",))
    d = np.full((16, 16), np.nan, np.float32)
    previous = emulator.get_order()
    emulator.set_order(order, seed)
    try:
        mod.get_function("reveal_mapping")(1, 32, (d,))
    finally:
        emulator.set_order(*previous)
    return d


def test_the_lane_element_mapping_is_a_permutation_drawn_from_the_seed(emulator):
    """Lane L's x[i] was set to 8 L + i: every slot lands on exactly one element; the mapping replays
    with its seed and changes with it (and is not the identity in forward order either)."""
    first = reveal_mapping(emulator, "random", 11)
    assert sorted(first.ravel().astype(int)) == list(range(256))
    np.testing.assert_array_equal(reveal_mapping(emulator, "random", 11), first)
    assert not np.array_equal(reveal_mapping(emulator, "random", 12), first)
    forward = reveal_mapping(emulator, "forward", 0)
    assert not np.array_equal(forward, np.arange(256, dtype=np.float32).reshape(16, 16))


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("n", [1024, 3000, 4097])
def test_async_copies_stream_through_a_ring_of_stages(mod, order, stream, n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    y = np.full(1024, np.nan, np.float32)
    mod.get_function(stream)(1, 256, (x, y, np.int32(n)))
    padded = np.zeros(-(-n // 1024) * 1024, np.float32)
    padded[:n] = x
    np.testing.assert_allclose(y, padded.reshape(-1, 1024).sum(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("read_early", [0, 1])
def test_reading_a_copy_before_waiting_shows_the_poison(mod, order, read_early):
    x = np.random.default_rng(5).standard_normal(256).astype(np.float32)
    y = np.zeros(256, np.float32)
    mod.get_function("read_before_wait")(1, 64, (x, y, np.int32(read_early)))
    if read_early:
        assert np.isnan(y).all()
    else:
        np.testing.assert_array_equal(y, x)


# ---- misuse --------------------------------------------------------------------------------------
def _half_operands():
    rng = np.random.default_rng(3)
    return (rng.standard_normal(512).astype(np.float16), rng.standard_normal(512).astype(np.float16),
            np.zeros(256, np.float32))


_MISUSE = {
    "half_warp_at_mma": r"kernel 'half_warp_at_mma', block \(0,0,0\), thread \(0,0,0\): mma_sync at "
                        r".*tensor_cores.cu:\d+ with mask 0xffffffff, but lane 16 is at store_matrix_sync",
    "misaligned_ldm": r"kernel 'misaligned_ldm', block \(0,0,0\), thread \(\d+,0,0\): load_matrix_sync at "
                      r".*tensor_cores.cu:\d+: ldm = 12 elements \(24 bytes\) is not a multiple of 16 bytes",
    "misaligned_pointer": r"kernel 'misaligned_pointer', block \(0,0,0\), thread \(\d+,0,0\): load_matrix_sync at "
                          r".*tensor_cores.cu:\d+: pointer 0x[0-9a-f]+ is not 256-bit \(32-byte\) aligned",
    "lane_with_another_pointer": r"kernel 'lane_with_another_pointer', block \(0,0,0\), thread \(5,0,0\): "
                                 r"load_matrix_sync at .*tensor_cores.cu:\d+: this lane passes pointer 0x[0-9a-f]+, "
                                 r"ldm 16, row major, but lane 0 passes pointer 0x[0-9a-f]+",
    "scale_rows_by_assumed_mapping": r"kernel 'scale_rows_by_assumed_mapping', block \(0,0,0\), thread \(\d+,0,0\): "
                                     r"mma_sync at .*tensor_cores.cu:\d+: element \(\d+, \d+\) of the matrix_a "
                                     r"fragment is x\[\d+\] of lane \d+ and x\[\d+\] of lane \d+, which differ",
}


def _next_launch_works(mod):
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((16, 24)).astype(np.float16), rng.standard_normal((16, 24)).astype(np.float16)
    c, d = np.zeros((16, 20), np.float32), np.full((16, 20), np.nan, np.float32)
    mod.get_function(gemm_name(*GEMMS[0]))(1, 32, (a, b, c, d, np.int32(24), np.int32(24), np.int32(20),
                                                   np.float32(1.0)))
    expected = a[:, :16].astype(np.float64) @ b[:, :16].T.astype(np.float64)
    np.testing.assert_allclose(d[:, :16], expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("kernel", list(_MISUSE))
def test_wmma_misuse_is_reported_and_next_launch_works(emulator, mod, order, kernel):
    with pytest.raises(emulator.EmulatorError, match=_MISUSE[kernel]):
        mod.get_function(kernel)(1, 64, _half_operands())
    _next_launch_works(mod)


def test_a_kernel_that_assumes_a_mapping_gets_a_wrong_result(mod, order):
    """bias_by_assumed_mapping adds bias[row] where one real GPU keeps row `row` (lane / 4, +8 for the
    second half of x[]); with the emulator's drawn mapping the bias lands on other rows."""
    a, b, _ = _half_operands()
    bias = np.arange(16, dtype=np.float32) * 100
    d = np.full(256, np.nan, np.float32)
    mod.get_function("bias_by_assumed_mapping")(1, 32, (a, b, bias, d))
    product = a[:256].reshape(16, 16).astype(np.float64) @ b[:256].reshape(16, 16).astype(np.float64)
    assert np.isfinite(d).all()
    assert np.abs(d.reshape(16, 16) - (product + bias[:, None])).max() > 50


@pytest.mark.parametrize("which, message", [
    (0, r"__pipeline_memcpy_async at .*tensor_cores.cu:\d+: size_and_align = 12; it copies 4, 8 or 16 bytes"),
    (1, r"__pipeline_memcpy_async at .*: destination 0x[0-9a-f]+ and source 0x[0-9a-f]+ must both be aligned to "
        r"size_and_align = 8 bytes"),
    (2, r"__pipeline_memcpy_async at .*: destination 0x[0-9a-f]+ is not in shared memory"),
    (3, r"__pipeline_memcpy_async at .*: source 0x[0-9a-f]+ is in shared memory; it must be global memory"),
])
def test_async_copy_misuse_is_reported(emulator, mod, which, message):
    with pytest.raises(emulator.EmulatorError, match=r"kernel 'bad_async_copy', block \(0,0,0\), thread \(\d+,0,0\): "
                       + message):
        mod.get_function("bad_async_copy")(1, 32, (np.zeros(64, np.float32), np.zeros(64, np.float32),
                                                   np.int32(which)))
    _next_launch_works(mod)


@pytest.mark.slow
def test_the_kernels_compile_with_nvrtc_and_cudas_own_headers():
    """The emulator accepts only what CUDA does: the same file builds with NVRTC (sm_80, sm_90; TF32
    and bf16 fragments need sm_80) against CUDA's <mma.h> and <cuda_pipeline.h>."""
    from gpuconv import _compile
    from gpuconv.emulator._toolchain import cuda_include_dirs

    names = tuple(gemm_name(*g) for g in GEMMS) + STREAMS + tuple(_MISUSE) + (
        "bias_by_assumed_mapping", "read_before_wait", "bad_async_copy", "reveal_mapping")
    records = _compile.compile_report({"tensor_cores.cu": names}, archs=("sm_80", "sm_90"),
                                      options=("-std=c++17",) + tuple(f"-I{d}" for d in cuda_include_dirs()),
                                      cuda_dir=KERNELS)
    assert len(records) == 2 * len(names) and all(r.registers > 0 for r in records)
