"""`python -m gpuconv demo`: a bank of classic filters in one conv2d call, then pooling,
on every available backend, and a PNG grid of the image and its feature maps."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from . import filters
from ._api import avg_pool2d, conv2d, max_pool2d
from .backends import available_backends

FILTERS = ["identity", "box", "gaussian", "sharpen", "sobel_x", "sobel_y", "prewitt_x", "prewitt_y",
           "scharr_x", "scharr_y", "laplacian", "emboss"]
# The emulator runs CUDA kernels thread by thread on the CPU: give it a smaller crop.
EMULATED_CROP = 48


MIN_SIZE = 16


def add_arguments(parser):
    parser.add_argument("--image", type=_existing_file,
                        help="an image file to filter (default: a generated test image)")
    parser.add_argument("--out", type=Path, default=Path("out/demo.png"), help="where to write the PNG grid")
    parser.add_argument("--size", type=_at_least(MIN_SIZE), default=256, help="side of the generated test image")
    parser.add_argument("--pool", type=_at_least(1), default=2, help="pooling window (and stride)")


def _existing_file(value: str) -> Path:
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"{value!r}: no such file")
    return Path(value)


def _at_least(minimum: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{value!r}: must be an integer >= {minimum}")
        return number

    return parse


def test_image(size: int) -> np.ndarray:
    """(3, size, size) float32 in [0, 1]: a colour gradient, a disc, a square, stripes."""
    if size < MIN_SIZE:
        raise ValueError(f"--size={size}: must be at least {MIN_SIZE}")
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.stack([0.2 + 0.5 * x, 0.2 + 0.5 * y, 0.6 - 0.4 * x * y])
    disc = (x - 0.35) ** 2 + (y - 0.4) ** 2 < 0.18 ** 2
    img[:, disc] = np.array([0.95, 0.3, 0.2])[:, None]
    square = (x > 0.6) & (x < 0.85) & (y > 0.55) & (y < 0.8)
    img[:, square] = np.array([0.1, 0.2, 0.9])[:, None]
    stripes = (y > 0.85) & (np.floor(x * 16) % 2 == 0)
    img[:, stripes] = 1.0
    return img.astype(np.float32)


def read_image(path: Path) -> np.ndarray:
    Image = _pillow()
    try:
        image = Image.open(path).convert("RGB")
    except OSError as exc:  # PIL.UnidentifiedImageError among them
        raise SystemExit(f"gpuconv demo: error: --image {str(path)!r}: cannot read it as an image ({exc})") from None
    return (np.asarray(image, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise SystemExit("the demo writes PNGs with Pillow: pip install 'gpuconv[demo]' (or pillow)") from None
    return Image


def run_pipeline(image: np.ndarray, weights: np.ndarray, pool: int, backend: str):
    """Filter bank -> max pool and avg pool; returns the three results and the seconds each took."""
    x = image[None]
    results, seconds = [], []
    for op in (lambda: conv2d(x, weights, padding="same", padding_mode="reflect", backend=backend),
               lambda: max_pool2d(results[0], pool, backend=backend),
               lambda: avg_pool2d(results[0], pool, backend=backend)):
        start = time.perf_counter()
        results.append(op())
        seconds.append(time.perf_counter() - start)
    return results, seconds


def grid_png(image: np.ndarray, maps: np.ndarray, names, path: Path, columns: int = 5) -> None:
    """The image and each feature map (each scaled to its own range), labelled, as one PNG."""
    Image = _pillow()
    from PIL import ImageDraw

    h, w = image.shape[1:]
    tiles = [(np.clip(image.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)]
    for fmap in maps:
        lo, hi = float(fmap.min()), float(fmap.max())
        grey = ((fmap - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(fmap)).astype(np.uint8)
        tiles.append(np.repeat(grey[:, :, None], 3, axis=2))
    labels = ["input"] + list(names)
    rows = -(-len(tiles) // columns)
    pad, label_h = 4, 14
    canvas = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        left = pad + (i % columns) * (w + pad)
        top = pad + (i // columns) * (h + label_h + pad)
        draw.text((left, top), label, fill="black")
        canvas.paste(Image.fromarray(tile), (left, top + label_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def run(args) -> int:
    _pillow()  # before the work: the PNG needs it
    image = read_image(args.image) if args.image else test_image(args.size)
    weights = filters.bank(FILTERS, in_channels=3)
    print(f"image {image.shape} float32, filter bank {weights.shape} ({', '.join(FILTERS)})")
    feature_maps = None
    for backend in available_backends():
        crop = image[:, :EMULATED_CROP, :EMULATED_CROP] if backend == "cuda-emu" else image
        run_pipeline(crop, weights, args.pool, backend)  # warm-up: CUDA backends compile kernels on first use
        results, seconds = run_pipeline(crop, weights, args.pool, backend)
        results = [_to_numpy(a) for a in results]
        note = f" (on a {EMULATED_CROP}x{EMULATED_CROP} crop)" if crop is not image else ""
        print(f"[{backend}]{note}")
        for name, result, sec in zip(("conv2d", "max_pool2d", "avg_pool2d"), results, seconds):
            print(f"  {name:<11} -> {str(result.shape):<20} {sec * 1e3:9.2f} ms")
        if backend == "numpy":
            feature_maps = results[0][0]
        else:
            expected = run_pipeline(crop, weights, args.pool, "numpy")[0][0]
            err = float(np.abs(results[0] - expected).max() / np.abs(expected).max())
            print(f"  conv2d max difference to numpy, relative to the output's scale: {err:.1e}")
    args.out = Path(args.out)
    grid_png(image, feature_maps, FILTERS, args.out)
    print(f"wrote {args.out.resolve()}")
    return 0


def _to_numpy(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)
