"""Turns a .cu source into a shared library that runs its kernels on the CPU.

Pipeline: preprocess with g++ (cuda_emu.h force-included, so __global__ / __shared__ survive as
markers), rewrite the markers, append one registration line per kernel (name expressions and
every non-template extern "C" __global__ function), compile. The preprocessed text holds
everything the library depends on, so its hash (with the flags and the compiler version) is the
cache key; libraries are written to a temporary file and renamed, so concurrent processes never
load a half-written one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import _toolchain
from ._errors import EmulatorCompileError

_MARK_GLOBAL = "__gpuconv_emu_global__"
_MARK_SHARED = "__gpuconv_emu_shared__"
# `extern __shared__ <type> name[];` -> a pointer to the dynamic shared buffer.
_EXTERN_SHARED = re.compile(r"\bextern\s+" + _MARK_SHARED + r"\b([^;{}]*?)\b([A-Za-z_]\w*)\s*\[\s*\]\s*;")
_GLOBAL_FUNCTION = re.compile(_MARK_GLOBAL + r"\s+(?:[A-Za-z_]\w*\s+)*?void\s+([A-Za-z_]\w*)\s*\(")
_EXTERN_C_BLOCK = re.compile(r'extern\s+"C"\s*\{')
# Every library keeps its own runtime state and kernels' static shared arrays: hidden symbols,
# no STB_GNU_UNIQUE (which the dynamic linker would merge across all loaded libraries).
_CODEGEN_FLAGS = ("-O1", "-fPIC", "-shared", "-fvisibility=hidden", "-fno-gnu-unique", "-fno-threadsafe-statics",
                  "-ffp-contract=off", "-Wl,-z,defs", "-Wl,-Bsymbolic")


@dataclass(frozen=True)
class BuildRequest:
    source: Path                      # the .cu file (a cached copy for code= modules)
    include_dirs: tuple[str, ...]
    defines: tuple[str, ...]          # "NAME" or "NAME=VALUE"
    std: str                          # e.g. "c++17"
    name_expressions: tuple[str, ...]
    sanitizer_flags: tuple[str, ...]


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> tuple[str, ...]:
    """-mfma where the CPU has FMA: fmaf() then inlines to one instruction (a*b+c is still not
    contracted). The flag is part of the cache key, so a CPU without FMA never loads such a library."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return ()
    return ("-mfma",) if "fma" in flags and platform.machine() == "x86_64" else ()


def cache_path() -> Path:
    """The build cache directory: GPUCONV_EMU_CACHE, else $XDG_CACHE_HOME/gpuconv/emulator. Either
    must be an absolute path (a relative one would put builds wherever the process happens to run,
    and one starting with '-' would reach g++ as an option)."""
    root = os.environ.get("GPUCONV_EMU_CACHE")
    name = "GPUCONV_EMU_CACHE"
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root, name = os.path.join(xdg, "gpuconv", "emulator"), "XDG_CACHE_HOME"
    path = Path(root).expanduser()
    if not path.is_absolute():
        raise ValueError(f"environment variable {name}={os.environ.get(name)!r}: the emulator's build cache must be "
                         f"an absolute path")
    return path


def cache_dir() -> Path:
    """cache_path(), created if missing."""
    path = cache_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def source_file_for(code: str) -> Path:
    """A stable file holding `code`, so that it can be preprocessed like a file on disk."""
    path = cache_dir() / "sources" / f"module_{hashlib.sha256(code.encode()).hexdigest()[:16]}.cu"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        _write_atomically(path, code.encode())
    return path


def _run(cmd: list[str], what: str, stdin: str | None = None) -> str:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmulatorCompileError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr.strip()}\n"
                                   f"command: {' '.join(cmd)}")
    return proc.stdout


def _preprocess(req: BuildRequest) -> str:
    cmd = [_toolchain.compiler(), "-E", "-x", "c++", f"-std={req.std}", *req.sanitizer_flags,
           "-include", str(_toolchain.HEADER_DIR / "cuda_emu.h")]
    # The emulator's own <mma.h> and <cuda_pipeline.h> come first: CUDA's are device-only.
    cmd += [f"-I{d}" for d in (_toolchain.HEADER_DIR / "include", *req.include_dirs, *_toolchain.cuda_include_dirs())]
    cmd += [f"-D{d}" for d in req.defines]
    cmd += ["-"]
    quoted = str(req.source).replace("\\", "\\\\").replace('"', '\\"')
    return _run(cmd, f"preprocessing {req.source}", stdin=f'#include "{quoted}"\n')


def _outside_brackets(text: str, start: int = 0):
    """(index, character) of each character of text[start:] outside (), [] and {} groups."""
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            yield i, ch


def _statement_end(text: str, start: int) -> int:
    """Index of the ';' that ends the declaration starting at `start` (outside brackets)."""
    end = next((i for i, ch in _outside_brackets(text, start) if ch == ";"), None)
    if end is None:
        raise ValueError("unterminated __shared__ declaration")
    return end


def _split_top_level(text: str, sep: str) -> list[str]:
    cuts = [-1] + [i for i, ch in _outside_brackets(text) if ch == sep] + [len(text)]
    return [text[a + 1:b] for a, b in zip(cuts, cuts[1:])]


def _without_groups(text: str) -> str:
    """`text` without bracketed groups: `__attribute__((a)) float x[4][2]` -> `__attribute__ float x`."""
    return "".join(ch for _, ch in _outside_brackets(text))


def _declared_names(declaration: str) -> list[str]:
    names = []
    for declarator in _split_top_level(declaration, ","):
        identifiers = re.findall(r"[A-Za-z_]\w*", _without_groups(_split_top_level(declarator, "=")[0]))
        if identifiers:
            names.append(identifiers[-1])
    return names


def _rewrite_shared(text: str) -> str:
    """extern __shared__ arrays -> pointers to the dynamic buffer; every other __shared__
    variable -> a static one, registered (a call in a function, an object at namespace scope) to
    be poisoned before each block."""
    def extern_shared(m: re.Match) -> str:
        decl, name = m.group(1), m.group(2)
        pointer = f"decltype(+gpuconv_emu_decl_{name})"
        return (f"extern{decl}gpuconv_emu_decl_{name}[]; {pointer} const {name} = "
                f"reinterpret_cast<{pointer}>(::gpuconv_emu::dynamic_shared_base());")

    text = _EXTERN_SHARED.sub(extern_shared, text)
    text = re.sub(r"\bstatic\s+" + _MARK_SHARED, _MARK_SHARED, text)
    out, pos, count = [], 0, 0
    for start, in_block in _shared_declarations(text):
        end = _statement_end(text, start + len(_MARK_SHARED))
        names = _declared_names(text[start + len(_MARK_SHARED):end])
        out += [text[pos:start], "static", text[start + len(_MARK_SHARED):end + 1]]
        if in_block:
            # A call, not a guarded static object: the guard's unsynchronised check would look
            # like a race to TSan. The runtime registers each address once.
            out += [f" ::gpuconv_emu::register_shared(&{n}, sizeof({n}));" for n in names]
        else:
            out += [f" static ::gpuconv_emu::SharedVariable gpuconv_emu_shared_{count + i}(&{n}, sizeof({n}));"
                    for i, n in enumerate(names)]
            count += len(names)
        pos = end + 1
    return "".join(out) + text[pos:]


_SCOPE_TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|[{}]|' + _MARK_SHARED)
_NAMESPACE_OPENER = re.compile(r'(\bnamespace\b[^;{}()]*|\bextern\s*"C(\+\+)?"\s*)$')


def _shared_declarations(text: str):
    """(offset, inside a function?) of each __shared__ marker, tracking which braces open a
    namespace or extern "C" block and which open anything else (a function body)."""
    stack: list[bool] = []   # True: a function-or-other block
    for m in _SCOPE_TOKENS.finditer(text):
        token = m.group()
        if token == "{":
            stack.append(not _NAMESPACE_OPENER.search(text[max(0, m.start() - 200):m.start()]))
        elif token == "}":
            if stack:
                stack.pop()
        elif token == _MARK_SHARED:
            yield m.start(), any(stack)


def _extern_c_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _EXTERN_C_BLOCK.finditer(text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        spans.append((m.end(), i))
    return spans


def extern_c_kernels(text: str) -> list[str]:
    """Names of the non-template extern "C" __global__ functions in preprocessed text."""
    spans = _extern_c_spans(text)
    names: list[str] = []
    for m in _GLOBAL_FUNCTION.finditer(text):
        start = max(text.rfind(c, 0, m.start()) for c in ";{}") + 1
        prefix = text[start:m.start()]
        if re.search(r"\btemplate\b", prefix):
            continue
        in_block = any(a <= m.start() < b for a, b in spans)
        if (in_block or re.search(r'extern\s+"C"', prefix)) and m.group(1) not in names:
            names.append(m.group(1))
    return names


def _parameter_list(text: str, open_paren: int) -> str:
    """The text between the '(' at open_paren and its matching ')'."""
    depth = 0
    for i in range(open_paren, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_paren + 1:i]
    raise ValueError("unterminated parameter list")


def _parameter_name(declaration: str) -> str:
    """The name a parameter declaration declares: `const T* __restrict__ x` -> 'x', `int n = 4` -> 'n',
    `void (*f)(int)` -> 'f'; '' for an unnamed parameter of a built-in type (`const float*`)."""
    head = _split_top_level(declaration, "=")[0]
    inner = re.match(r"[^()]*\(\s*[*&]+\s*([A-Za-z_]\w*)\s*\)", head)
    if inner:
        return inner.group(1)
    words = [w for w in re.findall(r"[A-Za-z_]\w*", _without_groups(head)) if w not in _TYPE_WORDS]
    return words[-1] if words else ""


# Words of a parameter's type that are never its name.
_TYPE_WORDS = {"const", "volatile", "__restrict__", "__restrict", "unsigned", "signed", "int", "long", "short",
               "char", "float", "double", "bool", "void"}


def kernel_parameters(text: str) -> dict[str, tuple[str, ...] | None]:
    """The parameter names of each __global__ function of preprocessed text, by function name (a
    template's serve all its instantiations); None for a name declared with different lists
    (overloads): the launcher then has no names to check."""
    found: dict[str, tuple[str, ...] | None] = {}
    for m in _GLOBAL_FUNCTION.finditer(text):
        listed = _parameter_list(text, m.end() - 1)
        empty = listed.strip() in ("", "void")
        names = () if empty else tuple(_parameter_name(p) for p in _split_parameters(listed))
        name = m.group(1)
        found[name] = names if found.get(name, names) == names else None
    return found


def _split_parameters(text: str) -> list[str]:
    """text split at the commas outside (), [], {} and <> (template arguments)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _registrations(kernels: list[str]) -> str:
    lines = ['# 1 "<emulator kernel registrations>"']
    for i, expr in enumerate(kernels):
        literal = expr.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'static int gpuconv_emu_registered_{i} = ::gpuconv_emu::register_kernel("{literal}", &{expr});')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Built:
    library: Path
    parameters: dict[str, tuple[str, ...] | None]  # kernel_parameters of the source


def build(req: BuildRequest) -> Built:
    """The shared library for `req` (compiled unless cached) and its kernels' parameter names."""
    text = _preprocess(req)
    parameters = kernel_parameters(text)
    kernels = list(dict.fromkeys((*req.name_expressions, *extern_c_kernels(text))))
    text = _rewrite_shared(text).replace(_MARK_GLOBAL, "") + _registrations(kernels)
    compile_cmd = [_toolchain.compiler(), "-x", "c++", "-fpreprocessed", f"-std={req.std}", *_CODEGEN_FLAGS,
                   *_cpu_flags(), *req.sanitizer_flags]
    key = hashlib.sha256("\0".join([text, *compile_cmd, _toolchain.compiler_version()]).encode()).hexdigest()[:32]
    library = cache_dir() / f"{req.source.stem}-{key}.so"
    if library.exists():
        return Built(library, parameters)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="build-") as tmp:
        source = Path(tmp) / f"{req.source.stem}.ii"
        source.write_text(text)
        output = Path(tmp) / "out.so"
        _run([*compile_cmd, str(source), "-o", str(output)], f"compiling {req.source} for the emulator")
        os.replace(output, library)
    return Built(library, parameters)
