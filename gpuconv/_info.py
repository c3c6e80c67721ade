"""`python -m gpuconv info`: versions, backends (and why the others are unavailable), the GPU,
CuPy/CUDA, NumPy's BLAS, the CUDA toolchain the emulator and the compile check use (g++, CUDA's
headers, NVRTC, nvcc) and the cache directories, as plain text (or JSON with --json)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

import gpuconv

from . import _kernels
from .backends import available_backends, unavailable_reasons
from .benchmark import environment


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def collect() -> dict:
    record = environment.record()
    return {
        "gpuconv": gpuconv.__version__,
        "python": record["python"],
        "platform": record["platform"],
        "backends_available": available_backends(),
        "backends_unavailable": unavailable_reasons(),
        "gpu": record["gpu"],
        "versions": {"numpy": np.__version__, **record["versions"]},
        "numpy_blas": record["cpu"]["numpy_blas"],
        "kernels": {"cuda_dir": str(_kernels.CUDA_DIR), "cupy_options": list(_kernels.CUPY_OPTIONS),
                    "nvrtc_options": list(_kernels.NVRTC_OPTIONS)},
        "toolchain": toolchain(),
        "cache_directories": _cache_directories(),
    }


_EXTRA = "pip install 'gpuconv[emulator]'"


def toolchain() -> dict:
    """What the emulator and the compile check find here: version (and place) of each tool, or why not."""
    return {"g++": _gxx(), "cuda_headers": _cuda_headers(), "nvrtc": _nvrtc(), "nvcc": _nvcc()}


def _gxx() -> str:
    from .emulator import _toolchain

    try:
        first_line = _toolchain.compiler_version().splitlines()[0]
    except (_toolchain.ToolchainMissing, OSError, subprocess.CalledProcessError) as exc:
        return f"not found ({exc})"
    return f"{first_line} ({_toolchain.compiler()})"


def _cuda_headers() -> str:
    directory = _kernels.CUDA_INCLUDE_DIR
    if directory is None:
        return f"not found: no cuda_fp16.h ({_EXTRA}, or set CUDA_PATH)"
    version = None
    for header in ("cuda_runtime_api.h", "cuda.h"):
        path = Path(directory) / header
        text = path.read_text(errors="replace") if path.is_file() else ""
        found = re.search(r"#define\s+CUDART?_VERSION\s+(\d+)", text)
        if found:
            number = int(found.group(1))
            version = f"CUDA {number // 1000}.{number % 1000 // 10}"
            break
    return f"{version or 'version unknown'} ({directory})"


def _nvrtc() -> list[str] | str:
    from . import _compile

    libraries = _compile._nvrtc_libraries()
    if not libraries:
        return f"not found ({_EXTRA})"
    return [f"NVRTC {lib.version}: {', '.join(sorted(lib.archs, key=lambda a: int(a[3:])))} ({lib.path})"
            for lib in libraries]


def _nvcc() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "not on the PATH (optional: the compile check uses NVRTC)"
    banner = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    release = re.search(r"release (\d+\.\d+)", banner)
    return f"{release.group(1) if release else 'version unknown'} ({nvcc})"


def _cache_directories() -> dict:
    dirs = {"cupy_kernel_cache": os.environ.get("CUPY_CACHE_DIR", str(Path.home() / ".cupy" / "kernel_cache"))}
    from .emulator._build import cache_path

    dirs["emulator_build_cache"] = str(cache_path())
    return dirs


def _print_text(info: dict) -> None:
    print(f"gpuconv {info['gpuconv']}  (Python {info['python']}, {info['platform']})")
    print(f"backends available: {', '.join(info['backends_available']) or 'none'}")
    for name, reason in info["backends_unavailable"].items():
        print(f"  {name} unavailable: {reason}")
    print("GPU:")
    for key, value in info["gpu"].items():
        print(f"  {key}: {value}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    blas = info["numpy_blas"]
    if isinstance(blas, dict):
        blas = (f"{blas['library']} {blas['version']} (kernel {blas['kernel']}, {blas['threads']} threads) "
                f"{blas['path']}")
    print(f"NumPy BLAS: {blas}")
    print("CUDA toolchain (the emulator and the compile check):")
    for key, value in info["toolchain"].items():
        for line in (value if isinstance(value, list) else [value]):
            print(f"  {key}: {line}")
    print(f"kernel sources: {info['kernels']['cuda_dir']}")
    print(f"options for CuPy: {' '.join(info['kernels']['cupy_options'])} (CuPy adds its CUDA headers)")
    print(f"NVRTC options (compile check, emulator): {' '.join(info['kernels']['nvrtc_options'])}")
    for key, value in info["cache_directories"].items():
        print(f"{key}: {value}")


def run(args) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        _print_text(info)
    return 0
