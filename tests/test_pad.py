"""pad2d against the reference, on every backend."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuconv
from gpuconv import _reference as ref
from support import DTYPES, as_reference_input, assert_same, poisoned_numpy_backend, random_array, to_backend

MODES = ("constant", "reflect", "replicate", "circular")


def check_pad(backend, x, padding, mode="constant", value=0.0):
    """pad2d moves values, so the result must equal the reference exactly (pad values used here
    are exact in every dtype)."""
    expected = ref.pad2d(as_reference_input(x), ref.explicit_pads(padding), mode, value)
    kwargs = {"value": value} if mode == "constant" else {}
    with poisoned_numpy_backend():
        out = gpuconv.pad2d(to_backend(x, backend), padding, mode, **kwargs, backend=backend)
    assert_same(out, expected, x.dtype, f"{backend} pad2d {padding} {mode}")
    return expected


@st.composite
def pad_cases(draw):
    mode = draw(st.sampled_from(MODES))
    p = st.integers(0, 5)
    padding = draw(st.one_of(p, st.tuples(p, p), st.tuples(st.tuples(p, p), st.tuples(p, p))))
    t, b, l, r = ref.explicit_pads(padding)
    sizes = []
    for before, after in ((t, b), (l, r)):
        need = {"reflect": max(before, after) + 1, "circular": max(before, after, 1)}.get(mode, 1)
        sizes.append(max(draw(st.integers(1, 10)), need))
    lead = draw(st.sampled_from(((), (3,), (2, 3), (1, 1))))
    return dict(shape=lead + tuple(sizes), padding=padding, mode=mode,
                value=draw(st.sampled_from((0.0, 1.5, -3.25))) if mode == "constant" else 0.0,
                dtype=draw(st.sampled_from(DTYPES)), seed=draw(st.integers(0, 2**32 - 1)))


@settings(derandomize=True, max_examples=100, deadline=None)
@given(case=pad_cases())
def test_pad2d_matches_reference(backend, case):
    rng = np.random.default_rng(case["seed"])
    x = random_array(rng, case["shape"], case["dtype"])
    check_pad(backend, x, case["padding"], case["mode"], case["value"])


@pytest.mark.parametrize("mode", MODES)
def test_pad2d_limits_of_each_mode(backend, mode):
    """The largest legal pads: reflect size-1, circular size, replicate/constant anything."""
    rng = np.random.default_rng(1)
    x = random_array(rng, (2, 3, 4, 5), np.float32)
    big = {"reflect": ((3, 3), (4, 4)), "circular": ((4, 4), (5, 5))}.get(mode, ((7, 6), (9, 8)))
    check_pad(backend, x, big, mode, 2.5 if mode == "constant" else 0.0)
    check_pad(backend, x, ((0, 2), (3, 0)), mode)
    check_pad(backend, x, 0, mode)


def test_pad2d_known_values():
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(gpuconv.pad2d(x, ((0, 0), (2, 1)), "reflect"),
                                  [[3, 2, 1, 2, 3, 2], [6, 5, 4, 5, 6, 5]])
    np.testing.assert_array_equal(gpuconv.pad2d(x, ((1, 0), (1, 1)), "replicate"),
                                  [[1, 1, 2, 3, 3], [1, 1, 2, 3, 3], [4, 4, 5, 6, 6]])
    np.testing.assert_array_equal(gpuconv.pad2d(x, ((0, 1), (3, 0)), "circular"),
                                  [[1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6], [1, 2, 3, 1, 2, 3]])
    np.testing.assert_array_equal(gpuconv.pad2d(x, (1, 0), "constant", value=-1),
                                  [[-1, -1, -1], [1, 2, 3], [4, 5, 6], [-1, -1, -1]])


def test_reference_pad_matches_torch(torch):
    """Validates the oracle itself against torch.nn.functional.pad."""
    rng = np.random.default_rng(8)
    for trial in range(40):
        mode = MODES[trial % 4]
        h, w = (int(v) for v in rng.integers(1, 8, 2))
        t, b = (int(v) for v in rng.integers(0, h + 1, 2))
        l, r = (int(v) for v in rng.integers(0, w + 1, 2))
        if mode == "reflect":
            t, b, l, r = min(t, h - 1), min(b, h - 1), min(l, w - 1), min(r, w - 1)
        x = rng.standard_normal((2, 2, h, w))
        kwargs = {"value": 1.5} if mode == "constant" else {}
        got = torch.nn.functional.pad(torch.tensor(x), (l, r, t, b), mode=mode, **kwargs).numpy()
        np.testing.assert_array_equal(got, ref.pad2d(x, (t, b, l, r), mode, 1.5), err_msg=f"{mode}, trial {trial}")
