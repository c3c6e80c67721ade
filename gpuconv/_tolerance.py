"""What "the same numbers" means: one error metric and one tolerance table, used by the test
suite and by `python -m gpuconv check` to compare a result with the float64 reference.

Element i of a result of dtype d agrees with the reference when

    |result_i - reference_i| <= RTOL[d] * |reference_i| + ATOL[d] * scale,
    scale = max(1, max |reference|),

and NaN and infinities sit exactly where the reference has them. RTOL is per element: it covers
rounding each element to the result's dtype (float16 has 11 significant bits: 2^-11 = 4.9e-4
of the value); ATOL covers the accumulation of many products, whose rounding errors scale with
the magnitude of the terms (the tensor's scale), not with the element, which may cancel to 0.
float16 is accumulated in float32, so it shares float32's ATOL. Results that move values
(padding, max pooling and its indices) must be exact. "tf32" is float32 data convolved with
precision="tf32": the tensor cores round the inputs to 10-bit mantissas (2^-11 = 4.9e-4 of each
factor), so both terms are float16-like.
"""
from __future__ import annotations

import numpy as np

RTOL = {"float16": 1e-3, "float32": 2e-7, "float64": 1e-15, "tf32": 1e-3}
ATOL = {"float16": 1e-5, "float32": 1e-5, "float64": 1e-12, "tf32": 2e-3}


def error_ratio(result, reference: np.ndarray, dtype) -> float:
    """max over elements of |result - reference| / allowed (agreement: <= 1); inf when the shapes,
    the NaN pattern or the infinities differ, or a value is not finite where the reference is."""
    result = np.asarray(result, dtype=np.float64)
    name = dtype if dtype == "tf32" else np.dtype(dtype).name
    if result.shape != reference.shape:
        return float("inf")
    special = ~np.isfinite(reference)
    if not np.array_equal(result[special], reference[special], equal_nan=True):
        return float("inf")
    finite = ~special
    if not finite.any():
        return 0.0
    got, expected = result[finite], reference[finite]
    if not np.isfinite(got).all():
        return float("inf")
    allowed = RTOL[name] * np.abs(expected) + ATOL[name] * max(1.0, float(np.abs(expected).max()))
    return float((np.abs(got - expected) / allowed).max())


def describe() -> str:
    """The rule in one line, for reports."""
    return ("|result - reference| <= RTOL * |reference| + ATOL * max(1, max |reference|) per element "
            f"(RTOL {RTOL}, ATOL {ATOL}); NaN/inf where the reference has them")
