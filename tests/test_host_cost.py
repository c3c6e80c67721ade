"""What the per-call host cost work (issue 9, section 3) must not change: memoised specs and plans
never let an invalid argument through nor serve a stale plan, validation runs on every call, the
caches are bounded, the null bias pointer and the zero-grid guard of the CUDA launcher, and the
window views (built without as_strided) on contiguous and strided inputs."""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _geometry, _kernels
from gpuconv import _reference as ref
from gpuconv._memo import BoundedCache, memoise, typed_key
from gpuconv.backends import BackendUnavailable, get_backend
from support import as_reference_input, assert_close, assert_same, random_array

X = np.ones((1, 2, 6, 6), np.float32)
W = np.ones((3, 2, 3, 3), np.float32)


def _emu():
    try:
        return get_backend("cuda-emu")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


def test_typed_keys_tell_apart_what_validates_differently():
    equal_but_different = [(1, True), (1, 1.0), (0.0, -0.0), ((1, 2), [1, 2]), (1, np.int64(1)),
                           (np.float32(2), 2.0), ((1, (2, 3)), (1, (2, True)))]
    for a, b in equal_but_different:
        assert typed_key((a,)) != typed_key((b,)), (a, b)
    assert typed_key(((8, 3), "same", None, [1, 2])) == typed_key(((8, 3), "same", None, [1, 2]))


def test_memoise_keeps_only_successful_results_of_plain_arguments_and_is_bounded():
    calls = []

    @memoise(maxsize=3)
    def square(value):
        calls.append(value)
        if value < 0:
            raise ValueError("negative")
        return value * value

    assert [square(2), square(2), square(3), square(value=3), square(value=3)] == [4, 4, 9, 9, 9]
    assert calls == [2, 3, 3], "keyword arguments are keyed too (apart from positional ones)"
    calls.clear()
    square(2)
    square(3)
    assert calls == []
    for _ in range(2):
        with pytest.raises(ValueError):
            square(-1)
    assert calls == [-1, -1], "a failing call is never stored"
    odd = type("Odd", (float,), {})(1.5)  # a type the key does not know: never cached
    assert square(odd) == square(odd) == 2.25 and calls[-2:] == [odd, odd]
    square(4)  # a fourth entry empties the cache (2, 3 and value=3 were stored)
    calls.clear()
    assert square(2) == 4 and calls == [2], "the cache empties at its size"
    cache = BoundedCache(2)
    for key in range(5):
        cache.put(key, key)
    assert len(cache) <= 2 and cache[4] == 4


@pytest.mark.parametrize("good, bad, argument", [
    (dict(stride=1), dict(stride=True), "stride"),
    (dict(padding=1), dict(padding=1.0), "padding"),
    (dict(dilation=(1, 1)), dict(dilation=(1, True)), "dilation"),
    (dict(groups=1), dict(groups=1.0), "groups"),
])
def test_a_cached_spec_never_lets_an_invalid_argument_through(good, bad, argument):
    """The second call of a signature that validated once is answered from the cache; an argument
    equal to a valid one (True == 1, 1.0 == 1) but invalid must still raise, every time."""
    gpuconv.conv2d(X, W, **good)
    gpuconv.conv2d(X, W, **good)
    for _ in range(2):
        with pytest.raises(ValueError, match=argument):
            gpuconv.conv2d(X, W, **bad)


def test_pool_and_pad_specs_keep_their_rules_under_the_cache():
    gpuconv.max_pool2d(X, 3, padding=1)
    with pytest.raises(ValueError, match="padding"):
        gpuconv.max_pool2d(X, 3, padding=2)
    with pytest.raises(TypeError, match="ceil_mode"):
        gpuconv.max_pool2d(X, 3, padding=1, ceil_mode=1)
    positive, negative = (gpuconv.pad2d(X, 1, value=v) for v in (0.0, -0.0))
    assert not np.signbit(positive[0, 0, 0, 0]) and np.signbit(negative[0, 0, 0, 0]), \
        "-0.0 and 0.0 are equal keys to a dict, but different fill values"


def test_the_spec_is_built_once_per_signature(monkeypatch):
    spec = _geometry.conv_spec(X.shape, W.shape, (1, 2), "same", 1, 1, "reflect")
    assert _geometry.conv_spec(X.shape, W.shape, (1, 2), "same", 1, 1, "reflect") is spec
    assert _geometry.conv_spec(X.shape, W.shape, [1, 2], "same", 1, 1, "reflect") is not spec
    assert _geometry.conv_spec(X.shape, W.shape, [1, 2], "same", 1, 1, "reflect") == spec


# ---- the CUDA launcher -------------------------------------------------------------------------------
def test_plans_follow_the_device_limit_and_the_settings_they_read(monkeypatch):
    """Memoised plans are keyed by the device's shared-memory limit, SM count and the planning settings
    (the GEMM planner's hooks among them): a change of either (tests make both) gives a new plan, never
    a stale one."""
    from gpuconv.backends import cuda, cuda_gemm

    backend = _emu()
    spec = _geometry.conv_spec((1, 2, 20, 20), (6, 2, 9, 9), 1, 1, 1, 1, "zeros")
    assert backend._plan(spec, "direct", np.float32).staged
    monkeypatch.setattr(cuda, "EMULATED_SHARED_BYTES", 1024)
    assert not backend._plan(spec, "direct", np.float32).staged
    gemm = _geometry.conv_spec((2, 3, 5, 13), (129, 3, 3, 3), 1, 1, 1, 1, "zeros")
    natural = backend._plan(gemm, "implicit_gemm", np.float32)
    other = "large" if natural.tiling != "large" else "small"
    monkeypatch.setattr(cuda_gemm, "FORCE_TILING", other)
    assert backend._plan(gemm, "implicit_gemm", np.float32).tiling == other
    monkeypatch.setattr(cuda_gemm, "FORCE_SPLITS", 2)
    assert backend._plan(gemm, "implicit_gemm", np.float32).splits == 2
    monkeypatch.setattr(cuda, "EMULATED_SM_COUNT", 1)  # the SM count is part of the key too
    monkeypatch.setattr(cuda_gemm, "FORCE_TILING", None)
    monkeypatch.setattr(cuda_gemm, "FORCE_SPLITS", None)
    assert backend._plan(gemm, "implicit_gemm", np.float32).splits == 1
    assert backend.choose_algorithm(spec) == "direct"
    monkeypatch.setattr(cuda, "IGEMM_MIN_REDUCTION", 1)
    monkeypatch.setattr(cuda, "IGEMM_MIN_FILTERS", 1)
    assert backend.choose_algorithm(spec) == "implicit_gemm"


def test_a_missing_bias_is_a_null_pointer(monkeypatch):
    """No zeros(1) buffer per call: the kernels get None (CuPy passes a null pointer) and read no bias."""
    _emu()
    seen = []
    real = _kernels.get_function

    def capture(file, name, device_kind):
        function = real(file, name, device_kind)

        def launch(grid, block, args, shared_mem=0):
            seen.append(args[2])  # (x, w, bias, y, ...) for both conv kernels
            return function(grid, block, args, shared_mem=shared_mem)
        return launch

    monkeypatch.setattr(_kernels, "get_function", capture)
    rng = np.random.default_rng(3)
    x, w = random_array(rng, (1, 2, 7, 9), np.float32), random_array(rng, (5, 2, 3, 3), np.float32)
    for algorithm in ("direct", "implicit_gemm"):
        out = gpuconv.conv2d(x, w, padding=1, algorithm=algorithm, backend="cuda-emu")
        assert_close(out, ref.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1), np.float32,
                     f"{algorithm} without bias")
    assert seen == [None, None]


def test_a_zero_grid_dimension_launches_nothing(monkeypatch):
    """CuPy raises a zero grid dimension to 1 and would run a block over nothing (GPU.md); the launcher
    never launches one."""
    from gpuconv.backends import cuda

    looked_up = []
    monkeypatch.setattr(_kernels, "get_function", lambda *key: looked_up.append(key))
    device = cuda._Device("emu")
    device.launch("pool.cu", "max_pool2d<float, int>", (0, 1, 1), (256, 1, 1), ())
    device.launch("pool.cu", "max_pool2d<float, int>", (4, 0, 1), (256, 1, 1), ())
    assert looked_up == []


# ---- NumPy backend ------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["contiguous", "fortran", "strided"])
@pytest.mark.parametrize("padding", [0, 1])
def test_window_views_on_every_input_layout(monkeypatch, layout, padding):
    """The tile windows are built directly on C-contiguous memory and through the array interface
    otherwise (a Fortran-order or strided input): both give the reference result."""
    from gpuconv.backends.cpu import _tap_windows

    rng = np.random.default_rng(4)
    x = random_array(rng, (2, 3, 22, 9), np.float32)
    x = {"contiguous": x, "fortran": np.asfortranarray(x), "strided": x[:, :, ::2]}[layout]
    w = random_array(rng, (4, 3, 5, 3), np.float32)
    built = []
    real = _tap_windows.window_view
    monkeypatch.setattr(_tap_windows, "window_view",
                        lambda a, *rest: (built.append(a.flags.c_contiguous), real(a, *rest))[1])
    out = gpuconv.conv2d(x, w, padding=padding, algorithm="im2col", backend="numpy")
    assert_close(out, ref.conv2d(as_reference_input(x), as_reference_input(w), padding=padding), np.float32,
                 f"{layout} input, padding {padding}")
    assert built, "the windows were not built through window_view"
    if padding == 0:
        assert built[0] == (layout == "contiguous"), "unpadded windows read the input itself"


def test_pooling_plans_follow_the_thread_count_and_the_workspace_cap():
    """The pooling plan is memoised per spec with the settings it depends on: another thread count or
    cap gives another plan, and every plan gives the reference result."""
    from gpuconv._config import config
    from gpuconv.backends.cpu import pool

    x = random_array(np.random.default_rng(6), (4, 8, 64, 64), np.float32)
    expected = ref.max_pool2d(x, 3, 2, 1)[0]
    spec = _geometry.pool_spec(x.shape, 3, 2, 1, 1, False)
    saved = (config.num_threads, config.workspace_bytes)
    plans = []
    try:
        for threads, cap in ((1, 256 << 20), (2, 256 << 20), (2, 1 << 20)):
            config.num_threads, config.workspace_bytes = threads, cap
            assert_same(gpuconv.max_pool2d(x, 3, 2, 1, backend="numpy"), expected, np.float32, f"{threads} {cap}")
            plans.append(pool._separable_plan(spec, np.dtype(np.float32), False))
    finally:
        config.num_threads, config.workspace_bytes = saved
    assert len(plans[2].items) > len(plans[1].items), "a lower cap must give smaller work items"


def test_release_drops_the_buffers_over_the_keep_size_also_after_the_cap_is_lowered():
    """release() costs nothing while no held buffer can exceed the keep size, and still drops every
    buffer over it: a large one at once, and one kept under the default cap once the cap is lowered."""
    from gpuconv._config import config
    from gpuconv.backends.cpu import _workspace

    def held(slot):
        buffer = _workspace._local.__dict__.get(slot)
        return 0 if buffer is None else buffer.nbytes

    (small,) = _workspace.arrays(((1 << 20,), np.float32), slot="test-kept")  # 4 MiB: under KEEP_BYTES
    (large,) = _workspace.arrays(((6 << 20,), np.float32), slot="test-large")  # 24 MiB
    assert small.nbytes == 4 << 20 and held("test-kept") >= 4 << 20 and held("test-large") >= 24 << 20
    _workspace.release()
    assert held("test-large") == 0 and held("test-kept") >= 4 << 20
    saved = config.workspace_bytes
    try:
        config.workspace_bytes = 4 << 20  # keep size 2 MiB
        _workspace.release()
        assert held("test-kept") == 0
    finally:
        config.workspace_bytes = saved
    tiny = _workspace.arrays(((4, 4), np.float64), ((3,), np.int64), slot="test-small")
    assert [a.shape for a in tiny] == [(4, 4), (3,)] and held("test-small") == 0, "small scratch is not held"


@pytest.mark.parametrize("size", [16, 262])  # output planes of 8x8 and 131x131 (> MAX_DIVISOR_PLANE values)
def test_avg_pool_divisors_whole_plane_or_factors(size):
    from gpuconv.backends.cpu import pool

    assert (size // 2) ** 2 > pool.MAX_DIVISOR_PLANE or size == 16
    x = random_array(np.random.default_rng(size), (1, 2, size, size), np.float32)
    for count_include_pad in (True, False):
        out = gpuconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=count_include_pad, backend="numpy")
        expected = ref.avg_pool2d(x.astype(np.float64), 3, 2, 1, True, count_include_pad)
        assert_close(out, expected, np.float32, f"avg_pool2d {size}x{size}, count_include_pad={count_include_pad}")


def test_specs_keep_their_hash_but_never_pickle_it():
    import copy
    import dataclasses
    import pickle

    spec = _geometry.conv_spec((1, 2, 5, 5), (3, 2, 3, 3), 1, "same", 1, 1, "zeros")
    assert hash(spec) == hash(dataclasses.replace(spec)) and "_hash" in spec.__dict__
    for clone in (pickle.loads(pickle.dumps(spec)), copy.deepcopy(spec)):
        assert clone == spec and hash(clone) == hash(spec)
    assert "_hash" not in pickle.loads(pickle.dumps(spec)).__dict__, "a hash of strings is per process"
    other = dataclasses.replace(spec, n=2)
    assert other != spec and hash(other) != hash(spec)
    assert "_hash" not in dataclasses.asdict(spec) and "_hash" not in repr(spec)
