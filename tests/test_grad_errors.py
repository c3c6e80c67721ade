"""Bad input to gpuconv.grad and conv_transpose2d raises ValueError/TypeError naming the argument."""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from support import assert_raises_naming

X = np.ones((2, 3, 8, 8))
W = np.ones((4, 3, 3, 3))
GO = np.ones((2, 4, 6, 6))  # conv2d(X, W)'s output
POOLED = np.ones((2, 3, 4, 4))  # max/avg_pool2d(X, 2)'s output

# id -> (call, exception type, argument name that the message must contain as a word)
BAD_INPUTS = {
    "dx grad_output wrong shape": (lambda: grad.conv2d_input(X.shape, W, np.ones((2, 4, 6, 5))), ValueError,
                                   "grad_output"),
    "dx grad_output 3-D for a batched input": (lambda: grad.conv2d_input(X.shape, W, GO[0]), ValueError,
                                               "grad_output"),
    "dx grad_output of another padding": (lambda: grad.conv2d_input(X.shape, W, GO, padding=1), ValueError,
                                          "grad_output"),
    "dx input_shape not a shape": (lambda: grad.conv2d_input(8, W, GO), ValueError, "input_shape"),
    "dx input_shape 5 values": (lambda: grad.conv2d_input((1,) + X.shape, W, GO), ValueError, "input_shape"),
    "dx input_shape negative": (lambda: grad.conv2d_input((2, 3, -8, 8), W, GO), ValueError, "input_shape"),
    "dx input_shape float": (lambda: grad.conv2d_input((2, 3, 8.0, 8), W, GO), ValueError, "input_shape"),
    "dx input_shape channel mismatch": (lambda: grad.conv2d_input((2, 2, 8, 8), W, GO), ValueError, "input_shape"),
    "dx input smaller than the kernel": (lambda: grad.conv2d_input((2, 3, 2, 8), W, GO), ValueError, "input_shape"),
    "dx w 3-D": (lambda: grad.conv2d_input(X.shape, W[0], GO), ValueError, "w"),
    "dx complex w": (lambda: grad.conv2d_input(X.shape, W + 1j, GO), TypeError, "w"),
    "dx complex grad_output": (lambda: grad.conv2d_input(X.shape, W, GO + 1j), TypeError, "grad_output"),
    "dx stride zero": (lambda: grad.conv2d_input(X.shape, W, GO, stride=0), ValueError, "stride"),
    "dx unknown padding_mode": (lambda: grad.conv2d_input(X.shape, W, GO, padding=1, padding_mode="mirror"),
                                ValueError, "padding_mode"),
    "dx reflect pad too large": (lambda: grad.conv2d_input((2, 3, 3, 8), W, np.ones((2, 4, 7, 12)), padding=3,
                                                           padding_mode="reflect"), ValueError, "padding"),
    "dx unknown algorithm": (lambda: grad.conv2d_input(X.shape, W, GO, algorithm="fft"), ValueError, "algorithm"),
    "dx algorithm for stride 1 only": (lambda: grad.conv2d_input(X.shape, W, np.ones((2, 4, 3, 3)), stride=2,
                                                                 algorithm="im2col"), ValueError, "algorithm"),
    "dx algorithm not a string": (lambda: grad.conv2d_input(X.shape, W, GO, algorithm=None), TypeError, "algorithm"),
    "dx unknown backend": (lambda: grad.conv2d_input(X.shape, W, GO, backend="nope"), ValueError, "backend"),
    "dw grad_output wrong shape": (lambda: grad.conv2d_weight(X, W.shape, GO[:, :3]), ValueError, "grad_output"),
    "dw weight_shape 3 values": (lambda: grad.conv2d_weight(X, W.shape[1:], GO), ValueError, "weight_shape"),
    "dw weight_shape channel mismatch": (lambda: grad.conv2d_weight(X, (4, 2, 3, 3), GO), ValueError,
                                         "weight_shape"),
    "dw weight_shape empty kernel": (lambda: grad.conv2d_weight(X, (4, 3, 0, 3), GO), ValueError, "weight_shape"),
    "dw F not divisible by groups": (lambda: grad.conv2d_weight(np.ones((2, 4, 8, 8)), (3, 2, 3, 3), GO, groups=2),
                                     ValueError, "groups"),
    "dw x 2-D": (lambda: grad.conv2d_weight(X[0, 0], W.shape, GO), ValueError, "x"),
    "dw unknown algorithm": (lambda: grad.conv2d_weight(X, W.shape, GO, algorithm="winograd"), ValueError,
                             "algorithm"),
    "dw shifted needs stride 1": (lambda: grad.conv2d_weight(X, W.shape, np.ones((2, 4, 3, 3)), stride=2,
                                                             algorithm="shifted"), ValueError, "algorithm"),
    "bias grad_output 2-D": (lambda: grad.conv2d_bias(np.ones((4, 6))), ValueError, "grad_output"),
    "bias string grad_output": (lambda: grad.conv2d_bias(np.full((1, 4, 2, 2), "a")), TypeError, "grad_output"),
    "max grad_output wrong shape": (lambda: grad.max_pool2d_input(np.ones((2, 3, 4, 3)), X, 2), ValueError,
                                    "grad_output"),
    "max padding > kernel/2": (lambda: grad.max_pool2d_input(POOLED, X, 2, padding=2), ValueError, "padding"),
    "max indices wrong shape": (lambda: grad.max_pool2d_input(POOLED, X, 2, indices=np.zeros((2, 3, 4), np.int64)),
                                ValueError, "indices"),
    "max indices float": (lambda: grad.max_pool2d_input(POOLED, X, 2, indices=np.zeros(POOLED.shape)), TypeError,
                          "indices"),
    "max indices out of the plane": (lambda: grad.max_pool2d_input(POOLED, X, 2,
                                                                   indices=np.full(POOLED.shape, 64)), ValueError,
                                     "indices"),
    "max indices below -1": (lambda: grad.max_pool2d_input(POOLED, X, 2, indices=np.full(POOLED.shape, -2)),
                             ValueError, "indices"),
    "max ceil_mode not a bool": (lambda: grad.max_pool2d_input(POOLED, X, 2, ceil_mode=1), TypeError, "ceil_mode"),
    "avg grad_output wrong shape": (lambda: grad.avg_pool2d_input(np.ones((2, 3, 5, 4)), X.shape, 2), ValueError,
                                    "grad_output"),
    "avg input_shape 2 values": (lambda: grad.avg_pool2d_input(POOLED, (8, 8), 2), ValueError, "input_shape"),
    "avg kernel larger than the input": (lambda: grad.avg_pool2d_input(POOLED, (2, 3, 1, 8), 2), ValueError,
                                         "kernel_size"),
    "avg divisor_override zero": (lambda: grad.avg_pool2d_input(POOLED, X.shape, 2, divisor_override=0), ValueError,
                                  "divisor_override"),
    "pad grad_output smaller than the pads": (lambda: grad.pad2d_input(np.ones((3, 3)), 2), ValueError,
                                              "grad_output"),
    "pad padding string": (lambda: grad.pad2d_input(X, "same"), ValueError, "padding"),
    "pad padding negative": (lambda: grad.pad2d_input(X, -1), ValueError, "padding"),
    "pad unknown mode": (lambda: grad.pad2d_input(X, 1, "mirror"), ValueError, "mode"),
    "pad reflect pad = input size": (lambda: grad.pad2d_input(np.ones((6, 6)), 2, "reflect"), ValueError, "padding"),
    "pad grad_output 1-D": (lambda: grad.pad2d_input(np.ones(5), 1), ValueError, "grad_output"),
    "conv1d_input input_shape 4 values": (lambda: grad.conv1d_input(X.shape, W[..., 0], np.ones((2, 4, 6))),
                                          ValueError, "input_shape"),
    "conv1d_weight grad_output 4-D": (lambda: grad.conv1d_weight(X[..., 0], (4, 3, 3), GO), ValueError,
                                      "grad_output"),
    "max_pool1d_input indices 2-D": (lambda: grad.max_pool1d_input(np.ones((2, 3, 4)), X[..., 0], 2,
                                                                    indices=np.zeros((2, 4), np.int64)), ValueError,
                                     "indices"),
    "avg_pool1d_input stride pair": (lambda: grad.avg_pool1d_input(np.ones((2, 3, 4)), (2, 3, 8), 2, stride=(1, 2)),
                                     ValueError, "stride"),
    # conv_transpose2d
    "transpose channel mismatch": (lambda: gpuconv.conv_transpose2d(X, np.ones((4, 2, 3, 3))), ValueError, "w"),
    "transpose C_in not divisible by groups": (lambda: gpuconv.conv_transpose2d(X, np.ones((3, 2, 3, 3)), groups=2),
                                               ValueError, "groups"),
    "transpose output_padding >= stride": (lambda: gpuconv.conv_transpose2d(X, W[:3], stride=2, output_padding=2),
                                           ValueError, "output_padding"),
    "transpose output_padding with same": (lambda: gpuconv.conv_transpose2d(X, W[:3], stride=2, padding="same",
                                                                            output_padding=1), ValueError,
                                           "output_padding"),
    "transpose output_padding negative": (lambda: gpuconv.conv_transpose2d(X, W[:3], output_padding=-1), ValueError,
                                          "output_padding"),
    "transpose padding crops everything": (lambda: gpuconv.conv_transpose2d(X, W[:3], padding=6), ValueError,
                                           "padding"),
    "transpose padding unknown string": (lambda: gpuconv.conv_transpose2d(X, W[:3], padding="full"), ValueError,
                                         "padding"),
    "transpose bias wrong shape": (lambda: gpuconv.conv_transpose2d(X, W[:3], np.ones(4)), ValueError, "bias"),
    "transpose w 3-D": (lambda: gpuconv.conv_transpose2d(X, W[0]), ValueError, "w"),
    "transpose x 5-D": (lambda: gpuconv.conv_transpose2d(X[None], W[:3]), ValueError, "x"),
    "transpose empty kernel": (lambda: gpuconv.conv_transpose2d(X, np.ones((3, 4, 0, 3))), ValueError, "w"),
    "transpose dilation zero": (lambda: gpuconv.conv_transpose2d(X, W[:3], dilation=0), ValueError, "dilation"),
    "transpose unknown algorithm": (lambda: gpuconv.conv_transpose2d(X, W[:3], algorithm="fft"), ValueError,
                                    "algorithm"),
    "transpose1d w 4-D": (lambda: gpuconv.conv_transpose1d(X[..., 0], W[:3]), ValueError, "w"),
    "transpose1d output_padding pair": (lambda: gpuconv.conv_transpose1d(X[..., 0], W[:3, :, 0], stride=2,
                                                                         output_padding=(1, 1)), ValueError,
                                        "output_padding"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_an_error_naming_the_argument(case):
    assert_raises_naming(*BAD_INPUTS[case], case)


def test_grad_output_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as info:
        grad.conv2d_input(X.shape, W, np.ones((2, 4, 6, 5)))
    assert "(2, 4, 6, 5)" in str(info.value) and "(2, 4, 6, 6)" in str(info.value)


def test_gpuconv_grad_is_a_submodule():
    import importlib

    assert importlib.import_module("gpuconv.grad") is gpuconv.grad
    for name in grad.__all__:
        assert callable(getattr(grad, name)), name
