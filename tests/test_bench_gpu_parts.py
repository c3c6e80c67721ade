"""The benchmark's GPU parts without a GPU, on stand-ins (as test_bench_runner.py does for the event
clocks): the kernel-only clock, the torch-cuda peers (TF32 off and on, float16 channels_last), the
kernel-only figures and their ceilings in the runner and the report, a low-precision peer's
tolerance, the partial JSON after each case; and `bench --overhead` on this machine."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from gpuconv import _kernels
from gpuconv.__main__ import main
from gpuconv.benchmark import contenders, overhead, report, runner, timing
from gpuconv.benchmark.layers import LAYERS, Case

LAYER = {layer.name: layer for layer in LAYERS}


class _Event:
    """A stand-in CUDA event on a fake clock: record() stamps the log's length, in milliseconds."""

    def __init__(self, log):
        self.log, self.stamp = log, None

    def record(self):
        self.stamp = len(self.log)
        self.log.append("record")

    def synchronize(self):
        self.log.append("wait")


def _stand_in_cupy(log):
    device = types.SimpleNamespace(synchronize=lambda: log.append("device sync"))
    return types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=lambda: device, Event=lambda: _Event(log),
        get_elapsed_time=lambda start, end: float(end.stamp - start.stamp)))


class _Kernel:
    def __init__(self, log, name):
        self.log, self.name, self.max_dynamic_shared_size_bytes = log, name, 0

    def __call__(self, grid, block, args, shared_mem=0):
        self.log.append(f"launch {self.name}")


def test_kernel_clock_times_each_launch_between_events_and_sums_them(monkeypatch):
    log = []
    monkeypatch.setitem(sys.modules, "cupy", _stand_in_cupy(log))
    kernels = {"a": _Kernel(log, "a"), "b": _Kernel(log, "b")}
    real = _kernels.get_function
    monkeypatch.setattr(_kernels, "get_function", lambda file, name, kind: kernels[name])

    def call():  # a conv whose launcher raises the shared-memory attribute and launches twice
        log.append("host work")
        for name in ("a", "b"):
            function = _kernels.get_function("f.cu", name, "cuda")
            function.max_dynamic_shared_size_bytes = 99
            function((1,), (32,), ())

    seconds = timing.cupy_kernel_clock()(call)
    assert log == ["device sync", "host work", "record", "launch a", "record", "record", "launch b", "record",
                   "wait"]
    assert seconds == pytest.approx((2 + 2) / 1e3)  # each launch's events are 2 stamps apart (ms -> s)
    assert kernels["a"].max_dynamic_shared_size_bytes == 99, "attribute writes must reach the real kernel"
    assert _kernels.get_function is not real and _kernels.get_function("f.cu", "a", "cuda") is kernels["a"], \
        "the clock must restore the lookup it replaced"
    with pytest.raises(RuntimeError, match="launched no kernel"):
        timing.cupy_kernel_clock()(lambda: None)


class _Tensor:
    """A stand-in torch tensor: remembers device, dtype and memory format."""

    def __init__(self, array, device="cpu", dtype="float32", memory_format="contiguous"):
        self.array, self.device, self.dtype, self.memory_format = array, device, dtype, memory_format

    def to(self, target):
        if target in ("cpu", "cuda"):
            return _Tensor(self.array, target, self.dtype, self.memory_format)
        return _Tensor(self.array.astype(np.float16 if target == "float16" else self.array.dtype), self.device,
                       target, self.memory_format)

    def contiguous(self, memory_format):
        return _Tensor(self.array, self.device, self.dtype, memory_format)


def _stand_in_torch(calls):
    cudnn = types.SimpleNamespace(allow_tf32=None, benchmark=False)

    def conv2d(x, w, bias, stride, padding, dilation, groups):
        calls.append({"tf32": cudnn.allow_tf32, "benchmark": cudnn.benchmark, "device": x.device, "dtype": x.dtype,
                      "format": (x.memory_format, w.memory_format)})
        return "result"

    class NoGrad:
        def __enter__(self):
            calls.append("no_grad")

        def __exit__(self, *exc):
            return False

    return types.SimpleNamespace(
        __version__="stand-in", float16="float16", channels_last="channels_last", contiguous_format="contiguous",
        from_numpy=lambda a: _Tensor(a), no_grad=NoGrad,
        backends=types.SimpleNamespace(cudnn=cudnn, cuda=types.SimpleNamespace(matmul=types.SimpleNamespace())),
        nn=types.SimpleNamespace(functional=types.SimpleNamespace(conv2d=conv2d)),
        cuda=types.SimpleNamespace(is_available=lambda: True, synchronize=lambda: None,
                                   Event=lambda enable_timing=False: None))


@pytest.mark.parametrize("label, tf32, dtype, memory_format, tolerance", [
    ("torch-cuda", False, "float32", "contiguous", None),
    ("torch-cuda-tf32", True, "float32", "contiguous", contenders.LOW_PRECISION_TOLERANCE),
    ("torch-cuda-fp16", False, "float16", "channels_last", contenders.LOW_PRECISION_TOLERANCE),
])
def test_torch_cuda_peers_set_their_cudnn_flags_on_every_call(monkeypatch, label, tf32, dtype, memory_format,
                                                              tolerance):
    """cuDNN's flags are process-wide: a peer sets its own before each call, whatever another set last."""
    calls = []
    torch = _stand_in_torch(calls)
    monkeypatch.setitem(sys.modules, "torch", torch)
    peer = contenders.peer(label)
    assert (peer.device, peer.tolerance) == (contenders.GPU, tolerance)
    case = Case(LAYER["B"], "float32")
    call = peer.prepare(case, {"x": np.ones((1, 2, 4, 4), np.float32), "w": np.ones((3, 2, 3, 3), np.float32)})
    torch.backends.cudnn.allow_tf32 = not tf32  # another peer's setting
    assert call() == "result"
    assert calls == ["no_grad", {"tf32": tf32, "benchmark": True, "device": "cuda", "dtype": dtype,
                                 "format": (memory_format, memory_format)}]
    assert torch.backends.cuda.matmul.allow_tf32 is False
    tf32_case = Case(LAYER["B"], "tf32")  # float32 data, precision="tf32": every peer computes it in TF32
    inputs = {"x": np.ones((1, 2, 4, 4), np.float32), "w": np.ones((3, 2, 3, 3), np.float32)}
    if tolerance is None:
        calls.clear()
        peer.prepare(tf32_case, inputs)()
        assert calls[1]["tf32"] is True
    else:
        assert "float32 cases only" in peer.prepare(tf32_case, inputs)
        assert "float32 cases only" in peer.prepare(Case(LAYER["B"], "float64"), inputs)


def _synthetic_contender(label, device, result_offset=0.0, tolerance=None, kernel_seconds=None):
    def prepare(case, inputs):
        return lambda: inputs["x"][:, :1, :2, :2] + result_offset

    return contenders.Contender(label, device, lambda call: (call(), 0.004)[1], prepare, tolerance=tolerance,
                                kernel_clock=None if kernel_seconds is None else
                                lambda call: (call(), kernel_seconds)[1])


def test_runner_times_kernels_alone_and_applies_a_peers_tolerance(monkeypatch, tmp_path):
    """A GPU contender with a kernel clock gets kernel-only figures with their ceiling share; a
    low-precision peer within its tolerance is no disagreement, one beyond it is."""
    labels = {"gpuconv/cuda": _synthetic_contender("gpuconv/cuda", contenders.GPU, kernel_seconds=0.001),
              "torch-cuda-tf32": _synthetic_contender("torch-cuda-tf32", contenders.GPU, 0.01, tolerance=0.02),
              "torch-cuda": _synthetic_contender("torch-cuda", contenders.GPU, 0.01)}
    monkeypatch.setattr(runner, "by_label", lambda label: labels[label])
    monkeypatch.setattr(runner.ceilings, "gpu_gemm", lambda spec, dtype, method: {"rate": 1000.0, "what": "GEMM"})
    monkeypatch.setattr(runner, "_shared_ceilings", lambda *args: {})
    partial = []
    settings = runner.Settings.for_smoke(layers=["B"], backends=("cuda",), peers=("torch-cuda-tf32", "torch-cuda"))
    settings.kernel_time = True
    document = runner.run(settings, progress=lambda line: None, on_case=lambda doc: partial.append(len(doc["cases"])))
    (case,) = document["cases"]
    ours = case["results"]["gpuconv/cuda"]
    assert ours["time_s"] == pytest.approx(0.004) and ours["kernel"]["time_s"] == pytest.approx(0.001)
    assert ours["kernel"]["rate"] == pytest.approx(case["flops"] / 0.001 / 1e9)
    assert ours["kernel"]["ceiling_share"] == pytest.approx(ours["kernel"]["rate"] / 1000.0)
    assert all("kernel" not in figures for label, figures in case["results"].items() if label != "gpuconv/cuda")
    assert list(case["disagreements"]) == ["torch-cuda"], "tf32 within its tolerance, plain float32 beyond it"
    assert partial == [1]
    header, ours_row, *_ = (line.split("  ") for line in report.table(document["cases"]))
    cells = dict(zip([c.strip() for c in header if c.strip()], [c.strip() for c in ours_row if c.strip()]))
    assert cells["contender"] == "gpuconv/cuda"
    assert cells["kernel ms"] == "1" and cells["time ms"] == "4"


def test_bench_writes_the_json_after_every_case(monkeypatch, tmp_path):
    out = tmp_path / "partial.json"
    seen = []
    real = report.write_json

    def spy(document, path):
        seen.append(len(document["cases"]))
        real(document, path)

    monkeypatch.setattr("gpuconv.benchmark.cli.write_json", spy)
    assert main(["bench", "--smoke", "--backend", "numpy", "--peers", "none", "--layers", "F,max2",
                 "--json", str(out)]) == 0
    assert seen == [1, 2, 2], "after each case, then the finished document"
    assert len(json.loads(out.read_text())["cases"]) == 2


def test_overhead_command_measures_every_op_and_states_the_goals(tmp_path, capsys):
    """`bench --overhead --smoke` here: gpuconv/numpy always; the launch path with stubbed kernels
    (op.launches per call) where the emulator's backend is available; torch-cpu where installed."""
    out = tmp_path / "overhead.json"
    assert main(["bench", "--overhead", "--smoke", "--backend", "numpy", "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert [entry["op"] for entry in document["ops"]] == [op.name for op in overhead.OPS]
    measured = document["contenders"]["measured"]
    assert "gpuconv/numpy" in measured
    for entry in document["ops"]:
        assert not entry["errors"]
        for label in measured:
            figures = entry["results"][label]
            assert figures["us_per_call"] == pytest.approx(min(figures["rounds_cpu_us"])) and figures["us_per_call"] > 0
            assert figures["wall_us_per_call"] > 0
        goals = {g["goal"]: g for g in entry["goals"]}
        if "torch-cpu" in measured:
            ratio = entry["results"]["gpuconv/numpy"]["us_per_call"] / entry["results"]["torch-cpu"]["us_per_call"]
            assert goals["gpuconv/numpy <= 5x torch-cpu"]["value"] == pytest.approx(ratio)
        if overhead.LAUNCH_STUB in measured:
            launches = next(op.launches for op in overhead.OPS if op.name == entry["op"])
            per_launch = entry["results"][overhead.LAUNCH_STUB]["us_per_call"] / launches
            assert goals[f"{overhead.LAUNCH_STUB} <= 15 us per launch"]["value"] == pytest.approx(per_launch)
    text = capsys.readouterr().out
    assert "Host CPU time per call" in text and "conv2d 16ch" in text


def test_goals_from_synthetic_figures():
    results = {"gpuconv/numpy": {"us_per_call": 30.0}, "torch-cpu": {"us_per_call": 5.0},
               overhead.LAUNCH_STUB: {"us_per_call": 12.0}}
    goals = {g["goal"]: g for g in overhead.goals(results)}
    assert goals["gpuconv/numpy <= 5x torch-cpu"]["value"] == pytest.approx(6.0)
    assert not goals["gpuconv/numpy <= 5x torch-cpu"]["met"]
    assert goals[f"{overhead.LAUNCH_STUB} <= 15 us per launch"]["met"]
    split = {g["goal"]: g for g in overhead.goals({overhead.LAUNCH_STUB: {"us_per_call": 28.0}}, launches=2)}
    assert split[f"{overhead.LAUNCH_STUB} <= 15 us per launch"]["value"] == pytest.approx(14.0)


def test_the_stubbed_launch_path_launches_once_per_call_and_restores_the_kernels():
    from gpuconv.backends import BackendUnavailable, get_backend

    try:
        get_backend("cuda-emu")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    real = _kernels.get_function
    for op in overhead.OPS:
        with overhead.stubbed_kernels() as stub:
            call = overhead.gpuconv_call(op, "cuda-emu")
            call()
            call()
        assert stub.launches == 2 * op.launches, op.name
    assert _kernels.get_function is real
