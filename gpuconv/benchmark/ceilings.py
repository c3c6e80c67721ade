"""Ceilings measured in the same run, with the same method as the cases:
- CPU: NumPy matmul of two n x n matrices (per dtype), GFLOP/s, with NumPy's own BLAS threads;
- GPU: cuBLAS GEMM (cupy.matmul) of a conv's implicit-GEMM shape, M = F, N = N*OH*OW,
  K = C/groups*KH*KW, whose FLOPs equal the conv's, in the case's array dtype (a tf32 case's ceiling
  is the float32 GEMM CuPy runs by default, TF32 off, so its share can exceed 100 %); and a
  device-to-device copy, GB/s counting bytes read and written (as pooling's GB/s do).
"""
from __future__ import annotations

import numpy as np

from .figures import rate, summarise
from .timing import cupy_event_clock, host_clock, measure


def _timed(clock, call, method) -> dict:
    samples = measure({"ceiling": (clock, call)}, **method)["ceiling"]
    return {**summarise(samples), "rounds_s": samples}


def cpu_matmul(dtype: str, n: int, method: dict) -> dict:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    out = np.empty((n, n), dtype=dtype)
    figures = _timed(host_clock, lambda: np.matmul(a, b, out=out), method)
    return {"what": f"numpy matmul {n}x{n}x{n} {dtype}", "unit": "GFLOP/s",
            "rate": rate(2 * n ** 3, figures["time_s"]), **figures}


def implicit_gemm_shape(spec) -> tuple[int, int, int]:
    """(M, N, K) of the GEMM a conv amounts to: M = F, N = N*OH*OW, K = C/groups*KH*KW."""
    return spec.f, spec.n * spec.out_pixels, spec.reduction


def gpu_gemm(spec, dtype: str, method: dict) -> dict:
    import cupy

    m, n, k = implicit_gemm_shape(spec)
    a = cupy.random.standard_normal((m, k), dtype=np.float64).astype(dtype)
    b = cupy.random.standard_normal((k, n), dtype=np.float64).astype(dtype)
    out = cupy.empty((m, n), dtype=dtype)
    figures = _timed(cupy_event_clock(), lambda: cupy.matmul(a, b, out=out), method)
    return {"what": f"cuBLAS GEMM M={m} N={n} K={k} {dtype}", "unit": "GFLOP/s",
            "rate": rate(2 * m * n * k, figures["time_s"]), **figures}


def gpu_copy(nbytes: int, method: dict) -> dict:
    import cupy

    src = cupy.ones(nbytes, dtype=cupy.uint8)
    dst = cupy.empty_like(src)
    figures = _timed(cupy_event_clock(), lambda: cupy.copyto(dst, src), method)
    return {"what": f"device-to-device copy of {nbytes >> 20} MiB", "unit": "GB/s",
            "rate": rate(2 * nbytes, figures["time_s"]), **figures}
