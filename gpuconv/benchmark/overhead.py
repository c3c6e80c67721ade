"""`python -m gpuconv bench --overhead`: host time per call of each op on tiny inputs, where the
fixed cost of a call (argument checks, planning, allocation, the launch) is all there is to time.

Contenders: gpuconv on each selected backend, PyTorch on the CPU and on a GPU, and the "cuda"
backend's launch path with the kernel itself stubbed (LAUNCH_STUB): the real launcher of the CUDA
backends (gpuconv/backends/cuda.py, through the public API) on the emulator's device, whose kernel
functions are replaced by a no-op, so that it runs on any machine. It measures gpuconv's own Python
per launch; CuPy's allocation and launch costs come on top on a GPU, where the "gpuconv/cuda" row
measures the whole call (host time: the calls queue their kernels without waiting for them).

Method: every contender is called WARMUP times, then timed in interleaved rounds (A B A B ...),
each round timing one batch of calls sized to about `batch_seconds`. The figure is the calling
thread's CPU time per call in the best round (on a busy machine, the wall time of a tiny call is
mostly waiting for a core), beside the wall time; every call of the contenders here runs on the
calling thread (gpuconv splits only larger work over threads; PyTorch is held at one thread).
Goals (issue 9): gpuconv/numpy at most 5x torch-cpu per call; the launch path at most 15 us.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from .. import _api, _kernels
from ..backends import BackendUnavailable, get_backend
from . import environment

FORMAT = "gpuconv-overhead/1"
LAUNCH_STUB = "gpuconv/cuda launch (kernel stubbed)"
NUMPY_GOAL_RATIO = 5.0  # gpuconv/numpy's time per call / torch-cpu's
LAUNCH_GOAL_US = 15.0  # host time per conv2d/pool launch on "cuda"
WARMUP = 20


@dataclass(frozen=True)
class Op:
    name: str
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...] | None = None
    algorithm: str = "auto"
    bias: bool = False
    launches: int = 1  # kernels one call launches on the CUDA backends


# Tiny inputs: one 8x8 plane (conv, both pools, pad), a 16-channel conv that the CUDA backends run
# as an implicit GEMM, and one whose GEMM (16 x 16 outputs, K = 2304) they split over K (the GEMM's
# launch, then splitk_reduce's).
OPS = (
    Op("conv2d", (1, 1, 8, 8), (1, 1, 3, 3)),
    Op("conv2d+bias", (1, 1, 8, 8), (1, 1, 3, 3), bias=True),
    Op("conv2d 16ch", (1, 16, 8, 8), (16, 16, 3, 3)),
    Op("conv2d split-K", (1, 256, 6, 6), (16, 256, 3, 3), launches=2),
    Op("max_pool2d", (1, 1, 8, 8)),
    Op("avg_pool2d", (1, 1, 8, 8)),
    Op("pad2d", (1, 1, 8, 8)),
)


@dataclass
class Settings:
    backends: tuple[str, ...] = ("numpy", "cuda")
    peers: tuple[str, ...] = ("torch-cpu", "torch-cuda")
    launch_stub: bool = True
    rounds: int = 7
    batch_seconds: float = 0.02
    smoke: bool = False

    @classmethod
    def for_smoke(cls, **kwargs) -> "Settings":
        return cls(rounds=1, batch_seconds=0.0, smoke=True, **kwargs)


class _NoOpKernel:
    """Stands in for a compiled kernel: takes a launch, does nothing, counts it."""

    def __init__(self):
        self.max_dynamic_shared_size_bytes = 48 * 1024
        self.launches = 0

    def __call__(self, grid, block, args, shared_mem=0):
        self.launches += 1


@contextlib.contextmanager
def stubbed_kernels():
    """Inside the block, every kernel the CUDA backends look up is one _NoOpKernel (yielded)."""
    kernel = _NoOpKernel()
    real = _kernels.get_function
    _kernels.get_function = lambda file, name, device_kind: kernel
    try:
        yield kernel
    finally:
        _kernels.get_function = real


def _inputs(op: Op, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(op.x_shape).astype(np.float32)
    w = None if op.w_shape is None else rng.standard_normal(op.w_shape).astype(np.float32)
    b = rng.standard_normal(op.w_shape[0]).astype(np.float32) if op.bias else None
    return {"x": x, "w": w, "b": b}


def gpuconv_call(op: Op, backend: str, to_device=np.asarray) -> Callable[[], object]:
    arrays = {k: None if v is None else to_device(v) for k, v in _inputs(op).items()}
    x, w, b = arrays["x"], arrays["w"], arrays["b"]
    if op.name.startswith("conv2d"):
        return lambda: _api.conv2d(x, w, b, algorithm=op.algorithm, backend=backend)
    if op.name == "max_pool2d":
        return lambda: _api.max_pool2d(x, 2, backend=backend)
    if op.name == "avg_pool2d":
        return lambda: _api.avg_pool2d(x, 2, backend=backend)
    return lambda: _api.pad2d(x, 1, backend=backend)


def torch_call(op: Op, torch, device: str) -> Callable[[], object]:
    functional = torch.nn.functional
    arrays = {k: None if v is None else torch.from_numpy(v).to(device) for k, v in _inputs(op).items()}
    x, w, b = arrays["x"], arrays["w"], arrays["b"]
    if op.name.startswith("conv2d"):
        call = lambda: functional.conv2d(x, w, b)  # noqa: E731
    elif op.name == "max_pool2d":
        call = lambda: functional.max_pool2d(x, 2)  # noqa: E731
    elif op.name == "avg_pool2d":
        call = lambda: functional.avg_pool2d(x, 2)  # noqa: E731
    else:
        call = lambda: functional.pad(x, (1, 1, 1, 1))  # noqa: E731

    def no_grad():
        with torch.no_grad():
            return call()

    return no_grad


@dataclass
class Contender:
    label: str
    prepare: Callable[[Op], Callable[[], object]]
    finish: Callable[[], None] = lambda: None  # waits for queued GPU work after a batch
    scope: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


def contenders(settings: Settings) -> tuple[list[Contender], dict[str, str]]:
    """The contenders that can run here, and {label: why not} for the others."""
    found, skipped = [], {}
    for backend in settings.backends:
        try:
            get_backend(backend)
        except BackendUnavailable as exc:
            skipped[f"gpuconv/{backend}"] = str(exc)
            continue
        if backend == "cuda":
            import cupy

            synchronise = cupy.cuda.Device().synchronize
            found.append(Contender("gpuconv/cuda", lambda op: gpuconv_call(op, "cuda", cupy.asarray), synchronise))
        else:
            found.append(Contender(f"gpuconv/{backend}", lambda op, b=backend: gpuconv_call(op, b)))
    if settings.launch_stub:
        try:
            get_backend("cuda-emu")  # the launcher on the emulator's device; the stub needs no build
            found.append(Contender(LAUNCH_STUB, lambda op: gpuconv_call(op, "cuda-emu"), scope=stubbed_kernels))
        except BackendUnavailable as exc:
            skipped[LAUNCH_STUB] = str(exc)
    for peer in settings.peers:
        try:
            import torch
        except ImportError as exc:
            skipped[peer] = f"torch is not installed ({exc})"
            continue
        if peer == "torch-cpu":
            found.append(Contender(peer, lambda op: torch_call(op, torch, "cpu"), scope=lambda: _one_thread(torch)))
        elif not torch.cuda.is_available():
            skipped[peer] = f"torch {torch.__version__} sees no usable CUDA GPU"
        else:
            found.append(Contender(peer, lambda op: torch_call(op, torch, "cuda"), torch.cuda.synchronize))
    return found, skipped


@contextlib.contextmanager
def _one_thread(torch):
    """PyTorch on one CPU thread, as gpuconv runs tiny calls: its thread pool spinning between calls
    would otherwise take the cores from the other contenders (and theirs from it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield None
    finally:
        torch.set_num_threads(threads)


def time_batch(call, number: int, finish) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this thread) per call of `number` back-to-back calls, then
    waiting for queued GPU work. The CPU time leaves out the time this thread waited for a core,
    which on a busy machine is most of the wall time of a tiny call."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(number):
        call()
    finish()
    return (time.perf_counter() - wall) / number, (time.thread_time() - cpu) / number


def measure(entries: dict, settings: Settings) -> dict[str, list[tuple[float, float]]]:
    """entries: {label: (call, finish, scope)} -> {label: (wall, CPU) seconds per call of each round}."""
    numbers = {}
    for label, (call, finish, scope) in entries.items():
        with scope():
            for _ in range(WARMUP):
                call()
            finish()
            per_call = time_batch(call, 10, finish)[0]
        numbers[label] = max(1, min(100_000, int(settings.batch_seconds / max(per_call, 1e-9))))
    rounds: dict[str, list[tuple[float, float]]] = {label: [] for label in entries}
    for _ in range(settings.rounds):
        for label, (call, finish, scope) in entries.items():
            with scope():
                rounds[label].append(time_batch(call, numbers[label], finish))
    return rounds


def figures(rounds: list[tuple[float, float]]) -> dict:
    """Best and median round, in us per call: us_per_call is the calling thread's CPU time (what
    the goals use), wall_us_per_call the elapsed time."""
    wall, cpu = [r[0] * 1e6 for r in rounds], [r[1] * 1e6 for r in rounds]
    return {"us_per_call": min(cpu), "median_us_per_call": statistics.median(cpu),
            "wall_us_per_call": min(wall), "median_wall_us_per_call": statistics.median(wall),
            "rounds_cpu_us": cpu, "rounds_wall_us": wall}


def goals(results: dict, launches: int = 1) -> list[dict]:
    """The issue's goals for one op's results: gpuconv/numpy within NUMPY_GOAL_RATIO x torch-cpu,
    the launch path (stubbed or on a GPU) within LAUNCH_GOAL_US per launch (`launches` per call)."""
    found = []
    if "gpuconv/numpy" in results and "torch-cpu" in results:
        ratio = results["gpuconv/numpy"]["us_per_call"] / results["torch-cpu"]["us_per_call"]
        found.append({"goal": f"gpuconv/numpy <= {NUMPY_GOAL_RATIO:g}x torch-cpu", "value": ratio,
                      "met": ratio <= NUMPY_GOAL_RATIO, "text": f"{ratio:.2f}x"})
    for label in (LAUNCH_STUB, "gpuconv/cuda"):
        if label in results:
            us = results[label]["us_per_call"] / launches
            found.append({"goal": f"{label} <= {LAUNCH_GOAL_US:g} us per launch", "value": us,
                          "met": us <= LAUNCH_GOAL_US,
                          "text": f"{us:.1f} us" + (f" ({launches} launches)" if launches > 1 else "")})
    return found


def run(settings: Settings, progress=lambda line: None) -> dict:
    found, skipped = contenders(settings)
    progress(f"gpuconv bench --overhead: timing {', '.join(c.label for c in found) or 'nothing'}"
             + "".join(f"; skipped {label}: {reason}" for label, reason in skipped.items()))
    document = {"format": FORMAT, "settings": asdict(settings), "environment": environment.record(),
                "contenders": {"measured": [c.label for c in found], "skipped": skipped}, "ops": [],
                "problems": []}
    for op in OPS:
        entries, errors, launches = {}, {}, {}
        for contender in found:
            try:
                with contender.scope() as stub:
                    call = contender.prepare(op)
                    call()
                    if stub is not None:
                        launches[contender.label] = stub.launches
                entries[contender.label] = (call, contender.finish, contender.scope)
            except Exception as exc:  # one contender failing must not stop the others
                errors[contender.label] = f"{type(exc).__name__}: {exc}"
        if LAUNCH_STUB in launches and launches[LAUNCH_STUB] != op.launches:
            errors[LAUNCH_STUB] = f"one call launched {launches[LAUNCH_STUB]} kernels, expected {op.launches}"
            del entries[LAUNCH_STUB]
        rounds = measure(entries, settings)
        results = {label: figures(r) for label, r in rounds.items()}
        document["ops"].append({"op": op.name, "x_shape": list(op.x_shape),
                                "w_shape": None if op.w_shape is None else list(op.w_shape),
                                "results": results, "errors": errors, "goals": goals(results, op.launches)})
        document["problems"] += [f"{op.name}: {label} failed: {message}" for label, message in errors.items()]
        progress(f"{op.name}: " + ", ".join(f"{label} {r['us_per_call']:.1f} us" for label, r in results.items()))
    return document


def text(document: dict) -> str:
    labels = document["contenders"]["measured"]
    rows = [["op", *labels, "goals"]]
    for entry in document["ops"]:
        cells = [entry["op"]]
        for label in labels:
            if label in entry["results"]:
                cells.append(f"{entry['results'][label]['us_per_call']:.1f}")
            else:
                cells.append("FAILED" if label in entry["errors"] else "-")
        cells.append("; ".join(f"{g['goal']}: {g['text']} {'ok' if g['met'] else 'MISSED'}" for g in entry["goals"]))
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    env = document["environment"]
    lines = [f"Host CPU time per call (us; best of {document['settings']['rounds']} rounds), {env['date_utc']}, "
             f"{env['cpu']['model']}, Python {env['python']}"
             + (" (smoke: the figures mean nothing)" if document["settings"]["smoke"] else "")]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    if LAUNCH_STUB in labels:
        lines.append(f"{LAUNCH_STUB}: the CUDA backends' launcher through the public API with every kernel a "
                     f"no-op (NumPy arrays on the emulator's device); CuPy's allocation and launch come on top.")
    lines += [f"Skipped {label}: {reason}" for label, reason in document["contenders"]["skipped"].items()]
    lines += [f"PROBLEM: {p}" for p in document["problems"]]
    return "\n".join(lines) + "\n"
