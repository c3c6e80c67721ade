"""The arithmetic float32 convolutions may use: "highest" (exact float32, the default) or "tf32"
(TF32 tensor cores where the backend has them: 10-bit mantissa products, float32 sums). Per call
(`precision=`), else the innermost `with gpuconv.precision(...)` block, else "highest". float16 and
float64 are computed the same way under either."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Literal

Precision = Literal["highest", "tf32"]

PRECISIONS = ("highest", "tf32")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpuconv_precision", default=None)


def _checked(value, name: str) -> str:
    if value not in PRECISIONS:
        raise ValueError(f"{name}={value!r}: expected one of {PRECISIONS} ('highest': exact float32; 'tf32': "
                         f"float32 convolutions may multiply in TF32 on tensor cores)")
    return value


def resolve(precision) -> str:
    """The precision of a call: its own argument, else the innermost gpuconv.precision(...), else 'highest'."""
    if precision is not None:
        return _checked(precision, "precision")
    return _current.get() or "highest"


@contextlib.contextmanager
def precision(name: Precision) -> Iterator[Precision]:
    """Run the float32 convolutions inside the block with precision `name` ("highest" or "tf32"),
    unless a call passes its own `precision=`."""
    token = _current.set(_checked(name, "precision"))
    try:
        yield name
    finally:
        _current.reset(token)
