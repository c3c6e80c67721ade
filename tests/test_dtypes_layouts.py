"""dtypes (float16/32/64, promotion, complex), memory layouts, empty batches, unbatched and 1-D inputs."""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _reference as ref
from gpuconv._geometry import conv_spec
from gpuconv.backends import get_backend
from support import (DTYPES, as_reference_input, assert_close, assert_same, poisoned_numpy_backend, random_array,
                     stable_seed, to_backend, to_numpy)


def array_module(backend):
    if backend == "cuda":
        import cupy

        return cupy
    return np


# ---------------------------------------------------------------------------------------------
# dtypes


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_op_keeps_the_float_dtype(backend, dtype):
    rng = np.random.default_rng(1)
    x, w, b = (random_array(rng, s, dtype) for s in ((2, 3, 7, 6), (4, 3, 3, 2), (4,)))
    xb = to_backend(x, backend)
    results = {
        "conv2d": (gpuconv.conv2d(xb, to_backend(w, backend), to_backend(b, backend), padding=1, backend=backend),
                   ref.conv2d(as_reference_input(x), as_reference_input(w), as_reference_input(b), padding=1)),
        "conv1d": (gpuconv.conv1d(xb[:, :, 0], to_backend(w[:, :, 0], backend), backend=backend),
                   ref.conv2d(as_reference_input(x[:, :, :1]), as_reference_input(w[:, :, :1]))[:, :, 0]),
        "avg_pool2d": (gpuconv.avg_pool2d(xb, 3, 2, 1, backend=backend),
                       ref.avg_pool2d(as_reference_input(x), 3, 2, 1)),
        "avg_pool1d": (gpuconv.avg_pool1d(xb[:, :, 0], 2, backend=backend),
                       ref.avg_pool2d(as_reference_input(x[:, :, :1]), (1, 2))[:, :, 0]),
        "correlate2d": (gpuconv.correlate2d(xb[0, 0], to_backend(w[0, 0], backend), backend=backend),
                        ref.correlate2d_full(as_reference_input(x[0, 0]), as_reference_input(w[0, 0]))),
    }
    for op, (out, expected) in results.items():
        assert_close(out, expected, dtype, f"{op} {np.dtype(dtype)}")
    assert_same(gpuconv.max_pool2d(xb, 2, backend=backend), ref.max_pool2d(as_reference_input(x), 2)[0], dtype,
                "max_pool2d")
    assert_same(gpuconv.max_pool1d(xb[:, :, 0], 3, backend=backend),
                ref.max_pool2d(as_reference_input(x[:, :, :1]), (1, 3))[0][:, :, 0], dtype, "max_pool1d")
    assert_same(gpuconv.pad2d(xb, 2, "reflect", backend=backend),
                ref.pad2d(as_reference_input(x), (2, 2, 2, 2), "reflect"), dtype, "pad2d")


def within_one_float16_ulp(out, expected, what):
    out = to_numpy(out)
    assert out.dtype == np.float16, what
    ulp = np.spacing(np.abs(expected).astype(np.float16)).astype(np.float64)
    err = np.abs(out.astype(np.float64) - expected)
    assert (err <= ulp).all(), f"{what}: error up to {(err / ulp).max():.1f} float16 ulps (float32 accumulation " \
                               f"then one rounding gives <= 1)"


def test_float16_is_accumulated_in_float32(backend):
    """150 positive products per output: float16 accumulation would be several ulps off."""
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 1.0, (2, 6, 9, 9)).astype(np.float16)
    w = rng.uniform(0.5, 1.0, (3, 6, 5, 5)).astype(np.float16)
    expected = ref.conv2d(as_reference_input(x), as_reference_input(w))
    spec = conv_spec(x.shape, w.shape, 1, 0, 1, 1, "zeros")
    for algorithm in get_backend(backend).applicable_algorithms(spec):
        out = gpuconv.conv2d(to_backend(x, backend), to_backend(w, backend), algorithm=algorithm, backend=backend)
        within_one_float16_ulp(out, expected, f"conv2d float16 algorithm={algorithm}")
    x = rng.uniform(0.5, 1.0, (2, 3, 12, 12)).astype(np.float16)
    within_one_float16_ulp(gpuconv.avg_pool2d(to_backend(x, backend), 5, 1, backend=backend),
                           ref.avg_pool2d(as_reference_input(x), 5, 1), "avg_pool2d float16")


# (x dtype, w dtype, bias dtype or None, expected result dtype): NumPy's promotion, integers/bool -> a float type.
PROMOTIONS = [
    (np.int32, np.float32, None, np.float64),
    (np.int64, np.int64, None, np.float64),
    (np.bool_, np.float32, None, np.float32),
    (np.int8, np.float16, None, np.float16),
    (np.uint8, np.float32, None, np.float32),
    (np.float16, np.float32, None, np.float32),
    (np.float32, np.float32, np.float64, np.float64),
    (np.float16, np.float16, np.int16, np.float32),
    (np.bool_, np.bool_, None, np.float64),
]


@pytest.mark.parametrize("x_dtype, w_dtype, b_dtype, expected_dtype", PROMOTIONS)
def test_conv_promotes_mixed_and_integer_dtypes(backend, x_dtype, w_dtype, b_dtype, expected_dtype):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2 if x_dtype == np.bool_ else 5, (2, 3, 6, 6)).astype(x_dtype)
    w = rng.integers(0, 2 if w_dtype == np.bool_ else 4, (2, 3, 3, 3)).astype(w_dtype)
    b = None if b_dtype is None else rng.integers(-3, 3, 2).astype(b_dtype)
    out = gpuconv.conv2d(to_backend(x, backend), to_backend(w, backend), to_backend(b, backend), backend=backend)
    assert_close(out, ref.conv2d(x, w, b), expected_dtype, f"{x_dtype} * {w_dtype}")


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int64, np.uint8, np.uint64, np.bool_])
def test_pool_and_pad_promote_integers_to_float64(backend, dtype):
    """Integer and bool x is read as float64 (the NumPy backend as it goes, without a whole copy): every
    op and option against the float64 reference, outputs poisoned, ties frequent (few distinct values)."""
    seed = stable_seed("integer pooling", np.dtype(dtype).name)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if dtype != np.bool_ else None
    for case in range(4):
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(5, 12)), int(rng.integers(5, 12)))
        if info is None:
            x = rng.integers(0, 2, shape).astype(dtype)
        elif case == 0:  # the extremes of the type
            x = rng.choice(np.array([info.min, info.max, 0, 1], dtype=dtype), shape)
        else:
            x = rng.integers(max(info.min, -4), 5, shape).astype(dtype)
        xb, what = to_backend(x, backend), f"{np.dtype(dtype).name} case {case} (seed {seed})"
        with poisoned_numpy_backend():
            for k, stride, padding, dilation, ceil_mode in ((2, None, 0, 1, False), (3, 2, 1, 2, True)):
                out, idx = gpuconv.max_pool2d(xb, k, stride, padding, dilation, ceil_mode, return_indices=True,
                                              backend=backend)
                expected, expected_idx = ref.max_pool2d(x, k, stride, padding, dilation, ceil_mode)
                assert_same(out, expected, np.float64, f"max_pool2d {what}")
                assert_same(idx, expected_idx, np.int64, f"max_pool2d indices {what}")
                assert_same(gpuconv.max_pool2d(xb, k, stride, padding, dilation, ceil_mode, backend=backend),
                            expected, np.float64, f"max_pool2d without indices {what}")
            for k, stride, padding, ceil_mode, count_include_pad in ((2, None, 0, False, True), (3, 2, 1, True, True),
                                                                     (3, 2, 1, True, False)):
                # whole windows add two taps in one operation, partial ones tap by tap: both must read as float64
                assert_close(gpuconv.avg_pool2d(xb, k, stride, padding, ceil_mode, count_include_pad, backend=backend),
                             ref.avg_pool2d(x, k, stride, padding, ceil_mode, count_include_pad), np.float64,
                             f"avg_pool2d {k} {padding} {what}")
            for mode in ("constant", "reflect", "replicate", "circular"):
                assert_same(gpuconv.pad2d(xb, ((1, 2), (3, 4)), mode, backend=backend),
                            ref.pad2d(x, (1, 2, 3, 4), mode), np.float64, f"pad2d {mode} {what}")


def test_python_lists_are_accepted():
    out = gpuconv.conv2d([[[[1, 2], [3, 4]]]], [[[[1]]]], bias=[0.5])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[[[1.5, 2.5], [3.5, 4.5]]]])
    np.testing.assert_array_equal(gpuconv.max_pool2d([[[1, 5], [3, 2]]], 2), [[[5.0]]])


@pytest.mark.parametrize("complex_dtype", [np.complex64, np.complex128])
def test_complex_inputs_are_a_type_error(complex_dtype):
    z = np.ones((1, 2, 4, 4), dtype=complex_dtype)
    w = np.ones((1, 2, 2, 2))
    calls = [lambda: gpuconv.conv2d(z, w), lambda: gpuconv.conv2d(z.real.copy(), w.astype(complex_dtype)),
             lambda: gpuconv.conv1d(z[:, :, 0], w[:, :, 0]), lambda: gpuconv.max_pool2d(z, 2),
             lambda: gpuconv.avg_pool2d(z, 2), lambda: gpuconv.max_pool1d(z[:, :, 0], 2),
             lambda: gpuconv.avg_pool1d(z[:, :, 0], 2), lambda: gpuconv.pad2d(z, 1),
             lambda: gpuconv.correlate2d(z[0, 0], w[0, 0]), lambda: gpuconv.convolve2d(w[0, 0], z[0, 0])]
    for call in calls:
        with pytest.raises(TypeError, match="complex"):
            call()


# ---------------------------------------------------------------------------------------------
# memory layouts

LAYOUTS = {
    "fortran": lambda xp, a: xp.asfortranarray(a),
    "negative strides": lambda xp, a: a[..., ::-1, ::-1],
    "strided slice": lambda xp, a: xp.concatenate([a, a], axis=-1)[..., ::2],
    "transposed": lambda xp, a: xp.ascontiguousarray(xp.swapaxes(a, -1, -2)).swapaxes(-1, -2),
    "channel slice": lambda xp, a: xp.concatenate([a, a], axis=1)[:, 1::2] if a.ndim == 4 else a[..., ::-1],
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unusual_layouts_give_the_right_answer(backend, layout):
    xp = array_module(backend)
    rng = np.random.default_rng(5)
    x, w, b = random_array(rng, (2, 3, 8, 7)), random_array(rng, (4, 3, 3, 2)), random_array(rng, (4,))
    arrange = LAYOUTS[layout]
    lx, lw = arrange(xp, to_backend(x, backend)), arrange(xp, to_backend(w, backend))
    lb = to_backend(np.concatenate([b, b])[::-2], backend)  # a strided bias (reversed order)
    cx, cw, cb = to_numpy(lx).copy(), to_numpy(lw).copy(), to_numpy(lb).copy()  # the same values, contiguous
    assert_close(gpuconv.conv2d(lx, lw, lb, padding=(1, 2), backend=backend), ref.conv2d(cx, cw, cb, padding=(1, 2)),
                 np.float64, f"conv2d {layout}")
    assert_close(gpuconv.conv2d(lx, lw, padding=1, padding_mode="reflect", backend=backend),
                 ref.conv2d(cx, cw, padding=1, padding_mode="reflect"), np.float64, f"conv2d reflect {layout}")
    values, indices = gpuconv.max_pool2d(lx, 3, 2, 1, return_indices=True, backend=backend)
    expected_values, expected_indices = ref.max_pool2d(cx, 3, 2, 1)
    assert_same(values, expected_values, np.float64, f"max_pool2d {layout}")
    assert_same(indices, expected_indices, np.int64, f"max_pool2d indices {layout}")
    assert_close(gpuconv.avg_pool2d(lx, 2, 1, 1, backend=backend), ref.avg_pool2d(cx, 2, 1, 1), np.float64,
                 f"avg_pool2d {layout}")
    assert_same(gpuconv.pad2d(lx, ((1, 0), (2, 3)), "replicate", backend=backend),
                ref.pad2d(cx, (1, 0, 2, 3), "replicate"), np.float64, f"pad2d {layout}")
    assert_close(gpuconv.correlate2d(lx[1, 2], lw[3, 1], "same", "symm", backend=backend),
                 _scipy_correlate(cx[1, 2], cw[3, 1], "same", "symm"), np.float64, f"correlate2d {layout}")


def _scipy_correlate(image, kernel, mode, boundary):
    signal = pytest.importorskip("scipy.signal")
    return signal.correlate2d(image, kernel, mode, boundary)


def test_inputs_are_not_modified(backend):
    rng = np.random.default_rng(6)
    x, w = random_array(rng, (1, 2, 6, 6)), random_array(rng, (2, 2, 3, 3))
    x0, w0 = x.copy(), w.copy()
    xb, wb = to_backend(x, backend), to_backend(w, backend)
    gpuconv.conv2d(xb, wb, padding=2, padding_mode="circular", backend=backend)
    gpuconv.max_pool2d(xb, 2, return_indices=True, backend=backend)
    gpuconv.avg_pool2d(xb, 3, 1, 1, backend=backend)
    gpuconv.pad2d(xb, 2, "reflect", backend=backend)
    np.testing.assert_array_equal(to_numpy(xb), x0)
    np.testing.assert_array_equal(to_numpy(wb), w0)


# ---------------------------------------------------------------------------------------------
# empty batches, unbatched and 1-D inputs


def test_empty_batch_gives_an_empty_result_of_the_right_shape(backend):
    xp = array_module(backend)
    x = xp.zeros((0, 3, 9, 8), dtype=np.float32)
    w = xp.zeros((4, 3, 3, 2), dtype=np.float32)
    checks = [
        (gpuconv.conv2d(x, w, padding=(1, 0), stride=2, backend=backend), (0, 4, 5, 4), np.float32),
        (gpuconv.conv2d(x, w, padding="same", stride=3, backend=backend), (0, 4, 3, 3), np.float32),
        (gpuconv.conv1d(x[:, :, 0], w[:, :, 0], backend=backend), (0, 4, 7), np.float32),
        (gpuconv.max_pool2d(x, 2, backend=backend), (0, 3, 4, 4), np.float32),
        (gpuconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True, backend=backend), (0, 3, 5, 5), np.float32),
        (gpuconv.pad2d(x, ((1, 2), (0, 3)), backend=backend), (0, 3, 12, 11), np.float32),
        (gpuconv.max_pool2d(xp.zeros((1, 0, 4, 4)), 2, backend=backend), (1, 0, 2, 2), np.float64),
    ]
    values, indices = gpuconv.max_pool2d(x, 2, return_indices=True, backend=backend)
    checks += [(values, (0, 3, 4, 4), np.float32), (indices, (0, 3, 4, 4), np.int64)]
    for out, shape, dtype in checks:
        assert type(out) is type(x) and out.shape == shape and out.dtype == dtype
    # the rules still apply to an empty batch
    with pytest.raises(ValueError, match="w"):
        gpuconv.conv2d(xp.zeros((0, 3, 2, 2)), xp.zeros((1, 3, 5, 5)), backend=backend)
    with pytest.raises(ValueError, match="padding"):
        gpuconv.max_pool2d(x, 2, padding=2, backend=backend)


def test_unbatched_inputs(backend):
    rng = np.random.default_rng(7)
    x, w, b = random_array(rng, (3, 7, 8), np.float32), random_array(rng, (2, 3, 3, 3), np.float32), \
        random_array(rng, (2,), np.float32)
    xb = to_backend(x, backend)
    assert_close(gpuconv.conv2d(xb, to_backend(w, backend), to_backend(b, backend), padding="same", stride=2,
                                backend=backend),
                 ref.conv2d(x[None], w, b, 2, "same")[0], np.float32, "unbatched conv2d")
    values, indices = gpuconv.max_pool2d(xb, 3, 2, 1, return_indices=True, backend=backend)
    expected_values, expected_indices = ref.max_pool2d(x[None], 3, 2, 1)
    assert_same(values, expected_values[0], np.float32, "unbatched max_pool2d")
    assert_same(indices, expected_indices[0], np.int64, "unbatched max_pool2d indices")
    assert_close(gpuconv.avg_pool2d(xb, 2, backend=backend), ref.avg_pool2d(x[None], 2)[0], np.float32, "avg")
    for shape in ((7, 8), (3, 7, 8)):
        y = random_array(rng, shape, np.float32)
        assert_same(gpuconv.pad2d(to_backend(y, backend), (1, 2), "circular", backend=backend),
                    ref.pad2d(y, (1, 1, 2, 2), "circular"), np.float32, f"pad2d {shape}")
    # 1-D ops on (C, L)
    s, k = random_array(rng, (3, 10), np.float32), random_array(rng, (2, 3, 4), np.float32)
    sb = to_backend(s, backend)
    assert_close(gpuconv.conv1d(sb, to_backend(k, backend), padding="same", backend=backend),
                 ref.conv2d(s[None, :, None], k[:, :, None], padding="same")[0, :, 0], np.float32, "unbatched conv1d")
    values, indices = gpuconv.max_pool1d(sb, 3, 2, 1, return_indices=True, backend=backend)
    expected_values, expected_indices = ref.max_pool2d(s[None, :, None], (1, 3), (1, 2), (0, 1))
    assert_same(values, expected_values[0, :, 0], np.float32, "unbatched max_pool1d")
    assert_same(indices, expected_indices[0, :, 0], np.int64, "unbatched max_pool1d indices")
    assert_close(gpuconv.avg_pool1d(sb, 4, 3, 2, ceil_mode=True, count_include_pad=False, backend=backend),
                 ref.avg_pool2d(s[None, :, None], (1, 4), (1, 3), (0, 2), True, False)[0, :, 0], np.float32,
                 "unbatched avg_pool1d")


def test_one_dimensional_padding_forms():
    rng = np.random.default_rng(8)
    x, w = random_array(rng, (1, 2, 9)), random_array(rng, (3, 2, 4))
    for padding, sides in ((2, (2, 2)), ((1, 3), (1, 3)), ((2,), (2, 2)), ("valid", (0, 0))):
        expected = ref.conv2d(x[:, :, None], w[:, :, None], padding=((0, 0), sides))[:, :, 0]
        assert_close(gpuconv.conv1d(x, w, padding=padding), expected, np.float64, f"conv1d padding={padding}")
    # "same", stride 2 and an even kernel: out = ceil(9 / 2) = 5, total pad (5-1)*2 + 4 - 9 = 3 -> (1, 2)
    expected = ref.conv2d(x[:, :, None], w[:, :, None], stride=(1, 2), padding=((0, 0), (1, 2)))[:, :, 0]
    assert_close(gpuconv.conv1d(x, w, stride=2, padding="same"), expected, np.float64, "conv1d same stride 2")
    assert expected.shape[-1] == 5


class _FakeCudaArray:
    """Looks like another library's GPU array: DLPack on device type kDLCUDA."""

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        raise AssertionError("must not be read without CuPy")


def test_device_arrays_without_cupy_are_a_clear_error():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed: device arrays are accepted")
    except ImportError:
        pass
    w = np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(TypeError, match=r"x is a CUDA device array .*CuPy is not installed"):
        gpuconv.conv2d(_FakeCudaArray(), w)


def test_host_dlpack_objects_run_on_numpy(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)

    class HostOnly:  # DLPack on the CPU (device type 1): read through NumPy
        __array__ = x.__array__
        __dlpack__ = x.__dlpack__
        __dlpack_device__ = x.__dlpack_device__

    out = gpuconv.conv2d(HostOnly(), w)
    assert isinstance(out, np.ndarray)
    assert_close(out, ref.conv2d(x, w), np.float32, "conv2d of a host DLPack object")
