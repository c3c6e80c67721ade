"""A stand-in CuPy for rehearsing gpuconv's GPU path on a CPU (tools/gpu_check.py --rehearse): the
"cuda" backend's own code (kind "cuda": CuPy arrays, device attributes, RawModule) runs, and its
kernels run in gpuconv's CUDA emulator. Put this folder first on PYTHONPATH to use it; nothing
imports it otherwise.

Arrays are NumPy arrays of a subclass whose module is "cupy", so NumPy functions accept them where
real CuPy would refuse an implicit copy to the host: the rehearsal checks the launch logic and the
GPU tests' own code, not host/device discipline. The device plays an H200 (132 SMs, 227 KB opt-in
shared memory per block).
"""
from __future__ import annotations

import time

import numpy as np

__version__ = "0.0+emulator-rehearsal"
SM_COUNT = 132
SHARED_OPTIN = 232448


class ndarray(np.ndarray):
    def get(self) -> np.ndarray:
        return np.array(self)

    @property
    def data(self):
        """A MemoryPointer's stand-in: .ptr is the address of the first element."""
        return type("MemoryPointer", (), {"ptr": self.__array_interface__["data"][0]})()

    @property
    def device(self):
        return cuda.Device()


ndarray.__module__ = "cupy"


def _device(a: np.ndarray) -> ndarray:
    return a.view(ndarray)


def asarray(a, dtype=None):
    if isinstance(a, ndarray) and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return _device(np.array(a, dtype=dtype))  # a copy, as a transfer to the device is


def ascontiguousarray(a, dtype=None):
    return _device(np.ascontiguousarray(a, dtype=dtype))


def empty(shape, dtype=float, order="C"):
    return _device(np.empty(shape, dtype=dtype, order=order))


def empty_like(a, dtype=None):
    return _device(np.empty_like(a, dtype=dtype))


def zeros(shape, dtype=float):
    return _device(np.zeros(shape, dtype=dtype))


def ones(shape, dtype=float):
    return _device(np.ones(shape, dtype=dtype))


def full(shape, value, dtype=None):
    return _device(np.full(shape, value, dtype=dtype))


def pad(a, pad_width, mode="constant", **kwargs):
    return _device(np.pad(np.asarray(a), pad_width, mode=mode, **kwargs))


def copyto(dst, src):
    np.copyto(dst, src)


def matmul(a, b, out=None):
    return np.matmul(a, b, out=out)


def from_dlpack(a):
    return _device(np.from_dlpack(a))


class random:
    @staticmethod
    def standard_normal(shape, dtype=np.float64):
        return _device(np.random.default_rng(0).standard_normal(shape).astype(dtype))


class _Attributes(dict):
    pass


class cuda:
    class Device:
        def __init__(self, device_id=0):
            self.id = device_id
            self.compute_capability = "90"
            self.attributes = _Attributes(MultiProcessorCount=SM_COUNT, MaxSharedMemoryPerBlockOptin=SHARED_OPTIN,
                                          MaxSharedMemoryPerMultiprocessor=233472, L2CacheSize=60 << 20)

        def synchronize(self):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class runtime:
        @staticmethod
        def getDevice():
            return 0

        @staticmethod
        def getDeviceCount():
            return 1

        @staticmethod
        def getDeviceProperties(device_id):
            return {"name": b"H200 (stand-in: gpuconv's CUDA emulator)", "major": 9, "minor": 0,
                    "totalGlobalMem": 141 << 30}

        @staticmethod
        def runtimeGetVersion():
            return 13000

        @staticmethod
        def driverGetVersion():
            return 13000

    class nvrtc:
        @staticmethod
        def getVersion():
            return (13, 0)

    class Event:
        def __init__(self, *args, **kwargs):
            self.at = None

        def record(self, stream=None):
            self.at = time.perf_counter()

        def synchronize(self):
            pass

    @staticmethod
    def get_elapsed_time(start, end):
        return (end.at - start.at) * 1e3

    class Stream:
        def __init__(self, non_blocking=False):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def synchronize(self):
            pass

    @staticmethod
    def set_allocator(allocator=None):
        pass

    @staticmethod
    def set_pinned_memory_allocator(allocator=None):
        pass


class RawModule:
    """Compiles in gpuconv's emulator, adding the CUDA headers as CuPy adds its own."""

    def __init__(self, code=None, path=None, options=(), name_expressions=None, **kwargs):
        from gpuconv import _kernels
        from gpuconv.emulator import Module

        extra = (f"-I{_kernels.CUDA_INCLUDE_DIR}",) if _kernels.CUDA_INCLUDE_DIR else ()
        self._module = Module(code=code, path=path, options=tuple(options) + extra,
                              name_expressions=tuple(name_expressions or ()))

    def compile(self, log_stream=None):
        pass

    def get_function(self, name):
        return _Kernel(self._module.get_function(name))


class _Kernel:
    """A RawKernel: device attributes as CuPy reports them (zeros), launches in the emulator."""

    num_regs = local_size_bytes = shared_size_bytes = 0
    max_threads_per_block = 1024
    binary_version = 90

    def __init__(self, function):
        self._function = function

    @property
    def max_dynamic_shared_size_bytes(self):
        return self._function.max_dynamic_shared_size_bytes

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value):
        self._function.max_dynamic_shared_size_bytes = value

    def __call__(self, grid, block, args, shared_mem=0):
        if type(grid) is not tuple or type(block) is not tuple:
            raise TypeError("grid and block must be tuples (as CuPy requires)")
        self._function(grid, block, tuple(np.asarray(a) if isinstance(a, ndarray) else a for a in args),
                       shared_mem=shared_mem)


def __getattr__(name):
    """Any other NumPy name: its functions return device arrays (concatenate, swapaxes, ...)."""
    found = getattr(np, name)
    if not callable(found) or isinstance(found, type):
        return found

    def on_device(*args, **kwargs):
        result = found(*args, **kwargs)
        return _device(result) if type(result) is np.ndarray else result

    return on_device
