"""Scratch memory: what the NumPy backend allocates beyond its results stays under the workspace
cap (gpuconv.set_workspace_limit, GPUCONV_WORKSPACE_MB) for every op, and work that cannot fit
raises MemoryError naming the cap and how to raise it."""
from __future__ import annotations

import tracemalloc
from functools import partial

import numpy as np
import pytest

import gpuconv
from gpuconv._config import config
from gpuconv.backends.cpu import _workspace


CAP = 1 << 20
SLACK = 64 << 10  # Python objects, index lists of a few rows


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(config, "workspace_bytes", CAP)
    _workspace.release()  # drop buffers kept under the default cap
    yield CAP


def scratch_of(call):
    """(result, bytes traced at the peak of the call beyond its results)."""
    tracemalloc.start()
    try:
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    results = result if isinstance(result, tuple) else (result,)
    return result, peak - sum(r.nbytes for r in results)


IMAGES = np.random.default_rng(31).standard_normal((2, 4, 300, 700))  # 13 MiB as float32
WIDE_ROWS = {np.dtype(t): np.random.default_rng(32).standard_normal((1, 1, 1, 2_000_000)).astype(t)
             for t in (np.float16, np.float32, np.uint8)}
OPS = {
    "max_pool2d": lambda x: gpuconv.max_pool2d(x, 3, 2, 1),
    "max_pool2d indices": lambda x: gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True),
    "max_pool2d indices, one plane": lambda x: gpuconv.max_pool2d(x[:1, :1], 2, return_indices=True),
    "avg_pool2d": lambda x: gpuconv.avg_pool2d(x, 3, 2, 1),
    "pad2d constant": lambda x: gpuconv.pad2d(x, 3, value=2.0),
    **{f"pad2d {mode}": lambda x, m=mode: gpuconv.pad2d(x, ((2, 3), (4, 1)), m)
       for mode in ("reflect", "replicate", "circular")},
    **{f"pad2d {mode}, a wide row": lambda x, m=mode: gpuconv.pad2d(WIDE_ROWS[x.dtype], ((0, 0), (5, 7)), m)
       for mode in ("reflect", "replicate", "circular")},
    "conv2d": lambda x: gpuconv.conv2d(x, np.ones((3, 4, 3, 3), x.dtype), padding=1),
    "conv2d of float64 weights": lambda x: gpuconv.conv2d(x, np.ones((3, 4, 3, 3)), padding=1),
    "conv1d": lambda x: gpuconv.conv1d(x[:, :, 0], np.ones((3, 4, 5), x.dtype), padding=2),
    **{f"correlate2d {boundary} {f}": lambda x, b=boundary, f=f: gpuconv.correlate2d(
        x[0, 0], np.ones((5, 3), x.dtype), boundary=b, fillvalue=f)
       for boundary, f in (("fill", 0), ("fill", 1.5), ("wrap", 0), ("symm", 0))},
    "convolve2d same": lambda x: gpuconv.convolve2d(x[0, 0], np.ones((4, 4), x.dtype), "same", "symm"),
}


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.uint8])  # uint8: promoted to float64 as it is read
@pytest.mark.parametrize("op", OPS)
def test_every_op_keeps_its_scratch_under_the_cap(op, dtype, small_cap):
    x = IMAGES.astype(dtype)
    result, scratch = scratch_of(lambda: OPS[op](x))
    assert scratch <= CAP + SLACK, f"{op}: {scratch >> 10} KiB of scratch under a {CAP >> 10} KiB cap"


HOW_TO_RAISE = r"cap of \d+ bytes.*set_workspace_limit.*GPUCONV_WORKSPACE_MB"


@pytest.mark.parametrize("op", ["conv2d", "max_pool2d", "max_pool2d indices", "avg_pool2d", "correlate2d",
                                "conv2d_input reflect", "conv2d_weight reflect"])
def test_work_that_cannot_fit_the_cap_is_a_memory_error_saying_how_to_raise_it(op, small_cap):
    """One tile, one pooled output row or one band of padded rows larger than the cap."""
    wide = np.ones((1, 1, 3, 400_000), np.float32)
    call = {"conv2d": lambda: gpuconv.conv2d(np.ones((1, 64, 3, 4096), np.float32), np.ones((1, 64, 3, 3), np.float32),
                                             algorithm="im2col"),
            "max_pool2d": lambda: gpuconv.max_pool2d(wide, 3),
            "max_pool2d indices": lambda: gpuconv.max_pool2d(np.ones((1, 1, 2, 1_200_000), np.float32), 2,
                                                             return_indices=True),
            "avg_pool2d": lambda: gpuconv.avg_pool2d(wide, 3),
            "correlate2d": lambda: gpuconv.correlate2d(wide[0, 0], np.ones((3, 3))),
            # a padded row of 64 channels: 5 MiB, twice over a quarter of the cap
            "conv2d_input reflect": lambda: gpuconv.grad.conv2d_input(
                (1, 64, 3, 20_000), np.ones((1, 64, 3, 3), np.float32), np.ones((1, 1, 3, 20_000), np.float32),
                padding=1, padding_mode="reflect"),
            "conv2d_weight reflect": lambda: gpuconv.grad.conv2d_weight(
                np.ones((1, 64, 3, 20_000), np.float32), (1, 64, 3, 3), np.ones((1, 1, 3, 20_000), np.float32),
                padding=1, padding_mode="reflect")}[op]
    with pytest.raises(MemoryError, match=HOW_TO_RAISE):
        call()


# ---- gradients -------------------------------------------------------------------------------

GRAD_X = IMAGES[:, :, :200, :500]  # 3 MiB as float32
WEIGHTS = np.random.default_rng(33).standard_normal((3, 4, 3, 3))
BIAS = np.arange(4.0)


def _conv_grad(x, stride=1):
    return np.ones((x.shape[0], 3, -(-x.shape[2] // stride), -(-x.shape[3] // stride)), x.dtype)


def _pool_grad(x):
    return np.ones(x.shape[:2] + (100, 250), x.dtype)  # kernel 3, stride 2, padding 1


GRAD_OPS = {  # x -> the call, its arguments made before tracing
    **{f"conv2d_input {algorithm} {mode}": lambda x, a=algorithm, m=mode: partial(
        gpuconv.grad.conv2d_input, x.shape, WEIGHTS.astype(x.dtype), _conv_grad(x), padding=1, padding_mode=m,
        algorithm=a)
       for algorithm in ("auto", "col2im", "im2col", "winograd", "shifted", "direct")
       for mode in ("zeros", "reflect", "circular") if algorithm != "shifted" or mode == "zeros"},
    **{f"conv2d_input {algorithm} stride 2": lambda x, a=algorithm: partial(
        gpuconv.grad.conv2d_input, x.shape, WEIGHTS.astype(x.dtype), _conv_grad(x, 2), stride=2, padding=1,
        algorithm=a)
       for algorithm in ("auto", "col2im")},
    **{f"conv2d_weight {algorithm} {mode}": lambda x, a=algorithm, m=mode: partial(
        gpuconv.grad.conv2d_weight, x, WEIGHTS.shape, _conv_grad(x), padding=1, padding_mode=m, algorithm=a)
       for algorithm in ("auto", "im2col", "shifted") for mode in ("zeros", "reflect", "circular")
       if algorithm != "shifted" or mode == "zeros"},  # shifted runs zero padding only (a ValueError says so)
    "conv2d_bias": lambda x: partial(gpuconv.grad.conv2d_bias, _conv_grad(x) / 1024),  # float16 sums stay finite
    "conv_transpose2d": lambda x: partial(gpuconv.conv_transpose2d, _conv_grad(x), WEIGHTS.astype(x.dtype),
                                          padding=1),
    "conv_transpose2d bias": lambda x: partial(gpuconv.conv_transpose2d, _conv_grad(x), WEIGHTS.astype(x.dtype),
                                               BIAS.astype(x.dtype), padding=1),
    "max_pool2d_input": lambda x: partial(gpuconv.grad.max_pool2d_input, _pool_grad(x), x, 3, 2, 1),
    "max_pool2d_input indices": lambda x: partial(gpuconv.grad.max_pool2d_input, _pool_grad(x), x, 3, 2, 1,
                                                  indices=gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True)[1]),
    "avg_pool2d_input": lambda x: partial(gpuconv.grad.avg_pool2d_input, _pool_grad(x), x.shape, 3, 2, 1),
    **{f"pad2d_input {mode}": lambda x, m=mode: partial(
        gpuconv.grad.pad2d_input, np.ones(x.shape[:2] + (x.shape[2] + 5, x.shape[3] + 5), x.dtype),
        ((2, 3), (4, 1)), m)
       for mode in ("constant", "reflect", "replicate", "circular")},
}


KNOWN = {  # (op, dtype or None for both): why it still allocates beyond the cap
    **{(op, np.float16): "conv_grad.conv2d_input runs col2im of float16 on whole float32 copies of grad_output "
                         "and w and a whole float32 dx, cast at the end"
       for op in ("conv2d_input col2im zeros", "conv2d_input auto stride 2", "conv2d_input col2im stride 2")},
    **{(op, np.float32): "col2im plans its tiles up to the whole cap without NumPy's ufunc buffers for its "
                         "strided adds at stride > 1 (about 64 KiB per thread); counting them in its tile bytes "
                         "leaves test_grad's small inputs one tile (the cap / 8 partition threads is too small)"
       for op in ("conv2d_input auto stride 2", "conv2d_input col2im stride 2")},
    ("conv_transpose2d bias", np.float16): "_backward.conv_input adds a float16 bias without a padding mode on "
                                           "whole float32 copies of grad_output and w and a whole float32 dx",
}


def _known(op, dtype):
    reason = KNOWN.get((op, dtype)) or KNOWN.get((op, None))
    if reason is None:
        return op, dtype
    return pytest.param(op, dtype, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))


@pytest.mark.parametrize("op, dtype", [_known(op, dtype) for op in GRAD_OPS for dtype in (np.float16, np.float32)])
def test_every_gradient_keeps_its_scratch_under_the_cap(op, dtype, small_cap):
    call = GRAD_OPS[op](GRAD_X.astype(dtype))
    call()  # plans and imports made once: not scratch
    _workspace.release()
    result, scratch = scratch_of(call)
    assert scratch <= CAP + SLACK, f"{op}: {scratch >> 10} KiB of scratch under a {CAP >> 10} KiB cap"
