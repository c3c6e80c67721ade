"""Tiling and split-K of the implicit-GEMM kernels, chosen from the device's SM count, and their launch.

Three GEMMs share this: the forward convolution and its data gradient (conv_implicit_gemm.cu) and
the weight gradient (conv_grad_weight.cu); the direct weight gradient splits K the same way
(plan_weight_direct). Each GEMM is `groups` GEMMs of M x N reducing over K. A plan
picks the register tiling and the number of K splits that minimise a simple time model of the
device: blocks run in waves of sm_count x blocks_per_sm; a wave takes as long as its busiest SM;
a block's time is its k steps (plus a fixed overhead) times its tile's FMAs, at a rate that grows
with the tile (more FLOPs per byte of shared memory). Split-K multiplies the blocks and divides
their k steps; it costs a second launch (host and device time: small layers, bound by launches,
are not split), a kernel (splitk_reduce.cu) that moves (2 x splits + 1) values per result
element, and scratch memory for the partial sums, bounded by gpuconv's workspace cap
(GPUCONV_WORKSPACE_MB): where the cap binds, fewer splits.

The rates are estimates for an H100/H200-class GPU (FP32 on CUDA cores), not measurements: nothing
has run on a GPU yet. Only the SM count comes from the device.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .. import _kernel_params, _kernels
from .._config import config

# Time model (estimates, see the module docstring).
TILE_EFFICIENCY = {"large": 1.0, "wide": 0.85, "small": 0.6}  # fraction of an SM's FMA rate a tiling reaches
LONE_BLOCK_EFFICIENCY = 0.7   # an SM holding one block of a 2-blocks/SM tiling hides less latency
OVERHEAD_STEPS = 3            # first loads and the epilogue, in k steps
SM_FMA_PER_S = 128 * 1.98e9   # FP32 lanes x boost clock
DRAM_BYTES_PER_S = 4.3e12     # device-to-device copy
LAUNCH_S = 10e-6              # the reduce kernel's launch: host (CuPy's launch path) and device
MAX_SPLITS = 256
MAX_SCRATCH_BYTES = 2**31 - 1  # the scratch never decides the index type

# Test hooks: a tiling name and/or a split count to use instead of the model's choice (the
# scratch cap still applies to the splits).
FORCE_TILING: str | None = None
FORCE_SPLITS: int | None = None


@dataclass(frozen=True)
class GemmPlan:
    kind: str          # "forward", "input" or "weight" (_kernels.GEMM_KERNELS)
    tiling: str        # _kernels.IGEMM_TILINGS key
    block: tuple[int, int, int]
    grid: tuple[int, int, int]  # (N tiles, groups x M tiles, splits)
    splits: int
    k_split: int       # K values per split, a multiple of the kernel's BK
    scratch_elements: int  # partial sums of the splits (0 with one split)
    estimate_s: float  # the model's time, for comparing plans only

    @functools.cached_property  # looked up on every launch (host cost)
    def params(self) -> _kernel_params.KernelParams:
        """The kernel's argument table."""
        return _kernel_params.KERNELS[_kernels.GEMM_KERNELS[self.kind][1]]

    def kernel_name(self, ctype: str, itype: str) -> str:
        return _kernels.gemm_kernel(self.kind, ctype, itype, self.tiling)


@dataclass(frozen=True)
class DirectWeightPlan:
    """conv2d_grad_weight_direct (conv_grad_weight.cu): one block per (filter, channel) pair and K split
    (plan_weight_direct)."""
    block: tuple[int, int, int]
    grid: tuple[int, int, int]  # (pairs, 1, splits)
    splits: int
    k_split: int
    scratch_elements: int
    params = _kernel_params.CONV_GRAD_WEIGHT_DIRECT

    def kernel_name(self, ctype: str, itype: str) -> str:
        return f"conv2d_grad_weight_direct<{ctype}, {itype}>"


def blocks_per_sm(tiling: str, ctype: str, itype: str) -> int:
    """Resident blocks per SM the kernels' __launch_bounds__ ask for (IGEMM_MIN_BLOCKS and
    conv_grad_weight.cu): 2 for float tiles up to 4x8 with 32-bit indices, else 1."""
    _, _, tm, tn = _kernels.IGEMM_TILINGS[tiling]
    return 1 if tm * tn >= 64 or ctype == "double" or itype == "long long" else 2


def k_step(kind: str) -> int:
    """BK of the kind's kernel: threads / 32 for conv_implicit_gemm.cu, WGRAD_BK for the weight gradient."""
    if kind == "weight":
        return _kernels.constants("conv_grad_weight.cu")["WGRAD_BK"]
    return 256 // 32


def acc_itemsize(ctype: str) -> int:
    return 8 if ctype == "double" else 4


def _estimate(tiles, splits, steps, tile_fmas, bps, efficiency, sm_count, reduce_bytes) -> float:
    """Seconds: the waves of tiles x splits blocks, plus the reduce pass when splits > 1."""
    from .cuda import _ceil_div  # here: cuda.py imports this module
    slots = sm_count * bps
    full_waves, rest = divmod(tiles * splits, slots)
    block_s = (steps + OVERHEAD_STEPS) * tile_fmas / (efficiency * SM_FMA_PER_S)
    total = full_waves * bps * block_s
    if rest:  # the last wave: its busiest SM holds per_sm blocks
        per_sm = _ceil_div(rest, sm_count)
        total += per_sm * block_s / (1.0 if per_sm == bps else LONE_BLOCK_EFFICIENCY)
    if splits > 1:
        total += LAUNCH_S + reduce_bytes / DRAM_BYTES_PER_S
    return total


@functools.lru_cache(maxsize=4096)
def plan_gemm(kind: str, groups: int, m: int, n: int, k: int, ctype: str, itype: str, sm_count: int,
              scratch_cap: int, force_tiling: str | None = None, force_splits: int | None = None) -> GemmPlan:
    """The fastest (tiling, splits) by the time model for `groups` GEMMs of m x n over k, with at most
    scratch_cap bytes of partial sums; force_* restrict the choice (the cap still lowers the splits)."""
    from .cuda import MAX_GRID_X, MAX_GRID_YZ, _ceil_div
    bk = k_step(kind)
    out_elements = groups * m * n
    split_bytes = max(1, out_elements * acc_itemsize(ctype))
    max_splits = max(1, min(MAX_SPLITS, min(scratch_cap, MAX_SCRATCH_BYTES) // split_bytes))
    itemsize = 2 if ctype == "__half" else acc_itemsize(ctype)
    steps_total = max(1, _ceil_div(k, bk))  # K = 0 (an empty batch's weight gradient): one step of zeros
    tilings = [t for t in _kernels.gemm_tilings(kind, ctype) if force_tiling in (None, t)]
    if not tilings:
        raise ValueError(f"tiling {force_tiling!r}: the {kind} GEMM for {ctype} has "
                         f"{_kernels.gemm_tilings(kind, ctype)}")
    best, refused = None, []
    for tiling in tilings:
        bm, bn, tm, tn = _kernels.IGEMM_TILINGS[tiling]
        grid_x, grid_y = _ceil_div(n, bn), groups * _ceil_div(m, bm)
        if grid_x > MAX_GRID_X or grid_y > MAX_GRID_YZ:
            refused.append(f"{bm}x{bn} tiles need a grid of ({grid_x}, {grid_y})")
            continue
        bps = blocks_per_sm(tiling, ctype, itype)
        limit = min(max_splits, steps_total)
        for requested in range(1, limit + 1) if force_splits is None else (min(force_splits, limit),):
            steps = _ceil_div(steps_total, requested)
            splits = _ceil_div(steps_total, steps)  # every split gets at least one k step
            scratch = splits * out_elements if splits > 1 else 0
            estimate = _estimate(grid_x * grid_y, splits, steps, bm * bn * bk, bps, TILE_EFFICIENCY[tiling],
                                 sm_count, 2 * scratch * acc_itemsize(ctype) + out_elements * itemsize)
            if best is None or estimate < best.estimate_s:
                best = GemmPlan(kind, tiling, ((bm // tm) * (bn // tn), 1, 1), (grid_x, grid_y, splits), splits,
                                steps * bk, scratch, estimate)
    if best is None:
        raise ValueError(f"algorithm='implicit_gemm' ({kind} GEMM): groups={groups} GEMMs of M={m} x N={n} exceed "
                         f"the CUDA grid limits (x <= {MAX_GRID_X}, y <= {MAX_GRID_YZ}): {'; '.join(refused)}")
    return best


def settings() -> tuple:
    """What the plans read besides their arguments: the workspace cap and the test hooks (part of the
    key of the CUDA backend's memoised plans)."""
    return config.workspace_bytes, FORCE_TILING, FORCE_SPLITS


def plan(kind: str, groups: int, m: int, n: int, k: int, ctype: str, itype: str, sm_count: int) -> GemmPlan:
    """plan_gemm with the workspace cap and the test hooks of this module."""
    return plan_gemm(kind, groups, m, n, k, ctype, itype, sm_count, config.workspace_bytes, FORCE_TILING,
                     FORCE_SPLITS)


# The direct weight gradient's model (estimates): a block reads dy and x about once per output pixel
# (its taps' x hit the cache), latency bound: 256 threads with about 10 loads in flight each, about
# 1 µs apart, read about 10 GB/s, plus about 1 µs per block (its start, the block sums of its tap
# passes, its writes); 2 blocks per SM (its launch bounds).
WDIRECT_BLOCK_BYTES_PER_S = 10e9
WDIRECT_BLOCK_OVERHEAD_S = 1e-6
WDIRECT_BLOCKS_PER_SM = 2


@functools.lru_cache(maxsize=4096)
def plan_weight_direct(pairs: int, taps: int, k: int, ctype: str, sm_count: int, scratch_cap: int,
                       force_splits: int | None = None) -> DirectWeightPlan:
    """Splits for `pairs` blocks, each reducing `taps` values over k output pixels: the count (1 to
    MAX_SPLITS, within the scratch cap) that minimises waves x a block's read time + the reduce pass,
    as plan_gemm's model; force_splits instead of the model's choice (the cap still lowers it)."""
    from .cuda import MAX_GRID_X, _ceil_div
    if pairs > MAX_GRID_X:
        raise ValueError(f"algorithm='direct' (weight gradient): F * C/groups = {pairs} (filter, channel) pairs "
                         f"exceed the CUDA grid limit {MAX_GRID_X}")
    threads = _kernels.constants("conv_grad_weight.cu")["WDIRECT_THREADS"]
    out_elements = pairs * taps
    itemsize = 2 if ctype == "__half" else acc_itemsize(ctype)
    by_cap = min(scratch_cap, MAX_SCRATCH_BYTES) // max(1, out_elements * acc_itemsize(ctype))
    limit = max(1, min(by_cap, MAX_SPLITS, k))
    best = None
    for requested in range(1, limit + 1) if force_splits is None else (min(force_splits, limit),):
        k_split = max(1, _ceil_div(k, requested))
        splits = max(1, _ceil_div(k, k_split))  # every split gets at least one pixel (K = 0: one split of zeros)
        waves = _ceil_div(pairs * splits, sm_count * WDIRECT_BLOCKS_PER_SM)
        estimate = waves * (k_split * 2 * itemsize / WDIRECT_BLOCK_BYTES_PER_S + WDIRECT_BLOCK_OVERHEAD_S)
        if splits > 1:
            estimate += LAUNCH_S + (2 * splits * acc_itemsize(ctype) + itemsize) * out_elements / DRAM_BYTES_PER_S
        if best is None or estimate < best[0]:
            best = (estimate, DirectWeightPlan((threads, 1, 1), (pairs, 1, splits), splits, k_split,
                                               splits * out_elements if splits > 1 else 0))
    return best[1]


def plan_direct_weight(pairs: int, taps: int, k: int, ctype: str, sm_count: int) -> DirectWeightPlan:
    """plan_weight_direct with the workspace cap and the FORCE_SPLITS hook."""
    return plan_weight_direct(pairs, taps, k, ctype, sm_count, config.workspace_bytes, FORCE_SPLITS)


def launch(device, plan, itype: str, index, scalars: tuple, pointers: dict, out, bias=None, bias_period: int = 1,
           bias_count: int = 1) -> None:
    """Run the plan's kernel<T, itype> with the arrays `pointers` (by name, out among them) and a partial
    sums buffer, and its scalars (plan.params.scalars, k_split = plan.k_split among them); T out's
    element type. Then, with several splits, splitk_reduce over the partial sums (adding
    bias[(i / bias_period) % bias_count] when bias is not None; with one split the kernel adds it
    itself and partial is a null pointer)."""
    ctype = _kernels.CTYPE_OF_DTYPE[out.dtype]
    partial = None
    if plan.splits > 1:
        partial = device.xp.empty(plan.scratch_elements, dtype=np.float64 if ctype == "double" else np.float32)
    table = plan.params
    device.launch(table.file, plan.kernel_name(ctype, itype), plan.grid, plan.block,
                  table.pack(scalars, **pointers, partial=partial))
    if plan.splits > 1:
        from .cuda import MAX_ELEMENTWISE_BLOCKS, _ceil_div

        reduce = _kernel_params.SPLITK_REDUCE
        threads = _kernels.constants(reduce.file)["REDUCE_THREADS"]
        grid = (min(_ceil_div(out.size, threads), MAX_ELEMENTWISE_BLOCKS), 1, 1)
        scalars = _reduce_scalars(index, out.size, plan.splits, bias is not None, bias_period, bias_count)
        device.launch(reduce.file, f"{reduce.template}<{ctype}, {itype}>", grid, (threads, 1, 1),
                      reduce.pack(scalars, partial=partial, bias=bias, out=out))


@functools.lru_cache(maxsize=1024)
def _reduce_scalars(index, total: int, splits: int, has_bias: bool, bias_period: int, bias_count: int) -> tuple:
    return _kernel_params.SPLITK_REDUCE.scalars(index, total=total, splits=splits, has_bias=has_bias,
                                                bias_period=bias_period, bias_count=bias_count)
