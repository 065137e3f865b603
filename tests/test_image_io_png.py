"""components.image_io.write_png: the one PNG file writer of the components and pipelines (round trip)."""

import numpy as np
import pytest
from PIL import Image

from components import image_io


def test_write_png_round_trips_pixels_and_returns_the_path(tmp_path):
  pixels = np.random.RandomState(1).randint(0, 256, (5, 7, 3)).astype(np.uint8)
  path = str(tmp_path / "x.png")
  assert image_io.write_png(path, pixels) == path
  with Image.open(path) as image:
    assert image.format == "PNG" and image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), pixels)
  np.testing.assert_array_equal(image_io.decode_image(open(path, "rb").read()), pixels)


def test_write_png_rejects_non_uint8_rgb(tmp_path):
  with pytest.raises(ValueError, match=r"encode_png needs uint8 \[H, W, 3\] pixels, got float32 \[5, 7\]"):
    image_io.write_png(str(tmp_path / "x.png"), np.zeros((5, 7), np.float32))
  assert not (tmp_path / "x.png").exists()
