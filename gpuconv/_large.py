"""`python -m gpuconv large`: a filter bank over an image larger than any worker's memory, on a
dask.distributed cluster of local worker processes, from a zarr store to a zarr store.

`--scaling 1,2` is the benchmark instead: the same conv on clusters of 1 and 2 workers (one thread
each), interleaved rounds with a fresh cluster each, the image generated on the workers and the
result summed there, so that only the convolution and its chunk traffic are timed. Needs the
`dask` extra.
"""
from __future__ import annotations

import contextlib
import logging
import resource
import statistics
import time
from pathlib import Path

import numpy as np

from . import filters
from ._config import set_num_threads

FILTERS = ["sobel_x", "sobel_y", "laplacian", "gaussian"]  # gaussian: 5x5, sigma 1
_GIB, _MIB = 1 << 30, 1 << 20


def add_arguments(parser):
    parser.add_argument("--size", type=int, default=16384, help="side of the square image (default 16384)")
    parser.add_argument("--channels", type=int, default=3, help="image channels (default 3)")
    parser.add_argument("--chunk", default=None, metavar="ROWS[xCOLS]",
                        help="chunk shape (default: bands of whole rows, about 1 Mpixel each; see docs/dask.md)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one thread each (default 2)")
    parser.add_argument("--memory-limit", default="1GiB", help="memory limit of each worker (default 1GiB)")
    parser.add_argument("--store", type=Path, default=Path("out/large.zarr"),
                        help="zarr store: 'input' is generated there once, 'output' is written "
                             "(default out/large.zarr)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="a running dask.distributed scheduler to use instead of starting local workers")
    parser.add_argument("--backend", default=None, help="backend every chunk runs on (default: by the chunks' type)")
    parser.add_argument("--scaling", default=None, metavar="COUNTS",
                        help="benchmark instead: worker counts to compare, e.g. 1,2 (no store is used)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds of the benchmark (default 3)")


def bank(channels: int) -> np.ndarray:
    return filters.bank(["sobel_x", "sobel_y", "laplacian", filters.gaussian(5, 1.0)], in_channels=channels)


def filter_image(x, weights, backend=None):
    """The op the command runs: every filter over the image, 'same' size, mirrored at the edges."""
    from . import conv2d

    return conv2d(x, weights, padding="same", padding_mode="reflect", backend=backend)


# ---- the workers -----------------------------------------------------------------------------------
@contextlib.contextmanager
def local_cluster(workers: int, memory_limit):
    """A LocalCluster of `workers` processes with one thread each, gpuconv on one thread in each.

    Its scheduler does not queue root tasks (worker-saturation "inf", dask's setting before 2023):
    then it gives each worker a run of consecutive chunks, so that most halos stay inside one
    process. With queuing (dask's default, 1.1) neighbouring chunks go to alternate workers and
    every halo crosses between them (docs/dask.md, Scaling)."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.worker-saturation": float("inf")}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                               dashboard_address=":0", silence_logs=logging.CRITICAL)
    with cluster, Client(cluster, set_as_default=False) as client:
        client.run(set_num_threads, 1)
        yield client


@contextlib.contextmanager
def _cluster(args):
    if args.scheduler:
        from distributed import Client

        with Client(args.scheduler, set_as_default=False) as client:
            print(f"cluster: the scheduler at {args.scheduler}, {len(client.scheduler_info()['workers'])} workers")
            yield client
        return
    print(f"cluster: {args.workers} worker processes x 1 thread, memory limit {args.memory_limit} each")
    with local_cluster(args.workers, args.memory_limit) as client:
        yield client


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def chunk_shape(spec, size: int) -> tuple[int, int]:
    """(rows, cols) of a chunk: "ROWS" or "ROWSxCOLS"; by default bands of whole rows of about 1
    Mpixel. Whole rows make each chunk's halo come from the bands above and below only, so a
    worker holds a few bands at a time; 2-D tiles make it hold about a row of tiles."""
    if spec is None:
        return max(1, (1 << 20) // size), size
    try:
        rows, _, cols = str(spec).partition("x")
        shape = int(rows), int(cols) if cols else size
    except ValueError:
        raise SystemExit(f"--chunk={spec!r}: expected ROWS or ROWSxCOLS, e.g. 64 or 1024x1024") from None
    if min(shape) < 1:
        raise SystemExit(f"--chunk={spec!r}: rows and columns must be >= 1")
    return shape


def synthetic_image(size: int, channels: int, chunk: tuple[int, int]):
    """(channels, size, size) float32 in [0, 1], generated chunk by chunk where it is computed: colour
    gradients, a disc, a square and stripes (the `demo` image at any size)."""
    import dask.array as da

    return da.map_blocks(_image_block, size=size, channels=channels, dtype=np.float32,
                         chunks=((channels,), _split(size, chunk[0]), _split(size, chunk[1])),
                         meta=np.empty((0, 0, 0), np.float32))


def _split(size, chunk):
    return (chunk,) * (size // chunk) + ((size % chunk,) if size % chunk else ())


def _image_block(size, channels, block_info=None):
    (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    y = np.arange(r0, r1, dtype=np.float32) / np.float32(size - 1)
    x = np.arange(c0, c1, dtype=np.float32) / np.float32(size - 1)
    rgb = np.empty((3, r1 - r0, c1 - c0), np.float32)
    rgb[0] = 0.2 + 0.5 * x
    rgb[1] = (0.2 + 0.5 * y)[:, None]
    np.multiply.outer(y, x * -0.4, out=rgb[2])
    rgb[2] += 0.6
    # each shape is painted inside its bounding box only (np.copyto: boolean-mask assignment is 10x slower)
    rows, cols = _within(y, 0.22, 0.58), _within(x, 0.17, 0.53)
    disc = (x[cols] - 0.35) ** 2 + (y[rows, None] - 0.4) ** 2 < 0.18 ** 2
    square = (_within(y, 0.55, 0.8), _within(x, 0.6, 0.85))
    stripes = np.broadcast_to(np.floor(x * 64) % 2 == 0, (r1 - r0, c1 - c0))[_within(y, 0.85, 1.01)]
    for plane, disc_colour, square_colour in zip(rgb, (0.95, 0.3, 0.2), (0.1, 0.2, 0.9)):
        np.copyto(plane[rows, cols], np.float32(disc_colour), where=disc)
        plane[square] = square_colour
        np.copyto(plane[_within(y, 0.85, 1.01)], np.float32(1.0), where=stripes)
    return rgb if channels == 3 else rgb[np.arange(channels) % 3]


def _within(coords, lo, hi) -> slice:
    """The positions of sorted coords inside (lo, hi), as a slice."""
    return slice(int(np.searchsorted(coords, lo, "right")), int(np.searchsorted(coords, hi, "left")))


# ---- the demo ----------------------------------------------------------------------------------------
def run(args) -> int:
    if args.scaling:
        return scaling(args)
    import dask.array as da
    from distributed import progress

    weights, chunk = bank(args.channels), chunk_shape(args.chunk, args.size)
    image_bytes = args.channels * args.size ** 2 * 4
    print(f"image ({args.channels}, {args.size}, {args.size}) float32 = {image_bytes / _GIB:.2f} GiB in chunks of "
          f"{chunk[0]}x{chunk[1]}; filter bank {weights.shape} ({', '.join(FILTERS)}), 'same', reflect")
    store = str(args.store)
    with _cluster(args) as client:
        if not _has_input(args):
            print(f"writing the input image to {store} (component 'input')")
            _run(client, da.to_zarr(synthetic_image(args.size, args.channels, chunk), store,
                                    component="input", mode="w", compute=False), progress)
        x = da.from_zarr(store, component="input")
        y = filter_image(x, weights, args.backend)
        print(f"output {y.shape} {y.dtype} = {y.nbytes / _GIB:.2f} GiB in {y.npartitions} chunks, to {store} "
              f"(component 'output')")
        start = time.perf_counter()
        _run(client, da.to_zarr(y, store, component="output", mode="w", compute=False), progress)
        seconds = time.perf_counter() - start
        peaks = client.run(peak_rss)
    flops = 2 * weights.size * args.size ** 2
    print(f"filtered in {seconds:.1f} s ({args.size ** 2 / seconds / 1e6:.0f} Mpixel/s, {flops / seconds / 1e9:.1f} "
          f"GFLOP/s), zarr read and write included")
    print("peak memory per worker: " + ", ".join(f"{p / _MIB:.0f} MiB" for p in peaks.values())
          + f" (limit {args.memory_limit}; the image is {image_bytes / _MIB:.0f} MiB)")
    return _spot_check(args, weights)


def _has_input(args) -> bool:
    import zarr

    try:
        existing = zarr.open_array(str(args.store), path="input", mode="r")
    except Exception:  # no store, no array or another format: generate it
        return False
    return (existing.shape == (args.channels, args.size, args.size)
            and existing.chunks[1:] == chunk_shape(args.chunk, args.size))


def _run(client, delayed, progress):
    future = client.compute(delayed)
    progress(future, scheduler=client.scheduler.address)
    print()
    future.result()


def _spot_check(args, weights) -> int:
    """Two tiles of the stored output against the eager op on the stored input: the top-left
    corner (the global edge's padding) and one interior tile across chunk boundaries."""
    import zarr

    from . import conv2d

    x = zarr.open_array(str(args.store), path="input", mode="r")
    y = zarr.open_array(str(args.store), path="output", mode="r")
    tile, halo = min(256, args.size // 2), weights.shape[-1] // 2
    r = c = max(0, args.size // 2 - tile // 2)
    expected_corner = filter_image(x[:, :tile + 2 * halo, :tile + 2 * halo], weights)[:, :tile, :tile]
    inner = x[:, r - halo:r + tile + halo, c - halo:c + tile + halo] if r >= halo else None
    worst = float(np.abs(y[:, :tile, :tile] - expected_corner).max())
    if inner is not None:
        expected_inner = conv2d(inner, weights)
        worst = max(worst, float(np.abs(y[:, r:r + tile, c:c + tile] - expected_inner).max()))
    scale = max(1.0, float(np.abs(expected_corner).max()))
    ok = worst <= 1e-5 * scale
    print(f"spot check against the eager op on {tile}x{tile} tiles (corner and centre): max difference "
          f"{worst:.2e} ({'ok' if ok else 'FAILED'})")
    return 0 if ok else 1


# ---- the benchmark -----------------------------------------------------------------------------------
def scaling(args) -> int:
    import dask

    counts = [int(n) for n in args.scaling.split(",")]
    weights, chunk = bank(args.channels), chunk_shape(args.chunk, args.size)
    flops = 2 * weights.size * args.size ** 2
    print(f"conv2d of a ({args.channels}, {args.size}, {args.size}) float32 image "
          f"({args.channels * args.size ** 2 * 4 / _GIB:.2f} GiB, chunks {chunk[0]}x{chunk[1]}) with a "
          f"{weights.shape} bank, 'same' reflect; image generated on the workers, result summed there; "
          f"{args.repeat} interleaved rounds, a fresh cluster each; workers: 1 thread each, memory limit "
          f"{args.memory_limit}")
    filtered = filter_image(synthetic_image(args.size, args.channels, chunk), weights, args.backend)
    # chunk sums added 8 at a time: dask's default (16 over the 3 axes: pairs) is a task per chunk more,
    # and with 32 at a time the workers generated 32 bands ahead of their sums (twice the memory)
    total = filtered.sum(split_every=dict.fromkeys(range(filtered.ndim), 8))
    warm = filter_image(synthetic_image(256, args.channels, (64, 64)), weights, args.backend).sum()
    # control: the same work as independent tasks (each band generated and filtered on its own, no
    # halo exchange, no dask.array graph): what the cores give 1 vs n processes for this kernel right now
    bands = [(r0, min(args.size, r0 + chunk[0]), c0, min(args.size, c0 + chunk[1]))
             for r0 in range(0, args.size, chunk[0]) for c0 in range(0, args.size, chunk[1])]
    control = dask.delayed(sum)([dask.delayed(_filtered_band)(args.size, args.channels, band, weights, args.backend)
                                 for band in bands])
    times = {n: [] for n in counts}
    control_times = {n: [] for n in counts}
    sums, peaks = {}, dict.fromkeys(counts, 0)
    for _ in range(args.repeat):
        for n in counts:
            # a cluster per round: one left running idle beside the timed one takes CPU from it
            with local_cluster(n, args.memory_limit) as client:
                client.compute(warm).result()  # imports, thread pools, BLAS on every worker
                start = time.perf_counter()
                sums[n] = float(client.compute(total).result())
                times[n].append(time.perf_counter() - start)
                start = time.perf_counter()
                client.compute(control).result()
                control_times[n].append(time.perf_counter() - start)
                peaks[n] = max(peaks[n], *client.run(peak_rss).values())
    if len(set(sums.values())) > 1:
        print(f"the sums differ between clusters: {sums}")
        return 1
    print("\n| workers | best s | median s | spread | speed-up (best) | speed-up (median) | GFLOP/s (best) | "
          "peak worker RSS | control speed-up (median) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    one, control_one = statistics.median(times[counts[0]]), statistics.median(control_times[counts[0]])
    for n in counts:
        best, median = min(times[n]), statistics.median(times[n])
        print(f"| {n} | {best:.1f} | {median:.1f} | {(max(times[n]) - best) / median:.0%} | "
              f"{min(times[counts[0]]) / best:.2f}x | {one / median:.2f}x | {flops / best / 1e9:.1f} | "
              f"{peaks[n] / _MIB:.0f} MiB | {control_one / statistics.median(control_times[n]):.2f}x |")
    print(f"spread = (slowest - fastest) / median of the {args.repeat} rounds; control = the same {len(bands)} "
          f"chunks filtered as independent tasks (no halo exchange) on the same clusters: the speed-up the "
          f"cores allowed this kernel during the run")
    return 0


def _filtered_band(size: int, channels: int, band, weights, backend) -> float:
    """The control's task: one chunk of the synthetic image generated and filtered on its own (its
    own edges mirrored instead of its neighbours' halo), summed."""
    r0, r1, c0, c1 = band
    block = _image_block(size, channels, block_info={None: {"array-location": [(0, channels), (r0, r1), (c0, c1)]}})
    return float(filter_image(block, weights, backend).sum())
