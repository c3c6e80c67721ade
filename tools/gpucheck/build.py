"""Step "build": every kernel of gpuconv._kernels.KERNEL_SOURCES built exactly as the CUDA backend
builds it (gpuconv._kernels.get_module: CuPy's RawModule with the backend's options and name
expressions), with the build time per file and, per kernel as loaded on the device, registers,
local memory (spills and stack: should be 0), static shared memory, max threads per block and the
binary's architecture. Later steps load the modules from CuPy's kernel cache.

--device emu builds the same files for the emulator instead (the dry run): no device attributes.
The last line, `GPUCHECK-BUILD <json>`, is what the summary reads.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

MARKER = "GPUCHECK-BUILD"
ATTRIBUTES = ("num_regs", "local_size_bytes", "shared_size_bytes", "max_threads_per_block", "binary_version")


def build(device_kind: str) -> dict:
    from gpuconv import _kernels

    files, kernels, errors = {}, [], {}
    for file, names in _kernels.KERNEL_SOURCES.items():
        started = time.perf_counter()
        try:
            module = _kernels.get_module(file, device_kind)
            if device_kind == "cuda":
                module.compile()
            functions = {name: module.get_function(name) for name in names}
        except Exception as exc:  # report it and build the other files
            errors[file] = f"{type(exc).__name__}: {exc}"
            continue
        files[file] = round(time.perf_counter() - started, 3)
        for name, function in functions.items():
            row = {"file": file, "kernel": name}
            if device_kind == "cuda":
                row.update({attribute: getattr(function, attribute) for attribute in ATTRIBUTES})
            kernels.append(row)
    return {"device": device_kind, "build_seconds": files, "kernels": kernels, "errors": errors,
            "expected": sum(len(names) for names in _kernels.KERNEL_SOURCES.values())}


def table(report: dict) -> list[str]:
    lines = [f"{'file':<24} {'kernel':<58} {'regs':>4} {'local':>5} {'smem':>6} {'thr':>5} {'sm':>3}"]
    for row in report["kernels"]:
        if "num_regs" in row:
            lines.append(f"{row['file']:<24} {row['kernel']:<58} {row['num_regs']:>4} {row['local_size_bytes']:>5} "
                         f"{row['shared_size_bytes']:>6} {row['max_threads_per_block']:>5} {row['binary_version']:>3}"
                         + ("  LOCAL MEMORY" if row["local_size_bytes"] else ""))
        else:
            lines.append(f"{row['file']:<24} {row['kernel']:<58} (emulator: no device attributes)")
    lines += [f"built {file} in {seconds:.2f} s" for file, seconds in report["build_seconds"].items()]
    lines += [f"FAILED {file}: {message}" for file, message in report["errors"].items()]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", choices=("cuda", "emu"), default="cuda")
    args = parser.parse_args(argv)
    report = build(args.device)
    print("\n".join(table(report)))
    print(f"{MARKER} {json.dumps(report)}")
    return 1 if report["errors"] or len(report["kernels"]) != report["expected"] else 0


if __name__ == "__main__":
    sys.exit(main())
