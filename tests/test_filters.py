"""gpuconv.filters: the classic kernels' defining properties and the weight-bank helper."""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _reference as ref
from gpuconv import filters
from support import assert_close, to_backend, to_numpy

RAMP = np.tile(np.arange(9.0), (7, 1))  # intensity rising left to right


def correlate_interior(image, kernel):
    """'valid' correlation of a 2-D image, from the reference."""
    return ref.conv2d(image[None, None], kernel[None, None])[0, 0]


def test_every_named_kernel_is_a_float64_2d_array():
    expected_shapes = {"gaussian": (5, 5)}
    for name, make in filters.NAMED.items():
        k = make()
        assert isinstance(k, np.ndarray) and k.dtype == np.float64, name
        assert k.shape == expected_shapes.get(name, (3, 3)), name
        assert np.isfinite(k).all(), name


def test_identity_and_box():
    np.testing.assert_array_equal(filters.identity(), [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert filters.identity(5)[2, 2] == 1 and filters.identity(5).sum() == 1
    image = np.random.default_rng(0).standard_normal((6, 7))
    np.testing.assert_allclose(gpuconv.correlate2d(image, filters.identity(), "same"), image, atol=1e-12)
    np.testing.assert_allclose(filters.box(4), np.full((4, 4), 1 / 16))
    np.testing.assert_allclose(correlate_interior(image, filters.box(3)),
                               [[image[i:i + 3, j:j + 3].mean() for j in range(5)] for i in range(4)], atol=1e-12)


@pytest.mark.parametrize("size, sigma", [(5, 1.0), (3, 0.5), (7, 2.0), (4, 1.5), (1, 1.0)])
def test_gaussian_is_the_normalised_sampled_gaussian(size, sigma):
    c = (size - 1) / 2
    i, j = np.mgrid[0:size, 0:size]
    expected = np.exp(-((i - c) ** 2 + (j - c) ** 2) / (2 * sigma ** 2))
    expected /= expected.sum()
    k = filters.gaussian(size, sigma)
    np.testing.assert_allclose(k, expected, rtol=1e-12)
    assert k.sum() == pytest.approx(1.0) and np.allclose(k, k.T) and np.allclose(k, k[::-1, ::-1])


@pytest.mark.parametrize("name, response", [("sobel_x", 8.0), ("prewitt_x", 6.0), ("scharr_x", 32.0)])
def test_gradient_kernels_respond_to_their_direction(name, response):
    kx = filters.NAMED[name]()
    ky = filters.NAMED[name.replace("_x", "_y")]()
    np.testing.assert_array_equal(ky, kx.T)
    assert kx.sum() == 0
    np.testing.assert_allclose(correlate_interior(RAMP, kx), response)  # rising left to right: positive
    np.testing.assert_allclose(correlate_interior(RAMP, ky), 0.0)
    np.testing.assert_allclose(correlate_interior(RAMP.T.copy(), ky), response)  # rising top to bottom


def test_laplacian_sharpen_emboss():
    lap = filters.laplacian()
    assert lap.sum() == 0
    np.testing.assert_allclose(correlate_interior(RAMP, lap), 0.0)
    np.testing.assert_allclose(correlate_interior(RAMP ** 2, lap), 2.0)  # d2/dx2 of x^2
    sharp = filters.sharpen()
    assert sharp.sum() == 1 and sharp[1, 1] == 5
    np.testing.assert_allclose(correlate_interior(RAMP, sharp), RAMP[1:-1, 1:-1])  # linear images unchanged
    emboss = filters.emboss()
    assert emboss.sum() == 1
    np.testing.assert_array_equal(emboss + emboss[::-1, ::-1], 2 * filters.identity())  # antisymmetric off-centre


def test_bank_shape_dtype_and_channel_average(backend):
    names = ["identity", "sobel_x", "gaussian", "laplacian"]
    weights = filters.bank(names, in_channels=3)
    assert weights.shape == (4, 3, 5, 5) and weights.dtype == np.float32
    assert filters.bank(names, dtype=np.float64).dtype == np.float64
    rgb = np.random.default_rng(1).standard_normal((1, 3, 12, 11)).astype(np.float32)
    out = gpuconv.conv2d(to_backend(rgb, backend), to_backend(weights, backend), padding="same", backend=backend)
    grey = rgb.astype(np.float64).mean(axis=1, keepdims=True)
    for f, name in enumerate(names):
        k = filters.NAMED[name]()
        pad = ((5 - k.shape[0]) // 2, (5 - k.shape[1]) // 2)
        centred = np.zeros((5, 5))
        centred[pad[0]:pad[0] + k.shape[0], pad[1]:pad[1] + k.shape[1]] = k
        expected = ref.conv2d(grey, centred[None, None], padding="same")
        assert_close(out[:, f:f + 1], expected, np.float32, f"bank filter {name}")
    np.testing.assert_allclose(to_numpy(out)[0, 0], grey[0, 0], atol=1e-5)  # identity, centred in 5x5


def test_bank_accepts_arrays_and_centres_smaller_kernels():
    weights = filters.bank([np.ones((1, 3)), np.arange(6.0).reshape(2, 3)], dtype=np.float64)
    assert weights.shape == (2, 1, 2, 3)
    np.testing.assert_array_equal(weights[0, 0], [[1, 1, 1], [0, 0, 0]])  # (2-1)//2 = 0 rows above
    np.testing.assert_array_equal(weights[1, 0], np.arange(6.0).reshape(2, 3))


BAD_FILTER_INPUTS = {
    "unknown name": (lambda: filters.bank(["sobel", "box"]), "kernels"),
    "empty list": (lambda: filters.bank([]), "kernels"),
    "1-D kernel": (lambda: filters.bank([np.ones(3)]), "kernels"),
    "empty kernel": (lambda: filters.bank([np.ones((0, 3))]), "kernels"),
    "in_channels zero": (lambda: filters.bank(["box"], in_channels=0), "in_channels"),
    "gaussian sigma zero": (lambda: filters.gaussian(5, 0), "sigma"),
    "gaussian sigma nan": (lambda: filters.gaussian(5, float("nan")), "sigma"),
    "gaussian size zero": (lambda: filters.gaussian(0), "size"),
    "box size float": (lambda: filters.box(2.5), "size"),
    "identity even size": (lambda: filters.identity(4), "size"),
}


@pytest.mark.parametrize("case", BAD_FILTER_INPUTS)
def test_bad_filter_arguments_raise_value_error_naming_them(case):
    call, argument = BAD_FILTER_INPUTS[case]
    with pytest.raises(ValueError, match=argument):
        call()
