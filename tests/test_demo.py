"""The demo runs end to end and writes a PNG whose panels are the real feature maps."""
import numpy as np
import pytest

from gpuconv import _reference as ref
from gpuconv import __main__ as cli
from gpuconv import _demo, filters

PIL = pytest.importorskip("PIL.Image")

PAD, LABEL_H, COLUMNS = 4, 14, 5  # _demo.grid_png's layout


def panel(grid: np.ndarray, i: int, h: int, w: int) -> np.ndarray:
    left = PAD + (i % COLUMNS) * (w + PAD)
    top = PAD + (i // COLUMNS) * (h + LABEL_H + PAD) + LABEL_H
    return grid[top:top + h, left:left + w]


def test_demo_png_panels_are_the_feature_maps(tmp_path, capsys):
    """Every panel of the grid: the input image, then each filter's response (from the float64
    reference, with the demo's reflect "same" padding) scaled to 0..255 over its own range."""
    out = tmp_path / "grid.png"
    assert cli.main(["demo", "--size", "32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[numpy]" in printed and str(out.resolve()) in printed
    grid = np.asarray(PIL.open(out).convert("RGB")).astype(int)
    image = _demo.test_image(32)
    np.testing.assert_array_equal(panel(grid, 0, 32, 32), (image.transpose(1, 2, 0) * 255).astype(np.uint8))
    maps = ref.conv2d(image[None], filters.bank(_demo.FILTERS, in_channels=3), padding="same",
                      padding_mode="reflect")[0]
    assert len(_demo.FILTERS) == maps.shape[0] == 12
    for i, (name, fmap) in enumerate(zip(_demo.FILTERS, maps), start=1):
        expected = (fmap - fmap.min()) / (fmap.max() - fmap.min()) * 255
        got = panel(grid, i, 32, 32)
        assert (got == got[..., :1]).all(), f"panel {name} is not grey"
        # the demo truncates its float32 maps: one grey level apart from the float64 reference at most
        assert np.abs(got[..., 0] - expected).max() < 1 + 1e-3, f"panel {name} differs from its feature map"


def test_demo_reads_an_image(tmp_path, rng):
    src = tmp_path / "in.png"
    PIL.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "grid.png"
    assert cli.main(["demo", "--image", str(src), "--out", str(out)]) == 0
    assert out.stat().st_size > 0


def test_demo_rejects_tiny_size():
    with pytest.raises(ValueError, match="--size"):
        _demo.test_image(4)
