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


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """out[n, f, i, j] = bias[f] + sum_{c, a, b} xpad[n, g(f)*C/groups + c, i*sh + a*dh, j*sw + b*dw] * w[f, c, a, b]."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    pads = conv_pads(padding, (h, wd), (kh, kw), (sh, sw), (dh, dw))
    oh = conv_out_size(h, pads[0], pads[1], kh, sh, dh)
    ow = conv_out_size(wd, pads[2], pads[3], kw, sw, dw)
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


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Sum of the window's input taps over the divisor: divisor_override if given; else, with
    count_include_pad, the taps inside the padded input [-p, n + p) (ceil_mode overhang excluded);
    else the taps inside the input."""
    x = np.asarray(x, dtype=np.float64)
    (kh, kw), (sh, sw), (ph, pw), _, (oh, ow) = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode)
    h, w = x.shape[-2:]
    out = np.empty(x.shape[:-2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            total = np.zeros(x.shape[:-2])
            in_input = in_padded = 0
            for a in range(kh):
                r = i * sh - ph + a
                for b in range(kw):
                    c = j * sw - pw + b
                    if -ph <= r < h + ph and -pw <= c < w + pw:
                        in_padded += 1
                    if 0 <= r < h and 0 <= c < w:
                        in_input += 1
                        total += x[..., r, c]
            if divisor_override is not None:
                divisor = divisor_override
            else:
                divisor = in_padded if count_include_pad else in_input
            out[..., i, j] = total / divisor
    return out
