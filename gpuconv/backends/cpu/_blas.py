"""Limit NumPy's BLAS to a given number of threads for the duration of a call.

The NumPy backend runs its own worker threads, one matmul each; a multi-threaded BLAS
inside them would oversubscribe the cores. NumPy has no API for this, so:
- on Linux, find the OpenBLAS that NumPy loaded (/proc/self/maps) and call its
  `*openblas_set_num_threads*` through ctypes (NumPy's pip wheels ship OpenBLAS);
- elsewhere, or for another BLAS, use threadpoolctl when it is installed;
- otherwise leave BLAS alone (results are the same, only the speed differs).
Nested and concurrent users share one saved setting: the first to enter saves it, the last
to leave restores it.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Callable, NamedTuple

_SYMBOLS = ("scipy_openblas{}_num_threads64_", "openblas{}_num_threads64_",
            "scipy_openblas{}_num_threads", "openblas{}_num_threads")

_lock = threading.Lock()
_users = 0
_saved = None
_control = None  # a _Control once found, False when there is none


class _Control(NamedTuple):
    get: Callable[[], int]
    set: Callable[[int], None]
    name: str  # 'openblas-ctypes' or 'threadpoolctl'


def _openblas_control():
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in _SYMBOLS:
            getter = getattr(lib, symbol.format("_get"), None)
            setter = getattr(lib, symbol.format("_set"), None)
            if getter is not None and setter is not None:
                getter.restype = ctypes.c_int
                setter.argtypes = (ctypes.c_int,)
                return _Control(getter, setter, "openblas-ctypes")
    return None


def _threadpoolctl_control():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    controller = ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers:
        return None
    first = controller.lib_controllers[0]
    return _Control(lambda: first.num_threads, lambda n: controller.limit(limits=n) and None, "threadpoolctl")


def _find_control():
    global _control
    if _control is None:
        _control = _openblas_control() or _threadpoolctl_control() or False
    return _control


def backend_name() -> str:
    """How BLAS threads are controlled: 'openblas-ctypes', 'threadpoolctl' or 'none'."""
    control = _find_control()
    return control.name if control else "none"


class limit:
    """Run the block (`with limit(n):`) with BLAS using at most n threads. A class rather than a
    generator: it is entered on every call of the NumPy backend (host cost)."""

    __slots__ = ("threads", "control")

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self):
        global _users, _saved
        self.control = control = _find_control()
        if control:
            with _lock:
                if _users == 0:
                    _saved = control.get()
                    if _saved > self.threads:
                        control.set(self.threads)
                _users += 1

    def __exit__(self, *exc):
        global _users
        control = self.control
        if control:
            with _lock:
                _users -= 1
                if _users == 0 and _saved is not None and control.get() != _saved:
                    control.set(_saved)
