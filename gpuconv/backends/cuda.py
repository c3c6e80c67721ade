"""The CUDA backends: launch logic for the kernels in cuda/*.cu.

One launcher serves two backends: "cuda" runs the kernels on a GPU through CuPy; "cuda-emu"
runs the very same kernels, grids, block sizes and argument lists in the CPU emulator
(gpuconv.emulator), NumPy arrays standing in for device memory. What differs between the two
is isolated in `_Device` (array module, module loading, shared-memory limit).

Conv algorithm choice ("auto"): implicit GEMM when a group is GEMM-shaped enough to fill its
tiles, i.e. at least IGEMM_MIN_FILTERS filters per group and a reduction (C/groups*KH*KW) of
at least IGEMM_MIN_REDUCTION taps; otherwise the direct kernel (few channels, image filters,
depthwise and small grouped layers), where a GEMM tile would be mostly padding. A GEMM-shaped
layer runs on tensor cores (implicit_gemm_tc, _tensor_cores.py) where they apply: float16, and
float32 when the call allows TF32. The SIMT GEMM's tiling and split-K come from the device's SM
count (cuda_gemm.py). The gradients are in cuda_grad.py.
"""
from __future__ import annotations

import contextlib
import functools
import operator

import numpy as np

from .. import _kernel_params as params
from .. import _kernels
from .._memo import BoundedCache
from . import BackendUnavailable, _tensor_cores, cuda_gemm, is_cupy_array
from .cuda_grad import CudaGradients

ALGORITHMS = ("auto", "direct", "implicit_gemm", _tensor_cores.ALGORITHM)
IGEMM_MIN_FILTERS = 16
IGEMM_MIN_REDUCTION = 64

MODE_CODES = {"zeros": 0, "constant": 0, "reflect": 1, "replicate": 2, "circular": 3}  # common.cuh PadMode
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65535
MAX_ELEMENTWISE_BLOCKS = 65536  # pooling/padding kernels loop (grid-stride) beyond this many blocks
DEFAULT_SHARED_BYTES = 48 * 1024  # above this, dynamic shared memory needs the kernel attribute raised
EMULATED_SHARED_BYTES = 96 * 1024  # the emulator plays a device with sm_70's opt-in limit
EMULATED_COMPUTE_CAPABILITY = 90  # and sm_90's tensor cores (its <mma.h> has TF32)
EMULATED_SM_COUNT = 132  # and an H200's SM count, so the GEMM planning runs as on one

# Test hook: True forces the 64-bit index instantiations on small tensors.
FORCE_INDEX64 = False
# The settings above that planning reads: part of every memoised plan's key (_memoised_plan).
PLAN_SETTINGS = ("IGEMM_MIN_FILTERS", "IGEMM_MIN_REDUCTION", "FORCE_INDEX64")
_plan_settings = operator.itemgetter(*PLAN_SETTINGS)


class _Device:
    """What differs between a GPU (kind "cuda", CuPy) and the emulator (kind "emu", NumPy)."""

    def __init__(self, kind: str):
        self.kind = kind

    @property
    def xp(self):
        """cupy or numpy (looked up per call, so tests can poison numpy's allocations)."""
        if self.kind == "cuda":
            import cupy

            return cupy
        return np

    def scope(self, x):
        """Run on x's GPU when x is a CuPy array (a no-op otherwise)."""
        return x.device if self.kind == "cuda" and is_cupy_array(x) else contextlib.nullcontext()

    def to_work(self, a):
        """a as a C-contiguous array of this device's array module."""
        if self.kind == "cuda":
            return self.xp.ascontiguousarray(self.xp.asarray(a))
        return np.ascontiguousarray(a.get() if is_cupy_array(a) else a)

    def like(self, result, x):
        """result in x's array type (NumPy in -> NumPy out, CuPy in -> CuPy out)."""
        if is_cupy_array(result) == is_cupy_array(x):
            return result
        if is_cupy_array(result):
            return result.get()
        import cupy

        return cupy.asarray(result)

    def max_shared_bytes(self) -> int:
        if self.kind == "emu":
            return EMULATED_SHARED_BYTES
        return _max_shared_optin(self.xp.cuda.Device().id)

    def compute_capability(self) -> int:
        """10 * major + minor: 90 for an H100/H200."""
        if self.kind == "emu":
            return EMULATED_COMPUTE_CAPABILITY
        return _compute_capability(self.xp.cuda.Device().id)

    def sm_count(self) -> int:
        if self.kind == "emu":
            return EMULATED_SM_COUNT
        return _sm_count(self.xp.cuda.Device().id)

    def identity(self) -> tuple:
        """What a launch plan depends on besides its arguments: the device, its shared-memory limit,
        compute capability and SM count, and the settings that planning reads (tests change them; the
        GEMM planner's: the workspace cap and its test hooks)."""
        limits = (self.max_shared_bytes(), self.compute_capability(), self.sm_count(), _plan_settings(globals()),
                  cuda_gemm.settings())
        if self.kind == "emu":
            return (self.kind, *limits)
        return (self.kind, self.xp.cuda.runtime.getDevice(), *limits)

    def launch(self, file: str, name: str, grid, block, args, shared: int = 0):
        if 0 in grid:
            # Nothing to compute. CuPy would raise each zero to 1 and run a block (the emulator runs
            # none): never launch one, whatever a caller computed.
            return
        function = _kernels.get_function(file, name, self.kind)
        if shared > DEFAULT_SHARED_BYTES:
            # The device's whole opt-in limit, not `shared`: a constant value, so threads launching
            # the same kernel concurrently can never lower it under one another. CUDA caps it at
            # the opt-in limit minus the kernel's static shared memory: only conv_direct and
            # conv_implicit_gemm_tc ask for more than 48 KB, and their shared memory is all dynamic.
            function.max_dynamic_shared_size_bytes = self.max_shared_bytes()
        function(grid, block, args, shared_mem=shared)


@functools.lru_cache(maxsize=None)
def _max_shared_optin(device_id: int) -> int:
    """Dynamic shared memory one block may opt in to on this GPU (96 KB on V100, 227 KB on H100)."""
    import cupy

    attributes = cupy.cuda.Device(device_id).attributes
    return int(attributes.get("MaxSharedMemoryPerBlockOptin", DEFAULT_SHARED_BYTES))


@functools.lru_cache(maxsize=None)
def _compute_capability(device_id: int) -> int:
    import cupy

    return int(cupy.cuda.Device(device_id).compute_capability)


@functools.lru_cache(maxsize=None)
def _sm_count(device_id: int) -> int:
    import cupy

    return int(cupy.cuda.Device(device_id).attributes["MultiProcessorCount"])


_nbytes = operator.attrgetter("nbytes")


def _index_type(*arrays) -> tuple[str, type]:
    """32-bit index arithmetic when every tensor is under 2^31 bytes, else 64-bit."""
    return _index_type_of(max(map(_nbytes, arrays)))


def _index_type_of(nbytes: int) -> tuple[str, type]:
    """_index_type of tensors whose largest has nbytes bytes (before they exist)."""
    if FORCE_INDEX64 or nbytes >= 2**31:
        return "long long", np.int64
    return "int", np.int32


def _conv_index_type(spec, dtype) -> tuple[str, type]:
    """_index_type of a convolution's x, w and y."""
    return _index_type_of(np.dtype(dtype).itemsize * max(spec.n * spec.c * spec.h * spec.w, spec.f * spec.reduction,
                                                         spec.n * spec.f * spec.out_pixels))


def _ctype(dtype) -> str:
    return _kernels.CTYPE_OF_DTYPE[np.dtype(dtype)]


def _memoised_plan(method):
    """Memoise a planning method of CudaBackend on its (hashable) arguments and _Device.identity():
    plans are immutable, derived from the spec, the device and PLAN_SETTINGS alone (host cost per
    call). A plan that raises (the algorithm cannot run the shape) is not kept."""
    cache = BoundedCache(1024)

    @functools.wraps(method)
    def planned(self, *args, **kwargs):
        key = (self.name, self.device.identity(), args, *kwargs.items())
        found = cache.get(key)
        if found is None:
            found = cache.put(key, method(self, *args, **kwargs))
        return found

    planned.cache_clear = cache.clear
    return planned


def conv_geometry(spec) -> dict[str, int]:
    """The arguments every conv kernel takes, by their names in the kernels (_kernel_params)."""
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    top, _, left, _ = spec.pads
    return dict(n=spec.n, c=spec.c, h=spec.h, wd=spec.w, f=spec.f, oh=spec.oh, ow=spec.ow, kh=spec.kh, kw=spec.kw,
                groups=spec.groups, sh=sh, sw=sw, dh=dh, dw=dw, top=top, left=left)


# The scalar arguments of each launch, built once per spec, index type I and plan (host cost per call).
@functools.lru_cache(maxsize=1024)
def _direct_scalars(spec, I, has_bias: bool, w_transposed: bool, tiles: tuple[int, int, int, int]) -> tuple:
    geometry = conv_geometry(spec)
    del geometry["n"]  # the grid's x dimension covers the images
    tiles_x, tiles_y, in_h, in_w = tiles
    return params.CONV_DIRECT.scalars(I, has_bias=has_bias, w_transposed=w_transposed, **geometry,
                                      mode=MODE_CODES[spec.padding_mode], tiles_x=tiles_x, tiles_y=tiles_y, in_h=in_h,
                                      in_w=in_w)


@functools.lru_cache(maxsize=1024)
def _forward_scalars(table, spec, I, has_bias: bool, k_split: int | None = None) -> tuple:
    """conv2d_implicit_gemm's (with k_split) or conv2d_implicit_gemm_tc's scalars."""
    split = {} if k_split is None else {"k_split": k_split}
    return table.scalars(I, **split, has_bias=has_bias, **conv_geometry(spec), mode=MODE_CODES[spec.padding_mode])


def _acc_itemsize(dtype) -> int:
    return 8 if np.dtype(dtype) == np.float64 else 4


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _DirectPlan:
    """Grid and shared memory of conv2d_direct for one spec (tile sizes from conv_direct.cu)."""

    def __init__(self, spec, max_shared: int, acc_itemsize: int):
        k = _kernels.constants("conv_direct.cu")
        self.block = (k["DIRECT_BLOCK_X"], k["DIRECT_BLOCK_Y"], 1)
        tile_w, tile_h = k["DIRECT_BLOCK_X"], k["DIRECT_BLOCK_Y"] * k["DIRECT_ROWS_PER_THREAD"]
        fg = spec.filters_per_group
        self.filter_batch = 4 if fg >= 4 else 1
        self.tiles_x, self.tiles_y = _ceil_div(spec.ow, tile_w), _ceil_div(spec.oh, tile_h)
        blocks = self.tiles_x * self.tiles_y * spec.n
        if blocks > MAX_GRID_X:
            raise ValueError(f"algorithm='direct' needs at most {MAX_GRID_X} output tiles of {tile_h}x{tile_w} "
                             f"over all images; this convolution has {blocks}")
        batches = spec.groups * _ceil_div(fg, self.filter_batch)
        self.grid = (blocks, min(batches, MAX_GRID_YZ), 1)
        in_h = (tile_h - 1) * spec.stride[0] + (spec.kh - 1) * spec.dilation[0] + 1
        in_w = (tile_w - 1) * spec.stride[1] + (spec.kw - 1) * spec.dilation[1] + 1
        shared = (in_h * in_w + self.filter_batch * spec.taps) * acc_itemsize
        # Fast path: the input tile and its halo fit in shared memory; else read global memory.
        self.staged = shared <= max_shared
        self.shared = shared if self.staged else 0
        self.in_hw = (in_h, in_w) if self.staged else (0, 0)
        self.tiles = (self.tiles_x, self.tiles_y, *self.in_hw)  # the kernel's last four arguments


class CudaBackend(CudaGradients):
    algorithms = ALGORITHMS

    def __init__(self, name: str, device: _Device):
        self.name = name
        self.device = device

    # ---- convolution -------------------------------------------------------------------------
    def applicable_algorithms(self, spec, dtype=np.float32, precision="highest") -> tuple[str, ...]:
        usable = ["auto"]
        for algorithm in ALGORITHMS[1:]:
            try:
                self._plan(spec, algorithm, dtype, precision)
                usable.append(algorithm)
            except ValueError:
                pass
        return tuple(usable)

    @_memoised_plan
    def choose_algorithm(self, spec, dtype=np.float32, precision="highest") -> str:
        gemm_shaped = spec.filters_per_group >= IGEMM_MIN_FILTERS and spec.reduction >= IGEMM_MIN_REDUCTION
        preferred = "implicit_gemm" if gemm_shaped else "direct"
        usable = self.applicable_algorithms(spec, dtype, precision)[1:]
        if preferred == "implicit_gemm" and _tensor_cores.ALGORITHM in usable:
            return _tensor_cores.ALGORITHM
        if preferred in usable or not usable:
            return preferred  # when none fits, planning the preferred one raises the reason
        return usable[0]

    @_memoised_plan
    def _plan(self, spec, algorithm, dtype, precision="highest"):
        if algorithm == "direct":
            return _DirectPlan(spec, self.device.max_shared_bytes(), _acc_itemsize(dtype))
        if algorithm == "implicit_gemm":
            return cuda_gemm.plan("forward", spec.groups, spec.filters_per_group, spec.n * spec.out_pixels,
                                  spec.reduction, _ctype(dtype), _conv_index_type(spec, dtype)[0],
                                  self.device.sm_count())
        if algorithm == _tensor_cores.ALGORITHM:
            return _tensor_cores.TensorCorePlan(spec, dtype, precision, self.device.compute_capability(),
                                                self.device.max_shared_bytes())
        raise ValueError(f"algorithm={algorithm!r}: the {self.name} backend offers {ALGORITHMS}")

    def conv2d(self, x, w, bias, spec, algorithm, precision="highest"):
        with self.device.scope(x):
            return self._conv2d(x, w, bias, spec, algorithm, precision)

    def _conv2d(self, x, w, bias, spec, algorithm, precision):
        if algorithm == "auto":
            algorithm = self.choose_algorithm(spec, x.dtype, precision)
        plan = self._plan(spec, algorithm, x.dtype, precision)
        dev = self.device
        xd, wd = dev.to_work(x), dev.to_work(w)
        if algorithm == _tensor_cores.ALGORITHM:
            wd = plan.weights(dev.xp, wd)  # (F, K rounded up to the K step)
        has_bias = bias is not None
        bd = dev.to_work(bias) if has_bias else None  # a null pointer: the kernels read bias only if has_bias
        out = dev.xp.empty(spec.out_shape, dtype=x.dtype)
        itype, I = _index_type(xd, wd, out)
        ctype = _ctype(x.dtype)
        if algorithm == "direct":
            self._launch_direct(plan, spec, xd, wd, bd, out, itype, I)
        elif algorithm == _tensor_cores.ALGORITHM:
            table = params.CONV_IMPLICIT_GEMM_TC
            args = table.pack(_forward_scalars(table, spec, I, has_bias), x=xd, wp=wd, bias=bd, y=out)
            dev.launch(table.file, _kernels.implicit_gemm_tc_kernel(ctype, itype, plan.block_m), plan.grid,
                       plan.block, args, plan.shared)
        else:
            scalars = _forward_scalars(params.CONV_IMPLICIT_GEMM, spec, I, has_bias, plan.k_split)
            cuda_gemm.launch(dev, plan, itype, I, scalars, dict(x=xd, w=wd, bias=bd, y=out), out, bias=bd,
                             bias_period=spec.out_pixels, bias_count=spec.f)
        return dev.like(out, x)

    def _launch_direct(self, plan, spec, xd, wd, bd, out, itype, I, w_transposed=False):
        """conv2d_direct of spec (bd: the bias, or None); w_transposed: wd is the weights of the
        convolution whose data gradient spec is, read flipped and transposed (conv_direct.cu)."""
        name = _kernels.direct_kernel(_ctype(xd.dtype), itype, plan.filter_batch, plan.staged)
        table = params.CONV_DIRECT
        args = table.pack(_direct_scalars(spec, I, bd is not None, w_transposed, plan.tiles), x=xd, w=wd, bias=bd,
                          y=out)
        self.device.launch(table.file, name, plan.grid, plan.block, args, plan.shared)

    # ---- pooling and padding (and their gradients): one thread per output element -----------------
    def _elementwise(self, table, threads_constant, inputs: dict, out: str, out_shape, scalars, extra_outputs=None):
        """Launch table's kernel<T, I> over out_shape, one thread per element of its output `out`: the
        arrays `inputs` and `extra_outputs` by name, scalars(I, total) its scalar arguments (total: the
        output's size); T the first input's element type. Returns the output."""
        dev = self.device
        arrays = {name: dev.to_work(a) for name, a in inputs.items()}
        dtype = next(iter(arrays.values())).dtype
        result = arrays[out] = dev.xp.empty(out_shape, dtype=dtype)
        if extra_outputs:
            arrays.update(extra_outputs)
        itype, I = _index_type(*arrays.values())
        threads = _kernels.constants(table.file)[threads_constant]
        grid = (min(_ceil_div(result.size, threads), MAX_ELEMENTWISE_BLOCKS), 1, 1)
        dev.launch(table.file, f"{table.template}<{_ctype(dtype)}, {itype}>", grid, (threads, 1, 1),
                   table.pack(scalars(I, result.size), **arrays))
        return result

    def max_pool2d(self, x, spec, return_indices):
        with self.device.scope(x):
            indices = self.device.xp.empty(spec.out_shape if return_indices else (1,), dtype=np.int64)
            out = self._elementwise(params.MAX_POOL, "POOL_THREADS", {"x": x}, "y", spec.out_shape,
                                    functools.partial(_max_pool_scalars, params.MAX_POOL, spec,
                                                      with_indices=return_indices),
                                    {"indices": indices})
            out = self.device.like(out, x)
            return (out, self.device.like(indices, x)) if return_indices else out

    def avg_pool2d(self, x, spec):
        with self.device.scope(x):
            out = self._elementwise(params.AVG_POOL, "POOL_THREADS", {"x": x}, "y", spec.out_shape,
                                    functools.partial(_avg_pool_scalars, params.AVG_POOL, spec))
            return self.device.like(out, x)

    def pad2d(self, x, spec):
        with self.device.scope(x):
            out = self._elementwise(params.PAD, "PAD_THREADS", {"x": x}, "y", spec.out_shape,
                                    functools.partial(_pad_scalars, params.PAD, spec))
            return self.device.like(out, x)


# The scalar arguments of the pooling and padding kernels and their gradients (`total` threads: one per
# element of the kernel's output), built once per spec and index type I.
@functools.lru_cache(maxsize=1024)
def _max_pool_scalars(table, spec, I, total: int, with_indices: bool) -> tuple:
    (top, _, left, _), (sh, sw), (dh, dw) = spec.pads, spec.stride, spec.dilation
    return table.scalars(I, total=total, h=spec.h, w=spec.w, oh=spec.oh, ow=spec.ow, kh=spec.kh, kw=spec.kw, sh=sh,
                         sw=sw, dh=dh, dw=dw, top=top, left=left, with_indices=with_indices)


@functools.lru_cache(maxsize=1024)
def _avg_pool_scalars(table, spec, I, total: int) -> tuple:
    (top, bottom, left, right), (sh, sw) = spec.pads, spec.stride
    return table.scalars(I, total=total, h=spec.h, w=spec.w, oh=spec.oh, ow=spec.ow, kh=spec.kh, kw=spec.kw, sh=sh,
                         sw=sw, top=top, bottom=bottom, left=left, right=right,
                         count_include_pad=spec.count_include_pad, divisor_override=spec.divisor_override or 0)


@functools.lru_cache(maxsize=1024)
def _pad_scalars(table, spec, I, total: int) -> tuple:
    """pad2d's scalars (the fill value among them) or pad2d_grad's (without it)."""
    top, _, left, _ = spec.pads
    _, _, oh, ow = spec.out_shape
    value = {"value": spec.value} if table is params.PAD else {}
    return table.scalars(I, total=total, h=spec.h, w=spec.w, oh=oh, ow=ow, top=top, left=left,
                         mode=MODE_CODES[spec.mode], **value)


def _gpu_unavailable_reason() -> str | None:
    try:
        import cupy
    except ImportError as exc:
        return f"CuPy is not installed ({exc}); pip install 'gpuconv[cuda12]' or 'gpuconv[cuda13]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy raises CUDARuntimeError without a driver
        return f"CuPy is installed but finds no usable CUDA device ({type(exc).__name__}: {exc})"
    return None if count > 0 else "CuPy is installed but there is no CUDA device"


def _emulator_unavailable_reason() -> str | None:
    try:
        from gpuconv.emulator import unavailable_reason
    except ImportError as exc:
        return f"the CUDA emulator cannot be imported ({exc})"
    return unavailable_reason()


def load(name: str) -> CudaBackend:
    if name == "cuda":
        reason, kind = _gpu_unavailable_reason(), "cuda"
    elif name == "cuda-emu":
        reason, kind = _emulator_unavailable_reason(), "emu"
    else:
        raise ValueError(f"backend={name!r}: gpuconv.backends.cuda provides 'cuda' and 'cuda-emu'")
    if reason:
        raise BackendUnavailable(reason)
    return CudaBackend(name, _Device(kind))
