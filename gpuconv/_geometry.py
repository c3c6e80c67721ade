"""Shape rules: padding, stride, dilation and output size, computed once per call.

Every op turns its arguments into one frozen spec here; backends consume the spec and
never re-derive a size or a pad. Pads are explicit per side: (top, bottom, left, right).
The spec builders are pure functions of their arguments, memoised per call signature
(_memo.memoise: only successful results are kept, keyed by argument types and values).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._memo import cached_hash, memoise, state_without_hash
from ._validate import check_choice, real_number

CONV_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PAD_MODES = ("constant", "reflect", "replicate", "circular")


@dataclass(frozen=True)
class ConvSpec:
    """conv2d on x (n, c, h, w) with weights (f, c // groups, kh, kw)."""

    __hash__ = cached_hash  # computed once: specs key the per-call caches
    __getstate__ = state_without_hash

    n: int
    c: int
    h: int
    w: int
    f: int
    kh: int
    kw: int
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    padding_mode: str  # one of CONV_PADDING_MODES
    oh: int
    ow: int

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.f, self.oh, self.ow)

    # The per-group GEMM: each of the `groups` groups multiplies its weights
    # (filters_per_group x reduction) by its im2col columns (reduction x out_pixels, per image).
    @property
    def filters_per_group(self) -> int:
        """F/groups: the GEMM's rows (M)."""
        return self.f // self.groups

    @property
    def channels_per_group(self) -> int:
        """C/groups: the input channels each filter reads."""
        return self.c // self.groups

    @property
    def taps(self) -> int:
        """KH*KW: the kernel's taps."""
        return self.kh * self.kw

    @property
    def reduction(self) -> int:
        """C/groups*KH*KW: the GEMM's reduction length (K), one im2col column."""
        return self.channels_per_group * self.taps

    @property
    def out_pixels(self) -> int:
        """OH*OW: the GEMM's columns (N) per image."""
        return self.oh * self.ow

    @property
    def flops(self) -> int:
        return 2 * self.n * self.f * self.reduction * self.out_pixels


@dataclass(frozen=True)
class PoolSpec:
    """max/avg pooling of x (n, c, h, w).

    Window (i, j) covers input rows i*sh - top + a*dh for a in range(kh) (likewise
    columns). Taps outside [0, h) read padding: -inf for max, 0 for avg. The divisor
    of avg pooling counts the taps inside [-top, h + bottom) when count_include_pad,
    else only those inside the input (PyTorch's rule); ceil_mode windows may reach
    past h + bottom and those taps never count.
    """

    __hash__ = cached_hash  # computed once: specs key the per-call caches
    __getstate__ = state_without_hash

    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    oh: int
    ow: int
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.oh, self.ow)


@dataclass(frozen=True)
class PadSpec:
    """pad2d of x (n, c, h, w) to (n, c, h + top + bottom, w + left + right)."""

    __hash__ = cached_hash  # computed once: specs key the per-call caches
    __getstate__ = state_without_hash

    n: int
    c: int
    h: int
    w: int
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    mode: str  # one of PAD_MODES
    value: float

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        t, b, l, r = self.pads
        return (self.n, self.c, self.h + t + b, self.w + l + r)


# The CUDA kernels take sizes, strides, dilations and pads as 32-bit ints.
INDEX_LIMIT = 2**31 - 1


# A 1-D op (conv1d, max_pool1d, avg_pool1d) runs as a 2-D op of height 1; the spec builders
# take its own arguments with ndim=1, and their messages speak of its length axis only.
def _dims(pair_: tuple, ndim: int):
    """A (height, width) pair as the op's user knows it: both, or the width alone (1-D)."""
    return tuple(pair_) if ndim == 2 else pair_[1]


def _sides(pads: tuple[int, int, int, int], ndim: int) -> tuple[int, ...]:
    return tuple(pads) if ndim == 2 else tuple(pads[2:])


def _shape(shape, ndim: int) -> tuple[int, ...]:
    """An internal 4-D shape as the op's user knows it (a 1-D op's has no height axis)."""
    return tuple(shape) if ndim == 2 else tuple(shape[:-2]) + tuple(shape[-1:])


def pair(value, name: str, minimum: int, ndim: int = 2) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum (stride, dilation, kernel_size, pool padding).
    A 1-D op passes an int or a 1-tuple: (minimum, value)."""
    if ndim == 1:
        items = value if isinstance(value, (tuple, list)) else (value,)
        if len(items) != 1 or not _is_int(items[0]):
            raise ValueError(f"{name}={value!r}: a 1-D op takes an int or a 1-tuple")
        if items[0] < minimum:
            raise ValueError(f"{name}={value!r}: must be >= {minimum}")
        return minimum, int(items[0])
    items = (value, value) if _is_int(value) else value
    if not isinstance(items, (tuple, list)) or len(items) != 2 or not all(_is_int(v) for v in items):
        raise ValueError(f"{name}={value!r}: expected an int or a pair of ints")
    if any(v < minimum for v in items):
        raise ValueError(f"{name}={value!r}: every value must be >= {minimum}")
    return int(items[0]), int(items[1])


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _forms(ndim: int) -> str:
    return ("'valid', 'same', an int, (ph, pw) or ((top, bottom), (left, right))" if ndim == 2
            else "'valid', 'same', an int or (left, right)")


def explicit_pads(padding, in_hw, kernel_hw, stride, dilation, name="padding", ndim=2) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from int | (ph, pw) | ((t, b), (l, r)) | "valid" | "same"
    (a 1-D op: int | (p,) | (left, right) | "valid" | "same"); each pad at most INDEX_LIMIT.

    "same" follows TensorFlow/Keras for every stride and kernel: out = ceil(in / stride),
    total pad = max((out - 1) * stride + dilated_kernel - in, 0), the odd pixel at the
    bottom/right.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            pads = []
            for size, k, s, d in zip(in_hw, kernel_hw, stride, dilation):
                total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"{name}={padding!r}: expected {_forms(ndim)}")
    is_seq = isinstance(padding, (tuple, list))
    if ndim == 1 and is_seq and len(padding) in (1, 2) and all(_is_int(p) for p in padding):
        pads = (0, 0, padding[0], padding[-1])
    elif _is_int(padding):
        pads = (0, 0, padding, padding) if ndim == 1 else (padding,) * 4
    elif ndim == 2 and is_seq and len(padding) == 2 and all(_is_int(p) for p in padding):
        pads = (padding[0], padding[0], padding[1], padding[1])
    elif (ndim == 2 and is_seq and len(padding) == 2
          and all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(v) for v in p) for p in padding)):
        pads = (*padding[0], *padding[1])
    else:
        raise ValueError(f"{name}={padding!r}: expected {_forms(ndim)}")
    if any(p < 0 for p in pads):
        raise ValueError(f"{name}={padding!r}: pads must be >= 0")
    if any(p > INDEX_LIMIT for p in pads):
        raise ValueError(f"{name}={padding!r}: every pad must be <= 2**31 - 1 = {INDEX_LIMIT}")
    return tuple(int(p) for p in pads)


def _check_mode_pads(pads, h, w, mode, name, ndim=2):
    t, b, l, r = pads
    limits = (f"top/bottom < H={h}, left/right < W={w}" if ndim == 2 else f"each < the length L={w}")
    if mode == "reflect" and (max(t, b) >= h or max(l, r) >= w):
        raise ValueError(f"{name}: reflect padding {_sides(pads, ndim)} needs every pad < the input size it pads "
                         f"({limits})")
    if mode == "circular" and (max(t, b) > h or max(l, r) > w):
        raise ValueError(f"{name}: circular padding {_sides(pads, ndim)} needs every pad <= the input size it pads "
                         f"({limits.replace('<', '<=')})")


def _effective_stride(stride: int, padded: int, name: str, value) -> int:
    """A stride beyond the padded size gives one output whatever its value: clamped to that size
    (any int works, and the kernels take 32-bit strides)."""
    stride = min(stride, max(padded, 1))
    if stride > INDEX_LIMIT:
        raise ValueError(f"{name}={value!r}: at most 2**31 - 1 = {INDEX_LIMIT} on an axis of {padded} padded elements")
    return stride


@memoise(maxsize=1024)
def conv_spec(x_shape, w_shape, stride, padding, dilation, groups, padding_mode, ndim=2) -> ConvSpec:
    """The spec of conv2d (ndim=2) or of conv1d (ndim=1: x_shape, w_shape of height 1, the
    other arguments conv1d's own)."""
    n, c, h, w = x_shape
    f, cg, kh, kw = w_shape
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"groups={groups!r}: must be an int >= 1")
    if min(f, cg, kh, kw) == 0:
        raise ValueError(f"w has shape {_shape(w_shape, ndim)}: the kernel must not be empty (every dimension >= 1)")
    if c != cg * groups:
        raise ValueError(f"w has shape {_shape(w_shape, ndim)} with groups={groups}: input channels C={c} of x must "
                         f"equal w.shape[1] * groups = {cg * groups}")
    if f % groups:
        raise ValueError(f"w has shape {_shape(w_shape, ndim)}: out channels F={f} must be divisible by "
                         f"groups={groups}")
    check_choice(padding_mode, "padding_mode", CONV_PADDING_MODES)
    strides = pair(stride, "stride", 1, ndim)
    dilations = pair(dilation, "dilation", 1, ndim)
    pads = explicit_pads(padding, (h, w), (kh, kw), strides, dilations, ndim=ndim)
    if padding_mode != "zeros":
        _check_mode_pads(pads, h, w, padding_mode, f"padding={padding!r} with padding_mode={padding_mode!r}", ndim)
    padded = (h + pads[0] + pads[1], w + pads[2] + pads[3])
    for size, k, d in zip(padded, (kh, kw), dilations):
        if d * (k - 1) + 1 > size:
            raise ValueError(f"w's kernel {_dims((kh, kw), ndim)} with dilation={dilation!r} spans more than x's "
                             f"input {_dims((h, w), ndim)} padded by padding={padding!r} (pads "
                             f"{'(top, bottom, left, right)' if ndim == 2 else '(left, right)'}={_sides(pads, ndim)}): "
                             f"dilation * (kernel - 1) + 1 must be <= the padded size")
    # a kernel of one tap reads one position whatever the dilation
    dilations = tuple(d if k > 1 else 1 for d, k in zip(dilations, (kh, kw)))
    strides = tuple(_effective_stride(s, size, "stride", stride) for s, size in zip(strides, padded))
    oh, ow = ((size - d * (k - 1) - 1) // s + 1 for size, k, s, d in zip(padded, (kh, kw), strides, dilations))
    return ConvSpec(n, c, h, w, f, kh, kw, int(groups), strides, dilations, pads, padding_mode, oh, ow)


@memoise(maxsize=1024)
def pool_spec(x_shape, kernel_size, stride, padding, dilation, ceil_mode,
              count_include_pad=True, divisor_override=None, ndim=2) -> PoolSpec:
    """The spec of max/avg_pool2d (ndim=2) or of a 1-D pool (ndim=1: x_shape of height 1, the
    other arguments the 1-D op's own)."""
    n, c, h, w = x_shape
    kh, kw = pair(kernel_size, "kernel_size", 1, ndim)
    default_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    strides = (kh, kw) if default_stride else pair(stride, "stride", 1, ndim)
    dilations = pair(dilation, "dilation", 1, ndim)
    ph, pw = pair(padding, "padding", 0, ndim)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"padding={padding!r}: must be at most half of kernel_size={kernel_size!r} "
                         f"(pad <= kernel // 2{' per dimension' if ndim == 2 else ''})")
    if divisor_override is not None and (not _is_int(divisor_override) or not 1 <= divisor_override <= INDEX_LIMIT):
        raise ValueError(f"divisor_override={divisor_override!r}: must be None or an int from 1 to 2**31 - 1")
    dilations = tuple(d if k > 1 else 1 for d, k in zip(dilations, (kh, kw)))
    strides = tuple(_effective_stride(s, size + 2 * p, "stride", stride)
                    for s, size, p in zip(strides, (h, w), (ph, pw)))
    outs = []
    for size, k, s, d, p in zip((h, w), (kh, kw), strides, dilations, (ph, pw)):
        num = size + 2 * p - d * (k - 1) - 1
        o = (-(-num // s) if ceil_mode else num // s) + 1
        # PyTorch: in ceil_mode the last window must start inside the input or its left/top padding.
        if ceil_mode and (o - 1) * s >= size + p:
            o -= 1
        if o < 1:
            raise ValueError(f"kernel_size={kernel_size!r} with dilation={dilation!r} and padding={padding!r} "
                             f"gives an empty output for input size {_dims((h, w), ndim)}")
        outs.append(o)
    return PoolSpec(n, c, h, w, kh, kw, strides, dilations, (ph, ph, pw, pw), outs[0], outs[1],
                    bool(ceil_mode), bool(count_include_pad),
                    None if divisor_override is None else int(divisor_override))


@memoise(maxsize=1024)
def pad_spec(x_shape, padding, mode, value) -> PadSpec:
    n, c, h, w = x_shape
    check_choice(mode, "mode", PAD_MODES)
    value = real_number(value, "value")
    if mode != "constant" and value != 0:
        raise ValueError(f"value={value!r}: only mode='constant' takes a fill value, got mode={mode!r}")
    if isinstance(padding, str):
        raise ValueError(f"padding={padding!r}: pad2d takes an int, (ph, pw) or ((top, bottom), (left, right))")
    pads = explicit_pads(padding, (h, w), (1, 1), (1, 1), (1, 1))
    if mode != "constant":
        _check_mode_pads(pads, h, w, mode, f"padding={padding!r} with mode={mode!r}")
        if mode == "replicate" and (h == 0 or w == 0) and any(pads):
            raise ValueError(f"mode='replicate' needs a non-empty input, got H={h}, W={w}")
    return PadSpec(n, c, h, w, pads, mode, value)


def conv_transpose_spec(x_shape, w_shape, stride, padding, output_padding, groups, dilation, ndim=2) -> ConvSpec:
    """conv_transpose2d of x (n, c_in, h, w) with w (c_in, c_out/groups, kh, kw) is the input gradient
    of the conv2d returned here: weights w read as (F=c_in, C/groups=c_out/groups, kh, kw), input
    (n, c_out, H_out, W_out) with PyTorch's H_out = (h-1)*stride - top - bottom + dilation*(kh-1)
    + output_padding + 1 (output_padding < max(stride, dilation)), or H_out = h*stride for
    padding="same" (TensorFlow's rule for the conv). Its output rows are >= h: with
    output_padding >= stride, rows past h exist that no input element reaches. ndim=1: a 1-D op's
    (height 1), its arguments its own."""
    n, c_in, h, w = x_shape
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"groups={groups!r}: must be an int >= 1")
    if min(w_shape) == 0:
        raise ValueError(f"w has shape {_shape(w_shape, ndim)}: the kernel must not be empty (every dimension >= 1)")
    if w_shape[0] != c_in:
        raise ValueError(f"w has shape {_shape(w_shape, ndim)}: its first dimension C_in={w_shape[0]} must equal x's "
                         f"channels C={c_in} (conv_transpose weights are (C_in, C_out/groups, kernel))")
    if c_in % groups:
        raise ValueError(f"w has shape {_shape(w_shape, ndim)}: in channels C_in={c_in} must be divisible by "
                         f"groups={groups}")
    kh, kw = w_shape[2:]
    strides = pair(stride, "stride", 1, ndim)
    dilations = pair(dilation, "dilation", 1, ndim)
    extra = pair(output_padding, "output_padding", 0, ndim)
    if any(e >= max(s, d) for e, s, d in zip(extra, strides, dilations)):
        per_dimension = " per dimension" if ndim == 2 else ""
        raise ValueError(f"output_padding={output_padding!r}: must be smaller than stride={stride!r} or "
                         f"dilation={dilation!r} (output_padding < max(stride, dilation){per_dimension})")
    if padding == "same":
        if any(extra):
            raise ValueError(f"output_padding={output_padding!r}: must be 0 with padding='same' "
                             f"(the output is the input size times the stride)")
        out_hw = (h * strides[0], w * strides[1])
    else:
        t, b, l, r = explicit_pads(padding, (h, w), (kh, kw), strides, dilations, ndim=ndim)
        out_hw = ((h - 1) * strides[0] - t - b + dilations[0] * (kh - 1) + extra[0] + 1,
                  (w - 1) * strides[1] - l - r + dilations[1] * (kw - 1) + extra[1] + 1)
        if min(out_hw) < 1:
            raise ValueError(f"padding={padding!r}: crops more than the whole output of x's {_dims((h, w), ndim)} "
                             f"input (output size {_dims(out_hw, ndim)})")
    return conv_spec((n, w_shape[1] * groups) + out_hw, w_shape, stride, padding, dilation, groups, "zeros", ndim)
