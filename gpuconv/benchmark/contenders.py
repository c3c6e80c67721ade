"""What is timed: gpuconv on each backend, and the peers (PyTorch on the CPU and with CUDA/cuDNN,
scipy.ndimage and cupyx.scipy.ndimage). A contender turns a case and its host inputs into a
call with no arguments that returns the result, or into the reason it does not apply.

A peer that is not installed, or needs a GPU this machine lacks, raises Unavailable on
creation: the runner lists it as skipped with that reason.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import _api, grad
from ..backends import BackendUnavailable, get_backend
from .layers import CONV, MAX_POOL, Case
from .timing import cupy_event_clock, cupy_kernel_clock, host_clock, torch_event_clock

CPU, GPU, EMULATOR = "cpu", "gpu", "emulator"
PEERS = ("torch-cpu", "torch-cuda", "torch-cuda-tf32", "torch-cuda-fp16", "scipy", "cupyx")
# The peers that compute in lower precision than the case (what PyTorch users get by default on a
# GPU): their first result is checked against the reference with this relative tolerance.
LOW_PRECISION_TOLERANCE = 2e-2


class Unavailable(RuntimeError):
    """The contender cannot run here; the message says why."""


@dataclass
class Contender:
    label: str
    device: str  # CPU, GPU or EMULATOR: which ceiling applies
    clock: Callable
    # (case, {"x": ndarray, "w": ndarray or None}) -> call returning the result, or a reason string
    prepare: Callable[[Case, dict], Callable[[], object] | str]
    # waits for the work a call queued (a GPU's); for timers that read the host clock
    synchronise: Callable[[], None] = lambda: None
    # case -> the conv algorithm gpuconv's "auto" runs for it ("input+weight" gradient algorithms
    # backward); None for peers and pooling
    algorithm: Callable[[Case], str | None] = lambda case: None
    # largest relative difference from the reference result allowed; None: the case dtype's
    tolerance: float | None = None
    # a clock for the device time of the call's own kernels alone (gpuconv on a GPU); None: none
    kernel_clock: Callable | None = None


def to_numpy(result):
    """A CuPy array, a torch tensor or a NumPy array as a NumPy array on the host (a tuple of
    them, as a backward pass returns, as a tuple)."""
    if isinstance(result, tuple):
        return tuple(to_numpy(part) for part in result)
    module = type(result).__module__.split(".")[0]
    if module == "cupy":
        return result.get()
    if module == "torch":
        return result.detach().cpu().numpy()
    return np.asarray(result)


def by_label(label: str) -> Contender:
    """"gpuconv/<backend>" or one of PEERS; raises Unavailable with the reason it cannot run here."""
    if label.startswith("gpuconv/"):
        return gpuconv_contender(label.split("/", 1)[1])
    return peer(label)


def gpuconv_contender(backend: str) -> Contender:
    """gpuconv's public ops pinned to `backend`; raises Unavailable with the registry's reason."""
    try:
        implementation = get_backend(backend)
    except BackendUnavailable as exc:
        raise Unavailable(str(exc)) from None
    on_gpu = backend == "cuda"
    if on_gpu:
        import cupy

        to_device, synchronise = cupy.asarray, cupy.cuda.Device().synchronize
    else:
        to_device, synchronise = np.asarray, lambda: None

    def prepare(case, inputs):
        layer = case.layer
        x = to_device(inputs["x"])
        if case.backward:
            w, go = to_device(inputs["w"]), to_device(inputs["grad"])
            return lambda: (grad.conv2d_input(x.shape, w, go, layer.stride, layer.padding, 1, layer.groups,
                                              backend=backend),
                            grad.conv2d_weight(x, w.shape, go, layer.stride, layer.padding, 1, layer.groups,
                                               backend=backend))
        if layer.op == CONV:
            w = to_device(inputs["w"])
            return lambda: _api.conv2d(x, w, None, layer.stride, layer.padding, 1, layer.groups,
                                       precision=case.precision, backend=backend)
        if layer.op == MAX_POOL:
            return lambda: _api.max_pool2d(x, layer.kernel, layer.stride, layer.padding, backend=backend)
        return lambda: _api.avg_pool2d(x, layer.kernel, layer.stride, layer.padding, backend=backend)

    def algorithm(case):
        if case.backward:
            choose = getattr(implementation, "choose_grad_algorithms", None)
            return None if choose is None else "+".join(choose(case.spec))
        if case.layer.op != CONV:
            return None
        return implementation.choose_algorithm(case.spec, case.array_dtype, case.precision)

    device = GPU if on_gpu else (EMULATOR if backend == "cuda-emu" else CPU)
    return Contender(f"gpuconv/{backend}", device, cupy_event_clock() if on_gpu else host_clock, prepare,
                     synchronise, algorithm, kernel_clock=cupy_kernel_clock() if on_gpu else None)


def peer(label: str) -> Contender:
    """One of PEERS; raises Unavailable with the reason when it cannot run here."""
    if label not in PEERS:
        raise ValueError(f"peer {label!r}: expected one of {PEERS}")
    if label.startswith("torch-cuda"):
        return _torch_cuda(label)
    return {"torch-cpu": _torch_cpu, "scipy": _scipy, "cupyx": _cupyx}[label]()


def _import(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        extra = "cuda12] or gpuconv[cuda13" if module_name.startswith("cup") else "bench"
        raise Unavailable(f"{module_name} is not installed ({exc}); pip install gpuconv[{extra}]") from None


def _torch_prepare(torch, device: str, dtype=None, channels_last=False, tf32=False, float32_only=False):
    """Calls of torch.nn.functional on `device`, the inputs cast to `dtype` (None: the case's) and in
    channels_last memory format if asked. On a GPU each call first sets cuDNN's flags (process-wide,
    and the torch-cuda peers differ in them): its autotuner on, TF32 when `tf32` or in a tf32 case
    (float32 data with precision="tf32": every peer computes those in TF32). float32_only: the
    peer applies to float32 cases only."""
    functional = torch.nn.functional
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def tensor(array):
        t = torch.from_numpy(array).to(device)
        return (t if dtype is None else t.to(dtype)).contiguous(memory_format=memory_format)

    def prepare(case, inputs):
        layer = case.layer
        if device == "cpu" and case.dtype == "float16":
            return "PyTorch's CPU float16 convolution is not a peer (compared in float32 and float64)"
        if float32_only and case.dtype != "float32":
            return "shows what PyTorch gives a float32 model by default: float32 cases only"
        x = tensor(inputs["x"])
        if case.backward:  # autograd's backward of the conv alone: dx and dw
            x.requires_grad_()
            w = tensor(inputs["w"]).requires_grad_()
            y = functional.conv2d(x, w, None, layer.stride, layer.padding, 1, layer.groups)
            go = tensor(inputs["grad"])
            return _call(torch, device, tf32 or case.precision == "tf32",
                         lambda: torch.autograd.grad(y, (x, w), go, retain_graph=True), differentiable=True)
        if layer.op == CONV:
            w = tensor(inputs["w"])
            return _call(torch, device, tf32 or case.precision == "tf32",
                         lambda: functional.conv2d(x, w, None, layer.stride, layer.padding, 1, layer.groups))
        pool = functional.max_pool2d if layer.op == MAX_POOL else functional.avg_pool2d
        return _call(torch, device, tf32, lambda: pool(x, layer.kernel, layer.stride, layer.padding))

    return prepare


def _call(torch, device: str, allow_tf32: bool, fn, differentiable: bool = False):
    cudnn = torch.backends.cudnn

    def call():
        if device == "cuda":
            cudnn.allow_tf32 = allow_tf32
            cudnn.benchmark = True
        with torch.enable_grad() if differentiable else torch.no_grad():
            return fn()

    return call


def _torch_cpu() -> Contender:
    torch = _import("torch")
    return Contender("torch-cpu", CPU, host_clock, _torch_prepare(torch, "cpu"))


# torch-cuda peers: cuDNN in full float32 (TF32 off: the fair peer, gpuconv computes in float32),
# and, for float32 cases, with TF32 on (PyTorch's default for convolutions) and in float16
# channels_last (what a user chasing speed runs); each with cuDNN's autotuner, whose tuning the
# warm-up calls pay for.
TORCH_CUDA_PEERS = {"torch-cuda": dict(tf32=False), "torch-cuda-tf32": dict(tf32=True),
                    "torch-cuda-fp16": dict(tf32=False, float16=True)}


def _torch_cuda(label: str) -> Contender:
    torch = _import("torch")
    if not torch.cuda.is_available():
        raise Unavailable(f"torch {torch.__version__} sees no usable CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    options = TORCH_CUDA_PEERS[label]
    half = options.get("float16", False)
    low_precision = options["tf32"] or half
    prepare = _torch_prepare(torch, "cuda", torch.float16 if half else None, channels_last=half,
                             tf32=options["tf32"], float32_only=low_precision)
    return Contender(label, GPU, torch_event_clock(), prepare, torch.cuda.synchronize,
                     tolerance=LOW_PRECISION_TOLERANCE if low_precision else None)


def ndimage_rule(case: Case) -> str | None:
    """Why ndimage.correlate cannot compute this case, or None. It correlates one 2-D plane with
    one 2-D kernel into an output of the input's size: the conv must have a single input channel,
    stride 1, no dilation, zero padding and its output window inside ndimage's."""
    if case.layer.op != CONV:
        return "ndimage.correlate is a convolution; pooling is not compared with it"
    if case.backward:
        return "ndimage.correlate computes no gradients"
    spec = case.spec
    if spec.c != 1:
        return f"needs a single input channel (C={spec.c})"
    if spec.stride != (1, 1) or spec.dilation != (1, 1) or spec.padding_mode != "zeros":
        return "needs stride 1, dilation 1 and zero padding"
    first_row, first_col = spec.kh // 2 - spec.pads[0], spec.kw // 2 - spec.pads[2]
    if first_row < 0 or first_col < 0 or first_row + spec.oh > spec.h or first_col + spec.ow > spec.w:
        return f"padding {spec.pads} reaches past ndimage's same-size output"
    return None


def _ndimage_prepare(xp, ndimage):
    """Per image n and filter f: correlate the plane into a same-size buffer, then copy the
    conv's output window (row r of the conv is row r - top + kh//2 of ndimage's output)."""

    def prepare(case, inputs):
        reason = ndimage_rule(case)
        if reason:
            return reason
        spec = case.spec
        x, w = xp.asarray(inputs["x"]), xp.asarray(inputs["w"])
        rows = slice(spec.kh // 2 - spec.pads[0], spec.kh // 2 - spec.pads[0] + spec.oh)
        cols = slice(spec.kw // 2 - spec.pads[2], spec.kw // 2 - spec.pads[2] + spec.ow)
        plane = xp.empty((spec.h, spec.w), dtype=x.dtype)
        out = xp.empty(spec.out_shape, dtype=x.dtype)

        def call():
            for n in range(spec.n):
                for f in range(spec.f):
                    ndimage.correlate(x[n, 0], w[f, 0], output=plane, mode="constant", cval=0.0)
                    out[n, f] = plane[rows, cols]
            return out

        return call

    return prepare


def _scipy() -> Contender:
    ndimage = _import("scipy.ndimage")
    return Contender("scipy", CPU, host_clock, _ndimage_prepare(np, ndimage))


def _cupyx() -> Contender:
    cupy = _import("cupy")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy raises its CUDARuntimeError when no driver is loaded
        raise Unavailable(f"CuPy finds no usable CUDA device ({exc})") from None
    if count == 0:
        raise Unavailable("CuPy finds no CUDA device")
    ndimage = _import("cupyx.scipy.ndimage")
    return Contender("cupyx", GPU, cupy_event_clock(), _ndimage_prepare(cupy, ndimage),
                     cupy.cuda.Device().synchronize)
