"""Argument checks and array/dtype normalisation shared by every public op."""
from __future__ import annotations

import math
import numbers
import reprlib

import numpy as np

from .backends import is_cupy_array

SUPPORTED_DTYPES = (np.float16, np.float32, np.float64)
_SUPPORTED = frozenset(np.dtype(t) for t in SUPPORTED_DTYPES)
_REAL_KINDS = "biuf"
DLPACK_CUDA_DEVICES = (2, 3, 13)  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged


def shown(value) -> str:
    """repr of an argument for a message, shortened (an array argument can be huge)."""
    return reprlib.repr(value)


def array_module(x):
    """cupy for CuPy arrays, else numpy."""
    if is_cupy_array(x):
        import cupy

        return cupy
    return np


def _on_cuda_device(x, name: str) -> bool:
    if hasattr(x, "__cuda_array_interface__"):
        return True
    if not hasattr(x, "__dlpack_device__"):
        return False
    try:
        device = x.__dlpack_device__()
    except Exception as exc:
        raise TypeError(f"{name} ({type(x).__module__}.{type(x).__name__}): its __dlpack_device__() raised "
                        f"{type(exc).__name__}: {exc}") from exc
    try:
        return device[0] in DLPACK_CUDA_DEVICES
    except (TypeError, IndexError):
        raise TypeError(f"{name} ({type(x).__module__}.{type(x).__name__}): __dlpack_device__() returned "
                        f"{shown(device)}, not (device type, device id)") from None


def as_array(x, name: str):
    """x as an array: CuPy arrays, and device arrays of other libraries (through
    __cuda_array_interface__ or DLPack, zero-copy as CuPy arrays), stay on the device; anything
    else becomes a NumPy array. Rejects non-numeric, complex and bfloat16 data, ragged nested
    sequences and masked arrays with masked elements, naming the argument."""
    if type(x) is np.ndarray and x.dtype.kind in _REAL_KINDS:  # the common case, checked first (host cost)
        return x
    if "bfloat16" in str(getattr(x, "dtype", "")):
        raise TypeError(f"{name} has dtype bfloat16: supported are float16, float32 and float64 "
                        f"(convert it first, e.g. x.float() or x.astype(numpy.float32))")
    if np.ma.isMaskedArray(x) and np.ma.is_masked(x):
        raise TypeError(f"{name} is a masked array with {int(np.ma.count_masked(x))} masked elements: gpuconv has no "
                        f"masked semantics; pass {name}.filled(value) with the value the masked elements should take")
    if not is_cupy_array(x) and _on_cuda_device(x, name):
        try:
            import cupy
        except ImportError:
            raise TypeError(f"{name} is a CUDA device array ({type(x).__module__}.{type(x).__name__}) but CuPy "
                            f"is not installed: pip install 'gpuconv[cuda12]' or 'gpuconv[cuda13]'") from None

        x = cupy.asarray(x) if hasattr(x, "__cuda_array_interface__") else cupy.from_dlpack(x)
    elif not is_cupy_array(x):
        try:
            x = np.asarray(x.data if np.ma.isMaskedArray(x) else x)
        except (TypeError, ValueError) as exc:
            error = ValueError if isinstance(exc, ValueError) else TypeError
            raise error(f"{name} ({type(x).__module__}.{type(x).__name__}) cannot be read as an array: {exc}") from None
    kind = x.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {x.dtype}: gpuconv supports real inputs only")
    if kind not in _REAL_KINDS:
        raise TypeError(f"{name} has dtype {x.dtype}: expected a real numeric array")
    return x


def float_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype computed in for inputs of dtype: itself, or float64 for integers and bool."""
    return np.dtype(np.float64) if dtype.kind in "biu" else dtype


def accumulation_dtype(dtype) -> np.dtype:
    """The dtype sums of dtype values run in: float32 for float16 (rounded once at the end), else dtype."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def result_dtype(*arrays) -> np.dtype:
    """NumPy's promotion of the inputs; integers and bool become float64, as `x / 1` would."""
    dtype = arrays[0].dtype
    if dtype in _SUPPORTED:  # nothing to promote: the common case, checked first (host cost)
        for a in arrays[1:]:
            if a is not None and a.dtype != dtype:
                break
        else:
            return dtype
    dtype = float_dtype(np.result_type(*(a.dtype for a in arrays if a is not None)))
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


def check_choice(value, name: str, choices: tuple[str, ...], shown_choices: str | None = None) -> str:
    """value must be one of the strings in choices (TypeError for a non-string)."""
    if not isinstance(value, str):
        raise TypeError(f"{name}={shown(value)}: must be a string, one of {shown_choices or choices}")
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {shown_choices or choices}")
    return value


def real_number(value, name: str) -> float:
    """value as a finite float; it must be a real number (a Python or NumPy int or float, or a
    0-d array of one), not a string, a complex number, None or a sequence."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (str, bytes)) or not isinstance(value, (numbers.Real, np.bool_)):
        raise TypeError(f"{name}={shown(value)}: must be a real number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name}={shown(value)}: must be finite")
    return number


def check_value_fits(value: float, name: str, dtype) -> None:
    """A fill value must be finite in the result's dtype (1e5 would be inf in float16)."""
    largest = float(np.finfo(dtype).max)
    if abs(value) > largest:
        raise ValueError(f"{name}={value!r}: not representable in the result's dtype {np.dtype(dtype)} "
                         f"(largest finite value {largest:g})")
