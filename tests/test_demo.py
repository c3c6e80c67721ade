"""The demo runs end to end and writes a PNG whose panels are the real feature maps."""
import numpy as np
import pytest

from gpuconv import __main__ as cli
from gpuconv import _demo, conv2d, filters

PIL = pytest.importorskip("PIL.Image")


def test_demo_writes_png(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["demo", "--size", "32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[numpy]" in printed and str(out.resolve()) in printed
    grid = np.asarray(PIL.open(out).convert("RGB"))
    assert grid.shape[0] > 32 and grid.shape[1] > 5 * 32
    # The first panel after the input is the identity filter: the mean of the RGB channels.
    image = _demo.test_image(32)
    maps = conv2d(image[None], filters.bank(_demo.FILTERS, in_channels=3), padding="same", padding_mode="reflect")
    grey = maps[0, _demo.FILTERS.index("identity")]
    np.testing.assert_allclose(grey, image.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_demo_reads_an_image(tmp_path):
    src = tmp_path / "in.png"
    rng = np.random.default_rng()
    PIL.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "grid.png"
    assert cli.main(["demo", "--image", str(src), "--out", str(out)]) == 0
    assert out.stat().st_size > 0


def test_demo_rejects_tiny_size():
    with pytest.raises(ValueError, match="--size"):
        _demo.test_image(4)
