"""Torch tensors given to gpuconv's top-level ops come back as torch tensors of the same device, with the
values of the NumPy call; unsupported tensors are a clear TypeError naming the argument; CPU tensors are
viewed, not copied; the CUDA path (DLPack to CuPy on torch's current stream) is checked against stand-ins
for CuPy and torch.cuda here and for real on a GPU."""
from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import gpuconv
from gpuconv import _reference as ref
from gpuconv import _torch_interop, grad
from gpuconv.backends import get_backend

from support import as_reference_input, assert_close, random_array

RNG_SEED = 20260


def _data(*shapes, dtype=np.float32, seed=RNG_SEED):
    rng = np.random.default_rng(seed)
    return [random_array(rng, s, dtype) for s in shapes]


# Every public op that takes arrays: (name, function, NumPy arguments, keyword arguments).
X, W, B = _data((2, 4, 9, 8), (6, 2, 3, 3), (6,))
X1, W1 = _data((2, 4, 11), (6, 4, 3))
IMAGE, KERNEL = _data((9, 7), (3, 4))
WT, WT1 = _data((4, 3, 3, 2), (4, 3, 3))  # transposed-conv weights (C_in, C_out/groups, ...)
GO, GO1 = _data((2, 6, 5, 4), (2, 6, 11))  # grad_output of conv2d(X, W, stride=2, padding="same", groups=2), conv1d
GP, GP1 = _data((2, 4, 5, 4), (2, 4, 5))  # grad_output of 3x3 stride-2 pad-1 2-D pooling of X, k=2 1-D pooling of X1
CONV = dict(stride=2, padding="same", groups=2, padding_mode="reflect")
OPS = [
    ("conv2d", gpuconv.conv2d, (X, W, B), CONV),
    ("conv1d", gpuconv.conv1d, (X1, W1), dict(padding="same", dilation=2)),
    ("max_pool2d", gpuconv.max_pool2d, (X, 3), dict(stride=2, padding=1, ceil_mode=True, return_indices=True)),
    ("avg_pool2d", gpuconv.avg_pool2d, (X, 3), dict(stride=2, padding=1, count_include_pad=False)),
    ("max_pool1d", gpuconv.max_pool1d, (X1, 2), dict(return_indices=True)),
    ("avg_pool1d", gpuconv.avg_pool1d, (X1, 3), dict(stride=2)),
    ("pad2d", gpuconv.pad2d, (X, ((1, 2), (3, 0))), dict(mode="circular")),
    ("correlate2d", gpuconv.correlate2d, (IMAGE, KERNEL), dict(mode="same", boundary="symm")),
    ("convolve2d", gpuconv.convolve2d, (IMAGE, KERNEL), dict(mode="full", boundary="wrap")),
    ("conv_transpose2d", gpuconv.conv_transpose2d, (X, WT), dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose1d", gpuconv.conv_transpose1d, (X1, WT1), dict(stride=2)),
    ("grad.conv2d_input", grad.conv2d_input, (X.shape, W, GO), CONV),
    ("grad.conv2d_weight", grad.conv2d_weight, (X, W.shape, GO), CONV),
    ("grad.conv2d_bias", grad.conv2d_bias, (GO,), {}),
    ("grad.max_pool2d_input", grad.max_pool2d_input, (GP, X, 3), dict(stride=2, padding=1)),
    ("grad.avg_pool2d_input", grad.avg_pool2d_input, (GP, X.shape, 3), dict(stride=2, padding=1)),
    ("grad.pad2d_input", grad.pad2d_input, (X, 1), dict(mode="reflect")),
    ("grad.conv1d_input", grad.conv1d_input, (X1.shape, W1, GO1), dict(padding=1)),
    ("grad.conv1d_weight", grad.conv1d_weight, (X1, W1.shape, GO1), dict(padding=1)),
    ("grad.conv1d_bias", grad.conv1d_bias, (GO1,), {}),
    ("grad.max_pool1d_input", grad.max_pool1d_input, (GP1, X1, 2), {}),
    ("grad.avg_pool1d_input", grad.avg_pool1d_input, (GP1, X1.shape, 2), {}),
]


def _tensors(args):
    return tuple(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args)


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("name, op, args, kwargs", OPS, ids=[op[0] for op in OPS])
def test_torch_tensors_in_torch_tensors_out(name, op, args, kwargs):
    expected = _as_tuple(op(*args, **kwargs))
    got = _as_tuple(op(*_tensors(args), **kwargs))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert type(g) is torch.Tensor, f"{name} returned {type(g).__name__} for torch tensors"
        assert g.device.type == "cpu"
        np.testing.assert_array_equal(g.numpy(), e, err_msg=name)


def test_every_public_op_taking_arrays_is_covered():
    """A public op missing from OPS could return NumPy for tensors unnoticed."""
    not_array_ops = {"available_backends", "use_backend", "precision", "set_num_threads", "set_workspace_limit"}
    public = {n: getattr(gpuconv, n) for n in gpuconv.__all__}
    callables = {n for n, v in public.items() if callable(v) and not isinstance(v, type)}
    assert callables - not_array_ops - {name for name, *_ in OPS} == set()
    assert {f"grad.{n}" for n in grad.__all__} - {name for name, *_ in OPS} == set()


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_tensor_dtypes_match_the_reference(dtype):
    x, w, b = (torch.from_numpy(a).to(dtype) for a in _data((2, 3, 10, 9), (5, 3, 3, 3), (5,), dtype=np.float64))
    out = gpuconv.conv2d(x, w, b, padding=1)
    assert out.dtype == dtype
    np_dtype = np.dtype(str(dtype).removeprefix("torch."))
    assert_close(out.numpy(), ref.conv2d(*(as_reference_input(t.numpy()) for t in (x, w, b)), padding=1), np_dtype)


def test_integer_and_bool_tensors_are_promoted_like_numpy():
    x = torch.arange(2 * 9 * 9).reshape(1, 2, 9, 9) % 7
    out = gpuconv.avg_pool2d(x, 3)
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), gpuconv.avg_pool2d(x.numpy(), 3))
    assert gpuconv.max_pool2d(torch.ones(1, 1, 4, 4, dtype=torch.bool), 2).dtype == torch.float64


def test_strided_tensors_give_the_contiguous_result():
    x, w = (torch.from_numpy(a) for a in _data((2, 3, 12, 10), (4, 3, 3, 3)))
    expected = gpuconv.conv2d(x, w, padding=1)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(gpuconv.conv2d(channels_last, w, padding=1).numpy(), expected.numpy())
    transposed = x.transpose(2, 3).contiguous().transpose(2, 3)
    np.testing.assert_array_equal(gpuconv.conv2d(transposed, w, padding=1).numpy(), expected.numpy())
    unbatched = gpuconv.conv2d(x[1], w, padding=1)
    assert unbatched.shape == (4, 12, 10)
    np.testing.assert_array_equal(unbatched.numpy(), expected[1].numpy())


def test_numpy_and_tensor_arguments_mix_and_give_a_tensor():
    x, w = _data((1, 2, 6, 6), (3, 2, 3, 3))
    out = gpuconv.conv2d(x, torch.from_numpy(w))
    assert type(out) is torch.Tensor
    np.testing.assert_array_equal(out.numpy(), gpuconv.conv2d(x, w))


def test_keyword_tensor_arguments():
    x, w, b = _data((1, 2, 6, 6), (3, 2, 3, 3), (3,))
    out = gpuconv.conv2d(x=torch.from_numpy(x), w=torch.from_numpy(w), bias=torch.from_numpy(b))
    np.testing.assert_array_equal(out.numpy(), gpuconv.conv2d(x, w, b))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.complex64, torch.float8_e4m3fn])
def test_unsupported_tensor_dtypes_name_the_argument(dtype):
    x = torch.ones(1, 2, 5, 5)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(TypeError, match=rf"^w has dtype {name} \(a torch tensor\): supported are float16"):
        gpuconv.conv2d(x, torch.ones(3, 2, 3, 3).to(dtype))
    with pytest.raises(TypeError, match=rf"^x has dtype {name} \(a torch tensor\)"):
        gpuconv.max_pool2d(x.to(dtype), 2)


def test_other_devices_and_layouts_are_type_errors():
    with pytest.raises(TypeError, match=r"^x is a torch tensor on device meta: gpuconv runs CPU and CUDA tensors"):
        gpuconv.avg_pool2d(torch.ones(1, 1, 4, 4, device="meta"), 2)
    with pytest.raises(TypeError, match=r"^x is a torch tensor with layout torch.sparse_coo"):
        gpuconv.avg_pool2d(torch.ones(1, 1, 4, 4).to_sparse(), 2)


def test_tensors_on_two_devices_are_a_type_error():
    tensors = {"x": torch.ones(1), "w": torch.ones(1, device="meta")}
    with pytest.raises(TypeError, match=r"^w is on meta but x is on cpu"):
        _torch_interop._common_device(tensors)


def test_a_tensor_requiring_grad_is_refused_unless_grad_mode_is_off():
    x = torch.ones(1, 2, 5, 5)
    w = torch.ones(3, 2, 3, 3, requires_grad=True)
    with pytest.raises(TypeError, match=r"^w requires grad: gpuconv.conv2d does not record autograd history; "
                                        r"use gpuconv.torch"):
        gpuconv.conv2d(x, w)
    with pytest.raises(TypeError, match=r"^grad_output requires grad: gpuconv.grad.conv2d_bias does not"):
        gpuconv.grad.conv2d_bias(w)
    with torch.no_grad():
        out = gpuconv.conv2d(x, w)
    assert not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), np.full((1, 3, 3, 3), 18.0, np.float32))


def test_cpu_tensors_are_viewed_not_copied(monkeypatch):
    """The backend gets a view of the tensor's memory, and the tensor returned views the backend's result."""
    backend = get_backend("numpy")
    seen = {}
    real_avg_pool2d = type(backend).avg_pool2d

    def spy(self, x, spec):
        seen["input"] = x.__array_interface__["data"][0]
        seen["output"] = real_avg_pool2d(self, x, spec)
        return seen["output"]

    monkeypatch.setattr(type(backend), "avg_pool2d", spy)
    x = torch.from_numpy(_data((2, 3, 8, 8))[0])[:, 1:]  # a strided view
    out = gpuconv.avg_pool2d(x, 2, backend="numpy")
    assert seen["input"] == x.data_ptr()
    assert out.data_ptr() == seen["output"].__array_interface__["data"][0]
    flipped = np.arange(6.0).reshape(2, 3)[::-1]  # torch.from_numpy refuses negative strides: copied
    np.testing.assert_array_equal(_torch_interop._to_tensors(torch, flipped).numpy(), flipped)


def test_importing_gpuconv_does_not_import_torch():
    code = "import sys, gpuconv; gpuconv.conv2d([[[[1.0]]]], [[[[2.0]]]]); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---- the CUDA path ---------------------------------------------------------------------------------


class _FakeCupy(types.ModuleType):
    """Records what gpuconv asks of CuPy: the current device and stream at each DLPack import."""

    def __init__(self):
        super().__init__("cupy")
        self.events = []
        self.device = None
        self.stream = None
        fake = self

        class Device:
            def __init__(self, index):
                self.index = index

            def __enter__(self):
                self.previous, fake.device = fake.device, self.index
                fake.events.append(("device", self.index))

            def __exit__(self, *exc):
                fake.device = self.previous

        class ExternalStream:
            def __init__(self, ptr, device_id):
                self.ptr, self.device_id = ptr, device_id

            def __enter__(self):
                self.previous, fake.stream = fake.stream, (self.ptr, self.device_id)
                fake.events.append(("stream", self.ptr, self.device_id))

            def __exit__(self, *exc):
                fake.stream = self.previous

        self.cuda = types.SimpleNamespace(Device=Device, ExternalStream=ExternalStream)

    def from_dlpack(self, tensor):
        self.events.append(("from_dlpack", tensor.device.index, self.device, self.stream))
        return "cupy array"


def test_cuda_tensors_go_through_dlpack_on_torchs_current_stream(monkeypatch):
    """Without a GPU: with stand-ins for CuPy and torch.cuda, the CUDA path makes the tensor's device
    current for torch and CuPy, sets CuPy's current stream to torch's current stream of that device,
    imports through cupy.from_dlpack and exports through torch.from_dlpack inside that scope."""
    cupy = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    torch_devices = []

    class TorchDevice:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            torch_devices.append(self.device)

        def __exit__(self, *exc):
            torch_devices.pop()

    streams = {0: 0x1000, 1: 0x2000}
    monkeypatch.setattr(torch.cuda, "device", TorchDevice)
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda device: types.SimpleNamespace(cuda_stream=streams[torch.device(device).index]))
    exported = []
    monkeypatch.setattr(torch, "from_dlpack",
                        lambda a: exported.append((a, cupy.device, cupy.stream, list(torch_devices))) or "tensor")
    device = torch.device("cuda", 1)
    tensor = types.SimpleNamespace(device=device)

    with _torch_interop._device_scope(torch, device):
        assert torch_devices == [device]
        assert _torch_interop._to_array(tensor) == "cupy array"
        fake_cupy_array = type("ndarray", (), {"__module__": "cupy"})()
        assert _torch_interop._to_tensors(torch, (fake_cupy_array,)) == ("tensor",)
    assert cupy.events == [("device", 1), ("stream", 0x2000, 1), ("from_dlpack", 1, 1, (0x2000, 1))]
    assert exported == [(fake_cupy_array, 1, (0x2000, 1), [device])]
    assert torch_devices == [] and cupy.device is None and cupy.stream is None


def test_cuda_tensors_without_cupy_are_a_type_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(TypeError, match=r"CUDA tensors need CuPy: pip install 'gpuconv\[cuda12\]'"):
        _torch_interop._device_scope(torch, torch.device("cuda", 0))


@pytest.mark.gpu
def test_gpu_cuda_tensors_come_back_on_the_device_without_copies(torch_cuda, monkeypatch):
    import cupy

    x, w, b = (torch.from_numpy(a).to(torch_cuda) for a in _data((2, 4, 17, 19), (6, 4, 3, 3), (6,)))
    imported = []
    real_from_dlpack = cupy.from_dlpack
    monkeypatch.setattr(cupy, "from_dlpack", lambda t: imported.append(t.data_ptr()) or real_from_dlpack(t))
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = gpuconv.conv2d(x, w, b, padding=1)
        pooled, indices = gpuconv.max_pool2d(out, 2, return_indices=True)
    stream.synchronize()
    assert imported[:3] == [x.data_ptr(), w.data_ptr(), b.data_ptr()]
    assert out.device == x.device and pooled.device == x.device and indices.dtype == torch.int64
    expected = ref.conv2d(*(as_reference_input(t.cpu().numpy()) for t in (x, w, b)), padding=1)
    assert_close(out.cpu().numpy(), expected, np.float32, "cuda tensors conv2d")
    assert torch.equal(pooled, torch.nn.functional.max_pool2d(out, 2))
