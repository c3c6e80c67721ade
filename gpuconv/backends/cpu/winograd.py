"""conv2d by Winograd F(2x2, 3x3): 2x2 output blocks from 4x4 input blocks with 16
multiplications per block and channel instead of 36 (Lavin & Gray, 2015).

    Y = A^T [ (G g G^T) * (B^T d B) ] A     (* = elementwise over the 4x4 transform domain)

The elementwise products summed over input channels are 16 matmuls (F x C) @ (C x blocks).
Per tile (images n0:n1, output rows r0:r1, r0 even):
1. gather the tile's padded input as 2x2 stride phases (_stride_phases.py), channel-major:
   (C, images, grid rows, phase_w). Input row 2i + k of block i is phase k % 2, grid row
   i + k // 2, so every transform term is ONE contiguous slice over all channels and
   images (the grid's last row and column only feed discarded blocks);
2. V = B^T d B as 24 vector adds, written into the matmul operand (16, C, blocks);
3. M = U @ V, 16 matmuls;
4. Y = A^T M A as 24 vector adds, stored into the four 2x2 output phases (+ bias).
Float32 error stays within about 1e-6 of the output's scale (tested against 2e-5).

The transforms add and subtract inputs: finite inputs within a few times the dtype's maximum
overflow there, and an infinite input meets its own negation (inf - inf = NaN) where the
definition has +-inf. Every tile's result is therefore summed (one pass over it, in cache;
the sum is finite exactly when no value overflowed or was not finite, or when finite values
add up past the maximum), and a call with any such tile is computed again by im2col, which
multiplies the inputs themselves: non-finite and huge inputs give what the definition gives.
"""
from __future__ import annotations

import numpy as np

from ..._geometry import ConvSpec
from . import _blas, _plan_cache, _stride_phases, _tiles, _workspace, im2col
from ._threads import parallel_items
from ._views import view_as

NAME = "winograd"
TARGET_BYTES = 8 << 20  # fewer, larger tiles than im2col's: each tile makes ~70 NumPy calls
PARALLEL_WEIGHTS = 128 * 128  # F*C from which the weight transform is split over the threads (D: 0.8 -> 0.3 ms)
SMALL_IMAGE_BLOCKS = 128  # measured: 14x14 images gain 10-15%, 28x28 neither gain nor lose


def applicable(spec: ConvSpec) -> str | None:
    if (spec.kh, spec.kw) != (3, 3) or spec.stride != (1, 1) or spec.dilation != (1, 1) or spec.groups != 1:
        return "winograd F(2x2, 3x3) needs a 3x3 kernel, stride 1, dilation 1 and groups=1"
    return None


def _grid(spec: ConvSpec, rows: int) -> tuple[int, int]:
    """(block rows, phase_w) of a tile with `rows` output rows. Blocks sit on a grid one block
    wider and one block taller than needed: the extra row and column absorb the +1 shifts of
    the transforms, so that each transform term is one flat slice over all channels and images."""
    return -(-rows // 2), -(-spec.ow // 2) + 1


def tile_bytes(spec: ConvSpec, itemsize: int, images: int, rows: int) -> int:
    block_rows, phase_w = _grid(spec, rows)
    plane = (block_rows + 1) * phase_w
    c, f = spec.c * images * plane, spec.f * images * plane
    return itemsize * (4 * c + max(16 * c, 12 * f) + max(16 * f, 2 * c) + 4 * phase_w + 2) + 3 * 64


# G g G^T as one matrix (G kron G, 16 x 9) applied to each flattened 3x3 kernel: row 4k + l, column 3a + b
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
_G_BOTH = np.kron(_G, _G)


def weight_bytes(spec: ConvSpec, itemsize: int) -> int:
    """Workspace of transform_weights."""
    return 16 * spec.f * spec.c * itemsize + 64


def transform_weights(wmat: np.ndarray, spec: ConvSpec, threads: int) -> np.ndarray:
    """U = G g G^T as (16, F, C), element 4k + l of each 4x4 transform, in this thread's
    "weights" workspace: matmuls (measured 2-3x faster than elementwise passes) over column
    blocks spread on the tile threads, BLAS at one thread each (waking BLAS's own threads here
    left them spinning against the tile workers: B-D ran 1.3-1.6x slower). The blocks are the
    same for every thread count: a matmul's bits depend on its shape."""
    fc = spec.f * spec.c
    (u,) = _workspace.arrays(((16, fc), wmat.dtype), slot="weights")
    g, taps = _G_BOTH.astype(wmat.dtype), wmat.reshape(fc, 9).T
    parts = _tiles.FIXED_PARTITION_THREADS if fc >= PARALLEL_WEIGHTS else 1
    bounds = [fc * i // parts for i in range(parts + 1)]

    def transform(i: int) -> None:
        np.matmul(g, taps[:, bounds[i]:bounds[i + 1]], out=u[:, bounds[i]:bounds[i + 1]])

    with _blas.limit(1):
        parallel_items(transform, parts, threads)
    return u.reshape(16, spec.f, spec.c)


def _input_transform(planes: np.ndarray, temp: np.ndarray, v: np.ndarray, phase_w: int) -> None:
    """v[4k + l] = (B^T d B)[k, l] for every block, from the flat 2x2 phase planes[p, q].

    B^T rows: (d0 - d2, d1 + d2, d2 - d1, d1 - d3) where input row k of a block is phase
    k % 2 shifted by k // 2 grid rows (phase_w elements); likewise columns (shift 1)."""
    n = v.shape[1]
    for k, (pa, sa, pb, sb, op) in enumerate(((0, 0, 0, 1, np.subtract), (1, 0, 0, 1, np.add),
                                              (0, 1, 1, 0, np.subtract), (1, 0, 1, 1, np.subtract))):
        da, db = sa * phase_w, sb * phase_w
        for q in range(2):  # column phase
            op(planes[pa, q, da:da + n], planes[pb, q, db:db + n], out=temp[q, :n])
        t0, t1 = temp[0], temp[1]
        np.subtract(t0[:n], t0[1:], out=v[4 * k + 0])
        np.add(t1[:n], t0[1:], out=v[4 * k + 1])
        np.subtract(t0[1:], t1[:n], out=v[4 * k + 2])
        np.subtract(t1[:n], t1[1:], out=v[4 * k + 3])


def _output_transform(m: np.ndarray, s: np.ndarray, y: np.ndarray) -> None:
    """y[2i + j] = (A^T M A)[i, j] with A^T = ((1, 1, 1, 0), (0, 1, -1, -1))."""
    for l in range(4):
        m0, m1, m2, m3 = m[l], m[4 + l], m[8 + l], m[12 + l]
        np.add(m0, m1, out=s[l])
        np.add(s[l], m2, out=s[l])
        np.subtract(m1, m2, out=s[4 + l])
        np.subtract(s[4 + l], m3, out=s[4 + l])
    for i in range(2):
        s0, s1, s2, s3 = s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]
        np.add(s0, s1, out=y[2 * i])
        np.add(y[2 * i], s2, out=y[2 * i])
        np.subtract(s1, s2, out=y[2 * i + 1])
        np.subtract(y[2 * i + 1], s3, out=y[2 * i + 1])


_phases_cache = _plan_cache.PlanCache(4 << 20, lambda phases: phases.nbytes)


def _phases(spec: ConvSpec) -> _stride_phases.Phases:
    """spec's padded input as 2x2 phases of phase_w columns (memoised)."""
    return _phases_cache.get(spec, lambda: _stride_phases.Phases(spec, 2, 2, _grid(spec, 2)[1]))


def conv2d(x: np.ndarray, wmat: np.ndarray, bias, spec: ConvSpec, out: np.ndarray) -> None:
    compute = wmat.dtype
    plan = _tiles.plan(spec, lambda n, r: tile_bytes(spec, compute.itemsize, n, r), NAME, row_step=2,
                       reserved=weight_bytes(spec, compute.itemsize), target_bytes=TARGET_BYTES, key=compute.itemsize)
    u = transform_weights(wmat, spec, plan.threads)
    phases = _phases(spec)
    _, phase_w = _grid(spec, 2)
    c, f = spec.c, spec.f
    not_finite = []  # tiles whose transformed result overflowed or held inf/NaN

    def run_tile(i: int) -> None:
        with np.errstate(all="ignore"):  # overflow is detected below, not warned about
            compute_tile(i)

    def compute_tile(i: int) -> None:
        n0, n1, r0, r1 = plan.tiles[i]
        nt = n1 - n0
        block_rows, _ = _grid(spec, r1 - r0)
        plane = (block_rows + 1) * phase_w
        size = nt * plane
        # planes has phase_w spare elements (the last shifted read) and temp one. The output
        # transform's s and y reuse v's memory, temp reuses m's: each is dead by then.
        planes, v_mem, m_mem = _workspace.arrays(
            ((2, 2, c * size + phase_w), compute), (max(16 * c * size, 12 * f * size), compute),
            (max(16 * f * size, 2 * (c * size + 1)), compute))
        v, m = v_mem[:16 * c * size].reshape(16, c * size), m_mem[:16 * f * size].reshape(16, f * size)
        s, y = v_mem[:8 * f * size].reshape(8, f * size), v_mem[8 * f * size:12 * f * size].reshape(4, f * size)
        temp = m_mem[:2 * (c * size + 1)].reshape(2, c * size + 1)
        planes[:, :, c * size:] = 0  # read by the spare grid cells only: zeros keep them finite
        temp[:, c * size] = 0
        phases.fill(x[n0:n1], r0, block_rows + 1, lambda p, q: view_as(
            planes[p, q, :c * size], (c, nt, block_rows + 1, phase_w)).transpose(1, 0, 2, 3))
        _input_transform(planes, temp, v, phase_w)
        # One matmul per transform element and image, leaving out the grid's spare row; for
        # small images one per transform element over all images, spare rows included, is faster.
        used = block_rows * phase_w
        if used < SMALL_IMAGE_BLOCKS:
            np.matmul(u, v.reshape(16, c, size), out=m.reshape(16, f, size))
        else:
            np.matmul(u[:, None], v.reshape(16, c, nt, plane)[..., :used].transpose(0, 2, 1, 3),
                      out=m.reshape(16, f, nt, plane)[..., :used].transpose(0, 2, 1, 3))
            m.reshape(16, f, nt, plane)[..., used:] = 0  # the spare row, so that the overflow check sees no stale value
        _output_transform(m, s, y)
        if not np.isfinite(y.sum()):
            not_finite.append(i)
        for j in range(4):
            p, q = divmod(j, 2)
            rows = len(range(r0 + p, r1, 2))
            phase = y[j].reshape(f, nt, block_rows + 1, phase_w)[:, :, :rows, :len(range(q, spec.ow, 2))]
            target = out[n0:n1, :, r0 + p:r1:2, q::2]
            if bias is None:
                np.copyto(target, phase.transpose(1, 0, 2, 3), casting="unsafe")
            else:
                np.add(phase.transpose(1, 0, 2, 3), bias[:, None, None], out=target, casting="unsafe")

    parallel_items(run_tile, len(plan.tiles), plan.threads)
    _workspace.release()
    if not_finite:
        im2col.conv2d(x, wmat, bias, spec, out)
