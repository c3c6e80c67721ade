"""The benchmark cases: conv layers A-H (the table in docs/performance.md) and two pooling shapes,
max and avg; and, run only when named (the GPU check does), B-D and the k3 s2 pooling at batch 128.

A case is one layer in one dtype: float16, float32, float64, or "tf32" (float32 data computed with
precision="tf32", TF32 tensor cores where a contender has them), forward or backward (a conv
layer's backward pass: the gradients of its input and weights from an output gradient, dx + dw).
Every layer also has a tiny "smoke" version with the same kernel, stride, padding and groups,
small enough for the CUDA emulator to run in a moment.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import _geometry as geometry

CONV = "conv2d"
TF32 = "tf32"  # a case "dtype": float32 arrays, precision="tf32"
MAX_POOL = "max_pool2d"
AVG_POOL = "avg_pool2d"


@dataclass(frozen=True)
class Layer:
    name: str
    title: str
    op: str  # CONV, MAX_POOL or AVG_POOL
    x_shape: tuple[int, int, int, int]
    kernel: tuple[int, int]
    stride: int = 1
    padding: int = 0
    out_channels: int = 0  # conv only
    groups: int = 1  # conv only
    dtypes: tuple[str, ...] = ("float32",)
    default: bool = True  # run when no layer is named; the batch-128 layers run only when named (GPU runs)

    @property
    def w_shape(self) -> tuple[int, int, int, int] | None:
        if self.op != CONV:
            return None
        return (self.out_channels, self.x_shape[1] // self.groups) + self.kernel


@dataclass(frozen=True)
class Case:
    layer: Layer
    dtype: str
    backward: bool = False  # conv layers only: dx + dw from an output gradient

    @property
    def label(self) -> str:
        return f"{self.layer.name} {self.dtype}" + (" backward" if self.backward else "")

    @property
    def array_dtype(self) -> str:
        return "float32" if self.dtype == TF32 else self.dtype

    @property
    def precision(self) -> str:
        """gpuconv's precision= for this case (PyTorch's allow_tf32 on a GPU)."""
        return "tf32" if self.dtype == TF32 else "highest"

    @property
    def spec(self):
        layer = self.layer
        if layer.op == CONV:
            return geometry.conv_spec(layer.x_shape, layer.w_shape, layer.stride, layer.padding, 1,
                                      layer.groups, "zeros")
        return geometry.pool_spec(layer.x_shape, layer.kernel, layer.stride, layer.padding, 1, False)

    @property
    def flops(self) -> int | None:
        """2*N*F*(C/groups)*KH*KW*OH*OW for a conv, twice that backward (dx and dw); None for pooling."""
        if self.layer.op != CONV:
            return None
        return self.spec.flops * (2 if self.backward else 1)

    @property
    def nbytes(self) -> int:
        """Bytes read and written once: input (and weights) plus output."""
        itemsize = np.dtype(self.array_dtype).itemsize
        shapes = [self.layer.x_shape, self.spec.out_shape] + ([self.layer.w_shape] if self.layer.op == CONV else [])
        return itemsize * sum(int(np.prod(s)) for s in shapes)

    def inputs(self, seed: int) -> dict:
        """{"x": input, "w": weights or None, "grad": output gradient (backward only)}: seeded
        normal data, weights scaled by 1/sqrt(fan-in) so that outputs stay near unit scale."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.layer.x_shape).astype(self.array_dtype)
        w_shape = self.layer.w_shape
        w = None if w_shape is None else \
            (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(self.array_dtype)
        found = {"x": x, "w": w}
        if self.backward:
            found["grad"] = rng.standard_normal(self.spec.out_shape).astype(self.array_dtype)
        return found

    def describe(self) -> str:
        layer = self.layer
        text = "x".join(map(str, layer.x_shape))
        if layer.op == CONV:
            text += f" -> {layer.out_channels}"
            if layer.groups > 1:
                text += f" g{layer.groups}"
        text += f" k{layer.kernel[0]}x{layer.kernel[1]}"
        if layer.stride != 1 or layer.op != CONV:
            text += f" s{layer.stride}"
        if layer.padding:
            text += f" p{layer.padding}"
        return text


def _conv(name, title, x_shape, out_channels, k, stride=1, padding=0, groups=1, dtypes=("float32",)):
    return Layer(name, title, CONV, x_shape, (k, k), stride, padding, out_channels, groups, dtypes)


def _pool(name, title, op, x_shape, k, stride, padding=0):
    return Layer(name, title, op, x_shape, (k, k), stride, padding)


def _batch128(layer: Layer, name: str) -> Layer:
    """The layer at batch 128 (in its dtypes but float64), run only when named: GPU-sized work."""
    return dataclasses.replace(layer, name=name, title=f"{layer.title}, batch 128", x_shape=(128,) + layer.x_shape[1:],
                               dtypes=tuple(d for d in layer.dtypes if d != "float64"), default=False)


BOTH = ("float32", "float64")
# The GEMM-shaped layers also run in float16 and TF32 (tensor cores on a GPU).
TENSOR_CORE = ("float32", "float16", TF32)

LAYERS = (
    _conv("A", "7x7 stride-2 stem", (8, 3, 224, 224), 64, 7, stride=2, padding=3, dtypes=TENSOR_CORE),
    _conv("B", "ResNet 3x3, 64 channels", (8, 64, 56, 56), 64, 3, padding=1, dtypes=BOTH + TENSOR_CORE[1:]),
    _conv("C", "ResNet 3x3, 128 channels", (8, 128, 28, 28), 128, 3, padding=1, dtypes=TENSOR_CORE),
    _conv("D", "ResNet 3x3, 256 channels", (8, 256, 14, 14), 256, 3, padding=1, dtypes=TENSOR_CORE),
    _conv("E", "small CNN 5x5 (MNIST-like)", (32, 1, 28, 28), 32, 5),
    _conv("F", "one single-channel image 3x3", (1, 1, 512, 512), 1, 3, dtypes=BOTH),
    _conv("G", "large 3-channel image 3x3", (1, 3, 1024, 1024), 16, 3, padding=1),
    _conv("H", "depthwise 3x3", (8, 64, 56, 56), 64, 3, padding=1, groups=64),
    _pool("max3", "max pool k3 s2 p1", MAX_POOL, (8, 64, 112, 112), 3, 2, 1),
    _pool("avg3", "avg pool k3 s2 p1", AVG_POOL, (8, 64, 112, 112), 3, 2, 1),
    _pool("max2", "max pool k2 s2", MAX_POOL, (8, 64, 56, 56), 2, 2),
    _pool("avg2", "avg pool k2 s2", AVG_POOL, (8, 64, 56, 56), 2, 2),
)
_BY_NAME = {layer.name: layer for layer in LAYERS}
LAYERS += tuple(_batch128(_BY_NAME[name], f"{name}128") for name in "BCD") + \
    tuple(_batch128(_BY_NAME[name], f"{name}_128") for name in ("max3", "avg3"))

# Tiny inputs of the same character (kernel, stride, padding, groups; one or several channels).
SMOKE_SHAPES = {
    "A": ((1, 3, 16, 16), 4), "B": ((2, 4, 8, 8), 4), "C": ((1, 6, 6, 6), 6), "D": ((1, 8, 5, 5), 8),
    "E": ((2, 1, 9, 9), 3), "F": ((1, 1, 12, 12), 1), "G": ((1, 3, 12, 12), 2), "H": ((1, 4, 8, 8), 4),
    "max3": ((1, 2, 9, 9), 0), "avg3": ((1, 2, 9, 9), 0), "max2": ((1, 2, 8, 8), 0), "avg2": ((1, 2, 8, 8), 0),
}
SMOKE_SHAPES.update({f"{name}128": ((4,) + SMOKE_SHAPES[name][0][1:], SMOKE_SHAPES[name][1]) for name in "BCD"})
SMOKE_SHAPES.update({f"{name}_128": ((4,) + SMOKE_SHAPES[name][0][1:], 0) for name in ("max3", "avg3")})


def smoke(layer: Layer) -> Layer:
    x_shape, out_channels = SMOKE_SHAPES[layer.name]
    groups = x_shape[1] if layer.groups > 1 else 1
    return dataclasses.replace(layer, x_shape=x_shape, out_channels=out_channels, groups=groups)


def select_cases(names=None, dtypes=("float32",), use_smoke=False, batch=None, backward=False) -> list[Case]:
    """The cases of the named layers (when None, every default one: not the batch-128 layers) in
    each dtype the layer is measured in; `batch` replaces the conv layers' N (the tensor-core
    targets are set at batch 128); backward: the backward pass of the conv layers among them."""
    by_name = {layer.name: layer for layer in LAYERS}
    unknown = [n for n in names or () if n not in by_name]
    if unknown:
        raise ValueError(f"--layers: unknown layer(s) {unknown}; expected names from {tuple(by_name)}")
    layers = [by_name[n] for n in names] if names else [layer for layer in LAYERS if layer.default]
    if backward:
        layers = [layer for layer in layers if layer.op == CONV]
    if use_smoke:
        layers = [smoke(layer) for layer in layers]
    if batch:
        layers = [dataclasses.replace(layer, x_shape=(batch,) + layer.x_shape[1:]) if layer.op == CONV else layer
                  for layer in layers]
    return [Case(layer, dtype, backward) for dtype in dtypes for layer in layers if dtype in layer.dtypes]
