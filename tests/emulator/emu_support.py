"""Helpers of the emulator tests."""

from pathlib import Path

KERNELS = Path(__file__).parent / "kernels"


def kernel_path(name: str) -> str:
    return str(KERNELS / name)
