"""The arithmetic on measured times: pure functions, tested on synthetic timings."""
from __future__ import annotations

import math
import statistics

import numpy as np


def summarise(rounds: list[list[float]]) -> dict:
    """Per-call seconds of each round -> the best round: its median call time and its spread
    ((slowest - fastest call) / median), plus every round's median."""
    if not rounds or not all(rounds):
        raise ValueError("summarise: every round needs at least one timed call")
    medians = [statistics.median(calls) for calls in rounds]
    best = min(range(len(rounds)), key=medians.__getitem__)
    calls = rounds[best]
    return {
        "time_s": medians[best],
        "spread": (max(calls) - min(calls)) / medians[best],
        "best_round": best,
        "round_medians_s": medians,
    }


def rate(amount: float, seconds: float) -> float:
    """Units per second in billions: GFLOP/s from FLOPs, GB/s from bytes."""
    return amount / seconds / 1e9


def speed_ratio(peer_seconds: float, our_seconds: float) -> float:
    """How many times faster we are than the peer (> 1: faster; 0.5: twice as slow)."""
    return peer_seconds / our_seconds


def share(achieved_rate: float, ceiling_rate: float) -> float:
    """Fraction of the ceiling reached (1.0 = at the ceiling)."""
    return achieved_rate / ceiling_rate


def geometric_mean(values) -> float:
    values = list(values)
    if not values or min(values) <= 0:
        raise ValueError(f"geometric_mean: needs positive values, got {values}")
    return math.exp(sum(math.log(v) for v in values) / len(values))


def relative_difference(actual, expected) -> float:
    """max |actual - expected| / max(1, max |expected|) for NumPy arrays; inf when the shapes
    differ or either holds a NaN or an infinity. Tuples of arrays: the largest over the parts."""
    if isinstance(actual, tuple) or isinstance(expected, tuple):
        if not (isinstance(actual, tuple) and isinstance(expected, tuple) and len(actual) == len(expected)):
            return math.inf
        return max(relative_difference(a, e) for a, e in zip(actual, expected))
    if actual.shape != expected.shape:
        return math.inf
    expected = expected.astype(np.float64)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    difference = float(np.abs(actual.astype(np.float64) - expected).max(initial=0.0)) / scale
    return difference if math.isfinite(difference) else math.inf
