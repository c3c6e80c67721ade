"""gpuconv: 2-D convolution, padding and pooling on NVIDIA GPUs (own CUDA kernels) and NumPy."""
from ._api import (avg_pool1d, avg_pool2d, conv1d, conv2d, conv_transpose1d, conv_transpose2d, convolve2d,
                   correlate2d, max_pool1d, max_pool2d, pad2d)
from ._config import set_num_threads, set_workspace_limit
from ._precision import precision
from .backends import BackendUnavailable, available_backends, use_backend
from . import filters, grad

__version__ = "0.1.0"

__all__ = [
    "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "correlate2d", "convolve2d", "max_pool1d",
    "max_pool2d", "avg_pool1d", "avg_pool2d", "pad2d", "grad", "available_backends", "use_backend", "precision",
    "BackendUnavailable", "set_num_threads", "set_workspace_limit", "filters", "__version__",
]
