"""PyTorch tensors at the public API: in as zero-copy NumPy/CuPy views, out as tensors on the same device.

Every public op is wrapped with `accepts_torch`. A call without torch tensors goes straight through
(torch is never imported by gpuconv itself: a tensor can only exist if the caller imported torch).
With torch tensors among the arguments:
- CPU tensors become NumPy arrays (`tensor.numpy()`), results come back through `torch.from_numpy`;
- CUDA tensors become CuPy arrays through DLPack (`cupy.from_dlpack`), results come back through
  `torch.from_dlpack`, and the whole call runs on torch's current stream of the tensor's device (CuPy's
  current stream is set to it), so nothing is copied or synchronised and work queued by torch before the
  call is ordered before gpuconv's kernels.
The top-level ops do not record autograd history: a tensor that requires grad while grad mode is on is
a TypeError pointing at gpuconv.torch (whose autograd Functions call these ops with grad mode off).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import sys

import numpy as np

# torch dtypes gpuconv reads (integers and bool are promoted to float64, as NumPy arrays are).
_SUPPORTED_DTYPE_NAMES = ("float16", "float32", "float64", "bool", "uint8", "uint16", "uint32", "uint64", "int8",
                          "int16", "int32", "int64")


def _loaded_torch():
    """The torch module if the process imported it, else None (a tensor cannot exist without it)."""
    return sys.modules.get("torch")


def accepts_torch(fn):
    """fn, taking torch tensors wherever it takes arrays and returning tensors for them."""
    signature = inspect.signature(fn)
    public_name = f"{fn.__module__.replace('._api', '')}.{fn.__name__}"  # gpuconv.conv2d, gpuconv.grad.conv2d_input

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        torch = _loaded_torch()
        if torch is None or not any(isinstance(v, torch.Tensor) for v in (*args, *kwargs.values())):
            return fn(*args, **kwargs)
        return _call_with_tensors(torch, fn, public_name, signature, args, kwargs)

    return wrapper


def _call_with_tensors(torch, fn, public_name, signature, args, kwargs):
    bound = signature.bind(*args, **kwargs)
    tensors = {name: v for name, v in bound.arguments.items() if isinstance(v, torch.Tensor)}
    for name, tensor in tensors.items():
        _check_tensor(torch, tensor, name, public_name)
    device = _common_device(tensors)
    with _device_scope(torch, device):
        for name, tensor in tensors.items():
            bound.arguments[name] = _to_array(tensor.detach())
        return _to_tensors(torch, fn(*bound.args, **bound.kwargs))


def _check_tensor(torch, tensor, name, op):
    dtype_name = str(tensor.dtype).removeprefix("torch.")
    if dtype_name not in _SUPPORTED_DTYPE_NAMES:
        raise TypeError(f"{name} has dtype {dtype_name} (a torch tensor): supported are float16, float32 and "
                        f"float64, and integer and bool tensors are promoted to float64 (convert it first, e.g. "
                        f"{name}.float())")
    if tensor.layout != torch.strided:
        raise TypeError(f"{name} is a torch tensor with layout {tensor.layout}: gpuconv takes dense (strided) "
                        f"tensors; use {name}.to_dense()")
    if tensor.device.type not in ("cpu", "cuda"):
        raise TypeError(f"{name} is a torch tensor on device {tensor.device}: gpuconv runs CPU and CUDA tensors")
    if tensor.requires_grad and torch.is_grad_enabled():
        raise TypeError(f"{name} requires grad: {op} does not record autograd history; use "
                        f"gpuconv.torch (differentiable), or pass {name}.detach() or call it under torch.no_grad()")


def _common_device(tensors):
    devices = {name: tensor.device for name, tensor in tensors.items()}
    first_name, first = next(iter(devices.items()))
    for name, device in devices.items():
        if device != first:
            raise TypeError(f"{name} is on {device} but {first_name} is on {first}: pass the torch tensors "
                            f"of one call on one device")
    return first


def _device_scope(torch, device):
    """CPU: nothing. CUDA: the tensor's device current for torch and CuPy, and CuPy's current stream =
    torch's current stream on it, so that DLPack exchanges and gpuconv's kernels are ordered with torch's work."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    try:
        import cupy
    except ImportError:
        raise TypeError("CUDA tensors need CuPy: pip install 'gpuconv[cuda12]' or 'gpuconv[cuda13]'") from None
    scope = contextlib.ExitStack()
    scope.enter_context(torch.cuda.device(device))
    scope.enter_context(cupy.cuda.Device(device.index))
    stream = torch.cuda.current_stream(device)
    scope.enter_context(cupy.cuda.ExternalStream(stream.cuda_stream, device.index))
    return scope


def _to_array(tensor):
    if tensor.device.type == "cuda":
        import cupy

        return cupy.from_dlpack(tensor)
    return tensor.numpy()


def _to_tensors(torch, result):
    """NumPy arrays -> CPU tensors, CuPy arrays -> CUDA tensors (both zero-copy), through tuples."""
    if isinstance(result, tuple):
        return tuple(_to_tensors(torch, r) for r in result)
    if isinstance(result, np.ndarray):
        if not result.flags.writeable or min(result.strides, default=0) < 0:
            result = result.copy()  # torch.from_numpy shares memory only with writable, forward-strided arrays
        return torch.from_numpy(result)
    if type(result).__module__.split(".")[0] == "cupy":
        return torch.from_dlpack(result)
    return result
