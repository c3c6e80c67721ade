"""Every kernel instantiation compiles with NVRTC for sm_70, sm_80 and sm_90 with the CUDA backend's
own options, with zero spills and no warnings about our code (gpuconv._compile's ptxas report)."""
from __future__ import annotations

import pytest

from gpuconv import _kernels
from gpuconv._check import is_clean
from gpuconv._compile import DEFAULT_ARCHS, compile_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records():
    return compile_report()


def test_every_instantiation_is_reported_for_every_arch(records):
    expected = {(file, name, arch) for file, names in _kernels.KERNEL_SOURCES.items() for name in names
                for arch in ("sm_70", "sm_80", "sm_90")}
    assert set(DEFAULT_ARCHS) == {"sm_70", "sm_80", "sm_90"}
    assert {(r.file, r.name_expression, r.arch) for r in records} == expected


def test_no_spills_and_no_warnings(records):
    bad = [r for r in records if not is_clean(r)]  # no spills, stack frames or warnings
    assert not bad, "\n".join(map(str, bad))


GEMMS = ("conv2d_implicit_gemm", "conv2d_grad_input", "conv2d_grad_weight")


def test_register_budgets_follow_the_launch_bounds(records):
    """__launch_bounds__(threads, min blocks) caps registers: direct 64 (FB = 1) or 128 (FB = 4), GEMMs 128
    for 32-bit-index float tiles up to 4x8 (else 255), tensor-core GEMM 255, pool/pad and their gradients
    and the split-K reduction 64, the direct weight gradient 128. The GEMM planner's blocks per SM
    (cuda_gemm.blocks_per_sm) must fit those registers."""
    from gpuconv.backends import cuda_gemm

    limits = {name: 64 for name in ("max_pool2d", "avg_pool2d", "pad2d", "max_pool2d_grad", "avg_pool2d_grad",
                                    "pad2d_grad", "splitk_reduce")}
    limits.update(conv2d_implicit_gemm_tc=255, conv2d_grad_weight_direct=128)  # __launch_bounds__(256, 2)
    for r in records:
        name = r.name_expression.split("<")[0]
        wide = r.name_expression.endswith("8, 8>") or "<double" in r.name_expression or "long long" in r.name_expression
        limit = limits.get(name, 255 if wide else 128)
        if name == "conv2d_direct":
            limit = 64 if ", 1, " in r.name_expression else 128
        assert 0 < r.registers <= limit, r
        if name in GEMMS:
            ctype, itype, *tile = r.name_expression[len(name) + 1:-1].split(", ")
            tiling = next(t for t, v in _kernels.IGEMM_TILINGS.items() if list(v) == [int(x) for x in tile])
            assert cuda_gemm.blocks_per_sm(tiling, ctype, itype) * 256 * r.registers <= 65536, r


def test_gemm_shared_memory_is_the_double_buffered_tiles(records):
    """BK x (BM + BN) tiles of the accumulation type, twice: BK = 8 for the forward and data gradient,
    with the weight tile's rows padded by W_PAD = 32 / BK = 4, WGRAD_BK = 16 with both tiles' rows
    padded by WGRAD_PAD = 4 for the weight gradient; the tensor-core kernel's shared memory is all
    dynamic (> 48 KB)."""
    for r in records:
        name = r.name_expression.split("<")[0]
        if name not in GEMMS:
            continue
        bm, bn = map(int, r.name_expression[:-1].split(", ")[2:4])
        acc = 8 if "<double" in r.name_expression else 4
        bk, m_pad, n_pad = (16, 4, 4) if name == "conv2d_grad_weight" else (8, 4, 0)
        assert r.static_shared_bytes == 2 * bk * (bm + m_pad + bn + n_pad) * acc, r
    tensor_cores = [r for r in records if r.name_expression.startswith("conv2d_implicit_gemm_tc<")]
    assert tensor_cores and all(r.static_shared_bytes == 0 for r in tensor_cores)
