"""The conv, pooling and padding kernels and their gradients under ASan+UBSan and under TSan, in the
emulator, in a child process.

The child runs all of tests/test_cuda_kernels.py, tests/test_cuda_grad_kernels.py and
tests/test_cuda_tensor_cores.py (its float16 parity cases in three thread orders, both TF32 and
float16 tile edges) with the sanitizer runtime
preloaded (gpuconv.emulator.sanitizer_env); its whole output is captured and must hold no report:
ASan/UBSan catch out-of-bounds global and shared accesses, TSan catches races between the
threads of a block (a missing barrier, a non-atomic read-modify-write).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpuconv.backends import BackendUnavailable, get_backend

pytestmark = [pytest.mark.emulator, pytest.mark.sanitizer, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
KERNEL_TESTS = ("test_cuda_kernels.py", "test_cuda_grad_kernels.py", "test_cuda_tensor_cores.py")
REPORT_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "WARNING: ThreadSanitizer", "ERROR: LeakSanitizer",
                  "SUMMARY: UndefinedBehaviorSanitizer")


@pytest.mark.parametrize("mode", ["address", "thread"])
def test_kernels_have_no_sanitizer_reports(mode):
    try:
        get_backend("cuda-emu")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    from gpuconv.emulator import sanitizer_command, sanitizer_env

    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-m", "not gpu",
           *(str(TESTS / name) for name in KERNEL_TESTS)]
    proc = subprocess.run(sanitizer_command(cmd, mode), env=sanitizer_env(mode), capture_output=True, text=True,
                          timeout=900, cwd=TESTS.parent)
    output = proc.stdout + proc.stderr
    reports = [line for line in output.splitlines() if any(m in line for m in REPORT_MARKERS)]
    assert not reports, f"{mode} sanitizer reports:\n" + "\n".join(reports[:20]) + "\n" + output[-4000:]
    assert proc.returncode == 0, f"child pytest under {mode} failed (exit {proc.returncode}):\n{output[-4000:]}"
    assert " passed" in output and " skipped" not in output, output[-2000:]
