"""The benchmark runner: its arithmetic on synthetic timings, the layer set, and the --smoke
path end to end on every backend that can run here (JSON holds every case and figure)."""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import types

import numpy as np
import pytest

import gpuconv

from gpuconv.__main__ import main
from gpuconv.backends import BackendUnavailable, get_backend
from gpuconv.benchmark import contenders, report, runner, timing
from gpuconv.benchmark.figures import (geometric_mean, rate, relative_difference, share, speed_ratio,
                                       summarise)
from gpuconv.benchmark.layers import AVG_POOL, CONV, LAYERS, MAX_POOL, Case, select_cases
from gpuconv.benchmark.timing import measure

LAYER = {layer.name: layer for layer in LAYERS}


# --- arithmetic on synthetic timings -------------------------------------------------------

def test_summarise_reports_the_best_round_median_and_its_spread():
    rounds = [[3.0, 1.0, 2.0], [0.5, 0.7, 0.6, 0.9], [2.0, 2.0, 2.0]]
    figures = summarise(rounds)
    assert figures["best_round"] == 1
    assert figures["time_s"] == pytest.approx(0.65)  # median of an even count: mean of the middle two
    assert figures["spread"] == pytest.approx((0.9 - 0.5) / 0.65)
    assert figures["round_medians_s"] == pytest.approx([2.0, 0.65, 2.0])


def test_summarise_rejects_empty_rounds():
    with pytest.raises(ValueError, match="at least one timed call"):
        summarise([[1.0], []])


def test_rates_ratios_and_shares():
    assert rate(3e9, 0.5) == pytest.approx(6.0)
    assert speed_ratio(peer_seconds=2.0, our_seconds=4.0) == pytest.approx(0.5)
    assert speed_ratio(peer_seconds=3.0, our_seconds=1.0) == pytest.approx(3.0)
    assert share(90.0, 360.0) == pytest.approx(0.25)
    assert geometric_mean([0.5, 2.0, 1.0]) == pytest.approx(1.0)
    assert geometric_mean([0.25, 1.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        geometric_mean([1.0, 0.0])


def test_relative_difference_flags_nan_and_shape_mismatch():
    expected = np.array([[2.0, -4.0]])
    assert relative_difference(np.array([[2.0, -3.0]]), expected) == pytest.approx(0.25)
    assert relative_difference(np.array([[2.0, np.nan]]), expected) == math.inf
    assert relative_difference(np.array([2.0, -4.0]), expected) == math.inf


def test_measure_interleaves_rounds_after_the_warm_up():
    order = []

    def clock_for(label):
        return lambda call: (order.append(label), call(), 1.0)[2]

    timed = {"A": (clock_for("A"), lambda: None), "B": (clock_for("B"), lambda: None)}
    samples = measure(timed, warmup=1, rounds=2, repeat=3)
    assert order == ["A", "B"] + ["A"] * 3 + ["B"] * 3 + ["A"] * 3 + ["B"] * 3
    assert samples == {"A": [[1.0] * 3] * 2, "B": [[1.0] * 3] * 2}


def test_measure_adds_rounds_until_the_minimum_time():
    def clock(call):
        return 0.5

    timed = {"A": (clock, lambda: None), "B": (clock, lambda: None)}
    # each round times 2 x 2 calls of 0.5 s = 2 s: 3 rounds reach 5 s
    assert len(measure(timed, warmup=0, rounds=1, repeat=2, min_seconds=5.0)["A"]) == 3
    assert len(measure(timed, warmup=0, rounds=1, repeat=2, min_seconds=500.0, max_rounds=7)["B"]) == 7
    assert len(measure(timed, warmup=0, rounds=4, repeat=2, min_seconds=1.0)["B"]) == 4


def test_measured_figures_use_flops_or_bytes_and_the_matching_ceiling():
    shared = {"cpu_matmul_float32": {"rate": 200.0}, "gpu_copy": {"rate": 500.0}}
    rounds = [[0.02, 0.01, 0.03], [0.012, 0.008, 0.010]]
    conv = Case(LAYER["B"], "float32")
    result = {"op": CONV, "dtype": "float32", "gpu_gemm_ceiling": {"rate": 1000.0},
              "results": {label: runner.measured_figures(conv, rounds, device) for label, device in
                          (("cpu", contenders.CPU), ("gpu", contenders.GPU), ("emu", contenders.EMULATOR))}}
    runner.attach_ceilings(result, shared)
    cpu, gpu, emulated = (result["results"][label] for label in ("cpu", "gpu", "emu"))
    assert cpu["time_s"] == pytest.approx(0.010)
    assert cpu["rate"] == pytest.approx(conv.flops / 0.010 / 1e9) == gpu["rate"]
    assert (cpu["ceiling"], cpu["ceiling_share"]) == ("cpu_matmul_float32", pytest.approx(cpu["rate"] / 200.0))
    assert (gpu["ceiling"], gpu["ceiling_share"]) == ("gpu_gemm", pytest.approx(gpu["rate"] / 1000.0))
    assert (emulated["ceiling"], emulated["ceiling_share"]) == (None, None)

    pool = Case(LAYER["max3"], "float32")
    result = {"op": MAX_POOL, "dtype": "float32",
              "results": {label: runner.measured_figures(pool, rounds, device) for label, device in
                          (("cpu", contenders.CPU), ("gpu", contenders.GPU))}}
    runner.attach_ceilings(result, shared)
    on_gpu = result["results"]["gpu"]
    assert on_gpu["rate"] == pytest.approx(pool.nbytes / 0.010 / 1e9)
    assert (on_gpu["ceiling"], on_gpu["ceiling_share"]) == ("gpu_copy", pytest.approx(on_gpu["rate"] / 500.0))
    assert result["results"]["cpu"]["ceiling_share"] is None


def test_best_ceilings_keeps_the_highest_rate_of_the_measurements():
    before = {"cpu_matmul_float32": {"rate": 150.0, "what": "before"}}
    after = {"cpu_matmul_float32": {"rate": 300.0, "what": "after"}, "gpu_copy": {"rate": 9.0, "what": "copy"}}
    best = runner.best_ceilings(before, after)
    assert best["cpu_matmul_float32"] == {"rate": 300.0, "what": "after", "rates_measured": [150.0, 300.0]}
    assert best["gpu_copy"]["rates_measured"] == [9.0]


def test_ratios_and_summary_from_synthetic_results():
    def results(ours, torch_time):
        return {"gpuconv/numpy": {"time_s": ours, "device": contenders.CPU},
                "torch-cpu": {"time_s": torch_time, "device": contenders.CPU}}

    assert runner.ratios(results(2.0, 1.0)) == {"gpuconv/numpy": {"torch-cpu": pytest.approx(0.5)}}
    on_both = {**results(2.0, 1.0), "gpuconv/cuda": {"time_s": 0.1, "device": contenders.GPU},
               "torch-cuda": {"time_s": 0.3, "device": contenders.GPU},
               "gpuconv/cuda-emu": {"time_s": 4.0, "device": contenders.EMULATOR}}
    assert runner.ratios(on_both) == {"gpuconv/numpy": {"torch-cpu": pytest.approx(0.5)},
                                      "gpuconv/cuda": {"torch-cuda": pytest.approx(3.0)},
                                      "gpuconv/cuda-emu": {"torch-cpu": pytest.approx(0.25)}}
    cases = [{"layer": name, "op": CONV, "dtype": "float32", "ratios": runner.ratios(results(ours, 1.0))}
             for name, ours in (("A", 2.0), ("B", 0.5), ("H", 4.0))]
    cases.append({"layer": "max3", "op": MAX_POOL, "dtype": "float32", "ratios": runner.ratios(results(1.0, 3.0))})
    found = runner.summary(cases)["gpuconv/numpy"]["torch-cpu"]
    assert found["conv float32"]["geomean"] == pytest.approx((0.5 * 2.0 * 0.25) ** (1 / 3))
    assert (found["conv float32"]["min"], found["conv float32"]["worst"]) == (pytest.approx(0.25), "H")
    assert found["conv float32"]["cases"] == ["A", "B", "H"]
    assert found["pool float32"]["geomean"] == pytest.approx(3.0)


# --- the layer set --------------------------------------------------------------------------

def test_layer_set_matches_design_section_5():
    assert [layer.name for layer in LAYERS] == list("ABCDEFGH") + ["max3", "avg3", "max2", "avg2"] + \
        ["B128", "C128", "D128", "max3_128", "avg3_128"]
    assert [case.layer.name for case in select_cases()] == list("ABCDEFGH") + ["max3", "avg3", "max2", "avg2"]
    b128, max3_128 = (Case(LAYER[name], "float32") for name in ("B128", "max3_128"))
    assert b128.spec.out_shape == (128, 64, 56, 56) and b128.flops == 16 * Case(LAYER["B"], "float32").flops
    assert max3_128.layer.x_shape == (128, 64, 112, 112) and max3_128.spec.out_shape == (128, 64, 56, 56)
    a = Case(LAYER["A"], "float32")
    assert a.spec.out_shape == (8, 64, 112, 112)
    assert a.flops == 2 * 8 * 64 * 3 * 7 * 7 * 112 * 112
    h = Case(LAYER["H"], "float32")
    assert (LAYER["H"].w_shape, h.flops) == ((64, 1, 3, 3), 2 * 8 * 64 * 1 * 9 * 56 * 56)
    assert Case(LAYER["F"], "float64").spec.out_shape == (1, 1, 510, 510)
    max3 = Case(LAYER["max3"], "float32")
    assert max3.spec.out_shape == (8, 64, 56, 56) and max3.flops is None
    assert max3.nbytes == 4 * (8 * 64 * 112 * 112 + 8 * 64 * 56 * 56)
    assert (LAYER["avg2"].op, Case(LAYER["avg2"], "float32").spec.out_shape) == (AVG_POOL, (8, 64, 28, 28))
    assert [c.label for c in select_cases(dtypes=("float64",))] == ["B float64", "F float64"]


def test_smoke_layers_keep_kernel_stride_padding_and_grouping():
    every = [layer.name for layer in LAYERS]
    for full, tiny in zip(select_cases(every), select_cases(every, use_smoke=True)):
        assert (tiny.layer.kernel, tiny.layer.stride, tiny.layer.padding) == \
            (full.layer.kernel, full.layer.stride, full.layer.padding)
        assert (tiny.layer.groups > 1) == (full.layer.groups > 1)
        assert np.prod(tiny.layer.x_shape) <= 1024


def test_ndimage_applies_to_single_input_channel_convs_only():
    assert contenders.ndimage_rule(Case(LAYER["F"], "float32")) is None
    assert contenders.ndimage_rule(Case(LAYER["E"], "float32")) is None
    assert "single input channel" in contenders.ndimage_rule(Case(LAYER["B"], "float32"))
    assert "pooling" in contenders.ndimage_rule(Case(LAYER["max2"], "float32"))


# --- runs -----------------------------------------------------------------------------------

def test_unavailable_backends_and_peers_are_listed_as_skipped(monkeypatch):
    def no_cuda(name):
        if name == "cuda":
            raise BackendUnavailable("backend 'cuda' is not available: no GPU in this test")
        return get_backend(name)

    monkeypatch.setattr(contenders, "get_backend", no_cuda)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    lines = []
    document = runner.run(runner.Settings.for_smoke(layers=["F"], backends=("numpy", "cuda"),
                                                    peers=("torch-cpu", "scipy")), progress=lines.append)
    skipped = document["contenders"]["skipped"]
    assert skipped["gpuconv/cuda"] == "backend 'cuda' is not available: no GPU in this test"
    assert "torch is not installed" in skipped["torch-cpu"]
    assert document["contenders"]["measured"] == ["gpuconv/numpy", "scipy"]
    assert document["problems"] == []
    assert "skipped gpuconv/cuda" in lines[0]


def test_a_failing_contender_is_reported_not_fatal(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("deliberately broken")

    monkeypatch.setattr("gpuconv._api.max_pool2d", broken)
    document = runner.run(runner.Settings.for_smoke(layers=["max2", "F"], backends=("numpy",), peers=()),
                          progress=lambda line: None)
    max2, f = document["cases"]
    assert max2["errors"] == {"gpuconv/numpy": "RuntimeError: deliberately broken"}
    assert "gpuconv/numpy" in f["results"]
    assert document["problems"] == ["max2 float32: gpuconv/numpy failed: RuntimeError: deliberately broken"]
    rendered = report.text(document)
    assert "FAILED: RuntimeError: deliberately broken" in rendered and "PROBLEMS" in rendered


def test_disagreeing_results_are_reported(monkeypatch):
    real = contenders._api.conv2d
    monkeypatch.setattr(contenders._api, "conv2d", lambda *args, **kwargs: real(*args, **kwargs) + 1.0)
    document = runner.run(runner.Settings.for_smoke(layers=["F"], backends=("numpy",), peers=("scipy",)),
                          progress=lambda line: None)
    (case,) = document["cases"]
    assert case["reference"] == "gpuconv/numpy"
    assert case["disagreements"]["scipy"] > 0.1
    assert document["problems"] and "scipy differs from gpuconv/numpy" in document["problems"][0]


def test_smoke_run_writes_every_case_and_figure(backend, tmp_path, capsys):
    """--smoke on one backend through the command line: a JSON with every case, every figure
    computed from its own measured times, every peer measured or listed as skipped."""
    out = tmp_path / "bench.json"
    code = main(["bench", "--smoke", "--backend", backend, "--dtype", "float32,float64", "--json", str(out)])
    captured = capsys.readouterr()
    document = json.loads(out.read_text())
    assert code == 0, document["problems"]
    expected = select_cases(dtypes=("float32", "float64"), use_smoke=True)
    assert [(c["layer"], c["dtype"]) for c in document["cases"]] == [(c.layer.name, c.dtype) for c in expected]
    assert len([line for line in captured.err.splitlines() if line.startswith("[")]) == len(expected)

    contender_labels = document["contenders"]["measured"] + list(document["contenders"]["skipped"])
    assert set(contender_labels) >= {f"gpuconv/{backend}", *contenders.PEERS}
    assert all(document["contenders"]["skipped"].values())
    ours = f"gpuconv/{backend}"
    assert ours in document["contenders"]["measured"]

    implementation = get_backend(backend)
    for case, spec_case in zip(document["cases"], expected):
        assert case["errors"] == {} and case["disagreements"] == {}
        assert set(case["results"]) | set(case["not_applicable"]) == set(document["contenders"]["measured"])
        chosen = implementation.choose_algorithm(spec_case.spec) if spec_case.layer.op == CONV else None
        assert case["results"][f"gpuconv/{backend}"].get("algorithm") == chosen
        assert all("algorithm" not in figures for label, figures in case["results"].items()
                   if not label.startswith("gpuconv/"))
        for figures in case["results"].values():
            time_s = min(statistics.median(calls) for calls in figures["rounds_s"])
            assert figures["time_s"] == pytest.approx(time_s) and time_s > 0
            amount = spec_case.flops if spec_case.layer.op == CONV else spec_case.nbytes
            assert figures["rate"] == pytest.approx(amount / time_s / 1e9)
            assert figures["spread"] >= 0
            assert figures["max_rel_difference"] <= runner.AGREEMENT_TOLERANCE[case["dtype"]]
            if figures["ceiling"] is not None:  # a GPU conv's GEMM ceiling is the case's own
                ceiling = case["gpu_gemm_ceiling"] if figures["ceiling"] == "gpu_gemm" else \
                    document["ceilings"][figures["ceiling"]]
                assert figures["ceiling_share"] == pytest.approx(figures["rate"] / ceiling["rate"])
        hardware = runner.HARDWARE[case["results"][ours]["device"]]
        peers = [label for label, figures in case["results"].items()
                 if not label.startswith("gpuconv/") and runner.HARDWARE[figures["device"]] == hardware]
        assert set(case["ratios"][ours]) == set(peers)
        for label in peers:
            assert case["ratios"][ours][label] == pytest.approx(
                case["results"][label]["time_s"] / case["results"][ours]["time_s"])

    assert any(case["ratios"][ours] for case in document["cases"]), "no ratio was computed at all"
    env = document["environment"]
    assert env["cpu"]["model"] and env["cpu"]["usable_cpus"] >= 1 and env["versions"]["numpy"]
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        assert env["environment_variables"].get(name) == os.environ.get(name)
    assert "NumPy BLAS" in captured.out and "Speed ratio" in captured.out
    assert f"gpuconv/{backend} [" in captured.out, "the table should name the conv algorithm gpuconv ran"


def test_smoke_backward_pass_times_dx_and_dw_against_torch_autograd(grad_backend, tmp_path, capsys):
    """--smoke --pass backward: every conv layer's dx + dw, checked against the first contender
    (and PyTorch's autograd where installed), rates counting twice the forward FLOPs."""
    out = tmp_path / "bench.json"
    code = main(["bench", "--smoke", "--pass", "backward", "--backend", grad_backend, "--json", str(out)])
    captured = capsys.readouterr()
    document = json.loads(out.read_text())
    assert code == 0, document["problems"]
    expected = select_cases(use_smoke=True, backward=True)
    assert [c.layer.op for c in expected] == [CONV] * 8
    assert [(c["layer"], c["pass"]) for c in document["cases"]] == [(c.layer.name, "backward") for c in expected]
    ours = f"gpuconv/{grad_backend}"
    implementation = get_backend(grad_backend)
    for case, spec_case in zip(document["cases"], expected):
        assert case["errors"] == {} and case["disagreements"] == {}
        assert spec_case.flops == 2 * spec_case.spec.flops
        figures = case["results"][ours]
        assert figures["rate"] == pytest.approx(spec_case.flops / figures["time_s"] / 1e9)
        choose = getattr(implementation, "choose_grad_algorithms", None)
        if choose is not None:
            assert figures["algorithm"] == "+".join(choose(spec_case.spec))
        assert "scipy" in case["not_applicable"] or "scipy" in document["contenders"]["skipped"]
        if "torch-cpu" in case["results"]:
            assert figures["max_rel_difference"] <= runner.AGREEMENT_TOLERANCE["float32"]
            assert case["ratios"][ours]["torch-cpu"] == pytest.approx(
                case["results"]["torch-cpu"]["time_s"] / figures["time_s"])
    if "torch-cpu" in document["contenders"]["measured"]:
        assert "conv backward float32" in document["summary"][ours]["torch-cpu"]
        assert "conv backward float32: geometric mean" in captured.out
    assert "A backward" in captured.out


def test_backward_results_are_compared_part_by_part():
    """dx and dw are compared each on its own scale: an error in the small one is not hidden by the large one."""
    dx, dw = np.ones((2, 3)), np.full((4,), 1000.0)
    assert relative_difference((dx, dw), (dx, dw)) == 0
    assert relative_difference((dx + 0.5, dw), (dx, dw)) == pytest.approx(0.5)
    assert relative_difference((dx,), (dx, dw)) == math.inf
    assert relative_difference(dx, (dx, dw)) == math.inf
    ratios = {"gpuconv/numpy": {"torch-cpu": 2.0}}
    cases = [{"layer": "B", "op": CONV, "dtype": "float32", "pass": pass_name, "ratios": ratios}
             for pass_name in ("forward", "backward")]
    assert set(runner.summary(cases)["gpuconv/numpy"]["torch-cpu"]) == {"conv float32", "conv backward float32"}


def test_float16_and_tf32_rows_at_a_chosen_batch():
    """--dtype float16,tf32 adds layers A-D in float16 and in TF32 (float32 data, precision='tf32');
    --batch sets N; gpuconv's rows name the algorithm auto takes for that dtype and precision."""
    assert [c.label for c in select_cases(dtypes=("float16", "tf32"))] == \
        [f"{n} {d}" for d in ("float16", "tf32") for n in "ABCD"]
    tf32, fp16 = Case(LAYER["B"], "tf32"), Case(LAYER["B"], "float16")
    assert (tf32.array_dtype, tf32.precision, fp16.array_dtype, fp16.precision) == \
        ("float32", "tf32", "float16", "highest")
    assert tf32.nbytes == Case(LAYER["B"], "float32").nbytes == 2 * fp16.nbytes
    assert tf32.inputs(0)["x"].dtype == np.float32 and fp16.inputs(0)["w"].dtype == np.float16
    assert {c.layer.x_shape[0] for c in select_cases(["B", "max2"], batch=128) if c.layer.op == CONV} == {128}
    assert select_cases(["max2"], batch=128)[0].layer.x_shape[0] == 8  # pooling keeps its shape
    backends = ("numpy", "cuda-emu") if "cuda-emu" in gpuconv.available_backends() else ("numpy",)
    document = runner.run(runner.Settings.for_smoke(layers=["C", "D"], backends=backends, peers=(),
                                                    dtypes=("float16", "tf32"), batch=3), progress=lambda line: None)
    assert document["problems"] == []
    assert [(c["layer"], c["dtype"], c["x_shape"][0]) for c in document["cases"]] == \
        [(n, d, 3) for d in ("float16", "tf32") for n in "CD"]
    for case, spec_case in zip(document["cases"], select_cases(["C", "D"], ("float16", "tf32"), True, 3)):
        for backend in backends:
            expected = get_backend(backend).choose_algorithm(spec_case.spec, spec_case.array_dtype, spec_case.precision)
            assert case["results"][f"gpuconv/{backend}"]["algorithm"] == expected
    assert "cpu_matmul_float16" not in document["ceilings"] and "cpu_matmul_float32" in document["ceilings"]


def test_implicit_gemm_shape_has_the_conv_flops():
    from gpuconv.benchmark.ceilings import implicit_gemm_shape

    for name in "ABEH":
        case = Case(LAYER[name], "float32")
        m, n, k = implicit_gemm_shape(case.spec)
        assert 2 * m * n * k == case.flops
    assert implicit_gemm_shape(Case(LAYER["A"], "float32").spec) == (64, 8 * 112 * 112, 3 * 7 * 7)


class _Events:
    """Stand-in CUDA events for the GPU clocks without a GPU: every call they get is logged."""

    def __init__(self):
        self.log = []

    def new(self, enable_timing=True):
        assert enable_timing, "an event made without timing cannot be measured"
        return _Event(self.log, f"event{sum(entry.startswith('new') for entry in self.log)}")

    def stand_in_cupy(self):
        device = types.SimpleNamespace(synchronize=lambda: self.log.append("device sync"))
        return types.SimpleNamespace(cuda=types.SimpleNamespace(
            Device=lambda: device, Event=self.new, get_elapsed_time=lambda start, end: start.elapsed_time(end)))

    def stand_in_torch(self):
        return types.SimpleNamespace(cuda=types.SimpleNamespace(
            synchronize=lambda: self.log.append("device sync"),
            Event=lambda enable_timing=False: self.new(enable_timing)))  # torch's default: no timing


class _Event:
    def __init__(self, log, name):
        self.log, self.name = log, name
        log.append(f"new {name}")

    def record(self):
        self.log.append(f"record {self.name}")

    def synchronize(self):
        self.log.append(f"wait {self.name}")

    def elapsed_time(self, end):
        self.log.append(f"elapsed {self.name} {end.name}")
        return 250.0  # milliseconds


@pytest.mark.parametrize("module, stand_in, make_clock", [("cupy", _Events.stand_in_cupy, timing.cupy_event_clock),
                                                          ("torch", _Events.stand_in_torch, timing.torch_event_clock)])
def test_gpu_event_clocks_synchronise_then_time_the_call_between_events(module, stand_in, make_clock, monkeypatch):
    """The GPU clocks without a GPU: a stand-in CuPy or torch records what the clock asks of it."""
    events = _Events()
    monkeypatch.setitem(sys.modules, module, stand_in(events))
    seconds = make_clock()(lambda: events.log.append("call"))
    assert seconds == pytest.approx(0.25)
    assert events.log == ["device sync", "new event0", "new event1", "record event0", "call", "record event1",
                          "wait event1", "elapsed event0 event1"]


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (the bench extra)")
    out = tmp_path / "bench.png"
    assert main(["bench", "--smoke", "--layers", "F,max2", "--backend", "numpy", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
