"""Every CUDA construct the emulator supports, in a small kernel (kernels/constructs.cu),
compared with NumPy in all three thread orders."""

from __future__ import annotations

import numpy as np
import pytest

from emu_support import kernel_path

pytestmark = pytest.mark.emulator

NAME_EXPRESSIONS = ("weighted_window<float, 3>", "weighted_window<double, 5>", "weighted_window<__half, 2>",
                    "template_shared_poisoned<double>", "template_shared_poisoned<int>")
BLOCK = 64


@pytest.fixture(scope="module")
def mod(emulator):
    return emulator.Module(path=kernel_path("constructs.cu"), options=("-std=c++17",),
                           name_expressions=NAME_EXPRESSIONS)


def test_indices_in_three_dimensions(mod, order):
    grid, block = (3, 2, 2), (4, 3, 2)
    threads = np.prod(grid) * np.prod(block)
    out = np.full(12 * threads, -1, np.int32)
    mod.get_function("indices")(grid, block, (out,))
    bz, by, bx, tz, ty, tx = np.meshgrid(*[np.arange(d) for d in (grid[2], grid[1], grid[0],
                                                                     block[2], block[1], block[0])], indexing="ij")
    expected = np.stack([tx, ty, tz, bx, by, bz] + [np.full_like(tx, d) for d in (*block, *grid)], axis=-1)
    np.testing.assert_array_equal(out.reshape(-1, 12), expected.reshape(-1, 12))


@pytest.mark.parametrize("expr,dtype,taps", [(NAME_EXPRESSIONS[0], np.float32, 3), (NAME_EXPRESSIONS[1], np.float64, 5),
                                             (NAME_EXPRESSIONS[2], np.float16, 2)])
def test_template_kernels_by_name_expression(mod, order, expr, dtype, taps, rng):
    n = 200
    x = rng.standard_normal(n).astype(dtype)
    y = np.full(n, np.nan, dtype)
    mod.get_function(expr)((n + BLOCK - 1) // BLOCK, BLOCK, (x, y, np.int32(n)))
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), taps)
    expected = windows @ np.arange(1, taps + 1)
    rtol = 1e-2 if dtype == np.float16 else 1e-6
    np.testing.assert_allclose(y[:n - taps + 1], expected, rtol=rtol, atol=rtol)
    assert np.isnan(y[n - taps + 1:]).all()   # threads past the end returned without writing


def test_static_and_dynamic_shared_memory(mod, order, rng):
    n = 3 * BLOCK - 10
    x = rng.standard_normal(n).astype(np.float32)
    y = np.full(n, np.nan, np.float32)
    mod.get_function("reverse_through_shared")(3, BLOCK, (x, y, np.int32(n)), shared_mem=BLOCK * 4)
    padded = np.concatenate([x, np.zeros(3 * BLOCK - n, np.float32)]).reshape(3, BLOCK)
    np.testing.assert_array_equal(y, (padded[:, ::-1] * 2).ravel()[:n])


def test_aliased_arguments_share_device_memory(mod, rng):
    """The same array passed as input and output is one allocation, as on a GPU: in place."""
    buf = rng.standard_normal(BLOCK).astype(np.float32)
    expected = buf[::-1] * 2
    mod.get_function("reverse_through_shared")(1, BLOCK, (buf, buf, np.int32(BLOCK)), shared_mem=BLOCK * 4)
    np.testing.assert_array_equal(buf, expected)


def test_shared_memory_is_poisoned_before_every_block(mod, order):
    blocks = 3
    f_static = np.zeros(blocks * BLOCK, np.float32)
    f_dynamic = np.zeros(blocks * BLOCK, np.float32)
    i_static = np.zeros(blocks * BLOCK, np.int32)
    d_static = np.zeros(blocks * BLOCK, np.float64)
    mod.get_function("shared_starts_poisoned")(blocks, BLOCK, (f_static, f_dynamic, i_static, d_static),
                                               shared_mem=BLOCK * 4)
    assert np.isnan(f_static).all() and np.isnan(f_dynamic).all() and np.isnan(d_static).all()
    assert (i_static == 0x7FFFFFFF).all()


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_template_and_namespace_shared_arrays_are_poisoned(mod, order, dtype):
    blocks = 3
    out = np.zeros(blocks * BLOCK, dtype)
    ns_out = np.zeros(blocks * BLOCK, np.float32)
    ns_static_out = np.zeros(blocks * BLOCK, np.int32)
    name = f"template_shared_poisoned<{'double' if dtype == np.float64 else 'int'}>"
    mod.get_function(name)(blocks, BLOCK, (out, ns_out, ns_static_out))
    assert (np.isnan(out) if dtype == np.float64 else out == 0x7FFFFFFF).all()
    assert np.isnan(ns_out).all() and (ns_static_out == 0x7FFFFFFF).all()


def test_barrier_votes(mod, order, rng):
    pred = rng.integers(0, 2, (4, BLOCK)).astype(np.int32)
    pred[1] = 1
    pred[2] = 0
    out = np.full(12, -1, np.int32)
    mod.get_function("block_votes")(4, BLOCK, (pred.ravel(), out))
    expected = np.stack([pred.sum(1), pred.all(1), pred.any(1)], axis=1).astype(np.int32)
    np.testing.assert_array_equal(out.reshape(4, 3), expected)


def test_warp_collectives(mod, order, rng):
    n = 2 * BLOCK
    x = rng.standard_normal(n).astype(np.float32)
    pred = rng.integers(0, 2, n).astype(np.int32)
    pred[32:64] = 1   # one warp all-true
    pred[64:96] = 0   # one warp all-false
    out = np.full((n, 11), np.nan, np.float32)
    votes = np.zeros((n, 3), np.uint32)
    mod.get_function("warp_ops")(2, BLOCK, (x, pred, out.ravel(), votes.ravel()))
    w = x.reshape(-1, 32)
    lane = np.arange(32)
    expected = np.empty((n // 32, 32, 11), np.float32)
    expected[..., 0] = w[:, [5]]
    expected[..., 1] = w[:, (lane & ~7) + ((lane + 3) & 7)]
    expected[..., 2] = w[:, np.where(lane >= 2, lane - 2, lane)]
    expected[..., 3] = w[:, np.where(lane % 16 + 4 < 16, lane + 4, lane)]
    expected[..., 4] = w[:, lane ^ 1]
    expected[..., 5] = w.astype(np.float64).sum(1, keepdims=True)
    expected[..., 6] = w[:, np.minimum(lane + 1, 31)]
    expected[..., 7] = w[:, 31 - lane] * 10
    expected[..., 8] = w[:, np.where(lane < 16, 0, 16)]
    expected[..., 9] = 32
    expected[..., 10] = w[:, np.where(lane ^ 12 < (lane & ~7) + 8, lane ^ 12, lane)]
    expected = expected.reshape(n, 11)
    others = np.arange(11) != 5
    np.testing.assert_allclose(out[:, others], expected[:, others], rtol=1e-5)
    # The butterfly sum rounds 5 times in float32: its error scales with sum(|x|), not with the sum
    # (which may be near 0), so rtol alone failed about 1 run in 150.
    np.testing.assert_allclose(out[:, 5], expected[:, 5], rtol=1e-5, atol=1e-6 * np.abs(w).sum(1).max())
    p = pred.reshape(-1, 32)
    ballot = (p.astype(np.uint64) << lane.astype(np.uint64)).sum(1).astype(np.uint32)
    np.testing.assert_array_equal(votes[:, 0], np.repeat(ballot, 32))
    np.testing.assert_array_equal(votes[:, 1], np.repeat(p.any(1), 32))
    np.testing.assert_array_equal(votes[:, 2], np.repeat(p.all(1), 32))


def test_atomics(mod, order, rng):
    n = 300
    x = rng.integers(-50, 1000, n).astype(np.int32)
    i_sum, u_sum = np.zeros(1, np.int32), np.zeros(1, np.uint32)
    ull_sum, f_sum, d_sum = np.zeros(1, np.uint64), np.zeros(1, np.float32), np.zeros(1, np.float64)
    i_max, i_min = np.full(1, -10**9, np.int32), np.full(1, 10**9, np.int32)
    cas_count, exch_last = np.zeros(1, np.int32), np.zeros(1, np.int32)
    args = (x, i_sum, u_sum, ull_sum, f_sum, d_sum, i_max, i_min, cas_count, exch_last, np.int32(n))
    mod.get_function("atomics")((n + BLOCK - 1) // BLOCK, BLOCK, args)
    assert i_sum[0] == x.sum()
    assert int(u_sum[0]) == int(x.astype(np.int64).sum()) % 2**32
    assert int(ull_sum[0]) == int(x.astype(np.int64).sum()) % 2**64
    assert f_sum[0] == 0.5 * n
    assert d_sum[0] == pytest.approx(x.sum() * 0.25)
    assert (i_max[0], i_min[0], cas_count[0], exch_last[0]) == (x.max(), x.min(), n, 7)


def test_math_functions(mod, order, rng):
    n = 100
    x = rng.uniform(-3, 3, n).astype(np.float32)
    out = np.full((n, 16), np.nan, np.float32)
    mod.get_function("math")(2, BLOCK, (x, out.ravel(), np.int32(n)))
    a = x.astype(np.float64)
    b = np.roll(a, -1)
    expected = np.stack([np.exp(a), np.log(np.abs(a) + 1), np.sqrt(np.abs(a)), 1 / np.sqrt(np.abs(a) + 1),
                         np.maximum(a, b), np.minimum(a, b), a * b + 1, np.maximum(a, b),
                         np.minimum(np.arange(n), 7), np.exp(a), np.clip(a, 0, 1), np.rint(x * np.float32(3)),
                         a, np.tanh(a), np.floor(x * np.float32(3)), a / 3], axis=1)
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-6)


def test_vector_and_half_types(mod, order, rng):
    n = 70
    x4 = rng.standard_normal((n, 4)).astype(np.float32)
    x2 = rng.standard_normal((n, 2)).astype(np.float32)
    h = rng.standard_normal(n).astype(np.float16)
    out = np.full(n, np.nan, np.float32)
    hout = np.full((n, 2), np.nan, np.float16)
    mod.get_function("vectors")(2, BLOCK, (x4, x2, h, out, hout, np.int32(n)))
    np.testing.assert_allclose(out, x4 @ np.float32([1, 2, 3, 4]) + x2[:, 0] * x2[:, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(hout[:, 0], h + np.float16(1.5))
    np.testing.assert_array_equal(hout[:, 1], (h.astype(np.float64) ** 2 + 0.25).astype(np.float16))  # one rounding


def _arrivals(mod, grid, block):
    counter = np.zeros(1, np.int32)
    order = np.full(grid * block, -1, np.int32)
    mod.get_function("arrival")(grid, block, (counter, order))
    return order


def test_thread_and_block_orders(emulator, mod):
    previous = emulator.get_order()
    try:
        emulator.set_order("forward")
        np.testing.assert_array_equal(_arrivals(mod, 3, 64), np.arange(192))
        emulator.set_order("reverse")
        np.testing.assert_array_equal(_arrivals(mod, 3, 64), np.arange(192)[::-1])
        emulator.set_order("random", seed=11)
        first, again = _arrivals(mod, 3, 64), _arrivals(mod, 3, 64)
        emulator.set_order("random", seed=12)
        other = _arrivals(mod, 3, 64)
        blocks = _arrivals(mod, 50, 1)
    finally:
        emulator.set_order(*previous)
    np.testing.assert_array_equal(first, again)              # a seed reproduces its order
    assert sorted(first) == list(range(192)) and not (first == np.arange(192)).all()
    assert not (first == other).all()                         # another seed, another order
    assert sorted(blocks) == list(range(50)) and not (blocks == np.arange(50)).all()   # blocks shuffled too
    with pytest.raises(ValueError, match="must be one of forward, reverse, random"):
        emulator.set_order("sideways")


def test_order_environment_variables_are_checked(emulator, monkeypatch):
    from gpuconv.emulator import _order

    monkeypatch.setattr(_order, "_override", None)
    monkeypatch.setenv("GPUCONV_EMU_ORDER", "reverse")
    monkeypatch.setenv("GPUCONV_EMU_SEED", "12")
    assert emulator.get_order() == ("reverse", 12)
    monkeypatch.setenv("GPUCONV_EMU_SEED", "twelve")
    with pytest.raises(ValueError, match=r"GPUCONV_EMU_SEED='twelve': must be an integer"):
        emulator.get_order()
    monkeypatch.setenv("GPUCONV_EMU_ORDER", "sideways")
    with pytest.raises(ValueError, match=r"GPUCONV_EMU_ORDER='sideways': must be one of forward, reverse, random"):
        emulator.get_order()
