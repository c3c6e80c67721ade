"""The CUDA backends' launch logic: availability, algorithm choice, argument checks, the `check`
and `info` commands, and (marked `gpu`, skipped without one) the real GPU through CuPy."""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import gpuconv
from gpuconv import _reference as ref
from gpuconv import _kernels
from gpuconv.__main__ import main
from gpuconv._geometry import conv_spec
from gpuconv.backends import BackendUnavailable, available_backends, get_backend, unavailable_reasons
from support import as_reference_input, assert_close, assert_same, random_array, require_backend

HAS_CUPY = importlib.util.find_spec("cupy") is not None


def _emu():
    try:
        return get_backend("cuda-emu")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


# ---- availability -------------------------------------------------------------------------------
def test_cuda_emu_is_listed_whenever_the_emulator_can_build():
    from gpuconv.emulator import unavailable_reason

    reason = unavailable_reason()
    assert ("cuda-emu" in available_backends()) == (reason is None), reason
    if os.environ.get("CI", "").lower() == "true":
        assert reason is None, f"CI must run the emulated kernels: {reason}"


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed here")
def test_cuda_without_cupy_is_unavailable_with_the_reason():
    assert "cuda" not in available_backends()
    assert "CuPy" in unavailable_reasons()["cuda"]
    with pytest.raises(BackendUnavailable, match="CuPy is not installed"):
        gpuconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), backend="cuda")


# ---- kernel registry ----------------------------------------------------------------------------
def test_every_launched_kernel_is_instantiated():
    names = {name for names in _kernels.KERNEL_SOURCES.values() for name in names}
    for ctype in _kernels.ELEMENT_TYPES.values():
        for itype in _kernels.INDEX_TYPES:
            for op in ("max_pool2d", "avg_pool2d", "pad2d", "max_pool2d_grad", "avg_pool2d_grad", "pad2d_grad",
                       "splitk_reduce", "conv2d_grad_weight_direct"):
                assert f"{op}<{ctype}, {itype}>" in names
            assert _kernels.direct_kernel(ctype, itype, 1, False) in names
            for kind in _kernels.GEMM_KERNELS:
                for tiling in _kernels.gemm_tilings(kind, ctype):
                    assert _kernels.gemm_kernel(kind, ctype, itype, tiling) in names
    for file in _kernels.KERNEL_SOURCES:
        assert (_kernels.CUDA_DIR / file).is_file()


def test_modules_are_built_once_under_concurrent_first_use(monkeypatch):
    _emu()
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(_kernels, "_modules", {})
    monkeypatch.setattr(_kernels, "_functions", {})
    with ThreadPoolExecutor(4) as pool:
        modules = list(pool.map(lambda _: _kernels.get_module("pad.cu", "emu"), range(8)))
        functions = list(pool.map(lambda _: _kernels.get_function("pad.cu", "pad2d<float, int>", "emu"), range(8)))
    assert all(m is modules[0] for m in modules) and all(f is functions[0] for f in functions)


def test_nvrtc_options_find_cuda_headers():
    assert any(opt == f"-I{_kernels.CUDA_DIR}" for opt in _kernels.NVRTC_OPTIONS)
    assert _kernels.CUDA_INCLUDE_DIR is not None, "no directory with cuda_fp16.h (pip install gpuconv[emulator])"



def test_cupy_code_changes_when_an_included_header_changes(monkeypatch, tmp_path):
    """CuPy's kernel cache keys on the code and the options, not on #included files: the code handed to
    RawModule must change with cuda/common.cuh, or an edited header would load a stale cached binary."""
    built = []
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(RawModule=lambda **kwargs: built.append(kwargs)))
    shutil.copytree(_kernels.CUDA_DIR, tmp_path / "cuda")
    monkeypatch.setattr(_kernels, "CUDA_DIR", tmp_path / "cuda")
    _kernels._build("pad.cu", "cuda")
    header = tmp_path / "cuda" / "common.cuh"
    header.write_text(header.read_text() + "// edited\n")
    _kernels._build("pad.cu", "cuda")
    assert built[0]["code"] != built[1]["code"]
    assert built[0]["code"].startswith((tmp_path / "cuda" / "pad.cu").read_text())  # line numbers kept
    assert all(b["options"] == _kernels.CUPY_OPTIONS and b["name_expressions"] == _kernels.KERNEL_SOURCES["pad.cu"]
               for b in built)


def test_cupy_gets_no_cuda_include_directory():
    """CuPy adds the CUDA headers matching its own NVRTC; a -I of another CUDA (CUDA_PATH, the system
    toolkit, the pip wheels) would shadow them, so cuda_fp16.h could come from a different CUDA."""
    assert _kernels.CUPY_OPTIONS == ("-std=c++17", f"-I{_kernels.CUDA_DIR}")
    assert not any((Path(opt[2:]) / "cuda_fp16.h").exists() for opt in _kernels.CUPY_OPTIONS if opt.startswith("-I"))
    assert _kernels.NVRTC_OPTIONS[:len(_kernels.CUPY_OPTIONS)] == _kernels.CUPY_OPTIONS


def test_empty_outputs_launch_no_kernel(monkeypatch):
    """CUDA rejects a launch with a zero grid dimension, which the emulator runs as no blocks: an empty
    batch or channel axis must reach no kernel (gpuconv._api returns the empty result itself)."""
    _emu()
    grids, get_function = [], _kernels.get_function

    def strict_get_function(file, name, device_kind):
        function = get_function(file, name, device_kind)

        def launch(grid, block, args, shared_mem=0):
            grids.append(grid)
            assert 0 not in grid, f"{name} launched with grid {grid}"
            function(grid, block, args, shared_mem=shared_mem)
        return launch

    monkeypatch.setattr(_kernels, "get_function", strict_get_function)
    x, w = np.ones((0, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    for algorithm in ("direct", "implicit_gemm"):
        assert gpuconv.conv2d(x, w, algorithm=algorithm, backend="cuda-emu").shape == (0, 3, 3, 3)
    out, indices = gpuconv.max_pool2d(x, 2, return_indices=True, backend="cuda-emu")
    assert out.shape == indices.shape == (0, 2, 2, 2)
    assert gpuconv.avg_pool2d(x[:, :0], 2, backend="cuda-emu").shape == (0, 0, 2, 2)
    assert gpuconv.pad2d(np.ones((1, 0, 5, 5), np.float32), 1, backend="cuda-emu").shape == (1, 0, 7, 7)
    assert not grids
    assert_same(gpuconv.pad2d(np.ones((1, 1, 1, 1), np.float32), 1, backend="cuda-emu"),
                np.pad(np.ones((1, 1, 1, 1), np.float32), ((0, 0), (0, 0), (1, 1), (1, 1))))
    assert grids == [(1, 1, 1)]  # the stand-in is the one launching

# ---- algorithm choice -------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape, w_shape, groups, expected", [
    ((8, 64, 56, 56), (64, 64, 3, 3), 1, "implicit_gemm"),   # ResNet 3x3
    ((8, 3, 224, 224), (64, 3, 7, 7), 1, "implicit_gemm"),   # stem: K = 147
    ((8, 64, 56, 56), (64, 1, 3, 3), 64, "direct"),          # depthwise
    ((1, 1, 512, 512), (1, 1, 3, 3), 1, "direct"),           # one image, one filter
    ((32, 1, 28, 28), (32, 1, 5, 5), 1, "direct"),           # MNIST-like: K = 25
])
def test_auto_heuristic(x_shape, w_shape, groups, expected):
    backend = _emu()
    spec = conv_spec(x_shape, w_shape, 1, 1, 1, groups, "zeros")
    assert backend.choose_algorithm(spec) == expected
    assert backend.applicable_algorithms(spec) == ("auto", "direct", "implicit_gemm")


def test_implicit_gemm_not_applicable_past_the_grid_limit():
    backend = _emu()
    spec = conv_spec((1, 70000, 1, 1), (70000, 1, 1, 1), 1, 0, 1, 70000, "zeros")
    assert "implicit_gemm" not in backend.applicable_algorithms(spec)
    with pytest.raises(ValueError, match="implicit_gemm"):
        backend.conv2d(np.ones((1, 70000, 1, 1), np.float32), np.ones((70000, 1, 1, 1), np.float32), None, spec,
                       "implicit_gemm")


def test_auto_raises_the_reason_when_no_algorithm_fits():
    backend = _emu()
    spec = conv_spec((2**31, 70000, 1, 1), (70000, 1, 1, 1), 1, 0, 1, 70000, "zeros")  # both grids too large
    assert backend.applicable_algorithms(spec) == ("auto",)
    with pytest.raises(ValueError, match="algorithm='direct' needs at most"):
        backend.conv2d(np.ones(1, np.float32), np.ones(1, np.float32), None, spec, "auto")

def test_unknown_algorithm_is_a_value_error_naming_it():
    _emu()
    with pytest.raises(ValueError, match="winograd"):
        gpuconv.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), algorithm="winograd", backend="cuda-emu")


def test_index_type_follows_byte_sizes():
    from gpuconv.backends import cuda

    class Big:  # an array stand-in: only nbytes matters
        nbytes = 2**31

    assert cuda._index_type(np.zeros(10)) == ("int", np.int32)
    assert cuda._index_type(np.zeros(10), Big()) == ("long long", np.int64)


# ---- commands -----------------------------------------------------------------------------------
def test_info_command(capsys, tmp_path, monkeypatch):
    cache = tmp_path / "emulator-cache"
    monkeypatch.setenv("GPUCONV_EMU_CACHE", str(cache))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backends available:" in out and "numpy" in out and "NumPy BLAS" in out
    assert f"emulator_build_cache: {cache}" in out and not cache.exists(), "info should print the cache, not create it"


def test_check_command_on_the_emulator(capsys):
    _emu()
    assert main(["check", "--no-compile", "--backend", "cuda-emu"]) == 0
    out = capsys.readouterr().out
    for op in ("conv2d[direct]", "conv2d[implicit_gemm]", "max_pool2d", "avg_pool2d", "pad2d[reflect]",
               "grad.conv2d_input", "grad.conv2d_weight", "conv_transpose2d", "grad.max_pool2d_input",
               "grad.avg_pool2d_input", "grad.pad2d_input[circular]"):
        for dtype in ("float16", "float32", "float64"):
            assert any(op in line and dtype in line and line.rstrip().endswith("ok") for line in out.splitlines()), \
                f"no passing line for {op} {dtype}:\n{out}"


def test_check_command_reports_a_wrong_backend(capsys, monkeypatch):
    from gpuconv.backends.cpu import NumpyBackend

    monkeypatch.setattr(NumpyBackend, "avg_pool2d", lambda self, x, spec: NumpyBackend.max_pool2d(self, x, spec, False))
    assert main(["check", "--no-compile", "--backend", "numpy"]) == 1
    assert "avg_pool2d" in capsys.readouterr().out


def test_check_command_reports_a_wrong_gradient(capsys, monkeypatch):
    from gpuconv.backends.cpu import NumpyBackend

    real = NumpyBackend.conv2d_weight
    monkeypatch.setattr(NumpyBackend, "conv2d_weight", lambda self, *args, **kw: real(self, *args, **kw) * 1.001)
    assert main(["check", "--no-compile", "--backend", "numpy"]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.rstrip().endswith("FAIL")]
    assert failed and all("grad.conv2d_weight" in line for line in failed), failed


# ---- the real GPU (CuPy) ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cupy_gpu():
    require_backend("cuda")
    import cupy

    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("algorithm", ["direct", "implicit_gemm"])
def test_gpu_conv_matches_the_reference(cupy_gpu, algorithm, dtype):
    rng = np.random.default_rng(5)
    x, w, b = (random_array(rng, s, dtype) for s in ((3, 8, 37, 45), (130, 4, 3, 3), (130,)))
    expected = ref.conv2d(*map(as_reference_input, (x, w, b)), stride=(1, 2), padding=2, groups=2,
                          padding_mode="reflect")
    xs = cupy_gpu.asarray(np.asfortranarray(x))  # any strides
    out = gpuconv.conv2d(xs, cupy_gpu.asarray(w), cupy_gpu.asarray(b), stride=(1, 2), padding=2, groups=2,
                         padding_mode="reflect", algorithm=algorithm, backend="cuda")
    assert isinstance(out, cupy_gpu.ndarray)
    assert_close(out, expected, dtype, f"cuda conv2d[{algorithm}]")


@pytest.mark.gpu
def test_gpu_numpy_input_comes_back_as_numpy(cupy_gpu):
    x = random_array(np.random.default_rng(6), (2, 3, 20, 21), np.float32)
    out, idx = gpuconv.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True, backend="cuda")
    expected, expected_idx = ref.max_pool2d(as_reference_input(x), 3, 2, 1, 1, True)
    assert isinstance(out, np.ndarray) and isinstance(idx, np.ndarray)
    assert_same(out, expected, np.float32)
    assert_same(idx, expected_idx, np.int64)
    avg = gpuconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False, backend="cuda")
    assert_close(avg, ref.avg_pool2d(as_reference_input(x), 3, 2, 1, True, False), np.float32)
    padded = gpuconv.pad2d(x, ((3, 1), (2, 2)), "circular", backend="cuda")
    assert_same(padded, ref.pad2d(as_reference_input(x), (3, 1, 2, 2), "circular").astype(np.float32))


@pytest.mark.gpu
def test_gpu_runs_on_cupys_current_stream(cupy_gpu):
    x = cupy_gpu.asarray(random_array(np.random.default_rng(7), (1, 2, 64, 64), np.float32))
    stream = cupy_gpu.cuda.Stream(non_blocking=True)
    with stream:
        out = gpuconv.avg_pool2d(x, 2, backend="cuda")
    stream.synchronize()
    assert_close(out, ref.avg_pool2d(as_reference_input(x.get()), 2), np.float32)


@pytest.mark.gpu
def test_gpu_direct_kernel_beyond_48kb_of_shared_memory(cupy_gpu):
    """The device's opt-in limit (over 48 KB on every GPU since Volta) is read and the kernel's attribute
    raised: a 47x47 float64 kernel stages a 62 x 78 halo tile plus its weights, over 48 KB."""
    from gpuconv.backends import cuda

    backend = get_backend("cuda")
    assert backend.device.max_shared_bytes() > cuda.DEFAULT_SHARED_BYTES
    spec = conv_spec((1, 1, 50, 50), (1, 1, 47, 47), 1, 0, 1, 1, "zeros")
    plan = backend._plan(spec, "direct", np.float64)
    assert plan.staged and plan.shared > cuda.DEFAULT_SHARED_BYTES
    rng = np.random.default_rng(8)
    x, w = random_array(rng, (1, 1, 50, 50), np.float64), random_array(rng, (1, 1, 47, 47), np.float64)
    out = gpuconv.conv2d(cupy_gpu.asarray(x), cupy_gpu.asarray(w), algorithm="direct", backend="cuda")
    assert_close(out, ref.conv2d(x, w), np.float64, "cuda conv2d[direct] 47x47 float64")
