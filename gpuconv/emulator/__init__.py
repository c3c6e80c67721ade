"""CUDA-on-CPU execution emulator: runs the project's unmodified .cu kernels with g++.

    from gpuconv.emulator import Module
    mod = Module(path="cuda/conv_direct.cu", options=("-std=c++17",), name_expressions=("conv<float, 3>",))
    mod.get_function("conv<float, 3>")((grid,), (block,), (x, w, y, np.int32(n)), shared_mem=0)

See docs/emulator.md for orders and sanitizer modes.
"""

from ._errors import EmulatorCompileError, EmulatorError
from ._module import Function, Module
from ._order import get_order, set_order
from ._sanitizers import sanitizer_command, sanitizer_env
from ._toolchain import unavailable_reason

__all__ = ["EmulatorCompileError", "EmulatorError", "Function", "Module", "get_order", "sanitizer_command",
           "sanitizer_env", "set_order", "unavailable_reason"]
