"""Every bad input raises ValueError/TypeError whose message names the argument (and never a wrong
answer, a crash or a hang)."""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from support import assert_raises_naming

X = np.ones((1, 3, 8, 8))
W = np.ones((4, 3, 3, 3))
IMG = np.ones((6, 6))

# id -> (call, exception type, argument name that the message must contain as a word)
BAD_INPUTS = {
    # conv2d: shapes and channels
    "conv channel mismatch": (lambda: gpuconv.conv2d(X, np.ones((4, 2, 3, 3))), ValueError, "w"),
    "conv channel mismatch with groups": (lambda: gpuconv.conv2d(np.ones((1, 4, 8, 8)), W, groups=2), ValueError,
                                          "groups"),
    "conv F not divisible by groups": (lambda: gpuconv.conv2d(np.ones((1, 4, 8, 8)), np.ones((3, 2, 3, 3)), groups=2),
                                       ValueError, "groups"),
    "conv groups zero": (lambda: gpuconv.conv2d(X, W, groups=0), ValueError, "groups"),
    "conv groups float": (lambda: gpuconv.conv2d(X, W, groups=1.5), ValueError, "groups"),
    "conv kernel larger than the input": (lambda: gpuconv.conv2d(np.ones((1, 3, 4, 4)), np.ones((1, 3, 5, 5))),
                                          ValueError, "w"),
    "conv kernel larger than the padded input": (lambda: gpuconv.conv2d(np.ones((1, 3, 2, 2)), np.ones((1, 3, 5, 5)),
                                                                        padding=1), ValueError, "padding"),
    "conv dilated kernel larger than the input": (lambda: gpuconv.conv2d(np.ones((1, 3, 5, 5)), W, dilation=3),
                                                  ValueError, "dilation"),
    "conv stride zero": (lambda: gpuconv.conv2d(X, W, stride=0), ValueError, "stride"),
    "conv stride negative": (lambda: gpuconv.conv2d(X, W, stride=(1, -2)), ValueError, "stride"),
    "conv stride string": (lambda: gpuconv.conv2d(X, W, stride="2"), ValueError, "stride"),
    "conv dilation zero": (lambda: gpuconv.conv2d(X, W, dilation=0), ValueError, "dilation"),
    "conv dilation negative": (lambda: gpuconv.conv2d(X, W, dilation=(-1, 1)), ValueError, "dilation"),
    "conv padding negative": (lambda: gpuconv.conv2d(X, W, padding=-1), ValueError, "padding"),
    "conv padding three values": (lambda: gpuconv.conv2d(X, W, padding=(1, 2, 3)), ValueError, "padding"),
    "conv padding float": (lambda: gpuconv.conv2d(X, W, padding=1.5), ValueError, "padding"),
    "conv padding unknown string": (lambda: gpuconv.conv2d(X, W, padding="full"), ValueError, "padding"),
    "conv padding ragged sides": (lambda: gpuconv.conv2d(X, W, padding=((1, 2), (3,))), ValueError, "padding"),
    "conv padding negative side": (lambda: gpuconv.conv2d(X, W, padding=((1, -2), (0, 0))), ValueError, "padding"),
    "conv unknown padding_mode": (lambda: gpuconv.conv2d(X, W, padding=1, padding_mode="mirror"), ValueError,
                                  "padding_mode"),
    "conv reflect pad = input size": (lambda: gpuconv.conv2d(np.ones((1, 3, 3, 8)), W, padding=3,
                                                             padding_mode="reflect"), ValueError, "padding"),
    "conv reflect same pad = input size": (lambda: gpuconv.conv2d(np.ones((1, 3, 1, 8)), W, padding="same",
                                                                  padding_mode="reflect"), ValueError, "padding"),
    "conv circular pad > input size": (lambda: gpuconv.conv2d(np.ones((1, 3, 8, 3)), W, padding=(0, 4),
                                                              padding_mode="circular"), ValueError, "padding"),
    "conv x 2-D": (lambda: gpuconv.conv2d(np.ones((8, 8)), W), ValueError, "x"),
    "conv x 5-D": (lambda: gpuconv.conv2d(np.ones((1, 1, 3, 8, 8)), W), ValueError, "x"),
    "conv w 3-D": (lambda: gpuconv.conv2d(X, np.ones((3, 3, 3))), ValueError, "w"),
    "conv empty kernel": (lambda: gpuconv.conv2d(X, np.ones((4, 3, 0, 3))), ValueError, "w"),
    "conv no filters": (lambda: gpuconv.conv2d(X, np.ones((0, 3, 3, 3))), ValueError, "w"),
    "conv bias wrong shape": (lambda: gpuconv.conv2d(X, W, np.ones(3)), ValueError, "bias"),
    "conv bias 2-D": (lambda: gpuconv.conv2d(X, W, np.ones((4, 1))), ValueError, "bias"),
    "conv complex x": (lambda: gpuconv.conv2d(X.astype(complex), W), TypeError, "x"),
    "conv complex w": (lambda: gpuconv.conv2d(X, W + 1j), TypeError, "w"),
    "conv complex bias": (lambda: gpuconv.conv2d(X, W, np.ones(4, dtype=np.complex64)), TypeError, "bias"),
    "conv string x": (lambda: gpuconv.conv2d(np.full((1, 3, 8, 8), "a"), W), TypeError, "x"),
    "conv object x": (lambda: gpuconv.conv2d(np.full((1, 3, 8, 8), None), W), TypeError, "x"),
    "conv unknown backend": (lambda: gpuconv.conv2d(X, W, backend="nope"), ValueError, "backend"),
    "conv unknown algorithm": (lambda: gpuconv.conv2d(X, W, algorithm="winograd-9000"), ValueError, "algorithm"),
    "conv algorithm not a string": (lambda: gpuconv.conv2d(X, W, algorithm=3), TypeError, "algorithm"),
    # conv1d
    "conv1d x 4-D": (lambda: gpuconv.conv1d(X, np.ones((4, 3, 3))), ValueError, "x"),
    "conv1d w 4-D": (lambda: gpuconv.conv1d(np.ones((1, 3, 8)), W), ValueError, "w"),
    "conv1d stride pair": (lambda: gpuconv.conv1d(np.ones((1, 3, 8)), np.ones((4, 3, 3)), stride=(1, 2)), ValueError,
                           "stride"),
    "conv1d padding triple": (lambda: gpuconv.conv1d(np.ones((1, 3, 8)), np.ones((4, 3, 3)), padding=(1, 2, 3)),
                              ValueError, "padding"),
    "conv1d kernel longer than input": (lambda: gpuconv.conv1d(np.ones((1, 3, 2)), np.ones((4, 3, 3))), ValueError,
                                        "w"),
    "conv1d channel mismatch": (lambda: gpuconv.conv1d(np.ones((1, 2, 8)), np.ones((4, 3, 3))), ValueError, "w"),
    # pooling
    "max pool padding > kernel/2": (lambda: gpuconv.max_pool2d(X, 3, padding=2), ValueError, "padding"),
    "avg pool padding > kernel/2": (lambda: gpuconv.avg_pool2d(X, (4, 2), padding=(1, 2)), ValueError, "padding"),
    "max pool negative padding": (lambda: gpuconv.max_pool2d(X, 3, padding=-1), ValueError, "padding"),
    "pool padding string": (lambda: gpuconv.avg_pool2d(X, 3, padding="same"), ValueError, "padding"),
    "max pool kernel_size zero": (lambda: gpuconv.max_pool2d(X, 0), ValueError, "kernel_size"),
    "avg pool kernel_size triple": (lambda: gpuconv.avg_pool2d(X, (2, 2, 2)), ValueError, "kernel_size"),
    "max pool stride zero": (lambda: gpuconv.max_pool2d(X, 2, stride=0), ValueError, "stride"),
    "avg pool stride negative": (lambda: gpuconv.avg_pool2d(X, 2, stride=(2, -1)), ValueError, "stride"),
    "max pool dilation zero": (lambda: gpuconv.max_pool2d(X, 2, dilation=0), ValueError, "dilation"),
    "max pool kernel larger than the input": (lambda: gpuconv.max_pool2d(np.ones((1, 1, 2, 2)), 3), ValueError,
                                              "kernel_size"),
    "avg pool kernel larger than the padded input": (lambda: gpuconv.avg_pool2d(np.ones((1, 1, 1, 5)), 4, padding=1),
                                                     ValueError, "kernel_size"),
    "avg pool divisor_override zero": (lambda: gpuconv.avg_pool2d(X, 2, divisor_override=0), ValueError,
                                       "divisor_override"),
    "avg pool divisor_override float": (lambda: gpuconv.avg_pool2d(X, 2, divisor_override=1.5), ValueError,
                                        "divisor_override"),
    "avg pool divisor_override 10**400": (lambda: gpuconv.avg_pool2d(X, 2, divisor_override=10**400), ValueError,
                                          "divisor_override"),
    "max pool ceil_mode not bool": (lambda: gpuconv.max_pool2d(X, 2, ceil_mode="yes"), TypeError, "ceil_mode"),
    "max pool return_indices not bool": (lambda: gpuconv.max_pool2d(X, 2, return_indices=None), TypeError,
                                         "return_indices"),
    "avg pool count_include_pad not bool": (lambda: gpuconv.avg_pool2d(X, 2, count_include_pad="no"), TypeError,
                                            "count_include_pad"),
    "max pool x 2-D": (lambda: gpuconv.max_pool2d(np.ones((8, 8)), 2), ValueError, "x"),
    "avg pool x 5-D": (lambda: gpuconv.avg_pool2d(np.ones((1, 1, 1, 8, 8)), 2), ValueError, "x"),
    "max pool complex x": (lambda: gpuconv.max_pool2d(X + 1j, 2), TypeError, "x"),
    "avg pool complex x": (lambda: gpuconv.avg_pool2d(X.astype(np.complex64), 2), TypeError, "x"),
    "max pool unknown backend": (lambda: gpuconv.max_pool2d(X, 2, backend="nope"), ValueError, "backend"),
    "avg pool unknown backend": (lambda: gpuconv.avg_pool2d(X, 2, backend="nope"), ValueError, "backend"),
    "max pool1d kernel_size pair": (lambda: gpuconv.max_pool1d(np.ones((1, 3, 8)), (2, 2)), ValueError,
                                    "kernel_size"),
    "avg pool1d stride pair": (lambda: gpuconv.avg_pool1d(np.ones((1, 3, 8)), 2, stride=(1, 2)), ValueError,
                               "stride"),
    "max pool1d padding > kernel/2": (lambda: gpuconv.max_pool1d(np.ones((1, 3, 8)), 2, padding=2), ValueError,
                                      "padding"),
    "max pool1d x 4-D": (lambda: gpuconv.max_pool1d(X, 2), ValueError, "x"),
    # pad2d
    "pad value nan": (lambda: gpuconv.pad2d(X, 1, value=np.nan), ValueError, "value"),
    "pad value inf": (lambda: gpuconv.pad2d(X, 1, value=-np.inf), ValueError, "value"),
    "pad value string": (lambda: gpuconv.pad2d(X, 1, value="a"), TypeError, "value"),
    "pad value with reflect": (lambda: gpuconv.pad2d(X, 1, "reflect", value=1.0), ValueError, "value"),
    "pad unknown mode": (lambda: gpuconv.pad2d(X, 1, "symmetric"), ValueError, "mode"),
    "pad reflect pad = input size": (lambda: gpuconv.pad2d(np.ones((3, 5)), 3, "reflect"), ValueError, "padding"),
    "pad reflect side pad = input size": (lambda: gpuconv.pad2d(np.ones((5, 3)), ((0, 0), (0, 3)), "reflect"),
                                          ValueError, "padding"),
    "pad circular pad > input size": (lambda: gpuconv.pad2d(np.ones((3, 5)), (4, 0), "circular"), ValueError,
                                      "padding"),
    "pad padding negative": (lambda: gpuconv.pad2d(X, -1), ValueError, "padding"),
    "pad padding string": (lambda: gpuconv.pad2d(X, "same"), ValueError, "padding"),
    "pad padding triple": (lambda: gpuconv.pad2d(X, (1, 2, 3)), ValueError, "padding"),
    "pad x 1-D": (lambda: gpuconv.pad2d(np.ones(5), 1), ValueError, "x"),
    "pad x 5-D": (lambda: gpuconv.pad2d(np.ones((1, 1, 1, 3, 3)), 1), ValueError, "x"),
    "pad complex x": (lambda: gpuconv.pad2d(IMG + 0j, 1), TypeError, "x"),
    "pad unknown backend": (lambda: gpuconv.pad2d(X, 1, backend="nope"), ValueError, "backend"),
    # correlate2d / convolve2d
    "correlate unknown mode": (lambda: gpuconv.correlate2d(IMG, np.ones((3, 3)), "circular"), ValueError, "mode"),
    "convolve unknown boundary": (lambda: gpuconv.convolve2d(IMG, np.ones((3, 3)), boundary="reflect"), ValueError,
                                  "boundary"),
    "correlate fillvalue nan": (lambda: gpuconv.correlate2d(IMG, np.ones((3, 3)), fillvalue=np.nan), ValueError,
                                "fillvalue"),
    "correlate fillvalue complex": (lambda: gpuconv.correlate2d(IMG, np.ones((3, 3)), fillvalue=1j), TypeError,
                                    "fillvalue"),
    "correlate image 3-D": (lambda: gpuconv.correlate2d(X[0], np.ones((3, 3))), ValueError, "image"),
    "convolve kernel 1-D": (lambda: gpuconv.convolve2d(IMG, np.ones(3)), ValueError, "kernel"),
    "correlate empty kernel": (lambda: gpuconv.correlate2d(IMG, np.ones((0, 3))), ValueError, "kernel"),
    "convolve empty image": (lambda: gpuconv.convolve2d(np.ones((0, 4)), np.ones((2, 2))), ValueError, "image"),
    "correlate valid with crossed sizes": (lambda: gpuconv.correlate2d(np.ones((6, 2)), np.ones((3, 3)), "valid"),
                                           ValueError, "mode"),
    "convolve complex kernel": (lambda: gpuconv.convolve2d(IMG, np.ones((3, 3)) * 1j), TypeError, "kernel"),
    "correlate unknown backend": (lambda: gpuconv.correlate2d(IMG, np.ones((3, 3)), backend="nope"), ValueError,
                                  "backend"),
    # settings and backend choice
    "workspace limit zero": (lambda: gpuconv.set_workspace_limit(0), ValueError, "nbytes"),
    "workspace limit float": (lambda: gpuconv.set_workspace_limit(1e9), ValueError, "nbytes"),
    "num threads zero": (lambda: gpuconv.set_num_threads(0), ValueError, "n"),
    "use_backend unknown": (lambda: gpuconv.use_backend("nope").__enter__(), ValueError, "backend"),
    # issue 13, item 5: arguments of the wrong type were not named
    "backend a list": (lambda: gpuconv.conv2d(X, W, backend=["numpy"]), TypeError, "backend"),
    "backend zero": (lambda: gpuconv.conv2d(X, W, backend=0), TypeError, "backend"),
    "backend empty string": (lambda: gpuconv.max_pool2d(X, 2, backend=""), ValueError, "backend"),
    "use_backend a list": (lambda: gpuconv.use_backend(["numpy"]).__enter__(), TypeError, "backend"),
    "padding_mode an array": (lambda: gpuconv.conv2d(X, W, padding=1, padding_mode=np.array(["zeros", "reflect"])),
                              TypeError, "padding_mode"),
    "pad mode an array": (lambda: gpuconv.pad2d(X, 1, np.array(["reflect"])), TypeError, "mode"),
    "correlate mode an array": (lambda: gpuconv.correlate2d(IMG, np.ones((3, 3)), np.array(["full", "same"])),
                                TypeError, "mode"),
    "correlate boundary an array": (lambda: gpuconv.correlate2d(IMG, np.ones((3, 3)), boundary=np.array([1, 2])),
                                    TypeError, "boundary"),
    "correlate fillvalue None": (lambda: gpuconv.correlate2d(IMG, np.ones((3, 3)), fillvalue=None), TypeError,
                                 "fillvalue"),
    "correlate fillvalue pair": (lambda: gpuconv.correlate2d(IMG, np.ones((3, 3)), fillvalue=(1, 2)), TypeError,
                                 "fillvalue"),
    "ragged nested list x": (lambda: gpuconv.conv2d([[[[1.0, 2.0]], [[3.0]]]], W), ValueError, "x"),
    "ragged nested list image": (lambda: gpuconv.correlate2d([[1.0, 2.0], [3.0]], np.ones((1, 1))), ValueError,
                                 "image"),
    "conv padding 2**100": (lambda: gpuconv.conv2d(X, W, padding=2**100), ValueError, "padding"),
    "pad padding 2**100": (lambda: gpuconv.pad2d(X, (0, 2**100)), ValueError, "padding"),
    "dlpack device raises": (lambda: gpuconv.conv2d(_RaisingDlpack(), W), TypeError, "x"),
    # issue 13, item 7
    "pad value a string": (lambda: gpuconv.pad2d(X, 1, value="1.5"), TypeError, "value"),
    "correlate fillvalue a string": (lambda: gpuconv.correlate2d(IMG, np.ones((3, 3)), fillvalue="2"), TypeError,
                                     "fillvalue"),
    "correlate fillvalue complex64": (lambda: gpuconv.correlate2d(IMG, np.ones((3, 3)), fillvalue=np.complex64(1j)),
                                      TypeError, "fillvalue"),
    "pad float16 value out of range": (lambda: gpuconv.pad2d(X.astype(np.float16), 1, value=1e5), ValueError, "value"),
    "correlate float16 fillvalue out of range": (lambda: gpuconv.correlate2d(
        IMG.astype(np.float16), np.ones((3, 3), np.float16), fillvalue=-7e4), ValueError, "fillvalue"),
    "masked x": (lambda: gpuconv.conv2d(np.ma.masked_less(X, 2.0), W), TypeError, "x"),
    "empty x unknown algorithm": (lambda: gpuconv.conv2d(np.ones((0, 3, 8, 8)), W, algorithm="fft"), ValueError,
                                  "algorithm"),
    "empty x inapplicable algorithm": (lambda: gpuconv.conv2d(np.ones((0, 3, 8, 8)), W, stride=2,
                                                              algorithm="winograd"), ValueError, "algorithm"),
    "empty x unknown backend": (lambda: gpuconv.conv2d(np.ones((0, 3, 8, 8)), W, backend="nope"), ValueError,
                                "backend"),
    "empty pool unknown backend": (lambda: gpuconv.max_pool2d(np.ones((0, 3, 8, 8)), 2, backend="nope"), ValueError,
                                   "backend"),
    "empty avg pool unknown backend": (lambda: gpuconv.avg_pool2d(np.ones((0, 3, 8, 8)), 2, backend="nope"),
                                       ValueError, "backend"),
    "filters.bank complex kernel": (lambda: gpuconv.filters.bank([np.ones((3, 3)), np.eye(3) * 1j]), TypeError,
                                    "kernels[1]"),
    "empty pad unknown backend": (lambda: gpuconv.pad2d(np.ones((0, 8)), 1, backend="nope"), ValueError, "backend"),
}


class _RaisingDlpack:
    """An object whose DLPack device query fails."""

    def __dlpack_device__(self):
        raise RuntimeError("device lost")


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_an_error_naming_the_argument(case):
    assert_raises_naming(*BAD_INPUTS[case], case)


def test_unknown_backend_in_the_environment_is_named(monkeypatch):
    monkeypatch.setenv("GPUCONV_BACKEND", "nope")
    with pytest.raises(ValueError, match="GPUCONV_BACKEND"):
        gpuconv.conv2d(X, W)


def test_unavailable_backend_says_why(monkeypatch):
    """A backend that cannot load raises BackendUnavailable with the reason, is left out of
    available_backends() and listed by unavailable_reasons()."""
    from gpuconv import backends

    monkeypatch.setitem(backends._MODULES, "fake", "gpuconv._no_such_backend_module")
    monkeypatch.setattr(backends, "_reasons", dict(backends._reasons))
    with pytest.raises(gpuconv.BackendUnavailable, match="'fake' is not available: .*_no_such_backend_module"):
        gpuconv.conv2d(X, W, backend="fake")
    with pytest.raises(gpuconv.BackendUnavailable, match="fake"):
        with gpuconv.use_backend("fake"):
            pass
    assert "fake" not in gpuconv.available_backends() and "numpy" in gpuconv.available_backends()
    assert "_no_such_backend_module" in backends.unavailable_reasons()["fake"]


X1, W1 = np.ones((1, 3, 8)), np.ones((4, 3, 3))
# issue 13, item 6: 1-D ops reported the 2-D call they make:
# (call, what the message must say, what it said before: the 2-D form)
ONE_D_MESSAGES = {
    "conv1d stride -1": (lambda: gpuconv.conv1d(X1, W1, stride=-1), "stride=-1", "(1, -1)"),
    "conv1d dilation 0": (lambda: gpuconv.conv1d(X1, W1, dilation=(0,)), "dilation=(0,)", "(1, 0)"),
    "conv1d padding -2": (lambda: gpuconv.conv1d(X1, W1, padding=-2), "padding=-2", "(0, -2)"),
    "conv1d kernel longer than the input": (lambda: gpuconv.conv1d(np.ones((1, 3, 2)), W1, dilation=2), "kernel 3",
                                            "(1, 3)"),
    "conv1d channel mismatch": (lambda: gpuconv.conv1d(np.ones((1, 2, 8)), W1), "shape (4, 3, 3)", "(4, 3, 1, 3)"),
    "conv1d reflect pad = length": (lambda: gpuconv.conv1d(X1, W1, padding=(8, 1), padding_mode="reflect"),
                                    "padding (8, 1)", "(0, 0, 8, 1)"),
    "max_pool1d padding > kernel/2": (lambda: gpuconv.max_pool1d(X1, 2, padding=2), "padding=2", "(0, 2)"),
    "max_pool1d stride 0": (lambda: gpuconv.max_pool1d(X1, 2, stride=0), "stride=0", "(1, 0)"),
    "avg_pool1d kernel 0": (lambda: gpuconv.avg_pool1d(X1, 0), "kernel_size=0", "(1, 0)"),
    "max_pool1d kernel longer than the input": (lambda: gpuconv.max_pool1d(X1, 5, dilation=2), "input size 8",
                                                "(1, 8)"),
}


@pytest.mark.parametrize("case", ONE_D_MESSAGES)
def test_one_dimensional_ops_speak_of_their_own_arguments(case):
    call, expected, two_d = ONE_D_MESSAGES[case]
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert expected in message and two_d not in message, f"{case}: {message!r} (expected {expected!r})"


@pytest.mark.parametrize("value", [2**31, 2**62, 10**30])
def test_huge_limits_are_value_errors_naming_the_argument(value):
    """Issue 13, item 4: bare OverflowError before; a result (tests in test_conv/test_pool) or a
    ValueError naming the argument and its limit."""
    with pytest.raises(ValueError, match=r"divisor_override=.*2\*\*31 - 1"):
        gpuconv.avg_pool2d(X, 2, divisor_override=value)
    with pytest.raises(ValueError, match=r"padding=.*2\*\*31 - 1"):
        gpuconv.conv2d(X, W, padding=(0, value))
    with pytest.raises(ValueError, match=r"padding=.*2\*\*31 - 1"):
        gpuconv.pad2d(X, value)


def test_a_bfloat16_torch_tensor_is_named(torch):
    """Issue 13: 'Got unsupported ScalarType BFloat16' did not name the argument."""
    with pytest.raises(TypeError, match=r"^x has dtype bfloat16"):
        gpuconv.conv2d(torch.ones((1, 3, 8, 8), dtype=torch.bfloat16), W)
    with pytest.raises(TypeError, match=r"^w has dtype bfloat16"):
        gpuconv.conv2d(X, torch.ones((4, 3, 3, 3), dtype=torch.bfloat16))
    np.testing.assert_array_equal(gpuconv.conv2d(torch.ones((1, 3, 8, 8), dtype=torch.float32), W.astype(np.float32)),
                                  np.full((1, 4, 6, 6), 27, np.float32))
