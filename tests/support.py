"""Helpers shared by the parity tests: random data, tolerances, device transfer, poisoning."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import zlib

import numpy as np
import pytest

from gpuconv.backends import BackendUnavailable, get_backend

from gpuconv._tolerance import describe, error_ratio

DTYPES = (np.float16, np.float32, np.float64)


def stable_seed(*parts) -> int:
    """A seed from a test's parameters, the same in every process (hash() of a str is not)."""
    return zlib.crc32(repr(parts).encode())


def must_run(backend: str) -> bool:
    """Whether a backend must run here: "cuda-emu" in CI (CI=true), "cuda" with GPUCONV_REQUIRE_GPU=1."""
    if backend == "cuda-emu":
        return os.environ.get("CI", "").lower() == "true"
    if backend == "cuda":
        return os.environ.get("GPUCONV_REQUIRE_GPU") == "1"
    return True


def require_backend(name: str) -> str:
    """name, when the backend can run here; else the test is skipped with the reason, or fails
    where the backend is required (must_run)."""
    try:
        get_backend(name)
    except BackendUnavailable as exc:
        if must_run(name):
            pytest.fail(f"{exc} (required here: CI=true for cuda-emu, GPUCONV_REQUIRE_GPU=1 for cuda)")
        pytest.skip(str(exc))
    return name


def random_array(rng: np.random.Generator, shape, dtype=np.float64) -> np.ndarray:
    """Non-zero normal data in dtype (float16 data is rounded once, here)."""
    return rng.standard_normal(shape).astype(dtype)


def as_reference_input(a):
    """The exact values the op sees, as float64 (float16 inputs are compared from their rounded values)."""
    return None if a is None else np.asarray(a).astype(np.float64)


def to_backend(a, backend: str):
    """a as the array type of `backend` (CuPy for the real GPU backend, NumPy otherwise)."""
    if a is None or backend != "cuda":
        return a
    import cupy

    return cupy.asarray(a)


def to_numpy(a) -> np.ndarray:
    if type(a).__module__.split(".")[0] == "cupy":
        return a.get()
    return np.asarray(a)


def assert_close(actual, expected: np.ndarray, dtype, what: str = "") -> None:
    """actual has expected's shape and `dtype`, the same NaN/inf pattern, and agrees with expected
    element by element within the tolerance of `dtype` (gpuconv._tolerance: the same rule as
    `python -m gpuconv check`)."""
    actual = to_numpy(actual)
    dtype = np.dtype(dtype)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != expected {dtype}"
    got = actual.astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(expected)), f"{what}: NaN pattern differs from the reference"
    special = ~np.isfinite(expected) & ~np.isnan(expected)
    assert np.array_equal(got[special], expected[special]), f"{what}: infinities differ from the reference"
    assert np.isfinite(got[np.isfinite(expected)]).all(), f"{what}: non-finite values where the reference is finite"
    ratio = error_ratio(got, expected, dtype)
    if ratio > 1:
        worst = np.unravel_index(np.nanargmax(np.where(np.isfinite(expected), np.abs(got - expected), -1)),
                                 expected.shape)
        raise AssertionError(f"{what}: error {ratio:.3g} x the tolerance ({dtype}: {describe()}); worst element "
                             f"{tuple(int(i) for i in worst)}: {got[worst]!r} vs {expected[worst]!r}")


def assert_same(actual, expected: np.ndarray, dtype=None, what: str = "") -> None:
    """Bit-for-bit equality (NaN equal to NaN): max pooling values, indices, padding."""
    actual = to_numpy(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    if dtype is not None:
        assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype} != expected {np.dtype(dtype)}"
    mismatch = ~((actual == expected) | (np.isnan(actual) & np.isnan(expected))) if actual.dtype.kind == "f" \
        else actual != expected
    assert not mismatch.any(), (f"{what}: {int(mismatch.sum())} of {mismatch.size} elements differ, first at "
                                f"{tuple(int(i) for i in np.argwhere(mismatch)[0])}")


class _PoisonedNumpy:
    """numpy, except that empty/empty_like return arrays filled with NaN (floats) or a huge
    sentinel (integers; raw uint8 scratch bytes read as float are then NaN too), so that an
    output element the backend forgets to write shows. With huge=True, floats get the largest
    finite value and bytes 0x7F (huge finite floats): leftover memory that is computed on
    and then discarded shows as overflow warnings."""

    def __init__(self, real, huge):
        self._real = real
        self._huge = huge

    def __getattr__(self, name):
        return getattr(self._real, name)

    def _poison(self, a):
        if a.dtype.kind == "f":
            a.fill(np.finfo(a.dtype).max if self._huge else np.nan)
        elif a.dtype == np.uint8 and self._huge:
            a.fill(0x7F)
        elif a.dtype.kind in "iu":
            a.fill(np.iinfo(a.dtype).max)
        return a

    def empty(self, *args, **kwargs):
        return self._poison(self._real.empty(*args, **kwargs))

    def empty_like(self, *args, **kwargs):
        return self._poison(self._real.empty_like(*args, **kwargs))


@contextlib.contextmanager
def poisoned_numpy_backend(huge=False):
    """Inside the block, every backend module (and gpuconv._api) that uses NumPy as `np` gets
    NaN-filled arrays from np.empty / np.empty_like (CuPy allocations are not touched)."""
    patched = []
    for name, module in list(sys.modules.items()):
        if (name.startswith("gpuconv.backends") or name == "gpuconv._api") and \
                getattr(module, "np", None) is np:
            patched.append(module)
            module.np = _PoisonedNumpy(np, huge)
    try:
        yield
    finally:
        for module in patched:
            module.np = np


def assert_raises_naming(call, exc_type, argument: str, case: str = "") -> None:
    """call() raises exc_type whose message names `argument` as a word."""
    with pytest.raises(exc_type) as info:
        call()
    message = str(info.value)
    assert re.search(rf"(?<!\w){re.escape(argument)}(?!\w)", message), \
        f"{case}: the message does not name {argument!r}: {message!r}"
