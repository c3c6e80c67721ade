"""Argument checks and array/dtype normalisation shared by every public op."""
from __future__ import annotations

import numpy as np

from .backends import is_cupy_array

SUPPORTED_DTYPES = (np.float16, np.float32, np.float64)
_SUPPORTED = frozenset(np.dtype(t) for t in SUPPORTED_DTYPES)
_REAL_KINDS = "biuf"
DLPACK_CUDA_DEVICES = (2, 3, 13)  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged


def _on_cuda_device(x) -> bool:
    if hasattr(x, "__cuda_array_interface__"):
        return True
    try:
        return x.__dlpack_device__()[0] in DLPACK_CUDA_DEVICES
    except (AttributeError, TypeError, ValueError):
        return False


def as_array(x, name: str):
    """x as an array: CuPy arrays, and device arrays of other libraries (through
    __cuda_array_interface__ or DLPack, zero-copy as CuPy arrays), stay on the device; anything
    else becomes a NumPy array. Rejects non-numeric and complex data."""
    if type(x) is np.ndarray and x.dtype.kind in _REAL_KINDS:  # the common case, checked first (host cost)
        return x
    if not is_cupy_array(x) and _on_cuda_device(x):
        try:
            import cupy
        except ImportError:
            raise TypeError(f"{name} is a CUDA device array ({type(x).__module__}.{type(x).__name__}) but CuPy "
                            f"is not installed: pip install 'gpuconv[cuda12]' or 'gpuconv[cuda13]'") from None

        x = cupy.asarray(x) if hasattr(x, "__cuda_array_interface__") else cupy.from_dlpack(x)
    elif not is_cupy_array(x):
        x = np.asarray(x)
    kind = x.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {x.dtype}: gpuconv supports real inputs only")
    if kind not in _REAL_KINDS:
        raise TypeError(f"{name} has dtype {x.dtype}: expected a real numeric array")
    return x


def result_dtype(*arrays) -> np.dtype:
    """NumPy's promotion of the inputs; integers and bool become float64, as `x / 1` would."""
    dtype = arrays[0].dtype
    if dtype in _SUPPORTED:  # nothing to promote: the common case, checked first (host cost)
        for a in arrays[1:]:
            if a is not None and a.dtype != dtype:
                break
        else:
            return dtype
    dtype = np.result_type(*(a.dtype for a in arrays if a is not None))
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype {dtype}: supported float types are float16, float32 and float64")
    return dtype


def check_ndim(x, name: str, allowed: tuple[int, ...], layout: str):
    if x.ndim not in allowed:
        raise ValueError(f"{name} has shape {tuple(x.shape)} ({x.ndim}-D): expected {layout}")


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r}: must be a bool")
    return bool(value)
