"""The Python <-> kernel argument contract (gpuconv/_kernel_params.py): every kernel instantiation the
backend can launch has a table that lists its parameters by name, order and type as the kernel's
source declares them (read by the emulator), and the tables build the launchers' argument tuples."""
from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _kernel_params as params
from gpuconv import _kernels
from support import require_backend


@pytest.fixture(scope="module")
def emulated():
    require_backend("cuda-emu")


def test_every_instantiation_matches_its_table(emulated):
    """Each name expression of KERNEL_SOURCES, compiled by the emulator: its source's parameter names and
    its compiled types are the table's; every table serves some kernel."""
    served = set()
    for file, names in _kernels.KERNEL_SOURCES.items():
        module = _kernels.get_module(file, "emu")
        for name in names:
            function = module.get_function(name)
            assert function.parameter_names is not None, f"{name}: the emulator read no parameter names"
            _kernels.check_arguments(name, function)
            table = params.KERNELS[params.function_name(name)]
            assert table.file == file, f"{name} is in cuda/{file}, its table says {table.file}"
            served.add(table.template)
    assert served == set(params.KERNELS)


def _swapped(table: params.KernelParams, a: str, b: str) -> params.KernelParams:
    """table with parameters a and b (same C type) swapped: a planted mismatch."""
    declarations = [f"{ctype} {b if name == a else a if name == b else name}" for name, ctype in table.params]
    return params.KernelParams(table.file, table.template, ", ".join(declarations))


@pytest.mark.parametrize("table, a, b", [
    (params.CONV_DIRECT, "sh", "sw"),
    (params.CONV_IMPLICIT_GEMM, "top", "left"),
    (params.CONV_GRAD_WEIGHT, "x", "dy"),
    (params.AVG_POOL, "bottom", "right"),
    (params.SPLITK_REDUCE, "bias_period", "bias_count"),
])
def test_a_swapped_pair_of_same_typed_parameters_fails_the_check(emulated, table, a, b):
    """The compiled types cannot tell two ints apart; the names can."""
    name = next(n for n in _kernels.KERNEL_SOURCES[table.file] if params.function_name(n) == table.template)
    function = _kernels.get_module(table.file, "emu").get_function(name)
    swapped = _swapped(table, a, b)
    assert swapped.codes(*params.template_arguments(name)[:2]) == tuple(function.signature)
    with pytest.raises(TypeError, match=rf"parameter \d+ is '{b}' in the table and '{a}' in the kernel"):
        swapped.check(name, function.parameter_names, function.signature)


def test_a_wrong_type_fails_the_check(emulated):
    """An index-typed parameter declared int matches the <T, int> instantiations only: the check of every
    instantiation catches it at <T, long long>."""
    table = params.PAD
    declarations = [f"{'int' if name == 'top' else ctype} {name}" for name, ctype in table.params]
    wrong = params.KernelParams(table.file, table.template, ", ".join(declarations))
    module = _kernels.get_module(table.file, "emu")
    wrong.check("pad2d<float, int>", *_named(module.get_function("pad2d<float, int>")))
    with pytest.raises(TypeError, match="disagree on the types of pad2d<float, long long>"):
        wrong.check("pad2d<float, long long>", *_named(module.get_function("pad2d<float, long long>")))


def _named(function):
    return function.parameter_names, function.signature


def test_a_kernel_without_a_table_is_refused(monkeypatch):
    monkeypatch.delitem(params.KERNELS, "pad2d")
    with pytest.raises(TypeError, match="pad2d<float, int> has no argument table"):
        _kernels.check_arguments("pad2d<float, int>", None)


def test_arguments_are_built_by_name_in_the_kernels_order():
    table = params.PAD
    scalars = table.scalars(np.int64, value=1.5, mode=2, left=4, top=3, ow=9, oh=8, w=7, h=6, total=5)
    assert [type(s) for s in scalars] == [np.int64] * 7 + [np.int32, np.float64]
    assert scalars == (5, 6, 7, 8, 9, 3, 4, 2, 1.5)
    x, y = np.zeros(1, np.float32), np.zeros(2, np.float32)
    args = table.pack(scalars, y=y, x=x)
    assert args[0] is x and args[1] is y and args[2:] == scalars
    with pytest.raises(TypeError, match=r"scalar arguments missing \['value'\], unknown \['fill'\]"):
        table.scalars(np.int32, fill=1.5, mode=2, left=4, top=3, ow=9, oh=8, w=7, h=6, total=5)
    with pytest.raises(TypeError, match=r"pad2d.pack\(\) got an unexpected keyword argument 'out'"):
        table.pack(scalars, x=x, y=y, out=y)
    with pytest.raises(TypeError, match=r"pad2d.pack\(\) missing 1 required keyword-only argument: 'y'"):
        table.pack(scalars, x=x)


def test_tables_read_their_declarations():
    assert params.CONV_IMPLICIT_GEMM.params[:6] == (
        ("x", "const T*"), ("w", "const T*"), ("bias", "const T*"), ("y", "T*"), ("partial", "A*"), ("k_split", "I"))
    assert params.MAX_POOL.params[2] == ("indices", "long long*")
    assert params.MAX_POOL.codes("__half", "long long")[:4] == ("*f16", "*f16", "*i64", "i64")
    assert params.SPLITK_REDUCE.codes("double", "int")[:3] == ("*f64", "*f64", "*f64")
    with pytest.raises(ValueError, match="pointer parameters must come first"):
        params.KernelParams("pad.cu", "pad2d", "const T* x, I total, T* y")
