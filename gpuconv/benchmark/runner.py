"""One benchmark run: every selected case, timed for every contender that can run it, with
the ceilings measured in the same run. The result is one JSON-ready document holding every
figure; report.py renders it.

Before timing, each contender's first call (a warm-up) is compared with the first
contender's result, so that a ratio never compares two different computations.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

from . import ceilings, environment
from .contenders import CPU, EMULATOR, GPU, PEERS, Unavailable, by_label, to_numpy
from .figures import geometric_mean, rate, relative_difference, share, speed_ratio, summarise
from .layers import CONV, Case, select_cases
from .timing import measure

FORMAT = "gpuconv-bench/1"
# Largest allowed max|difference| / max(1, max|reference|) between two contenders' results: two
# results of the same precision, each with its own summation order (a peer such as cuDNN, or TF32
# and float16 peers), not one result against the float64 reference as gpuconv/_tolerance.py, so a
# looser, separate table.
AGREEMENT_TOLERANCE = {"float32": 1e-4, "float64": 1e-10, "float16": 1e-2, "tf32": 3e-3}


@dataclass
class Settings:
    layers: list[str] | None = None  # None: all
    backends: tuple[str, ...] = ("numpy", "cuda")
    peers: tuple[str, ...] = PEERS
    dtypes: tuple[str, ...] = ("float32",)
    batch: int | None = None  # N of the conv layers; None: each layer's own
    backward: bool = False  # the conv layers' backward pass (dx + dw) instead of the forward ops
    warmup: int = 2  # calls before timing, the first of them checked against the reference
    rounds: int = 5
    repeat: int = 5  # timed calls per round
    min_seconds: float = 2.0  # more rounds (at most 50) until a case's timed calls add up to this
    smoke: bool = False
    kernel_time: bool = False  # also time gpuconv's kernels alone on a GPU (contender.kernel_clock)
    matmul_size: int = 2048  # n of the CPU matmul ceiling
    copy_bytes: int = 256 << 20  # size of the GPU copy ceiling

    @classmethod
    def for_smoke(cls, **kwargs) -> "Settings":
        """Tiny sizes, each contender called once to warm up and check, then timed once."""
        return cls(smoke=True, warmup=1, rounds=1, repeat=1, min_seconds=0.0, matmul_size=64, copy_bytes=1 << 20,
                   **kwargs)

    @property
    def method(self) -> dict:
        return {"warmup": self.warmup - 1, "rounds": self.rounds, "repeat": self.repeat,
                "min_seconds": self.min_seconds}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(settings: Settings, progress=_stderr, on_case=lambda document: None) -> dict:
    cases = select_cases(settings.layers, settings.dtypes, settings.smoke, settings.batch, settings.backward)
    if not cases:
        raise ValueError(f"no case to run: layers {settings.layers} have no {settings.dtypes} "
                         f"{'backward' if settings.backward else 'forward'} version (float64 is measured on "
                         f"layers B and F, float16 and tf32 on A-D; the backward pass on the conv layers A-H)")
    contenders, skipped = _contenders(settings)
    progress(f"gpuconv bench: {len(cases)} cases; timing {', '.join(c.label for c in contenders) or 'nothing'}"
             + "".join(f"; skipped {label}: {reason}" for label, reason in skipped.items()))
    document = {
        "format": FORMAT,
        "settings": asdict(settings),
        "environment": environment.record(),
        "contenders": {"measured": [c.label for c in contenders], "skipped": skipped},
        "cases": [],
    }
    before = _shared_ceilings(settings, cases, contenders, progress)
    for number, case in enumerate(cases, 1):
        result = _run_case(case, number, contenders, settings)
        document["cases"].append(result)
        progress(_progress_line(number, len(cases), case, result))
        on_case(document)  # e.g. write the cases so far: a run cut short keeps them
    document["ceilings"] = best_ceilings(before, _shared_ceilings(settings, cases, contenders, progress))
    for result in document["cases"]:
        attach_ceilings(result, document["ceilings"])
    document["summary"] = summary(document["cases"])
    document["problems"] = problems(document["cases"])
    return document


def _contenders(settings: Settings):
    contenders, skipped = [], {}
    for label in [f"gpuconv/{name}" for name in settings.backends] + list(settings.peers):
        try:
            contenders.append(by_label(label))
        except Unavailable as exc:
            skipped[label] = str(exc)
    return contenders, skipped


def _shared_ceilings(settings, cases, contenders, progress) -> dict:
    devices = {c.device for c in contenders}
    found = {}
    if CPU in devices:
        for dtype in sorted({cpu_ceiling_dtype(case.dtype) for case in cases if case.layer.op == CONV} - {None}):
            progress(f"ceiling: numpy {dtype} matmul {settings.matmul_size}^3")
            found[f"cpu_matmul_{dtype}"] = ceilings.cpu_matmul(dtype, settings.matmul_size, settings.method)
    if GPU in devices and any(case.layer.op != CONV for case in cases):
        progress(f"ceiling: device-to-device copy of {settings.copy_bytes >> 20} MiB")
        found["gpu_copy"] = ceilings.gpu_copy(settings.copy_bytes, settings.method)
    return found


def _describe_case(case: Case) -> dict:
    layer = case.layer
    return {"layer": layer.name, "title": layer.title, "op": layer.op, "dtype": case.dtype,
            "pass": "backward" if case.backward else "forward",
            "shape": case.describe(), "x_shape": list(layer.x_shape),
            "w_shape": None if layer.w_shape is None else list(layer.w_shape), "kernel": list(layer.kernel),
            "stride": layer.stride, "padding": layer.padding, "groups": layer.groups,
            "out_shape": list(case.spec.out_shape), "flops": case.flops, "bytes": case.nbytes,
            "unit": "GFLOP/s" if layer.op == CONV else "GB/s"}


def _run_case(case: Case, seed: int, contenders, settings: Settings) -> dict:
    result = {**_describe_case(case), "results": {}, "ratios": {}, "not_applicable": {}, "errors": {},
              "disagreements": {}, "reference": None}
    inputs = case.inputs(seed)
    timed, reference = {}, None
    for contender in contenders:
        try:
            call = contender.prepare(case, inputs)
            if isinstance(call, str):
                result["not_applicable"][contender.label] = call
                continue
            output = to_numpy(call())
        except Exception as exc:  # one contender failing must not stop the others
            result["errors"][contender.label] = f"{type(exc).__name__}: {exc}"
            continue
        if reference is None:
            reference, result["reference"] = output, contender.label
        difference = relative_difference(output, reference)
        if difference > (contender.tolerance or AGREEMENT_TOLERANCE[case.dtype]):
            result["disagreements"][contender.label] = difference
        timed[contender.label] = (contender.clock, call, contender.device, difference, contender.algorithm(case),
                                  contender.kernel_clock)
    samples = measure({label: entry[:2] for label, entry in timed.items()}, **settings.method)
    kernel_samples = {}
    if settings.kernel_time:
        for label, entry in timed.items():
            if entry[5] is not None:
                try:
                    kernel_samples.update(measure({label: (entry[5], entry[1])}, **settings.method))
                except Exception as exc:  # reported; the per-call figures stand
                    result["errors"][f"{label} (kernel time)"] = f"{type(exc).__name__}: {exc}"
    if case.layer.op == CONV and any(entry[2] == GPU for entry in timed.values()):
        result["gpu_gemm_ceiling"] = ceilings.gpu_gemm(case.spec, case.array_dtype, settings.method)
    for label, (_, _, device, difference, algorithm, _) in timed.items():
        result["results"][label] = measured_figures(case, samples[label], device)
        result["results"][label]["max_rel_difference"] = difference
        if algorithm is not None:
            result["results"][label]["algorithm"] = algorithm
        if label in kernel_samples:  # the device time of gpuconv's kernels alone
            result["results"][label]["kernel"] = measured_figures(case, kernel_samples[label], device)
    result["ratios"] = ratios(result["results"])
    return result


def measured_figures(case: Case, rounds: list[list[float]], device: str) -> dict:
    """Time and spread of the best round, and the rate: GFLOP/s for a conv, GB/s for pooling."""
    figures = {**summarise(rounds), "rounds_s": rounds, "device": device}
    figures["rate"] = rate(case.flops if case.layer.op == CONV else case.nbytes, figures["time_s"])
    return figures


def best_ceilings(*measurements: dict) -> dict:
    """Per ceiling, the measurement with the highest rate (the shared ceilings are measured
    before and after the cases: a busy machine lowers one of them), with every rate found."""
    best = {}
    for found in measurements:
        for name, ceiling in found.items():
            rates = best.get(name, {}).get("rates_measured", []) + [ceiling["rate"]]
            if name not in best or ceiling["rate"] > best[name]["rate"]:
                best[name] = dict(ceiling)
            best[name]["rates_measured"] = rates
    return best


def cpu_ceiling_dtype(dtype: str) -> str | None:
    """The dtype of the CPU matmul ceiling of a case: float32 for tf32 (NumPy has no TF32); none for
    float16 (NumPy's float16 matmul runs without BLAS, no ceiling for anything)."""
    return {"tf32": "float32", "float16": None}.get(dtype, dtype)


def ceiling_name(op: str, dtype: str, device: str) -> str | None:
    """The ceiling a contender on `device` is measured against: the CPU matmul for a conv on the
    CPU, the implicit GEMM or the copy on a GPU; None for pooling on the CPU and the emulator."""
    if device == CPU and op == CONV:
        return f"cpu_matmul_{cpu_ceiling_dtype(dtype)}" if cpu_ceiling_dtype(dtype) else None
    if device == GPU:
        return "gpu_gemm" if op == CONV else "gpu_copy"
    return None


def attach_ceilings(result: dict, shared: dict) -> None:
    """Sets each contender's "ceiling" (name, or None) and "ceiling_share" in a case's result;
    "gpu_gemm" is the case's own ceiling, the others come from `shared`. Kernel-only figures get
    theirs too."""
    for figures in result["results"].values():
        name = ceiling_name(result["op"], result["dtype"], figures["device"])
        ceiling = result.get("gpu_gemm_ceiling") if name == "gpu_gemm" else shared.get(name)
        for part in (figures, figures.get("kernel")):
            if part is not None:
                part["ceiling"] = name if ceiling else None
                part["ceiling_share"] = share(part["rate"], ceiling["rate"]) if ceiling else None


# The hardware a contender's time is spent on: the emulator competes with the CPU peers.
HARDWARE = {CPU: CPU, EMULATOR: CPU, GPU: GPU}


def ratios(results: dict) -> dict:
    """{gpuconv contender: {peer: peer time / our time}} for the peers measured in a case on
    the same hardware (a CPU backend is not compared with a GPU peer, nor the reverse)."""
    ours = [label for label in results if label.startswith("gpuconv/")]
    peers = [label for label in results if not label.startswith("gpuconv/")]
    return {mine: {other: speed_ratio(results[other]["time_s"], results[mine]["time_s"]) for other in peers
                   if HARDWARE[results[other]["device"]] == HARDWARE[results[mine]["device"]]}
            for mine in ours}


def _backward_suffix(case: dict) -> str:
    return " backward" if case.get("pass") == "backward" else ""


def summary(cases: list[dict]) -> dict:
    """{gpuconv contender: {peer: {"conv float32": {geomean, min, worst, cases}, ...}}}: the
    geometric mean and the minimum of the speed ratios per group of cases (conv or pooling,
    per dtype)."""
    collected: dict = {}
    for case in cases:
        group = f"{'conv' if case['op'] == CONV else 'pool'}{_backward_suffix(case)} {case['dtype']}"
        for mine, by_peer in case["ratios"].items():
            for other, value in by_peer.items():
                collected.setdefault(mine, {}).setdefault(other, {}).setdefault(group, []).append(
                    (value, case["layer"]))
    return {mine: {other: {group: {"geomean": geometric_mean(v for v, _ in items),
                                   "min": min(items)[0], "worst": min(items)[1],
                                   "cases": [name for _, name in items]}
                           for group, items in groups.items()}
                   for other, groups in by_peer.items()}
            for mine, by_peer in collected.items()}


def problems(cases: list[dict]) -> list[str]:
    """Errors and disagreements, one line each (the run's exit status is 1 when any)."""
    lines = []
    for case in cases:
        name = f"{case['layer']} {case['dtype']}{_backward_suffix(case)}"
        lines += [f"{name}: {label} failed: {message}" for label, message in case["errors"].items()]
        lines += [f"{name}: {label} differs from {case['reference']} by {difference:.3g} of the result's scale"
                  for label, difference in case["disagreements"].items()]
    return lines


def _progress_line(number: int, total: int, case: Case, result: dict) -> str:
    unit = result["unit"]
    parts = [f"{label} {figures['time_s'] * 1e3:.3g} ms ({figures['rate']:.3g} {unit})"
             for label, figures in result["results"].items()]
    parts += [f"{label} FAILED" for label in result["errors"]]
    return f"[{number}/{total}] {case.label} {case.describe()}: " + ", ".join(parts)
