"""Shared fixtures: the `backend` parametrisation of every parity test (and `grad_backend` for the
gradient tests), `rng` (random data from a printed seed), `torch` (the oracle is checked against
it; required in CI) and `torch_cuda` (a CUDA device both torch and the "cuda" backend can use)."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

from gpuconv.backends import BackendUnavailable, get_backend
from support import must_run, require_backend

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


@pytest.fixture
def rng() -> np.random.Generator:
    """Random test data: a fresh seed each run, printed (pytest shows it with a failure's output);
    GPUCONV_TEST_SEED=<seed> replays it exactly."""
    seed = int(os.environ.get("GPUCONV_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"test data seed {seed} (GPUCONV_TEST_SEED={seed} replays it)")
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def torch():
    """PyTorch, which the float64 oracle is checked against: in the test extra, so required in CI
    (CI=true); skipped elsewhere when it is not installed."""
    try:
        import torch
    except ImportError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PyTorch must be installed in CI to check the oracle against it: {exc}")
        pytest.skip(f"PyTorch is not installed ({exc})")
    return torch


@pytest.fixture(scope="module")
def torch_cuda(torch):
    """The current CUDA device, where gpuconv's "cuda" backend and torch's CUDA build can both run."""
    require_backend("cuda")
    if not torch.cuda.is_available():
        if must_run("cuda"):
            pytest.fail("GPUCONV_REQUIRE_GPU=1 but torch has no CUDA device (a CPU build?)")
        pytest.skip("torch has no CUDA device (a CPU build?)")
    return torch.device("cuda", torch.cuda.current_device())


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


@pytest.fixture(scope="module")
def dask_client():
    """A dask.distributed client of two worker processes (one thread and 1 GiB each), started once per
    module that uses it and shut down after it: its scheduler's threads allocate in this process,
    which other modules' tracemalloc measurements (test_memory) would count."""
    import logging

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                      dashboard_address=":0", silence_logs=logging.WARNING) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client
