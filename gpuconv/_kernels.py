"""The CUDA kernels: where the .cu files are, how they compile, every instantiation, and loading.

One source of truth for what the CUDA backend hands to CuPy's RawModule (CUPY_OPTIONS) and what
the compile check (gpuconv._compile) and the emulator compile (NVRTC_OPTIONS), and KERNEL_SOURCES.
get_module() returns a CuPy RawModule on a GPU ("cuda") or the emulator's Module on the CPU
("emu"); both have get_function(name_expression). The emulator's functions are checked against
their argument tables (_kernel_params) when first loaded.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
import threading
from pathlib import Path

import numpy as np

import gpuconv

from . import _kernel_params


def _cuda_dir() -> Path:
    packaged = Path(gpuconv.__file__).parent / "cuda"  # a wheel ships cuda/ as gpuconv/cuda
    if any(packaged.glob("*.cu")):
        return packaged
    return Path(__file__).resolve().parent.parent / "cuda"


def _cuda_include_dir() -> str | None:
    """A directory with CUDA's cuda_fp16.h: $CUDA_PATH or $CUDA_HOME, /usr/local/cuda (the toolkit
    CuPy itself compiles against, where there is one), then the pip wheels (nvidia-cuda-runtime)."""
    candidates = [Path(os.environ[v]) / "include" for v in ("CUDA_PATH", "CUDA_HOME") if os.environ.get(v)]
    candidates.append(Path("/usr/local/cuda/include"))
    for site in sys.path:
        candidates += [Path(site) / "nvidia" / sub / "include" for sub in ("cu13", "cu12", "cuda_runtime")]
    return next((str(d) for d in candidates if (d / "cuda_fp16.h").is_file()), None)


CUDA_DIR = _cuda_dir()
CUDA_INCLUDE_DIR = _cuda_include_dir()
# What CuPy's RawModule gets. CuPy adds the rest itself: its bundled CCCL and headers, the CUDA
# headers that match its own NVRTC (cuda_fp16.h among them), -arch of the device and -ftz=true.
CUPY_OPTIONS = ("-std=c++17", f"-I{CUDA_DIR}")
# The compile check (NVRTC through ctypes) and the emulator need CUDA's headers from somewhere else.
NVRTC_OPTIONS = CUPY_OPTIONS + ((f"-I{CUDA_INCLUDE_DIR}",) if CUDA_INCLUDE_DIR else ())

# NumPy dtype name -> C++ element type of the kernels.
ELEMENT_TYPES = {"float16": "__half", "float32": "float", "float64": "double"}
CTYPE_OF_DTYPE = {np.dtype(name): ctype for name, ctype in ELEMENT_TYPES.items()}  # looked up per launch
INDEX_TYPES = ("int", "long long")  # 32-bit index arithmetic when the tensors allow it

# Direct convolution: filters per block (FB) and whether the input tile is staged in shared memory.
DIRECT_FILTER_BATCHES = (1, 4)
# Implicit GEMM register tilings (BM, BN, TM, TN), all 256 threads: 128x128 tiles of 8x8 per thread,
# 64x128 of 4x8, 64x64 of 4x4 (float64's only: its registers hold half as many values). The forward
# and the data gradient (conv_implicit_gemm.cu) have all three, the weight gradient
# (conv_grad_weight.cu) "large" and "small"; backends/cuda_gemm.py picks one per call.
IGEMM_TILINGS = {"large": (128, 128, 8, 8), "wide": (64, 128, 4, 8), "small": (64, 64, 4, 4)}
WGRAD_TILINGS = ("large", "small")
# GEMM kernels by the convolution pass they compute: (file, kernel template, tilings).
GEMM_KERNELS = {
    "forward": ("conv_implicit_gemm.cu", "conv2d_implicit_gemm", tuple(IGEMM_TILINGS)),
    "input": ("conv_implicit_gemm.cu", "conv2d_grad_input", tuple(IGEMM_TILINGS)),
    "weight": ("conv_grad_weight.cu", "conv2d_grad_weight", WGRAD_TILINGS),
}


@functools.lru_cache(maxsize=None)
def direct_kernel(ctype: str, itype: str, filter_batch: int, staged: bool) -> str:
    return f"conv2d_direct<{ctype}, {itype}, {filter_batch}, {'true' if staged else 'false'}>"


@functools.lru_cache(maxsize=None)
def gemm_kernel(kind: str, ctype: str, itype: str, tiling: str) -> str:
    """Name expression of the `kind` ("forward", "input", "weight") GEMM kernel with `tiling`."""
    return f"{GEMM_KERNELS[kind][1]}<{ctype}, {itype}, {', '.join(map(str, IGEMM_TILINGS[tiling]))}>"


def gemm_tilings(kind: str, ctype: str) -> tuple[str, ...]:
    """The tilings the `kind` GEMM is instantiated with: float64 only "small" (an 8x8 double tile
    needs more than 128 registers for its accumulators alone)."""
    return ("small",) if ctype == "double" else GEMM_KERNELS[kind][2]


def implicit_gemm_tc_kernel(ctype: str, itype: str, block_m: int) -> str:
    return f"conv2d_implicit_gemm_tc<{ctype}, {itype}, {block_m}>"


# The tensor-core kernel: float16, and float32 computed in TF32 (sm_80+); block tiles of 128 filters,
# or 64 for groups of at most 64 filters.
TENSOR_CORE_TYPES = ("__half", "float")
TENSOR_CORE_BLOCK_M = (128, 64)


def _all_instantiations() -> dict[str, tuple[str, ...]]:
    files = ("conv_direct.cu", "conv_implicit_gemm.cu", "conv_implicit_gemm_tc.cu", "conv_grad_weight.cu",
             "splitk_reduce.cu", "pool.cu", "pad.cu")
    sources: dict[str, list[str]] = {file: [] for file in files}
    for ctype in ELEMENT_TYPES.values():
        for itype in INDEX_TYPES:
            sources["conv_direct.cu"] += [direct_kernel(ctype, itype, fb, staged)
                                          for fb in DIRECT_FILTER_BATCHES for staged in (True, False)]
            for kind, (file, _, _) in GEMM_KERNELS.items():
                sources[file] += [gemm_kernel(kind, ctype, itype, t) for t in gemm_tilings(kind, ctype)]
            if ctype in TENSOR_CORE_TYPES:
                sources["conv_implicit_gemm_tc.cu"] += [implicit_gemm_tc_kernel(ctype, itype, bm)
                                                        for bm in TENSOR_CORE_BLOCK_M]
            sources["conv_grad_weight.cu"].append(f"conv2d_grad_weight_direct<{ctype}, {itype}>")
            sources["splitk_reduce.cu"].append(f"splitk_reduce<{ctype}, {itype}>")
            sources["pool.cu"] += [f"{op}<{ctype}, {itype}>"
                                   for op in ("max_pool2d", "avg_pool2d", "max_pool2d_grad", "avg_pool2d_grad")]
            sources["pad.cu"] += [f"pad2d<{ctype}, {itype}>", f"pad2d_grad<{ctype}, {itype}>"]
    return {file: tuple(names) for file, names in sources.items()}


KERNEL_SOURCES = _all_instantiations()

@functools.lru_cache(maxsize=None)
def constants(file: str) -> dict[str, int]:
    """The integer `#define NAME value` lines of cuda/<file>: tile sizes and threads per block,
    so the launcher's grids and shared-memory sizes come from the kernel's own constants."""
    text = (CUDA_DIR / file).read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"^#define (\w+) (\d+)\b", text, re.M)}


_modules: dict[tuple, object] = {}
_functions: dict[tuple, object] = {}
_lock = threading.Lock()


def _device_key(device_kind: str) -> tuple:
    if device_kind == "cuda":
        import cupy

        return (device_kind, cupy.cuda.Device().id)
    if device_kind == "emu":
        return (device_kind,)
    raise ValueError(f"device_kind={device_kind!r}: expected 'cuda' or 'emu'")


def get_module(file: str, device_kind: str):
    """The compiled module of cuda/<file> with all its instantiations, memoised per device.

    device_kind "cuda": a cupy.RawModule for CuPy's current device; "emu": the emulator's Module.
    """
    key = (file, *_device_key(device_kind))
    with _lock:
        module = _modules.get(key)
        if module is None:
            module = _modules[key] = _build(file, device_kind)
    return module


def get_function(file: str, name: str, device_kind: str):
    """get_module(file, device_kind).get_function(name), memoised: no lookup per launch."""
    key = (file, name, *_device_key(device_kind))
    function = _functions.get(key)
    if function is None:
        try:
            function = get_module(file, device_kind).get_function(name)
            if device_kind == "emu":
                check_arguments(name, function)
        except Exception as exc:
            if device_kind != "cuda" or type(exc).__name__ != "CompileException":
                raise
            raise RuntimeError(f"NVRTC could not compile {CUDA_DIR / file} ({name}) with options "
                               f"{' '.join(CUPY_OPTIONS)} (and CuPy's own): {exc}\nIf cuda_fp16.h is missing, CuPy "
                               f"finds no CUDA headers: set CUDA_PATH to the toolkit of CuPy's CUDA version.") from exc
        with _lock:
            function = _functions.setdefault(key, function)
    return function


def check_arguments(name: str, function) -> None:
    """Raise TypeError unless the argument table of kernel `name` (gpuconv/_kernel_params.py) lists the
    parameters of the emulator's `function`, compiled from its source, by name, order and type."""
    table = _kernel_params.KERNELS.get(_kernel_params.function_name(name))
    if table is None:
        raise TypeError(f"kernel {name} has no argument table: add it to gpuconv/_kernel_params.py")
    table.check(name, function.parameter_names, function.signature)


def _build(file: str, device_kind: str):
    names = KERNEL_SOURCES[file]
    path = CUDA_DIR / file
    if device_kind == "cuda":
        import cupy

        # RawModule's path= takes a cubin, not source: hand it the code; includes resolve via -I.
        return cupy.RawModule(code=_cupy_code(path), options=CUPY_OPTIONS, name_expressions=names)
    from gpuconv.emulator import Module

    return Module(path=str(path), options=NVRTC_OPTIONS, name_expressions=names)


def _cupy_code(path: Path) -> str:
    """The source of path plus a last line with the digest of cuda/*.cuh: CuPy's kernel cache keys on
    the code and the options, not on #included files, so an edited header would load a stale binary."""
    headers = b"".join(header.read_bytes() for header in sorted(CUDA_DIR.glob("*.cuh")))
    return f"{path.read_text()}\n// cuda/*.cuh sha256 {hashlib.sha256(headers).hexdigest()}\n"
