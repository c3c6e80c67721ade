"""The gradient methods of the CUDA backends (the interface: gpuconv/backends/__init__.py), shared by
"cuda" and "cuda-emu".

Each takes the FORWARD op's spec and arrays of one float dtype, and returns the gradient with
respect to the forward's input (or weights) in the input's array type and dtype.

- conv2d_input: "implicit_gemm" (conv2d_grad_input in conv_implicit_gemm.cu, any stride), or
  "direct" for stride 1, where the data gradient is itself a forward convolution of grad_out with
  the flipped, transposed weights (which conv_direct.cu reads in place from w) and pads
  (k-1)*d - pad: conv_direct.cu runs it, as it runs
  depthwise and few-channel forward layers where a GEMM tile would be mostly padding. "auto" asks
  the forward's rule (CudaBackend.choose_algorithm) about that convolution.
- conv2d_weight: "implicit_gemm" (conv2d_grad_weight in conv_grad_weight.cu), or "direct"
  (conv2d_grad_weight_direct: one block per (filter, channel) pair reducing its taps), which "auto"
  takes where the forward's rule would leave the GEMM tile mostly empty (fewer than
  IGEMM_MIN_FILTERS filters per group, or fewer than IGEMM_MIN_REDUCTION columns C/groups*kh*kw).
  Both split K (the output pixels) with a deterministic reduction.
- pooling and padding gradients: gathers (pool.cu, pad.cu), one thread per input element.
Tiling and split-K of the GEMMs: cuda_gemm.py.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .. import _kernel_params as params
from . import cuda as _cuda  # the launcher's helpers (a circular import: used at call time only)
from . import cuda_gemm

INPUT_ALGORITHMS = ("auto", "implicit_gemm", "direct")
WEIGHT_ALGORITHMS = ("auto", "implicit_gemm", "direct")


def _check_shape(name: str, array, expected) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(array.shape)}: the forward op's output for this spec has shape "
                         f"{tuple(expected)}")


def _check_zero_padding(spec) -> None:
    if spec.padding_mode != "zeros":
        raise ValueError(f"padding_mode={spec.padding_mode!r}: the backend's conv gradients take zero padding; "
                         f"other modes are folded back by the API (pad2d_input)")


def transposed_spec(spec):
    """The stride-1 forward convolution that computes spec's data gradient: input grad_out
    (n, f, oh, ow), weights (c, f/groups, kh, kw) flipped, pads (k-1)*d - pad (possibly negative:
    a crop), output (n, c, h, w)."""
    (dh, dw), (top, _, left, _) = spec.dilation, spec.pads
    span_h, span_w = (spec.kh - 1) * dh, (spec.kw - 1) * dw
    pads = (span_h - top, spec.h + top - spec.oh, span_w - left, spec.w + left - spec.ow)
    return dataclasses.replace(spec, c=spec.f, h=spec.oh, w=spec.ow, f=spec.c, pads=pads, oh=spec.h, ow=spec.w)


class CudaGradients:
    """Mixed into CudaBackend: uses its device, _plan, choose_algorithm, _launch_direct, _elementwise."""

    input_grad_algorithms = INPUT_ALGORITHMS
    weight_grad_algorithms = WEIGHT_ALGORITHMS

    # ---- algorithm choice ----------------------------------------------------------------------
    def _input_rule(self, spec, algorithm) -> str | None:
        """Why `algorithm` cannot compute spec's data gradient, or None when it can."""
        if algorithm == "direct" and spec.stride != (1, 1):
            return f"conv2d_input runs the direct kernel for stride 1 only, got stride={spec.stride}"
        try:
            if algorithm == "direct":
                self._plan(transposed_spec(spec), "direct", np.float32)
            elif algorithm == "implicit_gemm":
                self._gemm_plan("input", spec, "float")
        except ValueError as exc:
            return str(exc)
        return None

    def _gemm_plan(self, kind, spec, ctype, itype="int"):
        m, n, k = {"input": (spec.channels_per_group, spec.n * spec.h * spec.w, spec.filters_per_group * spec.taps),
                   "weight": (spec.filters_per_group, spec.reduction, spec.n * spec.out_pixels)}[kind]
        return cuda_gemm.plan(kind, spec.groups, m, n, k, ctype, itype, self.device.sm_count())

    def applicable_input_grad_algorithms(self, spec) -> tuple[str, ...]:
        return ("auto",) + tuple(a for a in INPUT_ALGORITHMS[1:] if self._input_rule(spec, a) is None)

    def _weight_plan(self, spec, algorithm, ctype, itype="int"):
        if algorithm == "direct":
            return cuda_gemm.plan_direct_weight(spec.f * spec.channels_per_group, spec.taps, spec.n * spec.out_pixels,
                                                ctype, self.device.sm_count())
        return self._gemm_plan("weight", spec, ctype, itype)

    def applicable_weight_grad_algorithms(self, spec) -> tuple[str, ...]:
        usable = ["auto"]
        for algorithm in WEIGHT_ALGORITHMS[1:]:
            try:
                self._weight_plan(spec, algorithm, "float")
                usable.append(algorithm)
            except ValueError:
                pass
        return tuple(usable)

    def choose_grad_algorithms(self, spec) -> tuple[str, str]:
        """The (input, weight) gradient algorithms "auto" runs for spec: the direct kernels where the
        forward's rule (CudaBackend.choose_algorithm) would pick it: for the data gradient, applied to the
        transposed convolution (stride 1 only); for the weight gradient, to the GEMM's shape."""
        direct_input = spec.stride == (1, 1) and self.choose_algorithm(transposed_spec(spec)) == "direct"
        direct_weight = spec.filters_per_group < _cuda.IGEMM_MIN_FILTERS or spec.reduction < _cuda.IGEMM_MIN_REDUCTION
        return ("direct" if direct_input else "implicit_gemm"), ("direct" if direct_weight else "implicit_gemm")

    # ---- convolution ---------------------------------------------------------------------------
    def conv2d_input(self, grad_out, w, spec, algorithm="auto"):
        _check_zero_padding(spec)
        _check_shape("grad_out", grad_out, spec.out_shape)
        if algorithm not in INPUT_ALGORITHMS:
            raise ValueError(f"algorithm={algorithm!r}: the {self.name} backend's conv2d_input offers "
                             f"{INPUT_ALGORITHMS}")
        if algorithm == "auto":
            algorithm = self.choose_grad_algorithms(spec)[0]
        elif algorithm == "direct" and spec.stride != (1, 1):
            raise ValueError(f"algorithm='direct': {self._input_rule(spec, algorithm)}; use 'implicit_gemm'")
        with self.device.scope(grad_out):
            if algorithm == "direct":
                return self._conv2d_input_direct(grad_out, w, spec)
            return self._conv2d_input_gemm(grad_out, w, spec)

    def _conv2d_input_gemm(self, grad_out, w, spec):
        dev = self.device
        itype, I = _cuda._conv_index_type(spec, grad_out.dtype)
        ctype = _cuda._ctype(grad_out.dtype)
        plan = self._gemm_plan("input", spec, ctype, itype)
        dyd, wd = dev.to_work(grad_out), dev.to_work(w)
        dx = dev.xp.empty((spec.n, spec.c, spec.h, spec.w), dtype=dyd.dtype)
        cuda_gemm.launch(dev, plan, itype, I, _gemm_scalars(plan.params, spec, I, plan.k_split),
                         dict(dy=dyd, w=wd, dx=dx), dx)
        return dev.like(dx, grad_out)

    def _conv2d_input_direct(self, grad_out, w, spec):
        dev = self.device
        tspec = transposed_spec(spec)
        itype, I = _cuda._conv_index_type(tspec, grad_out.dtype)
        plan = self._plan(tspec, "direct", grad_out.dtype)
        dyd, wd = dev.to_work(grad_out), dev.to_work(w)
        dx = dev.xp.empty(tspec.out_shape, dtype=dyd.dtype)
        # tspec's weights are w flipped in both taps and transposed: the kernel reads them in place
        self._launch_direct(plan, tspec, dyd, wd, None, dx, itype, I, w_transposed=True)
        return dev.like(dx, grad_out)

    def conv2d_weight(self, x, grad_out, spec, algorithm="auto"):
        _check_zero_padding(spec)
        _check_shape("grad_out", grad_out, spec.out_shape)
        _check_shape("x", x, (spec.n, spec.c, spec.h, spec.w))
        if algorithm not in WEIGHT_ALGORITHMS:
            raise ValueError(f"algorithm={algorithm!r}: the {self.name} backend's conv2d_weight offers "
                             f"{WEIGHT_ALGORITHMS}")
        if algorithm == "auto":
            algorithm = self.choose_grad_algorithms(spec)[1]
        with self.device.scope(x):
            dev = self.device
            itype, I = _cuda._conv_index_type(spec, x.dtype)
            plan = self._weight_plan(spec, algorithm, _cuda._ctype(x.dtype), itype)
            xd, dyd = dev.to_work(x), dev.to_work(grad_out)
            dw = dev.xp.empty((spec.f, spec.channels_per_group, spec.kh, spec.kw), dtype=xd.dtype)
            cuda_gemm.launch(dev, plan, itype, I, _gemm_scalars(plan.params, spec, I, plan.k_split),
                             dict(x=xd, dy=dyd, dw=dw), dw)
            return dev.like(dw, x)

    # ---- pooling and padding: gathers, one thread per input element ------------------------------
    def max_pool2d_input(self, grad_out, x, indices, spec):
        _check_shape("grad_out", grad_out, spec.out_shape)
        _check_shape("x", x, (spec.n, spec.c, spec.h, spec.w))
        if indices is not None:
            _check_shape("indices", indices, spec.out_shape)
        with self.device.scope(grad_out):
            dev = self.device
            picked = indices.astype(np.int64, copy=False) if indices is not None else dev.xp.empty(1, dtype=np.int64)
            dx = self._elementwise(params.MAX_POOL_GRAD, "POOL_THREADS", {"dy": grad_out, "x": x, "indices": picked},
                                   "dx", (spec.n, spec.c, spec.h, spec.w),
                                   functools.partial(_cuda._max_pool_scalars, params.MAX_POOL_GRAD, spec,
                                                     with_indices=indices is not None))
            return dev.like(dx, grad_out)

    def avg_pool2d_input(self, grad_out, spec):
        _check_shape("grad_out", grad_out, spec.out_shape)
        with self.device.scope(grad_out):
            dx = self._elementwise(params.AVG_POOL_GRAD, "POOL_THREADS", {"dy": grad_out}, "dx",
                                   (spec.n, spec.c, spec.h, spec.w),
                                   functools.partial(_cuda._avg_pool_scalars, params.AVG_POOL_GRAD, spec))
            return self.device.like(dx, grad_out)

    def pad2d_input(self, grad_out, spec):
        _check_shape("grad_out", grad_out, spec.out_shape)
        with self.device.scope(grad_out):
            dx = self._elementwise(params.PAD_GRAD, "PAD_THREADS", {"dy": grad_out}, "dx",
                                   (spec.n, spec.c, spec.h, spec.w),
                                   functools.partial(_cuda._pad_scalars, params.PAD_GRAD, spec))
            return self.device.like(dx, grad_out)


@functools.lru_cache(maxsize=1024)
def _gemm_scalars(table, spec, I, k_split: int) -> tuple:
    """The scalars of conv2d_grad_input, conv2d_grad_weight or conv2d_grad_weight_direct (the last two
    name the dilations dil_h and dil_w)."""
    geometry = _cuda.conv_geometry(spec)
    if "dil_h" in table.names:
        geometry["dil_h"], geometry["dil_w"] = geometry.pop("dh"), geometry.pop("dw")
    return table.scalars(I, k_split=k_split, **geometry)
