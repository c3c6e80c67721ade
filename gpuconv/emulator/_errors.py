"""Exceptions of the CUDA emulator."""


class EmulatorError(RuntimeError):
    """A kernel misbehaved in the emulator (the message names kernel, block and thread), or the
    emulator cannot run here."""


class EmulatorCompileError(EmulatorError):
    """g++ rejected the source (the message holds the compiler's diagnostics)."""
