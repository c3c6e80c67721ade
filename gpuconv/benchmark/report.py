"""Rendering of a run's document: the text report, the JSON file and the PNG bar chart."""
from __future__ import annotations

import json
from pathlib import Path


def text(document: dict) -> str:
    return "\n".join(_environment_lines(document) + [""] + table(document["cases"]) + [""]
                     + _summary_lines(document["summary"]) + _problem_lines(document["problems"])) + "\n"


def _environment_lines(document: dict) -> list[str]:
    env = document["environment"]
    cpu, blas = env["cpu"], env["cpu"]["numpy_blas"]
    lines = [f"Run: {env['date_utc']}, {env['platform']}, Python {env['python']}"
             + (" (smoke sizes: the figures mean nothing)" if document["settings"]["smoke"] else ""),
             f"CPU: {cpu['model']}, {cpu['usable_cpus']} usable of {cpu['logical_cpus']} logical CPUs; "
             f"threads: gpuconv {cpu['gpuconv_threads']}"
             + (f", torch {cpu['torch_threads']}" if "torch_threads" in cpu else "")]
    if isinstance(blas, dict):
        lines.append(f"NumPy BLAS: {blas['library']} {blas['version']}, kernel {blas['kernel']}, "
                     f"{blas['threads']} threads")
    else:
        lines.append(f"NumPy BLAS: {blas}")
    variables = env["environment_variables"]
    lines.append("Environment: " + (" ".join(f"{k}={v}" for k, v in variables.items()) or "no steering variable set"))
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    gpu = env["gpu"]
    if "name" in gpu:
        lines.append(f"GPU: {gpu['name']}, compute capability {gpu['compute_capability']}, "
                     f"driver CUDA {gpu['driver_cuda_version']}, runtime CUDA {gpu['runtime_cuda_version']}"
                     + (f", cuDNN {gpu['cudnn_version']}" if "cudnn_version" in gpu else ""))
    else:
        lines.append(f"GPU: {gpu.get('none', gpu)}")
    for name, ceiling in document["ceilings"].items():
        lines.append(f"Ceiling {name}: {ceiling['what']}: {ceiling['rate']:.4g} {ceiling['unit']} "
                     f"(spread {ceiling['spread']:.0%})")
    for label, reason in document["contenders"]["skipped"].items():
        lines.append(f"Skipped {label}: {reason}")
    return lines


def _peers(cases: list[dict]) -> list[str]:
    seen = []
    for case in cases:
        for by_peer in case["ratios"].values():
            seen += [p for p in by_peer if p not in seen]
    return seen


def table(cases: list[dict]) -> list[str]:
    """One row per case and contender (gpuconv's with the conv algorithm "auto" ran): time,
    spread of the best round, rate, share of the ceiling, the kernel-only time and its share of
    the ceiling where measured (gpuconv on a GPU, --kernel-time), and for gpuconv's rows the speed
    ratio to each peer."""
    peers = _peers(cases)
    kernels = any("kernel" in figures for case in cases for figures in case["results"].values())
    header = ["layer", "dtype", "shape", "contender", "time ms", "spread", "rate", "of ceiling"] + \
        (["kernel ms", "kernel of ceiling"] if kernels else []) + [f"x {p}" for p in peers]
    rows = [header]
    for case in cases:
        first = [case["layer"] + (" backward" if case.get("pass") == "backward" else ""), case["dtype"], case["shape"]]
        for label, figures in case["results"].items():
            share = figures["ceiling_share"]
            ratio_cells = [_ratio_cell(case, label, p) for p in peers]
            name = f"{label} [{figures['algorithm']}]" if "algorithm" in figures else label
            kernel = figures.get("kernel")
            kernel_cells = [] if not kernels else ["-", "-"] if kernel is None else [
                f"{kernel['time_s'] * 1e3:.4g}",
                "-" if kernel["ceiling_share"] is None else f"{kernel['ceiling_share']:.0%}"]
            rows.append(first + [name, f"{figures['time_s'] * 1e3:.4g}", f"{figures['spread']:.0%}",
                                 f"{figures['rate']:.4g} {case['unit']}",
                                 "-" if share is None else f"{share:.0%}"] + kernel_cells + ratio_cells)
            first = ["", "", ""]
        for label, message in case["errors"].items():
            rows.append(first + [label, "FAILED: " + message.splitlines()[0][:60]] + [""] * (len(header) - 5))
            first = ["", "", ""]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _ratio_cell(case: dict, label: str, peer: str) -> str:
    if not label.startswith("gpuconv/"):
        return ""
    value = case["ratios"].get(label, {}).get(peer)
    if value is None:
        return "-"
    return f"{value:.2f}" + ("!" if peer in case["disagreements"] or label in case["disagreements"] else "")


def _summary_lines(summary: dict) -> list[str]:
    if not summary:
        return ["No speed ratio: no peer ran beside a gpuconv backend."]
    lines = ["Speed ratio = peer's time / gpuconv's time, both measured in this run (> 1: gpuconv is faster)."]
    for mine, by_peer in summary.items():
        for other, groups in by_peer.items():
            for group, s in groups.items():
                lines.append(f"  {mine} vs {other}, {group}: geometric mean {s['geomean']:.2f}x, "
                             f"min {s['min']:.2f}x ({s['worst']}) over {len(s['cases'])} cases")
    return lines


def _problem_lines(problems: list[str]) -> list[str]:
    if not problems:
        return []
    return ["", "PROBLEMS (a ratio marked ! compares results that differ):"] + [f"  {p}" for p in problems]


def write_json(document: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


def plot(document: dict, path: Path) -> None:
    """Grouped bars per case, one bar per contender: GFLOP/s for convs, GB/s for pooling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(unit, [c for c in document["cases"] if c["unit"] == unit and c["results"]])
              for unit in ("GFLOP/s", "GB/s")]
    panels = [(unit, cases) for unit, cases in panels if cases]
    if not panels:
        raise ValueError("--plot: the run measured nothing to plot")
    figure, axes = plt.subplots(len(panels), 1, figsize=(11, 4.5 * len(panels)), squeeze=False)
    for ax, (unit, cases) in zip(axes[:, 0], panels):
        labels = list(dict.fromkeys(label for case in cases for label in case["results"]))
        width = 0.8 / len(labels)
        for i, label in enumerate(labels):
            xs = [k + i * width for k, case in enumerate(cases) if label in case["results"]]
            ys = [case["results"][label]["rate"] for case in cases if label in case["results"]]
            ax.bar(xs, ys, width, label=label)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(cases))])
        ax.set_xticklabels([f"{c['layer']}\n{c['dtype']}" for c in cases])
        ax.set_yscale("log")
        ax.set_ylabel(unit)
        ax.legend(fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    env = document["environment"]
    figure.suptitle(f"gpuconv bench {env['date_utc']}: {env['cpu']['model']}"
                    + (f", {env['gpu']['name']}" if "name" in env["gpu"] else ""))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
