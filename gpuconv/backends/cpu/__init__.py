"""The "numpy" backend: runs everywhere NumPy does."""
from __future__ import annotations

from . import conv, conv_grad, pad, pad_grad, pool, pool_grad


class NumpyBackend:
    name = "numpy"
    algorithms = conv.ALGORITHMS
    # conv2d takes x in any real dtype and casts it tile by tile to w's (the call's) dtype; pooling and
    # padding read integer and bool x as float64 as they go (no whole copy)
    casts_x = True

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

    # Gradients; spec is the forward op's (see gpuconv.backends).
    input_grad_algorithms = conv_grad.INPUT_ALGORITHMS
    weight_grad_algorithms = conv_grad.WEIGHT_ALGORITHMS

    def applicable_input_grad_algorithms(self, spec):
        return conv_grad.applicable_input_algorithms(spec)

    def applicable_weight_grad_algorithms(self, spec):
        return conv_grad.applicable_weight_algorithms(spec)

    def choose_grad_algorithms(self, spec) -> tuple[str, str]:
        """The (input, weight) gradient methods algorithm="auto" runs for spec (zero padding)."""
        return conv_grad.choose_input(spec), conv_grad.choose_weight(spec)

    def conv2d_input(self, grad_out, w, spec, algorithm="auto"):
        return conv_grad.conv2d_input(grad_out, w, spec, algorithm)

    def conv2d_weight(self, x, grad_out, spec, algorithm="auto"):
        return conv_grad.conv2d_weight(x, grad_out, spec, algorithm)

    def max_pool2d_input(self, grad_out, x, indices, spec):
        return pool_grad.max_pool2d_input(grad_out, x, indices, spec)

    def avg_pool2d_input(self, grad_out, spec):
        return pool_grad.avg_pool2d_input(grad_out, spec)

    def pad2d_input(self, grad_out, spec):
        return pad_grad.pad2d_input(grad_out, spec)


def load(name: str) -> NumpyBackend:
    return NumpyBackend()
