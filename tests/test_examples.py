"""The worked examples of the tutorials this project started from, on every backend, and the
Python examples of the README and docs/ as written."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gpuconv
from support import to_backend, to_numpy

signal = pytest.importorskip("scipy.signal")

# A classic 6x6 grey image and the vertical-edge filter; the 4x4 'valid' map is the tutorial's answer.
IMAGE_6X6 = np.array([[3, 0, 1, 2, 7, 4],
                      [1, 5, 8, 9, 3, 1],
                      [2, 7, 2, 5, 1, 3],
                      [0, 1, 3, 1, 7, 8],
                      [4, 2, 1, 6, 2, 8],
                      [2, 4, 5, 2, 3, 9]], dtype=np.float64)
VERTICAL_EDGE = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float64)
EDGE_MAP = np.array([[-5, -4, 0, 8],
                     [-10, -2, 2, 3],
                     [0, -2, -4, -7],
                     [-3, -2, -3, -16]], dtype=np.float64)


def test_6x6_image_with_3x3_filter_gives_the_4x4_map(backend):
    out = to_numpy(gpuconv.conv2d(to_backend(IMAGE_6X6[None, None], backend),
                                  to_backend(VERTICAL_EDGE[None, None], backend), backend=backend))[0, 0]
    assert out.shape == (4, 4)
    nine_term_sums = np.array([[sum(IMAGE_6X6[i + a, j + b] * VERTICAL_EDGE[a, b] for a in range(3) for b in range(3))
                                for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(out, nine_term_sums, atol=1e-12)
    np.testing.assert_allclose(out, EDGE_MAP, atol=1e-12)
    corr = to_numpy(gpuconv.correlate2d(to_backend(IMAGE_6X6, backend), to_backend(VERTICAL_EDGE, backend), "valid",
                                        backend=backend))
    np.testing.assert_allclose(corr, EDGE_MAP, atol=1e-12)


def test_3_channel_input_and_one_3_kernel_filter_give_one_channel(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 5))
    w = rng.standard_normal((1, 3, 3, 3))
    out = to_numpy(gpuconv.conv2d(to_backend(x, backend), to_backend(w, backend), backend=backend))
    assert out.shape == (1, 3, 3)
    per_channel_sum = sum(signal.correlate2d(x[c], w[0, c], "valid") for c in range(3))
    np.testing.assert_allclose(out[0], per_channel_sum, rtol=1e-12, atol=1e-12)
    out_b = to_numpy(gpuconv.conv2d(to_backend(x, backend), to_backend(w, backend),
                                    to_backend(np.array([0.5]), backend), backend=backend))
    np.testing.assert_allclose(out_b[0], per_channel_sum + 0.5, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(8, 8), (12, 10), (10, 10), (12, 8)])
def test_3x3_kernel_valid_matches_scipy_on_single_channel_images(backend, size):
    rng = np.random.default_rng(size[0] * 100 + size[1])
    image, kernel = rng.standard_normal(size), rng.standard_normal((3, 3))
    out = to_numpy(gpuconv.conv2d(to_backend(image[None, None], backend), to_backend(kernel[None, None], backend),
                                  padding="valid", backend=backend))[0, 0]
    assert out.shape == (size[0] - 2, size[1] - 2)
    np.testing.assert_allclose(out, signal.correlate2d(image, kernel, "valid"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_same_keeps_the_size_and_valid_shrinks_it_by_k_minus_1(backend, k):
    rng = np.random.default_rng(k)
    x = to_backend(rng.standard_normal((2, 3, 9, 7)), backend)
    w = to_backend(rng.standard_normal((4, 3, k, k)), backend)
    assert gpuconv.conv2d(x, w, padding="same", backend=backend).shape == (2, 4, 9, 7)
    assert gpuconv.conv2d(x, w, padding="valid", backend=backend).shape == (2, 4, 9 - (k - 1), 7 - (k - 1))


def test_3x3_pooling_on_known_matrices(backend):
    x = to_backend(IMAGE_6X6[None, None], backend)
    # non-overlapping 3x3 windows: top-left, top-right, bottom-left, bottom-right blocks, worked by hand
    np.testing.assert_array_equal(to_numpy(gpuconv.max_pool2d(x, 3, backend=backend))[0, 0], [[8, 9], [5, 9]])
    np.testing.assert_allclose(to_numpy(gpuconv.avg_pool2d(x, 3, backend=backend))[0, 0],
                               np.array([[29, 35], [22, 46]]) / 9, rtol=1e-12)
    m = to_backend(np.arange(1.0, 17.0).reshape(1, 1, 4, 4), backend)  # rows 1..4, 5..8, 9..12, 13..16
    values, indices = gpuconv.max_pool2d(m, 3, stride=1, return_indices=True, backend=backend)
    np.testing.assert_array_equal(to_numpy(values)[0, 0], [[11, 12], [15, 16]])
    np.testing.assert_array_equal(to_numpy(indices)[0, 0], [[10, 11], [14, 15]])
    np.testing.assert_allclose(to_numpy(gpuconv.avg_pool2d(m, 3, stride=1, backend=backend))[0, 0],
                               [[6, 7], [10, 11]], rtol=1e-12)


REPOSITORY = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md")), REPOSITORY / "cuda" / "README.md"]
PYTHON_BLOCKS = [(document.relative_to(REPOSITORY).as_posix(), index, block) for document in DOCUMENTS
                 for index, block in enumerate(re.findall(r"```python\n(.*?)```", document.read_text(), re.S))]


def test_the_documents_have_python_examples():
    assert {document for document, _, _ in PYTHON_BLOCKS} >= {"README.md", "docs/emulator.md"}


@pytest.mark.parametrize("document, index, block", PYTHON_BLOCKS, ids=[f"{d}:{i}" for d, i, _ in PYTHON_BLOCKS])
def test_python_examples_run_as_written(document, index, block, monkeypatch):
    """Each ```python block of the README and of docs/ runs in a fresh namespace from the repository
    root (the emulator example names cuda/pad.cu). A block that starts a child process (the
    sanitizer example) runs with that one call recorded instead: the child is
    tests/test_cuda_sanitizers.py."""
    monkeypatch.chdir(REPOSITORY)
    children = []
    real_run = subprocess.run

    def run(command, *args, **kwargs):
        if any("pytest" in str(part) for part in command):
            children.append(command)
            return subprocess.CompletedProcess(command, 0)
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    exec(compile(block, f"{document} python block {index}", "exec"), {"__name__": "readme_example"})
    assert ("subprocess.run(" in block) == bool(children)
