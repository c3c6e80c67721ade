"""Where the emulator's tools come from: g++ and CUDA's headers (vector_types.h, cuda_fp16.h).

CUDA headers are looked up in the pip wheels first (nvidia-cuda-runtime, -crt, -cccl put them
under site-packages/nvidia/cu13/include), then $CUDA_HOME / $CUDA_PATH, then /usr/local/cuda.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

HEADER_DIR = Path(__file__).resolve().parent
# cuda_fp16.h needs crt/host_defines.h (wheel nvidia-cuda-crt) and nv/target (nvidia-cuda-cccl).
_REQUIRED_HEADERS = ("vector_types.h", "cuda_fp16.h", "crt/host_defines.h", "nv/target")
_INSTALL_HINT = ("pip install nvidia-cuda-runtime nvidia-cuda-crt nvidia-cuda-cccl "
                 "(or gpuconv[emulator]), or install the CUDA toolkit and set CUDA_HOME")


class ToolchainMissing(RuntimeError):
    """g++ or the CUDA headers are not installed."""


def _wheel_include_dirs() -> list[Path]:
    try:
        import nvidia
    except ImportError:
        return []
    dirs = []
    for root in getattr(nvidia, "__path__", []):
        for sub in sorted(Path(root).glob("cu*/include")) + [Path(root) / "cuda_runtime" / "include"]:
            if sub.is_dir():
                dirs.append(sub)
    return dirs


def _toolkit_include_dirs() -> list[Path]:
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    return [Path(r) / "include" for r in roots if r and (Path(r) / "include").is_dir()]


def _complete_set(roots: list[Path]) -> tuple[str, ...] | None:
    """The directories among roots (and their cccl/ subfolders) that hold every required header."""
    search = [d for r in roots for d in (r, r / "cccl") if d.is_dir()]
    chosen: list[str] = []
    for header in _REQUIRED_HEADERS:
        found = next((d for d in search if (d / header).exists()), None)
        if found is None:
            return None
        if str(found) not in chosen:
            chosen.append(str(found))
    return tuple(chosen)


@functools.lru_cache(maxsize=None)
def cuda_include_dirs() -> tuple[str, ...]:
    """Include directories that together provide every header the emulator needs (one source:
    the pip wheels, or one toolkit; never a mix of versions)."""
    for roots in [_wheel_include_dirs()] + [[d] for d in _toolkit_include_dirs()]:
        found = _complete_set(roots) if roots else None
        if found:
            return found
    raise ToolchainMissing(f"CUDA headers ({', '.join(_REQUIRED_HEADERS)}) not found; {_INSTALL_HINT}")


@functools.lru_cache(maxsize=None)
def compiler() -> str:
    """Path of g++ ($GPUCONV_EMU_CXX overrides)."""
    cxx = os.environ.get("GPUCONV_EMU_CXX") or shutil.which("g++")
    if not cxx:
        raise ToolchainMissing("g++ not found on PATH; install it (e.g. apt-get install g++) or set GPUCONV_EMU_CXX")
    return cxx


@functools.lru_cache(maxsize=None)
def compiler_version() -> str:
    return subprocess.run([compiler(), "--version"], capture_output=True, text=True, check=True).stdout


def unavailable_reason() -> str | None:
    """None when the emulator can build kernels here, else what to install."""
    try:
        compiler()
        compiler_version()
        cuda_include_dirs()
    except (ToolchainMissing, OSError, subprocess.CalledProcessError) as exc:
        return str(exc)
    return None
