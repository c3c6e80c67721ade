"""The command line: --version, one-line errors for mistakes, `info` and `check` on machines
without the optional parts (plain `pip install .`, CUDA-13-only NVRTC, no PyTorch)."""
from __future__ import annotations

import re
import sys

import pytest

import gpuconv
from gpuconv import _check, _compile, _kernels
from gpuconv.__main__ import main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"gpuconv {gpuconv.__version__}"


@pytest.mark.parametrize("argv, named", [
    (["demo", "--image", "no-such-image.png"], "--image"),
    (["demo", "--size", "0"], "--size"),
    (["demo", "--size", "big"], "--size"),
    (["demo", "--pool", "0"], "--pool"),
    (["check", "--backend", "nope"], "--backend"),
    (["check", "--seed", "x"], "--seed"),
    (["bench", "--min-time", "-1"], "--min-time"),
    (["bench", "--backend", "nope"], "--backend"),
    (["nope"], "command"),
])
def test_mistakes_are_one_line_errors(argv, named, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and named in last, err


def test_an_unreadable_image_is_a_one_line_error(tmp_path, capsys):
    pytest.importorskip("PIL")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(SystemExit) as info:
        main(["demo", "--image", str(text)])
    assert "error: --image" in str(info.value) and "\n" not in str(info.value)


def test_info_without_pytorch_says_so_and_shows_the_toolchain(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch sees" not in out and ("PyTorch is not installed" in out or "CuPy finds" in out or "name:" in out)
    for tool in ("g++:", "cuda_headers:", "nvrtc:", "nvcc:"):
        assert re.search(rf"^  {re.escape(tool)} \S", out, re.M), f"info shows no {tool} line:\n{out}"


def _skipped_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("skipped:")]


def test_check_after_a_plain_install_passes_and_says_what_it_skipped(monkeypatch, capsys):
    """No NVRTC, no emulator (no CUDA headers), no CuPy: the compile report and those backends are
    skipped with what to install, and the check passes on NumPy."""
    monkeypatch.setattr(_compile, "_nvrtc_libraries", lambda: ())
    monkeypatch.setattr(_check, "available_backends", lambda: ["numpy"])
    monkeypatch.setattr(_check, "unavailable_reasons", lambda: {
        "cuda": "CuPy is not installed; pip install 'gpuconv[cuda12]' or 'gpuconv[cuda13]'",
        "cuda-emu": "CUDA headers not found; pip install 'gpuconv[emulator]'"})
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    skipped = _skipped_lines(out)
    assert len(skipped) == 3 and all("pip install" in line for line in skipped), out
    assert "[1/1] backend numpy" in out and out.rstrip().endswith("check passed (3 skipped, listed above)")


def test_check_on_a_cuda_13_only_machine_skips_sm_70(monkeypatch, capsys):
    """NVRTC 13 has no sm_70: that column is skipped with how to add it, the others are compiled."""
    newest = [lib for lib in _compile._nvrtc_libraries() if "sm_70" not in lib.archs]
    if not newest or _kernels.CUDA_INCLUDE_DIR is None:
        pytest.skip("needs an NVRTC without sm_70 (CUDA 13) and CUDA's headers")
    monkeypatch.setattr(_compile, "_nvrtc_libraries", lambda: tuple(newest))
    monkeypatch.setattr(_kernels, "KERNEL_SOURCES", {"pad.cu": ("pad2d<float, int>",)})  # one kernel: fast
    assert main(["check", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert any("sm_70" in line and "nvidia-cuda-nvrtc-cu12" in line for line in _skipped_lines(out)), out
    assert re.search(r"^pad\.cu +pad2d<float, int> +sm_80 ", out, re.M) and re.search(r" sm_90 ", out)


def test_check_replays_its_data_from_the_seed(capsys):
    runs = []
    for _ in range(2):
        assert main(["check", "--no-compile", "--backend", "numpy", "--seed", "1234"]) == 0
        runs.append([line for line in capsys.readouterr().out.splitlines() if not line.strip().startswith("(")])
    assert runs[0] == runs[1] and "seed 1234" in runs[0][0]
    assert any(re.search(r"conv2d\[winograd\] +float16 +numpy +error +[0-9.e+-]+ +ok", line) for line in runs[0])


def test_the_public_api_is_annotated():
    """Every public function has resolvable annotations on every parameter and its return
    (gpuconv ships py.typed)."""
    import importlib.resources
    import inspect
    import typing

    assert importlib.resources.files("gpuconv").joinpath("py.typed").is_file()
    functions = [getattr(gpuconv, name) for name in gpuconv.__all__ if inspect.isfunction(getattr(gpuconv, name))]
    functions += [f for _, f in inspect.getmembers(gpuconv.filters, inspect.isfunction)
                  if not f.__name__.startswith("_") and f.__module__ == "gpuconv.filters"]
    assert len(functions) > 20
    for function in functions:
        hints = typing.get_type_hints(function)
        missing = [p for p in inspect.signature(function).parameters if p not in hints]
        assert not missing and "return" in hints, f"{function.__name__}: no annotation for {missing or 'return'}"
