"""pytest-benchmark suites over the benchmark runner's cases (gpuconv/benchmark/layers.py):
one group per layer and dtype, parametrised by contender (gpuconv's backends and the peers).
Not collected by a plain `pytest` (testpaths is tests/); run them explicitly:

    pytest bench/ --benchmark-autosave          # record a run in .benchmarks/
    pytest bench/ --benchmark-compare           # compare with the last saved run
    pytest bench/ -k "B-float32"                # one layer

`python -m gpuconv bench` is the interleaved, ceiling-relative measurement; this suite is for
tracking one machine's numbers over time.
"""
from __future__ import annotations

import pytest

from gpuconv.benchmark.contenders import PEERS, Unavailable, by_label
from gpuconv.benchmark.layers import select_cases

CASES = select_cases(dtypes=("float32", "float64"))
# "gpuconv/cuda-emu" is left out: the emulator runs full-size layers for hours.
CONTENDERS = ("gpuconv/numpy", "gpuconv/cuda") + PEERS


@pytest.fixture(scope="module", params=CONTENDERS)
def contender(request):
    try:
        return by_label(request.param)
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("case", CASES, ids=[case.label.replace(" ", "-") for case in CASES])
def test_layer(benchmark, case, contender):
    call = contender.prepare(case, case.inputs(seed=0))
    if isinstance(call, str):
        pytest.skip(f"{contender.label}: {call}")
    benchmark.group = f"{case.label}: {case.describe()}"
    benchmark.extra_info.update(flops=case.flops, bytes=case.nbytes)

    def synchronised_call():
        call()
        contender.synchronise()

    synchronised_call()  # warm-up: kernel compilation, cuDNN's autotuner, first-touch of buffers
    benchmark(synchronised_call)
