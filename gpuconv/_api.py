"""The public ops: validate -> spec -> backend, reading top to bottom."""
from __future__ import annotations

import math

import numpy as np

from . import _backward
from . import _geometry as geometry
from . import _precision, _signal
from ._precision import Precision
from ._types import (Array, ArrayLike, Boundary, Conv1dPadding, ConvPadding, IntOrPair, PadMode, PaddingMode,
                     PadWidths, SignalMode)
from ._torch_interop import accepts_torch
from ._validate import array_module, as_array, check_bool, check_ndim, check_value_fits, result_dtype
from .backends import is_cupy_array, is_dask_array, select


def _on_device_of(x, a, name, x_name="x"):
    """a moved to x's array type (NumPy -> CuPy only; never silently back to the host)."""
    if a is None or is_cupy_array(a) == is_cupy_array(x):
        return a
    if is_cupy_array(x):
        return array_module(x).asarray(a)
    raise TypeError(f"{name} is a CuPy array but {x_name} is a NumPy array: pass both on the same device")


def _dask():
    """The dask path (gpuconv/_dask.py), imported only when a dask array comes in."""
    from . import _dask

    return _dask


def _input(x, name):
    """x as an array; a dask array is left as it is (the op's dask path takes it)."""
    if is_dask_array(x):
        return _dask().check_known(x, name)
    return as_array(x, name)


def _empty(x, shape, dtype):
    return array_module(x).empty(shape, dtype=dtype)


def _in_dtype(x, dtype, backend):
    """x in the call's dtype; as it is for a backend that casts x as it reads it (no whole copy)."""
    return x if getattr(backend, "casts_x", False) else x.astype(dtype, copy=False)


def _check_algorithm(algorithm):
    if not isinstance(algorithm, str):
        raise TypeError(f"algorithm={algorithm!r}: must be a string such as 'auto'")


@accepts_torch
def conv2d(x: ArrayLike, w: ArrayLike, bias: ArrayLike | None = None, stride: IntOrPair = 1,
           padding: ConvPadding = 0, dilation: IntOrPair = 1, groups: int = 1, padding_mode: PaddingMode = "zeros", *,
           algorithm: str = "auto", precision: Precision | None = None, backend: str | None = None) -> Array:
    """2-D cross-correlation of x (N, C, H, W) or (C, H, W) with w (F, C/groups, KH, KW), PyTorch style.

    padding: int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same" (TensorFlow's rule,
    any stride). padding_mode: "zeros", "reflect", "replicate" or "circular".
    algorithm: "auto" or a backend-specific method name (docs/algorithms.md).
    precision: "highest" (exact float32) or "tf32" (float32 may multiply in TF32 on tensor cores);
    None: the innermost gpuconv.precision(...) block, else "highest".
    """
    x, w = _input(x, "x"), as_array(w, "w")
    check_ndim(x, "x", (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
    check_ndim(w, "w", (4,), "(F, C/groups, KH, KW)")
    return _conv(x, w, bias, stride, padding, dilation, groups, padding_mode, algorithm, precision, backend, ndim=2)


@accepts_torch
def conv1d(x: ArrayLike, w: ArrayLike, bias: ArrayLike | None = None, stride: int = 1, padding: Conv1dPadding = 0,
           dilation: int = 1, groups: int = 1, padding_mode: PaddingMode = "zeros", *, algorithm: str = "auto",
           precision: Precision | None = None, backend: str | None = None) -> Array:
    """1-D cross-correlation of x (N, C, L) or (C, L) with w (F, C/groups, K), as a conv2d of height 1.

    padding: int, (left, right), "valid" or "same"."""
    x, w = _input(x, "x"), as_array(w, "w")
    check_ndim(x, "x", (2, 3), "(N, C, L) or unbatched (C, L)")
    check_ndim(w, "w", (3,), "(F, C/groups, K)")
    out = _conv(x[..., None, :], w[:, :, None, :], bias, stride, padding, dilation, groups, padding_mode, algorithm,
                precision, backend, ndim=1)
    return out[..., 0, :]


def _conv(x, w, bias, stride, padding, dilation, groups, padding_mode, algorithm, precision, backend, ndim):
    """conv2d of arrays of checked rank; ndim=1: a 1-D op's (height 1), its arguments its own."""
    if is_dask_array(x):
        return _dask().conv(x, w, bias, stride, padding, dilation, groups, padding_mode, algorithm, precision,
                            backend, ndim)
    w = _on_device_of(x, w, "w")
    bias = None if bias is None else _on_device_of(x, as_array(bias, "bias"), "bias")
    _check_algorithm(algorithm)
    precision = _precision.resolve(precision)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    spec = geometry.conv_spec(x.shape, w.shape, stride, padding, dilation, groups, padding_mode, ndim)
    if bias is not None and tuple(bias.shape) != (spec.f,):
        raise ValueError(f"bias has shape {tuple(bias.shape)}: expected (F,) = ({spec.f},)")
    dtype = result_dtype(x, w, bias)
    chosen = select(x, backend)
    w = w.astype(dtype, copy=False)
    bias = None if bias is None else bias.astype(dtype, copy=False)
    x = _in_dtype(x, dtype, chosen)
    if spec.n == 0:
        _check_algorithm_on_empty(chosen, spec, algorithm)
        out = _empty(x, spec.out_shape, dtype)
    else:
        out = chosen.conv2d(x, w, bias, spec, algorithm, precision=precision)
    return out[0] if unbatched else out


def _check_algorithm_on_empty(backend, spec, algorithm):
    """What the backend would say of `algorithm` had the batch not been empty."""
    if algorithm not in backend.algorithms:
        raise ValueError(f"algorithm={algorithm!r}: the {backend.name} backend offers {backend.algorithms}")
    applicable = backend.applicable_algorithms(spec)
    if algorithm not in applicable:
        raise ValueError(f"algorithm={algorithm!r} cannot run this convolution on the {backend.name} backend, "
                         f"which can run {applicable}")


@accepts_torch
def conv_transpose2d(x: ArrayLike, w: ArrayLike, bias: ArrayLike | None = None, stride: IntOrPair = 1,
                     padding: ConvPadding = 0, output_padding: IntOrPair = 0, groups: int = 1, dilation: IntOrPair = 1,
                     *, algorithm: str = "auto", backend: str | None = None) -> Array:
    """Transposed convolution (PyTorch's conv_transpose2d) of x (N, C_in, H, W) or (C_in, H, W) with
    w (C_in, C_out/groups, KH, KW): the gradient of conv2d with respect to its input.

    padding: int, (ph, pw), ((top, bottom), (left, right)), "valid", or "same" (output H*stride).
    Output size: (H-1)*stride - top - bottom + dilation*(KH-1) + output_padding + 1."""
    x, w = _input(x, "x"), as_array(w, "w")
    check_ndim(x, "x", (3, 4), "(N, C_in, H, W) or unbatched (C_in, H, W)")
    check_ndim(w, "w", (4,), "(C_in, C_out/groups, KH, KW)")
    return _conv_transpose(x, w, bias, stride, padding, output_padding, groups, dilation, algorithm, backend, ndim=2)


@accepts_torch
def conv_transpose1d(x: ArrayLike, w: ArrayLike, bias: ArrayLike | None = None, stride: int = 1,
                     padding: Conv1dPadding = 0, output_padding: int = 0, groups: int = 1, dilation: int = 1, *,
                     algorithm: str = "auto", backend: str | None = None) -> Array:
    """conv_transpose2d on x (N, C_in, L) or (C_in, L) with w (C_in, C_out/groups, K).

    padding: int, (left, right), "valid" or "same"."""
    x, w = _input(x, "x"), as_array(w, "w")
    check_ndim(x, "x", (2, 3), "(N, C_in, L) or unbatched (C_in, L)")
    check_ndim(w, "w", (3,), "(C_in, C_out/groups, K)")
    out = _conv_transpose(x[..., None, :], w[:, :, None, :], bias, stride, padding, output_padding, groups, dilation,
                          algorithm, backend, ndim=1)
    return out[..., 0, :]


def _conv_transpose(x, w, bias, stride, padding, output_padding, groups, dilation, algorithm, backend, ndim):
    """conv_transpose2d of arrays of checked rank; ndim=1: a 1-D op's (height 1), its arguments its own."""
    if is_dask_array(x):
        from . import _dask_grad

        return _dask_grad.conv_transpose(x, w, bias, stride, padding, output_padding, groups, dilation, algorithm,
                                         backend, ndim)
    w = _on_device_of(x, w, "w")
    bias = None if bias is None else _on_device_of(x, as_array(bias, "bias"), "bias")
    _check_algorithm(algorithm)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    spec = geometry.conv_transpose_spec(x.shape, w.shape, stride, padding, output_padding, groups, dilation, ndim)
    if bias is not None and tuple(bias.shape) != (spec.c,):
        raise ValueError(f"bias has shape {tuple(bias.shape)}: expected (C_out,) = ({spec.c},)")
    dtype = result_dtype(x, w, bias)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    bias = None if bias is None else bias.astype(dtype, copy=False)
    if (spec.oh, spec.ow) != x.shape[2:]:  # output_padding >= stride: conv rows no input element reaches
        x = array_module(x).pad(x, ((0, 0), (0, 0), (0, spec.oh - x.shape[2]), (0, spec.ow - x.shape[3])))
    out = _backward.conv_input(x, w, spec, algorithm, backend, bias)
    return out[0] if unbatched else out


def _pool_input(x, ndim):
    """x as an array (a 1-D op's x with a height axis of 1), and the dtype of the result; a dask array
    already in that dtype."""
    x = _input(x, "x")
    if ndim == 2:
        check_ndim(x, "x", (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
    else:
        check_ndim(x, "x", (2, 3), "(N, C, L) or unbatched (C, L)")
        x = x[..., None, :]
    dtype = result_dtype(x)
    return (x.astype(dtype, copy=False) if is_dask_array(x) else x), dtype


@accepts_torch
def max_pool2d(x: ArrayLike, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0,
               dilation: IntOrPair = 1, ceil_mode: bool = False, return_indices: bool = False, *,
               backend: str | None = None) -> Array | tuple[Array, Array]:
    """Max pooling with PyTorch's rules; NaN propagates. With return_indices, also the int64
    flat index of each maximum within its H*W plane."""
    return _max_pool(*_pool_input(x, 2), kernel_size, stride, padding, dilation, ceil_mode, return_indices, backend, 2)


@accepts_torch
def max_pool1d(x: ArrayLike, kernel_size: int, stride: int | None = None, padding: int = 0, dilation: int = 1,
               ceil_mode: bool = False, return_indices: bool = False, *,
               backend: str | None = None) -> Array | tuple[Array, Array]:
    """1-D max pooling of x (N, C, L) or (C, L); indices are positions along L."""
    result = _max_pool(*_pool_input(x, 1), kernel_size, stride, padding, dilation, ceil_mode, return_indices, backend,
                       1)
    if return_indices:
        return result[0][..., 0, :], result[1][..., 0, :]
    return result[..., 0, :]


def _max_pool(x, dtype, kernel_size, stride, padding, dilation, ceil_mode, return_indices, backend, ndim):
    if is_dask_array(x):
        return _dask().max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, backend, ndim)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    return_indices = check_bool(return_indices, "return_indices")
    spec = geometry.pool_spec(x.shape, kernel_size, stride, padding, dilation, check_bool(ceil_mode, "ceil_mode"),
                              ndim=ndim)
    chosen = select(x, backend)
    if x.size == 0:
        out = _empty(x, spec.out_shape, dtype)
        result = (out, _empty(x, spec.out_shape, np.int64)) if return_indices else out
    else:
        result = chosen.max_pool2d(_in_dtype(x, dtype, chosen), spec, return_indices)
    if unbatched:
        return tuple(r[0] for r in result) if return_indices else result[0]
    return result


@accepts_torch
def avg_pool2d(x: ArrayLike, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0,
               ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None, *,
               backend: str | None = None) -> Array:
    """Average pooling with PyTorch's rules (ceil_mode, count_include_pad, divisor_override)."""
    return _avg_pool(*_pool_input(x, 2), kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                     backend, 2)


@accepts_torch
def avg_pool1d(x: ArrayLike, kernel_size: int, stride: int | None = None, padding: int = 0, ceil_mode: bool = False,
               count_include_pad: bool = True, *, backend: str | None = None) -> Array:
    """1-D average pooling of x (N, C, L) or (C, L)."""
    out = _avg_pool(*_pool_input(x, 1), kernel_size, stride, padding, ceil_mode, count_include_pad, None, backend, 1)
    return out[..., 0, :]


def _avg_pool(x, dtype, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, backend,
              ndim):
    if is_dask_array(x):
        return _dask().avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                                backend, ndim)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    spec = geometry.pool_spec(x.shape, kernel_size, stride, padding, 1, check_bool(ceil_mode, "ceil_mode"),
                              check_bool(count_include_pad, "count_include_pad"), divisor_override, ndim)
    chosen = select(x, backend)
    out = _empty(x, spec.out_shape, dtype) if x.size == 0 else chosen.avg_pool2d(_in_dtype(x, dtype, chosen), spec)
    return out[0] if unbatched else out


@accepts_torch
def pad2d(x: ArrayLike, padding: PadWidths, mode: PadMode = "constant", value: float = 0.0, *,
          backend: str | None = None) -> Array:
    """Pad the last two axes of a 2-D, 3-D or 4-D array.

    padding: int, (ph, pw) or ((top, bottom), (left, right)).
    mode: "constant" (with `value`), "reflect", "replicate" or "circular" (PyTorch's meanings)."""
    if is_dask_array(x):
        return _dask().pad2d(x, padding, mode, value, backend=backend)
    x = as_array(x, "x")
    check_ndim(x, "x", (2, 3, 4), "(H, W), (C, H, W) or (N, C, H, W)")
    lead = x.shape[:-2]
    x4 = x if x.ndim == 4 else x.reshape((math.prod(lead), 1) + x.shape[-2:])
    spec = geometry.pad_spec(x4.shape, padding, mode, value)
    dtype = result_dtype(x4)
    check_value_fits(spec.value, "value", dtype)
    chosen = select(x4, backend)
    if x4.size == 0:
        out = array_module(x4).full(spec.out_shape, spec.value, dtype=dtype)
    else:
        out = chosen.pad2d(_in_dtype(x4, dtype, chosen), spec)
    return out.reshape(lead + out.shape[-2:])


@accepts_torch
def correlate2d(image: ArrayLike, kernel: ArrayLike, mode: SignalMode = "full", boundary: Boundary = "fill",
                fillvalue: float = 0, *, backend: str | None = None) -> Array:
    """scipy.signal.correlate2d for real 2-D arrays: mode full|valid|same, boundary fill|wrap|symm."""
    return _scipy_style(image, kernel, mode, boundary, fillvalue, backend, flip=False)


@accepts_torch
def convolve2d(image: ArrayLike, kernel: ArrayLike, mode: SignalMode = "full", boundary: Boundary = "fill",
               fillvalue: float = 0, *, backend: str | None = None) -> Array:
    """scipy.signal.convolve2d for real 2-D arrays: the kernel flipped, then correlate2d's rules."""
    return _scipy_style(image, kernel, mode, boundary, fillvalue, backend, flip=True)


def _scipy_style(image, kernel, mode, boundary, fillvalue, backend, flip):
    if is_dask_array(image):
        return _dask().correlate(image, kernel, mode, boundary, fillvalue, backend, flip)
    image = as_array(image, "image")
    kernel = _on_device_of(image, as_array(kernel, "kernel"), "kernel")
    return _signal.correlate(image, kernel, mode, boundary, fillvalue, backend, flip)
