"""`make gpu-check` (tools/gpu_check.py) without a GPU: its step runner on synthetic steps (order,
time boxes, failures, concurrency, the deadline), its summary on synthetic outputs, and the whole
dry run end to end (every step a CPU can run, the files, the summary printed last)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from gpucheck import summary  # noqa: E402
from gpucheck.run import FAILED, NOT_RUN, OK, TIMEOUT, Outcome, Step, run_steps  # noqa: E402


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _run(steps, tmp_path, budget=60.0):
    lines = []
    outcomes = run_steps(steps, tmp_path, time.monotonic() + budget, tmp_path, progress=lines.append)
    return {o.step.name: o for o in outcomes}, lines


def test_steps_run_in_order_and_a_failing_or_slow_step_never_stops_the_next(tmp_path):
    marker = tmp_path / "grandchild-ran"
    steps = [Step("first", _py("print('one')"), 20),
             Step("fails", _py("import sys; print('partial'); sys.exit(3)"), 20),
             # the step's own child must die with it at the time box (its whole process group)
             Step("hangs", _py("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                               + repr(f"import time, pathlib; time.sleep(3); pathlib.Path({str(marker)!r}).touch()")
                               + "]); print('started', flush=True); time.sleep(60)"), 1.5),
             Step("missing", ["/nonexistent/program"], 20),
             Step("last", _py("print('still ran')"), 20)]
    started = time.monotonic()
    outcomes, lines = _run(steps, tmp_path)
    assert [(name, o.status) for name, o in outcomes.items()] == [
        ("first", OK), ("fails", FAILED), ("hangs", TIMEOUT), ("missing", FAILED), ("last", OK)]
    assert outcomes["fails"].returncode == 3 and "partial" in outcomes["fails"].output
    assert "started" in outcomes["hangs"].output, "a timed-out step keeps what it printed"
    assert 1.4 < outcomes["hangs"].seconds < 5 and time.monotonic() - started < 20
    assert "cannot start /nonexistent/program" in outcomes["missing"].output
    assert outcomes["last"].output.strip() == "still ran"
    time.sleep(3.5)
    assert not marker.exists(), "the timed-out step's child process outlived its time box"
    assert lines[0].startswith("[gpu-check] first:") and "TIMEOUT" in " ".join(lines)


def test_a_group_runs_concurrently_and_the_deadline_stops_later_groups(tmp_path):
    short = _py("import time; time.sleep(0.6)")
    steps = [Step("a", short, 10, group="g"), Step("b", short, 10, group="g"), Step("c", short, 10, group="g"),
             Step("long", _py("import time; time.sleep(30)"), 30), Step("after", _py("print('late')"), 10)]
    started = time.monotonic()
    outcomes, _ = _run(steps, tmp_path, budget=2.5)
    assert [outcomes[n].status for n in "abc"] == [OK, OK, OK]
    assert max(outcomes[n].seconds for n in "abc") < 1.5, "three 0.6 s steps of one group should overlap"
    assert outcomes["long"].status == TIMEOUT, "a step's time box is cut to the run's deadline"
    assert time.monotonic() - started < 5
    assert outcomes["after"].status == NOT_RUN, "a group after the deadline must not start"


def _outcome(name, output, status=OK):
    return Outcome(Step(name, ["x"], 1), status, 0, 1.0, output)


def test_summary_reads_pytest_sanitizer_and_build_outputs():
    pytest_out = ("FAILED tests/test_x.py::test_a[cuda] - AssertionError: boom\nwarnings summary\n"
                  "UserWarning: max_pool2d on this GPU compares float32 subnormals by the flush-to-zero rule\n"
                  "2 failed, 297 passed, 1 skipped, 3 warnings in 61.2s")
    lines = summary.pytest_lines(pytest_out)
    assert lines[0] == "pytest -m gpu: 2 failed, 297 passed, 1 skipped, 3 warnings"
    assert "FAILED tests/test_x.py::test_a[cuda]" in lines[1]
    assert lines[-1].endswith("the flush-to-zero rule")
    assert summary.pytest_lines("tests/a.py::b\n\n298/1551 tests collected (1253 deselected) in 12.86s")[0] == \
        "pytest -m gpu: 298/1551 tests collected (1253 deselected)"
    driver = {"backend": "cuda", "launches": 300, "kernels": 3, "launched": 2, "not_launched": ["k<float, int>"],
              "gradient_methods": []}
    sanitizer = summary.sanitizer_lines([
        _outcome("sanitizer-memcheck", f"GPUCHECK-DRIVER {json.dumps(driver)}\n========= ERROR SUMMARY: 0 errors"),
        _outcome("sanitizer-racecheck", "========= ERROR SUMMARY: 2 errors", status=FAILED),
        _outcome("sanitizer-initcheck", "killed")])
    assert sanitizer[0] == "sanitizer-memcheck: 0 errors (ok, 1 s)"
    assert "2 of 3 kernel instantiations; not launched: k<float, int>" in sanitizer[1]
    assert sanitizer[2] == "sanitizer-racecheck: 2 errors (FAILED, 1 s)"
    assert sanitizer[3] == "sanitizer-initcheck: no ERROR SUMMARY (ok, 1 s)"
    build = {"device": "cuda", "expected": 2, "build_seconds": {"a.cu": 1.5, "b.cu": 2.0}, "errors": {},
             "kernels": [dict(file="a.cu", kernel="k1", num_regs=40, local_size_bytes=0),
                         dict(file="b.cu", kernel="k2", num_regs=167, local_size_bytes=16)]}
    (line,) = summary.build_lines(f"table\nGPUCHECK-BUILD {json.dumps(build)}")
    assert line == ("build (cuda): 2 of 2 kernels in 3.5 s; registers up to 167 (k2); local memory (spills/stack): k2")


def _case(layer, op, ours_s, peer_s, ours_share=None, kernel_share=None):
    results = {"gpuconv/cuda": {"time_s": ours_s, "ceiling_share": ours_share,
                                **({"kernel": {"ceiling_share": kernel_share}} if kernel_share else {})},
               "torch-cuda": {"time_s": peer_s}}
    return {"layer": layer, "op": op, "dtype": "float32", "results": results,
            "ratios": {"gpuconv/cuda": {"torch-cuda": peer_s / ours_s}}}


def test_summary_checks_the_benchmark_against_the_targets(tmp_path):
    cases = [_case(name, "conv2d", 1.0, 1.2) for name in "ABCDEFG"] + [_case("H", "conv2d", 1.0, 0.4)]
    cases += [_case(name, "conv2d", 1.0, 1.0, kernel_share=0.8) for name in ("B128", "C128", "D128")]
    cases += [_case("max3_128", "max_pool2d", 1.0, 1.0, ours_share=0.75), _case("avg3_128", "avg_pool2d", 1.0, 1.0,
                                                                                ours_share=0.5)]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"cases": cases, "contenders": {"measured": ["gpuconv/cuda", "torch-cuda"]},
                                "problems": []}))
    lines = summary.bench_lines(path)
    geomean = (1.2 ** 7 * 0.4) ** (1 / 8)
    assert lines[0] == (f"per call vs torch-cuda, A-H batch 8: geomean {geomean:.2f}x, min 0.40x (H) "
                        f"[target >= 1.0x, none below 0.5x: MISSED]")
    assert lines[1].endswith("B-D batch 128: geomean 1.00x, min 1.00x (B128) [target >= 1.0x, none below 0.5x: met]")
    assert lines[2] == "kernel-only implicit GEMM vs cuBLAS: B128 80%, C128 80%, D128 80% [target >= 70%: met]"
    assert lines[3] == "pooling vs device-to-device copy: max3_128 75%, avg3_128 50% [target >= 70%: MISSED]"


def test_readme_section_from_a_benchmark_document(tmp_path):
    """The README's GPU section: hardware and versions, a row per layer with gpuconv's times, each peer's
    time and ratio (! where they disagree), a failed layer, and the targets as the summary states them."""
    from gpucheck import readme_section

    cases = [_case(name, "conv2d", 0.002, 0.003, kernel_share=0.75) for name in ("B128", "C128", "D128")]
    cases[0]["results"]["gpuconv/cuda"].update(algorithm="implicit_gemm", kernel={"time_s": 0.0015,
                                                                                 "ceiling_share": 0.75})
    cases[1]["disagreements"] = {"torch-cuda": 0.1}
    failed = {"layer": "H", "dtype": "float32", "shape": "8x64x56x56 g64", "results": {"torch-cuda": {"time_s": 1e-3}},
              "ratios": {}, "errors": {"gpuconv/cuda": "CUDADriverError: launch failed\ntraceback"}}
    for case in cases:
        case.setdefault("disagreements", {})
        case.update(shape=f"{case['layer']} shape", errors={})
    document = {"environment": {"date_utc": "2026-12-06T10:00:00+00:00", "versions": {"cupy": "14.2.0"},
                                "gpu": {"name": "NVIDIA H200", "compute_capability": "9.0",
                                        "driver_cuda_version": "13.0", "runtime_cuda_version": "13.0",
                                        "cudnn_version": 91000}},
                "cases": cases + [failed], "contenders": {"measured": ["gpuconv/cuda", "torch-cuda"]}, "problems": []}
    path = tmp_path / "h200.json"
    path.write_text(json.dumps(document))
    text = readme_section.section(path)
    assert text.startswith("### NVIDIA H200, 2026-12-06\n")
    assert "compute capability 9.0, driver CUDA 13.0, runtime CUDA 13.0, cuDNN 91000; cupy 14.2.0." in text
    assert ("| layer | shape | algorithm | gpuconv ms | kernel ms | kernel of ceiling | torch-cuda ms | x torch-cuda |"
            in text)
    assert "| B128 | B128 shape | implicit_gemm | 2 | 1.5 | 75% | 3 | 1.50 |" in text
    assert "| C128 | C128 shape | - | 2 | - | 75% | 3 | 1.50! |" in text
    assert "| H | 8x64x56x56 g64 | failed: CUDADriverError: launch failed |  |  |  |  |  |" in text
    assert "- per call vs torch-cuda, B-D batch 128: geomean 1.50x, min 1.50x (B128) [target >= 1.0x" in text
    assert "- kernel-only implicit GEMM vs cuBLAS: B128 75%, C128 75%, D128 75% [target >= 70%: met]" in text
    assert readme_section.main([str(path)]) == 0


@pytest.mark.slow  # about 50 s (15 s of CPU): every step of the dry run runs for real
def test_the_dry_run_end_to_end(tmp_path):
    """No GPU here (or --dry-run): it says so, runs every step a CPU can, writes its 8 files into the
    folder of $GPUCONV_CHECK_OUT and prints the summary last. The sanitizer driver, on the emulator,
    launches every kernel instantiation of gpuconv._kernels.KERNEL_SOURCES."""
    from gpuconv import _kernels

    out = tmp_path / "results"
    env = {**os.environ, "GPUCONV_CHECK_OUT": str(out)}
    done = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--dry-run"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    files = sorted(p.name for p in out.iterdir())
    prefix = files[0].split("-bench.txt")[0]
    assert prefix.startswith("dryrun-") and len(files) == 8
    assert files == sorted(f"{prefix}{suffix}" for suffix in (".json", "-check.txt", "-env.txt", "-build.txt",
                                                              "-pytest.txt", "-sanitizer.txt", "-bench.txt",
                                                              "-overhead.json"))
    check = (out / f"{prefix}-check.txt").read_text()
    assert done.stdout.rstrip().endswith(check.rstrip()), "the summary must come last"
    assert check.rstrip().endswith("result: every step ok")
    expected = sum(len(names) for names in _kernels.KERNEL_SOURCES.values())
    assert f"build (emu): {expected} of {expected} kernels" in check
    assert f"{expected} of {expected} kernel instantiations; not launched: none" in check
    assert "pytest -m gpu: " in check and "tests collected" in check
    for step in ("environment", "build", "pytest", "sanitizer-memcheck", "sanitizer-racecheck", "bench", "overhead"):
        assert f"  {step} " in check
    assert json.loads((out / f"{prefix}.json").read_text())["cases"]
    assert "===== sanitizer-synccheck: ok" in (out / f"{prefix}-sanitizer.txt").read_text()
