"""max_pool2d / avg_pool2d (and 1-D) against the float64 reference, on every backend."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuconv
from gpuconv import _reference as ref
from support import (DTYPES, as_reference_input, assert_close, assert_same, poisoned_numpy_backend, random_array,
                     stable_seed, to_backend, to_numpy)


def pool_data(rng, shape, dtype, kind):
    """normal data; "ties": few distinct values; "nan"/"inf": some NaN / +-inf mixed in."""
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(dtype)
    x = random_array(rng, shape, dtype)
    if kind == "nan":
        x[rng.random(shape) < 0.15] = np.nan
    elif kind == "inf":
        x[rng.random(shape) < 0.15] = -np.inf
        x[rng.random(shape) < 0.05] = np.inf
    return x


def check_max_pool(backend, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Values (bit-exact) and indices (exact) against the reference, with and without return_indices."""
    expected, expected_idx = ref.max_pool2d(as_reference_input(x), kernel_size, stride, padding, dilation, ceil_mode)
    xb = to_backend(x, backend)
    what = f"{backend} max_pool2d k={kernel_size} s={stride} p={padding} d={dilation} ceil={ceil_mode}"
    with poisoned_numpy_backend():
        out = gpuconv.max_pool2d(xb, kernel_size, stride, padding, dilation, ceil_mode, backend=backend)
        out2, idx = gpuconv.max_pool2d(xb, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True,
                                       backend=backend)
    assert_same(out, expected, x.dtype, what)
    assert_same(out2, expected, x.dtype, what + " return_indices=True")
    assert_same(idx, expected_idx, np.int64, what + " indices")
    return expected, expected_idx


def check_avg_pool(backend, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None):
    expected = ref.avg_pool2d(as_reference_input(x), kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override)
    with poisoned_numpy_backend():
        out = gpuconv.avg_pool2d(to_backend(x, backend), kernel_size, stride, padding, ceil_mode, count_include_pad,
                                 divisor_override, backend=backend)
    assert_close(out, expected, x.dtype, f"{backend} avg_pool2d k={kernel_size} s={stride} p={padding} "
                                         f"ceil={ceil_mode} include_pad={count_include_pad} div={divisor_override}")
    return expected


@st.composite
def pool_cases(draw, dilated):
    """Random valid pooling parameters within N <= 2, C <= 6, H, W <= 14, kernels <= 5."""
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = draw(st.one_of(st.none(), st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    padding = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilated else (1, 1)
    hw = tuple(max(draw(st.integers(1, 14)), d * (kk - 1) + 1 - 2 * p) for kk, p, d in zip(k, padding, dilation))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 6))) + hw, kernel_size=k, stride=stride,
                padding=padding, dilation=dilation, ceil_mode=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)),
                data=draw(st.sampled_from(("normal", "normal", "ties", "nan", "inf"))),
                seed=draw(st.integers(0, 2**32 - 1)))


@settings(derandomize=True, max_examples=100, deadline=None)
@given(case=pool_cases(dilated=True))
def test_max_pool2d_matches_reference(backend, case):
    rng = np.random.default_rng(case["seed"])
    x = pool_data(rng, case["shape"], case["dtype"], case["data"])
    check_max_pool(backend, x, case["kernel_size"], case["stride"], case["padding"], case["dilation"],
                   case["ceil_mode"])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf + -inf in "inf" data
@settings(derandomize=True, max_examples=100, deadline=None)
@given(case=pool_cases(dilated=False), count_include_pad=st.booleans(),
       divisor_override=st.one_of(st.none(), st.integers(1, 9)))
def test_avg_pool2d_matches_reference(backend, case, count_include_pad, divisor_override):
    rng = np.random.default_rng(case["seed"])
    x = pool_data(rng, case["shape"], case["dtype"], case["data"])
    check_avg_pool(backend, x, case["kernel_size"], case["stride"], case["padding"], case["ceil_mode"],
                   count_include_pad, divisor_override)


# Hand-picked cases: (x shape, positional arguments kernel_size, stride, padding, ceil_mode).
POOL_EDGE_CASES = {
    "1x1 kernel": ((2, 3, 5, 4), (1, None, 0, False)),
    "1x1 kernel strided": ((1, 2, 7, 6), (1, 3, 0, True)),
    "kernel equal to the input": ((2, 2, 4, 5), ((4, 5), None, 0, False)),
    "stride larger than the kernel": ((1, 3, 13, 11), (2, 3, 0, False)),
    "stride larger than the kernel, ceil": ((1, 3, 13, 11), (2, 3, 1, True)),
    # h=6, k=3, s=2, p=1, ceil: 4 windows; the last starts at row 5 and overhangs the padding
    "ceil_mode window overhanging the padding": ((1, 2, 6, 6), (3, 2, 1, True)),
    # h=5, k=2, s=2, p=1, ceil: a 4th window would start in the right padding and is dropped
    "ceil_mode window starting in the right padding is dropped": ((1, 2, 5, 5), (2, 2, 1, True)),
    # windows starting in the left padding with ceil_mode and uneven sizes
    "ceil_mode windows starting in the left padding": ((2, 1, 7, 4), ((5, 3), (3, 2), (2, 1), True)),
    "asymmetric kernel and stride": ((2, 2, 9, 12), ((2, 5), (3, 1), (1, 2), False)),
    "single pixel": ((1, 1, 1, 1), (1, None, 0, True)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", POOL_EDGE_CASES)
def test_pool_edge_cases(backend, name, dtype):
    shape, (kernel_size, stride, padding, ceil_mode) = POOL_EDGE_CASES[name]
    rng = np.random.default_rng(stable_seed(name, np.dtype(dtype).name))
    x = random_array(rng, shape, dtype)
    check_max_pool(backend, x, kernel_size, stride, padding, 1, ceil_mode)
    for count_include_pad in (True, False):
        for divisor_override in (None, 3):
            check_avg_pool(backend, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def test_ceil_mode_output_sizes():
    """PyTorch's sizes, worked by hand: the last window must start inside the input or left padding."""
    x = np.ones((1, 1, 5, 6))
    assert gpuconv.max_pool2d(x, 2, 2, 1, ceil_mode=True).shape == (1, 1, 3, 4)  # 5: 3 not 4; 6: 4
    assert gpuconv.max_pool2d(x, 2, 2, 1, ceil_mode=False).shape == (1, 1, 3, 4)
    assert gpuconv.avg_pool2d(x, 3, 2, 0, ceil_mode=True).shape == (1, 1, 2, 3)  # 5: 2; 6: ceil(3/2)+1 = 3
    assert gpuconv.avg_pool2d(x, 3, 2, 0, ceil_mode=False).shape == (1, 1, 2, 2)


def test_count_include_pad_divisors():
    """Corner window of a 3x3 average with padding 1 sees 4 inputs of ones: 4/9 or 4/4."""
    x = np.ones((1, 1, 4, 4))
    with_pad = gpuconv.avg_pool2d(x, 3, 1, 1, count_include_pad=True)[0, 0]
    without = gpuconv.avg_pool2d(x, 3, 1, 1, count_include_pad=False)[0, 0]
    assert with_pad[0, 0] == pytest.approx(4 / 9) and with_pad[0, 1] == pytest.approx(6 / 9)
    assert with_pad[1, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(without, np.ones((4, 4)))
    # ceil_mode overhang past the padding never counts: h=6, k=3, s=2, p=1: last window rows 5, 6(pad), 7(outside)
    ceil = gpuconv.avg_pool2d(np.ones((1, 1, 6, 6)), 3, 2, 1, ceil_mode=True)[0, 0]
    assert ceil.shape == (4, 4)
    assert ceil[3, 3] == pytest.approx(1 / 4)  # one input tap over 2x2 taps inside the padded input
    assert gpuconv.avg_pool2d(np.ones((1, 1, 6, 6)), 3, 2, 1, ceil_mode=True, divisor_override=2)[0, 0, 3, 3] == 0.5


def test_max_pool_nan_propagates_with_the_last_nan_index(backend):
    x = np.array([[1.0, np.nan, 7.0],
                  [9.0, np.nan, 2.0],
                  [3.0, 4.0, 5.0]])[None, None]
    expected_idx = np.array([[[[4]]]])  # the window scans 1, nan(1), 7, 9, nan(4), ... -> last NaN at flat 4
    for dtype in DTYPES:
        out, idx = gpuconv.max_pool2d(to_backend(x.astype(dtype), backend), 3, return_indices=True, backend=backend)
        assert np.isnan(to_numpy(out)).all() and to_numpy(out).dtype == dtype
        assert_same(idx, expected_idx, np.int64, f"NaN index ({np.dtype(dtype)})")
    # a NaN before the maximum still wins; other windows are untouched
    y = np.array([[np.nan, 1.0, 5.0, 2.0]])[None, None]
    out, idx = gpuconv.max_pool2d(to_backend(y, backend), (1, 2), return_indices=True, backend=backend)
    assert_same(out, np.array([[[[np.nan, 5.0]]]]), np.float64, "NaN first")
    assert_same(idx, np.array([[[[0, 2]]]]), np.int64, "NaN first indices")


def test_max_pool_all_minus_inf_window_keeps_the_first_tap_index(backend):
    x = np.full((1, 1, 4, 4), -np.inf)
    x[0, 0, 3, 3] = 1.0
    out, idx = gpuconv.max_pool2d(to_backend(x, backend), 2, 2, return_indices=True, backend=backend)
    assert_same(out, np.array([[[[-np.inf, -np.inf], [-np.inf, 1.0]]]]), np.float64, "-inf values")
    assert_same(idx, np.array([[[[0, 2], [8, 15]]]]), np.int64, "-inf indices")
    # with padding 1, the corner window's first in-bounds tap is (0, 0)
    out, idx = gpuconv.max_pool2d(to_backend(x, backend), 3, 2, 1, return_indices=True, backend=backend)
    assert_same(idx[..., 0, 0], np.array([[0]]), np.int64, "-inf padded corner index")


def test_dilated_max_pool_window_with_no_input_tap(backend):
    """h=2, k=2, padding 1, dilation 3: the only window's taps are rows -1 and 2, both outside."""
    rng = np.random.default_rng(2)
    for dtype in DTYPES:
        x = random_array(rng, (2, 3, 2, 5), dtype)
        expected, expected_idx = check_max_pool(backend, x, 2, 1, 1, (3, 1))
        assert expected.shape == (2, 3, 1, 6) and np.isneginf(expected).all() and (expected_idx == -1).all()
    x = random_array(rng, (1, 2, 6, 3), np.float32)
    expected, expected_idx = check_max_pool(backend, x, 2, 1, 1, (1, 4))
    assert np.isneginf(expected).all() and (expected_idx == -1).all()


def test_avg_pool_never_divides_by_zero_or_yields_nan_in_padding(backend):
    rng = np.random.default_rng(4)
    x = random_array(rng, (2, 2, 5, 5))
    for ceil_mode in (False, True):
        for count_include_pad in (False, True):
            expected = check_avg_pool(backend, x, 2, 2, 1, ceil_mode, count_include_pad)
            assert np.isfinite(expected).all()


def test_pools_after_a_call_that_produced_nan(backend):
    rng = np.random.default_rng(9)
    x = random_array(rng, (2, 3, 8, 8))
    dirty = x.copy()
    dirty[..., ::2, :] = np.nan
    assert np.isnan(to_numpy(gpuconv.max_pool2d(to_backend(dirty, backend), 2, backend=backend))).all()
    assert np.isnan(to_numpy(gpuconv.avg_pool2d(to_backend(dirty, backend), 3, 1, 1, backend=backend))).any()
    check_max_pool(backend, x, 2)
    check_avg_pool(backend, x, 3, 1, 1)


def test_pool1d_matches_reference(backend):
    rng = np.random.default_rng(12)
    for dtype in DTYPES:
        x = random_array(rng, (2, 3, 11), dtype)
        x64 = as_reference_input(x)[:, :, None]
        for k, s, p, d, ceil in ((3, None, 1, 1, False), (2, 3, 1, 2, True), (4, 1, 2, 1, True), (1, 2, 0, 1, False)):
            values, idx = ref.max_pool2d(x64, (1, k), None if s is None else (1, s), (0, p), (1, d), ceil)
            out, got_idx = gpuconv.max_pool1d(to_backend(x, backend), k, s, p, d, ceil, return_indices=True,
                                              backend=backend)
            assert_same(out, values[:, :, 0], dtype, f"max_pool1d k={k} s={s} p={p} d={d}")
            assert_same(got_idx, idx[:, :, 0], np.int64, f"max_pool1d indices k={k}")
            assert_same(gpuconv.max_pool1d(to_backend(x, backend), k, s, p, d, ceil, backend=backend),
                        values[:, :, 0], dtype, "max_pool1d without indices")
            for include in (True, False):
                expected = ref.avg_pool2d(x64, (1, k), None if s is None else (1, s), (0, p), ceil, include)
                out = gpuconv.avg_pool1d(to_backend(x, backend), k, s, p, ceil, include, backend=backend)
                assert_close(out, expected[:, :, 0], dtype, f"avg_pool1d k={k} s={s} p={p} include={include}")


def test_reference_pooling_matches_torch(torch):
    """Validates the oracle itself against torch.nn.functional."""
    functional = torch.nn.functional
    rng = np.random.default_rng(6)
    for trial in range(40):
        kh, kw = (int(v) for v in rng.integers(1, 6, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        padding = (int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1)))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        ceil_mode = bool(trial % 2)
        h = max(int(rng.integers(1, 12)), dilation[0] * (kh - 1) + 1)
        w = max(int(rng.integers(1, 12)), dilation[1] * (kw - 1) + 1)
        ties = trial % 3 == 0  # small integers: many equal maxima
        x = rng.integers(-3, 4, (2, 2, h, w)).astype(np.float64) if ties else rng.standard_normal((2, 2, h, w))
        if trial % 4 == 1:
            x[rng.random(x.shape) < 0.2] = np.nan
        values, idx = ref.max_pool2d(x, (kh, kw), stride, padding, dilation, ceil_mode)
        t_values, t_idx = functional.max_pool2d(torch.tensor(x), (kh, kw), stride, padding, dilation, ceil_mode,
                                                return_indices=True)
        np.testing.assert_array_equal(t_values.numpy(), values, err_msg=f"max values, trial {trial}")
        np.testing.assert_array_equal(t_idx.numpy(), idx, err_msg=f"max indices, trial {trial}")
        for include in (True, False):
            for divisor in (None, 5):
                expected = ref.avg_pool2d(x, (kh, kw), stride, padding, ceil_mode, include, divisor)
                got = functional.avg_pool2d(torch.tensor(x), (kh, kw), stride, padding, ceil_mode, include,
                                            divisor).numpy()
                np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12,
                                           err_msg=f"avg include={include} divisor={divisor}, trial {trial}")


@pytest.mark.parametrize("big", [2**31, 2**62, 2**63, 2**100])
def test_huge_strides_and_dilations_give_the_definitions_result(backend, big):
    """Issue 13, item 4 (OverflowError before): a stride beyond the padded input gives one window,
    the dilation of a one-tap kernel axis changes nothing."""
    rng = np.random.default_rng(20)
    x = random_array(rng, (1, 2, 5, 7), np.float32)
    xb = to_backend(x, backend)
    for args, same_as in [((3, big, 1), (3, (7, 9), 1)), (((2, 3), (1, big), 0, 1, True), ((2, 3), (1, 7), 0, 1, True)),
                          (((1, 2), 1, 0, (big, 1)), ((1, 2), 1, 0, 1))]:
        values, indices = ref.max_pool2d(x, *same_as)
        out, idx = gpuconv.max_pool2d(xb, *args, return_indices=True, backend=backend)
        assert_same(out, values, np.float32, f"{backend} max_pool2d{args}")
        assert_same(idx, indices, np.int64, f"{backend} max_pool2d{args} indices")
    for args, same_as in [((3, big, 1), (3, (7, 9), 1)), ((2, (big, 1), 1, True, False), (2, (6, 1), 1, True, False))]:
        out = gpuconv.avg_pool2d(xb, *args, backend=backend)
        assert_close(out, ref.avg_pool2d(x, *same_as), np.float32, f"{backend} avg_pool2d{args}")
