"""gpuconv.grad's ops and conv_transpose2d on dask arrays: random chunkings of every axis against
the float64 reference, on the threaded scheduler and on the two-process cluster (dask_client)."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import gpuconv
from gpuconv import _reference as ref
from dask_cases import (chunked, draw_conv, draw_pad, draw_pool, draw_valid, eager_conv, eager_pool, run_cases,
                        seeded)
from gpuconv import grad
from support import as_reference_input, assert_close, random_array

CONV_SEEDS, POOL_SEEDS, PAD_SEEDS, TRANSPOSE_SEEDS = (range(5000, 5016), range(6000, 6012), range(7000, 7006),
                                                      range(8000, 8008))


def conv_grad_case(seed, most=5):
    """conv2d_input, conv2d_weight and conv2d_bias of a random conv (every option, padding mode and
    dtype), grad_output and x chunked at random."""
    rng, case = draw_valid(seed, draw_conv, eager_conv)
    params, shape = case["params"], case["x"]
    x = random_array(rng, shape, case["dtype"])
    w = random_array(rng, case["w"], case["dtype"])
    g = random_array(rng, gpuconv.conv2d(x, w, **params).shape, case["dtype"])
    X, G = chunked(rng, x, most), chunked(rng, g, most)
    what = f"conv grads seed={seed} {case} chunks x={X.chunks} grad_output={G.chunks}"
    outs = (grad.conv2d_input(shape, w, G, **params), grad.conv2d_weight(X, w.shape, G, **params),
            grad.conv2d_bias(G))
    for out, want in zip(outs, (shape, w.shape, (w.shape[0],))):
        assert out.shape == want and out.dtype == x.dtype, what
    xr, wr, gr = (as_reference_input(a) for a in (x, w, g))
    expected = (ref.conv2d_input(shape, wr, gr, **params), ref.conv2d_weight(xr, w.shape, gr, **params),
                ref.conv2d_bias(gr))

    def check(results):
        for name, got, want in zip(("input", "weight", "bias"), results, expected):
            assert_close(got, want, x.dtype, f"{what} conv2d_{name}")
    return outs, check


def pool_grad_case(seed, most=5):
    """max_pool2d_input (indices recomputed and given) and avg_pool2d_input of a random pooling."""
    rng, case = draw_valid(seed, draw_pool, eager_pool)
    shape = case["x"]
    x = random_array(rng, shape, case["dtype"])
    args = dict(kernel_size=case["kernel_size"], stride=case["stride"], padding=case["padding"],
                ceil_mode=case["ceil_mode"])
    values, indices = gpuconv.max_pool2d(x, **args, dilation=case["dilation"], return_indices=True)
    g_max = random_array(rng, values.shape, case["dtype"])
    avg_args = dict(args, count_include_pad=case["count_include_pad"], divisor_override=case["divisor_override"])
    g_avg = random_array(rng, gpuconv.avg_pool2d(x, **avg_args).shape, case["dtype"])
    X, G, I, A = (chunked(rng, a, most) for a in (x, g_max, indices, g_avg))
    what = f"pool grads seed={seed} {case} chunks x={X.chunks} grad_output={G.chunks}"
    outs = (grad.max_pool2d_input(G, X, **args, dilation=case["dilation"]),
            grad.max_pool2d_input(G, X, **args, dilation=case["dilation"], indices=I),
            grad.avg_pool2d_input(A, shape, **avg_args))
    xr = as_reference_input(x)
    expected_max = ref.max_pool2d_input(as_reference_input(g_max), xr, dilation=case["dilation"], **args)
    expected = (expected_max, expected_max, ref.avg_pool2d_input(as_reference_input(g_avg), shape, **avg_args))

    def check(results):
        for name, got, want in zip(("max (recomputed)", "max (indices)", "avg"), results, expected):
            assert_close(got, want, x.dtype, f"{what} {name}")
    return outs, check


def pad_grad_case(seed, most=5):
    rng, mode, shape, pads = draw_pad(seed)
    g = random_array(rng, shape[:-2] + (shape[-2] + sum(pads[0]), shape[-1] + sum(pads[1])), np.float32)
    G = chunked(rng, g, most)
    out = grad.pad2d_input(G, pads, mode)
    what = f"pad2d_input seed={seed} mode={mode} pads={pads} chunks={G.chunks}"

    def check(results):
        assert_close(results[0], ref.pad2d_input(as_reference_input(g), pads, mode), np.float32, what)
    return (out,), check


def draw_transpose(rng):
    groups = int(rng.choice([1, 2]))
    stride, dilation = tuple(int(s) for s in rng.integers(1, 4, 2)), tuple(int(d) for d in rng.integers(1, 3, 2))
    padding = [int(rng.integers(0, 3)), "same", tuple(tuple(int(p) for p in rng.integers(0, 3, 2)) for _ in range(2))][
        rng.integers(0, 3)]
    output_padding = 0 if padding == "same" else tuple(int(rng.integers(0, max(s, d)))
                                                       for s, d in zip(stride, dilation))
    return dict(x=(int(rng.integers(1, 3)), groups * int(rng.integers(1, 3)), int(rng.integers(3, 14)),
                   int(rng.integers(3, 14))),
                w=(None, int(rng.integers(1, 3))) + tuple(int(k) for k in rng.integers(1, 5, 2)),
                bias=bool(rng.random() < 0.5), dtype=[np.float32, np.float64][rng.integers(0, 2)],
                params=dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                            dilation=dilation))


def eager_transpose(case):
    w = np.zeros((case["x"][1],) + case["w"][1:])
    gpuconv.conv_transpose2d(np.zeros(case["x"]), w, **case["params"])


def transpose_case(seed, most=5):
    rng, case = draw_valid(seed, draw_transpose, eager_transpose)
    x = random_array(rng, case["x"], case["dtype"])
    w = random_array(rng, (case["x"][1],) + case["w"][1:], case["dtype"])
    bias = random_array(rng, (w.shape[1] * case["params"]["groups"],), case["dtype"]) if case["bias"] else None
    X = chunked(rng, x, most)
    out = gpuconv.conv_transpose2d(X, w, bias, **case["params"])
    expected = ref.conv_transpose2d(as_reference_input(x), as_reference_input(w), as_reference_input(bias),
                                    **case["params"])
    what = f"conv_transpose2d seed={seed} {case} chunks={X.chunks}"
    assert out.shape == expected.shape and out.dtype == x.dtype, what

    def check(results):
        assert_close(results[0], expected, x.dtype, what)
    return (out,), check


@pytest.mark.parametrize("build, seed", seeded((conv_grad_case, CONV_SEEDS), (pool_grad_case, POOL_SEEDS),
                                                 (pad_grad_case, PAD_SEEDS), (transpose_case, TRANSPOSE_SEEDS)))
def test_random_chunks_match_the_reference(build, seed):
    run_cases("threads", [build(seed)])


def test_gradients_on_a_cluster_of_two_worker_processes(dask_client):
    cases = ([conv_grad_case(s, most=2) for s in CONV_SEEDS[:4]] + [pool_grad_case(s, most=2) for s in POOL_SEEDS[:3]]
             + [pad_grad_case(s, most=2) for s in PAD_SEEDS[:2]]
             + [transpose_case(s, most=2) for s in TRANSPOSE_SEEDS[:2]])
    run_cases(dask_client, cases)


def test_1d_gradients_and_transpose_match_the_eager_ops():
    rng = np.random.default_rng(9)
    x, w = random_array(rng, (2, 4, 37)), random_array(rng, (6, 2, 3))
    params = dict(stride=2, padding="same", groups=2, padding_mode="circular")
    g = random_array(rng, gpuconv.conv1d(x, w, **params).shape)
    X, G = da.from_array(x, chunks=(1, 4, (5, 20, 12))), da.from_array(g, chunks=(1, 6, (3, 16)))
    wt = random_array(rng, (6, 3, 4))  # conv_transpose1d of grad_output: (C_in=6, C_out, K)
    pairs = [(grad.conv1d_input(x.shape, w, G, **params), grad.conv1d_input(x.shape, w, g, **params)),
             (grad.conv1d_weight(X, w.shape, G, **params), grad.conv1d_weight(x, w.shape, g, **params)),
             (grad.conv1d_bias(G), grad.conv1d_bias(g)),
             (gpuconv.conv_transpose1d(G, wt, stride=2, padding=1, output_padding=1),
              gpuconv.conv_transpose1d(g, wt, stride=2, padding=1, output_padding=1))]
    values, indices = gpuconv.max_pool1d(x, 3, 2, 1, return_indices=True)
    gp = random_array(rng, values.shape)
    GP = da.from_array(gp, chunks=(1, 2, 5))
    pairs += [(grad.max_pool1d_input(GP, X, 3, 2, 1, indices=da.from_array(indices, chunks=(1, 2, 5))),
               grad.max_pool1d_input(gp, x, 3, 2, 1)),
              (grad.avg_pool1d_input(GP, x.shape, 3, 2, 1), grad.avg_pool1d_input(gp, x.shape, 3, 2, 1))]
    for lazy, eager in pairs:
        assert isinstance(lazy, da.Array)
        assert_close(lazy.compute(), eager, np.float64)


def test_gradient_arguments_are_checked_at_the_call():
    G = da.zeros((1, 4, 6, 6), chunks=3)
    X = da.zeros((1, 2, 8, 8), chunks=4)
    with pytest.raises(ValueError, match="grad_output has shape"):
        grad.conv2d_input((1, 2, 9, 9), np.ones((4, 2, 3, 3)), G)
    with pytest.raises(ValueError, match="grad_output has shape"):
        grad.conv2d_weight(X, (4, 2, 3, 3), G[:, :, :5])
    with pytest.raises(ValueError, match="grad_output has shape"):
        grad.max_pool2d_input(G, X, 2)
    with pytest.raises(ValueError, match="indices has shape"):
        grad.max_pool2d_input(G[:, :2, :4, :4], X, 2, indices=da.zeros((1, 2, 4, 3), dtype=np.int64, chunks=2))
    with pytest.raises(ValueError, match=r"grad_output has shape \(1, 4, 6, 6\): expected \(1, 2, 3\)"):
        grad.avg_pool2d_input(G, (1, 4, 6), 2)  # unbatched input_shape
    with pytest.raises(ValueError, match="input_shape"):
        grad.avg_pool2d_input(G, (1, 4), 2)
    with pytest.raises(ValueError, match=r"grad_output has shape \(1, 4, 6, 6\): smaller than padding"):
        grad.pad2d_input(G, 4, "reflect")
    with pytest.raises(ValueError, match="output_padding"):
        gpuconv.conv_transpose2d(G, np.ones((4, 1, 3, 3)), stride=2, output_padding=2)
    unknown = G[G[:, 0, 0, 0] > 0]
    with pytest.raises(ValueError, match="grad_output is a dask array of unknown chunk sizes"):
        grad.conv2d_input((1, 2, 8, 8), np.ones((4, 2, 3, 3)), unknown)
    with pytest.raises(ValueError, match="grad_output is a dask array of unknown chunk sizes"):
        grad.pad2d_input(unknown, 1)
    bad = grad.max_pool2d_input(G[:, :2, :4, :4], X, 2, indices=da.full((1, 2, 4, 4), 63, dtype=np.int64, chunks=2))
    with pytest.raises(ValueError, match="outside their pooling windows"):
        bad.compute()  # index values are data: checked where each block meets them
