"""Sanitizer modes: which one is on (GPUCONV_EMU_SANITIZER), its compiler flags, and the
environment a child Python process needs to load sanitized kernel libraries."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import shutil
import subprocess
import sys

from ._toolchain import compiler

MODES = ("none", "address", "thread")
_FLAGS = {
    "none": (),
    # ASan for out-of-bounds global/dynamic-shared accesses, UBSan's bounds check for static
    # shared arrays (they share one section, so ASan cannot put redzones between them).
    # UBSan stops at its first report, so the death callback can name the CUDA thread.
    "address": ("-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g"),
    "thread": ("-fsanitize=thread", "-g"),
}
_RUNTIME = {"address": ("libasan.so", "__asan_init"), "thread": ("libtsan.so", "__tsan_init")}
_OPTIONS = {
    # Python itself leaks by design; fiber stacks confuse use-after-return detection.
    "address": {"ASAN_OPTIONS": "detect_leaks=0:detect_stack_use_after_return=0:abort_on_error=0",
                "UBSAN_OPTIONS": "print_stacktrace=1"},
    "thread": {"TSAN_OPTIONS": "report_signal_unsafe=0"},
}


def sanitizer_mode() -> str:
    mode = os.environ.get("GPUCONV_EMU_SANITIZER", "none").strip().lower() or "none"
    if mode not in MODES:
        raise ValueError(f"GPUCONV_EMU_SANITIZER={mode!r}: must be one of {', '.join(MODES)}")
    return mode


def compile_flags(mode: str) -> tuple[str, ...]:
    return _FLAGS[mode]


@functools.lru_cache(maxsize=None)
def runtime_library(mode: str) -> str:
    """Absolute path of the sanitizer runtime that g++ links against."""
    name = _RUNTIME[mode][0]
    path = subprocess.run([compiler(), f"-print-file-name={name}"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not os.path.isabs(path):
        raise FileNotFoundError(f"g++ does not ship {name} (install the sanitizer runtime, e.g. libasan/libtsan)")
    return os.path.realpath(path)


def runtime_loaded(mode: str) -> bool:
    """Whether this process started with the sanitizer runtime (it must come first, via LD_PRELOAD)."""
    return mode == "none" or hasattr(ctypes.CDLL(None), _RUNTIME[mode][1])


def sanitizer_env(mode: str, base: dict | None = None) -> dict:
    """Environment for a child process (started as [sys.executable, ...]) that runs emulated
    kernels under `mode`: the runtime in LD_PRELOAD, GPUCONV_EMU_SANITIZER set, quiet options."""
    if mode not in MODES:
        raise ValueError(f"sanitizer mode {mode!r}: must be one of {', '.join(MODES)}")
    env = dict(os.environ if base is None else base)
    env["GPUCONV_EMU_SANITIZER"] = mode
    if mode == "none":
        return env
    env["LD_PRELOAD"] = " ".join(filter(None, [runtime_library(mode), env.get("LD_PRELOAD", "")]))
    for key, value in _OPTIONS[mode].items():
        env[key] = ":".join(filter(None, [value, env.get(key, "")]))
    return env


def sanitizer_command(argv: list[str], mode: str) -> list[str]:
    """argv to run under `mode`: for TSan, prefixed with `setarch <arch> -R` (no address
    randomisation) where the kernel randomises mmap more than GCC's TSan can map
    (vm.mmap_rnd_bits > 28 fails with "unexpected memory mapping")."""
    if mode == "thread" and shutil.which("setarch") and _mmap_random_bits() > 28:
        return ["setarch", platform.machine(), "-R", *argv]
    return list(argv)


def _mmap_random_bits() -> int:
    try:
        with open("/proc/sys/vm/mmap_rnd_bits") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def missing_runtime_message(mode: str) -> str:
    return (f"GPUCONV_EMU_SANITIZER={mode} needs the sanitizer runtime loaded first: start Python as "
            f"subprocess.run([sys.executable, ...], env=gpuconv.emulator.sanitizer_env({mode!r})) "
            f"(this process, {sys.executable}, was started without it)")
