"""The CUDA gradient kernels and split-K in the emulator ("cuda-emu"), through the backend methods.

Data gradient (conv2d_grad_input, and the direct kernel on the transposed convolution), weight
gradient (conv2d_grad_weight and conv2d_grad_weight_direct), the split-K reduction (splitk_reduce)
of all three GEMMs, pooling and padding gradients: tile edges of every tiling, strides, dilations,
asymmetric pads and groups, 64-bit indices, split-K on and off, the scratch cap, the three thread
orders. Every result is compared with the float64 reference (gpuconv/_reference.py), outputs (and
the split-K scratch) NaN-poisoned before the call. The planner's choices (tiling, splits from the
SM count) are checked without running.
"""
from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _reference as ref
from gpuconv._geometry import conv_spec, pad_spec, pool_spec
from gpuconv.backends import cuda_gemm
from support import DTYPES, as_reference_input, assert_close, assert_same, poisoned_numpy_backend, random_array

pytestmark = pytest.mark.emulator

ORDERS = ("forward", "reverse", "random")


@pytest.fixture
def force(monkeypatch):
    """force(tiling=..., splits=..., index64=...): the planner's and launcher's test hooks."""
    from gpuconv.backends import cuda

    def apply(tiling=None, splits=None, index64=False):
        monkeypatch.setattr(cuda_gemm, "FORCE_TILING", tiling)
        monkeypatch.setattr(cuda_gemm, "FORCE_SPLITS", splits)
        monkeypatch.setattr(cuda, "FORCE_INDEX64", index64)
    return apply


def conv_case(x_shape, w_shape, dtype, seed, integers=False, **conv):
    """x, w, grad_out and the forward spec; integers: small integer values (exact sums)."""
    conv = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **conv}
    spec = conv_spec(x_shape, w_shape, conv["stride"], conv["padding"], conv["dilation"], conv["groups"], "zeros")
    rng = np.random.default_rng(seed)
    draw = (lambda shape: rng.integers(-3, 4, shape).astype(dtype)) if integers else \
        (lambda shape: random_array(rng, shape, dtype))
    return draw(x_shape), draw(w_shape), draw(spec.out_shape), spec, conv


def input_grad(emu, x_shape, w_shape, dtype=np.float32, algorithm="implicit_gemm", seed=0, **conv):
    """(cuda-emu conv2d_input, float64 reference)."""
    _, w, dy, spec, conv = conv_case(x_shape, w_shape, dtype, seed, **conv)
    with poisoned_numpy_backend():
        dx = emu.conv2d_input(dy, w, spec, algorithm)
    return dx, ref.conv2d_input(x_shape, as_reference_input(w), as_reference_input(dy), **conv)


def weight_grad(emu, x_shape, w_shape, dtype=np.float32, algorithm="implicit_gemm", seed=0, **conv):
    """(cuda-emu conv2d_weight, float64 reference)."""
    x, _, dy, spec, conv = conv_case(x_shape, w_shape, dtype, seed, **conv)
    with poisoned_numpy_backend():
        dw = emu.conv2d_weight(x, dy, spec, algorithm)
    return dw, ref.conv2d_weight(as_reference_input(x), w_shape, as_reference_input(dy), **conv)


def check_input(emu, x_shape, w_shape, dtype=np.float32, algorithm="implicit_gemm", seed=0, **conv):
    dx, expected = input_grad(emu, x_shape, w_shape, dtype, algorithm, seed, **conv)
    assert_close(dx, expected, dtype,
                 f"cuda-emu conv2d_input[{algorithm}] x={x_shape} w={w_shape} {conv} (seed {seed})")


def check_weight(emu, x_shape, w_shape, dtype=np.float32, algorithm="implicit_gemm", seed=0, **conv):
    dw, expected = weight_grad(emu, x_shape, w_shape, dtype, algorithm, seed, **conv)
    assert_close(dw, expected, dtype,
                 f"cuda-emu conv2d_weight[{algorithm}] x={x_shape} w={w_shape} {conv} (seed {seed})")


# Geometry every gradient must handle: stride > 1 with dilation (the phase test of the data
# gradient), stride > kernel (input rows no tap reaches), asymmetric pads, pads beyond the kernel's
# reach, "same" with stride 2, groups, depthwise, 1x1.
CONV_CASES = [
    dict(x=(2, 4, 9, 10), w=(6, 2, 3, 3), stride=2, padding=((2, 1), (0, 1)), dilation=(1, 2), groups=2),
    dict(x=(1, 3, 11, 13), w=(2, 3, 2, 2), stride=3),
    dict(x=(1, 2, 7, 12), w=(3, 2, 5, 4), stride=(2, 3), padding="same", dilation=(2, 1)),
    dict(x=(2, 3, 6, 5), w=(4, 3, 3, 3), padding=((4, 0), (1, 3))),
    dict(x=(2, 5, 8, 7), w=(5, 1, 3, 3), groups=5, padding=1),
    dict(x=(1, 6, 9, 9), w=(9, 2, 3, 3), groups=3, dilation=2, padding=2, stride=2),
    dict(x=(2, 3, 10, 9), w=(4, 3, 1, 1)),
]


def _split(case):
    case = dict(case)
    return case.pop("x"), case.pop("w"), case


# ---- data gradient -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CONV_CASES)
def test_input_gradient_geometry(emu, case):
    x_shape, w_shape, conv = _split(case)
    check_input(emu, x_shape, w_shape, **conv)
    if conv.get("stride", 1) == 1:
        check_input(emu, x_shape, w_shape, algorithm="direct", **conv)


@pytest.mark.parametrize("dtype", DTYPES)
def test_input_gradient_dtypes(emu, dtype):
    for algorithm in ("implicit_gemm", "direct"):
        check_input(emu, (2, 4, 7, 8), (6, 2, 3, 3), dtype, algorithm, groups=2, padding=(2, 1), dilation=(2, 1))
    check_input(emu, (2, 4, 7, 8), (6, 4, 3, 2), dtype, stride=2, padding=1)


@pytest.mark.parametrize("tiling, channels", [("small", 65), ("wide", 65), ("large", 129)])
def test_input_gradient_tile_edges(emu, force, tiling, channels):
    """M = C/groups one past the tile (BM + 1), N = n*h*w = 130 past two 64-wide or one 128-wide
    tiles, K = F*taps = 18 crossing BK = 8."""
    force(tiling=tiling)
    check_input(emu, (2, channels, 5, 13), (2, channels, 3, 3), padding=1, stride=(1, 2))


@pytest.mark.parametrize("w_shape, groups", [((6, 4, 3, 2), 2), ((3, 1, 2, 3), 3)])  # batches of 4 filters; of 1
def test_direct_input_gradient_from_global_memory(emu, monkeypatch, w_shape, groups):
    """The direct data gradient reads w flipped and transposed in place: also on the kernel's
    global-memory path (no shared memory for the staged tile), with taps that are not square."""
    from gpuconv.backends import cuda
    from gpuconv.backends.cuda_grad import transposed_spec

    monkeypatch.setattr(cuda._Device, "max_shared_bytes", lambda self: 0)
    x_shape = (2, w_shape[1] * groups, 7, 6)
    spec = conv_spec(x_shape, w_shape, 1, ((1, 0), (2, 1)), 1, groups, "zeros")
    assert not emu._plan(transposed_spec(spec), "direct", np.float32).staged
    check_input(emu, x_shape, w_shape, algorithm="direct", groups=groups, padding=((1, 0), (2, 1)))


# ---- weight gradient -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CONV_CASES)
def test_weight_gradient_geometry(emu, case):
    x_shape, w_shape, conv = _split(case)
    for algorithm in ("implicit_gemm", "direct"):
        check_weight(emu, x_shape, w_shape, algorithm=algorithm, **conv)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_gradient_dtypes(emu, dtype):
    for algorithm in ("implicit_gemm", "direct"):
        check_weight(emu, (2, 4, 7, 8), (6, 2, 3, 3), dtype, algorithm, groups=2, padding=(2, 1), dilation=(2, 1),
                     stride=2)


@pytest.mark.parametrize("algorithm", ["implicit_gemm", "direct"])
def test_weight_gradient_of_an_empty_batch_is_zero(emu, algorithm):
    """K = n*oh*ow = 0: one split whose k loop reads nothing and writes zeros (output poisoned first)."""
    spec = conv_spec((0, 4, 6, 5), (6, 2, 3, 3), 1, 1, 1, 2, "zeros")
    with poisoned_numpy_backend():
        dw = emu.conv2d_weight(np.ones((0, 4, 6, 5), np.float32), np.ones(spec.out_shape, np.float32), spec, algorithm)
    assert_same(dw, np.zeros((6, 2, 3, 3), np.float32), np.float32, f"empty batch, {algorithm}")


@pytest.mark.parametrize("kernel", [(5, 5), (7, 3), (1, 10)])
def test_direct_weight_gradient_in_several_tap_passes(emu, kernel):
    """More taps than WDIRECT_TAPS = 9 accumulators: 25, 21 and 10 taps take 3, 3 and 2 passes."""
    check_weight(emu, (2, 3, 12, 13), (4, 3, *kernel), algorithm="direct", padding=(2, 3), groups=1)


def test_auto_takes_the_direct_weight_gradient_where_a_gemm_tile_would_be_empty(emu):
    depthwise = conv_spec((8, 64, 56, 56), (64, 1, 3, 3), 1, 1, 1, 64, "zeros")
    dense = conv_spec((8, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1, 1, "zeros")
    assert emu.choose_grad_algorithms(depthwise) == ("direct", "direct")
    assert emu.choose_grad_algorithms(dense) == ("implicit_gemm", "implicit_gemm")
    assert emu.choose_grad_algorithms(conv_spec((8, 256, 14, 14), (256, 256, 3, 3), 2, 1, 1, 1, "zeros"))[0] \
        == "implicit_gemm"  # the direct data gradient needs stride 1


@pytest.mark.parametrize("tiling, filters, channels", [("small", 65, 8), ("large", 129, 15)])
def test_weight_gradient_tile_edges(emu, force, tiling, filters, channels):
    """M = F one past the tile, N = C*9 = 72 / 135 past 64 / 128, K = n*oh*ow = 2*5*7 = 70 crossing
    BK = 16 with partial images."""
    force(tiling=tiling)
    check_weight(emu, (2, channels, 5, 7), (filters, channels, 3, 3), padding=1)


# ---- split-K -------------------------------------------------------------------------------------
def _three_gemms(emu, dtype, integers, seed=0):
    """The forward, data-gradient and weight-gradient GEMMs of one convolution with bias, K long
    enough for 9 / 11 / 4 k steps, and the direct weight gradient (60 pixels per (filter, channel)
    pair); returns {name: (result, float64 reference)}."""
    x, w, dy, spec, conv = conv_case((2, 8, 6, 5), (9, 8, 3, 3), dtype, seed, integers, padding=1)
    b = (np.arange(9) % 5 - 2).astype(dtype)
    with poisoned_numpy_backend():
        y = emu.conv2d(x, w, b, spec, "implicit_gemm")
        dx = emu.conv2d_input(dy, w, spec, "implicit_gemm")
        dw = emu.conv2d_weight(x, dy, spec, "implicit_gemm")
        dw_direct = emu.conv2d_weight(x, dy, spec, "direct")
    rx, rw, rdy = map(as_reference_input, (x, w, dy))
    rdw = ref.conv2d_weight(rx, w.shape, rdy, padding=1)
    return {"forward": (y, ref.conv2d(rx, rw, as_reference_input(b), padding=1)),
            "input": (dx, ref.conv2d_input(x.shape, rw, rdy, padding=1)), "weight": (dw, rdw),
            "direct weight": (dw_direct, rdw)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_split_k_matches_the_reference(emu, force, dtype):
    for splits in (2, 3, 8):
        force(splits=splits)
        for name, (got, expected) in _three_gemms(emu, dtype, integers=False).items():
            assert_close(got, expected, dtype, f"{name} GEMM with {splits} splits")


def test_every_split_count_sums_every_k_once(emu, force):
    """Integer data: every sum is exact, so any split count must give exactly the reference: a k
    step that a split skips or that two splits both count changes the bits."""
    for splits in (1, 2, 3, 4, 5, 9):
        force(splits=splits)
        for name, (got, expected) in _three_gemms(emu, np.float32, integers=True).items():
            assert_same(got, expected.astype(np.float32), np.float32, f"{name} GEMM with {splits} splits")


def test_split_counts_follow_the_request_and_the_k_steps(emu):
    from gpuconv.backends import cuda

    small = cuda_gemm.plan_gemm("weight", 1, 9, 72, 60, "float", "int", 132, 1 << 30, None, 3)
    assert (small.splits, small.k_split) == (2, 32)  # 4 k steps of 16: 2 + 2, never an empty split
    plan = cuda_gemm.plan_gemm("forward", 1, 9, 60, 72, "float", "int", cuda.EMULATED_SM_COUNT, 1 << 30, None, 9)
    assert (plan.splits, plan.k_split, plan.grid[2]) == (9, 8, 9)


def test_scratch_cap_lowers_the_splits(emu, force, monkeypatch):
    """A cap below two splits' partial sums: one split, no scratch; a cap of three: at most three
    (4 k steps in 3 splits: 2 of 2 steps)."""
    from gpuconv._config import config

    out_bytes = 9 * 8 * 9 * 4  # the weight gradient's partial sums, per split
    assert cuda_gemm.plan_gemm("weight", 1, 9, 72, 60, "float", "int", 132, 2 * out_bytes - 1, None, 8).splits == 1
    assert cuda_gemm.plan_gemm("weight", 1, 9, 72, 60, "float", "int", 132, 1 << 30, None, 8).splits == 4
    force(splits=8)
    monkeypatch.setattr(config, "workspace_bytes", 3 * out_bytes)
    plan = cuda_gemm.plan("weight", 1, 9, 72, 60, "float", "int", 132)
    assert plan.splits == 2 and plan.scratch_elements * 4 <= config.workspace_bytes
    got, expected = _three_gemms(emu, np.float32, integers=False)["weight"]
    assert_close(got, expected, np.float32, "weight gradient under a scratch cap")


def test_direct_weight_gradient_splits(emu):
    """One block per (filter, channel) pair: layer H (64 pairs of 25,088 pixels) splits until every SM
    has a block; a single pair (layer F) splits the most; a small reduction is not worth a second launch;
    the cap lowers the splits; forced counts land on whole pixel ranges."""
    depthwise = cuda_gemm.plan_weight_direct(64, 9, 8 * 56 * 56, "float", 132, 256 << 20)
    assert depthwise.grid[:2] == (64, 1) and depthwise.splits > 1 and 64 * depthwise.splits >= 132
    assert cuda_gemm.plan_weight_direct(1, 9, 510 * 510, "float", 132, 256 << 20).splits >= 132
    assert cuda_gemm.plan_weight_direct(16, 9, 4096, "float", 132, 256 << 20).splits == 1
    assert cuda_gemm.plan_weight_direct(64, 9, 8 * 56 * 56, "float", 132, 2 * 64 * 9 * 4).splits == 2
    forced = cuda_gemm.plan_weight_direct(9 * 8, 9, 60, "float", 132, 256 << 20, 8)
    assert (forced.splits, forced.k_split, forced.scratch_elements) == (8, 8, 8 * 72 * 9)


def test_emulator_plans_split_k_by_itself_for_a_long_reduction(emu, force):
    """No hooks: the emulated device has an H200's 132 SMs, one 64x64 tile of weight gradient and
    64 k steps leave it almost idle, so the planner splits K."""
    from gpuconv.backends import cuda

    force()
    assert emu.device.sm_count() == cuda.EMULATED_SM_COUNT == 132
    assert cuda_gemm.plan("weight", 1, 4, 18, 1024, "float", "int", 132).splits > 1
    check_weight(emu, (1, 2, 32, 32), (4, 2, 3, 3), padding=1)


# ---- planning from the SM count (no kernel runs) -----------------------------------------------
def _layer_plan(kind, n, c, hw, f, sm_count=132, ctype="float"):
    """Plan of a 3x3, pad-1 layer's `kind` GEMM."""
    m, gemm_n, k = {"forward": (f, n * hw * hw, c * 9), "input": (c, n * hw * hw, f * 9),
                    "weight": (f, c * 9, n * hw * hw)}[kind]
    return cuda_gemm.plan_gemm(kind, 1, m, gemm_n, k, ctype, "int", sm_count, 256 << 20)


@pytest.mark.parametrize("kind", ["forward", "input", "weight"])
def test_small_batch_layers_keep_the_sms_busy(kind):
    """Layers D, C, B at batch 8 (issue 9: 100, 196, 196 blocks of 64x64 / 64x128 tiles, 288 / 144 / 72
    serial k steps): each GEMM gets blocks (tiles x splits) for at least 80% of 132 SMs (the model
    may leave a few idle for larger tiles), and D's forward no more than a quarter of its k steps per block."""
    for n, c, hw in ((8, 256, 14), (8, 128, 28), (8, 64, 56)):
        plan = _layer_plan(kind, n, c, hw, c)
        assert plan.grid[0] * plan.grid[1] * plan.splits >= 0.8 * 132, (n, c, hw, plan)
    assert _layer_plan("forward", 8, 256, 14, 256).k_split <= 256 * 9 // 4


def test_split_k_only_where_the_tiles_leave_sms_idle():
    assert _layer_plan("forward", 8, 256, 14, 256).splits > 1
    assert _layer_plan("forward", 128, 256, 14, 256).splits == 1  # 392 128x128 tiles: 3 waves
    assert _layer_plan("forward", 128, 64, 56, 64).splits == 1
    # The same layer on a device with more SMs gets at least as many blocks.
    small, big = _layer_plan("forward", 8, 256, 14, 256, 40), _layer_plan("forward", 8, 256, 14, 256, 264)
    assert big.grid[0] * big.grid[1] * big.splits >= small.grid[0] * small.grid[1] * small.splits


def test_float64_plans_only_the_small_tiling():
    assert {_layer_plan(kind, 8, 128, 28, 128, ctype="double").tiling for kind in ("forward", "input", "weight")} \
        == {"small"}


# ---- 64-bit indices ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_gradients_with_64bit_indices(emu, force, dtype):
    force(splits=2, index64=True)
    check_input(emu, (2, 4, 9, 10), (6, 2, 3, 3), dtype, stride=2, padding=((2, 1), (0, 1)), dilation=(1, 2), groups=2)
    check_input(emu, (2, 4, 9, 10), (6, 2, 3, 3), dtype, "direct", padding=1, groups=2)
    for algorithm in ("implicit_gemm", "direct"):
        check_weight(emu, (2, 4, 9, 10), (6, 2, 3, 3), dtype, algorithm, stride=2, padding=((2, 1), (0, 1)),
                     dilation=(1, 2), groups=2)
    got, expected = _three_gemms(emu, dtype, integers=False)["forward"]
    assert_close(got, expected, dtype, "forward GEMM, 2 splits, 64-bit indices")


def test_pool_and_pad_gradients_with_64bit_indices(emu, force):
    force(index64=True)
    check_max_pool(emu, np.float32, 3, 2, 1, dilation=2, ceil_mode=True)
    check_avg_pool(emu, np.float32, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    check_pad(emu, np.float32, ((2, 1), (0, 3)), "circular")


# ---- pooling -----------------------------------------------------------------------------------
def pool_input(dtype, seed, shape):
    """Random data with NaN and -inf (NaN wins a window; an all -inf window keeps its first tap)."""
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape, dtype)
    x[rng.random(shape) < 0.1] = np.nan
    x[rng.random(shape) < 0.1] = -np.inf
    return x


def check_max_pool(emu, dtype, kernel_size, stride, padding, dilation=1, ceil_mode=False, seed=1,
                   shape=(2, 3, 11, 13)):
    x = pool_input(dtype, seed, shape)
    spec = pool_spec(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    dy = random_array(np.random.default_rng(seed + 1), spec.out_shape, dtype)
    expected = ref.max_pool2d_input(as_reference_input(dy), as_reference_input(x), kernel_size, stride, padding,
                                    dilation, ceil_mode)
    _, indices = ref.max_pool2d(as_reference_input(x), kernel_size, stride, padding, dilation, ceil_mode)
    what = f"max_pool2d_input k={kernel_size} s={stride} p={padding} d={dilation} ceil={ceil_mode}"
    with poisoned_numpy_backend():
        recomputed = emu.max_pool2d_input(dy, x, None, spec)
        given = emu.max_pool2d_input(dy, x, indices, spec)
    assert_close(recomputed, expected, dtype, what + " (indices recomputed)")
    assert_same(given, recomputed, dtype, what + " (the forward's indices)")


def check_avg_pool(emu, dtype, kernel_size, stride, padding, ceil_mode=False, count_include_pad=True,
                   divisor_override=None, seed=2, shape=(2, 3, 11, 13)):
    spec = pool_spec(shape, kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override)
    dy = random_array(np.random.default_rng(seed), spec.out_shape, dtype)
    expected = ref.avg_pool2d_input(as_reference_input(dy), shape, kernel_size, stride, padding, ceil_mode,
                                    count_include_pad, divisor_override)
    with poisoned_numpy_backend():
        dx = emu.avg_pool2d_input(dy, spec)
    assert_close(dx, expected, dtype, f"avg_pool2d_input k={kernel_size} s={stride} p={padding} ceil={ceil_mode} "
                                      f"include_pad={count_include_pad} divisor={divisor_override}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", [
    (3, 2, 1, 1, False), (3, 2, 1, 1, True), ((2, 3), (3, 1), (1, 1), 1, True), (3, 1, 1, (2, 3), False),
    (2, None, 0, 1, True), ((3, 1), 4, (1, 0), 3, True), (5, 1, 2, 1, False),
])
def test_max_pool_gradient(emu, dtype, params):
    check_max_pool(emu, dtype, *params)


def test_max_pool_gradient_window_entirely_in_padding(emu):
    """Kernel width 2, dilation 3, left pad 1 on a 2-wide input: the only window taps columns -1 and
    2, none inside; its gradient goes nowhere."""
    check_max_pool(emu, np.float32, (1, 2), 2, (0, 1), dilation=(1, 3), shape=(1, 2, 3, 2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", [
    (3, 2, 1, False, True, None), (3, 2, 1, True, False, None), ((2, 4), (1, 3), (1, 2), True, True, None),
    (3, 2, 1, True, True, 5), (2, None, 0, False, False, None), (5, 3, 2, True, False, None), (4, 1, 2, False, True, 3),
])
def test_avg_pool_gradient(emu, dtype, params):
    check_avg_pool(emu, dtype, *params)


# ---- padding -----------------------------------------------------------------------------------
def check_pad(emu, dtype, padding, mode, shape=(2, 3, 5, 6), seed=3):
    spec = pad_spec(shape, padding, mode, 0.0)
    dy = random_array(np.random.default_rng(seed), spec.out_shape, dtype)
    expected = ref.pad2d_input(as_reference_input(dy), padding, mode)
    with poisoned_numpy_backend():
        dx = emu.pad2d_input(dy, spec)
    assert_close(dx, expected, dtype, f"pad2d_input {padding} {mode} on {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_gradient_modes(emu, dtype, mode):
    check_pad(emu, dtype, ((4, 1), (2, 5)), mode)


@pytest.mark.parametrize("shape, padding, mode", [
    ((1, 2, 5, 6), ((4, 4), (5, 5)), "reflect"),     # pads of size - 1: every input element folds twice
    ((1, 2, 5, 6), ((5, 5), (6, 6)), "circular"),    # pads of the whole size
    ((1, 2, 1, 3), ((3, 2), (0, 4)), "replicate"),   # one row takes both pads
    ((2, 1, 4, 4), 0, "reflect"),
])
def test_pad_gradient_extremes(emu, shape, padding, mode):
    check_pad(emu, np.float32, padding, mode, shape)


# ---- thread orders: the same bits in every order -----------------------------------------------
def test_gradients_are_bit_identical_in_every_thread_order(emu, force):
    from gpuconv import emulator

    force(splits=3)
    x, w, dy, spec, _ = conv_case((2, 6, 9, 17), (4, 3, 3, 3), np.float32, 5, padding=1, groups=2)
    x5, _, dy5, spec5, _ = conv_case((2, 3, 9, 11), (4, 3, 5, 5), np.float32, 6, padding=2)  # 3 tap passes
    px = pool_input(np.float32, 6, (2, 3, 11, 13))
    pspec = pool_spec(px.shape, 3, 2, 1, 1, True, False)
    pdy = random_array(np.random.default_rng(7), pspec.out_shape, np.float32)
    dspec = pad_spec(px.shape, ((2, 1), (3, 2)), "reflect", 0.0)
    ddy = random_array(np.random.default_rng(8), dspec.out_shape, np.float32)
    results = {}
    try:
        for order in ORDERS:
            emulator.set_order(order, seed=11)
            results[order] = [emu.conv2d_input(dy, w, spec, "implicit_gemm"), emu.conv2d_input(dy, w, spec, "direct"),
                              emu.conv2d_weight(x, dy, spec, "implicit_gemm"), emu.conv2d_weight(x, dy, spec, "direct"),
                              emu.conv2d_weight(x5, dy5, spec5, "direct"),
                              emu.max_pool2d_input(pdy, px, None, pspec), emu.avg_pool2d_input(pdy, pspec),
                              emu.pad2d_input(ddy, dspec)]
    finally:
        emulator.set_order("forward")
    for order in ORDERS[1:]:
        for i, (a, b) in enumerate(zip(results["forward"], results[order])):
            assert_same(b, a, np.float32, f"result {i} in thread order {order!r} differs from 'forward'")


# ---- errors ------------------------------------------------------------------------------------
def test_gradient_errors_name_the_argument(emu):
    spec = conv_spec((1, 2, 6, 6), (3, 2, 3, 3), 2, 1, 1, 1, "zeros")
    dy, w = np.ones(spec.out_shape, np.float32), np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="algorithm='winograd'"):
        emu.conv2d_input(dy, w, spec, "winograd")
    with pytest.raises(ValueError, match="algorithm='winograd'"):
        emu.conv2d_weight(np.ones((1, 2, 6, 6), np.float32), dy, spec, "winograd")
    with pytest.raises(ValueError, match="stride 1 only"):
        emu.conv2d_input(dy, w, spec, "direct")
    with pytest.raises(ValueError, match="grad_out has shape"):
        emu.conv2d_input(np.ones((1, 3, 2, 2), np.float32), w, spec)
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        emu.conv2d_input(dy, w, conv_spec((1, 2, 6, 6), (3, 2, 3, 3), 2, 1, 1, 1, "reflect"))
