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
