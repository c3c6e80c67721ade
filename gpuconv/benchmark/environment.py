"""The record of the machine a run measured: CPU, threads, NumPy's BLAS and its kernel, the
environment variables that steer them, library versions, and the GPU when there is one.
Nothing here changes a setting; it only reads them."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys

from .._config import config

# Read and reported, never set: they choose BLAS kernels and thread counts.
STEERING_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                      "MKL_NUM_THREADS", "GPUCONV_NUM_THREADS", "GPUCONV_WORKSPACE_MB", "GPUCONV_BACKEND")
DISTRIBUTIONS = ("gpuconv", "numpy", "scipy", "torch", "cupy-cuda13x", "cupy-cuda12x", "cupy", "matplotlib",
                 "threadpoolctl", "pytest-benchmark")


def record() -> dict:
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": _cpu(),
        "environment_variables": {name: os.environ[name] for name in STEERING_VARIABLES if name in os.environ},
        "versions": _versions(),
        "gpu": _gpu(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu() -> dict:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"model": _cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "gpuconv_threads": config.num_threads}
    info.update(_blas())
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def _blas() -> dict:
    """NumPy's BLAS (library, version, kernel = threadpoolctl's 'architecture', threads) and every
    thread pool threadpoolctl sees in this process."""
    try:
        import threadpoolctl
    except ImportError:
        return {"numpy_blas": "unknown: threadpoolctl is not installed (pip install gpuconv[bench])"}
    import numpy

    pools = threadpoolctl.threadpool_info()
    numpy_dir = os.path.dirname(numpy.__file__)
    blas = [p for p in pools if p.get("user_api") == "blas"]
    mine = [p for p in blas if os.path.dirname(p["filepath"]).startswith(numpy_dir)] or blas
    numpy_blas = "none found" if not mine else {
        "library": mine[0].get("internal_api"), "version": mine[0].get("version"),
        "kernel": mine[0].get("architecture"), "threads": mine[0].get("num_threads"),
        "threading_layer": mine[0].get("threading_layer"), "path": mine[0].get("filepath")}
    return {"numpy_blas": numpy_blas, "thread_pools": pools}


def _versions() -> dict:
    versions = {}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


def _gpu() -> dict:
    try:
        import cupy

        device = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        name = props["name"]
        return {"name": name.decode() if isinstance(name, bytes) else name,
                "compute_capability": f"{props['major']}.{props['minor']}",
                "memory_bytes": props["totalGlobalMem"],
                "driver_cuda_version": _cuda_version(cupy.cuda.runtime.driverGetVersion()),
                "runtime_cuda_version": _cuda_version(cupy.cuda.runtime.runtimeGetVersion()),
                **_torch_gpu()}
    except ImportError:
        pass
    except Exception as exc:  # CuPy's CUDARuntimeError: no driver or no device
        return {"none": f"CuPy finds no usable GPU ({exc}); {_torch_state()}", **_torch_gpu()}
    return _torch_gpu() or {"none": f"no GPU found: CuPy is not installed and {_torch_state()}"}


def _torch_state() -> str:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    return "PyTorch sees a CUDA device" if torch.cuda.is_available() else "PyTorch sees no CUDA device"


def _torch_gpu() -> dict:
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {}
    major, minor = torch.cuda.get_device_capability(0)
    return {"torch_device": torch.cuda.get_device_name(0), "torch_compute_capability": f"{major}.{minor}",
            "torch_cuda_version": torch.version.cuda, "cudnn_version": torch.backends.cudnn.version()}
