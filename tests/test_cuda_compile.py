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


def test_register_budgets_follow_the_launch_bounds(records):
    """__launch_bounds__(threads, min blocks) caps registers: direct 64 (FB = 1) or 128 (FB = 4), GEMM 128
    for 32-bit-index float tiles up to 4x8 (else 255), tensor-core GEMM 255, pool/pad 64."""
    limits = {"max_pool2d": 64, "avg_pool2d": 64, "pad2d": 64, "conv2d_implicit_gemm_tc": 255}
    for r in records:
        name = r.name_expression.split("<")[0]
        wide = r.name_expression.endswith("8, 8>") or "<double" in r.name_expression or "long long" in r.name_expression
        limit = limits.get(name, 255 if wide else 128)
        if name == "conv2d_direct":
            limit = 64 if ", 1, " in r.name_expression else 128
        assert 0 < r.registers <= limit, r
    gemm = [r for r in records if r.name_expression.startswith("conv2d_implicit_gemm<")]
    for r in gemm:  # double-buffered BK x (BM + BN) tiles of the accumulation type, BK = 8
        bm, bn = map(int, r.name_expression[:-1].split(", ")[2:4])
        assert r.static_shared_bytes == 2 * 8 * (bm + bn) * (8 if "<double" in r.name_expression else 4), r
    tensor_cores = [r for r in records if r.name_expression.startswith("conv2d_implicit_gemm_tc<")]
    assert tensor_cores and all(r.static_shared_bytes == 0 for r in tensor_cores)  # all dynamic (> 48 KB)
