#!/usr/bin/env python3
"""`make gpu-check`: everything gpuconv checks on an NVIDIA GPU, in one run of at most 7 minutes.

Steps (tools/gpucheck/steps.py): the environment; every kernel built through CuPy with its
registers and spills; the `gpu` tests with GPUCONV_REQUIRE_GPU=1, beside compute-sanitizer
memcheck/racecheck/initcheck/synccheck over a driver that launches every kernel; the benchmark
against PyTorch (cuDNN, TF32 off and on, float16 channels_last) and cupyx with the ceilings; the host
cost per call. Each step is time-boxed: a failing or slow step never stops the next.

Results: at most 8 files in the folder given by --out or $GPUCONV_CHECK_OUT (default out/gpu-check),
named <gpu>-<YYYYMMDD>[-<what>]: .json (the benchmark runner's JSON), -check.txt (the summary,
printed last), -env.txt, -build.txt, -pytest.txt, -sanitizer.txt, -bench.txt, -overhead.json.
Commit the first two to bench/results/ after a run on the H200.

Without a usable GPU it says so and runs the dry run (also --dry-run): the same sequencing, time
boxes, files and summary, with every step that a CPU can run run for real (tools/gpucheck/steps.py).
--rehearse runs the GPU steps on a CPU with a stand-in CuPy whose kernels run in the emulator: run it
before a GPU session, to find what would fail for reasons other than the GPU.
Exit status 0 when every step is ok.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

from gpucheck import steps as plan  # noqa: E402
from gpucheck.run import run_steps  # noqa: E402
from gpucheck.summary import summary  # noqa: E402

DEFAULT_OUT = "out/gpu-check"
MAX_FILES = 8
# Result file -> the steps whose output it holds (the .json files are written by the steps).
TEXT_FILES = {"env": ("environment",), "build": ("build",), "pytest": ("pytest",),
              "sanitizer": tuple(f"sanitizer-{tool}" for tool in plan.SANITIZER_TOOLS), "bench": ("bench",)}


def gpu_unavailable_reason() -> str | None:
    """Why no GPU run is possible here (None: there is a GPU that CuPy can use)."""
    probe = "import cupy; n = cupy.cuda.runtime.getDeviceCount(); print(n); assert n > 0"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "probing CuPy for a device took over 60 s"
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"CuPy finds no usable NVIDIA GPU ({last})"
    return None


def gpu_slug() -> str:
    """'h200' for an 'NVIDIA H200' (from nvidia-smi), else 'gpu'."""
    try:
        name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout.splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "gpu"
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w and w not in ("nvidia", "tesla", "geforce")]
    return "-".join(words[:2]) or "gpu"


def write_results(outcomes, out: Path, prefix: str) -> list[Path]:
    by_name = {o.step.name: o for o in outcomes}
    written = []
    for what, names in TEXT_FILES.items():
        parts = []
        for name in names:
            if name in by_name:
                o = by_name[name]
                parts.append(f"===== {name}: {o.status} after {o.seconds:.1f} s: {' '.join(o.step.argv)}\n{o.output}")
        path = out / f"{prefix}-{what}.txt"
        path.write_text("\n".join(parts))
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("GPUCONV_CHECK_OUT") or DEFAULT_OUT),
                        help=f"folder for the result files (default $GPUCONV_CHECK_OUT or {DEFAULT_OUT})")
    parser.add_argument("--dry-run", action="store_true", help="the dry run even where there is a GPU")
    parser.add_argument("--rehearse", action="store_true",
                        help="the GPU steps on this CPU with a stand-in CuPy (kernels in the emulator): a pre-flight")
    parser.add_argument("--budget", type=float, default=plan.BUDGET_S, help="seconds for the whole run")
    args = parser.parse_args(argv)
    started = time.monotonic()
    reason = None if args.dry_run or args.rehearse else gpu_unavailable_reason()
    dry_run = args.dry_run or reason is not None
    if reason:
        print(f"gpu-check: {reason}: this machine cannot run the GPU check; running the dry run instead")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    kind = "dryrun" if dry_run else "rehearsal" if args.rehearse else gpu_slug()
    prefix = f"{kind}-{date}"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    make = plan.dry_run_steps if dry_run else plan.rehearsal_steps if args.rehearse else plan.gpu_steps
    steps = make(prefix, out.resolve())
    for step in steps:
        first = [step.env.pop("GPUCHECK_PYTHONPATH_FIRST")] if "GPUCHECK_PYTHONPATH_FIRST" in step.env else []
        paths = [*first, str(REPO), os.environ.get("PYTHONPATH", "")]
        step.env["PYTHONPATH"] = os.pathsep.join(paths).rstrip(os.pathsep)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        outcomes = run_steps(steps, Path(scratch), started + args.budget, REPO)
    written = write_results(outcomes, out, prefix)
    lines = summary(outcomes, out, prefix, "dry run" if dry_run else "rehearsal" if args.rehearse else None,
                    time.monotonic() - started)
    check = out / f"{prefix}-check.txt"
    check.write_text("\n".join(lines) + "\n")
    ours = sorted({*written, check, *out.glob(f"{prefix}*.json")})
    assert len(ours) <= MAX_FILES, f"{len(ours)} result files: {ours}"
    print(f"gpu-check: {len(ours)} result files in {out}: {', '.join(p.name for p in ours)}")
    print("\n".join(lines))
    return 0 if lines[-1].startswith("result: every step ok") else 1


if __name__ == "__main__":
    sys.exit(main())
