"""CuPy-RawModule-like loader: Module(code=|path=, options, name_expressions).get_function(name)
returns a callable fn(grid, block, args, shared_mem=0) that runs the kernel on the CPU.

NumPy arrays stand in for device pointers: each is copied into an exact-size buffer (so ASan sees
overruns), the kernel runs, the buffer is copied back. Arrays that share memory share one buffer,
so aliasing behaves as on the device. Scalars must be NumPy scalars of the parameter's exact C type.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import numpy as np

from . import _build, _sanitizers, _toolchain
from ._errors import EmulatorError
from ._order import current_order

_DTYPE_CODES = {np.dtype(t): c for t, c in [
    (np.bool_, "b8"), (np.int8, "i8"), (np.uint8, "u8"), (np.int16, "i16"), (np.uint16, "u16"),
    (np.int32, "i32"), (np.uint32, "u32"), (np.int64, "i64"), (np.uint64, "u64"),
    (np.float16, "f16"), (np.float32, "f32"), (np.float64, "f64")]}
_C_NAMES = {"b8": "bool", "i8": "signed char", "u8": "unsigned char", "i16": "short", "u16": "unsigned short",
            "i32": "int", "u32": "unsigned int", "i64": "long long", "u64": "unsigned long long",
            "f16": "__half", "f32": "float", "f64": "double", "?": "void"}
_NUMPY_NAMES = {c: f"np.{d.name}" for d, c in _DTYPE_CODES.items()}
_DEFAULT_SHARED_LIMIT = 48 * 1024   # dynamic shared memory a kernel may use without opting in
_Dim3 = ctypes.c_ulonglong * 3      # grid and block sizes as the launch entry point takes them
_DIM3_MAX = 2**32 - 1               # dim3 holds unsigned ints
# One launch at a time in the whole process: a launch owns the SIGSEGV handler while it runs.
_launch_lock = threading.Lock()


def _parse_options(options) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """-I/-D/-std from NVRTC-style options; the rest (arch, fast math, ...) does not apply."""
    includes, defines, std = [], [], "c++17"
    items = list(options)
    i = 0
    while i < len(items):
        opt = str(items[i])
        for prefixes, target in ((("-I", "--include-path="), includes), (("-D", "--define-macro="), defines)):
            prefix = next((p for p in prefixes if opt.startswith(p)), None)
            if prefix is not None:
                value = opt[len(prefix):]
                if not value and i + 1 < len(items):
                    i += 1
                    value = str(items[i])
                target.append(os.path.abspath(value) if target is includes else value)
                break
        else:
            if opt.startswith(("-std=", "--std=")):
                std = opt.split("=", 1)[1]
        i += 1
    return tuple(includes), tuple(defines), std


def _dims(value, what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) for d in dims):
        raise TypeError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    if not all(0 <= d <= _DIM3_MAX for d in dims):
        # The launch checks the GPU's limits; a value dim3 cannot hold would wrap around on the way there.
        raise ValueError(f"{what}={value!r}: each size must fit CUDA's dim3 (0..{_DIM3_MAX})")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


class Module:
    """A .cu source compiled for the emulator (interface of cupy.RawModule)."""

    def __init__(self, code: str | None = None, path: str | os.PathLike | None = None, options=(),
                 name_expressions=()):
        if (code is None) == (path is None):
            raise TypeError("Module needs exactly one of code= or path=")
        reason = _toolchain.unavailable_reason()
        if reason:
            raise EmulatorError(f"the CUDA emulator is unavailable: {reason}")
        mode = _sanitizers.sanitizer_mode()
        if not _sanitizers.runtime_loaded(mode):
            raise EmulatorError(_sanitizers.missing_runtime_message(mode))
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"Module(path={str(path)!r}): no such file")
        source = Path(path).resolve() if path is not None else _build.source_file_for(code)
        includes, defines, std = _parse_options(options)
        self.name_expressions = tuple(name_expressions)
        request = _build.BuildRequest(source, includes, defines, std, self.name_expressions,
                                      _sanitizers.compile_flags(mode))
        built = _build.build(request)
        self.library_path = built.library
        self._lib = ctypes.CDLL(str(self.library_path))
        self._bind(self._lib)
        self._kernels = {}
        for i in range(self._lib.gpuconv_emu_kernel_count()):
            name = self._lib.gpuconv_emu_kernel_name(i).decode()
            signature = self._lib.gpuconv_emu_kernel_signature(i).decode()
            self._kernels[name] = (i, tuple(signature.split(",")) if signature else (),
                                   built.parameters.get(_function_name(name)))

    @staticmethod
    def _bind(lib) -> None:
        lib.gpuconv_emu_kernel_name.restype = ctypes.c_char_p
        lib.gpuconv_emu_kernel_signature.restype = ctypes.c_char_p
        lib.gpuconv_emu_error.restype = ctypes.c_char_p
        lib.gpuconv_emu_alloc.restype = ctypes.c_void_p
        lib.gpuconv_emu_alloc.argtypes = [ctypes.c_size_t]
        lib.gpuconv_emu_free.argtypes = [ctypes.c_void_p]
        lib.gpuconv_emu_launch.argtypes = [ctypes.c_int, _Dim3, _Dim3, ctypes.c_ulonglong,
                                           ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_ulonglong]

    @property
    def kernel_names(self) -> tuple[str, ...]:
        return tuple(self._kernels)

    def get_function(self, name: str) -> "Function":
        entry = self._kernels.get(name) or self._kernels.get(" ".join(name.split()))
        if entry is None:
            raise EmulatorError(f"no kernel {name!r} in {self.library_path.name}; known: {sorted(self._kernels)} "
                                f"(template kernels must be listed in name_expressions)")
        return Function(self, name, *entry)


def _function_name(name_expression: str) -> str:
    """The function a kernel name expression names: 'ns::conv<float, 4>' -> 'conv'."""
    return name_expression.split("<", 1)[0].strip().rsplit("::", 1)[-1]


class Function:
    """One kernel of a Module; call it like cupy.RawKernel: fn(grid, block, args, shared_mem=0).

    signature: the parameters' type codes as compiled ('*f32' a float pointer, 'i32' an int, ...);
    parameter_names: their names in the source (None where the source declares the function with
    different lists), for a launcher to check its arguments by name and order."""

    def __init__(self, module: Module, name: str, index: int, signature: tuple[str, ...],
                 parameter_names: tuple[str, ...] | None):
        self.module, self.name, self._index, self.signature = module, name, index, signature
        self.parameter_names = parameter_names
        # As in CUDA/CuPy: more than 48 KiB of dynamic shared memory needs an explicit opt-in.
        self.max_dynamic_shared_size_bytes = _DEFAULT_SHARED_LIMIT

    def __call__(self, grid, block, args, shared_mem: int = 0) -> None:
        grid3, block3 = _dims(grid, "grid"), _dims(block, "block")
        args = tuple(args)
        if len(args) != len(self.signature):
            raise TypeError(f"kernel {self.name!r} takes {len(self.signature)} arguments, got {len(args)}")
        shared_mem = int(shared_mem)
        if shared_mem < 0:
            raise ValueError(f"kernel {self.name!r}: shared_mem={shared_mem} must be >= 0")
        if shared_mem > self.max_dynamic_shared_size_bytes:
            raise EmulatorError(
                f"kernel {self.name!r}: shared_mem={shared_mem} exceeds max_dynamic_shared_size_bytes="
                f"{self.max_dynamic_shared_size_bytes}; set fn.max_dynamic_shared_size_bytes first, as CUDA requires")
        scalars = [self._check_arg(i, code, a) for i, (code, a) in enumerate(zip(self.signature, args))]
        lib = self.module._lib
        buffers = _DeviceBuffers(lib, [a for a in args if isinstance(a, np.ndarray)])
        try:
            slots = [ctypes.c_void_p(buffers.pointer(a)) if isinstance(a, np.ndarray) else s
                     for a, s in zip(args, scalars)]
            argv = (ctypes.c_void_p * max(1, len(slots)))(*[ctypes.addressof(s) for s in slots])
            order, seed = current_order()
            with _launch_lock:
                status = lib.gpuconv_emu_launch(self._index, _Dim3(*grid3), _Dim3(*block3), shared_mem, argv,
                                                order, seed)
                error = lib.gpuconv_emu_error().decode(errors="replace") if status else ""
            buffers.copy_back()
        finally:
            buffers.free()
        if status:
            raise EmulatorError(error)

    def _check_arg(self, i: int, code: str, value):
        where = f"kernel {self.name!r} argument {i}"
        if code.startswith("*"):
            element = code[1:]
            if value is None:  # a null pointer, as CuPy passes None
                return ctypes.c_void_p(None)
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{where}: parameter is {_C_NAMES.get(element, element)}*, so pass a NumPy array "
                                f"(or None for a null pointer), got {type(value).__name__}")
            if element != "?" and _DTYPE_CODES.get(value.dtype) != element:
                raise TypeError(f"{where}: parameter is {_C_NAMES[element]}*, got an array of dtype {value.dtype}")
            if not value.flags.c_contiguous:
                raise TypeError(f"{where}: array must be C-contiguous")
            return None
        if not isinstance(value, np.generic):
            raise TypeError(f"{where}: parameter is {_C_NAMES[code]}, pass {_NUMPY_NAMES[code]}(...), got "
                            f"{type(value).__name__} {value!r} (CuPy would silently pass a Python int as long long)")
        if _DTYPE_CODES.get(value.dtype) != code:
            raise TypeError(f"{where}: parameter is {_C_NAMES[code]} ({_NUMPY_NAMES[code]}), got {value.dtype} scalar")
        return ctypes.create_string_buffer(value.tobytes(), max(8, value.nbytes))


class _DeviceBuffers:
    """Exact-size copies of the argument arrays; arrays that overlap in memory share one copy."""

    def __init__(self, lib, arrays: list[np.ndarray]):
        self._lib = lib
        self._regions: list[list] = []   # [lo, hi, device pointer, [arrays]]
        for a in sorted(arrays, key=lambda a: a.__array_interface__["data"][0]):
            lo = a.__array_interface__["data"][0]
            hi = lo + a.nbytes
            if self._regions and lo < self._regions[-1][1] and a.nbytes:
                region = self._regions[-1]
                region[1] = max(region[1], hi)
                region[3].append(a)
            else:
                self._regions.append([lo, hi, None, [a]])
        try:
            for region in self._regions:
                size = region[1] - region[0]
                if size:
                    region[2] = lib.gpuconv_emu_alloc(size)
                    if not region[2]:
                        raise MemoryError(f"cannot allocate {size} bytes for a kernel argument")
                    ctypes.memmove(region[2], region[0], size)
        except BaseException:
            self.free()
            raise

    def pointer(self, array: np.ndarray) -> int | None:
        for lo, _, device, members in self._regions:
            if any(m is array for m in members):
                return device + array.__array_interface__["data"][0] - lo if device else None
        raise KeyError("array not registered")

    def copy_back(self) -> None:
        for lo, hi, device, members in self._regions:
            if device and all(m.flags.writeable for m in members):
                ctypes.memmove(lo, device, hi - lo)

    def free(self) -> None:
        for region in self._regions:
            if region[2]:
                self._lib.gpuconv_emu_free(region[2])
                region[2] = None
