"""The README's GPU section, generated from a gpu-check run's benchmark JSON (the runner's own, e.g.
bench/results/h200-YYYYMMDD.json): the hardware, versions and date, one row per layer with
gpuconv's time per call and kernel-only time, each peer's time and the speed ratio to it, and the
issue's targets as the check's summary states them.

    python3 tools/gpucheck/readme_section.py bench/results/h200-YYYYMMDD.json > section.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: tools/ on the path, for the package's imports
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gpucheck.summary import bench_lines
else:
    from .summary import bench_lines

OURS = "gpuconv/cuda"


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3g}"


def _peers(cases: list[dict]) -> list[str]:
    seen: list[str] = []
    for case in cases:
        seen += [p for p in case["ratios"].get(OURS, {}) if p not in seen]
    return seen


def _row(case: dict, peers: list[str]) -> str:
    ours = case["results"].get(OURS)
    if ours is None:
        failed = case["errors"].get(OURS, "not measured").splitlines()[0]
        cells = [case["layer"], case["shape"], f"failed: {failed}"] + [""] * (3 + 2 * len(peers))
        return "| " + " | ".join(cells) + " |"
    kernel = ours.get("kernel") or {}
    share = kernel.get("ceiling_share") or ours.get("ceiling_share")
    cells = [case["layer"], case["shape"], ours.get("algorithm", "-"), _ms(ours["time_s"]), _ms(kernel.get("time_s")),
             "-" if share is None else f"{share:.0%}"]
    for peer in peers:
        ratio = case["ratios"][OURS].get(peer)
        cells += [_ms(case["results"].get(peer, {}).get("time_s")),
                  "-" if ratio is None else f"{ratio:.2f}" + ("!" if peer in case["disagreements"] else "")]
    return "| " + " | ".join(cells) + " |"


def section(path: Path) -> str:
    document = json.loads(path.read_text())
    env, gpu = document["environment"], document["environment"]["gpu"]
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    lines = [f"### {gpu.get('name', 'no GPU')}, {env['date_utc'][:10]}", "",
             f"Measured by `make gpu-check` ({path}): {gpu.get('name', 'no GPU')}, compute capability "
             f"{gpu.get('compute_capability', '?')}, driver CUDA {gpu.get('driver_cuda_version', '?')}, runtime "
             f"CUDA {gpu.get('runtime_cuda_version', '?')}" + (f", cuDNN {gpu['cudnn_version']}" if "cudnn_version"
                                                               in gpu else "") + f"; {versions}.",
             "Time per call: the median call of the best round; kernel: gpuconv's kernels alone (CUDA events "
             "around each launch) and their share of the ceiling (cuBLAS GEMM of the layer's implicit-GEMM "
             "shape; a device-to-device copy for pooling); **x peer** = the peer's time / gpuconv's (above 1: "
             "gpuconv is faster; ! where the results differ beyond the agreement tolerance).", ""]
    for dtype in dict.fromkeys(case["dtype"] for case in document["cases"]):
        cases = [case for case in document["cases"] if case["dtype"] == dtype]
        peers = _peers(cases)
        header = ["layer", "shape", "algorithm", "gpuconv ms", "kernel ms", "kernel of ceiling"]
        header += [cell for p in peers for cell in (f"{p} ms", f"x {p}")]
        lines += [f"{dtype}:", "", "| " + " | ".join(header) + " |", "|---|---|---|" + "---:|" * (len(header) - 3)]
        lines += [_row(case, peers) for case in cases] + [""]
    lines += ["Targets (issue 9):", ""] + [f"- {line.strip()}" for line in bench_lines(path)]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(section(Path(argv[0])), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
