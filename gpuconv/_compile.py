"""Compile checks of the CUDA sources without a GPU: every kernel instantiation, compiled with
NVRTC (what CuPy uses at run time) for each target architecture with the CUDA backend's own
options, and ptxas' resource report per kernel: registers, static shared memory, spills.

NVRTC 13 no longer targets sm_70 (Volta); for an architecture the newest NVRTC does not support,
an older one found on the system is used (pip wheel nvidia-cuda-nvrtc-cu12 for sm_70).
nvcc_report() compiles the same instantiations with nvcc where it is on the PATH.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ARCHS = ("sm_70", "sm_80", "sm_90")


@dataclass(frozen=True)
class KernelReport:
    file: str
    name_expression: str
    arch: str
    registers: int
    static_shared_bytes: int
    spill_bytes: int            # spill stores + spill loads
    stack_frame_bytes: int
    warnings: tuple[str, ...]   # compiler warnings of the file's compilation for this arch
    compiler: str               # e.g. "nvrtc 13.5" or "nvcc 13.0"


class CompileCheckError(RuntimeError):
    """A source did not compile (the message holds the compiler log), or no compiler is available."""


# ---------------------------------------------------------------- NVRTC through its C API
def _nvrtc_candidates() -> list[str]:
    """libnvrtc shared libraries, newest major version first: pip wheels, then toolkits."""
    dirs = []
    for site in sys.path:
        dirs += glob.glob(os.path.join(site, "nvidia", "cu1*", "lib")) + glob.glob(
            os.path.join(site, "nvidia", "cuda_nvrtc", "lib"))
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            dirs.append(os.path.join(os.environ[var], "lib64"))
    dirs.append("/usr/local/cuda/lib64")
    libs = {os.path.realpath(p) for d in dirs for p in glob.glob(os.path.join(d, "libnvrtc.so.*"))
            if re.search(r"libnvrtc\.so\.\d+$", p)}
    return sorted(libs, key=lambda p: -int(re.search(r"\.so\.(\d+)", p).group(1)))


class _Nvrtc:
    def __init__(self, path: str):
        self.path = path
        self.lib = lib = ctypes.CDLL(path)
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        self.version = f"{major.value}.{minor.value}"
        count = ctypes.c_int()
        lib.nvrtcGetNumSupportedArchs(ctypes.byref(count))
        archs = (ctypes.c_int * count.value)()
        lib.nvrtcGetSupportedArchs(archs)
        self.archs = {f"sm_{a}" for a in archs}
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_char_p,
                                           ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        for name in ("nvrtcAddNameExpression", "nvrtcCompileProgram", "nvrtcGetProgramLogSize",
                     "nvrtcGetProgramLog", "nvrtcGetLoweredName"):
            getattr(lib, name).argtypes = None

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise CompileCheckError(f"{what}: {self.lib.nvrtcGetErrorString(status).decode()}")

    def compile(self, source: str, name: str, options: tuple[str, ...], expressions: tuple[str, ...]):
        """(ok, log, {name expression: lowered (mangled) name})."""
        prog = ctypes.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
                    "nvrtcCreateProgram")
        try:
            for expr in expressions:
                self._check(self.lib.nvrtcAddNameExpression(prog, expr.encode()), f"name expression {expr!r}")
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            status = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            self.lib.nvrtcGetProgramLog(prog, log)
            lowered = {}
            if status == 0:
                for expr in expressions:
                    out = ctypes.c_char_p()
                    self._check(self.lib.nvrtcGetLoweredName(prog, expr.encode(), ctypes.byref(out)),
                                f"lowered name of {expr!r}")
                    lowered[expr] = out.value.decode()
            return status == 0, log.value.decode(errors="replace"), lowered
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


@functools.lru_cache(maxsize=None)
def _nvrtc_libraries() -> tuple[_Nvrtc, ...]:
    found = []
    for path in _nvrtc_candidates():
        try:
            found.append(_Nvrtc(path))
        except OSError:
            continue
    return tuple(found)


def nvrtc_for(arch: str) -> _Nvrtc:
    """The newest NVRTC that can target `arch`."""
    libs = _nvrtc_libraries()
    for lib in libs:
        if arch in lib.archs:
            return lib
    have = ", ".join(f"{lib.version} ({lib.path})" for lib in libs) or "none"
    hint = " (CUDA 13 dropped sm_70: pip install nvidia-cuda-nvrtc-cu12)" if arch == "sm_70" else ""
    raise CompileCheckError(f"no NVRTC library targets {arch}{hint}; found: {have}")


# ---------------------------------------------------------------- ptxas' report
_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
_PROPERTIES = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas_log(log: str) -> dict[str, dict[str, int]]:
    """{mangled kernel name: {registers, smem, spill, frame}} from ptxas -v output."""
    kernels: dict[str, dict[str, int]] = {}
    current = None
    for line in log.splitlines():
        if m := _ENTRY.search(line) or _PROPERTIES.search(line):
            current = kernels.setdefault(m.group(1), {"registers": 0, "smem": 0, "spill": 0, "frame": 0})
        elif current is not None and (m := _FRAME.search(line)):
            current["frame"] = int(m.group(1))
            current["spill"] = int(m.group(2)) + int(m.group(3))
        elif current is not None and (m := _USED.search(line)):
            current["registers"] = int(m.group(1))
            smem = _SMEM.search(line)
            current["smem"] = int(smem.group(1)) if smem else 0
    return kernels


# NVRTC 12 says this about every sm_70 compilation: a notice about the target, not about the code.
_TARGET_NOTICE = re.compile(r"Architectures prior to .* are deprecated")


def _warnings(log: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in log.splitlines()
                 if re.search(r"\bwarning\b", line, re.I) and not _TARGET_NOTICE.search(line))


# ---------------------------------------------------------------- the checks
def _default_sources():
    from gpuconv import _kernels

    return _kernels.KERNEL_SOURCES, _kernels.NVRTC_OPTIONS, _kernels.CUDA_DIR


def _resolve(sources, options, cuda_dir):
    if sources is None or options is None or cuda_dir is None:
        default_sources, default_options, default_dir = _default_sources()
        sources = default_sources if sources is None else sources
        options = default_options if options is None else options
        cuda_dir = default_dir if cuda_dir is None else cuda_dir
    return sources, tuple(options), Path(cuda_dir)


def _records(file, expressions, arch, lowered, log, compiler) -> list[KernelReport]:
    usage, warnings = parse_ptxas_log(log), _warnings(log)
    records = []
    for expr in expressions:
        u = usage.get(lowered.get(expr, expr))
        if u is None:
            raise CompileCheckError(f"{file}: no ptxas report for {expr!r} ({arch}); log:\n{log}")
        records.append(KernelReport(file, expr, arch, u["registers"], u["smem"], u["spill"], u["frame"],
                                    warnings, compiler))
    return records


def compile_report(sources=None, archs=DEFAULT_ARCHS, options=None, cuda_dir=None) -> list[KernelReport]:
    """Compile every instantiation with NVRTC for each arch; one KernelReport per (kernel, arch).

    sources: {file: (name expression, ...)} with files relative to cuda_dir (default:
    gpuconv._kernels.KERNEL_SOURCES / NVRTC_OPTIONS / CUDA_DIR). Raises CompileCheckError on a
    compile error; warnings and spills are reported, for the caller to judge.
    """
    sources, options, cuda_dir = _resolve(sources, options, cuda_dir)
    records: list[KernelReport] = []
    for arch in archs:
        nvrtc = nvrtc_for(arch)
        for file, expressions in sources.items():
            path = cuda_dir / file
            flags = (*options, f"--gpu-architecture={arch}", "--ptxas-options=-v", f"-I{path.parent}")
            ok, log, lowered = nvrtc.compile(path.read_text(), str(path), flags, tuple(expressions))
            if not ok:
                raise CompileCheckError(f"NVRTC {nvrtc.version} failed on {file} for {arch}:\n{log}")
            records += _records(file, expressions, arch, lowered, log, f"nvrtc {nvrtc.version}")
    return records


def nvcc_path() -> str | None:
    return shutil.which("nvcc")


@functools.lru_cache(maxsize=None)
def nvcc_archs() -> frozenset[str]:
    out = subprocess.run([nvcc_path(), "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout
    return frozenset(a.replace("compute_", "sm_") for a in out.split())


def nvcc_report(sources=None, archs=DEFAULT_ARCHS, options=None, cuda_dir=None) -> list[KernelReport]:
    """The same check with nvcc (-cubin, ptxas -v) for the archs this nvcc supports; every kernel
    instantiation is forced by taking its address in a wrapper file."""
    nvcc = nvcc_path()
    if nvcc is None:
        raise CompileCheckError("nvcc is not on the PATH")
    sources, options, cuda_dir = _resolve(sources, options, cuda_dir)
    banner = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    version = re.search(r"release (\d+\.\d+)", banner)
    compiler = f"nvcc {version.group(1) if version else '?'}"
    records: list[KernelReport] = []
    with tempfile.TemporaryDirectory(prefix="gpuconv-nvcc-") as tmp:
        for file, expressions in sources.items():
            path = (cuda_dir / file).resolve()
            wrapper = Path(tmp) / f"{path.stem}_instances.cu"
            wrapper.write_text(f'#include "{path}"\n' + "".join(
                f"void* gpuconv_instance_{i} = (void*)&{expr};\n" for i, expr in enumerate(expressions)))
            for arch in archs:
                if arch not in nvcc_archs():
                    continue
                cmd = [nvcc, "-cubin", f"-arch={arch}", "-Xptxas", "-v", f"-I{path.parent}",
                       *_nvcc_options(options), str(wrapper), "-o", str(Path(tmp) / "out.cubin")]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                log = proc.stdout + proc.stderr
                if proc.returncode != 0:
                    raise CompileCheckError(f"{compiler} failed on {file} for {arch}:\n{log}")
                lowered = {expr: _nvcc_lowered(log, expr) for expr in expressions}
                records += _records(file, expressions, arch, lowered, log, compiler)
    return records


def _nvcc_options(options: tuple[str, ...]) -> list[str]:
    """NVRTC options nvcc understands the same way (-I, -D, -std); others are NVRTC-only. Include
    directories of a CUDA installation (the pip wheels' headers that NVRTC needs) are dropped:
    nvcc must use its own headers, which match its device library."""
    kept = []
    for o in options:
        if o.startswith("-I") and (Path(o[2:]) / "cuda_fp16.h").exists():
            continue
        if o.startswith(("-I", "-D", "-std=", "--std=")):
            kept.append(o)
    return kept


def _nvcc_lowered(log: str, expr: str) -> str:
    """The mangled name ptxas reports for a name expression (nvcc has no lowered-name API):
    the entry whose demangled name, without return type and parameters, equals the expression."""
    names = [m for m, _ in _ENTRY.findall(log)]
    demangler = shutil.which("cu++filt") or shutil.which("c++filt")
    if not names or not demangler:
        return expr
    demangled = subprocess.run([demangler], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
    wanted = re.sub(r"\s+", "", expr)
    for name, text in zip(names, demangled):
        if _template_id(text) == wanted:
            return name
    return expr


def _template_id(demangled: str) -> str:
    """'void f<float, 4, true>(float const*, int)' -> 'f<float,4,true>' (also for plain names)."""
    text = re.sub(r"\s+", "", re.sub(r"^void\s+", "", demangled.strip()))
    depth = 0
    for i, ch in enumerate(text):
        depth += {"<": 1, ">": -1}.get(ch, 0)
        if ch == "(" and depth == 0:
            return text[:i]
    return text
