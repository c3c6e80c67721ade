"""Planted bugs in a tiled convolution (kernels/conv_tiled.cu) that pass unnoticed on stale
memory but must show in the emulator, whose shared memory starts every block as NaN and whose
thread orders let a missing barrier read unloaded data. The correct kernel must match NumPy in
every order (test_emulator_basics.py), so these tests can fail. Divergent barriers and shuffles
after an exit are in test_emulator_errors.py; sanitizer-only bugs in test_emulator_sanitizers.py."""

from __future__ import annotations

import numpy as np
import pytest

from emu_support import run_conv_tiled

pytestmark = pytest.mark.emulator

K = 3


def _run_conv(emulator, defines: tuple[str, ...], rng):
    n, c, h, w, f = 1, 2, 34, 34, 2
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((f, c, K, K), dtype=np.float32)
    y = np.zeros((n, f, h - K + 1, w - K + 1), np.float32)   # zeros, not NaN: only the kernel's reads can poison it
    run_conv_tiled(emulator, x, wt, y, options=tuple(f"-D{d}" for d in defines))
    return y


@pytest.mark.parametrize("bug", ["SKIP_SYNC_AFTER_LOAD", "SHORT_HALO"])
def test_planted_tile_bugs_poison_the_output(emulator, order, bug, rng):
    y = _run_conv(emulator, (bug,), rng)
    assert np.isnan(y).any(), f"{bug} went unnoticed in {order[0]} order"


def test_short_halo_poisons_exactly_the_rows_that_need_the_missing_row(emulator, order, rng):
    y = _run_conv(emulator, ("SHORT_HALO",), rng)
    bad_rows = np.flatnonzero(np.isnan(y[0, 0]).any(axis=1))
    # The last halo row of each 16-row tile is missing: the tile's last output row needs it.
    np.testing.assert_array_equal(bad_rows, [15, 31])


def test_correct_kernel_leaves_no_nan(emulator, order, rng):
    assert not np.isnan(_run_conv(emulator, (), rng)).any()
