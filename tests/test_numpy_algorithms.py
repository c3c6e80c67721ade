"""The NumPy backend's conv algorithms, each forced in turn, against the float64 reference:
shapes that hit the tiling edges (tile remainders, one-image batches, rows split into
one-row tiles), every padding mode, strides, dilations, groups, dtypes and bias; Winograd's
float32 error bound; the workspace cap; thread settings."""
from __future__ import annotations

import contextlib
import re
import threading
import time
import tracemalloc

import numpy as np
import pytest

import gpuconv
from gpuconv import _reference as ref
from gpuconv._config import config
from gpuconv._geometry import conv_spec
from gpuconv.backends import get_backend
from gpuconv.backends.cpu import _blas, _threads, _tiles, _workspace, conv, im2col, pool, shifted, winograd
from support import as_reference_input, assert_close, poisoned_numpy_backend, random_array

ALGORITHMS = tuple(a for a in conv.ALGORITHMS if a != "auto")

# (x shape, w shape, conv2d keyword arguments)
CASES = [
    ((3, 4, 11, 9), (5, 4, 3, 3), dict(padding=1)),
    ((2, 3, 10, 13), (4, 3, 3, 3), dict(padding=((2, 1), (0, 2)), padding_mode="reflect")),
    ((2, 3, 9, 8), (4, 3, 3, 3), dict(padding=(1, 2), padding_mode="replicate")),
    ((1, 2, 7, 12), (3, 2, 3, 3), dict(padding=((1, 2), (2, 1)), padding_mode="circular")),
    ((2, 3, 13, 11), (4, 3, 2, 3), dict(stride=2, dilation=(1, 2), padding="same")),
    ((2, 2, 16, 15), (3, 2, 5, 5), dict(stride=3, dilation=2, padding=(3, 1), padding_mode="reflect")),
    ((2, 3, 12, 10), (6, 3, 3, 2), dict(stride=(2, 1), padding=((0, 2), (1, 1)), padding_mode="circular")),
    ((2, 4, 10, 10), (6, 2, 3, 3), dict(groups=2, padding=1, padding_mode="replicate")),
    ((3, 4, 9, 11), (8, 1, 3, 3), dict(groups=4, padding=1)),  # depthwise, 2 filters per channel
    ((2, 6, 8, 8), (6, 1, 3, 3), dict(groups=6, padding="same", padding_mode="reflect")),
    ((1, 1, 17, 19), (1, 1, 3, 3), {}),  # one image, one channel
    ((4, 1, 12, 12), (3, 1, 5, 5), dict(padding="valid")),
    ((2, 5, 6, 7), (3, 5, 1, 1), dict(stride=(1, 2))),
    ((2, 3, 1, 17), (2, 3, 1, 4), dict(padding=(0, 2), dilation=(1, 3))),
    ((1, 2, 3, 3), (2, 2, 5, 5), dict(padding=2)),  # kernel larger than the input
    ((2, 3, 8, 9), (4, 3, 3, 3), dict(padding=(0, 1), stride=1, dilation=2, padding_mode="circular")),
    ((1, 2, 3, 5), (3, 2, 3, 3), {}),  # one output row
    ((2, 2, 1, 1), (2, 2, 3, 3), dict(padding=1)),  # one pixel
    ((1, 3, 4, 40), (2, 3, 3, 3), dict(padding=((1, 1), (0, 0)), padding_mode="replicate")),
    ((2, 3, 30, 26), (4, 3, 3, 3), dict(padding=1, padding_mode="reflect")),  # Winograd's per-image matmuls
    # output as wide as the input (the shifted algorithm): dilations, asymmetric and oversized pads
    ((2, 8, 12, 10), (8, 1, 3, 5), dict(groups=8, padding=((0, 3), (2, 2)), dilation=(2, 1))),
    ((3, 6, 9, 7), (6, 1, 3, 3), dict(groups=6, padding=(1, 2), dilation=2)),
    ((2, 4, 8, 9), (8, 2, 2, 4), dict(groups=2, padding="same")),
    ((1, 3, 5, 6), (3, 1, 3, 3), dict(groups=3, padding=((4, 0), (1, 1)))),  # output rows wholly in the padding
    ((3, 6, 5, 7), (4, 3, 1, 1), dict(groups=2, dilation=3)),  # pointwise: im2col multiplies the input itself
    ((2, 3, 15, 13), (4, 3, 5, 3), dict(dilation=(2, 3), stride=(1, 2))),  # im2col's stage: 5 rows, narrow output
]


@contextlib.contextmanager
def workspace_limit(nbytes: int):
    """gpuconv.set_workspace_limit(nbytes) for the block; the previous cap afterwards."""
    saved = config.workspace_bytes
    gpuconv.set_workspace_limit(nbytes)
    try:
        yield
    finally:
        config.workspace_bytes = saved


def traced_peak(call):
    """(call(), the peak of the allocations tracemalloc traced during it, in bytes)."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(params=["default", "one-row tiles", "few-image tiles"])
def tiling(request, monkeypatch):
    """Tile size targets: the library defaults, the smallest tile (one or two output rows, so
    rows are split and the last tile is a remainder) and a few images per tile; for im2col and
    direct (_tiles.TARGET_BYTES) and for Winograd (its own TARGET_BYTES)."""
    target = {"default": None, "one-row tiles": 1, "few-image tiles": 24 << 10}[request.param]
    if target is not None:
        monkeypatch.setattr(_tiles, "TARGET_BYTES", target)
        monkeypatch.setattr(winograd, "TARGET_BYTES", target)
        monkeypatch.setattr(shifted, "TARGET_BYTES", target)
    return request.param


@pytest.fixture(params=[1, 2])
def threads(request, monkeypatch):
    """1 or 2 worker threads; small convolutions are spread over the threads too."""
    monkeypatch.setattr(config, "num_threads", request.param)
    monkeypatch.setattr(_tiles, "MIN_PARALLEL_BYTES", 0)
    return request.param


def _check_all_algorithms(x, w, bias, kwargs, dtype):
    expected = ref.conv2d(as_reference_input(x), as_reference_input(w), as_reference_input(bias), **kwargs)
    spec = conv_spec(x.shape, w.shape, kwargs.get("stride", 1), kwargs.get("padding", 0), kwargs.get("dilation", 1),
                     kwargs.get("groups", 1), kwargs.get("padding_mode", "zeros"))
    applicable = get_backend("numpy").applicable_algorithms(spec)
    inputs = [a.copy() for a in (x, w, bias) if a is not None]
    for algorithm in ALGORITHMS:
        if algorithm in applicable:
            with poisoned_numpy_backend():
                out = gpuconv.conv2d(x, w, bias, **kwargs, algorithm=algorithm, backend="numpy")
            assert_close(out, expected, dtype, f"algorithm={algorithm} x{x.shape} w{w.shape} {kwargs}")
            assert all(np.array_equal(a, b) for a, b in zip(inputs, (x, w, bias))), f"{algorithm} wrote into its inputs"
        else:
            with pytest.raises(ValueError, match=re.escape(repr(algorithm)) + ".*needs"):
                gpuconv.conv2d(x, w, bias, **kwargs, algorithm=algorithm, backend="numpy")


@pytest.mark.parametrize("case", range(len(CASES)))
def test_every_algorithm_matches_the_reference(case, tiling, threads):
    x_shape, w_shape, kwargs = CASES[case]
    rng = np.random.default_rng(1000 + case)
    x, w = random_array(rng, x_shape, np.float32), random_array(rng, w_shape, np.float32)
    bias = random_array(rng, (w_shape[0],), np.float32) if case % 2 else None
    _check_all_algorithms(x, w, bias, kwargs, np.float32)


def test_every_algorithm_on_non_contiguous_input(tiling):
    rng = np.random.default_rng(3000)
    base = random_array(rng, (2, 4, 10, 22), np.float32)
    x = base[:, :, :, ::2]  # a strided view
    w = random_array(rng, (4, 4, 3, 3), np.float32)
    _check_all_algorithms(x, w, None, dict(padding=1), np.float32)
    # unpadded: im2col's windows are strided views of the input itself
    _check_all_algorithms(x[:, :, ::-1], w, None, dict(stride=(2, 1), dilation=(1, 2)), np.float32)
    # pointwise: a non-contiguous input is copied into columns, not multiplied in place
    _check_all_algorithms(x, w[:, :, :1, :1], random_array(rng, (4,), np.float32), {}, np.float32)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@pytest.mark.parametrize("case", [0, 2, 4, 8, 11, 24, 25])  # 11: unpadded, 24: pointwise, 25: staged
def test_every_algorithm_in_other_dtypes(case, dtype, tiling):
    x_shape, w_shape, kwargs = CASES[case]
    rng = np.random.default_rng(2000 + case)
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    _check_all_algorithms(x, w, random_array(rng, (w_shape[0],), dtype), kwargs, dtype)


def test_winograd_float32_error_is_within_2e_5_of_the_output_scale():
    rng = np.random.default_rng(11)
    for x_shape, w_shape, kwargs in [((2, 32, 20, 18), (24, 32, 3, 3), dict(padding=1)),
                                     ((1, 64, 15, 16), (64, 64, 3, 3), dict(padding=1, padding_mode="reflect")),
                                     ((3, 16, 9, 9), (8, 16, 3, 3), {})]:
        x = (rng.standard_normal(x_shape) * 100).astype(np.float32)
        w = rng.uniform(-1, 1, w_shape).astype(np.float32)
        expected = ref.conv2d(x.astype(np.float64), w.astype(np.float64), **kwargs)
        out = gpuconv.conv2d(x, w, **kwargs, algorithm="winograd", backend="numpy")
        error = np.abs(out - expected).max() / np.abs(expected).max()
        assert error <= 2e-5, f"winograd error {error:.2e} of the output scale for x{x_shape} w{w_shape} {kwargs}"


@pytest.mark.parametrize("groups_per_tile", [1, 2, 3, 5, 7])
def test_shifted_tiles_of_groups_that_span_images(groups_per_tile, threads, monkeypatch):
    """The shifted algorithm's tiles are blocks of (image, group) units: blocks that end in
    the next image, and a remainder block, give the reference's values."""
    rng = np.random.default_rng(40 + groups_per_tile)
    x, w = random_array(rng, (3, 5, 7, 6), np.float32), random_array(rng, (10, 1, 3, 3), np.float32)
    bias = random_array(rng, (10,), np.float32)
    spec = conv_spec(x.shape, w.shape, 1, 1, 1, 5, "zeros")
    captured = []
    plan = _tiles.plan
    monkeypatch.setattr(_tiles, "plan", lambda *a, **k: captured.append(plan(*a, **k)) or captured[-1])
    # a whole-plane tile of one group: its band (9 rows of 6, 1 before, 1 after), 9 taps of 7 rows, alignment
    monkeypatch.setattr(shifted, "TARGET_BYTES", groups_per_tile * (4 * (1 + 9 * 6 + 1 + 9 * 7 * 6) + 3 * 64))
    with poisoned_numpy_backend():
        out = gpuconv.conv2d(x, w, bias, padding=1, groups=5, algorithm="shifted", backend="numpy")
    assert_close(out, ref.conv2d(x, w, bias, padding=1, groups=5), np.float32, f"{groups_per_tile} groups per tile")
    tiles = captured[-1].tiles
    assert all(r0 == 0 and r1 == spec.oh for _, _, r0, r1 in tiles), "tiles should be whole planes"
    if groups_per_tile in (2, 3):
        assert any(u0 // 5 != (u1 - 1) // 5 for u0, u1, _, _ in tiles), "no tile spans two images"


def test_forcing_an_inapplicable_algorithm_names_it_and_its_rule():
    x, w = np.ones((1, 2, 8, 8), np.float32), np.ones((2, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"algorithm='winograd'.*3x3 kernel, stride 1, dilation 1 and groups=1"):
        gpuconv.conv2d(x, w, stride=2, algorithm="winograd", backend="numpy")
    with pytest.raises(ValueError, match=r"algorithm='fft'.*offers"):
        gpuconv.conv2d(x, w, algorithm="fft", backend="numpy")


def test_algorithm_contract_and_automatic_choice():
    impl = get_backend("numpy")
    assert impl.algorithms[0] == "auto" and set(ALGORITHMS) == {"im2col", "winograd", "shifted", "direct"}
    resnet = conv_spec((8, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1, "zeros")
    mobilenet = conv_spec((8, 64, 56, 56), (64, 1, 3, 3), 1, 1, 1, 64, "zeros")
    strided = conv_spec((8, 64, 56, 56), (64, 1, 3, 3), 2, 1, 1, 64, "zeros")
    reflected = conv_spec((8, 64, 56, 56), (64, 1, 3, 3), 1, 1, 1, 64, "reflect")
    stem = conv_spec((8, 3, 224, 224), (64, 3, 7, 7), 2, 3, 1, 1, "zeros")
    assert impl.applicable_algorithms(resnet) == ("auto", "im2col", "winograd", "shifted", "direct")
    assert impl.applicable_algorithms(stem) == ("auto", "im2col", "direct")
    assert impl.applicable_algorithms(reflected) == ("auto", "im2col", "direct")
    wide = conv_spec((8, 128, 28, 28), (128, 128, 3, 3), 1, 1, 1, 1, "zeros")
    deep = conv_spec((8, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1, "zeros")
    small = conv_spec((8, 64, 14, 14), (64, 1, 3, 3), 1, 1, 1, 64, "zeros")
    pointwise = conv_spec((8, 64, 56, 56), (256, 64, 1, 1), 1, 0, 1, 1, "zeros")
    bank = conv_spec((1, 3, 1024, 1024), (4, 3, 5, 5), 1, 2, 1, 1, "zeros")  # a filter bank over an RGB image
    few_filters = conv_spec((8, 64, 56, 56), (8, 64, 3, 3), 1, 1, 1, 1, "zeros")  # many channels: shifted wins
    specs = (resnet, wide, deep, mobilenet, small, strided, reflected, stem, pointwise, bank, few_filters)
    assert [conv.choose(s) for s in specs] == [
        "shifted", "winograd", "shifted", "shifted", "im2col", "im2col", "im2col", "im2col", "im2col", "im2col",
        "shifted"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_workspace_cap_holds_for_every_algorithm(algorithm):
    """Under a 1 MiB cap, a conv whose full im2col needs ~9 MiB gives the right result while
    the traced allocations of the call (its first under this cap) stay under cap + output."""
    rng = np.random.default_rng(5)
    x, w = random_array(rng, (4, 16, 64, 64), np.float32), random_array(rng, (16, 16, 3, 3), np.float32)
    expected = ref.conv2d(x, w, padding=1)
    cap, out_bytes = 1 << 20, expected.size * 4
    assert 4 * 16 * 9 * 64 * 64 * 4 > 8 * cap
    with workspace_limit(cap):
        _workspace.release()  # drop buffers an earlier call kept under the default cap
        out, peak = traced_peak(lambda: gpuconv.conv2d(x, w, padding=1, algorithm=algorithm, backend="numpy"))
    assert_close(out, expected, np.float32, f"algorithm={algorithm} under a 1 MiB cap")
    assert peak <= cap + out_bytes + (64 << 10), f"algorithm={algorithm}: peak {peak} > cap {cap} + output {out_bytes}"


LAYERS_A_TO_H = [  # DESIGN.md section 5: (x shape, w shape, stride, padding, groups)
    ((8, 3, 224, 224), (64, 3, 7, 7), 2, 3, 1), ((8, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
    ((8, 128, 28, 28), (128, 128, 3, 3), 1, 1, 1), ((8, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1),
    ((32, 1, 28, 28), (32, 1, 5, 5), 1, 0, 1), ((1, 1, 512, 512), (1, 1, 3, 3), 1, 0, 1),
    ((1, 3, 1024, 1024), (16, 3, 3, 3), 1, 1, 1), ((8, 64, 56, 56), (64, 1, 3, 3), 1, 1, 64)]


def test_layers_a_to_h_take_under_32_mib_of_scratch():
    """Traced allocations of each benchmark layer's conv (automatic algorithm, workspace
    allocated afresh) beyond its output stay under 32 MiB."""
    for x_shape, w_shape, stride, padding, groups in LAYERS_A_TO_H:
        x, w = np.ones(x_shape, np.float32), np.ones(w_shape, np.float32)
        with workspace_limit(1 << 20):  # so that release() drops every kept buffer
            _workspace.release()
        out, peak = traced_peak(
            lambda: gpuconv.conv2d(x, w, stride=stride, padding=padding, groups=groups, backend="numpy"))
        assert peak - out.nbytes < 32 << 20, f"x{x_shape} w{w_shape}: {(peak - out.nbytes) >> 20} MiB of scratch"


def test_a_tile_that_cannot_fit_the_cap_is_a_clear_memory_error():
    x, w = np.ones((1, 256, 3, 2048), np.float32), np.ones((2, 256, 3, 3), np.float32)
    with workspace_limit(1 << 20), pytest.raises(MemoryError, match=r"algorithm 'im2col'.*cap of 1048576 bytes"):
        gpuconv.conv2d(x, w, algorithm="im2col", backend="numpy")


@pytest.mark.parametrize("min_parallel, blas_threads", [(0, 1), (1 << 40, 2)],
                         ids=["tiles on 2 threads", "caller alone"])
def test_blas_threads_are_limited_during_a_call_and_restored_after_it(min_parallel, blas_threads, monkeypatch):
    """Worker threads run their matmuls with BLAS at one thread; a call on the caller alone lets BLAS
    use config.num_threads; afterwards the user's own setting is back. The user's setting here
    differs from both (so that a missing limit or restore shows)."""
    control = _blas._find_control()
    if not control:
        pytest.skip("no way to control NumPy's BLAS threads here (neither OpenBLAS nor threadpoolctl)")
    get, set_, _ = control
    saved = get()
    set_(4)
    if get() != 4:
        set_(saved)
        pytest.skip(f"this BLAS cannot run 4 threads (it keeps {get()})")
    monkeypatch.setattr(config, "num_threads", 2)
    monkeypatch.setattr(_tiles, "MIN_PARALLEL_BYTES", min_parallel)
    seen = []
    real_matmul = np.matmul
    monkeypatch.setattr(im2col.np, "matmul", lambda *a, **k: (seen.append(get()), real_matmul(*a, **k))[1])
    rng = np.random.default_rng(9)
    x, w = random_array(rng, (4, 8, 16, 16), np.float32), random_array(rng, (8, 8, 3, 3), np.float32)
    try:
        out = gpuconv.conv2d(x, w, padding=1, algorithm="im2col", backend="numpy")
        after = get()
    finally:
        set_(saved)
    assert_close(out, ref.conv2d(x, w, padding=1), np.float32, "im2col")
    assert seen and set(seen) == {blas_threads}, f"BLAS threads during the matmuls: {seen}"
    assert after == 4, f"BLAS threads after the call: {after}, not the user's 4"


POOL_CASES = [(3, 2, 1, 1, False), (2, 2, 0, 1, True), (3, 1, 1, 2, False), (5, 3, 2, 1, True), (4, 3, 2, 2, True)]


@pytest.mark.parametrize("chunk_bytes", [pool.CHUNK_BYTES, 900, 1], ids=["planes", "bands", "one-row bands"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_pooling_work_items_match_the_reference(chunk_bytes, dtype, threads, monkeypatch):
    """Pooling splits planes into chunks, or a plane into bands of output rows when its row
    results exceed CHUNK_BYTES: every split gives the reference's values (NaN included), and
    max pooling with indices (chunks of planes) the reference's indices."""
    monkeypatch.setattr(pool, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(77)
    x = random_array(rng, (2, 3, 17, 23), dtype)
    x[0, 1, 5, 6] = np.nan
    for k, s, p, d, ceil_mode in POOL_CASES:
        kwargs = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode)
        expected, expected_idx = ref.max_pool2d(as_reference_input(x), **kwargs, dilation=d)
        with poisoned_numpy_backend():
            got = gpuconv.max_pool2d(x, **kwargs, dilation=d, backend="numpy")
            got_with_idx, idx = gpuconv.max_pool2d(x, **kwargs, dilation=d, return_indices=True, backend="numpy")
        assert_close(got, expected, dtype, f"max {kwargs} d={d}")
        assert_close(got_with_idx, expected, dtype, f"max with indices {kwargs} d={d}")
        assert np.array_equal(idx, expected_idx), f"max indices {kwargs} d={d}"
        if d == 1:
            for count_include_pad in (True, False):
                with poisoned_numpy_backend():
                    got = gpuconv.avg_pool2d(x, **kwargs, count_include_pad=count_include_pad, backend="numpy")
                expected = ref.avg_pool2d(as_reference_input(x), **kwargs, count_include_pad=count_include_pad)
                assert_close(got, expected, dtype, f"avg {kwargs} count_include_pad={count_include_pad}")


def test_pooling_a_large_plane_stays_under_the_cap():
    rng = np.random.default_rng(8)
    x = random_array(rng, (1, 1, 1500, 1200), np.float32)
    expected = ref.avg_pool2d(x[..., :40, :], 3, 2, 1)
    with workspace_limit(1 << 20):
        _workspace.release()
        out, peak = traced_peak(lambda: gpuconv.avg_pool2d(x, 3, 2, 1, backend="numpy"))
    assert_close(out[..., :20, :], expected[..., :20, :], np.float32, "avg pool under a 1 MiB cap")
    assert peak <= (1 << 20) + out.nbytes + (64 << 10), f"peak {peak} bytes"


def test_auto_falls_back_to_im2col_when_winograd_exceeds_the_cap():
    rng = np.random.default_rng(21)
    x, w = random_array(rng, (1, 256, 14, 14), np.float32), random_array(rng, (256, 256, 3, 3), np.float32)
    spec = conv_spec(x.shape, w.shape, 1, 1, 1, 1, "zeros")
    assert conv.choose(spec) == "winograd"
    with workspace_limit(1 << 20):  # transformed weights alone need 4 MiB
        with pytest.raises(MemoryError, match="winograd"):
            gpuconv.conv2d(x, w, padding=1, algorithm="winograd", backend="numpy")
        out = gpuconv.conv2d(x, w, padding=1, backend="numpy")
    assert_close(out, ref.conv2d(x, w, padding=1), np.float32, "auto under a 1 MiB cap")


def test_an_error_in_one_work_item_stops_the_others_and_reaches_the_caller(threads):
    """After one item raises, no thread starts another item: the error reaches the caller at
    once, not after the rest of the call's work."""
    started = []

    def item(i):
        started.append(i)
        if i == 0:
            raise RuntimeError("item 0 failed")
        time.sleep(0.002)

    with pytest.raises(RuntimeError, match="item 0 failed"):
        _threads.parallel_items(item, 200, threads)
    time.sleep(0.05)  # a worker still running would start more items meanwhile
    assert len(started) <= 2 * threads, f"{len(started)} of 200 items started after item 0 failed"


def test_calls_from_several_user_threads_at_once(monkeypatch):
    """Four user threads calling conv2d (every algorithm) and pooling at once, on shapes that
    split into several tiles: each gets its own reference result (workspaces, tile plans, the
    BLAS thread setting and the pool are shared), and the BLAS setting is restored afterwards."""
    monkeypatch.setattr(config, "num_threads", 2)
    monkeypatch.setattr(_tiles, "MIN_PARALLEL_BYTES", 0)
    rng = np.random.default_rng(123)
    jobs = []
    for algorithm, (x_shape, w_shape, kwargs) in [
            ("shifted", ((3, 8, 20, 18), (8, 1, 3, 3), dict(groups=8, padding=1))),
            ("winograd", ((2, 16, 18, 20), (16, 16, 3, 3), dict(padding=1))),
            ("im2col", ((2, 6, 19, 17), (5, 6, 5, 5), {})),
            ("im2col", ((2, 12, 9, 11), (7, 12, 1, 1), {})),
            ("direct", ((2, 4, 15, 13), (4, 2, 3, 3), dict(groups=2, stride=2, padding=1)))]:
        x, w = random_array(rng, x_shape, np.float32), random_array(rng, w_shape, np.float32)
        jobs.append((lambda x=x, w=w, a=algorithm, k=kwargs: gpuconv.conv2d(x, w, **k, algorithm=a, backend="numpy"),
                     ref.conv2d(x, w, **kwargs), algorithm))
    x = random_array(rng, (2, 5, 33, 31), np.float32)
    jobs.append((lambda x=x: gpuconv.max_pool2d(x, 3, 2, 1, backend="numpy"), ref.max_pool2d(x, 3, 2, 1)[0], "max"))
    jobs.append((lambda x=x: gpuconv.avg_pool2d(x, 3, 2, 1, backend="numpy"), ref.avg_pool2d(x, 3, 2, 1), "avg"))
    control = _blas._find_control()
    before = control[0]() if control else None
    failures = []

    def worker(seed):
        order = np.random.default_rng(seed).permutation(len(jobs) * 6) % len(jobs)
        for j in order:
            call, expected, name = jobs[j]
            try:
                out = call()
            except BaseException as exc:  # a thread's exception would otherwise only be printed
                failures.append(f"{name} raised {type(exc).__name__}: {exc}")
                continue
            atol = 1e-4 * np.abs(expected).max()
            if out.shape != expected.shape or not np.allclose(out, expected, rtol=1e-4, atol=atol):
                failures.append(name)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, f"wrong results under concurrent calls: {sorted(set(failures))}"
    assert (control[0]() if control else None) == before


def _extreme_inputs(case: str):
    """(x, w) of a 96-channel 3x3 layer ("auto" takes Winograd) whose input holds `case`."""
    rng = np.random.default_rng(13)
    if case == "huge finite":  # issue 13: within 4x of float32's max, the input transform overflowed
        x = np.zeros((1, 96, 16, 16), np.float32)
        x[0, :, 2, 2], x[0, :, 2, 4] = 2e38, -2e38
        return x, np.full((96, 96, 3, 3), 1e-4, np.float32)
    x = random_array(rng, (1, 96, 16, 16), np.float32)
    w = random_array(rng, (96, 96, 3, 3), np.float32)
    if case == "+inf":
        x[0, 5, 7, 9] = np.inf
    elif case == "+inf and -inf":
        x[0, 5, 7, 9], x[0, 80, 0, 15] = np.inf, -np.inf
    else:
        x[0, 3, 6, 7] = np.nan
    return x, w


@pytest.mark.parametrize("algorithm", ["auto", "winograd"])
@pytest.mark.parametrize("case", ["huge finite", "+inf", "+inf and -inf", "nan"])
def test_winograd_gives_the_definition_on_huge_and_non_finite_inputs(case, algorithm):
    """Issue 13: Winograd's transforms overflowed on finite inputs near the dtype's max (288
    inf/NaN where the definition is finite) and turned one +inf into NaN around it; the
    result must be the definition's, NaN and infinities where it has them and nowhere else."""
    x, w = _extreme_inputs(case)
    assert conv.choose(conv_spec(x.shape, w.shape, 1, 1, 1, 1, "zeros")) == "winograd"
    with np.errstate(all="ignore"):
        expected = ref.conv2d(x, w, padding=1)
    with poisoned_numpy_backend():
        out = gpuconv.conv2d(x, w, padding=1, algorithm=algorithm, backend="numpy")
    assert_close(out, expected, np.float32, f"{case}, algorithm={algorithm}")


@pytest.mark.parametrize("huge", [False, True], ids=["NaN-poisoned", "max-poisoned"])
@pytest.mark.parametrize("shape", [(2, 96, 16, 16), (1, 8, 40, 38)], ids=["batched matmul", "per-image matmuls"])
def test_winograd_keeps_finite_inputs_on_winograd(shape, huge, tiling, monkeypatch):
    """The overflow check must not fire on ordinary inputs, whatever stale values the
    workspace holds (else every call would quietly run im2col twice)."""
    def refuse(*args):
        raise AssertionError("winograd fell back to im2col on finite inputs")

    monkeypatch.setattr(winograd.im2col, "conv2d", refuse)
    rng = np.random.default_rng(14)
    x, w = random_array(rng, shape, np.float32), random_array(rng, (shape[1], shape[1], 3, 3), np.float32)
    with workspace_limit(1 << 20):
        _workspace.release()  # so that the call's workspace is freshly allocated, hence poisoned
    with poisoned_numpy_backend(huge=huge):
        out = gpuconv.conv2d(x, w, padding=1, algorithm="winograd", backend="numpy")
    assert_close(out, ref.conv2d(x, w, padding=1), np.float32, f"winograd x{shape}")


@pytest.mark.parametrize("algorithm", ["im2col", "direct"])
@pytest.mark.parametrize("width, stride", [(8000, 4000), (100000, 50000)])
def test_a_huge_stride_costs_what_the_output_needs(width, stride, algorithm):
    """Issue 13: a (1, 1, 4, 40000) input at column stride 20000 with padding took 10 s and kept
    10 GiB (a gather map per column phase, memoised). Only the phases a tap reads are gathered:
    the call's traced allocations beyond its (1, 1, 4, 2) output, and what it leaves held, stay
    small, and the plan caches of the NumPy backend stay within their byte bounds."""
    rng = np.random.default_rng(15)
    x, w = random_array(rng, (1, 1, 4, width), np.float32), random_array(rng, (1, 1, 3, 3), np.float32)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = gpuconv.conv2d(x, w, stride=(1, stride), padding=1, algorithm=algorithm, backend="numpy")
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_close(out, ref.conv2d(x, w, stride=(1, stride), padding=1), np.float32, f"stride {stride}")
    assert peak - before < 1 << 20, f"peak {(peak - before) >> 10} KiB for a {out.shape} output"
    assert held - before - out.nbytes < 256 << 10, f"{(held - before) >> 10} KiB held after the call"
    from gpuconv.backends.cpu import _plan_cache

    assert all(cache.nbytes <= cache.max_bytes for cache in _plan_cache.CACHES)


def test_plan_caches_are_bounded_in_bytes():
    from gpuconv.backends.cpu import _plan_cache

    memo = _plan_cache.PlanCache(1000, len)
    made = []
    for key in range(10):
        assert memo.get(key, lambda k=key: made.append(k) or "x" * 200) == "x" * 200
    assert memo.nbytes <= 1000 and len(made) == 10
    assert memo.get(9, lambda: made.append("again") or "y") == "x" * 200 and made[-1] == 9  # kept: no remake
    assert memo.get(0, lambda: "z" * 200) == "z" * 200  # evicted, least recently used first
    assert memo.get("big", lambda: "b" * 300) == "b" * 300 and memo.nbytes <= 1000  # > max/4: not kept
    assert memo.get("big", lambda: "c" * 300) == "c" * 300
    _plan_cache.CACHES.remove(memo)
