"""conv2d against the float64 reference, on every backend and every conv algorithm it offers."""
from __future__ import annotations

import re
import threading
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuconv
from gpuconv import _reference as ref
from gpuconv._geometry import conv_spec
from gpuconv.backends import get_backend
from support import (DTYPES, as_reference_input, assert_close, poisoned_numpy_backend, random_array, stable_seed,
                     to_backend, to_numpy)

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def check_conv(backend, x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Every algorithm of the backend: applicable ones must match the reference, the others
    must raise ValueError naming the algorithm. Returns the reference result."""
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode)
    expected = ref.conv2d(as_reference_input(x), as_reference_input(w), as_reference_input(bias), **params)
    dtype = np.result_type(x, w) if bias is None else np.result_type(x, w, bias)
    impl = get_backend(backend)
    applicable = impl.applicable_algorithms(conv_spec(x.shape, w.shape, stride, padding, dilation, groups,
                                                      padding_mode), dtype)
    assert "auto" in applicable and set(applicable) <= set(impl.algorithms)
    args = [to_backend(a, backend) for a in (x, w, bias)]
    for algorithm in impl.algorithms:
        if algorithm in applicable:
            with poisoned_numpy_backend():
                out = gpuconv.conv2d(*args, **params, algorithm=algorithm, backend=backend)
            assert_close(out, expected, dtype, f"{backend} algorithm={algorithm} {params}")
        else:
            with pytest.raises(ValueError, match=re.escape(algorithm)):
                gpuconv.conv2d(*args, **params, algorithm=algorithm, backend=backend)
    return expected


@st.composite
def conv_cases(draw):
    """Random shapes and parameters within N <= 2, C, F <= 6, H, W <= 14, kernels <= 5, always valid."""
    # Half of the draws take the common value (3x3, stride 1, dilation 1, groups 1), so that
    # specialised algorithms (e.g. Winograd) see many cases too.
    pair = st.tuples(st.integers(1, 3), st.integers(1, 3))
    groups = draw(st.one_of(st.just(1), st.integers(1, 3)))
    cg, fg = draw(st.integers(1, 6 // groups)), draw(st.integers(1, 6 // groups))
    kh, kw = draw(st.one_of(st.just((3, 3)), st.tuples(st.integers(1, 5), st.integers(1, 5))))
    stride = draw(st.one_of(st.just((1, 1)), pair))
    dilation = draw(st.one_of(st.just((1, 1)), pair))
    mode = draw(st.sampled_from(PADDING_MODES))
    form = draw(st.sampled_from(("int", "pair", "sides", "valid", "same")))
    p = st.integers(0, 3)
    padding = {"int": lambda: draw(p), "pair": lambda: (draw(p), draw(p)),
               "sides": lambda: ((draw(p), draw(p)), (draw(p), draw(p))),
               "valid": lambda: "valid", "same": lambda: "same"}[form]()
    spans = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    sizes = []
    for axis, size in enumerate((draw(st.integers(1, 14)), draw(st.integers(1, 14)))):
        if isinstance(padding, str):
            # with "same", every pad is < the dilated kernel, so size >= span keeps reflect/circular legal
            need = spans[axis] if (padding == "valid" or mode != "zeros") else 1
        else:
            before, after = ref.conv_pads(padding, (1, 1), (kh, kw), stride, dilation)[2 * axis:2 * axis + 2]
            need = max(spans[axis] - before - after, {"reflect": max(before, after) + 1,
                                                      "circular": max(before, after)}.get(mode, 1))
        sizes.append(max(size, need))
    return dict(n=draw(st.integers(1, 2)), c=cg * groups, f=fg * groups, hw=tuple(sizes), k=(kh, kw),
                stride=stride, dilation=dilation, groups=groups, padding=padding, padding_mode=mode,
                bias=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)), seed=draw(st.integers(0, 2**32 - 1)))


@settings(derandomize=True, max_examples=150, deadline=None)
@given(case=conv_cases())
def test_conv2d_matches_reference(backend, case):
    rng = np.random.default_rng(case["seed"])
    x = random_array(rng, (case["n"], case["c"]) + case["hw"], case["dtype"])
    w = random_array(rng, (case["f"], case["c"] // case["groups"]) + case["k"], case["dtype"])
    bias = random_array(rng, (case["f"],), case["dtype"]) if case["bias"] else None
    check_conv(backend, x, w, bias, case["stride"], case["padding"], case["dilation"], case["groups"],
               case["padding_mode"])


# Hand-picked edge cases: (x shape, w shape, keyword arguments).
EDGE_CASES = {
    "1x1 kernel": ((2, 5, 7, 6), (4, 5, 1, 1), {}),
    "1x1 kernel strided": ((1, 3, 9, 8), (6, 3, 1, 1), dict(stride=2)),
    "kernel equal to the input": ((2, 3, 5, 4), (2, 3, 5, 4), {}),
    "kernel equal to the padded input": ((1, 2, 3, 3), (3, 2, 5, 5), dict(padding=1)),
    "stride larger than the kernel": ((2, 3, 13, 11), (4, 3, 2, 2), dict(stride=3)),
    "stride larger than the input": ((1, 2, 4, 4), (2, 2, 3, 3), dict(stride=5)),
    "even kernel same stride 1": ((1, 3, 7, 8), (2, 3, 2, 4), dict(padding="same")),
    "even kernel same stride 2": ((2, 2, 9, 10), (3, 2, 4, 2), dict(padding="same", stride=2)),
    "even kernel same stride 3 dilated": ((1, 2, 11, 13), (2, 2, 2, 4), dict(padding="same", stride=(3, 2),
                                                                            dilation=(2, 3))),
    "same on a kernel larger than the input": ((1, 1, 3, 2), (1, 1, 5, 4), dict(padding="same")),
    "asymmetric padding": ((2, 3, 6, 7), (2, 3, 3, 2), dict(padding=((0, 3), (2, 1)))),
    "asymmetric reflect padding": ((1, 2, 6, 5), (2, 2, 3, 3), dict(padding=((2, 0), (1, 4)), padding_mode="reflect")),
    "dilation": ((2, 3, 12, 13), (4, 3, 3, 3), dict(dilation=(2, 3))),
    "dilation and stride": ((1, 2, 14, 14), (2, 2, 3, 2), dict(dilation=3, stride=2, padding=2)),
    "depthwise groups=C": ((2, 4, 9, 9), (4, 1, 3, 3), dict(groups=4, padding=1)),
    "depthwise multiplier 2": ((1, 3, 8, 7), (6, 1, 5, 3), dict(groups=3, padding="same")),
    "groups=2": ((2, 6, 7, 7), (4, 3, 3, 3), dict(groups=2, stride=2)),
    "reflect pad = size - 1": ((1, 2, 4, 3), (2, 2, 3, 3), dict(padding=(3, 2), padding_mode="reflect")),
    "circular pad = size": ((1, 2, 3, 4), (2, 2, 3, 3), dict(padding=(3, 4), padding_mode="circular")),
    "replicate pad > size": ((1, 1, 2, 2), (1, 1, 3, 3), dict(padding=4, padding_mode="replicate")),
    "single pixel input": ((2, 3, 1, 1), (2, 3, 1, 1), {}),
}


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", EDGE_CASES)
def test_conv2d_edge_cases(backend, name, dtype, bias):
    x_shape, w_shape, kwargs = EDGE_CASES[name]
    rng = np.random.default_rng(stable_seed(name, np.dtype(dtype).name, bias))
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    check_conv(backend, x, w, random_array(rng, (w_shape[0],), dtype) if bias else None, **kwargs)


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_same_padding_output_size_is_ceil_of_input_over_stride(backend, k, stride):
    rng = np.random.default_rng(k * 10 + stride)
    x, w = random_array(rng, (1, 2, 11, 8)), random_array(rng, (3, 2, k, k))
    out = gpuconv.conv2d(to_backend(x, backend), to_backend(w, backend), padding="same", stride=stride,
                         backend=backend)
    assert out.shape == (1, 3, -(-11 // stride), -(-8 // stride))
    check_conv(backend, x, w, padding="same", stride=stride)


def test_conv2d_after_a_call_that_produced_nan(backend):
    """A call whose output holds NaN must leave nothing behind for the next call (cached buffers)."""
    rng = np.random.default_rng(7)
    x, w = random_array(rng, (2, 3, 9, 9)), random_array(rng, (4, 3, 3, 3))
    dirty = x.copy()
    dirty[:, :, ::2] = np.nan
    impl = get_backend(backend)
    for algorithm in impl.applicable_algorithms(conv_spec(x.shape, w.shape, 1, 1, 1, 1, "zeros")):
        bad = to_numpy(gpuconv.conv2d(to_backend(dirty, backend), to_backend(w, backend), padding=1,
                                      algorithm=algorithm, backend=backend))
        assert np.isnan(bad).any()
        out = gpuconv.conv2d(to_backend(x, backend), to_backend(w, backend), padding=1, algorithm=algorithm,
                             backend=backend)
        assert_close(out, ref.conv2d(x, w, padding=1), np.float64, f"algorithm={algorithm}")


def run_in_a_fresh_thread(fn):
    """fn() in a new thread (so thread-local scratch buffers are allocated afresh), its exception re-raised."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_finite_inputs_raise_no_floating_point_warnings(backend):
    """Scratch memory can hold anything from earlier calls (here: huge finite values, in buffers
    allocated afresh on one thread); no algorithm may compute on it in a way that warns (users
    run with -W error or np.seterr(all="raise"))."""
    from gpuconv._config import config

    rng = np.random.default_rng(13)
    cases = [((2, 3, 12, 12), (4, 3, 3, 3), dict(padding=1)),
             ((1, 3, 13, 11), (6, 1, 5, 3), dict(groups=3, dilation=2)),
             ((2, 4, 9, 10), (4, 4, 2, 2), dict(stride=2, padding="same")), ((1, 2, 14, 14), (3, 2, 3, 3), {}),
             ((2, 3, 5, 4), (2, 3, 5, 4), {}),
             ((1, 2, 4, 3), (2, 2, 3, 3), dict(padding=(3, 2), padding_mode="reflect"))]
    impl = get_backend(backend)
    saved = config.num_threads
    gpuconv.set_num_threads(1)  # the tiles run on the calling thread: the fresh one
    try:
        for x_shape, w_shape, kwargs in cases:
            x, w = random_array(rng, x_shape, np.float32), random_array(rng, w_shape, np.float32)
            spec = conv_spec(x_shape, w_shape, kwargs.get("stride", 1), kwargs.get("padding", 0),
                             kwargs.get("dilation", 1), kwargs.get("groups", 1), kwargs.get("padding_mode", "zeros"))
            for algorithm in impl.applicable_algorithms(spec):
                with warnings.catch_warnings(), poisoned_numpy_backend(huge=True):
                    warnings.simplefilter("error", RuntimeWarning)
                    out = run_in_a_fresh_thread(lambda: gpuconv.conv2d(
                        to_backend(x, backend), to_backend(w, backend), **kwargs, algorithm=algorithm, backend=backend))
                assert_close(out, ref.conv2d(x, w, **kwargs), np.float32, f"algorithm={algorithm} {kwargs}")
    finally:
        config.num_threads = saved


def test_poisoning_reaches_the_numpy_backend():
    """The poison used by the parity tests really replaces np.empty inside the backend."""
    from gpuconv.backends.cpu import conv, pool

    with poisoned_numpy_backend():
        assert np.isnan(conv.np.empty((3, 2))).all()
        assert np.isnan(pool.np.empty(4, dtype=np.float16)).all()
        assert (pool.np.empty(2, dtype=np.int64) == np.iinfo(np.int64).max).all()
        assert np.isnan(conv.np.empty(64, dtype=np.uint8).view(np.float64)).all()  # raw scratch bytes
    with poisoned_numpy_backend(huge=True):
        assert (conv.np.empty(3, dtype=np.float32) == np.finfo(np.float32).max).all()
        assert (np.abs(conv.np.empty(64, dtype=np.uint8).view(np.float32)) > 1e38).all()
    assert conv.np is np and pool.np is np


def test_conv1d_matches_reference(backend):
    rng = np.random.default_rng(11)
    cases = [dict(), dict(stride=2, padding=1), dict(padding="same", dilation=2), dict(padding=(0, 3), stride=3),
             dict(padding="valid", groups=2), dict(padding=2, padding_mode="reflect"),
             dict(padding=(2, 1), padding_mode="circular"), dict(padding="same", padding_mode="replicate")]
    for kwargs in cases:
        groups = kwargs.get("groups", 1)
        x, w = random_array(rng, (2, 4, 13), np.float32), random_array(rng, (6, 4 // groups, 4), np.float32)
        b = random_array(rng, (6,), np.float32)
        pad1 = kwargs.get("padding", 0)
        pad2 = pad1 if isinstance(pad1, str) else ((0, 0), (pad1, pad1) if isinstance(pad1, int) else pad1)
        expected = ref.conv2d(x[:, :, None], w[:, :, None], b, (1, kwargs.get("stride", 1)), pad2,
                              (1, kwargs.get("dilation", 1)), groups, kwargs.get("padding_mode", "zeros"))[:, :, 0]
        out = gpuconv.conv1d(to_backend(x, backend), to_backend(w, backend), to_backend(b, backend), **kwargs,
                             backend=backend)
        assert_close(out, expected, np.float32, f"conv1d {kwargs}")


def test_workspace_cap_bounds_memory_and_keeps_results_right():
    """A conv whose whole im2col needs ~6 MiB runs under a 1 MiB cap: same result, and the peak
    of traced allocations stays under cap + output + a small slack."""
    from gpuconv._config import config

    rng = np.random.default_rng(3)
    x, w = random_array(rng, (4, 8, 48, 48), np.float32), random_array(rng, (8, 8, 5, 5), np.float32)
    b = random_array(rng, (8,), np.float32)
    expected = ref.conv2d(x, w, b, padding=1)
    im2col_bytes = 4 * 8 * 5 * 5 * 46 * 46 * 4
    out_bytes = expected.size * 4
    cap = 1 << 20
    assert im2col_bytes > 5 * cap
    saved = config.workspace_bytes
    gpuconv.set_workspace_limit(cap)
    try:
        impl = get_backend("numpy")
        for algorithm in impl.applicable_algorithms(conv_spec(x.shape, w.shape, 1, 1, 1, 1, "zeros")):
            # a first call may fill one-time library caches (BLAS, NumPy); measure the second
            gpuconv.conv2d(x, w, b, padding=1, algorithm=algorithm, backend="numpy")
            tracemalloc.start()
            try:
                out = gpuconv.conv2d(x, w, b, padding=1, algorithm=algorithm, backend="numpy")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert_close(out, expected, np.float32, f"algorithm={algorithm} under a 1 MiB cap")
            assert peak <= cap + out_bytes + cap // 4, \
                f"algorithm={algorithm}: peak {peak} bytes > cap {cap} + output {out_bytes} + slack"
    finally:
        config.workspace_bytes = saved


def test_reference_conv_matches_torch(torch):
    """Validates the oracle itself (not gpuconv) against torch.nn.functional."""
    functional = torch.nn.functional
    rng = np.random.default_rng(5)
    for trial in range(12):
        groups = int(rng.integers(1, 3))
        kh, kw = (int(v) for v in rng.integers(1, 6, 2))
        stride, dilation = tuple(int(v) for v in rng.integers(1, 4, 2)), tuple(int(v) for v in rng.integers(1, 3, 2))
        mode = PADDING_MODES[trial % 4]
        t, b, l, r = (int(v) for v in rng.integers(0, 3, 4))
        h = max(int(rng.integers(1, 12)), dilation[0] * (kh - 1) + 1, t + 1, b + 1)
        wd = max(int(rng.integers(1, 12)), dilation[1] * (kw - 1) + 1, l + 1, r + 1)
        x, w = rng.standard_normal((2, 2 * groups, h, wd)), rng.standard_normal((2 * groups, 2, kh, kw))
        bias = rng.standard_normal(2 * groups)
        expected = ref.conv2d(x, w, bias, stride, ((t, b), (l, r)), dilation, groups, mode)
        padded = functional.pad(torch.tensor(x), (l, r, t, b), mode="constant" if mode == "zeros" else mode)
        got = functional.conv2d(padded, torch.tensor(w), torch.tensor(bias), stride, 0, dilation, groups).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10, err_msg=f"trial {trial}")
        # PyTorch's "same" (stride 1 only) puts the odd pixel after, like TensorFlow
        expected = ref.conv2d(x, w, bias, 1, "same", dilation, groups)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch notes that even kernels need a padded copy
            got = functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(bias), 1, "same", dilation,
                                    groups).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10, err_msg=f"same, trial {trial}")


def test_reference_same_padding_follows_tensorflow():
    """TensorFlow's documented 'same' rule, written out for a few cases."""
    # in=7, k=4, s=2: out=4, total=(4-1)*2+4-7=3 -> (1, 2); in=8, k=3, s=3: out=3, total=max(6+3-8,0)=1 -> (0, 1)
    assert ref.conv_pads("same", (7, 8), (4, 3), (2, 3), (1, 1)) == (1, 2, 0, 1)
    # dilated: k=3, d=2 spans 5; in=5, s=1: total=4 -> (2, 2); in=6, s=4, k=2, d=1: out=2, total=max(4+2-6,0)=0
    assert ref.conv_pads("same", (5, 6), (3, 2), (1, 4), (2, 1)) == (2, 2, 0, 0)


@pytest.mark.parametrize("big", [2**31, 2**62, 2**63, 2**100])
def test_huge_strides_and_dilations_give_the_definitions_result(backend, big):
    """Issue 13, item 4: a stride beyond the padded input gives one output whatever its value, a
    dilation of a one-tap kernel changes nothing (OverflowError before, from 2**62 on numpy and
    2**31 on the CUDA backends)."""
    rng = np.random.default_rng(19)
    x, w = random_array(rng, (1, 2, 5, 7), np.float32), random_array(rng, (3, 2, 3, 1), np.float32)
    xb, wb = to_backend(x, backend), to_backend(w, backend)
    for kwargs, same_as in [(dict(stride=(1, big), padding=1), dict(stride=(1, 9), padding=1)),
                            (dict(stride=big), dict(stride=(5, 7))),
                            (dict(dilation=(1, big), padding=(1, 0)), dict(padding=(1, 0))),
                            (dict(stride=(big, 2), dilation=(1, big)), dict(stride=(5, 2)))]:
        out = gpuconv.conv2d(xb, wb, **kwargs, backend=backend)
        assert_close(out, ref.conv2d(x, w, **same_as), np.float32, f"{backend} {kwargs}")


def test_conv_spec_gemm_shape():
    """ConvSpec's per-group GEMM shape, the sizes every backend plans with: weights of group g are
    (filters_per_group x reduction), one image's columns (reduction x out_pixels), and flops counts
    one multiply and one add per term."""
    spec = conv_spec((2, 6, 9, 11), (4, 3, 2, 5), (2, 1), 1, (1, 2), 2, "zeros")
    w = np.zeros((4, 3, 2, 5))
    assert (spec.oh, spec.ow) == (5, 5)
    assert spec.filters_per_group == 2 and spec.channels_per_group == 3 and spec.taps == 10
    assert spec.reduction == w[0].size == 30
    assert spec.out_pixels == 25
    assert spec.flops == 2 * spec.n * spec.f * spec.reduction * spec.out_pixels == 12000
