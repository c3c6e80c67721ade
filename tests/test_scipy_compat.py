"""correlate2d / convolve2d give scipy.signal's results for every mode, boundary and fill value."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuconv
from support import DTYPES, as_reference_input, assert_close, random_array, to_backend

signal = pytest.importorskip("scipy.signal")

MODES = ("full", "valid", "same")
BOUNDARIES = ("fill", "wrap", "symm")
OPS = {"correlate2d": (gpuconv.correlate2d, signal.correlate2d),
       "convolve2d": (gpuconv.convolve2d, signal.convolve2d)}


def valid_mode_fits(image_shape, kernel_shape):
    """scipy's rule for mode='valid': one input at least as large as the other in every dimension."""
    bigger = all(i >= k for i, k in zip(image_shape, kernel_shape))
    smaller = all(i <= k for i, k in zip(image_shape, kernel_shape))
    return bigger or smaller


def check_against_scipy(backend, op, image, kernel, mode, boundary, fillvalue):
    ours, theirs = OPS[op]
    args = (to_backend(image, backend), to_backend(kernel, backend))
    if mode == "valid" and not valid_mode_fits(image.shape, kernel.shape):
        with pytest.raises(ValueError):
            theirs(image, kernel, mode, boundary, fillvalue)
        with pytest.raises(ValueError, match="mode"):
            ours(*args, mode, boundary, fillvalue, backend=backend)
        return
    expected = theirs(as_reference_input(image), as_reference_input(kernel), mode, boundary, fillvalue)
    out = ours(*args, mode, boundary, fillvalue, backend=backend)
    assert_close(out, expected, np.result_type(image, kernel),
                 f"{op} image {image.shape} kernel {kernel.shape} {mode} {boundary} fill={fillvalue}")


# (image shape, kernel shape): odd, even, single pixel, kernel larger than the image, mixed sizes.
SHAPES = [((6, 7), (3, 3)), ((5, 6), (2, 4)), ((4, 4), (4, 4)), ((1, 1), (1, 1)), ((3, 2), (5, 4)),
          ((2, 3), (6, 7)), ((7, 3), (2, 5)), ((1, 8), (3, 2))]


@pytest.mark.parametrize("fillvalue", [0, 2.5])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", OPS)
def test_every_mode_and_boundary(backend, op, mode, boundary, fillvalue):
    rng = np.random.default_rng(MODES.index(mode) * 10 + BOUNDARIES.index(boundary))
    for image_shape, kernel_shape in SHAPES:
        check_against_scipy(backend, op, rng.standard_normal(image_shape), rng.standard_normal(kernel_shape), mode,
                            boundary, fillvalue)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(op=st.sampled_from(tuple(OPS)), mode=st.sampled_from(MODES), boundary=st.sampled_from(BOUNDARIES),
       fillvalue=st.sampled_from((0, -1.5, 3.0)), image_shape=st.tuples(st.integers(1, 10), st.integers(1, 10)),
       kernel_shape=st.tuples(st.integers(1, 7), st.integers(1, 7)), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**32 - 1))
def test_random_inputs_match_scipy(backend, op, mode, boundary, fillvalue, image_shape, kernel_shape, dtype, seed):
    rng = np.random.default_rng(seed)
    check_against_scipy(backend, op, random_array(rng, image_shape, dtype), random_array(rng, kernel_shape, dtype),
                        mode, boundary, fillvalue)


def test_integer_inputs_give_scipy_values_as_floats():
    rng = np.random.default_rng(3)
    image, kernel = rng.integers(-5, 6, (6, 5)), rng.integers(-3, 4, (3, 2))
    for op, (ours, theirs) in OPS.items():
        for mode in MODES:
            out = ours(image, kernel, mode)
            assert out.dtype == np.float64
            np.testing.assert_array_equal(out, theirs(image, kernel, mode), err_msg=f"{op} {mode}")


def test_valid_mode_size_error_names_mode():
    with pytest.raises(ValueError, match="mode='valid'"):
        gpuconv.correlate2d(np.ones((5, 3)), np.ones((3, 5)), "valid")
    with pytest.raises(ValueError, match="mode='valid'"):
        gpuconv.convolve2d(np.ones((2, 6)), np.ones((4, 1)), "valid")


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", MODES)
def test_large_images_are_correlated_in_bands_under_the_cap(mode, boundary, monkeypatch):
    """An image whose padded copy exceeds a quarter of the workspace cap is padded and correlated
    band by band (issue 13: correlate2d padded the whole image first): every band boundary gives
    scipy's values, with a kernel taller than some bands."""
    from gpuconv._config import config
    from gpuconv._signal import _band_rows

    monkeypatch.setattr(config, "workspace_bytes", 1 << 20)
    rng = np.random.default_rng(17)
    image, kernel = rng.standard_normal((60, 600)), rng.standard_normal((9, 4))
    assert _band_rows(8 * 600 + 2 * 8 * (600 + 3), 9, 60) < 15  # several bands
    for op, (ours, theirs) in OPS.items():
        assert_close(ours(image, kernel, mode, boundary, 1.25), theirs(image, kernel, mode, boundary, 1.25),
                     np.float64, f"{op} {mode} {boundary} in bands")
