"""Shared fixtures: the `backend` parametrisation of every parity test (contracts.md §4)."""
from __future__ import annotations

import os

import pytest

from gpuconv.backends import BackendUnavailable, get_backend

# "cuda-emu" must run in CI (a missing g++ or CUDA header fails the run there); "cuda" needs a
# real GPU and GPUCONV_REQUIRE_GPU=1 makes its absence a failure on GPU CI.
_BACKEND_PARAMS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("cuda-emu", id="cuda-emu", marks=pytest.mark.emulator),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
]


def _must_run(name: str) -> bool:
    if name == "cuda-emu":
        return os.environ.get("CI", "").lower() == "true"
    if name == "cuda":
        return os.environ.get("GPUCONV_REQUIRE_GPU") == "1"
    return True


@pytest.fixture(scope="session", params=_BACKEND_PARAMS)
def backend(request) -> str:
    """A backend name; skipped (with the reason) when it cannot run here, unless required."""
    name = request.param
    try:
        get_backend(name)
    except BackendUnavailable as exc:
        if _must_run(name):
            pytest.fail(f"{exc} (required here: CI=true for cuda-emu, GPUCONV_REQUIRE_GPU=1 for cuda)")
        pytest.skip(str(exc))
    return name


@pytest.fixture(scope="session")
def grad_backend(backend) -> str:
    """`backend`, for the gradient tests (every backend has the gradient methods)."""
    return backend


@pytest.fixture(scope="session")
def emu():
    """The "cuda-emu" backend object, for the kernel-level tests (skipped when the emulator cannot run)."""
    try:
        return get_backend("cuda-emu")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
