"""Type aliases of the public API's annotations (gpuconv ships a py.typed marker)."""
from __future__ import annotations

from typing import Any, Literal, Tuple, Union

from numpy.typing import ArrayLike

__all__ = ["Array", "ArrayLike", "IntOrPair", "ConvPadding", "Conv1dPadding", "PadWidths", "PaddingMode", "PadMode",
           "SignalMode", "Boundary"]

# A result: a NumPy array for NumPy (or other host) input, a CuPy array for CuPy input.
Array = Any
IntOrPair = Union[int, Tuple[int, int]]
PadWidths = Union[int, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]
ConvPadding = Union[PadWidths, Literal["valid", "same"]]
Conv1dPadding = Union[int, Tuple[int, int], Literal["valid", "same"]]
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
PadMode = Literal["constant", "reflect", "replicate", "circular"]
SignalMode = Literal["full", "valid", "same"]
Boundary = Literal["fill", "wrap", "symm"]
