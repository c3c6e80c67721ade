"""gpuconv.grad and conv_transpose2d against the float64 references, on every backend and every
gradient algorithm it offers; finite differences of gpuconv's own forward ops; determinism across
thread counts; the workspace cap."""
from __future__ import annotations

import re
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuconv
from gpuconv import _backward, _reference as ref, grad
from gpuconv._config import config
from gpuconv._geometry import conv_spec
from gpuconv.backends import get_backend
from gpuconv.backends.cpu import _tiles
from support import (DTYPES, as_reference_input, assert_close, poisoned_numpy_backend, random_array, stable_seed,
                     to_backend, to_numpy)
from test_conv import EDGE_CASES, conv_cases, run_in_a_fresh_thread
from test_pool import pool_cases, pool_data


def _algorithms(impl, which: str, spec):
    """(every algorithm the backend offers for the `which` ("input"/"weight") gradient, the applicable ones)."""
    offered = getattr(impl, f"{which}_grad_algorithms", ("auto",))
    applicable = getattr(impl, f"applicable_{which}_grad_algorithms", lambda s: ("auto",))(spec)
    assert "auto" in applicable and set(applicable) <= set(offered), (which, applicable, offered)
    return offered, applicable


def check_conv_grads(backend, x, w, go, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """dx, dw and dbias by every algorithm of the backend against the references (the ones that
    cannot run the case must raise ValueError naming themselves); outputs poisoned."""
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode)
    rx, rw, rgo = as_reference_input(x), as_reference_input(w), as_reference_input(go)
    expected = {"input": ref.conv2d_input(x.shape, rw, rgo, **params),
                "weight": ref.conv2d_weight(rx, w.shape, rgo, **params)}
    dtype = np.result_type(x, w, go)
    impl = get_backend(backend)
    spec = _backward.backend_spec(conv_spec(x.shape, w.shape, stride, padding, dilation, groups, padding_mode))
    xb, wb, gb = (to_backend(a, backend) for a in (x, w, go))
    calls = {"input": lambda algorithm: grad.conv2d_input(x.shape, wb, gb, **params, algorithm=algorithm,
                                                          backend=backend),
             "weight": lambda algorithm: grad.conv2d_weight(xb, w.shape, gb, **params, algorithm=algorithm,
                                                            backend=backend)}
    for which, call in calls.items():
        offered, applicable = _algorithms(impl, which, spec)
        for algorithm in offered:
            what = f"{backend} {which} gradient, algorithm={algorithm} {params} {np.dtype(dtype).name}"
            if algorithm in applicable:
                with poisoned_numpy_backend():
                    out = call(algorithm)
                assert_close(out, expected[which], dtype, what)
            else:
                with pytest.raises(ValueError, match=re.escape(repr(algorithm))):
                    call(algorithm)
    assert_close(grad.conv2d_bias(gb), ref.conv2d_bias(rgo), go.dtype, "bias gradient")


def _conv_data(rng, x_shape, w_shape, dtype, params):
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    go = random_array(rng, ref.conv2d(x, w, **params).shape, dtype)
    return x, w, go


@settings(derandomize=True, max_examples=60, deadline=None)
@given(case=conv_cases())
def test_conv_grads_match_reference(grad_backend, case):
    rng = np.random.default_rng(case["seed"])
    params = {k: case[k] for k in ("stride", "padding", "dilation", "groups", "padding_mode")}
    x_shape, w_shape = (case["n"], case["c"]) + case["hw"], (case["f"], case["c"] // case["groups"]) + case["k"]
    x, w, go = _conv_data(rng, x_shape, w_shape, case["dtype"], params)
    check_conv_grads(grad_backend, x, w, go, **params)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", EDGE_CASES)
def test_conv_grads_edge_cases(grad_backend, name, dtype):
    x_shape, w_shape, params = EDGE_CASES[name]
    rng = np.random.default_rng([len(name), DTYPES.index(dtype)] + [ord(ch) for ch in name])
    check_conv_grads(grad_backend, *_conv_data(rng, x_shape, w_shape, dtype, params), **params)


# Layer-like shapes in which each numpy algorithm gets several tiles (under a 1 MiB cap).
TILED_CASES = {
    "3x3 same": ((3, 8, 20, 20), (8, 8, 3, 3), dict(padding=1)),
    "7x7 stride 2": ((2, 3, 30, 30), (8, 3, 7, 7), dict(stride=2, padding=3)),
    "depthwise": ((2, 8, 24, 24), (8, 1, 3, 3), dict(padding=1, groups=8)),
    "5x5 valid few channels": ((6, 1, 20, 20), (8, 1, 5, 5), {}),
    "dilated strided": ((2, 4, 25, 23), (6, 2, 3, 3), dict(stride=(2, 1), dilation=(2, 3), groups=2, padding="same")),
    "128 channels": ((2, 128, 8, 8), (128, 128, 3, 3), dict(padding=1)),  # Winograd splits its weight transform
}
TILED_CAP_MIB = {"128 channels": 8}  # the others run under 1 MiB


@pytest.mark.parametrize("name", TILED_CASES)
def test_conv_grads_over_many_tiles_are_right_and_the_same_for_every_thread_count(name, monkeypatch):
    """Under a small cap with parallel tiles forced on small inputs: every algorithm matches the
    reference, bit for bit the same on 1, 2 and 3 threads."""
    x_shape, w_shape, params = TILED_CASES[name]
    rng = np.random.default_rng([17, len(name)])
    x, w, go = _conv_data(rng, x_shape, w_shape, np.float32, params)
    spec = conv_spec(x.shape, w.shape, params.get("stride", 1), params.get("padding", 0), params.get("dilation", 1),
                     params.get("groups", 1), "zeros")
    impl = get_backend("numpy")
    monkeypatch.setattr(_tiles, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(config, "workspace_bytes", TILED_CAP_MIB.get(name, 1) << 20)
    tile_counts = []
    real_plan = _tiles.plan

    def counting_plan(*args, **kwargs):
        found = real_plan(*args, **kwargs)
        tile_counts.append(len(found.tiles))
        return found

    monkeypatch.setattr(_tiles, "plan", counting_plan)
    calls = {"input": (lambda a: grad.conv2d_input(x.shape, w, go, **params, algorithm=a, backend="numpy"),
                       ref.conv2d_input(x.shape, w, go, **params)),
             "weight": (lambda a: grad.conv2d_weight(x, w.shape, go, **params, algorithm=a, backend="numpy"),
                        ref.conv2d_weight(x, w.shape, go, **params))}
    for which, (call, expected) in calls.items():
        for algorithm in _algorithms(impl, which, spec)[1]:
            results = []
            tile_counts.clear()
            for threads in (1, 2, 3):
                monkeypatch.setattr(config, "num_threads", threads)
                results.append(call(algorithm))
            what = f"{which} gradient, algorithm={algorithm}"
            assert max(tile_counts) >= 2, f"{what}: always one tile"
            assert_close(results[0], expected, np.float32, what)
            for threads, result in zip((2, 3), results[1:]):
                assert np.array_equal(result, results[0]), f"{what}: {threads} threads differ from 1 thread"


@settings(derandomize=True, max_examples=150, deadline=None)
@given(n=st.integers(1, 3), hw=st.tuples(st.integers(1, 300), st.integers(1, 60)), k=st.integers(1, 7),
       stride=st.integers(1, 4), dilation=st.integers(1, 3), pads=st.tuples(st.integers(0, 6), st.integers(0, 6)),
       channels=st.integers(1, 8), cap_mib=st.sampled_from([1, 3, 256]))
def test_col2im_tiles_of_one_wave_never_share_input_rows(n, hw, k, stride, dilation, pads, channels, cap_mib):
    """Row tiles of a wave run at once and add into dx: their input row blocks must be disjoint."""
    from gpuconv.backends.cpu import col2im

    span = dilation * (k - 1) + 1
    h = max(hw[0], span - sum(pads))
    spec = conv_spec((n, channels, h, hw[1]), (channels, channels, k, 1), (stride, 1), (pads, (0, 0)),
                     (dilation, 1), 1, "zeros")
    saved = _tiles.MIN_PARALLEL_BYTES, config.workspace_bytes
    _tiles.MIN_PARALLEL_BYTES, config.workspace_bytes = 0, cap_mib << 20
    try:
        tiles = col2im.plan(spec, 4).tiles
    finally:
        _tiles.MIN_PARALLEL_BYTES, config.workspace_bytes = saved
    for wave in col2im.waves(tiles):
        for i in wave:
            for j in wave:
                (n0, n1, r0, r1), (m0, m1, q0, q1) = tiles[i], tiles[j]
                if i < j and n0 < m1 and m0 < n1:
                    (a0, a1), (b0, b1) = col2im.block_rows(spec, r0, r1), col2im.block_rows(spec, q0, q1)
                    assert a1 <= b0 or b1 <= a0, f"tiles {tiles[i]} and {tiles[j]} share input rows"
    assert sorted(sum(col2im.waves(tiles), [])) == list(range(len(tiles)))


# ---- conv_transpose2d ------------------------------------------------------------------------------

TRANSPOSE_CASES = {
    "stride 2 output_padding 1": ((2, 3, 4, 5), (3, 2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    "groups dilation per-side pads": ((1, 4, 3, 3), (4, 1, 2, 3), dict(stride=(3, 1), groups=2, dilation=(1, 2),
                                                                       padding=((1, 0), (2, 1)))),
    "same stride 2": ((1, 2, 4, 4), (2, 3, 3, 3), dict(stride=2, padding="same")),
    "same, kernel shorter than the stride": ((2, 2, 3, 2), (2, 2, 2, 2), dict(stride=3, padding="same")),
    "output_padding >= stride": ((1, 1, 3, 3), (1, 2, 3, 3), dict(dilation=3, output_padding=2)),
    "valid 1x1": ((2, 5, 4, 3), (5, 3, 1, 1), dict(padding="valid")),
}


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TRANSPOSE_CASES)
def test_conv_transpose2d_matches_reference(grad_backend, name, dtype, bias):
    x_shape, w_shape, params = TRANSPOSE_CASES[name]
    rng = np.random.default_rng([23, DTYPES.index(dtype), bias] + [ord(ch) for ch in name])
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * params.get("groups", 1),), dtype) if bias else None
    expected = ref.conv_transpose2d(as_reference_input(x), as_reference_input(w), as_reference_input(b), **params)
    args = [to_backend(a, grad_backend) for a in (x, w, b)]
    with poisoned_numpy_backend():
        out = gpuconv.conv_transpose2d(*args, **params, backend=grad_backend)
        unbatched = gpuconv.conv_transpose2d(args[0][0], *args[1:], **params, backend=grad_backend)
    assert_close(out, expected, dtype, f"{grad_backend} conv_transpose2d {name}")
    assert_close(unbatched, expected[0], dtype, f"{grad_backend} conv_transpose2d {name}, unbatched")


def test_conv_transpose1d_matches_reference(grad_backend):
    rng = np.random.default_rng(29)
    for params in (dict(stride=2, padding=1, output_padding=1), dict(padding="same", stride=3, groups=2),
                   dict(padding=(2, 0), dilation=2)):
        x, w = random_array(rng, (2, 4, 7)), random_array(rng, (4, 3, 3))
        b = random_array(rng, (3 * params.get("groups", 1),))
        pad = params.get("padding", 0)
        pad2 = pad if isinstance(pad, str) else ((0, 0), pad if isinstance(pad, tuple) else (pad, pad))
        expected = ref.conv_transpose2d(x[:, :, None], w[:, :, None], b, (1, params.get("stride", 1)), pad2,
                                        (0, params.get("output_padding", 0)), params.get("groups", 1),
                                        (1, params.get("dilation", 1)))[:, :, 0]
        out = gpuconv.conv_transpose1d(*(to_backend(a, grad_backend) for a in (x, w, b)), **params,
                                       backend=grad_backend)
        assert_close(out, expected, np.float64, f"conv_transpose1d {params}")


# ---- pooling and padding -------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf in "inf" data
@settings(derandomize=True, max_examples=60, deadline=None)
@given(case=pool_cases(dilated=True))
def test_max_pool_grad_matches_reference(grad_backend, case):
    rng = np.random.default_rng(case["seed"])
    x = pool_data(rng, case["shape"], case["dtype"], case["data"])
    params = {k: case[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
    go = random_array(rng, ref.max_pool2d(as_reference_input(x), **params)[0].shape, case["dtype"])
    expected = ref.max_pool2d_input(as_reference_input(go), as_reference_input(x), **params)
    xb, gb = to_backend(x, grad_backend), to_backend(go, grad_backend)
    what = f"{grad_backend} max_pool2d_input {params} {case['data']}"
    with poisoned_numpy_backend():
        _, indices = gpuconv.max_pool2d(xb, **params, return_indices=True, backend=grad_backend)
        found = grad.max_pool2d_input(gb, xb, **params, backend=grad_backend)
        given_indices = grad.max_pool2d_input(gb, xb, **params, indices=indices, backend=grad_backend)
    assert_close(found, expected, case["dtype"], what)
    assert_close(given_indices, expected, case["dtype"], what + " with indices")


@settings(derandomize=True, max_examples=60, deadline=None)
@given(case=pool_cases(dilated=False), count_include_pad=st.booleans(),
       divisor_override=st.one_of(st.none(), st.integers(1, 9)))
def test_avg_pool_grad_matches_reference(grad_backend, case, count_include_pad, divisor_override):
    rng = np.random.default_rng(case["seed"])
    params = dict(kernel_size=case["kernel_size"], stride=case["stride"], padding=case["padding"],
                  ceil_mode=case["ceil_mode"], count_include_pad=count_include_pad, divisor_override=divisor_override)
    go = random_array(rng, ref.avg_pool2d(np.zeros(case["shape"]), **params).shape, case["dtype"])
    expected = ref.avg_pool2d_input(as_reference_input(go), case["shape"], **params)
    with poisoned_numpy_backend():
        out = grad.avg_pool2d_input(to_backend(go, grad_backend), case["shape"], **params, backend=grad_backend)
    assert_close(out, expected, case["dtype"], f"{grad_backend} avg_pool2d_input {params}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ("constant", "reflect", "replicate", "circular"))
def test_pad_grad_matches_reference(grad_backend, mode, dtype):
    rng = np.random.default_rng([31, DTYPES.index(dtype), len(mode)])
    for padding, shape in ((((1, 2), (3, 0)), (2, 3, 5, 4)), (2, (3, 4, 4)), ((4, 1), (5, 6)),
                           (((0, 2), (2, 1)), (1, 2, 3, 3))):
        pads = ref.explicit_pads(padding)
        go = random_array(rng, shape[:-2] + (shape[-2] + pads[0] + pads[1], shape[-1] + pads[2] + pads[3]), dtype)
        expected = ref.pad2d_input(as_reference_input(go), padding, mode)
        with poisoned_numpy_backend():
            out = grad.pad2d_input(to_backend(go, grad_backend), padding, mode, backend=grad_backend)
        assert_close(out, expected, dtype, f"{grad_backend} pad2d_input {padding} {mode} {shape}")


def test_1d_grads_match_reference(grad_backend):
    rng = np.random.default_rng(37)
    b = grad_backend
    for params in (dict(stride=2, padding=1), dict(padding="same", dilation=2, groups=2),
                   dict(padding=(2, 1), padding_mode="circular")):
        x, w = random_array(rng, (2, 4, 11)), random_array(rng, (6, 4 // params.get("groups", 1), 3))
        pad = params.get("padding", 0)
        params2 = dict(params, stride=(1, params.get("stride", 1)), dilation=(1, params.get("dilation", 1)),
                       padding=pad if isinstance(pad, str) else ((0, 0), pad if isinstance(pad, tuple) else (pad, pad)))
        go = random_array(rng, ref.conv2d(x[:, :, None], w[:, :, None], **params2).shape)[:, :, 0]
        assert_close(grad.conv1d_input(x.shape, to_backend(w, b), to_backend(go, b), **params, backend=b),
                     ref.conv2d_input(x[:, :, None].shape, w[:, :, None], go[:, :, None], **params2)[:, :, 0],
                     np.float64, f"conv1d_input {params}")
        assert_close(grad.conv1d_weight(to_backend(x, b), w.shape, to_backend(go, b), **params, backend=b),
                     ref.conv2d_weight(x[:, :, None], w[:, :, None].shape, go[:, :, None], **params2)[:, :, 0],
                     np.float64, f"conv1d_weight {params}")
        assert_close(grad.conv1d_bias(to_backend(go, b)), go.sum(axis=(0, 2)), np.float64, "conv1d_bias")
    x = random_array(rng, (2, 3, 12))
    for params in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, dilation=2, ceil_mode=True)):
        pool2 = dict(kernel_size=(1, params["kernel_size"]), stride=(1, params.get("stride", params["kernel_size"])),
                     padding=(0, params.get("padding", 0)))
        out, indices = gpuconv.max_pool1d(to_backend(x, b), **params, return_indices=True, backend=b)
        go = random_array(rng, out.shape)
        expected = ref.max_pool2d_input(go[:, :, None], x[:, :, None], **pool2, dilation=(1, params.get("dilation", 1)),
                                        ceil_mode=params.get("ceil_mode", False))[:, :, 0]
        assert_close(grad.max_pool1d_input(to_backend(go, b), to_backend(x, b), **params, indices=indices, backend=b),
                     expected, np.float64, f"max_pool1d_input {params}")
        assert_close(grad.max_pool1d_input(to_backend(go[0], b), to_backend(x[0], b), **params, backend=b),
                     expected[0], np.float64, f"max_pool1d_input unbatched {params}")
    params = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    go = random_array(rng, gpuconv.avg_pool1d(x, **params).shape)
    expected = ref.avg_pool2d_input(go[:, :, None], (2, 3, 1, 12), (1, 3), (1, 2), (0, 1), True, False)[:, :, 0]
    assert_close(grad.avg_pool1d_input(to_backend(go, b), x.shape, **params, backend=b), expected, np.float64,
                 "avg_pool1d_input")


def test_unbatched_and_integer_inputs(grad_backend):
    """Unbatched arrays give unbatched gradients; integer arrays are promoted to float64 like the forward ops."""
    b = grad_backend
    rng = np.random.default_rng(41)
    x, w = rng.integers(-3, 4, (3, 7, 6)), rng.integers(-3, 4, (4, 3, 3, 3))
    go = rng.integers(-3, 4, (4, 5, 4))
    dx = grad.conv2d_input(x.shape, to_backend(w, b), to_backend(go, b), backend=b)
    assert_close(dx, ref.conv2d_input((1,) + x.shape, w, go[None])[0], np.float64, "unbatched integer dx")
    dw = grad.conv2d_weight(to_backend(x, b), w.shape, to_backend(go, b), backend=b)
    assert_close(dw, ref.conv2d_weight(x[None], w.shape, go[None]), np.float64, "unbatched integer dw")
    assert_close(grad.conv2d_bias(to_backend(go, b)), go.sum(axis=(1, 2)).astype(np.float64), np.float64,
                 "unbatched bias")
    gp = rng.integers(-3, 4, (3, 3, 3))
    assert_close(grad.max_pool2d_input(to_backend(gp, b), to_backend(x, b), 2, backend=b),
                 ref.max_pool2d_input(gp[None], x[None], 2)[0], np.float64, "unbatched integer max pool")
    assert_close(grad.avg_pool2d_input(to_backend(gp, b), x.shape, 2, backend=b),
                 ref.avg_pool2d_input(gp[None], (1,) + x.shape, 2)[0], np.float64, "unbatched integer avg pool")
    assert_close(grad.pad2d_input(to_backend(x, b), 1, "reflect", backend=b),
                 ref.pad2d_input(x, 1, "reflect"), np.float64, "integer pad")
    # float16 with float32: the promoted float32
    assert grad.conv2d_input(x.shape, w.astype(np.float16), go.astype(np.float32), backend=b).dtype == np.float32


def test_empty_batches_give_zero_gradients(grad_backend):
    b = grad_backend
    w = np.ones((4, 3, 3, 3), np.float32)
    go = to_backend(np.ones((0, 4, 5, 5), np.float32), b)
    assert to_numpy(grad.conv2d_input((0, 3, 7, 7), to_backend(w, b), go, backend=b)).shape == (0, 3, 7, 7)
    dw = to_numpy(grad.conv2d_weight(to_backend(np.ones((0, 3, 7, 7), np.float32), b), w.shape, go, backend=b))
    assert dw.shape == w.shape and not dw.any()
    assert to_numpy(grad.conv2d_bias(go)).shape == (4,) and not to_numpy(grad.conv2d_bias(go)).any()
    assert to_numpy(grad.avg_pool2d_input(to_backend(np.ones((0, 2, 3, 3)), b), (0, 2, 6, 6), 2,
                                          backend=b)).shape == (0, 2, 6, 6)


# ---- finite differences of gpuconv's own forward ops ----------------------------------------------


def _directional_check(forward, gradient, point, go, what):
    """<gradient, v> against the central difference of sum(go * forward(point + t v)) along random v."""
    rng = np.random.default_rng(43)
    for _ in range(3):
        v = rng.standard_normal(point.shape)
        eps = 1e-6
        numeric = (np.sum(go * to_numpy(forward(point + eps * v))) - np.sum(go * to_numpy(forward(point - eps * v)))) \
            / (2 * eps)
        analytic = float(np.sum(to_numpy(gradient) * v))
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), f"{what}: {numeric} != {analytic}"


def test_gradients_match_finite_differences_of_the_forward_ops(grad_backend):
    b = grad_backend
    rng = np.random.default_rng(47)
    for params in (dict(stride=2, padding=1), dict(padding="same", padding_mode="reflect", dilation=2),
                   dict(groups=2, padding=((0, 1), (2, 1)), padding_mode="circular")):
        x, w = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((6, 4 // params.get("groups", 1), 3, 3))
        go = rng.standard_normal(to_numpy(gpuconv.conv2d(x, w, **params)).shape)
        _directional_check(lambda p: gpuconv.conv2d(to_backend(p, b), to_backend(w, b), **params, backend=b),
                           grad.conv2d_input(x.shape, to_backend(w, b), to_backend(go, b), **params, backend=b),
                           x, go, f"dx {params}")
        _directional_check(lambda p: gpuconv.conv2d(to_backend(x, b), to_backend(p, b), **params, backend=b),
                           grad.conv2d_weight(to_backend(x, b), w.shape, to_backend(go, b), **params, backend=b),
                           w, go, f"dw {params}")
    x = rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8) * 1e-3  # distinct values: the maxima stay put
    params = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    go = rng.standard_normal(to_numpy(gpuconv.max_pool2d(x, **params)).shape)
    _directional_check(lambda p: gpuconv.max_pool2d(to_backend(p, b), **params, backend=b),
                       grad.max_pool2d_input(to_backend(go, b), to_backend(x, b), **params, backend=b), x, go,
                       "max pool")
    params = dict(params, count_include_pad=False)
    _directional_check(lambda p: gpuconv.avg_pool2d(to_backend(p, b), **params, backend=b),
                       grad.avg_pool2d_input(to_backend(go, b), x.shape, **params, backend=b), x, go, "avg pool")
    for mode in ("constant", "reflect", "replicate", "circular"):
        go = rng.standard_normal((2, 3, 12, 10))
        _directional_check(lambda p: gpuconv.pad2d(to_backend(p, b), ((1, 2), (0, 2)), mode, backend=b),
                           grad.pad2d_input(to_backend(go, b), ((1, 2), (0, 2)), mode, backend=b), x, go, mode)


# ---- scratch memory ------------------------------------------------------------------------------


def test_finite_inputs_raise_no_floating_point_warnings_in_gradients(grad_backend):
    """Scratch buffers allocated afresh hold huge finite values: no gradient may compute on them
    in a way that warns."""
    b = grad_backend
    rng = np.random.default_rng(53)
    impl = get_backend(b)
    for x_shape, w_shape, params in (((2, 3, 12, 12), (4, 3, 3, 3), dict(padding=1)),
                                     ((2, 4, 9, 10), (4, 2, 2, 3), dict(stride=2, padding="same", groups=2)),
                                     ((1, 3, 13, 11), (6, 1, 5, 3), dict(groups=3, dilation=2))):
        x, w, go = _conv_data(rng, x_shape, w_shape, np.float32, params)
        spec = conv_spec(x_shape, w_shape, params.get("stride", 1), params.get("padding", 0),
                         params.get("dilation", 1), params.get("groups", 1), "zeros")
        saved = config.num_threads
        config.num_threads = 1  # the tiles run on the calling thread: the fresh one
        try:
            for which, call, expected in (
                    ("input", lambda a: grad.conv2d_input(x.shape, to_backend(w, b), to_backend(go, b), **params,
                                                          algorithm=a, backend=b),
                     ref.conv2d_input(x.shape, w, go, **params)),
                    ("weight", lambda a: grad.conv2d_weight(to_backend(x, b), w.shape, to_backend(go, b), **params,
                                                            algorithm=a, backend=b),
                     ref.conv2d_weight(x, w.shape, go, **params))):
                for algorithm in _algorithms(impl, which, spec)[1]:
                    with warnings.catch_warnings(), poisoned_numpy_backend(huge=True):
                        warnings.simplefilter("error", RuntimeWarning)
                        out = run_in_a_fresh_thread(lambda: call(algorithm))
                    assert_close(out, expected, np.float32, f"{which} gradient, algorithm={algorithm} {params}")
        finally:
            config.num_threads = saved


def test_workspace_cap_bounds_gradient_memory():
    """Gradients whose whole column matrices need several MiB run under a 1 MiB cap: right results,
    and the traced peak stays under cap + the result + a small slack."""
    rng = np.random.default_rng(59)
    x, w = random_array(rng, (4, 8, 48, 48), np.float32), random_array(rng, (8, 8, 5, 5), np.float32)
    go = random_array(rng, (4, 8, 46, 46), np.float32)
    cap = 1 << 20
    assert 4 * 8 * 25 * 46 * 46 * 4 > 5 * cap  # im2col of the whole batch
    impl = get_backend("numpy")
    spec = conv_spec(x.shape, w.shape, 1, 1, 1, 1, "zeros")
    saved = config.workspace_bytes
    gpuconv.set_workspace_limit(cap)
    try:
        for which, call, expected in (
                ("input", lambda a: grad.conv2d_input(x.shape, w, go, padding=1, algorithm=a, backend="numpy"),
                 ref.conv2d_input(x.shape, w, go, padding=1)),
                ("weight", lambda a: grad.conv2d_weight(x, w.shape, go, padding=1, algorithm=a, backend="numpy"),
                 ref.conv2d_weight(x, w.shape, go, padding=1))):
            for algorithm in _algorithms(impl, which, spec)[1]:
                call(algorithm)  # a first call may fill one-time library caches
                tracemalloc.start()
                try:
                    out = call(algorithm)
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                assert_close(out, expected, np.float32, f"{which} gradient, algorithm={algorithm}")
                assert peak <= cap + out.nbytes + cap // 4, \
                    f"{which} gradient, algorithm={algorithm}: peak {peak} bytes > cap {cap} + result + slack"
        x = random_array(rng, (1, 1, 1, 300_000), np.float32)  # one output row of pooling needs > 1 MiB
        with pytest.raises(MemoryError, match="set_workspace_limit"):
            grad.avg_pool2d_input(np.ones((1, 1, 1, 150_000), np.float32), x.shape, (1, 2), backend="numpy")
    finally:
        config.workspace_bytes = saved


@pytest.mark.parametrize("which", ["input", "weight"])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_of_a_padding_mode_in_bands(which, mode, dtype, monkeypatch):
    """Under a cap too small for the whole padded input (or its gradient), the gradients of a padding
    mode run band by band of rows: the bands cover every row once (stride 2 and dilation across band
    edges, pads that fold onto other bands), the result matches the reference, the same bits for
    every thread count."""
    seed = stable_seed("gradients in bands", which, mode, np.dtype(dtype).name)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    params = dict(stride=(2, 1), padding=((3, 1), (2, 3)), dilation=(2, 1), padding_mode=mode, groups=2)
    x, w, go = _conv_data(rng, (2, 4, 101, 29), (6, 2, 3, 4), dtype, params)
    if which == "input":
        call = lambda: grad.conv2d_input(x.shape, w, go, **params, backend="numpy")  # noqa: E731
        expected = ref.conv2d_input(x.shape, as_reference_input(w), as_reference_input(go), **params)
    else:
        call = lambda: grad.conv2d_weight(x, w.shape, go, **params, backend="numpy")  # noqa: E731
        expected = ref.conv2d_weight(as_reference_input(x), w.shape, as_reference_input(go), **params)
    method = f"conv2d_{which}"
    calls = []
    real = getattr(get_backend("numpy"), method)

    def counting(self, *args, **kwargs):
        calls.append(args[2].h)
        return real(*args, **kwargs)

    monkeypatch.setattr(type(get_backend("numpy")), method, counting)
    monkeypatch.setattr(config, "workspace_bytes", 64 << 20)  # whole: one call
    whole = call()
    assert len(calls) == 1
    # a quarter of it: the rows of about 5 of the 51 output rows, in float32 for float16
    monkeypatch.setattr(config, "workspace_bytes", (210 << 10) * max(1, x.itemsize // 4))
    results = []
    for threads in (1, 2):
        monkeypatch.setattr(config, "num_threads", threads)
        calls.clear()
        with poisoned_numpy_backend():
            results.append(call())
        assert len(calls) >= 3, f"{calls}: the cap should split the rows into bands"
    what = f"conv2d_{which} {mode} {np.dtype(dtype).name} in bands (seed {seed})"
    assert_close(results[0], expected, dtype, what)
    assert_close(whole, expected, dtype, what + ", whole")
    assert np.array_equal(results[0], results[1]), f"{what}: 2 threads differ from 1"
