"""Shape rules: padding, stride, dilation and output size, computed once per call.

Every op turns its arguments into one frozen spec here; backends consume the spec and
never re-derive a size or a pad. Pads are explicit per side: (top, bottom, left, right).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONV_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PAD_MODES = ("constant", "reflect", "replicate", "circular")


@dataclass(frozen=True)
class ConvSpec:
    """conv2d on x (n, c, h, w) with weights (f, c // groups, kh, kw)."""

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

    @property
    def flops(self) -> int:
        return 2 * self.n * self.f * (self.c // self.groups) * self.kh * self.kw * self.oh * self.ow


@dataclass(frozen=True)
class PoolSpec:
    """max/avg pooling of x (n, c, h, w).

    Window (i, j) covers input rows i*sh - top + a*dh for a in range(kh) (likewise
    columns). Taps outside [0, h) read padding: -inf for max, 0 for avg. The divisor
    of avg pooling counts the taps inside [-top, h + bottom) when count_include_pad,
    else only those inside the input (PyTorch's rule); ceil_mode windows may reach
    past h + bottom and those taps never count.
    """

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


def pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum (stride, dilation, kernel_size)."""
    items = (value, value) if _is_int(value) else value
    if not isinstance(items, (tuple, list)) or len(items) != 2 or not all(_is_int(v) for v in items):
        raise ValueError(f"{name}={value!r}: expected an int or a pair of ints")
    if any(v < minimum for v in items):
        raise ValueError(f"{name}={value!r}: every value must be >= {minimum}")
    return int(items[0]), int(items[1])


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def explicit_pads(padding, in_hw, kernel_hw, stride, dilation, name="padding") -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from int | (ph, pw) | ((t, b), (l, r)) | "valid" | "same".

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
                total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"{name}={padding!r}: expected 'valid', 'same', an int, (ph, pw) or ((top, bottom), (left, right))")
    if _is_int(padding):
        pads = (padding,) * 4
    elif isinstance(padding, (tuple, list)) and len(padding) == 2 and all(_is_int(p) for p in padding):
        pads = (padding[0], padding[0], padding[1], padding[1])
    elif (isinstance(padding, (tuple, list)) and len(padding) == 2
          and all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(v) for v in p) for p in padding)):
        pads = (*padding[0], *padding[1])
    else:
        raise ValueError(f"{name}={padding!r}: expected 'valid', 'same', an int, (ph, pw) or ((top, bottom), (left, right))")
    if any(p < 0 for p in pads):
        raise ValueError(f"{name}={padding!r}: pads must be >= 0")
    return tuple(int(p) for p in pads)


def _check_mode_pads(pads, h, w, mode, name):
    t, b, l, r = pads
    if mode == "reflect" and (max(t, b) >= h or max(l, r) >= w):
        raise ValueError(f"{name}: reflect padding {pads} needs every pad < the input size it pads "
                         f"(top/bottom < H={h}, left/right < W={w})")
    if mode == "circular" and (max(t, b) > h or max(l, r) > w):
        raise ValueError(f"{name}: circular padding {pads} needs every pad <= the input size it pads "
                         f"(top/bottom <= H={h}, left/right <= W={w})")


def conv_spec(x_shape, w_shape, stride, padding, dilation, groups, padding_mode) -> ConvSpec:
    n, c, h, w = x_shape
    f, cg, kh, kw = w_shape
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"groups={groups!r}: must be an int >= 1")
    if min(f, cg, kh, kw) == 0:
        raise ValueError(f"w has shape {tuple(w_shape)}: the kernel must not be empty (every dimension >= 1)")
    if c != cg * groups:
        raise ValueError(f"w has shape {tuple(w_shape)} with groups={groups}: input channels C={c} of x must equal "
                         f"w.shape[1] * groups = {cg * groups}")
    if f % groups:
        raise ValueError(f"w has shape {tuple(w_shape)}: out channels F={f} must be divisible by groups={groups}")
    if padding_mode not in CONV_PADDING_MODES:
        raise ValueError(f"padding_mode={padding_mode!r}: expected one of {CONV_PADDING_MODES}")
    stride = pair(stride, "stride", 1)
    dilation = pair(dilation, "dilation", 1)
    pads = explicit_pads(padding, (h, w), (kh, kw), stride, dilation)
    if padding_mode != "zeros":
        _check_mode_pads(pads, h, w, padding_mode, f"padding={padding!r} with padding_mode={padding_mode!r}")
    oh, ow = (_out_size(size + p0 + p1, k, s, d, (h, w), pads, (kh, kw), dilation, padding)
              for size, p0, p1, k, s, d in zip((h, w), pads[::2], pads[1::2], (kh, kw), stride, dilation))
    return ConvSpec(n, c, h, w, f, kh, kw, int(groups), stride, dilation, pads, padding_mode, oh, ow)


def _out_size(padded, k, s, d, in_hw, pads, kernel_hw, dilation, padding):
    span = d * (k - 1) + 1
    if span > padded:
        raise ValueError(f"w's kernel {kernel_hw} with dilation={dilation} spans more than x's input {in_hw} "
                         f"padded by padding={padding!r} (pads (top, bottom, left, right)={pads}): "
                         f"dilation * (kernel - 1) + 1 must be <= the padded size")
    return (padded - span) // s + 1


def pool_spec(x_shape, kernel_size, stride, padding, dilation, ceil_mode,
              count_include_pad=True, divisor_override=None) -> PoolSpec:
    n, c, h, w = x_shape
    kh, kw = pair(kernel_size, "kernel_size", 1)
    stride = (kh, kw) if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else pair(stride, "stride", 1)
    dilation = pair(dilation, "dilation", 1)
    ph, pw = pair(padding, "padding", 0)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"padding={padding!r}: must be at most half of kernel_size={(kh, kw)} "
                         f"(pad <= kernel // 2 per dimension)")
    if divisor_override is not None and (not _is_int(divisor_override) or divisor_override < 1):
        raise ValueError(f"divisor_override={divisor_override!r}: must be None or an int >= 1")
    outs = []
    for size, k, s, d, p in zip((h, w), (kh, kw), stride, dilation, (ph, pw)):
        num = size + 2 * p - d * (k - 1) - 1
        o = (-(-num // s) if ceil_mode else num // s) + 1
        # PyTorch: in ceil_mode the last window must start inside the input or its left/top padding.
        if ceil_mode and (o - 1) * s >= size + p:
            o -= 1
        if o < 1:
            raise ValueError(f"kernel_size={(kh, kw)} with dilation={dilation} and padding={(ph, pw)} "
                             f"gives an empty output for input size {(h, w)}")
        outs.append(o)
    return PoolSpec(n, c, h, w, kh, kw, stride, dilation, (ph, ph, pw, pw), outs[0], outs[1],
                    bool(ceil_mode), bool(count_include_pad),
                    None if divisor_override is None else int(divisor_override))


def pad_spec(x_shape, padding, mode, value) -> PadSpec:
    n, c, h, w = x_shape
    if mode not in PAD_MODES:
        raise ValueError(f"mode={mode!r}: expected one of {PAD_MODES}")
    if isinstance(padding, str):
        raise ValueError(f"padding={padding!r}: pad2d takes an int, (ph, pw) or ((top, bottom), (left, right))")
    pads = explicit_pads(padding, (h, w), (1, 1), (1, 1), (1, 1))
    if mode != "constant":
        _check_mode_pads(pads, h, w, mode, f"padding={padding!r} with mode={mode!r}")
        if mode == "replicate" and (h == 0 or w == 0) and any(pads):
            raise ValueError(f"mode='replicate' needs a non-empty input, got H={h}, W={w}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"value={value!r}: must be a real number") from None
    if not math.isfinite(value):
        raise ValueError(f"value={value!r}: must be finite")
    return PadSpec(n, c, h, w, pads, mode, value)


def conv_transpose_spec(x_shape, w_shape, stride, padding, output_padding, groups, dilation) -> ConvSpec:
    """conv_transpose2d of x (n, c_in, h, w) with w (c_in, c_out/groups, kh, kw) is the input gradient
    of the conv2d returned here: weights w read as (F=c_in, C/groups=c_out/groups, kh, kw), input
    (n, c_out, H_out, W_out) with PyTorch's H_out = (h-1)*stride - top - bottom + dilation*(kh-1)
    + output_padding + 1 (output_padding < max(stride, dilation)), or H_out = h*stride for
    padding="same" (TensorFlow's rule for the conv). Its output rows are >= h: with
    output_padding >= stride, rows past h exist that no input element reaches."""
    n, c_in, h, w = x_shape
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"groups={groups!r}: must be an int >= 1")
    if min(w_shape) == 0:
        raise ValueError(f"w has shape {tuple(w_shape)}: the kernel must not be empty (every dimension >= 1)")
    if w_shape[0] != c_in:
        raise ValueError(f"w has shape {tuple(w_shape)}: its first dimension C_in={w_shape[0]} must equal x's "
                         f"channels C={c_in} (conv_transpose2d weights are (C_in, C_out/groups, KH, KW))")
    if c_in % groups:
        raise ValueError(f"w has shape {tuple(w_shape)}: in channels C_in={c_in} must be divisible by groups={groups}")
    kh, kw = w_shape[2:]
    stride = pair(stride, "stride", 1)
    dilation = pair(dilation, "dilation", 1)
    extra = pair(output_padding, "output_padding", 0)
    if any(e >= max(s, d) for e, s, d in zip(extra, stride, dilation)):
        raise ValueError(f"output_padding={output_padding!r}: must be smaller than stride={stride} or "
                         f"dilation={dilation} (output_padding < max(stride, dilation) per dimension)")
    if padding == "same":
        if any(extra):
            raise ValueError(f"output_padding={output_padding!r}: must be 0 with padding='same' "
                             f"(the output is the input size times the stride)")
        out_hw = (h * stride[0], w * stride[1])
    else:
        t, b, l, r = explicit_pads(padding, (h, w), (kh, kw), stride, dilation)
        out_hw = ((h - 1) * stride[0] - t - b + dilation[0] * (kh - 1) + extra[0] + 1,
                  (w - 1) * stride[1] - l - r + dilation[1] * (kw - 1) + extra[1] + 1)
        if min(out_hw) < 1:
            raise ValueError(f"padding={padding!r}: crops more than the whole output of x's {(h, w)} input "
                             f"(output size {out_hw})")
    return conv_spec((n, w_shape[1] * groups) + out_hw, w_shape, stride, padding, dilation, groups, "zeros")
