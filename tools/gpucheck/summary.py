"""The check's summary, read from the steps' outputs and result files: machine and versions, each
step's status and time, the kernel build table's totals, pytest's totals and failures, each
sanitizer's error count and the driver's kernel coverage, the benchmark against the issue's
targets, and the host cost per call."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .run import OK, Outcome

# Issue 9's targets (float32, H200).
PER_CALL_GEOMEAN = 1.0       # gpuconv/cuda vs torch-cuda (TF32 off), geometric mean
PER_CALL_MIN = 0.5           # no layer below this
GEMM_SHARE = 0.70            # kernel-only implicit GEMM vs cuBLAS of the same shape, B-D at batch 128
COPY_SHARE = 0.70            # pooling vs device-to-device copy, at batch 128
BATCH8_CONV = tuple("ABCDEFGH")
BATCH128_CONV = ("B128", "C128", "D128")
BATCH128_POOL = ("max3_128", "avg3_128")


def marker_json(output: str, marker: str) -> dict | None:
    """The JSON after the last line starting with `marker` (the steps' machine-readable line)."""
    found = None
    for line in output.splitlines():
        if line.startswith(marker + " "):
            try:
                found = json.loads(line[len(marker) + 1:])
            except json.JSONDecodeError:
                found = None
    return found


def environment_lines(output: str) -> list[str]:
    facts = marker_json(output, "GPUCHECK-ENV")
    if not facts:
        return ["environment: no report (see the -env file)"]
    gpu = facts.get("gpu") or facts.get("gpu_error") or "no GPU"
    return [f"GPU: {gpu}, compute capability {facts.get('compute_capability', '-')}, {facts.get('sm_count', '-')} SMs, "
            f"opt-in shared memory {facts.get('shared_optin_bytes', '-')} B per block",
            f"versions: driver CUDA {facts.get('driver_cuda', '-')}, runtime CUDA {facts.get('runtime_cuda', '-')}, "
            f"NVRTC {facts.get('nvrtc', '-')}, CuPy {facts.get('cupy', '-')}, torch {facts.get('torch', '-')} "
            f"(CUDA {facts.get('torch_cuda', '-')}, cuDNN {facts.get('cudnn', '-')}), NumPy "
            f"{facts.get('pkg_numpy', '-')}, Python {facts.get('python', '-')}",
            f"gpuconv {facts.get('gpuconv', '-')}: backends {', '.join(facts.get('backends', [])) or '-'}; "
            f"{facts.get('kernels', '-')} kernels in {facts.get('kernel_files', '-')} files"]


def build_lines(output: str) -> list[str]:
    report = marker_json(output, "GPUCHECK-BUILD")
    if not report:
        return ["build: no report"]
    kernels = report["kernels"]
    line = (f"build ({report['device']}): {len(kernels)} of {report['expected']} kernels in "
            f"{sum(report['build_seconds'].values()):.1f} s")
    lines = [line]
    if kernels and "num_regs" in kernels[0]:
        worst = max(kernels, key=lambda row: row["num_regs"])
        local = [row["kernel"] for row in kernels if row["local_size_bytes"]]
        lines[0] += (f"; registers up to {worst['num_regs']} ({worst['kernel']}); local memory (spills/stack): "
                     f"{', '.join(local) or 'none'}")
    lines += [f"  build FAILED {file}: {message.splitlines()[0][:160]}" for file, message in report["errors"].items()]
    return lines


_PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed|warnings?)\b")
_COLLECTED = re.compile(r"(\d+(?:/\d+)? tests? collected(?: \(\d+ deselected\))?)")
_FTZ = re.compile(r"compares float32 subnormals by the ([\w-]+) rule")


def pytest_lines(output: str) -> list[str]:
    tail = [line for line in output.splitlines() if line.strip()][-1:] or [""]
    collected = _COLLECTED.search(tail[0])
    counts = collected.group(1) if collected else ", ".join(f"{n} {what}"
                                                            for n, what in _PYTEST_COUNTS.findall(tail[0]))
    lines = [f"pytest -m gpu: {counts or 'no totals (see the -pytest file)'}"]
    lines += [f"  {line.strip()[:200]}" for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    ftz = _FTZ.search(output)
    if ftz:
        lines.append(f"  max_pool2d of float32 subnormals on this GPU: the {ftz.group(1)} rule")
    return lines


_ERRORS = re.compile(r"ERROR SUMMARY: (\d+) errors?")


def sanitizer_lines(outcomes: list[Outcome]) -> list[str]:
    lines = []
    for outcome in outcomes:
        errors = _ERRORS.findall(outcome.output)
        verdict = f"{errors[-1]} errors" if errors else "no ERROR SUMMARY"
        lines.append(f"{outcome.step.name}: {verdict} ({outcome.status}, {outcome.seconds:.0f} s)")
        coverage = marker_json(outcome.output, "GPUCHECK-DRIVER")
        if coverage:
            lines.append(f"  driver on {coverage['backend']}: {coverage['launches']} launches, {coverage['launched']} "
                         f"of {coverage['kernels']} kernel instantiations; not launched: "
                         f"{', '.join(coverage['not_launched']) or 'none'}; gradient methods: "
                         f"{', '.join(coverage['gradient_methods']) or 'none'}")
    return lines


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def bench_lines(path: Path) -> list[str]:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return [f"bench: no result file ({exc})"]
    cases = {case["layer"]: case for case in document.get("cases", []) if case["dtype"] == "float32"}
    ours = "gpuconv/cuda"
    lines = []
    if not any(ours in case["results"] for case in cases.values()):
        lines.append(f"bench: no {ours} results (measured: {', '.join(document['contenders']['measured'])})")
    else:
        for peer in ("torch-cuda", "torch-cuda-tf32", "torch-cuda-fp16", "cupyx"):
            for group, names in (("A-H batch 8", BATCH8_CONV), ("B-D batch 128", BATCH128_CONV)):
                ratios = {n: cases[n]["ratios"].get(ours, {}).get(peer) for n in names if n in cases}
                ratios = {n: r for n, r in ratios.items() if r}
                if not ratios:
                    continue
                worst = min(ratios, key=ratios.get)
                line = (f"per call vs {peer}, {group}: geomean {_geomean(list(ratios.values())):.2f}x, "
                        f"min {ratios[worst]:.2f}x ({worst})")
                if peer == "torch-cuda":
                    met = _geomean(list(ratios.values())) >= PER_CALL_GEOMEAN and ratios[worst] >= PER_CALL_MIN
                    verdict = "met" if met else "MISSED"
                    line += f" [target >= {PER_CALL_GEOMEAN}x, none below {PER_CALL_MIN}x: {verdict}]"
                lines.append(line)
        for names, what, target in ((BATCH128_CONV, "kernel-only implicit GEMM vs cuBLAS", GEMM_SHARE),
                                    (BATCH128_POOL, "pooling vs device-to-device copy", COPY_SHARE)):
            shares = {}
            for name in names:
                figures = cases.get(name, {}).get("results", {}).get(ours, {})
                share = (figures.get("kernel") or {}).get("ceiling_share") or figures.get("ceiling_share")
                if share:
                    shares[name] = share
            if shares:
                text = ", ".join(f"{n} {s:.0%}" for n, s in shares.items())
                met = min(shares.values()) >= target
                lines.append(f"{what}: {text} [target >= {target:.0%}: {'met' if met else 'MISSED'}]")
    lines += [f"  bench problem: {p}" for p in document.get("problems", [])]
    return lines


def overhead_lines(path: Path) -> list[str]:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return [f"host cost: no result file ({exc})"]
    smoke = " (smoke sizes and one call: the figures mean nothing)" if document["settings"].get("smoke") else ""
    lines = []
    for entry in document["ops"]:
        for goal in entry["goals"]:
            lines.append(f"host cost {entry['op']}: {goal['goal']}: {goal['text']} "
                         f"{'met' if goal['met'] else 'MISSED'}{smoke}")
    return lines or ["host cost: no goal measured (no peer or launch path ran)"]


def summary(outcomes: list[Outcome], out: Path, prefix: str, mode: str | None, seconds: float) -> list[str]:
    """mode: None for a GPU run, else "dry run" or "rehearsal" (no GPU: stand-ins where marked)."""
    by_name = {o.step.name: o for o in outcomes}
    lines = [f"gpuconv gpu-check {prefix}" + (f" ({mode.upper()}: no GPU here; stand-ins where marked)" if mode else "")
             + f", {seconds:.0f} s"]
    if "environment" in by_name:
        lines += environment_lines(by_name["environment"].output)
    lines.append("steps:")
    lines += [f"  {o.step.name:<20} {o.status:<8} {o.seconds:6.1f} s"
              + (f"  exit {o.returncode}" if o.returncode not in (0, None) else "")
              + (f"  ({o.step.note})" if o.step.note else "") for o in outcomes]
    if "build" in by_name:
        lines += build_lines(by_name["build"].output)
    if "pytest" in by_name:
        lines += pytest_lines(by_name["pytest"].output)
    lines += sanitizer_lines([o for o in outcomes if o.step.name.startswith("sanitizer-")])
    lines += bench_lines(out / f"{prefix}.json")
    lines += overhead_lines(out / f"{prefix}-overhead.json")
    failed = [o.step.name for o in outcomes if o.status != OK]
    lines.append(f"result: {'every step ok' if not failed else 'NOT OK: ' + ', '.join(failed)}")
    return lines
