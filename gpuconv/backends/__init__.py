"""Backend registry and dispatch.

A backend is an object with `name` and the methods conv2d(x, w, bias, spec, algorithm),
max_pool2d(x, spec, return_indices), avg_pool2d(x, spec) and pad2d(x, spec), and the gradients
(spec is the forward op's): conv2d_input(grad_out, w, spec, algorithm),
conv2d_weight(x, grad_out, spec, algorithm) (zero padding only: gpuconv._backward folds the other
modes), max_pool2d_input(grad_out, x, indices, spec), avg_pool2d_input(grad_out, spec) and
pad2d_input(grad_out, spec). Inputs are 4-D arrays of one float dtype (float16/32/64); the result
has the input's array type and dtype.

Choice, first match wins: the `backend=` argument, the innermost `use_backend(...)`,
the GPUCONV_BACKEND environment variable, then the input's array type (CuPy -> "cuda",
anything else -> "numpy").
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import os

# name -> module path; each module exposes load() returning the backend, or raising
# BackendUnavailable with the reason.
_MODULES = {
    "numpy": "gpuconv.backends.cpu",
    "cuda": "gpuconv.backends.cuda",
    "cuda-emu": "gpuconv.backends.cuda",
}


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine; the message says why."""


_loaded: dict[str, object] = {}
_reasons: dict[str, str] = {}
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpuconv_backend", default=None)


def get_backend(name: str):
    if name not in _MODULES:
        raise ValueError(f"backend={name!r}: unknown backend; expected one of {tuple(_MODULES)}")
    if name in _loaded:
        return _loaded[name]
    if name in _reasons:
        raise BackendUnavailable(f"backend {name!r} is not available: {_reasons[name]}")
    try:
        module = importlib.import_module(_MODULES[name])
        backend = module.load(name)
    except BackendUnavailable as exc:
        _reasons[name] = str(exc)
        raise BackendUnavailable(f"backend {name!r} is not available: {exc}") from None
    except ImportError as exc:
        _reasons[name] = f"{type(exc).__name__}: {exc}"
        raise BackendUnavailable(f"backend {name!r} is not available: {_reasons[name]}") from None
    _loaded[name] = backend
    return backend


def unavailable_reasons() -> dict[str, str]:
    """{name: why} for every registered backend that cannot run here."""
    available_backends()
    return dict(_reasons)


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine."""
    names = []
    for name in _MODULES:
        try:
            get_backend(name)
            names.append(name)
        except BackendUnavailable:
            pass
    return names


@contextlib.contextmanager
def use_backend(name: str):
    """Run every gpuconv call inside the block on backend `name`."""
    if name not in _MODULES:
        raise ValueError(f"backend={name!r}: unknown backend; expected one of {tuple(_MODULES)}")
    token = _current.set(name)
    try:
        yield get_backend(name)
    finally:
        _current.reset(token)


def is_cupy_array(x) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def select(x, backend: str | None):
    name = backend or _current.get() or None
    if name is None and os.environ.get("GPUCONV_BACKEND"):
        name = os.environ["GPUCONV_BACKEND"]
        if name not in _MODULES:
            raise ValueError(f"environment variable GPUCONV_BACKEND={name!r}: unknown backend; "
                             f"expected one of {tuple(_MODULES)}")
    if name is None:
        name = "cuda" if is_cupy_array(x) else "numpy"
    return get_backend(name)
