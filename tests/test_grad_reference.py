"""The float64 gradient references of tests/reference.py, checked on their own: against central
finite differences of the forward references (float64), and against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _reference as ref

SEED = 20260512  # every case below draws from default_rng(SEED + case number)


def numerical_gradient(f, x, eps):
    """d/dx of f(x) (a scalar) by central differences, element by element."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for i in np.ndindex(*x.shape):
        saved = x[i]
        x[i] = saved + eps
        up = f(x)
        x[i] = saved - eps
        down = f(x)
        x[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad


def assert_gradient(analytic, numeric, tol, what):
    assert analytic.shape == numeric.shape, what
    scale = max(1.0, float(np.abs(numeric).max()))
    err = float(np.abs(analytic - numeric).max())
    assert err <= tol * scale, f"{what}: reference gradient off the finite difference by {err:.3g}"


# (x shape, w shape, conv2d keyword arguments); every padding mode is combined with each.
CONV_CASES = [
    ((2, 3, 6, 5), (4, 3, 3, 2), dict(padding=1)),
    ((1, 2, 7, 8), (2, 2, 3, 3), dict(stride=2, padding=((0, 2), (1, 1)))),
    ((1, 4, 7, 7), (4, 2, 2, 3), dict(groups=2, dilation=(2, 1), padding="same", stride=(3, 2))),
    ((2, 2, 5, 6), (3, 2, 3, 3), dict(padding="valid", stride=(1, 2))),
    ((1, 3, 5, 5), (3, 1, 3, 3), dict(groups=3, padding=2)),
]
MODES = ("zeros", "reflect", "replicate", "circular")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_gradients_match_finite_differences(case, mode):
    x_shape, w_shape, kwargs = CONV_CASES[case]
    kwargs = dict(kwargs, padding_mode=mode)
    rng = np.random.default_rng(SEED + case)
    x, w, bias = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    go = rng.standard_normal(ref.conv2d(x, w, **kwargs).shape)

    def loss_x(xv):
        return float((ref.conv2d(xv, w, bias, **kwargs) * go).sum())

    def loss_w(wv):
        return float((ref.conv2d(x, wv, bias, **kwargs) * go).sum())

    def loss_b(bv):
        return float((ref.conv2d(x, w, bv, **kwargs) * go).sum())

    # conv2d is linear in each argument: central differences are exact up to rounding
    assert_gradient(ref.conv2d_input(x_shape, w, go, **kwargs), numerical_gradient(loss_x, x, 0.5), 1e-10, "dx")
    assert_gradient(ref.conv2d_weight(x, w_shape, go, **kwargs), numerical_gradient(loss_w, w, 0.5), 1e-10, "dw")
    assert_gradient(ref.conv2d_bias(go), numerical_gradient(loss_b, bias, 0.5), 1e-10, "dbias")


@pytest.mark.parametrize("mode", ("constant", "reflect", "replicate", "circular"))
@pytest.mark.parametrize("pads", [((1, 2), (0, 3)), (3, 3), 2])
def test_pad_gradient_matches_finite_differences(mode, pads):
    rng = np.random.default_rng(SEED + 10)
    x = rng.standard_normal((2, 4, 4))
    explicit = ref.explicit_pads(pads)
    go = rng.standard_normal(ref.pad2d(x, explicit, mode).shape)
    numeric = numerical_gradient(lambda xv: float((ref.pad2d(xv, explicit, mode) * go).sum()), x, 0.5)
    assert_gradient(ref.pad2d_input(go, pads, mode), numeric, 1e-10, f"pad {mode} {pads}")


POOL_CASES = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=1, padding=(1, 0)),  # overlapping windows
    dict(kernel_size=3, stride=(2, 1), padding=1, ceil_mode=True),
]


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_max_pool_gradient_matches_finite_differences(case, dilation):
    rng = np.random.default_rng(SEED + 20 + case)
    # distinct values, at least 1e-3 apart: a step of 1e-6 never changes which element is the maximum
    x = rng.permutation(2 * 7 * 6).reshape(1, 2, 7, 6) * 1e-3 + rng.random((1, 2, 7, 6)) * 1e-4
    kwargs = dict(POOL_CASES[case], dilation=dilation)
    go = rng.standard_normal(ref.max_pool2d(x, **kwargs)[0].shape)
    numeric = numerical_gradient(lambda xv: float((ref.max_pool2d(xv, **kwargs)[0] * go).sum()), x, 1e-6)
    assert_gradient(ref.max_pool2d_input(go, x, **kwargs), numeric, 1e-8, f"max pool {kwargs}")


@pytest.mark.parametrize("divisor_override", [None, 5])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_avg_pool_gradient_matches_finite_differences(case, count_include_pad, divisor_override):
    rng = np.random.default_rng(SEED + 30 + case)
    x = rng.standard_normal((2, 2, 7, 6))
    kwargs = dict(POOL_CASES[case], count_include_pad=count_include_pad, divisor_override=divisor_override)
    go = rng.standard_normal(ref.avg_pool2d(x, **kwargs).shape)
    numeric = numerical_gradient(lambda xv: float((ref.avg_pool2d(xv, **kwargs) * go).sum()), x, 0.5)
    assert_gradient(ref.avg_pool2d_input(go, x.shape, **kwargs), numeric, 1e-10, f"avg pool {kwargs}")


def test_max_pool_gradient_goes_to_the_first_maximum_and_to_nan():
    x = np.array([[[[1.0, 3.0, 3.0], [0.0, np.nan, 3.0], [2.0, 2.0, 1.0]]]])
    go = np.ones((1, 1, 2, 2))
    # windows of 2x2, stride 1: (0,0) -> NaN at (1,1), (0,1) -> NaN, (1,0) -> NaN, (1,1) -> NaN
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 4
    np.testing.assert_array_equal(ref.max_pool2d_input(go, x, 2, 1), expected)
    x[0, 0, 1, 1] = 0.0
    # now (0,0) and (0,1) pick the first 3 at (0,1); (1,1)'s window rows 1-2, cols 1-2: 3 at (1,2)
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 0, 1] = 2
    expected[0, 0, 1, 2] = 1
    expected[0, 0, 2, 0] = 1
    np.testing.assert_array_equal(ref.max_pool2d_input(go, x, 2, 1), expected)


# (x shape, w shape of conv_transpose2d (C_in, C_out/groups, KH, KW), keyword arguments)
TRANSPOSE_CASES = [
    ((2, 3, 4, 5), (3, 2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 4, 3, 3), (4, 1, 2, 3), dict(stride=(3, 1), groups=2, dilation=(1, 2), padding=((1, 0), (2, 1)))),
    ((1, 2, 4, 4), (2, 3, 3, 3), dict(stride=2, padding="same")),
    ((1, 2, 3, 2), (2, 2, 2, 2), dict(stride=3, padding="same")),  # the kernel spans less than a stride
    ((1, 1, 3, 3), (1, 2, 3, 3), dict(stride=1, dilation=3, output_padding=2)),  # output_padding >= stride
]


def _transpose_as_conv(case):
    """The forward conv2d that case's conv_transpose2d is the adjoint of: its input size and
    arguments (padding, stride, dilation, groups as given; w read as (F=C_in, C_out/groups, ...))."""
    x_shape, w_shape, kwargs = TRANSPOSE_CASES[case]
    conv_kwargs = {k: v for k, v in kwargs.items() if k != "output_padding"}
    return x_shape, w_shape, kwargs, conv_kwargs


@pytest.mark.parametrize("case", range(len(TRANSPOSE_CASES)))
def test_conv_transpose_is_the_adjoint_of_conv(case):
    """<conv_transpose2d(x, w), y> == <x, conv2d(y, w)> for every y of the transposed output's
    shape, the conv taking y's size (with its padding rule) to x's size."""
    x_shape, w_shape, kwargs, conv_kwargs = _transpose_as_conv(case)
    rng = np.random.default_rng(SEED + 40 + case)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    out = ref.conv_transpose2d(x, w, **kwargs)
    conv_out = ref.conv2d(np.zeros(out.shape), w, **conv_kwargs)
    # the conv of an output-sized input may have rows past x's (output_padding >= stride): they get no gradient
    assert conv_out.shape[:2] == x.shape[:2] and all(a >= b for a, b in zip(conv_out.shape[2:], x.shape[2:]))
    for _ in range(3):
        y = rng.standard_normal(out.shape)
        forward = ref.conv2d(y, w, **conv_kwargs)[..., :x_shape[2], :x_shape[3]]
        assert np.isclose((out * y).sum(), (x * forward).sum(), rtol=1e-12, atol=1e-12)
    bias = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1))
    np.testing.assert_allclose(ref.conv_transpose2d(x, w, bias, **kwargs), out + bias[None, :, None, None])


# ---- PyTorch (the `torch` fixture: required in CI) -----------------------------------------------


def _tensor(torch, a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


_TORCH_PAD_MODES = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", [0, 1, 3, 4])  # PyTorch refuses padding="same" with stride > 1 (case 2)
def test_conv_gradients_match_torch(torch, case, mode):
    x_shape, w_shape, kwargs = CONV_CASES[case]
    rng = np.random.default_rng(SEED + 50 + case)
    x, w, go = rng.standard_normal(x_shape), rng.standard_normal(w_shape), None
    pads = ref.conv_pads(kwargs.get("padding", 0), x_shape[2:], w_shape[2:], ref._pair(kwargs.get("stride", 1)),
                         ref._pair(kwargs.get("dilation", 1)))
    tx, tw = _tensor(torch, x, True), _tensor(torch, w, True)
    # PyTorch pads (left, right, top, bottom) explicitly; its conv then runs unpadded
    padded = torch.nn.functional.pad(tx, (pads[2], pads[3], pads[0], pads[1]),
                                     mode="constant" if mode == "zeros" else _TORCH_PAD_MODES[mode])
    out = torch.nn.functional.conv2d(padded, tw, None, kwargs.get("stride", 1), 0, kwargs.get("dilation", 1),
                                     kwargs.get("groups", 1))
    go = rng.standard_normal(tuple(out.shape))
    dx, dw = torch.autograd.grad(out, (tx, tw), _tensor(torch, go))
    params = dict(kwargs, padding_mode=mode)
    np.testing.assert_allclose(ref.conv2d_input(x_shape, w, go, **params), dx.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ref.conv2d_weight(x, w_shape, go, **params), dw.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ref.conv2d_bias(go), go.sum(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("case", [0, 1, 4])  # PyTorch takes neither "same" nor per-side pads here
def test_conv_transpose_matches_torch(torch, case):
    x_shape, w_shape, kwargs = TRANSPOSE_CASES[case]
    if isinstance(kwargs.get("padding"), tuple):
        kwargs = dict(kwargs, padding=1)
    rng = np.random.default_rng(SEED + 60 + case)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    bias = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1))
    expected = torch.nn.functional.conv_transpose2d(_tensor(torch, x), _tensor(torch, w), _tensor(torch, bias),
                                                    **kwargs)
    np.testing.assert_allclose(ref.conv_transpose2d(x, w, bias, **kwargs), expected.numpy(), rtol=1e-10,
                               atol=1e-10)


@pytest.mark.parametrize("data", ["normal", "ties", "nan"])
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_pool_gradients_match_torch(torch, case, data):
    rng = np.random.default_rng(SEED + 70 + case)
    x = rng.standard_normal((2, 3, 7, 6))
    if data == "ties":
        x = rng.integers(-1, 2, x.shape).astype(np.float64)
    elif data == "nan":
        x[rng.random(x.shape) < 0.2] = np.nan
    for dilation in (1, 2):
        kwargs = dict(POOL_CASES[case], dilation=dilation)
        tx = _tensor(torch, x, True)
        out = torch.nn.functional.max_pool2d(tx, **kwargs)
        go = rng.standard_normal(tuple(out.shape))
        (dx,) = torch.autograd.grad(out, tx, _tensor(torch, go))
        np.testing.assert_allclose(ref.max_pool2d_input(go, x, **kwargs), dx.numpy(), rtol=1e-12, atol=1e-12)
    for count_include_pad in (True, False):
        kwargs = dict(POOL_CASES[case], count_include_pad=count_include_pad)
        tx = _tensor(torch, np.nan_to_num(x), True)
        out = torch.nn.functional.avg_pool2d(tx, **kwargs)
        go = rng.standard_normal(tuple(out.shape))
        (dx,) = torch.autograd.grad(out, tx, _tensor(torch, go))
        np.testing.assert_allclose(ref.avg_pool2d_input(go, x.shape, **kwargs), dx.numpy(), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("mode", ("constant", "reflect", "replicate", "circular"))
def test_pad_gradient_matches_torch(torch, mode):
    rng = np.random.default_rng(SEED + 80)
    x = rng.standard_normal((2, 3, 5, 4))
    tx = _tensor(torch, x, True)
    out = torch.nn.functional.pad(tx, (3, 0, 1, 4), mode=mode)  # (left, right, top, bottom)
    go = rng.standard_normal(tuple(out.shape))
    (dx,) = torch.autograd.grad(out, tx, _tensor(torch, go))
    np.testing.assert_allclose(ref.pad2d_input(go, ((1, 4), (3, 0)), mode), dx.numpy(), rtol=1e-12, atol=1e-12)
