"""The compile check (gpuconv._compile): NVRTC for sm_70/sm_80/sm_90 (NVRTC 12 for sm_70, which
NVRTC 13 dropped) and nvcc where installed, with ptxas' registers / shared memory / spills.
Runs on this suite's own kernels; tests/test_cuda_compile.py runs it on the project's kernels."""

from __future__ import annotations

import pytest

from emu_support import KERNELS
from gpuconv import _compile
from gpuconv.emulator._toolchain import cuda_include_dirs

pytestmark = pytest.mark.emulator

SOURCES = {
    "constructs.cu": ("indices", "weighted_window<float, 3>", "weighted_window<__half, 2>", "reverse_through_shared",
                      "block_votes", "warp_ops", "atomics", "math", "vectors", "arrival",
                      "template_shared_poisoned<double>"),
    "conv_tiled.cu": ("conv_tiled<3>", "conv_tiled<5>"),
}
OPTIONS = ("-std=c++17",) + tuple(f"-I{d}" for d in cuda_include_dirs())


def _problems(records):
    return [r for r in records if r.warnings or r.spill_bytes]


@pytest.fixture(scope="module")
def nvrtc_records():
    return _compile.compile_report(SOURCES, options=OPTIONS, cuda_dir=KERNELS)


def test_nvrtc_reports_every_kernel_for_every_arch(nvrtc_records):
    assert {(r.file, r.name_expression, r.arch) for r in nvrtc_records} == {
        (f, n, a) for f, names in SOURCES.items() for n in names for a in ("sm_70", "sm_80", "sm_90")}
    assert all(r.registers > 0 for r in nvrtc_records)
    assert {r.arch: r.compiler.split()[0] for r in nvrtc_records} == dict.fromkeys(("sm_70", "sm_80", "sm_90"), "nvrtc")
    tiled = [r for r in nvrtc_records if r.name_expression == "conv_tiled<3>"]
    assert all(r.static_shared_bytes == 18 * 18 * 4 for r in tiled)
    assert not _problems(nvrtc_records), _problems(nvrtc_records)


@pytest.mark.parametrize("arch", ["sm_70", "sm_90"])
def test_warnings_and_spills_are_reported(arch):
    records = _compile.compile_report({"compile_problems.cu": ("unused_variable", "spills")}, archs=(arch,),
                                      options=OPTIONS, cuda_dir=KERNELS)
    by_name = {r.name_expression: r for r in records}
    assert any("declared but never referenced" in w for w in by_name["unused_variable"].warnings)
    assert by_name["spills"].spill_bytes > 0 and by_name["spills"].registers <= 32


def test_compile_errors_raise_with_the_log(tmp_path):
    (tmp_path / "broken.cu").write_text('extern "C" __global__ void broken(float* y) { y[0] = nope; }\n')
    with pytest.raises(_compile.CompileCheckError, match=r"(?s)broken.cu for sm_80.*identifier \"nope\" is undefined"):
        _compile.compile_report({"broken.cu": ("broken",)}, archs=("sm_80",), options=OPTIONS, cuda_dir=tmp_path)


def test_ptxas_log_parsing():
    log = """ptxas info    : Compiling entry function '_Z1kIfEvPT_' for 'sm_80'
ptxas info    : Function properties for _Z1kIfEvPT_
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 364 bytes cmem[0]"""
    assert _compile.parse_ptxas_log(log) == {"_Z1kIfEvPT_": {"registers": 40, "smem": 2048, "spill": 12, "frame": 16}}


@pytest.mark.skipif(_compile.nvcc_path() is None, reason="nvcc is not on the PATH")
def test_nvcc_agrees_with_nvrtc(nvrtc_records):
    """nvcc builds the same instantiations cleanly (for the archs it supports: nvcc 13 has no sm_70)."""
    records = _compile.nvcc_report(SOURCES, options=OPTIONS, cuda_dir=KERNELS)
    archs = {r.arch for r in records}
    assert archs == {"sm_70", "sm_80", "sm_90"} & _compile.nvcc_archs() and archs
    assert len(records) == sum(map(len, SOURCES.values())) * len(archs)
    assert not _problems(records), _problems(records)
    nvrtc_smem = {(r.name_expression, r.arch): r.static_shared_bytes for r in nvrtc_records}
    assert all(r.static_shared_bytes == nvrtc_smem[r.name_expression, r.arch] for r in records)
