"""The Python <-> kernel argument contract: every kernel's parameters by name and C type, in order.

A launcher never lists a kernel's arguments by position. It names them, and the kernel's table
(KernelParams) puts them in the kernel's order and converts each scalar to its C type:

    scalars = CONV_DIRECT.scalars(I, has_bias=1, c=..., ..., in_w=...)   # built once per spec
    args = CONV_DIRECT.pack(scalars, x=x, w=w, bias=None, y=out)          # per launch, the arrays by name

Types are written as in the kernels: T the element type, A its accumulator (Acc<T>::type: float for
__half and float, double for double), I the index type (int or long long: the kernel's second
template argument); pointers come first in every kernel. The emulator compiles the .cu files and
reads each kernel's parameter names from its source: _kernels.get_function checks every table
against them (names and order) and against the compiled types of the instantiation it loads, so a
table that disagrees with its kernel fails the first emulated launch (and tests/test_kernel_params.py).
"""
from __future__ import annotations

import re

import numpy as np

# C type -> the NumPy scalar type that passes it (I: the caller's index type).
_SCALAR_TYPES = {"int": np.int32, "long long": np.int64, "double": np.float64}
# Element type codes of the emulator's compiled signatures (gpuconv.emulator: '*f32', 'i64', ...).
_CODES = {"__half": "f16", "float": "f32", "double": "f64", "int": "i32", "long long": "i64"}
_ACCUMULATORS = {"__half": "float", "float": "float", "double": "double"}


class KernelParams:
    """The parameters of kernel template `template` in cuda/`file`, from a C parameter list."""

    def __init__(self, file: str, template: str, parameters: str):
        self.file, self.template = file, template
        self.params: tuple[tuple[str, str], ...] = tuple(_parse(p) for p in parameters.split(","))
        self.names = tuple(name for name, _ in self.params)
        self.pointers = tuple(name for name, ctype in self.params if ctype.endswith("*"))
        self._scalars = self.params[len(self.pointers):]
        if any(ctype.endswith("*") for _, ctype in self._scalars):
            raise ValueError(f"{template}: pointer parameters must come first")
        self._scalar_names = frozenset(name for name, _ in self._scalars)
        # pack(scalars, *, <each pointer by name>) -> the whole argument tuple (_packer)
        self.pack = _packer(template, self.pointers)

    def scalars(self, index_type, **values) -> tuple:
        """The scalar arguments, by name, in the kernel's order as NumPy scalars of their C types
        (index_type: np.int32 or np.int64 for I)."""
        if values.keys() != self._scalar_names:
            missing, unknown = sorted(self._scalar_names - values.keys()), sorted(values.keys() - self._scalar_names)
            raise TypeError(f"kernel {self.template} ({self.file}): scalar arguments missing {missing}, "
                            f"unknown {unknown}")
        return tuple((index_type if ctype == "I" else _SCALAR_TYPES[ctype])(values[name])
                     for name, ctype in self._scalars)

    def codes(self, ctype: str, itype: str) -> tuple[str, ...]:
        """The emulator's type code of each parameter in the instantiation <ctype, itype, ...>."""
        resolved = {"T": ctype, "A": _ACCUMULATORS[ctype], "I": itype}

        def code(declared: str) -> str:
            base = declared.removeprefix("const ").removesuffix("*").strip()
            element = _CODES[resolved.get(base, base)]
            return "*" + element if declared.endswith("*") else element

        return tuple(code(ctype_) for _, ctype_ in self.params)

    def check(self, name_expression: str, parameter_names, signature) -> None:
        """Raise TypeError unless this table matches the kernel the emulator compiled for
        name_expression: its parameter names in the source (by name and order), and its type codes."""
        ctype, itype = template_arguments(name_expression)[:2]
        where = f"the argument table of {self.template} (gpuconv/_kernel_params.py) and cuda/{self.file}"
        if parameter_names is not None and tuple(parameter_names) != self.names:
            raise TypeError(f"{where} disagree: {_first_difference(self.names, tuple(parameter_names))}")
        if tuple(signature) != self.codes(ctype, itype):
            raise TypeError(f"{where} disagree on the types of {name_expression}: table "
                            f"{self.codes(ctype, itype)}, compiled {tuple(signature)}")


def _packer(template: str, pointers: tuple[str, ...]):
    """pack(scalars, *, <one keyword per pointer>) -> (<the arrays in order>, *scalars): the whole
    argument tuple of a launch, the arrays (or None: a null pointer) by name. Generated with the
    pointers as keyword-only parameters, so that Python itself refuses a missing or unknown name, at
    the cost of building the tuple by hand (0.5 us a launch; a loop over a dict of names took 2)."""
    listed = ", ".join(pointers)
    namespace: dict = {}
    exec(f"def pack(scalars, *, {listed}):\n    return ({listed}, *scalars)\n", namespace)  # names: identifiers
    pack = namespace["pack"]
    pack.__qualname__ = f"{template}.pack"
    return pack


def _parse(declaration: str) -> tuple[str, str]:
    """'const T* x' -> ('x', 'const T*'); 'long long n' -> ('n', 'long long')."""
    m = re.fullmatch(r"\s*(.*?[\s*])([A-Za-z_]\w*)\s*", declaration)
    if m is None:
        raise ValueError(f"cannot read the parameter declaration {declaration!r}")
    return m.group(2), " ".join(m.group(1).replace("*", " *").split()).replace(" *", "*")


def _first_difference(table: tuple[str, ...], source: tuple[str, ...]) -> str:
    for i, (a, b) in enumerate(zip(table, source)):
        if a != b:
            return f"parameter {i} is {a!r} in the table and {b!r} in the kernel (table {table}, kernel {source})"
    return f"the table has {len(table)} parameters, the kernel {len(source)} (table {table}, kernel {source})"


def template_arguments(name_expression: str) -> list[str]:
    """'conv2d_direct<float, long long, 4, true>' -> ['float', 'long long', '4', 'true']."""
    inside = name_expression[name_expression.index("<") + 1:name_expression.rindex(">")]
    return [argument.strip() for argument in inside.split(",")]


def function_name(name_expression: str) -> str:
    return name_expression.split("<", 1)[0].strip()


# ---- the kernels --------------------------------------------------------------------------------
_CONV_GEOMETRY = "I c, I h, I wd, I f, I oh, I ow, int kh, int kw, int groups, int sh, int sw, int dh, int dw, " \
                 "int top, int left"
_WGRAD_GEOMETRY = _CONV_GEOMETRY.replace("int dh, int dw", "int dil_h, int dil_w")

CONV_DIRECT = KernelParams(
    "conv_direct.cu", "conv2d_direct",
    f"const T* x, const T* w, const T* bias, T* y, int has_bias, int w_transposed, {_CONV_GEOMETRY}, int mode, "
    "int tiles_x, "
    "int tiles_y, int in_h, int in_w")
CONV_IMPLICIT_GEMM = KernelParams(
    "conv_implicit_gemm.cu", "conv2d_implicit_gemm",
    f"const T* x, const T* w, const T* bias, T* y, A* partial, I k_split, int has_bias, I n, {_CONV_GEOMETRY}, "
    "int mode")
CONV_GRAD_INPUT = KernelParams(
    "conv_implicit_gemm.cu", "conv2d_grad_input",
    f"const T* dy, const T* w, T* dx, A* partial, I k_split, I n, {_CONV_GEOMETRY}")
CONV_IMPLICIT_GEMM_TC = KernelParams(
    "conv_implicit_gemm_tc.cu", "conv2d_implicit_gemm_tc",
    f"const T* x, const T* wp, const T* bias, T* y, int has_bias, I n, {_CONV_GEOMETRY}, int mode")
CONV_GRAD_WEIGHT = KernelParams(
    "conv_grad_weight.cu", "conv2d_grad_weight",
    f"const T* x, const T* dy, T* dw, A* partial, I k_split, I n, {_WGRAD_GEOMETRY}")
CONV_GRAD_WEIGHT_DIRECT = KernelParams(
    "conv_grad_weight.cu", "conv2d_grad_weight_direct",
    f"const T* x, const T* dy, T* dw, A* partial, I k_split, I n, {_WGRAD_GEOMETRY}")
SPLITK_REDUCE = KernelParams(
    "splitk_reduce.cu", "splitk_reduce",
    "const A* partial, const T* bias, T* out, I total, int splits, int has_bias, I bias_period, I bias_count")
MAX_POOL = KernelParams(
    "pool.cu", "max_pool2d",
    "const T* x, T* y, long long* indices, I total, I h, I w, I oh, I ow, int kh, int kw, int sh, int sw, int dh, "
    "int dw, int top, int left, int with_indices")
AVG_POOL = KernelParams(
    "pool.cu", "avg_pool2d",
    "const T* x, T* y, I total, I h, I w, I oh, I ow, int kh, int kw, int sh, int sw, int top, int bottom, "
    "int left, int right, int count_include_pad, int divisor_override")
MAX_POOL_GRAD = KernelParams(
    "pool.cu", "max_pool2d_grad",
    "const T* dy, const T* x, const long long* indices, T* dx, I total, I h, I w, I oh, I ow, int kh, int kw, "
    "int sh, int sw, int dh, int dw, int top, int left, int with_indices")
AVG_POOL_GRAD = KernelParams(
    "pool.cu", "avg_pool2d_grad",
    "const T* dy, T* dx, I total, I h, I w, I oh, I ow, int kh, int kw, int sh, int sw, int top, int bottom, "
    "int left, int right, int count_include_pad, int divisor_override")
PAD = KernelParams(
    "pad.cu", "pad2d",
    "const T* x, T* y, I total, I h, I w, I oh, I ow, I top, I left, int mode, double value")
PAD_GRAD = KernelParams(
    "pad.cu", "pad2d_grad",
    "const T* dy, T* dx, I total, I h, I w, I oh, I ow, I top, I left, int mode")

KERNELS = {table.template: table for table in (
    CONV_DIRECT, CONV_IMPLICIT_GEMM, CONV_GRAD_INPUT, CONV_IMPLICIT_GEMM_TC, CONV_GRAD_WEIGHT,
    CONV_GRAD_WEIGHT_DIRECT, SPLITK_REDUCE, MAX_POOL, AVG_POOL, MAX_POOL_GRAD, AVG_POOL_GRAD, PAD, PAD_GRAD)}
