"""Building: the cache (keyed by everything the source includes, written atomically, per-user
directory overridable by GPUCONV_EMU_CACHE), isolation between loaded libraries, the ucontext
fallback used off x86-64, and a clear failure where g++ is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from emu_support import run_conv_tiled

pytestmark = pytest.mark.emulator

SET_VALUE = 'extern "C" __global__ void set_value(float* y) { y[threadIdx.x] = VALUE; }\n'


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUCONV_EMU_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _value(module) -> float:
    y = np.zeros(32, np.float32)
    module.get_function("set_value")(1, 32, (y,))
    return float(y[0])


def test_cache_directory_override_and_reuse(emulator, cache, monkeypatch):
    first = emulator.Module(code=SET_VALUE, options=("-DVALUE=1.5f",))
    assert first.library_path.parent == cache and _value(first) == 1.5
    compiles = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: (compiles.append(cmd), real_run(cmd, **kw))[1])
    again = emulator.Module(code=SET_VALUE, options=("-DVALUE=1.5f",))
    assert again.library_path == first.library_path
    assert not [c for c in compiles if "-fpreprocessed" in c], "the cached library was compiled again"


def test_libraries_are_isolated(emulator, cache):
    """Two builds of one source with different macros keep their own kernels and state."""
    one = emulator.Module(code=SET_VALUE, options=("-DVALUE=1.0f",))
    two = emulator.Module(code=SET_VALUE, options=("-DVALUE=2.0f",))
    assert one.library_path != two.library_path
    assert (_value(one), _value(two), _value(one)) == (1.0, 2.0, 1.0)
    assert one.kernel_names == two.kernel_names == ("set_value",)


def test_a_changed_local_header_rebuilds(emulator, cache, tmp_path):
    source = tmp_path / "kernel.cu"
    source.write_text('#include "value.cuh"\n' + SET_VALUE)
    (tmp_path / "value.cuh").write_text("#define VALUE 3.0f\n")
    before = emulator.Module(path=str(source))
    (tmp_path / "value.cuh").write_text("#define VALUE 4.0f\n")
    after = emulator.Module(path=str(source))
    assert before.library_path != after.library_path
    assert (_value(before), _value(after)) == (3.0, 4.0)


def test_concurrent_builds_never_load_a_partial_library(emulator, cache):
    code = SET_VALUE.replace("VALUE", "7.0f")
    script = textwrap.dedent(f"""
        import numpy as np
        from gpuconv.emulator import Module
        m = Module(code={code!r})
        y = np.zeros(32, np.float32)
        m.get_function("set_value")(1, 32, (y,))
        assert (y == 7.0).all()
        print(m.library_path)
    """)
    env = dict(os.environ, GPUCONV_EMU_CACHE=str(cache))
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    assert not list(cache.glob("build-*")) and not list(cache.glob("*.tmp"))


def test_ucontext_fallback_runs_the_same(emulator, order, rng):
    """Other architectures switch fibers with ucontext; force it here to test that path."""
    n, c, h, w, f, k = 1, 2, 20, 20, 2, 3
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((f, c, k, k), dtype=np.float32)
    results = []
    for options in ((), ("-DGPUCONV_EMU_UCONTEXT",)):
        y = np.full((n, f, h - k + 1, w - k + 1), np.nan, np.float32)
        run_conv_tiled(emulator, x, wt, y, options)
        results.append(y)
    assert not np.isnan(results[0]).any()
    np.testing.assert_array_equal(results[0], results[1])


def test_compile_errors_carry_the_compiler_message(emulator, cache):
    with pytest.raises(emulator.EmulatorCompileError, match=r"undeclared|was not declared"):
        emulator.Module(code='extern "C" __global__ void broken(float* y) { y[0] = undeclared_name; }')


def test_missing_compiler_is_explained_and_fails_in_ci(tmp_path):
    """Without g++ the emulator tests skip with the reason, except in CI where they fail."""
    test = Path(__file__).with_name("test_emulator_errors.py")
    env = dict(os.environ, PATH=str(tmp_path), GPUCONV_EMU_CXX="")
    env.pop("CI", None)
    base = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test),
            "-k", "scalar_arguments_must_have_the_parameter_type"]
    skipped = subprocess.run(base, env=env, capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0 and "g++ not found on PATH" in skipped.stdout, skipped.stdout
    failed = subprocess.run(base, env=dict(env, CI="true"), capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "the CUDA emulator must run in CI: g++ not found" in failed.stdout, failed.stdout


def test_missing_cuda_headers_say_what_to_install(emulator, monkeypatch, tmp_path):
    from gpuconv.emulator import _toolchain

    monkeypatch.setattr(_toolchain, "_wheel_include_dirs", lambda: [])
    monkeypatch.setattr(_toolchain, "_toolkit_include_dirs", lambda: [tmp_path])
    (tmp_path / "vector_types.h").write_text("")   # a partial installation is not enough
    _toolchain.cuda_include_dirs.cache_clear()
    try:
        reason = _toolchain.unavailable_reason()
    finally:
        monkeypatch.undo()
        _toolchain.cuda_include_dirs.cache_clear()
    assert "CUDA headers" in reason and "pip install nvidia-cuda-runtime nvidia-cuda-crt nvidia-cuda-cccl" in reason
    assert _toolchain.unavailable_reason() is None


@pytest.mark.parametrize("value", ["-1", "relative/cache", "."])
def test_a_cache_path_that_is_not_absolute_is_refused(emulator, value, monkeypatch, tmp_path):
    """Issue 13: GPUCONV_EMU_CACHE=-1 reached g++ as an option, and a relative path was created
    in the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPUCONV_EMU_CACHE", value)
    with pytest.raises(ValueError, match=r"GPUCONV_EMU_CACHE=.*absolute path"):
        emulator.Module(code=SET_VALUE, options=("-DVALUE=2.0f",))
    assert list(tmp_path.iterdir()) == []


PARAMETERS = """
template <typename T> struct Acc { typedef float type; };
template <typename T, typename I, int N>
__global__ void __launch_bounds__(64, 2)
scaled(const T* __restrict__ x, typename Acc<T>::type* __restrict__ partial, I total, double value = N) {}
extern "C" __global__ void plain(float* y, unsigned int) {}
extern "C" __global__ void none(void) {}
"""


def test_functions_know_their_parameter_names(emulator, cache):
    """Each kernel's parameter names come from its source (a template's serve every instantiation);
    a name declared twice with different lists has none (nothing to check against)."""
    module = emulator.Module(code=PARAMETERS, name_expressions=("scaled<float, int, 4>",))
    function = module.get_function("scaled<float, int, 4>")
    assert function.parameter_names == ("x", "partial", "total", "value")
    assert function.signature[:3] == ("*f32", "*f32", "i32")
    assert module.get_function("plain").parameter_names == ("y", "")
    assert module.get_function("none").parameter_names == ()
    mark = emulator._build._MARK_GLOBAL
    overloads = f"{mark} void twice(float* a) {{}}\n{mark} void twice(float* b, void (*f)(int)) {{}}\n"
    assert emulator._build.kernel_parameters(overloads) == {"twice": None}
    assert emulator._build.kernel_parameters(overloads.split("\n")[1]) == {"twice": ("b", "f")}
