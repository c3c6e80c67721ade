"""The tensor-core convolution (algorithm="implicit_gemm_tc", cuda/conv_implicit_gemm_tc.cu) and the
`precision` API, in the emulator ("cuda-emu"; the real GPU where marked `gpu`).

Tolerances, relative to the scale of the float64 result (max |result|, at least 1):
- float16: 1e-2, as every float16 path (inputs exact, products exact, float32 sums, one float16
  rounding of the output: about 5e-4 in practice).
- TF32 against a reference computed from inputs rounded to TF32 (round to nearest, ties away, as
  __float_to_tf32): 1e-4, room for the tensor cores' float32 accumulation over the K <= 300 taps here
  (the emulator sums exactly: its errors are ~1e-7). A kernel that skipped the rounding (the tensor
  cores then drop the low 13 bits) is off by about 1e-3.
- TF32 against the exact float64 result: 2e-3 (inputs rounded to 10-bit mantissas).

Shapes are small but cross every tile edge of the BM x 128 x 32 tilings (BM = 128, or 64 for groups of
at most 64 filters): F/groups of 129 (a second 128-row M tile with one filter), 64 (a full 64-row
tile), 65 and 17 (part-empty tiles); N*OH*OW of 130 (a second N tile), K of 27, 33, 64 (no padding of
the weight rows) and 100 (more K steps than pipeline stages), several images in one N tile.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import gpuconv
from gpuconv import _reference as ref
from gpuconv import _kernels
from gpuconv._geometry import conv_spec
from support import as_reference_input, assert_close, poisoned_numpy_backend, random_array, require_backend
from test_conv import EDGE_CASES, conv_cases

pytestmark = pytest.mark.emulator

TC = "implicit_gemm_tc"
TF32_TOL = 1e-4          # against inputs rounded to TF32
TF32_EXACT_TOL = 2e-3    # against the exact result
ORDERS = [("forward", 0), ("reverse", 0), ("random", 7)]


@pytest.fixture(params=ORDERS, ids=[o for o, _ in ORDERS])
def order(request, emu):
    from gpuconv import emulator

    emulator.set_order(*request.param)
    print(f"emulator thread order {request.param}")
    yield request.param
    emulator.set_order("forward")


@pytest.fixture
def launches(monkeypatch):
    """The kernel names launched during the test, in order."""
    names, get_function = [], _kernels.get_function

    def recording(file, name, device_kind):
        names.append(name)
        return get_function(file, name, device_kind)

    monkeypatch.setattr(_kernels, "get_function", recording)
    return names


def tf32(a: np.ndarray) -> np.ndarray:
    """float32 -> nearest TF32 value (10-bit mantissa), ties away from zero: __float_to_tf32."""
    bits = np.asarray(a, np.float32).view(np.uint32)
    rounded = np.where((bits & 0x7F800000) == 0x7F800000, bits, (bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000))
    return rounded.astype(np.uint32).view(np.float32)


def assert_within(actual, expected, tol, what):
    actual = np.asarray(actual, np.float64)
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(actual - expected).max())
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:g} * scale {scale:.3g}"
    return err / scale


def run(x, w, b=None, backend="cuda-emu", **kwargs):
    with poisoned_numpy_backend():
        return gpuconv.conv2d(x, w, b, **kwargs, backend=backend)


def check_half(x_shape, w_shape, seed, bias=True, **kwargs):
    rng = np.random.default_rng(seed)
    x, w = random_array(rng, x_shape, np.float16), random_array(rng, w_shape, np.float16)
    b = random_array(rng, (w_shape[0],), np.float16) if bias else None
    expected = ref.conv2d(*map(as_reference_input, (x, w, b)), **kwargs)
    out = run(x, w, b, algorithm=TC, **kwargs)
    assert_close(out, expected, np.float16, f"float16 {TC} x={x_shape} w={w_shape} {kwargs}")
    return out


def check_tf32(x_shape, w_shape, seed, backend="cuda-emu", **kwargs):
    rng = np.random.default_rng(seed)
    x, w, b = (random_array(rng, s, np.float32) for s in (x_shape, w_shape, (w_shape[0],)))
    out = run(x, w, b, backend, algorithm=TC, precision="tf32", **kwargs)
    assert out.dtype == np.float32
    what = f"TF32 {TC} x={x_shape} w={w_shape} {kwargs}"
    rounded = ref.conv2d(*map(as_reference_input, (tf32(x), tf32(w), b)), **kwargs)
    assert_within(out, rounded, TF32_TOL, what + " vs TF32-rounded inputs")
    return assert_within(out, ref.conv2d(*map(as_reference_input, (x, w, b)), **kwargs), TF32_EXACT_TOL,
                         what + " vs the exact result")


# ---- the parity suite in float16, in every thread order ---------------------------------------------
@pytest.mark.parametrize("name", EDGE_CASES)
def test_float16_edge_cases_in_every_order(order, name):
    x_shape, w_shape, kwargs = EDGE_CASES[name]
    check_half(x_shape, w_shape, seed=list(EDGE_CASES).index(name), **kwargs)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(case=conv_cases())
def test_float16_random_shapes_in_reverse_and_random_order(emu, case):
    """test_conv's random cases (float16 on cuda-emu runs implicit_gemm_tc there in forward order)."""
    from gpuconv import emulator

    shapes = ((case["n"], case["c"]) + case["hw"], (case["f"], case["c"] // case["groups"]) + case["k"])
    kwargs = {k: case[k] for k in ("stride", "padding", "dilation", "groups", "padding_mode")}
    try:
        for order in ("reverse", "random"):
            emulator.set_order(order, case["seed"])
            check_half(*shapes, case["seed"], case["bias"], **kwargs)
    finally:
        emulator.set_order("forward")


def test_the_float16_parity_suite_reaches_the_tensor_core_kernel(emu, launches):
    """test_conv.check_conv runs every algorithm applicable to the dtype: for float16 that includes
    implicit_gemm_tc, on every shape (groups, strides, dilation, padding modes)."""
    from test_conv import check_conv

    rng = np.random.default_rng(0)
    for x_shape, w_shape, kwargs in EDGE_CASES.values():
        spec = conv_spec(x_shape, w_shape, kwargs.get("stride", 1), kwargs.get("padding", 0), kwargs.get("dilation", 1),
                         kwargs.get("groups", 1), kwargs.get("padding_mode", "zeros"))
        assert TC in emu.applicable_algorithms(spec, np.float16)
        assert TC not in emu.applicable_algorithms(spec, np.float32) and TC not in emu.applicable_algorithms(spec)
        assert TC in emu.applicable_algorithms(spec, np.float32, "tf32")
        assert TC not in emu.applicable_algorithms(spec, np.float64, "tf32")
    x, w = random_array(rng, (2, 6, 7, 7), np.float16), random_array(rng, (4, 3, 3, 3), np.float16)
    check_conv("cuda-emu", x, w, groups=2, stride=2, padding=1, padding_mode="circular")
    assert _kernels.implicit_gemm_tc_kernel("__half", "int", 64) in launches


def test_results_are_the_same_bits_in_every_order(emu):
    from gpuconv import emulator

    rng = np.random.default_rng(3)
    x, w = random_array(rng, (2, 5, 9, 13), np.float32), random_array(rng, (40, 5, 3, 3), np.float32)
    results = []
    try:
        for order, seed in ORDERS:
            emulator.set_order(order, seed)
            results += [run(x, w, algorithm=TC, precision="tf32", padding=1),
                        run(x.astype(np.float16), w.astype(np.float16), algorithm=TC, padding=1)]
    finally:
        emulator.set_order("forward")
    for a, b in zip(results[2:], results):
        np.testing.assert_array_equal(a, b)


# ---- tile edges, every shape option, both precisions -----------------------------------------------
TILE_CASES = {
    "M and N past a tile": ((2, 3, 5, 13), (129, 3, 3, 3), dict(padding=1)),          # F 129, N 130, K 27
    "two groups of two M tiles": ((1, 4, 5, 6), (258, 2, 1, 1), dict(groups=2)),
    "a full narrow tile": ((2, 8, 4, 5), (64, 8, 2, 2), dict(padding="same")),
    "65 filters": ((1, 3, 6, 6), (65, 3, 3, 3), dict(stride=2, padding=1)),
    "K of 33": ((1, 11, 6, 7), (17, 11, 1, 3), dict(padding=(0, 1))),                  # K 33: two K steps
    "K of 64, unpadded weight rows": ((2, 16, 5, 6), (20, 16, 2, 2), dict(stride=(1, 2), padding="same")),
    "K of 100, more steps than stages": ((1, 4, 9, 8), (9, 4, 5, 5), dict(padding=2, padding_mode="reflect")),
    "groups, dilation, replicate": ((2, 6, 10, 9), (12, 2, 3, 2), dict(groups=3, dilation=(2, 1), padding=3,
                                                                      padding_mode="replicate")),
    "depthwise, circular": ((1, 4, 8, 8), (8, 1, 3, 3), dict(groups=4, padding=1, padding_mode="circular")),
    "one output pixel": ((3, 2, 3, 3), (5, 2, 3, 3), {}),
}


@pytest.mark.parametrize("name", TILE_CASES)
def test_tile_edges_float16(emu, name):
    x_shape, w_shape, kwargs = TILE_CASES[name]
    check_half(x_shape, w_shape, seed=len(name), **kwargs)


@pytest.mark.parametrize("name", TILE_CASES)
def test_tile_edges_tf32(emu, name):
    x_shape, w_shape, kwargs = TILE_CASES[name]
    check_tf32(x_shape, w_shape, seed=len(name), **kwargs)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_64bit_indices(emu, monkeypatch, launches, dtype):
    from gpuconv.backends import cuda

    monkeypatch.setattr(cuda, "FORCE_INDEX64", True)
    x_shape, w_shape, kwargs = TILE_CASES["M and N past a tile"]
    if dtype == np.float16:
        check_half(x_shape, w_shape, 4, **kwargs)
    else:
        check_tf32(x_shape, w_shape, 4, **kwargs)
    ctype = _kernels.ELEMENT_TYPES[np.dtype(dtype).name]
    assert launches == [_kernels.implicit_gemm_tc_kernel(ctype, "long long", 128)]


def test_tf32_differs_from_exact_float32(emu):
    """The TF32 path really rounds: its error against the exact result exceeds float32's tolerance,
    while precision='highest' (the default) stays exact."""
    err = check_tf32((1, 8, 6, 6), (16, 8, 3, 3), seed=9, padding=1)
    assert err > 1e-5
    rng = np.random.default_rng(9)
    x, w = random_array(rng, (1, 8, 6, 6), np.float32), random_array(rng, (16, 8, 3, 3), np.float32)
    assert_close(run(x, w, padding=1), ref.conv2d(x, w, padding=1), np.float32, "float32 highest")


# ---- what auto takes, and the precision API ------------------------------------------------------------
@pytest.mark.parametrize("dtype, precision, expected", [
    (np.float16, "highest", TC), (np.float16, "tf32", TC), (np.float32, "highest", "implicit_gemm"),
    (np.float32, "tf32", TC), (np.float64, "tf32", "implicit_gemm"),
])
def test_auto_takes_tensor_cores_for_gemm_shaped_layers(emu, dtype, precision, expected):
    resnet = conv_spec((8, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1, "zeros")
    depthwise = conv_spec((8, 64, 56, 56), (64, 1, 3, 3), 1, 1, 1, 64, "zeros")
    assert emu.choose_algorithm(resnet, dtype, precision) == expected
    assert emu.choose_algorithm(depthwise, dtype, precision) == "direct"


@pytest.mark.parametrize("dtype, precision, kernel", [
    (np.float16, None, "conv2d_implicit_gemm_tc<__half, int, 64>"),
    (np.float32, None, "conv2d_implicit_gemm<float, int, 64, 64, 4, 4>"),
    (np.float32, "tf32", "conv2d_implicit_gemm_tc<float, int, 64>"),
])
def test_auto_launches_the_kernel_it_chose(emu, launches, dtype, precision, kernel):
    rng = np.random.default_rng(2)
    x, w = random_array(rng, (1, 8, 6, 6), dtype), random_array(rng, (16, 8, 3, 3), dtype)
    run(x, w, padding=1, precision=precision)
    assert launches == [kernel]


def test_precision_context_manager_nests_and_the_call_argument_wins(emu, launches):
    rng = np.random.default_rng(1)
    x, w = random_array(rng, (1, 8, 6, 6), np.float32), random_array(rng, (16, 8, 3, 3), np.float32)
    with gpuconv.precision("tf32"):
        run(x, w)
        with gpuconv.precision("highest"):
            run(x, w)
        run(x, w, precision="highest")
        run(x, w)
    run(x, w)
    tc, simt = "conv2d_implicit_gemm_tc<float, int, 64>", "conv2d_implicit_gemm<float, int, 64, 64, 4, 4>"
    assert launches == [tc, simt, simt, tc, simt]


def test_conv1d_passes_precision_through(emu, launches):
    rng = np.random.default_rng(6)
    x, w = random_array(rng, (2, 8, 40), np.float32), random_array(rng, (16, 8, 9), np.float32)
    out = gpuconv.conv1d(x, w, padding="same", precision="tf32", backend="cuda-emu")
    assert launches == ["conv2d_implicit_gemm_tc<float, int, 64>"]
    expected = ref.conv2d(tf32(x)[:, :, None].astype(np.float64), tf32(w)[:, :, None].astype(np.float64),
                          padding=((0, 0), (4, 4)))[:, :, 0]
    assert_within(out, expected, TF32_TOL, "conv1d tf32")


@pytest.mark.parametrize("value", ["fp32", "TF32", 1, ""])
def test_bad_precision_is_a_value_error_naming_it(value):
    x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"precision=.*expected one of \('highest', 'tf32'\)"):
        gpuconv.conv2d(x, w, precision=value)
    with pytest.raises(ValueError, match=r"precision=.*expected one of"):
        with gpuconv.precision(value):
            pass


def test_numpy_backend_accepts_tf32_and_computes_exactly():
    rng = np.random.default_rng(4)
    x, w = random_array(rng, (2, 8, 9, 9), np.float32), random_array(rng, (16, 8, 3, 3), np.float32)
    with gpuconv.precision("tf32"):
        out = gpuconv.conv2d(x, w, padding=1, backend="numpy")
    assert_close(out, ref.conv2d(x, w, padding=1), np.float32, "numpy under precision='tf32'")


@pytest.mark.parametrize("dtype, precision, message", [
    (np.float32, "highest", r"algorithm='implicit_gemm_tc' cannot run this call: .*precision='tf32'"),
    (np.float64, "tf32", r"algorithm='implicit_gemm_tc' cannot run this call: .*float64 has no tensor-core path"),
])
def test_forcing_the_kernel_where_it_does_not_apply_names_the_rule(emu, dtype, precision, message):
    x, w = np.ones((1, 2, 5, 5), dtype), np.ones((3, 2, 3, 3), dtype)
    with pytest.raises(ValueError, match=message):
        gpuconv.conv2d(x, w, algorithm=TC, precision=precision, backend="cuda-emu")


def test_devices_without_tf32_keep_float32_exact(emu, monkeypatch, launches):
    """On a compute capability 7.x GPU: float16 still runs on tensor cores, float32 under 'tf32' falls
    back to the exact kernels (auto), and forcing TF32 names the capability."""
    from gpuconv.backends import cuda

    monkeypatch.setattr(cuda, "EMULATED_COMPUTE_CAPABILITY", 75)
    spec = conv_spec((8, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1, "zeros")
    assert emu.choose_algorithm(spec, np.float16) == TC
    assert emu.choose_algorithm(spec, np.float32, "tf32") == "implicit_gemm"
    x, w = np.ones((1, 8, 5, 5), np.float32), np.ones((16, 8, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"float32 tensor cores need compute capability >= 8.0; this device has 7.5"):
        gpuconv.conv2d(x, w, algorithm=TC, precision="tf32", backend="cuda-emu")
    assert_close(gpuconv.conv2d(x, w, precision="tf32", backend="cuda-emu"), ref.conv2d(x, w), np.float32)
    monkeypatch.setattr(cuda, "EMULATED_COMPUTE_CAPABILITY", 60)
    assert emu.choose_algorithm(spec, np.float16) == "implicit_gemm"


def test_tiles_shared_memory_and_weight_layout(emu):
    wide = conv_spec((2, 6, 5, 13), (258, 3, 3, 3), 1, 1, 1, 2, "zeros")  # 129 filters per group
    half, tf32_plan = emu._plan(wide, TC, np.float16), emu._plan(wide, TC, np.float32, "tf32")
    # 3 stages of 128 x (32 + 8) halves + 2 x 32 x (128 + 8) halves; the float tile 128 x 132 is larger
    assert half.shared == max(3 * 128 * 40 * 2 + 2 * 32 * 136 * 2, 128 * 132 * 4) == 67584
    assert tf32_plan.shared == 3 * 128 * 36 * 4 + 2 * 32 * 132 * 4 == 89088 <= 96 * 1024
    assert (half.block_m, half.block, half.grid) == (128, (256, 1, 1), (2, 4, 1))
    narrow = conv_spec((2, 11, 6, 7), (17, 11, 1, 3), 1, 0, 1, 1, "zeros")
    half, tf32_plan = emu._plan(narrow, TC, np.float16), emu._plan(narrow, TC, np.float32, "tf32")
    assert half.shared == max(3 * 64 * 40 * 2 + 2 * 32 * 136 * 2, 64 * 132 * 4) == 33792
    assert tf32_plan.shared == 3 * 64 * 36 * 4 + 2 * 32 * 132 * 4 == 61440
    assert (half.block_m, half.grid, half.k_total, half.k_padded) == (64, (1, 1, 1), 33, 64)
    w = np.arange(17 * 33, dtype=np.float32).reshape(17, 11, 1, 3)
    wp = tf32_plan.weights(np, w)
    assert wp.shape == (17, 64) and wp.flags.c_contiguous
    np.testing.assert_array_equal(wp[:, :33], w.reshape(17, 33))
    assert not wp[:, 33:].any()
    # K = 64 needs no padding: w itself goes, unless it is not 16-byte aligned (a view at an odd offset)
    plan = emu._plan(conv_spec((1, 16, 5, 5), (20, 16, 2, 2), 1, 0, 1, 1, "zeros"), TC, np.float16)
    whole = np.zeros(21 * 64 + 8, np.float16)
    aligned = whole[-20 * 64:].reshape(20, 16, 2, 2) if whole[-20 * 64:].ctypes.data % 16 == 0 else \
        whole[-20 * 64 - 8:-8].reshape(20, 16, 2, 2)
    assert np.shares_memory(plan.weights(np, aligned), aligned)
    odd = whole[1:1 + 20 * 64].reshape(20, 16, 2, 2)  # 2 bytes past an aligned element
    assert odd.ctypes.data % 16 and plan.weights(np, odd).ctypes.data % 16 == 0


def test_every_tensor_core_instantiation_is_compiled():
    names = _kernels.KERNEL_SOURCES["conv_implicit_gemm_tc.cu"]
    assert names == tuple(_kernels.implicit_gemm_tc_kernel(t, i, bm) for t in ("__half", "float")
                          for i in _kernels.INDEX_TYPES for bm in (128, 64))


# ---- the real GPU ---------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["M and N past a tile", "K of 100, more steps than stages"])
def test_gpu_tf32_and_float16(name):
    require_backend("cuda")
    x_shape, w_shape, kwargs = TILE_CASES[name]
    check_tf32(x_shape, w_shape, seed=1, backend="cuda", **kwargs)
    rng = np.random.default_rng(2)
    x, w = random_array(rng, x_shape, np.float16), random_array(rng, w_shape, np.float16)
    out = gpuconv.conv2d(x, w, **kwargs, algorithm=TC, backend="cuda")
    assert_close(out, ref.conv2d(x.astype(np.float64), w.astype(np.float64), **kwargs), np.float16, "cuda float16")
