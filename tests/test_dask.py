"""Dask arrays in, lazy dask arrays out: every op on random chunkings of every axis against the
float64 reference, on the threaded scheduler and on a dask.distributed cluster of two worker
processes. Every random case is drawn from its seed, which the test id and each failure show."""
from __future__ import annotations

import logging
import pickle

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

import gpuconv
import reference as ref
from gpuconv._dask_plan import plan_axis
from support import as_reference_input, assert_close, assert_same, poisoned_numpy_backend, random_array

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PAD_MODES = ("constant", "reflect", "replicate", "circular")


# ---- random cases: each builds lazy results and a check of their computed values ---------------------
CONV_SEEDS, POOL_SEEDS, PAD_SEEDS, OTHER_SEEDS = range(1000, 1024), range(2000, 2016), range(3000, 3008), range(4000, 4006)


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


def pad_case(seed, most=5):
    rng = np.random.default_rng(seed)
    mode = str(rng.choice(PAD_MODES))
    shape = tuple(int(s) for s in rng.integers(1, 4, rng.integers(0, 3))) + tuple(int(s) for s in rng.integers(4, 20, 2))
    limit = {"reflect": min(shape[-2:]) - 1, "circular": min(shape[-2:])}.get(mode, 8)
    pads = tuple(tuple(int(p) for p in rng.integers(0, limit + 1, 2)) for _ in range(2))
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


@pytest.mark.parametrize("seed", CONV_SEEDS)
def test_conv2d_random_chunks_match_the_reference(seed):
    run_cases("threads", [conv_case(seed)])


@pytest.mark.parametrize("seed", POOL_SEEDS)
def test_pooling_random_chunks_match_the_reference(seed):
    run_cases("threads", [pool_case(seed)])


@pytest.mark.parametrize("seed", PAD_SEEDS)
def test_pad2d_random_chunks_match_the_reference(seed):
    run_cases("threads", [pad_case(seed)])


@pytest.mark.parametrize("seed", OTHER_SEEDS)
def test_1d_and_scipy_style_ops_random_chunks(seed):
    run_cases("threads", [other_case(seed)])


@pytest.fixture(scope="module")
def cluster_client():
    """Two worker processes, one thread and 1 GiB each, started once for this module."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                      dashboard_address=":0", silence_logs=logging.WARNING) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


def test_random_cases_on_a_cluster_of_two_worker_processes(cluster_client):
    """Cases of every op computed by two worker processes, all in one graph: every chunk's task and
    its arguments travel to the workers. At most 2 chunks per axis here: the chunk arithmetic is the
    threaded tests' job, and a distributed task costs milliseconds."""
    cases = ([conv_case(s, most=2) for s in CONV_SEEDS[:7]] + [pool_case(s, most=2) for s in POOL_SEEDS[:4]]
             + [pad_case(s, most=2) for s in PAD_SEEDS[:4]] + [other_case(s, most=2) for s in OTHER_SEEDS[:2]])
    run_cases(cluster_client, cases)


def test_depthwise_conv_keeps_channel_chunks():
    x = np.ones((1, 6, 8, 8), np.float32)
    X = da.from_array(x, chunks=(1, (2, 1, 3), 8, 8))
    out = gpuconv.conv2d(X, np.ones((12, 1, 3, 3), np.float32), groups=6, padding=1)
    assert out.chunks[1] == (4, 2, 6)
    grouped = gpuconv.conv2d(X, np.ones((6, 2, 3, 3), np.float32), groups=3, padding=1)
    assert grouped.chunks[1] == (2, 2, 2), "a boundary inside a group (at 3) moves to a group boundary (4)"
    assert_same(grouped.compute(), gpuconv.conv2d(x, np.ones((6, 2, 3, 3), np.float32), groups=3, padding=1))


# ---- the rules, one at a time ------------------------------------------------------------------------
def test_padding_applies_at_the_global_edges_only():
    """A 3x3 box of ones over ones counts the taps inside the image: 9 everywhere except the image's
    own border, whatever the chunks (a chunk edge padded with zeros would show 6 or 4 there)."""
    X = da.ones((1, 1, 10, 10), dtype=np.float32, chunks=(1, 1, (3, 1, 4, 2), (2, 5, 3)))
    out = gpuconv.conv2d(X, np.ones((1, 1, 3, 3), np.float32), padding=1).compute()[0, 0]
    expected = np.full((10, 10), 9.0)
    expected[[0, -1], :] = 6
    expected[:, [0, -1]] = 6
    expected[[0, 0, -1, -1], [0, -1, 0, -1]] = 4
    assert_same(out, expected.astype(np.float32))


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_padding_modes_read_the_global_image(mode):
    """A kernel with a single 1 in its top-left corner copies the padded image: the result must be the
    reference padding of the whole image, rows and columns of every chunk included."""
    x = np.arange(1.0, 1 + 9 * 11).reshape(1, 1, 9, 11)
    w = np.zeros((1, 1, 3, 4))
    w[0, 0, 0, 0] = 1
    X = da.from_array(x, chunks=(1, 1, (1, 2, 4, 2), (3, 1, 1, 6)))
    pads = ((2, 0), (3, 0))
    out = gpuconv.conv2d(X, w, padding=pads, padding_mode=mode).compute()
    padded = ref.pad2d(x, (2, 0, 3, 0), mode)
    assert_same(out, padded[..., :out.shape[2], :out.shape[3]])


def test_max_pool_indices_are_global_flat_indices():
    """Distinct values: every index must point at its window's maximum in the whole H*W plane."""
    rng = np.random.default_rng(5)
    x = rng.permutation(2 * 3 * 13 * 17).reshape(2, 3, 13, 17).astype(np.float64)
    X = da.from_array(x, chunks=(1, (1, 2), (4, 1, 8), (5, 5, 7)))
    values, indices = dask.compute(*gpuconv.max_pool2d(X, 3, stride=2, padding=1, return_indices=True))
    planes = x.reshape(6, -1)
    assert_same(np.take_along_axis(planes, indices.reshape(6, -1), axis=1).reshape(values.shape), values)
    assert indices.max() > 13 * 17 // 2, "indices cover the whole plane, not one chunk"


def test_chunks_smaller_than_the_halo_are_merged():
    """A 7x7 'same' conv borrows 3 positions from each neighbour: chunks of 1 and 2 are merged, and the
    boundaries that stay are the input's own (a 'same' conv keeps its input's chunks)."""
    x = random_array(np.random.default_rng(2), (1, 2, 20, 20))
    X = da.from_array(x, chunks=(1, 1, 1, (1, 2, 1, 6, 10)))
    w = random_array(np.random.default_rng(3), (3, 2, 7, 7))
    for chunks in X.chunks[2:]:
        plan = plan_axis(chunks, 3, 3, 7, 1, 20, 3)
        assert plan.depth == (3, 3) and min(plan.in_chunks) >= 3, plan
    out = gpuconv.conv2d(X, w, padding="same")
    assert out.chunks[2:] == ((3,) * 5 + (5,), (3, 7, 10))
    assert_close(out.compute(), ref.conv2d(x, w, padding="same"), np.float64)


def test_stride_aligns_chunk_boundaries():
    """Stride 2: chunks of 6 keep their boundaries (output chunks of 3); chunks of 5 get even ones."""
    X = da.from_array(np.arange(400.0).reshape(1, 1, 20, 20), chunks=(1, 1, 6, 5))
    out = gpuconv.conv2d(X, np.ones((1, 1, 3, 3)), stride=2, padding=1)
    rows, cols = (plan_axis(chunks, 1, 1, 3, 2, 10, 1) for chunks in X.chunks[2:])
    assert rows.in_chunks == (6, 6, 6, 2) and out.chunks[2] == (3, 3, 3, 1)
    assert cols.in_bounds == (0, 6, 10, 16, 20) and out.chunks[3] == (3, 2, 3, 2)
    assert rows.depth == cols.depth == (1, 0)
    assert_close(out.compute(), ref.conv2d(X.compute(), np.ones((1, 1, 3, 3)), stride=2, padding=1), np.float64)


def unknown_chunks():
    X = da.from_array(np.ones((4, 2, 8, 8), np.float32), chunks=2)
    return X[X[:, 0, 0, 0] > 0]


@pytest.mark.parametrize("op", [
    lambda X: gpuconv.conv2d(X, np.ones((1, 2, 3, 3), np.float32)),
    lambda X: gpuconv.max_pool2d(X, 2, return_indices=True),
    lambda X: gpuconv.avg_pool2d(X, 2),
    lambda X: gpuconv.pad2d(X, 1, "reflect"),
    lambda X: gpuconv.conv1d(X[:, :, 0], np.ones((1, 2, 3), np.float32)),
    lambda X: gpuconv.max_pool1d(X[:, :, 0], 2),
    lambda X: gpuconv.correlate2d(X[:, 0, 0], np.ones((3, 3), np.float32)),
], ids=["conv2d", "max_pool2d", "avg_pool2d", "pad2d", "conv1d", "max_pool1d", "correlate2d"])
def test_unknown_chunk_sizes_are_a_value_error(op):
    X = unknown_chunks()
    with pytest.raises(ValueError, match=r"(x|image) is a dask array of unknown chunk sizes.*compute_chunk_sizes"):
        op(X)
    X.compute_chunk_sizes()
    assert op(X) is not None


def test_results_are_lazy_and_arguments_are_checked_at_the_call():
    """Nothing runs at the call (a chunk that raises only raises at compute), but a bad argument
    raises there, naming itself."""
    def explode(block):
        raise RuntimeError("computed")

    X = da.zeros((1, 2, 16, 16), chunks=8).map_blocks(explode, dtype=np.float64)
    w = np.ones((4, 2, 3, 3))
    lazy = [gpuconv.conv2d(X, w, padding=1), gpuconv.max_pool2d(X, 2)[..., :3], gpuconv.avg_pool2d(X, 3, 1, 1),
            gpuconv.pad2d(X, 2, "circular"), gpuconv.conv1d(X[:, :, 0], w[..., 0])]
    for out in lazy:
        with pytest.raises(RuntimeError, match="computed"):
            out.compute(scheduler="sync")
    with pytest.raises(ValueError, match="groups=2"):
        gpuconv.conv2d(X, w, groups=2)
    with pytest.raises(ValueError, match="padding"):
        gpuconv.max_pool2d(X, 2, padding=2)
    with pytest.raises(ValueError, match="reflect"):
        gpuconv.pad2d(X, 16, "reflect")
    with pytest.raises(ValueError, match="backend='nope'"):
        gpuconv.avg_pool2d(X, 2, backend="nope")
    with pytest.raises(ValueError, match="algorithm='nope'"):
        gpuconv.conv2d(X, w, algorithm="nope")
    with pytest.raises(ValueError, match="algorithm='shifted' cannot run on every chunk"):
        gpuconv.conv2d(X, w, padding=1, algorithm="shifted")  # chunks with a column halo are not 'same' width
    with pytest.raises(TypeError, match="complex"):
        gpuconv.conv2d(X.astype(np.complex64), w)


def test_explicit_algorithm_runs_on_every_chunk():
    x = random_array(np.random.default_rng(4), (1, 3, 12, 12))
    w = random_array(np.random.default_rng(5), (2, 3, 3, 3))
    X = da.from_array(x, chunks=(1, 3, 5, 12))  # whole rows: every chunk is as wide as its output
    for algorithm in ("shifted", "im2col", "direct"):
        assert_close(gpuconv.conv2d(X, w, padding=1, algorithm=algorithm).compute(),
                     ref.conv2d(x, w, padding=1), np.float64, algorithm)


def test_results_pickle():
    """Graphs travel to worker processes: every op's lazy result survives pickle."""
    x = random_array(np.random.default_rng(6), (2, 2, 9, 9))
    X = da.from_array(x, chunks=(1, 1, 4, 5))
    outs = [gpuconv.conv2d(X, np.ones((2, 2, 3, 3)), padding=1, padding_mode="circular"),
            *gpuconv.max_pool2d(X, 3, 2, 1, return_indices=True), gpuconv.avg_pool2d(X, 2),
            gpuconv.pad2d(X, 2, "reflect")]
    for out in outs:
        assert_same(pickle.loads(pickle.dumps(out)).compute(scheduler="sync"), out.compute(scheduler="sync"))


def test_empty_arrays():
    X = da.zeros((0, 2, 8, 8), chunks=4)
    assert gpuconv.conv2d(X, np.ones((3, 2, 3, 3))).compute().shape == (0, 3, 6, 6)
    assert gpuconv.max_pool2d(X, 2, return_indices=True)[1].compute().shape == (0, 2, 4, 4)
    assert_same(gpuconv.pad2d(da.zeros((2, 0, 3), chunks=1), 1, value=2.0).compute(), np.full((2, 2, 5), 2.0))


def test_importing_gpuconv_does_not_import_dask():
    import subprocess
    import sys

    code = "import sys, gpuconv; gpuconv.conv2d([[[[1.0]]]], [[[[1.0]]]]); print('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


# ---- backends ----------------------------------------------------------------------------------------
@pytest.mark.emulator
@pytest.mark.parametrize("on_cluster", [False, True], ids=["threads", "cluster"])
def test_chunks_run_on_the_named_backend(on_cluster, request, monkeypatch):
    """backend='cuda-emu' (or use_backend at the call) runs every chunk's kernels in the emulator on
    NumPy chunks, on the workers too; the results match the reference."""
    from gpuconv.backends import BackendUnavailable, get_backend

    try:
        get_backend("cuda-emu")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(7)
    x = random_array(rng, (1, 2, 11, 9), np.float32)
    w = random_array(rng, (3, 2, 3, 3), np.float32)
    X = chunked(rng, x, 3)
    scheduler = request.getfixturevalue("cluster_client") if on_cluster else "threads"
    calls = []
    if scheduler == "threads":  # the workers are other processes: count the calls made here only
        real = type(get_backend("cuda-emu")).conv2d
        monkeypatch.setattr(type(get_backend("cuda-emu")), "conv2d",
                            lambda self, *a: calls.append(self.name) or real(self, *a))
    with gpuconv.use_backend("cuda-emu"):
        conv = gpuconv.conv2d(X, w, padding=1, padding_mode="reflect", stride=(2, 1))
    values, indices = gpuconv.max_pool2d(X, 3, 2, 1, return_indices=True, backend="cuda-emu")
    conv, values, indices = dask.compute(conv, values, indices, scheduler=scheduler)
    assert_close(conv, ref.conv2d(x, w, padding=1, padding_mode="reflect", stride=(2, 1)), np.float32,
                 f"chunks={X.chunks}")
    ref_values, ref_indices = ref.max_pool2d(as_reference_input(x), 3, 2, 1)
    assert_same(values.astype(np.float64), ref_values)
    assert_same(indices, ref_indices)
    if scheduler == "threads":
        assert calls and set(calls) == {"cuda-emu"}


@pytest.mark.gpu
def test_cupy_chunks_run_on_cuda():
    cupy = pytest.importorskip("cupy")
    from gpuconv.backends import BackendUnavailable, get_backend

    try:
        get_backend("cuda")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(8)
    x = random_array(rng, (2, 3, 30, 26), np.float32)
    w = random_array(rng, (4, 3, 3, 3), np.float32)
    X = da.from_array(cupy.asarray(x), chunks=(1, 2, 9, 11), asarray=False)
    out = gpuconv.conv2d(X, w, padding=1, padding_mode="circular")
    values, indices = gpuconv.max_pool2d(X, 3, 2, 1, return_indices=True)
    out, values, indices = dask.compute(out, values, indices, scheduler="threads")
    assert type(out).__module__.startswith("cupy") and type(indices).__module__.startswith("cupy")
    assert_close(out, ref.conv2d(x, w, padding=1, padding_mode="circular"), np.float32)
    assert_same(indices, ref.max_pool2d(x, 3, 2, 1)[1])


# ---- python -m gpuconv large -------------------------------------------------------------------------
def test_large_command_filters_a_zarr_store_on_a_cluster(tmp_path, capsys, cluster_client):
    """The demo at a small size, on this module's cluster: input generated into the store, the filter
    bank's output written beside it, equal to the reference convolution of the stored input."""
    import argparse

    import zarr

    from gpuconv import _large
    from gpuconv.__main__ import main

    argv = ["--size", "150", "--chunk", "64", "--store", str(tmp_path / "large.zarr")]
    assert main(["large", *argv, "--scheduler", cluster_client.scheduler.address]) == 0
    printed = capsys.readouterr().out
    assert "spot check" in printed and "(ok)" in printed and "peak memory per worker" in printed, printed
    image = zarr.open_array(str(tmp_path / "large.zarr"), path="input", mode="r")[...]
    output = zarr.open_array(str(tmp_path / "large.zarr"), path="output", mode="r")
    assert image.shape == (3, 150, 150) and output.shape == (4, 150, 150) and output.chunks == (4, 64, 64)
    expected = ref.conv2d(image[None].astype(np.float64), _large.bank(3), padding="same", padding_mode="reflect")
    assert_close(output[...], expected[0], np.float32, "large: output store against the reference")
    parser = argparse.ArgumentParser()
    _large.add_arguments(parser)
    assert _large._has_input(parser.parse_args(argv)), "an existing input of the same shape is reused"
    assert not _large._has_input(parser.parse_args([*argv, "--size", "151"]))


def test_large_scaling_benchmark_runs(capsys):
    from gpuconv.__main__ import main

    assert main(["large", "--scaling", "1,2", "--size", "128", "--chunk", "64", "--repeat", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2, rows
