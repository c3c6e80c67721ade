"""Thread and block order between barriers: forward, reverse or seeded random.

GPUCONV_EMU_ORDER / GPUCONV_EMU_SEED set the default; set_order() overrides it at run time.
"""

from __future__ import annotations

import os

ORDERS = ("forward", "reverse", "random")
_override: tuple[str, int] | None = None


def set_order(order: str, seed: int = 0) -> None:
    """Run the following launches' threads and blocks in `order` ("forward", "reverse", "random")."""
    global _override
    if order not in ORDERS:
        raise ValueError(f"order={order!r}: must be one of {', '.join(ORDERS)}")
    _override = (order, int(seed))


def get_order() -> tuple[str, int]:
    if _override is not None:
        return _override
    order = os.environ.get("GPUCONV_EMU_ORDER", "forward").strip().lower() or "forward"
    if order not in ORDERS:
        raise ValueError(f"GPUCONV_EMU_ORDER={order!r}: must be one of {', '.join(ORDERS)}")
    seed = os.environ.get("GPUCONV_EMU_SEED", "0")
    try:
        return order, int(seed)
    except ValueError:
        raise ValueError(f"GPUCONV_EMU_SEED={seed!r}: must be an integer") from None


def current_order() -> tuple[int, int]:
    """(order code for the C runtime, seed)."""
    order, seed = get_order()
    return ORDERS.index(order), seed & 0xFFFFFFFFFFFFFFFF
