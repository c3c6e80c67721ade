"""`python -m gpuconv bench`: conv2d and pooling on the layer set (or, with --pass backward, the
conv layers' gradients dx + dw), for each selected backend and each available peer; prints the
environment, a table and the speed ratios."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import overhead
from .contenders import PEERS
from .layers import LAYERS
from .report import plot, text, write_json
from .runner import Settings, run as run_benchmark

BACKENDS = ("numpy", "cuda", "cuda-emu")
DTYPES = ("float32", "float64", "float16", "tf32")


def _names(choices):
    """argparse type: a comma list whose items are all in choices."""

    def parse(value: str) -> list[str]:
        items = [item.strip() for item in value.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"{value!r}: expected a comma list of {', '.join(choices)}")
        return items

    return parse


def add_arguments(parser) -> None:
    layer_names = tuple(layer.name for layer in LAYERS)
    default_layers = ",".join(layer.name for layer in LAYERS if layer.default)
    parser.add_argument("--layers", type=_names(layer_names), action="extend",
                        help=f"layers to run, repeatable or comma list, of {','.join(layer_names)} "
                             f"(default: {default_layers})")
    parser.add_argument("--backend", type=_names(BACKENDS), action="extend", dest="backends",
                        help="gpuconv backends, repeatable or comma list (default: numpy, plus cuda when available)")
    parser.add_argument("--peers", type=_names(PEERS + ("none",)), action="extend",
                        help=f"peers to compare with (default: every one installed: {','.join(PEERS)}; 'none': none)")
    parser.add_argument("--pass", choices=("forward", "backward"), default="forward", dest="pass_name",
                        help="forward (default): conv2d and pooling; backward: the conv layers' input and weight "
                             "gradients (dx + dw; PyTorch: autograd's backward of the conv)")
    parser.add_argument("--dtype", type=_names(DTYPES), action="extend", dest="dtypes",
                        help="float32 (default), float64 (layers B and F), float16 and tf32 (float32 data, "
                             "precision='tf32'; layers A-D)")
    parser.add_argument("--batch", type=_positive, default=None,
                        help="N of every conv layer (default: each layer's own, 8 for A-D)")
    parser.add_argument("--repeat", type=_positive, default=None, help="timed calls per round (default 5)")
    parser.add_argument("--rounds", type=_positive, default=None,
                        help="interleaved rounds, at least (default 5; more until --min-time)")
    parser.add_argument("--min-time", type=_seconds, default=None, metavar="SECONDS",
                        help="per case, add rounds (at most 50) until the timed calls add up to this (default 2)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, each contender timed once: checks the runner, not the speed")
    parser.add_argument("--kernel-time", action="store_true",
                        help="on a GPU, also time gpuconv's kernels alone (CUDA events around each launch)")
    parser.add_argument("--overhead", action="store_true",
                        help="instead of the layers: host time per call of each op on tiny inputs, for each backend, "
                             "the CUDA launch path with its kernels stubbed, and PyTorch (CPU and CUDA)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--plot", type=Path, help="write a PNG bar chart of GFLOP/s (GB/s for pooling) here")


def _seconds(value: str) -> float:
    number = float(value)
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: must be a number of seconds >= 0")
    return number


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: must be an integer >= 1")
    return number


def settings_from(args) -> Settings:
    options = {"layers": args.layers, "backward": args.pass_name == "backward"}
    if args.backends:
        options["backends"] = tuple(dict.fromkeys(args.backends))
    if args.peers:
        options["peers"] = () if "none" in args.peers else tuple(dict.fromkeys(args.peers))
    if args.dtypes:
        options["dtypes"] = tuple(dict.fromkeys(args.dtypes))
    if args.batch:
        options["batch"] = args.batch
    settings = Settings.for_smoke(**options) if args.smoke else Settings(**options)
    if args.repeat:
        settings.repeat = args.repeat
    if args.rounds:
        settings.rounds = args.rounds
    if args.min_time is not None:
        settings.min_seconds = args.min_time
    settings.kernel_time = args.kernel_time
    return settings


def run_overhead(args) -> int:
    options = {}
    if args.backends:
        options["backends"] = tuple(dict.fromkeys(args.backends))
    if args.peers:
        options["peers"] = tuple(p for p in dict.fromkeys(args.peers) if p.startswith("torch"))
    settings = overhead.Settings.for_smoke(**options) if args.smoke else overhead.Settings(**options)
    if args.rounds:
        settings.rounds = args.rounds
    document = overhead.run(settings, progress=lambda line: print(line, file=sys.stderr, flush=True))
    sys.stdout.write(overhead.text(document))
    if args.json:
        write_json(document, args.json)
        print(f"wrote {args.json}")
    return 1 if document["problems"] else 0


def run(args) -> int:
    if args.overhead:
        return run_overhead(args)
    settings = settings_from(args)
    if "cuda-emu" in settings.backends and not settings.smoke:
        print("gpuconv bench: note: cuda-emu runs the CUDA kernels thread by thread on the CPU; full-size "
              "layers take very long (--smoke runs tiny ones)", file=sys.stderr)
    def write_partial(document):
        if args.json:
            write_json(document, args.json)

    try:
        document = run_benchmark(settings, on_case=write_partial)
    except ValueError as exc:
        print(f"gpuconv bench: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text(document))
    if args.json:
        write_json(document, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot(document, args.plot)
        print(f"wrote {args.plot}")
    return 1 if document["problems"] else 0
