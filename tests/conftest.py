"""Shared fixtures: the `backend` parametrisation of every parity test (contracts.md §4)."""
from __future__ import annotations

import pytest

from support import require_backend

# "cuda-emu" must run in CI (a missing g++ or CUDA header fails the run there); "cuda" needs a
# real GPU and GPUCONV_REQUIRE_GPU=1 makes its absence a failure on GPU CI.
_BACKEND_PARAMS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("cuda-emu", id="cuda-emu", marks=pytest.mark.emulator),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(scope="session", params=_BACKEND_PARAMS)
def backend(request) -> str:
    """A backend name; skipped (with the reason) when it cannot run here, unless required."""
    return require_backend(request.param)
