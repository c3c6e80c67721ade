"""What `make gpu-check` runs: the steps, their time boxes and groups, on a GPU and in the dry run.

On an H200 (no network; python3 with CuPy, PyTorch, pytest, hypothesis; gpuconv from this checkout
through PYTHONPATH) the whole run must take at most 7 minutes (BUDGET_S): the time boxes below add
up to less, and the pytest step runs beside the four sanitizers. Every step is a subprocess; its
output is kept even when it fails or times out.

The rehearsal (--rehearse) runs the GPU steps on a CPU with a stand-in CuPy whose kernels run in the
emulator (fake_cupy/): a pre-flight for a GPU session. The dry run (no GPU, or --dry-run) runs every
step's logic that a CPU can: the environment report,
the kernel builds for the emulator, the selection of the GPU tests (collected, not run), the
sanitizer driver on the emulator (without compute-sanitizer), the benchmark's and the overhead
report's --smoke paths; the sanitizer tools' outputs are stand-ins in their format.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .run import Step

BUDGET_S = 420
SANITIZER_TOOLS = ("memcheck", "racecheck", "initcheck", "synccheck")
TOOLS = Path(__file__).resolve().parent

# Benchmark: layers A-H at batch 8, B-D at batch 128, max/avg pooling; gpuconv on "cuda" against
# torch-cuda (cuDNN, TF32 off), torch-cuda-tf32, torch-cuda-fp16 (channels_last) and cupyx.
BENCH_LAYERS = "A,B,C,D,E,F,G,H,B128,C128,D128,max3,avg3,max2,avg2"
BENCH_PEERS = "torch-cuda,torch-cuda-tf32,torch-cuda-fp16,cupyx"
# float32 first (the runner orders cases by dtype): the tensor-core cases (float16, and float32 with
# precision="tf32", on A-D and B-D at batch 128) come after, and a time box cuts those first.
BENCH_DTYPES = "float32,float16,tf32"


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def gpu_steps(prefix: str, out: Path) -> list[Step]:
    sanitized = _python(str(TOOLS / "sanitize_driver.py"), "--backend", "cuda")
    return [
        Step("environment", _python(str(TOOLS / "environment.py")), 30),
        Step("build", _python(str(TOOLS / "build.py"), "--device", "cuda"), 100),
        Step("pytest", _python("-m", "pytest", "-m", "gpu", "-q", "-rfEw", "-p", "no:cacheprovider", "tests"), 150,
             group="tests", env={"GPUCONV_REQUIRE_GPU": "1"}),
        *[Step(f"sanitizer-{tool}", ["compute-sanitizer", "--tool", tool, "--error-exitcode", "99",
                                     *(["--racecheck-report", "all"] if tool == "racecheck" else []), *sanitized],
               120, group="tests") for tool in SANITIZER_TOOLS],
        Step("bench", _python("-m", "gpuconv", "bench", "--backend", "cuda", "--layers", BENCH_LAYERS,
                              "--dtype", BENCH_DTYPES, "--peers", BENCH_PEERS, "--kernel-time", "--repeat", "5",
                              "--rounds", "3", "--min-time", "0.2", "--json", str(out / f"{prefix}.json")), 110),
        Step("overhead", _python("-m", "gpuconv", "bench", "--overhead", "--rounds", "5",
                                 "--json", str(out / f"{prefix}-overhead.json")), 25),
    ]


FAKE_CUPY = TOOLS / "fake_cupy"


def rehearsal_steps(prefix: str, out: Path) -> list[Step]:
    """The GPU steps on a CPU with the stand-in CuPy of fake_cupy/ (kernels in the emulator): the
    sanitizer driver without compute-sanitizer, the benchmark and the host cost at --smoke sizes.
    A pre-flight for a GPU session: the GPU tests and the launch path's own code run."""
    steps = gpu_steps(prefix, out)
    for step in steps:
        if step.name.startswith("sanitizer-"):
            step.argv = step.argv[step.argv.index(sys.executable):]
            step.note = "rehearsal: the driver without compute-sanitizer"
        elif step.name in ("bench", "overhead"):
            step.argv = [*step.argv, "--smoke"]
            step.timeout_s = max(step.timeout_s, 120)
            step.note = "rehearsal: --smoke"
        step.env["GPUCHECK_PYTHONPATH_FIRST"] = str(FAKE_CUPY)
    return steps


def _stand_in(tool: str) -> list[str]:
    """A sanitizer tool's report in its format, for the dry run's summary to read."""
    text = (f"========= COMPUTE-SANITIZER\\n(dry run: compute-sanitizer --tool {tool} would run the driver "
            f"on the GPU)\\n========= ERROR SUMMARY: 0 errors")
    return _python("-c", f"print('{text}')")


def dry_run_steps(prefix: str, out: Path) -> list[Step]:
    note = "dry run"
    return [
        Step("environment", _python(str(TOOLS / "environment.py")), 60),
        Step("build", _python(str(TOOLS / "build.py"), "--device", "emu"), 240, note="dry run: emulator builds"),
        Step("pytest", _python("-m", "pytest", "-m", "gpu", "-q", "--collect-only", "-p", "no:cacheprovider", "tests"),
             120, group="tests", note="dry run: the GPU tests collected, not run"),
        Step("sanitizer-memcheck", _python(str(TOOLS / "sanitize_driver.py"), "--backend", "cuda-emu"), 180,
             group="tests", note="dry run: the driver on the emulator, no compute-sanitizer"),
        *[Step(f"sanitizer-{tool}", _stand_in(tool), 30, group="tests", note=f"{note}: stand-in output")
          for tool in SANITIZER_TOOLS[1:]],
        Step("bench", _python("-m", "gpuconv", "bench", "--smoke", "--backend", "numpy", "--layers", "B,H,max2",
                              "--peers", "none", "--json", str(out / f"{prefix}.json")), 120,
             note="dry run: --smoke on numpy"),
        Step("overhead", _python("-m", "gpuconv", "bench", "--overhead", "--smoke", "--backend", "numpy",
                                 "--json", str(out / f"{prefix}-overhead.json")), 120, note="dry run: --smoke"),
    ]
