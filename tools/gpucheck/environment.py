"""Step "environment": the machine the check ran on. nvidia-smi, the driver, CUDA runtime and NVRTC
as CuPy sees them, CuPy, PyTorch and cuDNN, the device's SM count and opt-in shared memory,
compute-sanitizer and nvcc, and what gpuconv finds (backends, the options it hands NVRTC).
Works without a GPU (it says so). The last line, `GPUCHECK-ENV <json>`, is what the summary reads."""
from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys

MARKER = "GPUCHECK-ENV"
PACKAGES = ("numpy", "cupy-cuda13x", "cupy-cuda12x", "torch", "scipy", "pytest", "hypothesis")


def _run(argv, timeout=20) -> str:
    if shutil.which(argv[0]) is None:
        return f"{argv[0]}: not found on the PATH"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return (done.stdout + done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(argv)}: {exc}"


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


def cupy_facts() -> dict:
    try:
        import cupy
    except ImportError as exc:
        return {"cupy": f"not installed ({exc})"}
    facts = {"cupy": cupy.__version__}
    try:
        facts["nvrtc"] = ".".join(map(str, cupy.cuda.nvrtc.getVersion()))
        facts["runtime_cuda"] = _cuda_version(cupy.cuda.runtime.runtimeGetVersion())
        facts["driver_cuda"] = _cuda_version(cupy.cuda.runtime.driverGetVersion())
        device = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        attributes = device.attributes
        name = props["name"]
        facts.update(gpu=name.decode() if isinstance(name, bytes) else name,
                     compute_capability=f"{props['major']}.{props['minor']}",
                     sm_count=attributes["MultiProcessorCount"],
                     shared_optin_bytes=attributes.get("MaxSharedMemoryPerBlockOptin"),
                     shared_per_sm_bytes=attributes.get("MaxSharedMemoryPerMultiprocessor"),
                     l2_bytes=attributes.get("L2CacheSize"), memory_bytes=props["totalGlobalMem"],
                     devices=cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CuPy's CUDARuntimeError without a driver or a device
        facts["gpu_error"] = f"{type(exc).__name__}: {exc}"
    return facts


def torch_facts() -> dict:
    try:
        import torch
    except ImportError as exc:
        return {"torch": f"not installed ({exc})"}
    facts = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
             "torch_sees_gpu": torch.cuda.is_available()}
    if torch.cuda.is_available():
        facts["cudnn"] = torch.backends.cudnn.version()
    return facts


def gpuconv_facts() -> dict:
    import gpuconv
    from gpuconv import _kernels
    from gpuconv.backends import available_backends, unavailable_reasons

    return {"gpuconv": gpuconv.__version__, "backends": available_backends(), "unavailable": unavailable_reasons(),
            "cupy_options": list(_kernels.CUPY_OPTIONS), "nvrtc_options": list(_kernels.NVRTC_OPTIONS),
            "kernel_files": len(_kernels.KERNEL_SOURCES),
            "kernels": sum(len(names) for names in _kernels.KERNEL_SOURCES.values())}


def main() -> int:
    facts = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in PACKAGES:
        try:
            facts[f"pkg_{package}"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    print("== nvidia-smi")
    print(_run(["nvidia-smi"]))
    print(_run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                "--format=csv"]))
    print("== compute-sanitizer --version")
    print(_run(["compute-sanitizer", "--version"]))
    print("== nvcc --version")
    print(_run(["nvcc", "--version"]))
    facts.update(cupy_facts())
    facts.update(torch_facts())
    facts.update(gpuconv_facts())
    print("== facts")
    for key, value in facts.items():
        print(f"{key}: {value}")
    print(f"{MARKER} {json.dumps(facts, default=str)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
