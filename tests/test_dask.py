"""Dask arrays in, lazy dask arrays out: every op on random chunkings of every axis against the
float64 reference, on the threaded scheduler and on a dask.distributed cluster of two worker
processes. Every random case is drawn from its seed, which the test id and each failure show."""
from __future__ import annotations

import pickle

import dask
import dask.array as da
import numpy as np
import pytest

import gpuconv
from gpuconv import _reference as ref
from dask_cases import (CONV_SEEDS, OTHER_SEEDS, PAD_SEEDS, PADDING_MODES, POOL_SEEDS, chunked, conv_case, other_case,
                        pad_case, pool_case, run_cases, seeded)
from gpuconv._dask_plan import plan_axis
from support import as_reference_input, assert_close, assert_same, random_array, require_backend


@pytest.mark.parametrize("build, seed", seeded((conv_case, CONV_SEEDS), (pool_case, POOL_SEEDS), (pad_case, PAD_SEEDS),
                                                 (other_case, OTHER_SEEDS)))
def test_random_chunks_match_the_reference(build, seed):
    run_cases("threads", [build(seed)])


def test_random_cases_on_a_cluster_of_two_worker_processes(dask_client):
    """Cases of every op computed by two worker processes, all in one graph: every chunk's task and
    its arguments travel to the workers. At most 2 chunks per axis here: the chunk arithmetic is the
    threaded tests' job, and a distributed task costs milliseconds."""
    cases = ([conv_case(s, most=2) for s in CONV_SEEDS[:7]] + [pool_case(s, most=2) for s in POOL_SEEDS[:4]]
             + [pad_case(s, most=2) for s in PAD_SEEDS[:4]] + [other_case(s, most=2) for s in OTHER_SEEDS[:2]])
    run_cases(dask_client, cases)


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
@pytest.mark.parametrize("chunks, edges_pad_themselves", [(((1, 2, 4, 2), (3, 1, 1, 6)), False),
                                                          (((5, 4), (5, 6)), True)])
def test_padding_modes_read_the_global_image(mode, chunks, edges_pad_themselves):
    """A kernel with a single 1 in its top-left corner copies the padded image: the result must be the
    reference padding of the whole image, rows and columns of every chunk included. Edge chunks
    longer than pad + stride mirror their own rows (reflect, replicate); shorter ones, and circular,
    which reads the opposite edge, take the whole array padded first."""
    x = np.arange(1.0, 1 + 9 * 11).reshape(1, 1, 9, 11)
    w = np.zeros((1, 1, 3, 4))
    w[0, 0, 0, 0] = 1
    X = da.from_array(x, chunks=(1, 1) + chunks)
    pads = ((2, 0), (3, 0))
    out = gpuconv.conv2d(X, w, padding=pads, padding_mode=mode)
    padded_first = mode in ("reflect", "replicate", "circular") and not (edges_pad_themselves and mode != "circular")
    assert any(name.startswith("concatenate") for name in out.dask.layers) == padded_first, list(out.dask.layers)
    padded = ref.pad2d(x, (2, 0, 3, 0), mode)
    assert_same(out.compute(), padded[..., :out.shape[2], :out.shape[3]])


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
    from gpuconv.backends import get_backend

    require_backend("cuda-emu")
    rng = np.random.default_rng(7)
    x = random_array(rng, (1, 2, 11, 9), np.float32)
    w = random_array(rng, (3, 2, 3, 3), np.float32)
    X = chunked(rng, x, 3)
    scheduler = request.getfixturevalue("dask_client") if on_cluster else "threads"
    calls = []
    if scheduler == "threads":  # the workers are other processes: count the calls made here only
        real = type(get_backend("cuda-emu")).conv2d
        monkeypatch.setattr(type(get_backend("cuda-emu")), "conv2d",
                            lambda self, *a, **k: calls.append(self.name) or real(self, *a, **k))
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
    require_backend("cuda")
    import cupy

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
def test_large_command_filters_a_zarr_store_on_a_cluster(tmp_path, capsys, dask_client):
    """The demo at a small size, on this module's cluster: input generated into the store, the filter
    bank's output written beside it, equal to the reference convolution of the stored input."""
    import argparse

    import zarr

    from gpuconv import _large
    from gpuconv.__main__ import main

    argv = ["--size", "150", "--chunk", "64x48", "--store", str(tmp_path / "large.zarr")]
    assert main(["large", *argv, "--scheduler", dask_client.scheduler.address]) == 0
    printed = capsys.readouterr().out
    assert "spot check" in printed and "(ok)" in printed and "peak memory per worker" in printed, printed
    image = zarr.open_array(str(tmp_path / "large.zarr"), path="input", mode="r")[...]
    output = zarr.open_array(str(tmp_path / "large.zarr"), path="output", mode="r")
    assert image.shape == (3, 150, 150) and output.shape == (4, 150, 150) and output.chunks == (4, 64, 48)
    expected = ref.conv2d(image[None].astype(np.float64), _large.bank(3), padding="same", padding_mode="reflect")
    assert_close(output[...], expected[0], np.float32, "large: output store against the reference")
    parser = argparse.ArgumentParser()
    _large.add_arguments(parser)
    assert _large._has_input(parser.parse_args(argv)), "an existing input of the same shape is reused"
    assert not _large._has_input(parser.parse_args([*argv, "--size", "151"]))
    assert not _large._has_input(parser.parse_args([*argv, "--chunk", "64"]))
    assert _large.chunk_shape(None, 4096) == (256, 4096) and _large.chunk_shape("7", 100) == (7, 100)


def test_large_scaling_benchmark_runs(capsys):
    from gpuconv.__main__ import main

    assert main(["large", "--scaling", "1,2", "--size", "128", "--repeat", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2, rows
