"""gpuconv.torch: its ops match the float64 reference and torch.nn.functional (values and gradients) in
float16/32/64 and pass torch.autograd.gradcheck in float64; its layers are torch.nn's (constructor
arguments, state_dict both ways) computing what torch.nn computes; convert() swaps a model's layers in
place keeping its parameters."""
from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gpuconv.torch as gt
from gpuconv import _reference as ref

from gpuconv._tolerance import error_ratio
from support import assert_close, random_array

SEED = 4100
DTYPES = (torch.float16, torch.float32, torch.float64)


def _np_dtype(dtype):
    return np.dtype(str(dtype).removeprefix("torch."))


def _tensors(seed, shapes, dtype, requires_grad=True):
    """Random normal tensors (rounded once to dtype), as leaves that require grad."""
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(random_array(rng, s, _np_dtype(dtype))).requires_grad_(requires_grad) for s in shapes]


def _f64(t):
    return None if t is None else t.detach().numpy().astype(np.float64)


def _batched(a, unbatched):
    return a[None] if unbatched else a


def assert_matches_torch(actual, expected, dtype, what, truth=None):
    """Within twice the dtype's tolerance of torch's result (each is within one of the float64 truth).
    Given the truth, the band widens by torch's own error: PyTorch's CPU float16 kernels accumulate
    sums (overlapping windows, folded pads, reductions) in float16, beyond gpuconv's tolerance."""
    allowed = 2.0
    if truth is not None:
        allowed = 1 + max(1.0, error_ratio(_f64(expected), truth, _np_dtype(dtype)))
    ratio = error_ratio(_f64(actual), _f64(expected), _np_dtype(dtype))
    assert ratio <= allowed, f"{what}: {ratio:.3g} x the {dtype} tolerance from torch's result (allowed {allowed:.3g})"


def _torch_conv2d(x, w, b, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.nn.Conv2d's computation: a non-zero padding mode pads first (F.pad), then a plain conv."""
    if padding_mode != "zeros":
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        x, padding = F.pad(x, (pw, pw, ph, ph), mode=padding_mode), 0
    return F.conv2d(x, w, b, stride, padding, dilation, groups)


# (x shape, w shape, keyword arguments, whether torch.nn.functional expresses it)
CONV_CASES = [
    ((2, 4, 9, 8), (6, 2, 3, 3), dict(stride=2, padding=1, groups=2), True),
    ((1, 3, 10, 11), (4, 3, 2, 3), dict(padding="same", dilation=(2, 1)), True),
    ((2, 3, 7, 9), (5, 3, 3, 3), dict(stride=(1, 2), padding=(1, 2), padding_mode="reflect"), True),
    ((3, 8, 8), (4, 3, 3, 3), dict(padding=1, padding_mode="circular"), True),
    ((2, 3, 9, 10), (4, 3, 3, 3), dict(stride=2, padding="same", padding_mode="replicate"), False),
    ((1, 2, 7, 6), (3, 2, 3, 2), dict(padding=((0, 2), (1, 0)), dilation=2), False),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv2d_values_and_gradients(case, dtype):
    x_shape, w_shape, kwargs, torch_expresses = CONV_CASES[case]
    x, w, b = _tensors(SEED + case, (x_shape, w_shape, (w_shape[0],)), dtype)
    out = gt.conv2d(x, w, b, **kwargs)
    (g,) = _tensors(SEED + 50 + case, (tuple(out.shape),), dtype, requires_grad=False)
    out.backward(g)
    unbatched = len(x_shape) == 3
    x64, w64, b64, g64 = _batched(_f64(x), unbatched), _f64(w), _f64(b), _batched(_f64(g), unbatched)
    what = f"conv2d {kwargs} {dtype}"
    first = 0 if unbatched else slice(None)
    truth = {"out": ref.conv2d(x64, w64, b64, **kwargs)[first],
             "x.grad": ref.conv2d_input(x64.shape, w64, g64, **kwargs)[first],
             "w.grad": ref.conv2d_weight(x64, w64.shape, g64, **kwargs), "bias.grad": ref.conv2d_bias(g64)}
    mine = {"out": out.detach(), "x.grad": x.grad, "w.grad": w.grad, "bias.grad": b.grad}
    for name, value in mine.items():
        assert_close(value.numpy(), truth[name], _np_dtype(dtype), f"{what}: {name}")
    if torch_expresses:
        tx, tw, tb = (t.detach().clone().requires_grad_() for t in (x, w, b))
        expected = _torch_conv2d(tx, tw, tb, **kwargs)
        expected.backward(g)
        theirs = {"out": expected, "x.grad": tx.grad, "w.grad": tw.grad, "bias.grad": tb.grad}
        for name, value in mine.items():
            assert_matches_torch(value, theirs[name], dtype, f"{what}: {name}", truth[name])


# (x shape, w shape (C_in, C_out/groups, KH, KW), keyword arguments)
TRANSPOSE_CASES = [
    ((2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 4, 5, 5), (4, 2, 3, 2), dict(stride=(1, 2), padding=(1, 0), groups=2, dilation=(2, 1))),
    ((1, 2, 4, 4), (2, 3, 2, 2), dict(output_padding=2, dilation=3)),  # output_padding >= stride
    ((3, 6, 5), (3, 2, 3, 3), dict(stride=(2, 1), padding=(0, 1))),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", range(len(TRANSPOSE_CASES)))
def test_conv_transpose2d_values_and_gradients(case, dtype):
    """Values against the float64 reference; values and gradients against torch (gradients also in float64)."""
    x_shape, w_shape, kwargs = TRANSPOSE_CASES[case]
    x, w, b = _tensors(SEED + 100 + case, (x_shape, w_shape, (w_shape[1] * kwargs.get("groups", 1),)), dtype)
    out = gt.conv_transpose2d(x, w, b, **kwargs)
    (g,) = _tensors(SEED + 150 + case, (tuple(out.shape),), dtype, requires_grad=False)
    out.backward(g)
    unbatched = len(x_shape) == 3
    what = f"conv_transpose2d {kwargs} {dtype}"
    expected = ref.conv_transpose2d(_batched(_f64(x), unbatched), _f64(w), _f64(b), **kwargs)
    assert_close(out.detach().numpy(), expected[0] if unbatched else expected, _np_dtype(dtype), what)
    grads = {}
    for torch_dtype in (torch.float64, dtype):  # float64 first: the truth for the gradients
        tx, tw, tb = (t.detach().to(torch_dtype).requires_grad_() for t in (x, w, b))
        F.conv_transpose2d(tx, tw, tb, **kwargs).backward(g.to(torch_dtype))
        grads[torch_dtype] = {"x.grad": tx.grad, "w.grad": tw.grad, "b.grad": tb.grad}
    for name, mine in (("x.grad", x.grad), ("w.grad", w.grad), ("b.grad", b.grad)):
        assert mine.dtype == dtype
        assert_matches_torch(mine, grads[dtype][name], dtype, f"{what}: {name}", _f64(grads[torch.float64][name]))


MAX_POOL_CASES = [
    ((2, 3, 9, 10), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 11, 9), dict(kernel_size=(2, 3), stride=(2, 1), dilation=2)),
    ((3, 8, 8), dict(kernel_size=2)),
    ((1, 2, 7, 7), dict(kernel_size=3, stride=1, padding=1)),  # overlapping windows: gradients summed
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", range(len(MAX_POOL_CASES)))
def test_max_pool2d_values_indices_and_gradients(case, dtype):
    x_shape, kwargs = MAX_POOL_CASES[case]
    (x,) = _tensors(SEED + 200 + case, (x_shape,), dtype)
    out, indices = gt.max_pool2d(x, **kwargs, return_indices=True)
    assert not indices.requires_grad
    (g,) = _tensors(SEED + 250 + case, (tuple(out.shape),), dtype, requires_grad=False)
    out.backward(g)
    unbatched = len(x_shape) == 3
    x64, g64 = _batched(_f64(x), unbatched), _batched(_f64(g), unbatched)
    expected, expected_indices = ref.max_pool2d(x64, **kwargs)
    assert_close(_batched(out.detach().numpy(), unbatched), expected, _np_dtype(dtype), "max_pool2d")
    np.testing.assert_array_equal(_batched(indices.numpy(), unbatched), expected_indices)
    truth = ref.max_pool2d_input(g64, x64, **kwargs)
    assert_close(_batched(x.grad.numpy(), unbatched), truth, _np_dtype(dtype), f"max_pool2d {kwargs} {dtype}: x.grad")
    tx = x.detach().clone().requires_grad_()
    torch_out, torch_indices = F.max_pool2d(tx, **kwargs, return_indices=True)
    torch_out.backward(g)
    assert torch.equal(indices, torch_indices) and torch.equal(out, torch_out)
    assert_matches_torch(x.grad, tx.grad, dtype, f"max_pool2d {kwargs} {dtype}: x.grad",
                         truth[0] if unbatched else truth)


AVG_POOL_CASES = [
    ((2, 3, 9, 10), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((1, 2, 8, 7), dict(kernel_size=(2, 3), stride=1, divisor_override=5)),
    ((3, 7, 9), dict(kernel_size=3, padding=1, ceil_mode=True)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", range(len(AVG_POOL_CASES)))
def test_avg_pool2d_values_and_gradients(case, dtype):
    x_shape, kwargs = AVG_POOL_CASES[case]
    (x,) = _tensors(SEED + 300 + case, (x_shape,), dtype)
    out = gt.avg_pool2d(x, **kwargs)
    (g,) = _tensors(SEED + 350 + case, (tuple(out.shape),), dtype, requires_grad=False)
    out.backward(g)
    unbatched = len(x_shape) == 3
    x64, g64 = _batched(_f64(x), unbatched), _batched(_f64(g), unbatched)
    first = 0 if unbatched else slice(None)
    truth_out, truth_grad = ref.avg_pool2d(x64, **kwargs)[first], ref.avg_pool2d_input(g64, x64.shape, **kwargs)[first]
    assert_close(out.detach().numpy(), truth_out, _np_dtype(dtype), "avg_pool2d")
    assert_close(x.grad.numpy(), truth_grad, _np_dtype(dtype), f"avg_pool2d {kwargs} {dtype}: x.grad")
    tx = x.detach().clone().requires_grad_()
    torch_out = F.avg_pool2d(tx, **kwargs)
    torch_out.backward(g)
    assert_matches_torch(out, torch_out, dtype, "avg_pool2d", truth_out)
    assert_matches_torch(x.grad, tx.grad, dtype, f"avg_pool2d {kwargs} {dtype}: x.grad", truth_grad)


# ---- finite differences ---------------------------------------------------------------------------

GRADCHECK_CASES = [
    ("conv2d", ((1, 4, 6, 5), (4, 2, 3, 3), (4,)), dict(stride=2, padding="same", groups=2, padding_mode="reflect")),
    ("conv2d", ((2, 2, 5, 6), (3, 2, 2, 3), (3,)), dict(padding=((2, 0), (1, 1)), dilation=(1, 2))),
    ("conv2d", ((2, 6, 6), (3, 2, 3, 3), None), dict(stride=(2, 1), padding=2, padding_mode="circular")),
    ("conv2d", ((1, 2, 5, 5), (2, 2, 3, 3), (2,)), dict(padding=1, padding_mode="replicate")),
    ("conv_transpose2d", ((1, 4, 3, 4), (4, 2, 3, 3), (4,)), dict(stride=2, padding=1, output_padding=1, groups=2)),
    ("conv_transpose2d", ((2, 2, 3, 3), (2, 2, 2, 3), None), dict(output_padding=(2, 0), dilation=(3, 1))),
    ("conv_transpose2d", ((1, 2, 4, 3), (2, 3, 4, 3), (3,)), dict(stride=(2, 3), padding="same")),
    ("max_pool2d", ((2, 2, 7, 8),), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("max_pool2d", ((1, 2, 9, 7),), dict(kernel_size=2, stride=1, dilation=(2, 3))),
    ("avg_pool2d", ((2, 2, 7, 8),), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d", ((1, 3, 6, 6),), dict(kernel_size=(3, 2), stride=1, divisor_override=4)),
]


@pytest.mark.parametrize("case", range(len(GRADCHECK_CASES)),
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GRADCHECK_CASES)])
def test_gradcheck_float64(case):
    name, shapes, kwargs = GRADCHECK_CASES[case]
    inputs = [None if s is None else t for s, t in zip(shapes, _tensors(
        SEED + 400 + case, [s or (1,) for s in shapes], torch.float64))]
    op = getattr(gt, name)
    assert torch.autograd.gradcheck(lambda *args: op(*args, **kwargs), tuple(inputs), eps=1e-6, atol=1e-7,
                                    rtol=1e-5)


# ---- layers ---------------------------------------------------------------------------------------

# (torch.nn class, gpuconv.torch class, constructor arguments, input shape)
LAYER_CASES = [
    (nn.Conv2d, gt.Conv2d, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, groups=2),
     (2, 4, 9, 8)),
    (nn.Conv2d, gt.Conv2d, dict(in_channels=3, out_channels=5, kernel_size=(3, 2), padding="same", bias=False,
                                padding_mode="reflect", dilation=(1, 2)), (2, 3, 8, 9)),
    (nn.Conv2d, gt.Conv2d, dict(in_channels=2, out_channels=4, kernel_size=3, padding=(2, 1),
                                padding_mode="circular"), (2, 6, 7)),
    (nn.ConvTranspose2d, gt.ConvTranspose2d, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2,
                                                  padding=1, output_padding=1, groups=2), (2, 4, 5, 4)),
    (nn.MaxPool2d, gt.MaxPool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (2, 3, 9, 8)),
    (nn.MaxPool2d, gt.MaxPool2d, dict(kernel_size=2, dilation=2, return_indices=True), (1, 2, 9, 9)),
    (nn.AvgPool2d, gt.AvgPool2d, dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), (2, 3, 9, 8)),
    (nn.AvgPool2d, gt.AvgPool2d, dict(kernel_size=2, ceil_mode=True, divisor_override=3), (2, 3, 7, 7)),
]


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=str)
@pytest.mark.parametrize("case", range(len(LAYER_CASES)))
def test_layer_computes_what_the_torch_layer_computes(case, dtype):
    torch_class, gpuconv_class, kwargs, x_shape = LAYER_CASES[case]
    torch.manual_seed(SEED + case)
    with_dtype = dict(kwargs, dtype=dtype) if "in_channels" in kwargs else kwargs  # pooling layers take no dtype
    theirs = torch_class(**with_dtype)
    mine = gpuconv_class(**with_dtype)
    assert isinstance(mine, torch_class)
    mine.load_state_dict(theirs.state_dict())
    (x,) = _tensors(SEED + 500 + case, (x_shape,), dtype)
    tx = x.detach().clone().requires_grad_()
    out, torch_out = mine(x), theirs(tx)
    if kwargs.get("return_indices"):
        assert torch.equal(out[1], torch_out[1])
        out, torch_out = out[0], torch_out[0]
    (g,) = _tensors(SEED + 550 + case, (tuple(out.shape),), dtype, requires_grad=False)
    out.backward(g)
    torch_out.backward(g)
    what = f"{gpuconv_class.__name__}({kwargs}) {dtype}"
    assert_matches_torch(out, torch_out, dtype, what)
    assert_matches_torch(x.grad, tx.grad, dtype, f"{what}: input grad")
    for (name, p), q in zip(mine.named_parameters(), theirs.parameters()):
        assert_matches_torch(p.grad, q.grad, dtype, f"{what}: {name}.grad")


def _checkpoint(module):
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer)


@pytest.mark.parametrize("torch_class, gpuconv_class, kwargs",
                         [(nn.Conv2d, gt.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3)),
                          (nn.Conv2d, gt.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, bias=False)),
                          (nn.ConvTranspose2d, gt.ConvTranspose2d, dict(in_channels=4, out_channels=2, kernel_size=2))])
def test_state_dict_round_trips_both_ways(torch_class, gpuconv_class, kwargs):
    torch.manual_seed(SEED)
    theirs, mine = torch_class(**kwargs), gpuconv_class(**kwargs)
    mine.load_state_dict(_checkpoint(theirs))  # strict: the same keys
    assert list(mine.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert torch.equal(mine.state_dict()[key], value)
    torch.manual_seed(SEED + 1)
    mine, theirs = gpuconv_class(**kwargs), torch_class(**kwargs)
    theirs.load_state_dict(_checkpoint(mine))
    for key, value in mine.state_dict().items():
        assert torch.equal(theirs.state_dict()[key], value)


def test_conv_transpose_layer_takes_output_size():
    torch.manual_seed(SEED)
    theirs = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    mine = gt.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    mine.load_state_dict(theirs.state_dict())
    (x,) = _tensors(SEED, ((1, 3, 5, 6),), torch.float32, requires_grad=False)
    out = mine(x, output_size=(10, 12))
    assert out.shape == (1, 2, 10, 12)
    assert_matches_torch(out, theirs(x, output_size=(10, 12)), torch.float32, "ConvTranspose2d output_size")


def test_layers_take_a_backend_and_show_it():
    layer = gt.Conv2d(2, 3, 3, padding=1, backend="numpy", device="cpu", dtype=torch.float64)
    assert layer.backend == "numpy" and layer.weight.dtype == torch.float64
    assert repr(layer) == "Conv2d(2, 3, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), backend='numpy')"
    assert "backend" not in repr(gt.MaxPool2d(2))
    with pytest.raises(ValueError, match="backend='no-such'"):
        gt.AvgPool2d(2, backend="no-such")(torch.ones(1, 1, 4, 4))


# ---- convert ----------------------------------------------------------------------------------------


class _OwnConv(nn.Conv2d):
    """A user's subclass with its own forward: convert() must leave it alone."""

    def forward(self, input):
        return super().forward(input) * 2


def _model():
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, padding_mode="replicate"), nn.ReLU()),
        nn.AvgPool2d(2, ceil_mode=True), nn.ConvTranspose2d(6, 3, 2, stride=2), _OwnConv(3, 2, 1),
        nn.Flatten(), nn.Linear(2 * 4 * 4, 5))


def test_convert_swaps_layers_in_place_keeping_parameters():
    model = _model()
    original = copy.deepcopy(model)
    layers = list(model.modules())
    parameters = list(model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert gt.convert(model, backend="numpy") is model
    assert list(model.modules()) == layers and all(a is b for a, b in zip(model.parameters(), parameters))
    assert [type(m) for m in (model[0], model[2], model[3][0], model[4], model[5], model[6])] == \
        [gt.Conv2d, gt.MaxPool2d, gt.Conv2d, gt.AvgPool2d, gt.ConvTranspose2d, _OwnConv]
    assert model[0].backend == "numpy"
    original.load_state_dict(model.state_dict())
    x = torch.from_numpy(random_array(np.random.default_rng(SEED), (3, 1, 8, 8), np.float32))
    loss, expected_loss = model(x).square().sum(), original(x).square().sum()
    loss.backward()
    expected_loss.backward()
    assert_matches_torch(loss, expected_loss, torch.float32, "converted model's loss")
    for (name, p), q in zip(model.named_parameters(), original.parameters()):
        assert_matches_torch(p.grad, q.grad, torch.float32, f"converted model: {name}.grad")
    optimizer.step()  # the optimizer still holds the model's parameters
    assert not torch.equal(model[0].weight, original[0].weight)


def test_convert_sets_the_backend_of_gpuconv_layers_and_rejects_non_modules():
    layer = gt.Conv2d(1, 1, 1)
    assert gt.convert(layer, backend="numpy").backend == "numpy"
    assert type(gt.convert(nn.MaxPool2d(2))) is gt.MaxPool2d
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        gt.convert(lambda x: x)


def test_ops_and_gradients_on_every_backend(grad_backend):
    """A conv -> max pool -> conv_transpose -> avg pool chain on CPU tensors with backend= each backend:
    values and gradients of torch autograd's float64 computation, within float32's tolerance."""
    x, w, wt, b = _tensors(SEED + 700, ((2, 3, 9, 8), (4, 3, 3, 3), (4, 2, 2, 2), (4,)), torch.float32)

    def chain(ops, x, w, wt, b, **backend):
        y = ops.conv2d(x, w, b, padding=1, **backend)
        y = ops.max_pool2d(y, 3, stride=2, padding=1, **backend)
        y = ops.conv_transpose2d(y, wt, stride=2, **backend)
        return ops.avg_pool2d(y, 2, ceil_mode=True, **backend)

    out = chain(gt, x, w, wt, b, backend=grad_backend)
    (g,) = _tensors(SEED + 701, (tuple(out.shape),), torch.float32, requires_grad=False)
    out.backward(g)
    inputs64 = [t.detach().double().requires_grad_() for t in (x, w, wt, b)]
    expected = chain(F, *inputs64)
    expected.backward(g.double())
    assert_close(out.detach().numpy(), expected.detach().numpy(), np.float32, f"chain on {grad_backend}")
    for mine, theirs, name in zip((x, w, wt, b), inputs64, ("x", "w", "wt", "b")):
        assert_close(mine.grad.numpy(), theirs.grad.numpy(), np.float32, f"chain on {grad_backend}: {name}.grad")


@pytest.mark.gpu
def test_gpu_autograd_and_layers_on_cuda_tensors(torch_cuda):
    x, w, b = (t.detach().to(torch_cuda).requires_grad_() for t in
               _tensors(SEED + 800, ((2, 3, 7, 6), (4, 3, 3, 3), (4,)), torch.float64))
    assert torch.autograd.gradcheck(lambda x, w, b: gt.avg_pool2d(gt.max_pool2d(gt.conv2d(x, w, b, padding=1), 2), 2,
                                                                  ceil_mode=True), (x, w, b))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.ConvTranspose2d(4, 2, 2, stride=2))
    model = model.to(torch_cuda, torch.float64)
    original = copy.deepcopy(model)
    gt.convert(model)
    loss, expected_loss = model(x).square().sum(), original(x).square().sum()
    loss.backward()
    expected_loss.backward()
    assert loss.device == x.device
    assert_matches_torch(loss.cpu(), expected_loss.cpu(), torch.float64, "converted model on CUDA")
    for p, q in zip(model.parameters(), original.parameters()):
        assert_matches_torch(p.grad.cpu(), q.grad.cpu(), torch.float64, "converted model on CUDA: grad")
