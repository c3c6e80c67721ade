"""Sanitizer modes find what plain emulation cannot: out-of-bounds global and shared accesses
(ASan + UBSan) and races such as a histogram without atomicAdd (TSan). Each planted bug must be
reported, and its correct twin must run clean. The sanitized kernels run in a child Python
process started with gpuconv.emulator.sanitizer_env(mode); its output is captured and checked."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.emulator, pytest.mark.sanitizer]

CHILD = Path(__file__).with_name("sanitizer_child.py")


def run_child(emulator, mode: str, *kernels: str) -> subprocess.CompletedProcess:
    env = emulator.sanitizer_env(mode)
    env["PYTHONPATH"] = ":".join(filter(None, [str(CHILD.parent), env.get("PYTHONPATH", "")]))
    return subprocess.run(emulator.sanitizer_command([sys.executable, str(CHILD), *kernels], mode), env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kernel,report,block", [
    ("neighbour_oob", r"ERROR: AddressSanitizer: heap-buffer-overflow", 1),   # last thread of the grid
    ("shift_dynamic_shared_oob", r"ERROR: AddressSanitizer: use-after-poison", 0),  # last thread of a block
    ("shift_static_shared_oob", r"runtime error: index 64 out of bounds for type 'float \[64\]'", 0),
])
def test_address_sanitizer_reports_out_of_bounds(emulator, kernel, report, block):
    proc = run_child(emulator, "address", kernel)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert re.search(report, proc.stderr), proc.stderr[-3000:]
    assert f"happened in kernel '{kernel}', block ({block},0,0), thread (63,0,0)" in proc.stderr, proc.stderr[-3000:]
    assert "RESULT" not in proc.stdout


@pytest.mark.parametrize("kernel", ["neighbour", "shift_shared"])
def test_address_sanitizer_accepts_in_bounds_twins(emulator, kernel):
    proc = run_child(emulator, "address", kernel)
    assert proc.returncode == 0 and "RESULT" in proc.stdout, proc.stderr[-3000:]
    assert "AddressSanitizer" not in proc.stderr and "runtime error" not in proc.stderr


@pytest.mark.parametrize("kernel", ["histogram_racy", "shared_tree_sum_racy"])
def test_thread_sanitizer_reports_races(emulator, kernel):
    proc = run_child(emulator, "thread", kernel)
    assert "WARNING: ThreadSanitizer: data race" in proc.stderr, proc.stdout + proc.stderr[-3000:]
    assert f"'kernel '{kernel}', block (" in proc.stderr   # the racing fibers are named CUDA threads
    assert proc.returncode != 0


@pytest.mark.parametrize("kernel", ["histogram_atomic", "shared_tree_sum"])
def test_thread_sanitizer_accepts_correct_synchronisation(emulator, kernel):
    proc = run_child(emulator, "thread", kernel)
    assert proc.returncode == 0 and "RESULT" in proc.stdout, proc.stderr[-3000:]
    assert "ThreadSanitizer" not in proc.stderr


# ---- tensor cores (kernels/tensor_cores.cu): wmma loads/stores and async copies are made by the CUDA
# thread that issues them, so the sanitizers see and name them.
def test_address_sanitizer_reports_a_wmma_load_past_the_end(emulator):
    proc = run_child(emulator, "address", "load_past_the_end")
    assert proc.returncode != 0 and re.search(r"ERROR: AddressSanitizer: heap-buffer-overflow", proc.stderr), \
        proc.stderr[-3000:]
    assert re.search(r"happened in kernel 'load_past_the_end', block \(0,0,0\), thread \(\d+,0,0\)", proc.stderr)


def test_thread_sanitizer_reports_reads_of_other_threads_data_without_a_barrier(emulator):
    """An async copy read by another thread, and a wmma store read by another warp, with no barrier
    in between: one child runs both (TSan reports and goes on); each kernel's race is named."""
    kernels = ("neighbour_copy", "store_then_other_warp_reads")
    proc = run_child(emulator, "thread", *kernels)
    assert proc.stderr.count("WARNING: ThreadSanitizer: data race") >= 2, proc.stdout + proc.stderr[-3000:]
    for kernel in kernels:
        assert f"'kernel '{kernel}', block (" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("mode", ["address", "thread"])
def test_sanitizers_accept_correct_tensor_core_kernels(emulator, mode):
    kernels = ("warp_gemm", "streamed_sum<3>", "neighbour_copy_synced", "store_then_other_warp_reads_synced")
    proc = run_child(emulator, mode, *kernels)
    assert proc.returncode == 0 and proc.stdout.count("RESULT") == len(kernels), proc.stderr[-3000:]
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr[-3000:]


def test_sanitizer_command_disables_randomisation_only_where_tsan_needs_it(emulator, monkeypatch):
    from gpuconv.emulator import _sanitizers

    argv = [sys.executable, "-c", "pass"]
    monkeypatch.setattr(_sanitizers, "_mmap_random_bits", lambda: 28)
    assert emulator.sanitizer_command(argv, "thread") == argv
    monkeypatch.setattr(_sanitizers, "_mmap_random_bits", lambda: 32)
    assert emulator.sanitizer_command(argv, "address") == argv
    command = emulator.sanitizer_command(argv, "thread")
    if command != argv:
        assert command[:3] == ["setarch", platform.machine(), "-R"] and command[3:] == argv
        assert subprocess.run(command, timeout=60).returncode == 0


def test_sanitized_module_refuses_a_process_without_the_runtime(emulator, monkeypatch):
    monkeypatch.setenv("GPUCONV_EMU_SANITIZER", "address")
    with pytest.raises(emulator.EmulatorError, match=r"sanitizer_env\('address'\)"):
        emulator.Module(code='extern "C" __global__ void k(float* y) { y[0] = 1; }')
