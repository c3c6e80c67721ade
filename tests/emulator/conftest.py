"""Fixtures of the emulator tests: skip (with the reason) where g++ or CUDA's headers are missing,
except in CI (CI=true), where that fails the run; `order` runs a test in every thread order."""

from __future__ import annotations

import os
import pytest

def _require_emulator() -> None:
    from gpuconv.emulator import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the CUDA emulator must run in CI: {reason}")
    pytest.skip(f"CUDA emulator unavailable: {reason}")


@pytest.fixture(scope="session")
def emulator():
    """The gpuconv.emulator package, once g++ and the CUDA headers are known to be present."""
    _require_emulator()
    import gpuconv.emulator

    return gpuconv.emulator


@pytest.fixture(params=["forward", "reverse", "random"])
def order(request, emulator):
    """Runs the test with threads and blocks in each order (random: a fresh seed each time, or
    GPUCONV_EMU_SEED when set)."""
    import random

    seed = 0
    if request.param == "random":
        seed = int(os.environ.get("GPUCONV_EMU_SEED") or random.SystemRandom().randrange(2**32))
    print(f"emulator thread order: {request.param}, seed {seed} (GPUCONV_EMU_SEED={seed} replays it)")
    previous = emulator.get_order()
    emulator.set_order(request.param, seed)
    yield request.param, seed
    emulator.set_order(*previous)
