"""Command line: python -m gpuconv {info,demo,bench,check,train,large}."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module with add_arguments(parser) and run(args) -> exit code, help)
COMMANDS = {
    "info": ("gpuconv._info", "versions, backends and why others are unavailable, devices, BLAS"),
    "demo": ("gpuconv._demo", "filter an image with a bank of classic kernels, pool, write a PNG grid"),
    "bench": ("gpuconv.benchmark.cli", "benchmark conv2d and pooling against peers"),
    "check": ("gpuconv._check", "compile every kernel and run the parity suite on every backend"),
    "train": ("gpuconv._train", "train a small CNN (gpuconv ops and gradients, NumPy) on scikit-learn's 8x8 digits"),
    "large": ("gpuconv._large", "filter an image larger than a worker's memory on a local dask cluster, zarr "
                                "in and out; --scaling 1,2: the 1 vs 2 worker benchmark (extra 'dask')"),
}


def main(argv=None) -> int:
    from . import __version__

    parser = argparse.ArgumentParser(prog="python -m gpuconv", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gpuconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        try:
            modules[name] = importlib.import_module(module_name)
        except ImportError as exc:
            modules[name] = exc
            continue
        modules[name].add_arguments(sub_parser)
    args = parser.parse_args(argv)
    module = modules[args.command]
    if isinstance(module, ImportError):
        print(f"gpuconv {args.command}: not available ({module})", file=sys.stderr)
        return 2
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
