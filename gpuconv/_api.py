"""The public ops: validate -> spec -> backend, reading top to bottom."""
from __future__ import annotations

import math

import numpy as np

from . import _backward
from . import _geometry as geometry
from ._validate import as_array, check_bool, check_ndim, result_dtype
from .backends import is_cupy_array, select


def _array_module(x):
    if is_cupy_array(x):
        import cupy

        return cupy
    return np


def _on_device_of(x, a, name, x_name="x"):
    """a moved to x's array type (NumPy -> CuPy only; never silently back to the host)."""
    if a is None or is_cupy_array(a) == is_cupy_array(x):
        return a
    if is_cupy_array(x):
        return _array_module(x).asarray(a)
    raise TypeError(f"{name} is a CuPy array but {x_name} is a NumPy array: pass both on the same device")


def _empty(x, shape, dtype):
    return _array_module(x).empty(shape, dtype=dtype)


def _check_algorithm(algorithm):
    if not isinstance(algorithm, str):
        raise TypeError(f"algorithm={algorithm!r}: must be a string such as 'auto'")


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", *,
           algorithm="auto", backend=None):
    """2-D cross-correlation of x (N, C, H, W) or (C, H, W) with w (F, C/groups, KH, KW), PyTorch style.

    padding: int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same" (TensorFlow's rule,
    any stride). padding_mode: "zeros", "reflect", "replicate" or "circular".
    algorithm: "auto" or a backend-specific method name (see README).
    """
    x = as_array(x, "x")
    w = _on_device_of(x, as_array(w, "w"), "w")
    bias = None if bias is None else _on_device_of(x, as_array(bias, "bias"), "bias")
    check_ndim(x, "x", (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
    check_ndim(w, "w", (4,), "(F, C/groups, KH, KW)")
    _check_algorithm(algorithm)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    spec = geometry.conv_spec(x.shape, w.shape, stride, padding, dilation, groups, padding_mode)
    if bias is not None and tuple(bias.shape) != (spec.f,):
        raise ValueError(f"bias has shape {tuple(bias.shape)}: expected (F,) = ({spec.f},)")
    dtype = result_dtype(x, w, bias)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    bias = None if bias is None else bias.astype(dtype, copy=False)
    chosen = select(x, backend)
    out = _empty(x, spec.out_shape, dtype) if spec.n == 0 else chosen.conv2d(x, w, bias, spec, algorithm)
    return out[0] if unbatched else out


def conv1d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", *,
           algorithm="auto", backend=None):
    """1-D cross-correlation of x (N, C, L) or (C, L) with w (F, C/groups, K), through conv2d.

    padding: int, (left, right), "valid" or "same"."""
    x = as_array(x, "x")
    w = as_array(w, "w")
    check_ndim(x, "x", (2, 3), "(N, C, L) or unbatched (C, L)")
    check_ndim(w, "w", (3,), "(F, C/groups, K)")
    out = conv2d(x[..., None, :], w[:, :, None, :], bias, (1, _single(stride, "stride")),
                 _padding_1d(padding), (1, _single(dilation, "dilation")), groups, padding_mode,
                 algorithm=algorithm, backend=backend)
    return out[..., 0, :]


def conv_transpose2d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", backend=None):
    """Transposed convolution (PyTorch's conv_transpose2d) of x (N, C_in, H, W) or (C_in, H, W) with
    w (C_in, C_out/groups, KH, KW): the gradient of conv2d with respect to its input.

    padding: int, (ph, pw), ((top, bottom), (left, right)), "valid", or "same" (output H*stride).
    Output size: (H-1)*stride - top - bottom + dilation*(KH-1) + output_padding + 1."""
    x = as_array(x, "x")
    w = _on_device_of(x, as_array(w, "w"), "w")
    bias = None if bias is None else _on_device_of(x, as_array(bias, "bias"), "bias")
    check_ndim(x, "x", (3, 4), "(N, C_in, H, W) or unbatched (C_in, H, W)")
    check_ndim(w, "w", (4,), "(C_in, C_out/groups, KH, KW)")
    _check_algorithm(algorithm)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    spec = geometry.conv_transpose_spec(x.shape, w.shape, stride, padding, output_padding, groups, dilation)
    if bias is not None and tuple(bias.shape) != (spec.c,):
        raise ValueError(f"bias has shape {tuple(bias.shape)}: expected (C_out,) = ({spec.c},)")
    dtype = result_dtype(x, w, bias)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    if (spec.oh, spec.ow) != x.shape[2:]:  # output_padding >= stride: conv rows no input element reaches
        x = _array_module(x).pad(x, ((0, 0), (0, 0), (0, spec.oh - x.shape[2]), (0, spec.ow - x.shape[3])))
    out = _backward.conv_input(x, w, spec, algorithm, backend)
    if bias is not None:
        out += bias.astype(dtype, copy=False)[:, None, None]
    return out[0] if unbatched else out


def conv_transpose1d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", backend=None):
    """conv_transpose2d on x (N, C_in, L) or (C_in, L) with w (C_in, C_out/groups, K).

    padding: int, (left, right), "valid" or "same"."""
    x = as_array(x, "x")
    w = as_array(w, "w")
    check_ndim(x, "x", (2, 3), "(N, C_in, L) or unbatched (C_in, L)")
    check_ndim(w, "w", (3,), "(C_in, C_out/groups, K)")
    out = conv_transpose2d(x[..., None, :], w[:, :, None, :], bias, (1, _single(stride, "stride")),
                           _padding_1d(padding), (0, _single(output_padding, "output_padding")), groups,
                           (1, _single(dilation, "dilation")), algorithm=algorithm, backend=backend)
    return out[..., 0, :]


def _single(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{name}={value!r}: a 1-D op takes an int or a 1-tuple")
        return value[0]
    return value


def _padding_1d(padding):
    if isinstance(padding, str):
        return padding
    if isinstance(padding, (tuple, list)):
        if len(padding) == 1:
            return (0, padding[0])
        if len(padding) == 2:
            return ((0, 0), tuple(padding))
        raise ValueError(f"padding={padding!r}: a 1-D op takes an int, (left, right), 'valid' or 'same'")
    return (0, padding)


def _pool_input(x):
    x = as_array(x, "x")
    check_ndim(x, "x", (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
    dtype = result_dtype(x)
    x = x.astype(dtype, copy=False)
    unbatched = x.ndim == 3
    return (x[None] if unbatched else x), unbatched


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, backend=None):
    """Max pooling with PyTorch's rules; NaN propagates. With return_indices, also the int64
    flat index of each maximum within its H*W plane."""
    x, unbatched = _pool_input(x)
    return_indices = check_bool(return_indices, "return_indices")
    spec = geometry.pool_spec(x.shape, kernel_size, stride, padding, dilation, check_bool(ceil_mode, "ceil_mode"))
    if x.size == 0:
        out = _empty(x, spec.out_shape, x.dtype)
        result = (out, _empty(x, spec.out_shape, np.int64)) if return_indices else out
    else:
        result = select(x, backend).max_pool2d(x, spec, return_indices)
    if unbatched:
        return tuple(r[0] for r in result) if return_indices else result[0]
    return result


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, backend=None):
    """Average pooling with PyTorch's rules (ceil_mode, count_include_pad, divisor_override)."""
    x, unbatched = _pool_input(x)
    spec = geometry.pool_spec(x.shape, kernel_size, stride, padding, 1, check_bool(ceil_mode, "ceil_mode"),
                              check_bool(count_include_pad, "count_include_pad"), divisor_override)
    out = _empty(x, spec.out_shape, x.dtype) if x.size == 0 else select(x, backend).avg_pool2d(x, spec)
    return out[0] if unbatched else out


def _pool1d_input(x):
    x = as_array(x, "x")
    check_ndim(x, "x", (2, 3), "(N, C, L) or unbatched (C, L)")
    return x[..., None, :]


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, backend=None):
    """1-D max pooling of x (N, C, L) or (C, L); indices are positions along L."""
    stride = None if stride is None else (1, _single(stride, "stride"))
    result = max_pool2d(_pool1d_input(x), (1, _single(kernel_size, "kernel_size")), stride,
                        (0, _single(padding, "padding")), (1, _single(dilation, "dilation")),
                        ceil_mode, return_indices, backend=backend)
    if return_indices:
        return result[0][..., 0, :], result[1][..., 0, :]
    return result[..., 0, :]


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, *,
               backend=None):
    """1-D average pooling of x (N, C, L) or (C, L)."""
    stride = None if stride is None else (1, _single(stride, "stride"))
    out = avg_pool2d(_pool1d_input(x), (1, _single(kernel_size, "kernel_size")), stride,
                     (0, _single(padding, "padding")), ceil_mode, count_include_pad, backend=backend)
    return out[..., 0, :]


def pad2d(x, padding, mode="constant", value=0.0, *, backend=None):
    """Pad the last two axes of a 2-D, 3-D or 4-D array.

    padding: int, (ph, pw) or ((top, bottom), (left, right)).
    mode: "constant" (with `value`), "reflect", "replicate" or "circular" (PyTorch's meanings)."""
    x = as_array(x, "x")
    check_ndim(x, "x", (2, 3, 4), "(H, W), (C, H, W) or (N, C, H, W)")
    if mode != "constant" and value != 0:
        raise ValueError(f"value={value!r}: only mode='constant' takes a fill value, got mode={mode!r}")
    lead = x.shape[:-2]
    x4 = x if x.ndim == 4 else x.reshape((math.prod(lead), 1) + x.shape[-2:])
    spec = geometry.pad_spec(x4.shape, padding, mode, value)
    x4 = x4.astype(result_dtype(x4), copy=False)
    if x4.size == 0:
        out = _array_module(x4).full(spec.out_shape, spec.value, dtype=x4.dtype)
    else:
        out = select(x4, backend).pad2d(x4, spec)
    return out.reshape(lead + out.shape[-2:])


_SCIPY_MODES = ("full", "valid", "same")
_SCIPY_BOUNDARIES = {"fill": "constant", "pad": "constant", "wrap": "wrap", "circular": "wrap",
                     "symm": "symmetric", "symmetric": "symmetric"}


def correlate2d(image, kernel, mode="full", boundary="fill", fillvalue=0, *, backend=None):
    """scipy.signal.correlate2d for real 2-D arrays: mode full|valid|same, boundary fill|wrap|symm."""
    return _scipy_style(image, kernel, mode, boundary, fillvalue, backend, flip=False)


def convolve2d(image, kernel, mode="full", boundary="fill", fillvalue=0, *, backend=None):
    """scipy.signal.convolve2d for real 2-D arrays: the kernel flipped, then correlate2d's rules."""
    return _scipy_style(image, kernel, mode, boundary, fillvalue, backend, flip=True)


def _scipy_style(image, kernel, mode, boundary, fillvalue, backend, flip):
    image = as_array(image, "image")
    kernel = _on_device_of(image, as_array(kernel, "kernel"), "kernel")
    check_ndim(image, "image", (2,), "a 2-D array (H, W)")
    check_ndim(kernel, "kernel", (2,), "a 2-D array (KH, KW)")
    if mode not in _SCIPY_MODES:
        raise ValueError(f"mode={mode!r}: expected one of {_SCIPY_MODES}")
    if boundary not in _SCIPY_BOUNDARIES:
        raise ValueError(f"boundary={boundary!r}: expected one of 'fill', 'wrap', 'symm'")
    if image.size == 0 or kernel.size == 0:
        raise ValueError(f"image {tuple(image.shape)} and kernel {tuple(kernel.shape)} must both be non-empty")
    if isinstance(fillvalue, complex) or not np.isfinite(float(fillvalue)):
        raise ValueError(f"fillvalue={fillvalue!r}: must be a finite real number")
    (h, w), (kh, kw) = image.shape, kernel.shape
    if mode == "valid":
        if not ((h >= kh and w >= kw) or (h <= kh and w <= kw)):
            raise ValueError(f"mode='valid': image {(h, w)} and kernel {(kh, kw)} must be at least as large "
                             f"as one another in every dimension")
        boundary, fillvalue = "fill", 0  # no output reads the boundary (scipy swaps the inputs)
    # Output rows are rows r0 .. r0+oh-1 of the 'full' result (likewise columns).
    if mode == "full":
        (r0, oh), (c0, ow) = (0, h + kh - 1), (0, w + kw - 1)
    elif mode == "same":
        (r0, oh), (c0, ow) = ((((kh - 1) // 2, h), ((kw - 1) // 2, w)) if flip else ((kh // 2, h), (kw // 2, w)))
    else:
        (r0, oh), (c0, ow) = (min(h, kh) - 1, abs(h - kh) + 1), (min(w, kw) - 1, abs(w - kw) + 1)
    top, left = kh - 1 - r0, kw - 1 - c0
    pads = ((top, oh + kh - 1 - h - top), (left, ow + kw - 1 - w - left))
    dtype = result_dtype(image, kernel)
    xp = _array_module(image)
    np_mode = _SCIPY_BOUNDARIES[boundary]
    extra = {"constant_values": fillvalue} if np_mode == "constant" else {}
    padded = xp.pad(image.astype(dtype, copy=False), pads, mode=np_mode, **extra)
    weights = kernel[::-1, ::-1] if flip else kernel
    return conv2d(padded[None, None], weights[None, None], backend=backend)[0, 0]
