"""`python -m gpuconv check`: what a user runs after installing on a new machine.

1. Compile every kernel instantiation (gpuconv._compile) for each target architecture and print
   the resource table. An architecture no NVRTC here can target, or no NVRTC or CUDA headers at
   all, is skipped with what to install; a compile error, spill, stack frame or warning fails.
2. Run a parity suite on every available backend (a real GPU, the emulator, NumPy): each op and
   its gradients, each dtype, each conv algorithm, on random data from a printed seed, against the float64
   oracle (gpuconv._reference), with the tests' error metric and tolerances (gpuconv._tolerance).
   One line per op/dtype/backend as it completes; backends that cannot run here are listed with
   the reason.
Exit status 1 on any failure, 0 otherwise (skips included, and listed at the end).
"""
from __future__ import annotations

import random
import time

import numpy as np

import gpuconv
from . import _geometry as geometry
from . import _reference as ref
from ._tolerance import describe, error_ratio
from .backends import _MODULES, available_backends, get_backend, unavailable_reasons

# "tf32": float32 data with precision="tf32" (convolutions only): inputs rounded to 10-bit mantissas.
DTYPES = ("float16", "float32", "float64", "tf32")

# (x shape, w shape, conv2d keyword arguments): stride, dilation, groups, every padding mode,
# sizes that cross the direct kernel's 16x32 tile and the GEMM kernel's 64-wide tiles.
CONV_CASES = (
    ((2, 3, 17, 33), (5, 3, 3, 3), dict(padding=1)),
    ((1, 4, 12, 10), (6, 2, 3, 2), dict(stride=2, dilation=(2, 1), groups=2, padding=2, padding_mode="reflect")),
    ((2, 6, 9, 9), (6, 1, 3, 3), dict(groups=6, padding=(1, 2), padding_mode="circular")),
    ((1, 8, 7, 11), (70, 8, 1, 1), dict(padding=1, padding_mode="replicate")),
)
POOL_CASES = (
    ((2, 3, 13, 17), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 10, 9), dict(kernel_size=(2, 3), stride=(3, 2), padding=(1, 1), ceil_mode=True)),
)
PAD_CASES = (((2, 3, 7, 9), (2, 3)), ((1, 2, 5, 4), ((4, 1), (0, 3))))
PAD_MODES = ("constant", "reflect", "replicate", "circular")


def add_arguments(parser) -> None:
    parser.add_argument("--backend", action="append", dest="backends", choices=tuple(_MODULES),
                        help="check only this backend (repeatable); default: every available one")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile report")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the random test data (default: a fresh one, printed; the same seed replays "
                             "a run)")


# ---- parity -------------------------------------------------------------------------------------
def _cases(backend, dtype, rng):
    """Yield (label, callable returning the result, float64 expected) for every op and algorithm.
    Labels of ops that move values (max pooling, its indices, padding) must match exactly."""
    precision, dtype = ("tf32", "float32") if dtype == "tf32" else ("highest", dtype)
    for xs, ws, kwargs in CONV_CASES:
        x, w, bias = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1]))
        args = [a.astype(np.float64) for a in (x, w, bias)]
        expected = ref.conv2d(*args, **kwargs)
        spec = geometry.conv_spec(xs, ws, kwargs.get("stride", 1), kwargs.get("padding", 0), kwargs.get("dilation", 1),
                                  kwargs.get("groups", 1), kwargs.get("padding_mode", "zeros"))
        for algorithm in backend.applicable_algorithms(spec, dtype, precision):
            yield (f"conv2d[{algorithm}]", lambda a=algorithm, x=x, w=w, b=bias, k=kwargs:
                   gpuconv.conv2d(x, w, b, **k, algorithm=a, precision=precision, backend=backend.name), expected)
    if precision == "tf32":
        return
    for xs, kwargs in POOL_CASES:
        x = rng.standard_normal(xs).astype(dtype)
        x[rng.random(xs) < 0.05] = np.nan  # max pooling propagates NaN, and its index is the last NaN's
        values, indices = ref.max_pool2d(x.astype(np.float64), **kwargs)
        yield ("max_pool2d", lambda x=x, k=kwargs: gpuconv.max_pool2d(x, **k, backend=backend.name), values)
        yield ("max_pool2d[indices]", lambda x=x, k=kwargs: gpuconv.max_pool2d(x, **k, return_indices=True,
                                                                                 backend=backend.name)[1], indices)
        yield ("avg_pool2d", lambda x=x, k=kwargs: gpuconv.avg_pool2d(x, **k, backend=backend.name),
               ref.avg_pool2d(x.astype(np.float64), **kwargs))
    for xs, padding in PAD_CASES:
        x = rng.standard_normal(xs).astype(dtype)
        for mode in PAD_MODES:
            value = 1.5 if mode == "constant" else 0.0
            yield (f"pad2d[{mode}]", lambda x=x, p=padding, m=mode, v=value:
                   gpuconv.pad2d(x, p, m, v, backend=backend.name),
                   ref.pad2d(x.astype(np.float64), ref.explicit_pads(padding), mode, value))
    yield from _gradient_cases(backend, dtype, rng)


def _gradient_cases(backend, dtype, rng):
    """The gradients (gpuconv.grad, "auto" algorithm) and conv_transpose2d of the forward cases."""
    grad, name = gpuconv.grad, backend.name
    for xs, ws, kwargs in CONV_CASES:
        x, w = (rng.standard_normal(s).astype(dtype) for s in (xs, ws))
        g = rng.standard_normal(ref.conv2d(x.astype(np.float64), w.astype(np.float64), **kwargs).shape).astype(dtype)
        x64, w64, g64 = (a.astype(np.float64) for a in (x, w, g))
        yield ("grad.conv2d_input", lambda w=w, g=g, k=kwargs, s=xs: grad.conv2d_input(s, w, g, **k, backend=name),
               ref.conv2d_input(xs, w64, g64, **kwargs))
        yield ("grad.conv2d_weight", lambda x=x, g=g, k=kwargs, s=ws: grad.conv2d_weight(x, s, g, **k, backend=name),
               ref.conv2d_weight(x64, ws, g64, **kwargs))
        if kwargs.get("padding_mode", "zeros") == "zeros":  # conv_transpose2d has no padding modes
            t = {k: v for k, v in kwargs.items() if k != "padding_mode"}
            yield ("conv_transpose2d", lambda w=w, g=g, t=t: gpuconv.conv_transpose2d(g, w, **t, backend=name),
                   ref.conv_transpose2d(g64, w64, **t))
    for xs, kwargs in POOL_CASES:
        x = rng.standard_normal(xs).astype(dtype)
        g = rng.standard_normal(ref.avg_pool2d(x.astype(np.float64), **kwargs).shape).astype(dtype)
        x64, g64 = x.astype(np.float64), g.astype(np.float64)
        yield ("grad.max_pool2d_input", lambda x=x, g=g, k=kwargs: grad.max_pool2d_input(g, x, **k, backend=name),
               ref.max_pool2d_input(g64, x64, **kwargs))
        yield ("grad.avg_pool2d_input", lambda g=g, k=kwargs, s=xs: grad.avg_pool2d_input(g, s, **k, backend=name),
               ref.avg_pool2d_input(g64, xs, **kwargs))
    for xs, padding in PAD_CASES:
        out_shape = ref.pad2d(np.zeros(xs), ref.explicit_pads(padding), "constant").shape
        g = rng.standard_normal(out_shape).astype(dtype)
        for mode in PAD_MODES:
            yield (f"grad.pad2d_input[{mode}]", lambda g=g, p=padding, m=mode: grad.pad2d_input(g, p, m, backend=name),
                   ref.pad2d_input(g.astype(np.float64), padding, mode))


EXACT = ("max_pool2d", "pad2d")


def _error(label, result, expected, dtype) -> float:
    """Exact ops: the number of elements that differ (NaN equals NaN); others: the tests' error
    ratio (<= 1 agrees)."""
    result = np.asarray(result.get() if hasattr(result, "get") else result)
    if not label.startswith(EXACT):
        return error_ratio(result, expected, dtype)
    if result.shape != expected.shape:
        return float("inf")
    same = (result == expected) | (np.isnan(result) & np.isnan(expected) if expected.dtype.kind == "f" else False)
    return float(np.count_nonzero(~same))


def check_backend(name: str, rng) -> bool:
    backend = get_backend(name)
    ok = True
    for dtype in DTYPES:
        by_label: dict[str, list] = {}
        for label, compute, expected in _cases(backend, dtype, rng):
            by_label.setdefault(label, []).append((compute, expected))
        for label, runs in by_label.items():
            worst, failure = 0.0, ""
            for compute, expected in runs:
                try:
                    worst = max(worst, _error(label, compute(), expected, dtype))
                except Exception as exc:  # report and go on: the user wants the whole picture
                    worst, failure = float("inf"), f"  {type(exc).__name__}: {exc}"
            passed = worst <= (0.0 if label.startswith(EXACT) else 1.0)
            ok &= passed
            print(f"  {label:<28} {dtype:<8} {name:<9} error {worst:9.2e}  {'ok' if passed else 'FAIL'}{failure}",
                  flush=True)
    return ok


# ---- compile report -------------------------------------------------------------------------------
# NVRTC 12 notes that sm_70 is deprecated on every compile for it: a toolchain notice, not a finding.
TOOLCHAIN_NOTICES = ("Architectures prior to",)


def kernel_warnings(record) -> tuple[str, ...]:
    return tuple(w for w in record.warnings if not any(n in w for n in TOOLCHAIN_NOTICES))


def is_clean(record) -> bool:
    """No spills, no stack frame (local memory) and no compiler warning about our code."""
    return not (record.spill_bytes or record.stack_frame_bytes or kernel_warnings(record))


EMULATOR_EXTRA = "pip install 'gpuconv[emulator]'"


def compile_check(skipped: list[str]) -> bool:
    """The compile report, architecture by architecture; what cannot be compiled here is appended
    to `skipped` (with how to enable it) rather than failed."""
    from . import _compile, _kernels

    reason = None
    if _kernels.CUDA_INCLUDE_DIR is None:
        reason = f"CUDA's headers (cuda_fp16.h) not found ({EMULATOR_EXTRA}, or set CUDA_PATH)"
    elif not _compile._nvrtc_libraries():
        reason = f"no NVRTC library found ({EMULATOR_EXTRA} installs NVRTC 13 and 12)"
    if reason:
        skipped.append(f"compile report: {reason}")
        print(f"compile report: skipped: {reason}")
        return True
    records = []
    for arch in _compile.DEFAULT_ARCHS:
        try:
            nvrtc = _compile.nvrtc_for(arch)
        except _compile.CompileCheckError as exc:
            skipped.append(f"compile report for {arch}: {exc}")
            print(f"compile report: {arch} skipped: {exc}", flush=True)
            continue
        files = len(_kernels.KERNEL_SOURCES)
        print(f"compile report: {arch}: compiling {files} files with NVRTC {nvrtc.version} ...", flush=True)
        try:
            records += _compile.compile_report(archs=(arch,))
        except _compile.CompileCheckError as exc:
            print(f"compile report: FAILED\n{exc}")
            return False
    if not records:
        return True
    print(f"{'file':<22} {'kernel':<56} {'arch':<6} {'regs':>4} {'smem':>6} {'spill':>5} {'stack':>5}  "
          f"compiler     warnings")
    ok = True
    for r in records:
        warnings = kernel_warnings(r)
        bad = not is_clean(r)
        ok &= not bad
        print(f"{r.file:<22} {r.name_expression:<56} {r.arch:<6} {r.registers:>4} {r.static_shared_bytes:>6} "
              f"{r.spill_bytes:>5} {r.stack_frame_bytes:>5}  {r.compiler:<12} {'; '.join(warnings) or '-'}"
              f"{'  FAIL' if bad else ''}")
    return ok


def run(args) -> int:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"gpuconv {gpuconv.__version__} check, seed {seed} (python -m gpuconv check --seed {seed} replays the "
          f"same data)", flush=True)
    skipped: list[str] = []
    ok = True if args.no_compile else compile_check(skipped)
    names = args.backends or available_backends()
    if not args.backends:
        skipped += [f"backend {name}: {reason}" for name, reason in unavailable_reasons().items()]
    rng = np.random.default_rng(seed)
    print(f"parity against the float64 reference: error = max over elements of |result - reference| / allowed, "
          f"<= 1 agrees ({describe()}); max pooling, its indices and padding: the number of elements that "
          f"differ", flush=True)
    for i, name in enumerate(names, start=1):
        print(f"[{i}/{len(names)}] backend {name}", flush=True)
        started = time.perf_counter()
        ok &= check_backend(name, rng)
        print(f"  ({name}: {time.perf_counter() - started:.1f} s)", flush=True)
    for line in skipped:
        print(f"skipped: {line}")
    print(("check passed" if ok else "check FAILED") + (f" ({len(skipped)} skipped, listed above)" if skipped else ""))
    return 0 if ok else 1
