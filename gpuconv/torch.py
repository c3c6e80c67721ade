"""gpuconv for PyTorch: differentiable ops on torch tensors and drop-in torch.nn layers.

    import gpuconv.torch as gt
    y = gt.conv2d(x, w, b, stride=2, padding="same")      # autograd through gpuconv.grad
    model = gt.convert(model)                              # its nn.Conv2d/ConvTranspose2d/MaxPool2d/AvgPool2d
                                                           # now run on gpuconv, same parameters

The ops are torch.autograd.Functions whose forward is gpuconv's op and whose backward is gpuconv.grad;
they take every option gpuconv's forward takes ("same" for any stride, asymmetric pads, padding modes)
and a `backend=` ("numpy", "cuda", "cuda-emu"; default: chosen from the tensor's device). Tensors are
never copied on the way: CPU tensors are viewed as NumPy arrays, CUDA tensors as CuPy arrays through
DLPack, and CUDA work runs on torch's current stream (gpuconv/_torch_interop.py). Gradients are
first-order only (the backward is not itself differentiable).

The layers subclass the torch.nn ones: the same constructor arguments, attributes and state_dict keys,
so a torch.nn checkpoint loads unchanged; they add a keyword-only `backend=`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import _api
from . import grad as _grad
from ._geometry import conv_spec

__all__ = ["conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "Conv2d", "ConvTranspose2d", "MaxPool2d",
           "AvgPool2d", "convert"]


# ---------------------------------------------------------------------------------------------
# Differentiable ops


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", *,
           algorithm="auto", backend=None):
    """gpuconv.conv2d on torch tensors, differentiable in x, w and bias."""
    return _Conv2d.apply(x, w, bias, stride, padding, dilation, groups, padding_mode, algorithm, backend)


def conv_transpose2d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", backend=None):
    """gpuconv.conv_transpose2d (torch.nn.functional.conv_transpose2d's rules), differentiable in x, w and bias."""
    return _ConvTranspose2d.apply(x, w, bias, stride, padding, output_padding, groups, dilation, algorithm, backend)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               backend=None):
    """gpuconv.max_pool2d on torch tensors, differentiable in x (the indices are not)."""
    out, indices = _MaxPool2d.apply(x, kernel_size, stride, padding, dilation, ceil_mode, backend)
    return (out, indices) if return_indices else out


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, backend=None):
    """gpuconv.avg_pool2d on torch tensors, differentiable in x."""
    return _AvgPool2d.apply(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                            backend)


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, bias, stride, padding, dilation, groups, padding_mode, algorithm, backend):
        ctx.save_for_backward(x, w)
        ctx.geometry = (stride, padding, dilation, groups, padding_mode)
        ctx.backend = backend
        return _api.conv2d(x, w, bias, *ctx.geometry, algorithm=algorithm, backend=backend)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        need_x, need_w, need_bias = ctx.needs_input_grad[:3]
        dx = _grad.conv2d_input(x.shape, w, grad_out, *ctx.geometry, backend=ctx.backend) if need_x else None
        dw = _grad.conv2d_weight(x, w.shape, grad_out, *ctx.geometry, backend=ctx.backend) if need_w else None
        dbias = _grad.conv2d_bias(grad_out) if need_bias else None
        return dx, dw, dbias, None, None, None, None, None, None, None


class _ConvTranspose2d(torch.autograd.Function):
    """The transposed convolution is the adjoint of the forward conv2d (stride, padding, dilation, groups)
    that maps its output back to its input: x's gradient is that conv2d of grad_out, w's gradient is
    conv2d_weight with grad_out as the conv's input and x as its output gradient."""

    @staticmethod
    def forward(ctx, x, w, bias, stride, padding, output_padding, groups, dilation, algorithm, backend):
        ctx.save_for_backward(x, w)
        ctx.geometry = (stride, padding, dilation, groups)
        ctx.backend = backend
        return _api.conv_transpose2d(x, w, bias, stride, padding, output_padding, groups, dilation,
                                     algorithm=algorithm, backend=backend)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        need_x, need_w, need_bias = ctx.needs_input_grad[:3]
        # With output_padding >= stride (allowed when dilation > stride) the forward conv of grad_out has
        # trailing rows/columns beyond x's: they belong to no element of x (x's gradient drops them, x
        # stands in for that conv's output gradient padded with zeros there).
        conv_hw = conv_spec((1,) + tuple(grad_out.shape[-3:]), tuple(w.shape), *ctx.geometry, "zeros").out_shape[2:]
        extra_h, extra_w = conv_hw[0] - x.shape[-2], conv_hw[1] - x.shape[-1]
        dx = dw = dbias = None
        if need_x:
            dx = _api.conv2d(grad_out, w, None, *ctx.geometry, backend=ctx.backend)
            dx = dx[..., :x.shape[-2], :x.shape[-1]] if extra_h or extra_w else dx
        if need_w:
            x_as_grad = nn.functional.pad(x, (0, extra_w, 0, extra_h)) if extra_h or extra_w else x
            dw = _grad.conv2d_weight(grad_out, w.shape, x_as_grad, *ctx.geometry, backend=ctx.backend)
        if need_bias:
            dbias = _grad.conv2d_bias(grad_out)
        return dx, dw, dbias, None, None, None, None, None, None, None


class _MaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode, backend):
        ctx.geometry = (kernel_size, stride, padding, dilation, ceil_mode)
        ctx.backend = backend
        out, indices = _api.max_pool2d(x, *ctx.geometry, return_indices=True, backend=backend)
        ctx.save_for_backward(x, indices)
        ctx.mark_non_differentiable(indices)
        return out, indices

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, _grad_indices):
        x, indices = ctx.saved_tensors
        dx = _grad.max_pool2d_input(grad_out, x, *ctx.geometry, indices=indices, backend=ctx.backend)
        return dx, None, None, None, None, None, None


class _AvgPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, backend):
        ctx.input_shape = tuple(x.shape)
        ctx.geometry = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        ctx.backend = backend
        return _api.avg_pool2d(x, *ctx.geometry, backend=backend)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        dx = _grad.avg_pool2d_input(grad_out, ctx.input_shape, *ctx.geometry, backend=ctx.backend)
        return dx, None, None, None, None, None, None, None


# ---------------------------------------------------------------------------------------------
# Layers: torch.nn's, with forward computed by the ops above


class _OnBackend:
    """The keyword-only `backend=` the gpuconv layers add to torch.nn's constructor arguments."""

    def __init__(self, *args, backend=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend

    def extra_repr(self):
        text = super().extra_repr()
        return text if self.backend is None else f"{text}, backend={self.backend!r}"


class Conv2d(_OnBackend, nn.Conv2d):
    """torch.nn.Conv2d computed by gpuconv (every padding_mode handled by gpuconv itself)."""

    def forward(self, input):
        return conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                      self.padding_mode, backend=self.backend)


class ConvTranspose2d(_OnBackend, nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d computed by gpuconv; forward(input, output_size=None) as torch's."""

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros":
            raise ValueError(f"padding_mode={self.padding_mode!r}: ConvTranspose2d supports only 'zeros'")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, 2,
                                              self.dilation)
        return conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                self.groups, self.dilation, backend=self.backend)


class MaxPool2d(_OnBackend, nn.MaxPool2d):
    """torch.nn.MaxPool2d computed by gpuconv."""

    def forward(self, input):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                          self.return_indices, backend=self.backend)


class AvgPool2d(_OnBackend, nn.AvgPool2d):
    """torch.nn.AvgPool2d computed by gpuconv."""

    def forward(self, input):
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override, backend=self.backend)


_GPUCONV_LAYER = {nn.Conv2d: Conv2d, nn.ConvTranspose2d: ConvTranspose2d, nn.MaxPool2d: MaxPool2d,
                  nn.AvgPool2d: AvgPool2d}


def convert(module: nn.Module, *, backend=None) -> nn.Module:
    """Make every torch.nn Conv2d, ConvTranspose2d, MaxPool2d and AvgPool2d in `module` (itself included)
    a gpuconv layer running on `backend`, in place, and return `module`.

    Each layer keeps its identity: it only gets the gpuconv subclass of its class, so its parameters,
    buffers, hooks and an optimizer's references to them stay as they are. Subclasses of those torch.nn
    classes (which may have their own forward) are left alone; gpuconv layers get the new backend."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module={module!r}: expected a torch.nn.Module")
    for layer in module.modules():
        gpuconv_class = _GPUCONV_LAYER.get(type(layer))
        if gpuconv_class is not None:
            layer.__class__ = gpuconv_class
            layer.backend = backend
        elif type(layer) in _GPUCONV_LAYER.values():
            layer.backend = backend
    return module
