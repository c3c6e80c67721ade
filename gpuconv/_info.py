"""`python -m gpuconv info`: versions, backends (and why the others are unavailable), the GPU,
CuPy/CUDA, NumPy's BLAS and the cache directories, as plain text (or JSON with --json)."""
from __future__ import annotations

import json
import os
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
        "cache_directories": _cache_directories(),
    }


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
