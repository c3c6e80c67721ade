"""The program `make gpu-check` runs under compute-sanitizer (memcheck, racecheck, initcheck,
synccheck): every kernel family of the CUDA backend launched on small shapes, in every dtype, with
CuPy's memory pool off (an overrun then hits unallocated memory instead of pool slack).

What is launched comes from the code, so that new kernels are reached without editing this file:
every conv algorithm the backend offers for each shape, dtype and precision (applicable_algorithms), each under the
forced settings (tests/cuda_variants.py) that reach its instantiations (GEMM tilings, 64-bit
indices, the unstaged direct path), the variants of tests/cuda_variants.py (the > 48 KB direct
path among them), pooling and padding in every mode, and the gradient methods of the backend
interface (gpuconv/backends/__init__.py) where the backend has them. At the end it prints which
kernel instantiations of gpuconv._kernels.KERNEL_SOURCES were launched and which were not;
`GPUCHECK-DRIVER <json>` is what the summary reads.

--backend cuda-emu runs the same launches in the emulator (the dry run, and CI's test of this file).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import gpuconv  # noqa: E402
from gpuconv import _geometry, _kernels  # noqa: E402
from gpuconv._precision import PRECISIONS  # noqa: E402
from gpuconv.backends import get_backend  # noqa: E402

from cuda_variants import CONV_VARIANTS, forced, recorded_launches  # noqa: E402

MARKER = "GPUCHECK-DRIVER"
DTYPES = ("float16", "float32", "float64")
# (x shape, w shape, conv2d keyword arguments): bias, stride, dilation, groups, padding modes.
CONV_SHAPES = (
    ((2, 3, 9, 11), (5, 3, 3, 3), dict(padding=1)),
    ((1, 4, 10, 9), (6, 2, 3, 2), dict(stride=2, dilation=(2, 1), groups=2, padding=2, padding_mode="reflect")),
    ((2, 6, 7, 7), (6, 1, 3, 3), dict(groups=6, padding=(1, 2), padding_mode="circular")),
    ((1, 8, 6, 7), (70, 8, 1, 1), dict(padding=1, padding_mode="replicate")),
)
POOL_SHAPE = (2, 3, 11, 13)
PAD_MODES = ("constant", "reflect", "replicate", "circular")
GRAD_METHODS = ("conv2d_input", "conv2d_weight", "max_pool2d_input", "avg_pool2d_input", "pad2d_input")


def forcings(algorithm: str, dtype, gemm: str = "forward") -> list[dict]:
    """The forced(...) settings that reach every instantiation an algorithm has: each tiling of the
    `gemm` ("forward", "input", "weight") GEMM in this dtype with one and with 3 K splits (the split-K
    reduction), the direct kernel's unstaged path, each with 32- and 64-bit indices."""
    if algorithm == "implicit_gemm":
        tilings = _kernels.gemm_tilings(gemm, _kernels.ELEMENT_TYPES[np.dtype(dtype).name])
        return [dict(tiling=tiling, splits=splits, index64=index64)
                for tiling in tilings for splits in (1, 3) for index64 in (False, True)]
    if algorithm == "direct":
        return [dict(unstaged=unstaged, splits=splits, index64=index64)
                for unstaged in (False, True) for splits in (1, 3) for index64 in (False, True)]
    return [dict(index64=index64) for index64 in (False, True)]


def _arrays(backend: str, rng, *shapes, dtype):
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    if backend == "cuda":
        import cupy

        return [cupy.asarray(a) for a in arrays]
    return arrays


def forward(backend: str, dtype, rng, emulated: bool) -> None:
    implementation = get_backend(backend)
    for x_shape, w_shape, kwargs in CONV_SHAPES:
        x, w, b = _arrays(backend, rng, x_shape, w_shape, w_shape[:1], dtype=dtype)
        spec = _geometry.conv_spec(x_shape, w_shape, kwargs.get("stride", 1), kwargs.get("padding", 0),
                                   kwargs.get("dilation", 1), kwargs.get("groups", 1),
                                   kwargs.get("padding_mode", "zeros"))
        for precision in PRECISIONS if np.dtype(dtype) == np.float32 else ("highest",):
            for algorithm in implementation.applicable_algorithms(spec, np.dtype(dtype), precision)[1:]:
                call = dict(kwargs, algorithm=algorithm, precision=precision, backend=backend)
                gpuconv.conv2d(x, w, None, **call)
                for force in forcings(algorithm, dtype):
                    with forced(**force):
                        gpuconv.conv2d(x, w, b, **call)
    for variant in CONV_VARIANTS:
        if np.dtype(dtype).name in variant.dtypes and (variant.emulated or not emulated):
            x, w = _arrays(backend, rng, variant.x_shape, variant.w_shape, dtype=dtype)
            with forced(**variant.force):
                gpuconv.conv2d(x, w, **variant.kwargs, backend=backend)
    (x,) = _arrays(backend, rng, POOL_SHAPE, dtype=dtype)
    for index64 in (False, True):
        with forced(index64=index64):
            gpuconv.max_pool2d(x, 3, 2, 1, dilation=2, ceil_mode=True, return_indices=True, backend=backend)
            gpuconv.max_pool2d(x, 2, backend=backend)
            gpuconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False, backend=backend)
            gpuconv.avg_pool2d(x, (2, 3), divisor_override=5, backend=backend)
            for mode in PAD_MODES:
                gpuconv.pad2d(x, ((2, 1), (0, 3)), mode, 1.5 if mode == "constant" else 0.0, backend=backend)


def gradients(backend: str, dtype, rng) -> list[str]:
    """The gradient methods of the backend interface (gpuconv/backends/__init__.py) this backend has,
    each called (forward specs); returns their names."""
    implementation = get_backend(backend)
    have = [name for name in GRAD_METHODS if hasattr(implementation, name)]
    if not have:
        return have
    x, w = _arrays(backend, rng, (2, 4, 9, 10), (6, 2, 3, 3), dtype=dtype)
    spec = _geometry.conv_spec((2, 4, 9, 10), (6, 2, 3, 3), (1, 2), 1, 1, 2, "zeros")
    (grad_out,) = _arrays(backend, rng, spec.out_shape, dtype=dtype)
    pool = _geometry.pool_spec(POOL_SHAPE, 3, 2, 1, 1, True)
    (px,) = _arrays(backend, rng, POOL_SHAPE, dtype=dtype)
    (pool_grad,) = _arrays(backend, rng, pool.out_shape, dtype=dtype)
    _, indices = gpuconv.max_pool2d(px, 3, 2, 1, ceil_mode=True, return_indices=True, backend=backend)
    unit = _geometry.conv_spec((2, 4, 9, 10), (6, 2, 3, 3), 1, 1, 1, 2, "zeros")  # stride 1: the direct dx too
    (unit_grad,) = _arrays(backend, rng, unit.out_shape, dtype=dtype)
    for which, gemm, method in (("input", "input", "conv2d_input"), ("weight", "weight", "conv2d_weight")):
        if method not in have:
            continue
        for conv, go in ((spec, grad_out), (unit, unit_grad)):
            applicable = getattr(implementation, f"applicable_{which}_grad_algorithms", lambda s: ("auto",))(conv)
            for algorithm in applicable:
                for force in forcings(algorithm, dtype, gemm):
                    with forced(**force):
                        if which == "input":
                            implementation.conv2d_input(go, w, conv, algorithm)
                        else:
                            implementation.conv2d_weight(x, go, conv, algorithm)
    for index64 in (False, True):
        with forced(index64=index64):
            if "max_pool2d_input" in have:
                implementation.max_pool2d_input(pool_grad, px, indices, pool)
                implementation.max_pool2d_input(pool_grad, px, None, pool)
            if "avg_pool2d_input" in have:
                implementation.avg_pool2d_input(pool_grad, pool)
            if "pad2d_input" in have:
                for mode in PAD_MODES:
                    pad = _geometry.pad_spec(POOL_SHAPE, ((2, 1), (0, 3)), mode, 0.0)
                    (pad_grad,) = _arrays(backend, rng, pad.out_shape, dtype=dtype)
                    implementation.pad2d_input(pad_grad, pad)
    return have


def coverage(launched: set[str]) -> dict:
    """Kernel instantiations (and families: the template names) launched and not launched."""
    every = {name for names in _kernels.KERNEL_SOURCES.values() for name in names}
    families = {name.split("<")[0] for name in every}
    reached = {name.split("<")[0] for name in launched}
    return {"kernels": len(every), "launched": len(every & launched), "not_launched": sorted(every - launched),
            "families": sorted(families), "families_not_launched": sorted(families - reached)}


def run(backend: str) -> dict:
    if backend == "cuda":
        import cupy

        cupy.cuda.set_allocator(None)  # every array its own cudaMalloc: an overrun leaves the allocation
        cupy.cuda.set_pinned_memory_allocator(None)
    rng = np.random.default_rng(0)
    grads = []
    with recorded_launches() as log:
        for dtype in DTYPES:
            forward(backend, dtype, rng, emulated=backend == "cuda-emu")
            grads = gradients(backend, dtype, rng)
        if backend == "cuda":
            import cupy

            cupy.cuda.Device().synchronize()
    report = coverage({name for _, name, *_ in log})
    report.update(backend=backend, launches=len(log), gradient_methods=grads)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("cuda", "cuda-emu"), default="cuda")
    args = parser.parse_args(argv)
    report = run(args.backend)
    print(f"{report['launches']} launches on {args.backend}: {report['launched']} of {report['kernels']} kernel "
          f"instantiations; families not launched: {', '.join(report['families_not_launched']) or 'none'}")
    for name in report["not_launched"]:
        print(f"  not launched: {name}")
    print(f"{MARKER} {json.dumps(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
