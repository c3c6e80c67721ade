"""Backend registry and dispatch.

A backend is an object with `name`, `algorithms`, applicable_algorithms(spec) and the methods
conv2d(x, w, bias, spec, algorithm, precision=) (precision: "highest" or "tf32", gpuconv._precision),
max_pool2d(x, spec, return_indices), avg_pool2d(x, spec) and pad2d(x, spec). Inputs are 4-D arrays
of one float dtype (float16/32/64); the result has x's array type and that dtype. A backend with
`casts_x = True` also takes conv2d's x in any real dtype and computes in w's (the call's) dtype,
casting x as it reads it, and pooling's and padding's x in any real dtype (integers and bool read as
float64). The gradients (spec is the forward op's; inputs of the call's dtype):
conv2d_input(grad_out, w, spec, algorithm), conv2d_weight(x, grad_out, spec, algorithm) (zero
padding only: gpuconv._backward folds the other modes), max_pool2d_input(grad_out, x, indices,
spec), avg_pool2d_input(grad_out, spec) and pad2d_input(grad_out, spec).

Choice, first match wins: the `backend=` argument, the innermost `use_backend(...)`,
the GPUCONV_BACKEND environment variable, then the input's array type (CuPy -> "cuda",
anything else -> "numpy").
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
from collections.abc import Iterator

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


def _check_name(name, source: str = "backend") -> str:
    if not isinstance(name, str):
        raise TypeError(f"{source}={name!r}: must be a backend name, one of {tuple(_MODULES)}, or None")
    if name not in _MODULES:
        raise ValueError(f"{source}={name!r}: unknown backend; expected one of {tuple(_MODULES)}")
    return name


def get_backend(name: str):
    _check_name(name)
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
def use_backend(name: str) -> Iterator[object]:
    """Run every gpuconv call inside the block on backend `name`."""
    _check_name(name)
    token = _current.set(name)
    try:
        yield get_backend(name)
    finally:
        _current.reset(token)


_CUPY_TYPES: dict[type, bool] = {}


def is_cupy_array(x) -> bool:
    kind = type(x)
    found = _CUPY_TYPES.get(kind)
    if found is None:
        found = _CUPY_TYPES[kind] = kind.__module__.split(".")[0] == "cupy"
    return found


def is_dask_array(x) -> bool:
    return type(x).__module__.startswith("dask.array") and type(x).__name__ == "Array"


def requested_backend(backend: str | None) -> str | None:
    """The backend named by the `backend=` argument, the innermost use_backend(...) or
    GPUCONV_BACKEND, in that order; None when none names one."""
    name = _check_name(backend) if backend is not None else _current.get()
    if name is None and os.environ.get("GPUCONV_BACKEND"):
        name = _check_name(os.environ["GPUCONV_BACKEND"], "environment variable GPUCONV_BACKEND")
    return name


def select(x, backend: str | None):
    return get_backend(requested_backend(backend) or ("cuda" if is_cupy_array(x) else "numpy"))
