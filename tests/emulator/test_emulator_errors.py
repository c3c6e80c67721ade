"""Misuse is an EmulatorError naming kernel, block and thread, never a hang or a crash, and the
next launch works; argument types are checked like the C parameters they bind to."""

from __future__ import annotations

import numpy as np
import pytest

from emu_support import kernel_path

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def mod(emulator):
    return emulator.Module(path=kernel_path("errors.cu"))


def _next_launch_works(mod):
    y = np.full(100, np.nan, np.float32)
    mod.get_function("fill")(4, 32, (y, np.float32(3.0), np.int32(100)))
    assert (y == 3.0).all()


def _negative_at_block_2_thread_7():
    ints = np.arange(96, dtype=np.int32)
    ints[2 * 32 + 7] = -1
    return ints, np.int32(96)


_MISUSE = {
    # kernel: (grid, block, arguments, expected message)
    "early_return_before_barrier": (2, 32, lambda: (np.zeros(32, np.float32),),
        r"kernel 'early_return_before_barrier', block \([01],0,0\), thread \(5,0,0\): exited while 31 other "
        r"thread\(s\) wait at __syncthreads \(.*errors.cu:7\): a barrier reached by only part of the block"),
    "different_barriers": (1, 32, lambda: (np.zeros(32, np.float32),),
        r"kernel 'different_barriers', block \(0,0,0\), thread \(\d+,0,0\): waits at __syncthreads "
        r"\(.*errors.cu:1[46]\) while thread \(\d+,0,0\) waits at __syncthreads \(.*errors.cu:1[46]\)"),
    "warp_sum_after_exit": (2, 64, lambda: (np.ones(100, np.float32), np.zeros(4, np.float32), np.int32(100)),
        r"kernel 'warp_sum_after_exit', block \(1,0,0\), thread \(\d+,0,0\): __shfl_down_sync at "
        r".*errors.cu:26: mask 0xffffffff names lane \d+, which has exited"),
    "shuffle_outside_mask": (1, 32, lambda: (np.zeros(32, np.float32),),
        r"kernel 'shuffle_outside_mask', block \(0,0,0\), thread \(\d+,0,0\): __shfl_sync at .*errors.cu:4\d: "
        r"reads lane 20, outside its mask 0x0000ffff"),
    "assert_in_kernel": (3, 32, _negative_at_block_2_thread_7,
        r"kernel 'assert_in_kernel', block \(2,0,0\), thread \(7,0,0\): assertion 'x\[i\] >= 0' failed at "
        r".*errors.cu"),
    "trap_in_kernel": (3, 32, _negative_at_block_2_thread_7,
        r"kernel 'trap_in_kernel', block \(2,0,0\), thread \(7,0,0\): __trap\(\) at .*errors.cu"),
}


@pytest.mark.parametrize("kernel", list(_MISUSE))
def test_misuse_is_reported_and_next_launch_works(emulator, mod, order, kernel):
    grid, block, make_args, message = _MISUSE[kernel]
    with pytest.raises(emulator.EmulatorError, match=message):
        mod.get_function(kernel)(grid, block, make_args())
    _next_launch_works(mod)


def test_correct_warp_sum_is_not_reported(mod, order, rng):
    x = rng.standard_normal(100).astype(np.float32)
    y = np.full(4, np.nan, np.float32)
    mod.get_function("warp_sum")(2, 64, (x, y, np.int32(100)))
    padded = np.concatenate([x, np.zeros(28, np.float32)]).astype(np.float64).reshape(4, 32)
    # A float32 sum of 32 terms in any order is within 32 * eps * sum|terms| of the exact sum; a
    # relative bound on the sum itself fails whenever the terms cancel to near zero.
    bound = 32 * np.finfo(np.float32).eps * np.abs(padded).sum(axis=1)
    assert np.all(np.abs(y - padded.sum(axis=1)) <= bound), (y, padded.sum(axis=1), bound)


def test_full_mask_shuffle_in_a_partial_warp_is_reported(emulator, mod):
    with pytest.raises(emulator.EmulatorError, match=r"names lane \d+, which does not exist in a block of 40 threads"):
        mod.get_function("warp_sum")(1, 40, (np.ones(40, np.float32), np.zeros(2, np.float32), np.int32(40)))
    _next_launch_works(mod)


@pytest.mark.parametrize("grid,block,shared,message", [
    (1, 1025, 0, r"blockDim.x = 1025 is outside 1..1024"),
    (1, (32, 33), 0, r"a block of 32x33x1 = 1056 threads exceeds the limit of 1024"),
    (1, (1, 1, 65), 0, r"blockDim.z = 65 is outside 1..64"),
    ((1, 65536), 32, 0, r"gridDim.y = 65536 is outside 1..65535"),
    (0, 32, 0, r"gridDim.x = 0 is outside"),
    (1, 32, 227 * 1024 + 4, r"exceed the largest GPU's limit of 232448 bytes"),
])
def test_launch_configuration_limits(emulator, mod, grid, block, shared, message):
    fn = mod.get_function("fill")
    fn.max_dynamic_shared_size_bytes = 300 * 1024
    with pytest.raises(emulator.EmulatorError, match=message):
        fn(grid, block, (np.zeros(4, np.float32), np.float32(1), np.int32(4)), shared_mem=shared)
    _next_launch_works(mod)


@pytest.mark.parametrize("grid,block", [(-1, 32), (1, (32, -2)), (2**64 + 1, 32), (1, (2**32, 1))])
def test_sizes_a_dim3_cannot_hold_are_value_errors(mod, grid, block):
    """Not wrapped around on the way to C (2**64 + 1 used to launch one block, -1 read 2**64 - 1)."""
    with pytest.raises(ValueError, match=r"(grid|block)=.*: each size must fit CUDA's dim3 \(0\.\.4294967295\)"):
        mod.get_function("fill")(grid, block, (np.zeros(4, np.float32), np.float32(1), np.int32(4)))
    _next_launch_works(mod)


def test_more_than_48k_dynamic_shared_memory_needs_the_opt_in(emulator, mod):
    fn = mod.get_function("fill")
    y = np.zeros(4, np.float32)
    with pytest.raises(emulator.EmulatorError, match="max_dynamic_shared_size_bytes"):
        fn(1, 32, (y, np.float32(1), np.int32(4)), shared_mem=48 * 1024 + 4)
    fn.max_dynamic_shared_size_bytes = 100 * 1024
    fn(1, 32, (y, np.float32(1), np.int32(4)), shared_mem=48 * 1024 + 4)
    assert (y == 1).all()


@pytest.mark.parametrize("bad,message", [
    (100, r"argument 2: parameter is int, pass np.int32\(...\), got int 100"),
    (np.int64(100), r"argument 2: parameter is int \(np.int32\), got int64 scalar"),
    (np.float32(100), r"argument 2: parameter is int \(np.int32\), got float32 scalar"),
])
def test_scalar_arguments_must_have_the_parameter_type(mod, bad, message):
    with pytest.raises(TypeError, match=message):
        mod.get_function("fill")(1, 32, (np.zeros(4, np.float32), np.float32(1), bad))


def test_array_arguments_are_checked(mod):
    fill = mod.get_function("fill")
    with pytest.raises(TypeError, match=r"argument 0: parameter is float\*, got an array of dtype float64"):
        fill(1, 32, (np.zeros(4), np.float32(1), np.int32(4)))
    with pytest.raises(TypeError, match="C-contiguous"):
        fill(1, 32, (np.zeros((4, 4), np.float32)[:, 0], np.float32(1), np.int32(4)))
    with pytest.raises(TypeError, match=r"argument 0: parameter is float\*, so pass a NumPy array"):
        fill(1, 32, (np.float32(0), np.float32(1), np.int32(4)))
    with pytest.raises(TypeError, match="takes 3 arguments, got 2"):
        fill(1, 32, (np.zeros(4, np.float32), np.float32(1)))


def test_none_is_a_null_pointer_as_in_cupy(emulator):
    mod = emulator.Module(
        code='extern "C" __global__ void is_null(const float* p, int* out) { out[0] = p == nullptr; }')
    out = np.full(1, 7, np.int32)
    mod.get_function("is_null")(1, 1, (None, out))
    assert out[0] == 1
    mod.get_function("is_null")(1, 1, (np.zeros(1, np.float32), out))
    assert out[0] == 0


def test_unknown_kernel_names_the_known_ones(emulator, mod):
    with pytest.raises(emulator.EmulatorError, match=r"no kernel 'nope'.*'fill'"):
        mod.get_function("nope")


def test_segmentation_fault_fails_the_launch_not_python(emulator, mod):
    y = np.zeros(32, np.float32)
    with pytest.raises(emulator.EmulatorError,
                       match=r"kernel 'wild_write', block \(0,0,0\), thread \(3,0,0\): segmentation fault at address"):
        mod.get_function("wild_write")(1, 32, (y, np.int64(1) << 44))
    _next_launch_works(mod)


def test_fiber_stack_overflow_fails_the_launch(emulator, mod):
    y = np.zeros(32, np.int32)
    with pytest.raises(emulator.EmulatorError, match=r"thread \(0,0,0\): stack overflow"):
        mod.get_function("stack_overflow")(1, 32, (y, np.int32(10000)))
    _next_launch_works(mod)
