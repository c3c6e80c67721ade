"""Random dask test cases shared by test_dask.py and test_dask_grad.py: each builder draws a case
from its seed, builds lazy gpuconv results on randomly chunked dask arrays and returns them with a
check of their computed values against the float64 reference."""
from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

import gpuconv
from gpuconv import _reference as ref
from support import as_reference_input, assert_close, assert_same, poisoned_numpy_backend, random_array

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PAD_MODES = ("constant", "reflect", "replicate", "circular")


CONV_SEEDS, POOL_SEEDS = range(1000, 1024), range(2000, 2016)
PAD_SEEDS, OTHER_SEEDS = range(3000, 3008), range(4000, 4006)


def random_chunks(rng, size: int, most: int) -> tuple[int, ...]:
    """A random split of `size` into at most `most` chunks, often with chunks of 1 or 2."""
    cuts = sorted(set(rng.integers(1, size, rng.integers(0, min(size, most))).tolist())) if size > 1 else []
    bounds = [0, *cuts, size]
    return tuple(b - a for a, b in zip(bounds, bounds[1:]))


def chunked(rng, x, most):
    return da.from_array(x, chunks=tuple(random_chunks(rng, s, most) for s in x.shape))


def draw_valid(seed, draw, eager):
    """The first case draw(rng) whose eager op accepts it (reflect pads < size and the like)."""
    rng = np.random.default_rng(seed)
    while True:
        case = draw(rng)
        try:
            eager(case)
            return rng, case
        except ValueError:
            continue


def draw_conv(rng):
    groups = int(rng.choice([1, 1, 2, 3]))
    cg, fg = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if rng.random() < 0.25:
        cg = 1  # depthwise
    kernel = tuple(int(k) for k in rng.integers(1, 6, 2))
    padding = [int(rng.integers(0, 4)), "same", "valid", tuple(int(p) for p in rng.integers(0, 4, 2)),
               tuple(tuple(int(p) for p in rng.integers(0, 4, 2)) for _ in range(2))][rng.integers(0, 5)]
    return dict(x=(int(rng.integers(1, 3)), groups * cg, int(rng.integers(4, 30)), int(rng.integers(4, 30))),
                w=(groups * fg, cg) + kernel, bias=bool(rng.random() < 0.5), unbatched=bool(rng.random() < 0.2),
                dtype=[np.float32, np.float64, np.float16][rng.choice(3, p=[0.6, 0.3, 0.1])],
                params=dict(stride=tuple(int(s) for s in rng.integers(1, 4, 2)),
                            dilation=tuple(int(d) for d in rng.integers(1, 3, 2)), padding=padding, groups=groups,
                            padding_mode=str(rng.choice(PADDING_MODES))))


def eager_conv(case):
    gpuconv.conv2d(np.zeros(case["x"], np.float32), np.zeros(case["w"], np.float32), **case["params"])


def conv_case(seed, most=5):
    rng, case = draw_valid(seed, draw_conv, eager_conv)
    x = random_array(rng, case["x"][1:] if case["unbatched"] else case["x"], case["dtype"])
    w = random_array(rng, case["w"], case["dtype"])
    bias = random_array(rng, (case["w"][0],), case["dtype"]) if case["bias"] else None
    X = chunked(rng, x, most)
    what = f"conv2d seed={seed} {case} chunks={X.chunks}"
    expected = ref.conv2d(as_reference_input(x if x.ndim == 4 else x[None]), as_reference_input(w),
                          as_reference_input(bias), **case["params"])
    expected = expected if x.ndim == 4 else expected[0]
    out = gpuconv.conv2d(X, w, bias, **case["params"])
    assert out.shape == expected.shape and out.dtype == x.dtype, what
    if x.ndim == 4:
        assert out.chunks[0] == X.chunks[0], f"{what}: batch chunks kept"
        if case["params"]["groups"] == 1:
            assert len(out.chunks[1]) == 1, f"{what}: channels merged when every filter reads all of them"

    def check(results):
        assert_close(results[0], expected, x.dtype, what)
    return (out,), check


def draw_pool(rng):
    kernel = tuple(int(k) for k in rng.integers(1, 5, 2))
    return dict(x=(int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(3, 25)),
                   int(rng.integers(3, 25))),
                unbatched=bool(rng.random() < 0.2), dtype=[np.float32, np.float64, np.float16][rng.integers(0, 3)],
                kernel_size=kernel, stride=None if rng.random() < 0.3 else tuple(int(s) for s in rng.integers(1, 4, 2)),
                padding=tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel),
                dilation=tuple(int(d) for d in rng.integers(1, 3, 2)), ceil_mode=bool(rng.random() < 0.5),
                count_include_pad=bool(rng.random() < 0.5),
                divisor_override=None if rng.random() < 0.7 else int(rng.integers(1, 7)))


def pool_args(case, avg=False):
    args = dict(kernel_size=case["kernel_size"], stride=case["stride"], padding=case["padding"],
                ceil_mode=case["ceil_mode"])
    if avg:
        return dict(args, count_include_pad=case["count_include_pad"], divisor_override=case["divisor_override"])
    return dict(args, dilation=case["dilation"])


def eager_pool(case):
    x = np.zeros(case["x"], np.float32)
    gpuconv.max_pool2d(x, **pool_args(case))
    gpuconv.avg_pool2d(x, **pool_args(case, avg=True))


def pool_case(seed, most=5):
    rng, case = draw_valid(seed, draw_pool, eager_pool)
    x = random_array(rng, case["x"][1:] if case["unbatched"] else case["x"], case["dtype"])
    x.flat[rng.integers(0, x.size, 2)] = np.nan  # NaN wins a max window
    X = chunked(rng, x, most)
    what = f"pooling seed={seed} {case} chunks={X.chunks}"
    values, indices = gpuconv.max_pool2d(X, **pool_args(case), return_indices=True)
    plain = gpuconv.max_pool2d(X, **pool_args(case))
    avg = gpuconv.avg_pool2d(X, **pool_args(case, avg=True))
    assert values.chunks[:-2] == X.chunks[:-2] and avg.chunks[:-2] == X.chunks[:-2], f"{what}: channel chunks kept"
    ref_values, ref_indices = ref.max_pool2d(as_reference_input(x), case["kernel_size"], case["stride"],
                                             case["padding"], case["dilation"], case["ceil_mode"])
    ref_avg = ref.avg_pool2d(as_reference_input(x), case["kernel_size"], case["stride"], case["padding"],
                             case["ceil_mode"], case["count_include_pad"], case["divisor_override"])

    def check(results):
        values, indices, plain, avg = results
        assert_same(values.astype(np.float64), ref_values, what=f"{what} max values")
        assert_same(plain.astype(np.float64), ref_values, what=f"{what} max values (no indices)")
        assert_same(indices, ref_indices, np.int64, f"{what} max indices (flat in H*W)")
        assert_close(avg, ref_avg, x.dtype, f"{what} avg")
    return (values, indices, plain, avg), check


def draw_pad(seed):
    """(rng, mode, shape, pads): a 2-D to 4-D shape and the largest pads the mode allows, or up to 8."""
    rng = np.random.default_rng(seed)
    mode = str(rng.choice(PAD_MODES))
    batch = tuple(int(s) for s in rng.integers(1, 4, rng.integers(0, 3)))
    shape = batch + tuple(int(s) for s in rng.integers(4, 20, 2))
    limit = {"reflect": min(shape[-2:]) - 1, "circular": min(shape[-2:])}.get(mode, 8)
    return rng, mode, shape, tuple(tuple(int(p) for p in rng.integers(0, limit + 1, 2)) for _ in range(2))


def pad_case(seed, most=5):
    rng, mode, shape, pads = draw_pad(seed)
    value = 2.5 if mode == "constant" else 0.0
    x = random_array(rng, shape, np.float32)
    X = chunked(rng, x, most)
    out = gpuconv.pad2d(X, pads, mode, value)
    what = f"pad2d seed={seed} mode={mode} pads={pads} chunks={X.chunks}"
    assert out.chunks[:-2] == X.chunks[:-2] and len(out.chunks[-1]) == len(X.chunks[-1]), \
        f"{what}: the padding joins the edge chunks"

    def check(results):
        assert_same(results[0], ref.pad2d(as_reference_input(x), (*pads[0], *pads[1]), mode, value), np.float32, what)
    return (out,), check


def other_case(seed, most=5):
    """conv1d, max/avg_pool1d, correlate2d and convolve2d, against their eager results (which the
    other test modules check against the reference) and conv1d against the reference too."""
    rng = np.random.default_rng(seed)
    signal = random_array(rng, (2, 3, int(rng.integers(8, 40))), np.float64)
    taps = random_array(rng, (4, 3, int(rng.integers(1, 6))), np.float64)
    image = random_array(rng, tuple(int(s) for s in rng.integers(5, 25, 2)), np.float64)
    kernel = random_array(rng, tuple(int(s) for s in rng.integers(1, 6, 2)), np.float64)
    mode, boundary = str(rng.choice(["full", "same", "valid"])), str(rng.choice(["fill", "wrap", "symm"]))
    fill = 0.5 if boundary == "fill" else 0
    S, I = chunked(rng, signal, most), chunked(rng, image, most)
    what = f"1-D and scipy-style seed={seed} chunks={S.chunks} {I.chunks} mode={mode} boundary={boundary}"

    def ops(s, i):
        return (gpuconv.conv1d(s, taps, stride=2, padding="same"),
                *gpuconv.max_pool1d(s, 3, stride=2, padding=1, return_indices=True),
                gpuconv.avg_pool1d(s, 2, ceil_mode=True),
                gpuconv.correlate2d(i, kernel, mode, boundary, fill), gpuconv.convolve2d(i, kernel, mode, boundary))

    eager = ops(signal, image)
    pads = ref.conv_pads("same", (1, signal.shape[-1]), (1, taps.shape[-1]), (1, 2), (1, 1))[2:]
    expected_conv1d = ref.conv2d(signal[:, :, None], taps[:, :, None], stride=(1, 2), padding=((0, 0), pads))[:, :, 0]

    def check(results):
        assert_close(results[0], expected_conv1d, np.float64, f"{what} conv1d against the reference")
        for name, got, want in zip(("conv1d", "max_pool1d", "indices", "avg_pool1d", "correlate2d", "convolve2d"),
                                   results, eager):
            if want.dtype.kind == "f":
                assert_close(got, want, want.dtype, f"{what} {name}")
            else:
                assert_same(got, want, want.dtype, f"{what} {name}")
    return ops(S, I), check


def seeded(*builders_and_seeds):
    """pytest params (build, seed) for every seed of every builder, with ids like conv_case-1003."""
    return [pytest.param(build, seed, id=f"{build.__name__}-{seed}") for build, seeds in builders_and_seeds
            for seed in seeds]


def run_cases(scheduler, cases):
    """Compute every case's lazy results in one go; on the threaded scheduler with NaN-poisoned
    backend outputs (the workers of a cluster are other processes)."""
    outputs = [out for outs, _ in cases for out in outs]
    for out in outputs:
        assert isinstance(out, da.Array), f"expected a lazy dask array, got {type(out).__name__}"
    if scheduler == "threads":
        with poisoned_numpy_backend():
            results = dask.compute(*outputs, scheduler="threads")
    else:
        results = dask.compute(*outputs, scheduler=scheduler)
    position = 0
    for outs, check in cases:
        check(results[position:position + len(outs)])
        position += len(outs)
