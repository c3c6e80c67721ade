"""`python -m gpuconv check`: what a user runs after installing on a new machine.

1. Compile every kernel instantiation (gpuconv._compile) and print the resource table.
2. Run a parity suite on every available backend (a real GPU, the emulator, NumPy): each op,
   each dtype, each conv algorithm, against a float64 reference written here from the
   definitions; one line per op/dtype/backend with the max error relative to the result's scale.
Exit status 1 on any failure (compile error, spill, stack frame, warning, or an error above tolerance).
"""
from __future__ import annotations

import time

import numpy as np

import gpuconv
from .backends import available_backends, get_backend

# "tf32": float32 data with precision="tf32" (convolutions only): inputs rounded to 10-bit mantissas.
TOLERANCE = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-12, "tf32": 2e-3}
DTYPES = ("float16", "float32", "float64", "tf32")
NP_PAD_MODES = {"zeros": "constant", "constant": "constant", "reflect": "reflect", "replicate": "edge",
                "circular": "wrap"}

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


def add_arguments(parser) -> None:
    parser.add_argument("--backend", action="append", dest="backends",
                        help="check only this backend (repeatable); default: every available one")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile report")


# ---- float64 references, from the definitions -------------------------------------------------
def _padded(x, pads, mode, value=0.0):
    t, b, l, r = pads
    mode = NP_PAD_MODES.get(mode, mode)
    extra = {"constant_values": value} if mode == "constant" else {}
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), mode=mode, **extra)


def _windows(xp, k, stride, dilation, out_hw):
    """Yield (a, b, xp[..., tap rows, tap cols]) for every kernel tap."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = k, stride, dilation, out_hw
    for a in range(kh):
        for b in range(kw):
            yield a, b, xp[:, :, a * dh:a * dh + (oh - 1) * sh + 1:sh, b * dw:b * dw + (ow - 1) * sw + 1:sw]


def reference_conv2d(x, w, bias, spec):
    xp = _padded(x.astype(np.float64), spec.pads, spec.padding_mode)
    g, fg, cg = spec.groups, spec.f // spec.groups, spec.c // spec.groups
    out = np.zeros(spec.out_shape)
    for a, b, tap in _windows(xp, (spec.kh, spec.kw), spec.stride, spec.dilation, (spec.oh, spec.ow)):
        for gi in range(g):
            out[:, gi * fg:(gi + 1) * fg] += np.einsum("nchw,fc->nfhw", tap[:, gi * cg:(gi + 1) * cg],
                                                       w[gi * fg:(gi + 1) * fg, :, a, b].astype(np.float64))
    return out + bias.astype(np.float64)[None, :, None, None]


def _pool_taps(xp, spec, fill):
    """Every tap's view of xp (the input already padded by spec.pads), extended by `fill` for
    ceil_mode's last windows, which may reach past the bottom/right padding."""
    extra_h = (spec.oh - 1) * spec.stride[0] + (spec.kh - 1) * spec.dilation[0] + 1 - xp.shape[2]
    extra_w = (spec.ow - 1) * spec.stride[1] + (spec.kw - 1) * spec.dilation[1] + 1 - xp.shape[3]
    xp = np.pad(xp, ((0, 0), (0, 0), (0, max(extra_h, 0)), (0, max(extra_w, 0))), constant_values=fill)
    return _windows(xp, (spec.kh, spec.kw), spec.stride, spec.dilation, (spec.oh, spec.ow))


def reference_max_pool2d(x, spec):
    """(values, int64 flat indices), PyTorch's rule: taps row-major, a tap replaces the running max
    when strictly greater or NaN, the index starts at the first in-bounds tap (-1 if none)."""
    xp = _padded(x.astype(np.float64), spec.pads, "constant", -np.inf)
    positions = np.arange(spec.h * spec.w, dtype=np.int64).reshape(1, 1, spec.h, spec.w)
    positions = _padded(positions, spec.pads, "constant", -1)
    best = np.full(spec.out_shape, -np.inf)
    index = np.full(spec.out_shape, -1, dtype=np.int64)
    for (_, _, tap), (_, _, pos) in zip(_pool_taps(xp, spec, -np.inf), _pool_taps(positions, spec, -1)):
        inside = pos >= 0
        index = np.where(inside & (index < 0), pos, index)
        better = inside & ((tap > best) | np.isnan(tap))
        best, index = np.where(better, tap, best), np.where(better, pos, index)
    return best, index


def reference_avg_pool2d(x, spec):
    """Sum of the taps over the number of taps inside the input, or inside input + padding when
    count_include_pad (PyTorch's rule; ceil_mode's overhang never counts)."""
    total = sum(tap for _, _, tap in _pool_taps(_padded(x.astype(np.float64), spec.pads, "constant"), spec, 0.0))
    ones = _padded(np.ones((1, 1, spec.h, spec.w)), spec.pads, "constant", float(spec.count_include_pad))
    count = sum(tap for _, _, tap in _pool_taps(ones, spec, 0.0))
    return total / (spec.divisor_override or count)


def reference_pad2d(x, spec):
    return _padded(x.astype(np.float64), spec.pads, spec.mode, spec.value)


# ---- the run -----------------------------------------------------------------------------------
def _error(got, expected) -> float:
    """Max error relative to the scale of expected; for integer results (indices), the number of
    mismatches. NaN and infinities must sit where the reference has them."""
    got = np.asarray(got.get() if hasattr(got, "get") else got)
    if got.shape != expected.shape:
        return float("inf")
    if expected.dtype.kind == "i":
        return float(np.count_nonzero(got != expected))
    got = got.astype(np.float64)
    special = ~np.isfinite(expected)
    if not np.array_equal(got[special], expected[special], equal_nan=True):
        return float("inf")
    finite = ~special
    if not finite.any():
        return 0.0
    scale = max(1.0, float(np.abs(expected[finite]).max()))
    return float(np.abs(got[finite] - expected[finite]).max()) / scale


def _cases(backend, dtype, rng):
    """Yield (label, callable returning the result, float64 expected)."""
    from . import _geometry as geometry

    precision, dtype = ("tf32", "float32") if dtype == "tf32" else ("highest", dtype)
    for xs, ws, kwargs in CONV_CASES:
        x, w, bias = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1]))
        spec = geometry.conv_spec(xs, ws, kwargs.get("stride", 1), kwargs.get("padding", 0), kwargs.get("dilation", 1),
                                  kwargs.get("groups", 1), kwargs.get("padding_mode", "zeros"))
        expected = reference_conv2d(x, w, bias, spec)
        for algorithm in backend.applicable_algorithms(spec, dtype, precision):
            yield (f"conv2d[{algorithm}]", lambda a=algorithm, x=x, w=w, b=bias, k=kwargs:
                   gpuconv.conv2d(x, w, b, **k, algorithm=a, precision=precision, backend=backend.name), expected)
    if precision == "tf32":
        return
    for xs, kwargs in POOL_CASES:
        x = rng.standard_normal(xs).astype(dtype)
        x[rng.random(xs) < 0.05] = np.nan  # max pooling propagates NaN, and its index is the last NaN's
        spec = geometry.pool_spec(xs, kwargs["kernel_size"], kwargs.get("stride"), kwargs.get("padding", 0), 1,
                                  kwargs.get("ceil_mode", False))
        values, indices = reference_max_pool2d(x, spec)
        yield ("max_pool2d", lambda x=x, k=kwargs: gpuconv.max_pool2d(x, **k, backend=backend.name), values)
        yield ("max_pool2d[indices]", lambda x=x, k=kwargs: gpuconv.max_pool2d(x, **k, return_indices=True,
                                                                                 backend=backend.name)[1], indices)
        yield ("avg_pool2d", lambda x=x, k=kwargs: gpuconv.avg_pool2d(x, **k, backend=backend.name),
               reference_avg_pool2d(x, spec))
    for xs, padding in PAD_CASES:
        x = rng.standard_normal(xs).astype(dtype)
        for mode in ("constant", "reflect", "replicate", "circular"):
            value = 1.5 if mode == "constant" else 0.0
            spec = geometry.pad_spec(xs, padding, mode, value)
            yield (f"pad2d[{mode}]", lambda x=x, p=padding, m=mode, v=value:
                   gpuconv.pad2d(x, p, m, v, backend=backend.name), reference_pad2d(x, spec))


def check_backend(name: str, rng) -> bool:
    backend = get_backend(name)
    ok = True
    for dtype in DTYPES:
        worst: dict[str, float] = {}
        for label, compute, expected in _cases(backend, dtype, rng):
            try:
                err = _error(compute(), expected)
            except Exception as exc:  # report and go on: the user wants the whole picture
                print(f"  {label:<24} {dtype:<8} {name:<9} ERROR {type(exc).__name__}: {exc}")
                err = float("inf")
            worst[label] = max(worst.get(label, 0.0), err)
        for label, err in worst.items():
            passed = err <= TOLERANCE[dtype]
            ok &= passed
            print(f"  {label:<24} {dtype:<8} {name:<9} error {err:9.2e}  {'ok' if passed else 'FAIL'}")
    return ok


# NVRTC 12 notes that sm_70 is deprecated on every compile for it: a toolchain notice, not a finding.
TOOLCHAIN_NOTICES = ("Architectures prior to",)


def kernel_warnings(record) -> tuple[str, ...]:
    return tuple(w for w in record.warnings if not any(n in w for n in TOOLCHAIN_NOTICES))


def is_clean(record) -> bool:
    """No spills, no stack frame (local memory) and no compiler warning about our code."""
    return not (record.spill_bytes or record.stack_frame_bytes or kernel_warnings(record))


def compile_check() -> bool:
    try:
        from ._compile import CompileCheckError, compile_report
    except ImportError as exc:
        print(f"compile report: not available ({exc})")
        return True
    try:
        records = compile_report()
    except CompileCheckError as exc:
        print(f"compile report: FAILED\n{exc}")
        return False
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
    ok = True if args.no_compile else compile_check()
    names = args.backends or available_backends()
    rng = np.random.default_rng(int(time.time()))
    print(f"parity against a float64 reference: error = max |result - reference| / max(1, max |reference|) "
          f"(tolerance {TOLERANCE}); for indices, the number of mismatches")
    for name in names:
        started = time.perf_counter()
        ok &= check_backend(name, rng)
        print(f"  ({name}: {time.perf_counter() - started:.1f} s)")
    print("check passed" if ok else "check FAILED")
    return 0 if ok else 1
