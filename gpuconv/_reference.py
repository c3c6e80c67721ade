"""Independent float64 references for every gpuconv op, written from the definitions: the
oracle of the test suite and of `python -m gpuconv check` (so it ships in the package).

Nothing here imports the rest of gpuconv: padding, output sizes, ceil_mode, divisors and
max-pool indices are derived again from PyTorch's documented rules (plus TensorFlow's rule for
padding="same"). Loops run over kernel offsets / window taps and output positions, so the
code reads like the formulas; it is slow and meant for small shapes only. The tests check it
against PyTorch (torch is in the test extra).
"""
from __future__ import annotations

import math

import numpy as np


def _pair(v):
    return (v, v) if isinstance(v, (int, np.integer)) else tuple(v)


# ---------------------------------------------------------------------------------------------
# Padding


def source_index(i: int, n: int, mode: str):
    """Input position read at padded position i (-before <= i < n + after); None = constant pad.

    reflect (PyTorch) mirrors about the edge element without repeating it: -1 -> 1, n -> n-2;
    replicate repeats the edge element; circular wraps around.
    """
    if 0 <= i < n:
        return i
    if mode in ("zeros", "constant"):
        return None
    if mode == "replicate":
        return 0 if i < 0 else n - 1
    if mode == "circular":
        return i % n
    if mode == "reflect":
        return -i if i < 0 else 2 * (n - 1) - i
    raise ValueError(mode)


def pad2d(x, pads, mode="constant", value=0.0):
    """x (..., H, W) padded by pads = (top, bottom, left, right)."""
    x = np.asarray(x, dtype=np.float64)
    top, bottom, left, right = pads
    h, w = x.shape[-2:]
    out = np.empty(x.shape[:-2] + (h + top + bottom, w + left + right))
    for r in range(-top, h + bottom):
        for c in range(-left, w + right):
            sr, sc = source_index(r, h, mode), source_index(c, w, mode)
            out[..., r + top, c + left] = value if sr is None or sc is None else x[..., sr, sc]
    return out


# ---------------------------------------------------------------------------------------------
# Convolution


def conv_pads(padding, in_hw, kernel_hw, stride, dilation):
    """(top, bottom, left, right) of conv2d's padding argument.

    "same": TensorFlow/Keras for any stride and even kernels: out = ceil(in / s),
    total = max((out - 1) * s + d * (k - 1) + 1 - in, 0), the odd pixel after.
    """
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        pads = []
        for n, k, s, d in zip(in_hw, kernel_hw, stride, dilation):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    return explicit_pads(padding)


def explicit_pads(padding):
    """(top, bottom, left, right) of int | (ph, pw) | ((top, bottom), (left, right))."""
    if isinstance(padding, (int, np.integer)):
        return (padding,) * 4
    first, second = padding
    if isinstance(first, (int, np.integer)):
        return (first, first, second, second)
    return (first[0], first[1], second[0], second[1])


def conv_out_size(n, before, after, k, s, d):
    return (n + before + after - d * (k - 1) - 1) // s + 1


def _conv_geometry(in_hw, kernel_hw, stride, padding, dilation):
    """((sh, sw), (dh, dw), (top, bottom, left, right), (oh, ow)) of conv2d."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    pads = conv_pads(padding, in_hw, kernel_hw, (sh, sw), (dh, dw))
    oh = conv_out_size(in_hw[0], pads[0], pads[1], kernel_hw[0], sh, dh)
    ow = conv_out_size(in_hw[1], pads[2], pads[3], kernel_hw[1], sw, dw)
    return (sh, sw), (dh, dw), pads, (oh, ow)


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """out[n, f, i, j] = bias[f] + sum_{c, a, b} xpad[n, g(f)*C/groups + c, i*sh + a*dh, j*sw + b*dw] * w[f, c, a, b]
    (g(f): the group of filter f)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    (sh, sw), (dh, dw), pads, (oh, ow) = _conv_geometry((h, wd), (kh, kw), stride, padding, dilation)
    xp = pad2d(x, pads, padding_mode, 0.0)
    fg = f // groups
    out = np.zeros((n, f, oh, ow))
    for a in range(kh):
        for b in range(kw):
            patch = xp[:, :, a * dh:a * dh + (oh - 1) * sh + 1:sh, b * dw:b * dw + (ow - 1) * sw + 1:sw]
            for g in range(groups):
                out[:, g * fg:(g + 1) * fg] += np.einsum(
                    "nchw,fc->nfhw", patch[:, g * cg:(g + 1) * cg], w[g * fg:(g + 1) * fg, :, a, b])
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return out


def correlate2d_full(image, kernel):
    """scipy's 'full' correlation with zero fill: out[i, j] = sum_{a,b} I[i+a-(KH-1), j+b-(KW-1)] K[a, b]."""
    image = np.asarray(image, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    kh, kw = kernel.shape
    return conv2d(image[None, None], kernel[None, None], padding=((kh - 1, kh - 1), (kw - 1, kw - 1)))[0, 0]


# ---------------------------------------------------------------------------------------------
# Pooling


def pool_out_size(n, k, s, p, d, ceil_mode):
    """PyTorch: floor/ceil((n + 2p - d(k-1) - 1) / s) + 1; in ceil_mode the last window
    must start inside the input or the left padding."""
    num = n + 2 * p - d * (k - 1) - 1
    out = (math.ceil(num / s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode):
    kh, kw = _pair(kernel_size)
    sh, sw = (kh, kw) if stride is None else _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    h, w = x.shape[-2:]
    oh = pool_out_size(h, kh, sh, ph, dh, ceil_mode)
    ow = pool_out_size(w, kw, sw, pw, dw, ceil_mode)
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(values, int64 flat indices within H*W), PyTorch's rule.

    Taps scanned row-major; a tap replaces the running max when strictly greater or NaN;
    the running index starts at the window's first in-bounds tap; a window with no
    in-bounds tap gives -inf and index -1.
    """
    x = np.asarray(x, dtype=np.float64)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = _pool_geometry(x, kernel_size, stride, padding,
                                                                     dilation, ceil_mode)
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    values = np.empty(lead + (oh, ow))
    indices = np.empty(lead + (oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            best = np.full(lead, -np.inf)
            index = np.full(lead, -1, dtype=np.int64)
            seen_tap = False
            for a in range(kh):
                r = i * sh - ph + a * dh
                if not 0 <= r < h:
                    continue
                for b in range(kw):
                    c = j * sw - pw + b * dw
                    if not 0 <= c < w:
                        continue
                    if not seen_tap:
                        index[...] = r * w + c
                        seen_tap = True
                    v = x[..., r, c]
                    better = (v > best) | np.isnan(v)
                    best = np.where(better, v, best)
                    index = np.where(better, r * w + c, index)
            values[..., i, j] = best
            indices[..., i, j] = index
    return values, indices


def _avg_windows(in_hw, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """Per output (i, j) of average pooling: (i, j, the window's input taps [(r, c), ...], its divisor).

    divisor_override if given; else, with count_include_pad, the taps inside the padded input
    [-p, n + p) (ceil_mode overhang excluded); else the taps inside the input."""
    dummy = np.empty(in_hw)
    (kh, kw), (sh, sw), (ph, pw), _, (oh, ow) = _pool_geometry(dummy, kernel_size, stride, padding, 1, ceil_mode)
    h, w = in_hw
    for i in range(oh):
        for j in range(ow):
            taps, in_padded = [], 0
            for a in range(kh):
                r = i * sh - ph + a
                for b in range(kw):
                    c = j * sw - pw + b
                    if -ph <= r < h + ph and -pw <= c < w + pw:
                        in_padded += 1
                    if 0 <= r < h and 0 <= c < w:
                        taps.append((r, c))
            if divisor_override is not None:
                divisor = divisor_override
            else:
                divisor = in_padded if count_include_pad else len(taps)
            yield i, j, taps, divisor


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Sum of the window's input taps over the divisor (_avg_windows)."""
    x = np.asarray(x, dtype=np.float64)
    (_, _, _, _, (oh, ow)) = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode)
    out = np.empty(x.shape[:-2] + (oh, ow))
    for i, j, taps, divisor in _avg_windows(x.shape[-2:], kernel_size, stride, padding, ceil_mode,
                                            count_include_pad, divisor_override):
        total = np.zeros(x.shape[:-2])
        for r, c in taps:
            total += x[..., r, c]
        out[..., i, j] = total / divisor
    return out


# ---------------------------------------------------------------------------------------------
# Gradients, each by the chain rule through the forward definition above: every output's
# gradient is sent back along the terms that formed that output.


def fold_padding(grad_padded, pads, mode, in_hw):
    """Gradient of pad2d: each padded position (r, c) passes its gradient to the input element
    it was copied from (source_index); constant pads pass nothing. Where several padded
    positions copy one element (reflect, replicate, circular), their gradients add up."""
    grad_padded = np.asarray(grad_padded, dtype=np.float64)
    top, bottom, left, right = pads
    h, w = in_hw
    out = np.zeros(grad_padded.shape[:-2] + (h, w))
    for r in range(-top, h + bottom):
        sr = source_index(r, h, mode)
        for c in range(-left, w + right):
            sc = source_index(c, w, mode)
            if sr is not None and sc is not None:
                out[..., sr, sc] += grad_padded[..., r + top, c + left]
    return out


def pad2d_input(grad_output, padding, mode="constant"):
    """Gradient of pad2d(x, padding, mode) for x of grad_output's shape less the pads."""
    pads = explicit_pads(padding)
    top, bottom, left, right = pads
    hp, wp = np.shape(grad_output)[-2:]
    return fold_padding(grad_output, pads, mode, (hp - top - bottom, wp - left - right))


def conv2d_input(input_shape, w, grad_output, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Gradient of conv2d with respect to x (of input_shape): out[n, f, i, j] took
    xpad[n, c, i*sh + a*dh, j*sw + b*dw] * w[f, c, a, b], so every grad_output[n, f, i, j]
    goes back to that padded position times w[f, c, a, b]; the padded gradient is then folded
    back onto x (fold_padding)."""
    w = np.asarray(w, dtype=np.float64)
    go = np.asarray(grad_output, dtype=np.float64)
    n, c, h, wd = input_shape
    f, cg, kh, kw = w.shape
    (sh, sw), (dh, dw), pads, (oh, ow) = _conv_geometry((h, wd), (kh, kw), stride, padding, dilation)
    assert go.shape == (n, f, oh, ow), f"grad_output {go.shape} != conv2d's output {(n, f, oh, ow)}"
    fg = f // groups
    grad_padded = np.zeros((n, c, h + pads[0] + pads[1], wd + pads[2] + pads[3]))
    for a in range(kh):
        for b in range(kw):
            rows = slice(a * dh, a * dh + (oh - 1) * sh + 1, sh)
            cols = slice(b * dw, b * dw + (ow - 1) * sw + 1, sw)
            for g in range(groups):
                grad_padded[:, g * cg:(g + 1) * cg, rows, cols] += np.einsum(
                    "nfhw,fc->nchw", go[:, g * fg:(g + 1) * fg], w[g * fg:(g + 1) * fg, :, a, b])
    return fold_padding(grad_padded, pads, padding_mode, (h, wd))


def conv2d_weight(x, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Gradient of conv2d with respect to w (of weight_shape):
    dw[f, c, a, b] = sum_{n, i, j} grad_output[n, f, i, j] * xpad[n, g(f)*C/groups + c, i*sh + a*dh, j*sw + b*dw]."""
    x = np.asarray(x, dtype=np.float64)
    go = np.asarray(grad_output, dtype=np.float64)
    n, c, h, wd = x.shape
    f, cg, kh, kw = weight_shape
    (sh, sw), (dh, dw), pads, (oh, ow) = _conv_geometry((h, wd), (kh, kw), stride, padding, dilation)
    assert go.shape == (n, f, oh, ow), f"grad_output {go.shape} != conv2d's output {(n, f, oh, ow)}"
    xp = pad2d(x, pads, padding_mode, 0.0)
    fg = f // groups
    out = np.zeros((f, cg, kh, kw))
    for a in range(kh):
        for b in range(kw):
            patch = xp[:, :, a * dh:a * dh + (oh - 1) * sh + 1:sh, b * dw:b * dw + (ow - 1) * sw + 1:sw]
            for g in range(groups):
                out[g * fg:(g + 1) * fg, :, a, b] = np.einsum(
                    "nfhw,nchw->fc", go[:, g * fg:(g + 1) * fg], patch[:, g * cg:(g + 1) * cg])
    return out


def conv2d_bias(grad_output):
    """Gradient of conv2d with respect to bias: bias[f] is added to every output of channel f."""
    return np.asarray(grad_output, dtype=np.float64).sum(axis=(0, 2, 3))


def max_pool2d_input(grad_output, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Gradient of max_pool2d with respect to x: each output's gradient goes to the element the
    forward picked (max_pool2d's index: first maximum, NaN wins); overlapping windows add up;
    a window with no input tap (index -1) passes nothing."""
    x = np.asarray(x, dtype=np.float64)
    go = np.asarray(grad_output, dtype=np.float64)
    _, indices = max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)
    assert go.shape == indices.shape, f"grad_output {go.shape} != max_pool2d's output {indices.shape}"
    h, w = x.shape[-2:]
    out = np.zeros(x.shape[:-2] + (h * w,))
    for pos in np.ndindex(*indices.shape):
        if indices[pos] >= 0:
            out[pos[:-2] + (indices[pos],)] += go[pos]
    return out.reshape(x.shape)


def avg_pool2d_input(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None):
    """Gradient of avg_pool2d with respect to x: each output's gradient over its divisor goes to
    every input tap of its window; overlapping windows add up."""
    go = np.asarray(grad_output, dtype=np.float64)
    out = np.zeros(tuple(input_shape))
    for i, j, taps, divisor in _avg_windows(tuple(input_shape[-2:]), kernel_size, stride, padding, ceil_mode,
                                            count_include_pad, divisor_override):
        for r, c in taps:
            out[..., r, c] += go[..., i, j] / divisor
    return out


def conv_transpose2d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """PyTorch's conv_transpose2d: x (N, C_in, H, W), w (C_in, C_out/groups, KH, KW). Every input
    x[n, c, i, j] adds x * w[c, o, a, b] to full[n, g(c)*C_out/groups + o, i*sh + a*dh, j*sw + b*dw];
    the output is full less `padding` on each side, H_out = (H-1)*sh - top - bottom + dh*(KH-1)
    + output_padding + 1. padding: int, (ph, pw), ((top, bottom), (left, right)), "valid", or
    "same": H_out = H * sh, pads by TensorFlow's rule for a conv over H_out (rows no tap reaches are 0)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    cin_g, cout_g, kh, kw = w.shape[0] // groups, w.shape[1], w.shape[2], w.shape[3]
    (sh, sw), (dh, dw), (oph, opw) = _pair(stride), _pair(dilation), _pair(output_padding)
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1 + oph, (wd - 1) * sw + dw * (kw - 1) + 1 + opw
    if padding == "same":
        top, bottom, left, right = conv_pads("same", (h * sh, wd * sw), (kh, kw), (sh, sw), (dh, dw))
        out_hw = (h * sh, wd * sw)
    else:
        top, bottom, left, right = conv_pads(padding, None, None, None, None)
        out_hw = (full_h - top - bottom, full_w - left - right)
    full = np.zeros((n, cout_g * groups, max(full_h, top + out_hw[0]), max(full_w, left + out_hw[1])))
    for a in range(kh):
        for b in range(kw):
            rows = slice(a * dh, a * dh + (h - 1) * sh + 1, sh)
            cols = slice(b * dw, b * dw + (wd - 1) * sw + 1, sw)
            for g in range(groups):
                full[:, g * cout_g:(g + 1) * cout_g, rows, cols] += np.einsum(
                    "nchw,co->nohw", x[:, g * cin_g:(g + 1) * cin_g], w[g * cin_g:(g + 1) * cin_g, :, a, b])
    out = full[:, :, top:top + out_hw[0], left:left + out_hw[1]]
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return out
