"""Process-wide settings read from the environment, adjustable at run time."""
from __future__ import annotations

import contextlib
import contextvars
import os

_MIB = 1 << 20


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: must be a positive integer") from None
    if value < 1:
        raise ValueError(f"environment variable {name}={raw!r}: must be a positive integer")
    return value


_reserved: contextvars.ContextVar[int] = contextvars.ContextVar("gpuconv_reserved_workspace", default=0)


class _Config:
    """workspace_bytes: the most scratch memory one call may allocate (GPUCONV_WORKSPACE_MB, default 256),
    less what the op calling it holds (reserve()).
    num_threads: worker threads of the NumPy backend (GPUCONV_NUM_THREADS, default: CPU count, at most 8)."""

    def __init__(self):
        self._workspace_bytes = _env_int("GPUCONV_WORKSPACE_MB", 256) * _MIB
        self.num_threads = _env_int("GPUCONV_NUM_THREADS", min(os.cpu_count() or 1, 8))

    @property
    def workspace_bytes(self) -> int:
        return self._workspace_bytes - _reserved.get()

    @workspace_bytes.setter
    def workspace_bytes(self, nbytes: int) -> None:
        self._workspace_bytes = nbytes

    @contextlib.contextmanager
    def reserve(self, nbytes: int):
        """Within the block (in this thread), the calls made see nbytes less of the cap: an op that
        holds scratch while it calls other ops (correlate2d's padded bands) keeps the total under it."""
        token = _reserved.set(_reserved.get() + nbytes)
        try:
            yield
        finally:
            _reserved.reset(token)


config = _Config()


def set_workspace_limit(nbytes: int) -> None:
    """Cap the scratch memory a single call may allocate, in bytes (>= 1 MiB)."""
    if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < _MIB:
        raise ValueError(f"nbytes={nbytes!r}: must be an int >= {_MIB} (1 MiB)")
    config.workspace_bytes = nbytes


def set_num_threads(n: int) -> None:
    """Number of worker threads the NumPy backend uses (>= 1)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n={n!r}: must be an int >= 1")
    config.num_threads = n
