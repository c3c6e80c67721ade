"""The "numpy" backend: runs everywhere NumPy does."""
from __future__ import annotations

from . import conv, pad, pool


class NumpyBackend:
    name = "numpy"
    algorithms = conv.ALGORITHMS
    casts_x = True  # conv2d takes x in any real dtype and casts it tile by tile to w's (the call's) dtype

    # dtype and precision do not change what runs here: float32 is computed in float32 even when the
    # caller allows TF32 (precision="tf32"), i.e. more exactly than asked.
    def applicable_algorithms(self, spec, dtype=None, precision="highest"):
        return conv.applicable_algorithms(spec)

    def choose_algorithm(self, spec, dtype=None, precision="highest") -> str:
        """The method algorithm="auto" runs for spec."""
        return conv.choose(spec)

    def conv2d(self, x, w, bias, spec, algorithm, precision="highest"):
        return conv.conv2d(x, w, bias, spec, algorithm)

    def max_pool2d(self, x, spec, return_indices):
        return pool.max_pool2d(x, spec, return_indices)

    def avg_pool2d(self, x, spec):
        return pool.avg_pool2d(x, spec)

    def pad2d(self, x, spec):
        return pad.pad2d(x, spec)


def load(name: str) -> NumpyBackend:
    return NumpyBackend()
