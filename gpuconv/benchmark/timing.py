"""The measuring method: warm-up, then interleaved rounds (A B A B ...), each contender timing
`repeat` calls per round, for at least a minimum total time. A clock times one call: the host
clock on the CPU; on a GPU, CUDA events recorded around the call after synchronising the
device, so that queued work from earlier calls is not counted and the call's own kernels are.

CuPy and PyTorch are imported only when a GPU clock is made.
"""
from __future__ import annotations

import time
from typing import Callable


def host_clock(call: Callable[[], object]) -> float:
    """Seconds one call takes on the host clock."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def cupy_event_clock() -> Callable[[Callable[[], object]], float]:
    """A clock for work CuPy queues on its current stream (gpuconv's "cuda" backend, cupyx)."""
    import cupy

    return _event_clock(lambda: cupy.cuda.Device().synchronize(), cupy.cuda.Event, cupy.cuda.get_elapsed_time)


def torch_event_clock() -> Callable[[Callable[[], object]], float]:
    """A clock for work PyTorch queues on its current CUDA stream."""
    import torch

    return _event_clock(torch.cuda.synchronize, lambda: torch.cuda.Event(enable_timing=True),
                        lambda start, end: start.elapsed_time(end))


def cupy_kernel_clock() -> Callable[[Callable[[], object]], float]:
    """A clock for the device time of gpuconv's own kernels in a call, alone: CUDA events recorded
    right before and after each launch of the CUDA backends (every kernel is looked up through
    gpuconv._kernels.get_function, replaced for the call), summed. The rest a call queues (CuPy's
    allocations and copies) and its host time are left out."""
    import cupy

    from .. import _kernels

    def clock(call):
        cupy.cuda.Device().synchronize()
        pairs: list = []
        real = _kernels.get_function
        _kernels.get_function = lambda *key: _EventedKernel(real(*key), pairs, cupy.cuda.Event)
        try:
            call()
        finally:
            _kernels.get_function = real
        if not pairs:
            raise RuntimeError("the call launched no kernel of gpuconv's")
        pairs[-1][1].synchronize()
        return sum(cupy.cuda.get_elapsed_time(start, end) for start, end in pairs) / 1e3

    return clock


class _EventedKernel:
    """A kernel function whose launches are bracketed by CUDA events (appended to `pairs`);
    attribute reads and writes reach the real function."""

    def __init__(self, function, pairs: list, new_event):
        object.__setattr__(self, "_real", (function, pairs, new_event))

    def __call__(self, grid, block, args, shared_mem=0):
        function, pairs, new_event = self._real
        start, end = new_event(), new_event()
        start.record()
        function(grid, block, args, shared_mem=shared_mem)
        end.record()
        pairs.append((start, end))

    def __getattr__(self, attribute):
        return getattr(self._real[0], attribute)

    def __setattr__(self, attribute, value):
        setattr(self._real[0], attribute, value)


def _event_clock(synchronise, new_event, elapsed_ms) -> Callable[[Callable[[], object]], float]:
    """Seconds between two CUDA events recorded around the call, after synchronising the device."""

    def clock(call):
        synchronise()
        start, end = new_event(), new_event()
        start.record()
        call()
        end.record()
        end.synchronize()
        return elapsed_ms(start, end) / 1e3  # milliseconds -> seconds

    return clock


def measure(timed: dict, warmup: int, rounds: int, repeat: int, min_seconds: float = 0.0,
            max_rounds: int = 50) -> dict[str, list[list[float]]]:
    """timed: {label: (clock, call)}. Calls each `warmup` times, then runs rounds in which every
    contender in turn times `repeat` calls: at least `rounds` rounds, and more (up to
    max_rounds) until the timed calls add up to min_seconds, so that a burst of load on a busy
    machine cannot spoil every round. Returns {label: per-round call times}."""
    for clock, call in timed.values():
        for _ in range(warmup):
            clock(call)
    samples: dict[str, list[list[float]]] = {label: [] for label in timed}
    total, done = 0.0, 0
    while timed and (done < rounds or (total < min_seconds and done < max_rounds)):
        for label, (clock, call) in timed.items():
            samples[label].append([clock(call) for _ in range(repeat)])
            total += sum(samples[label][-1])
        done += 1
    return samples
