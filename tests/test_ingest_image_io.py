"""components.image_io: every source mode becomes the expected 8-bit RGB, every bad input the expected reason.

Images are made here with Pillow; expected pixels are computed from the conversion formulas, not from Pillow.
"""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from components import image_io


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, fmt, **kwargs)
  return buffer.getvalue()


def _prepare(data: bytes, load_size: int = 64, **kwargs) -> image_io.PreparedImage:
  return image_io.prepare_image(data, load_size=load_size, **kwargs)


def _reason(data: bytes, **kwargs) -> str:
  with pytest.raises(image_io.ImageRejected) as info:
    _prepare(data, **kwargs)
  assert info.value.reason in image_io.REASONS
  return info.value.reason


def _halves(width: int, height: int, left, right) -> np.ndarray:
  """uint8 [height, width, 3]: left half `left`, right half `right`."""
  pixels = np.zeros((height, width, 3), np.uint8)
  pixels[:, :width // 2] = left
  pixels[:, width // 2:] = right
  return pixels


def _png_with_header_size(width: int, height: int) -> bytes:
  """A small valid PNG whose IHDR is patched (CRC fixed) to declare width x height: decoding it would fail."""
  data = bytearray(_encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG"))
  data[16:24] = struct.pack(">II", width, height)
  data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
  return bytes(data)


def test_resize_keeps_aspect_shorter_side_is_load_size_never_upscales():
  assert image_io.target_size(600, 400, 100) == (150, 100)
  assert image_io.target_size(400, 600, 100) == (100, 150)
  assert image_io.target_size(90, 300, 100) == (90, 300)  # shorter side below load_size: unchanged
  big = _prepare(_encode(Image.new("RGB", (600, 400), (10, 200, 30)), "PNG"), load_size=100)
  assert big.pixels.shape == (100, 150, 3) and big.pixels.dtype == np.uint8
  assert (big.source_width, big.source_height, big.source_format) == (600, 400, "PNG")
  np.testing.assert_array_equal(big.pixels[50, 75], [10, 200, 30])  # flat colour survives LANCZOS
  small = _prepare(_encode(Image.new("RGB", (50, 30), (5, 6, 7)), "PNG"), load_size=100)
  assert small.pixels.shape == (30, 50, 3)


def test_large_jpeg_draft_decode_matches_full_decode():
  """The reduced-DCT (draft) path must give nearly the image a full decode + LANCZOS gives."""
  yy, xx = np.mgrid[0:768, 0:1024]
  pixels = np.stack([xx * 255 // 1023, yy * 255 // 767, (xx + yy) * 255 // 1790], -1).astype(np.uint8)
  data = _encode(Image.fromarray(pixels), "JPEG", quality=95)
  fast = _prepare(data, load_size=96).pixels
  assert fast.shape == (96, 128, 3)
  full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((128, 96), Image.Resampling.LANCZOS))
  assert np.abs(fast.astype(int) - full.astype(int)).mean() < 2.0


def test_exif_orientation_is_applied():
  """Orientation 6 means "rotate 90 degrees clockwise to display": left half ends up on top."""
  exif = Image.Exif()
  exif[0x0112] = 6
  data = _encode(Image.fromarray(_halves(40, 20, (255, 0, 0), (0, 0, 255))), "JPEG", quality=95,
                 exif=exif.tobytes())
  out = _prepare(data)
  assert out.exif_rotated and out.pixels.shape == (40, 20, 3)
  assert (out.source_width, out.source_height) == (20, 40)
  np.testing.assert_allclose(out.pixels[5, 10], [255, 0, 0], atol=12)
  np.testing.assert_allclose(out.pixels[35, 10], [0, 0, 255], atol=12)


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (10, 20, 30)])
def test_alpha_is_composited_on_the_background(background):
  rgba = np.zeros((4, 4, 4), np.uint8)
  rgba[..., :3] = (200, 100, 0)
  rgba[0, :, 3] = 255  # opaque row
  rgba[1, :, 3] = 0  # transparent row
  rgba[2, :, 3] = 128  # half
  out = _prepare(_encode(Image.fromarray(rgba), "PNG"), background=background).pixels
  bg = np.array(background, float)
  np.testing.assert_array_equal(out[0, 0], [200, 100, 0])
  np.testing.assert_array_equal(out[1, 0], background)
  np.testing.assert_allclose(out[2, 0], np.array([200, 100, 0]) * 128 / 255 + bg * 127 / 255, atol=1)


def test_grayscale_palette_bilevel_la_cmyk_16bit_and_animated_become_rgb():
  gray = _prepare(_encode(Image.new("L", (6, 6), 77), "PNG"))
  np.testing.assert_array_equal(gray.pixels[0, 0], [77, 77, 77])
  assert gray.source_mode == "L"

  bilevel = _prepare(_encode(Image.new("1", (6, 6), 1), "PNG"))
  np.testing.assert_array_equal(bilevel.pixels[0, 0], [255, 255, 255])

  palette = Image.new("P", (6, 6), 1)
  palette.putpalette([0, 0, 0, 12, 34, 56] + [0] * 762)
  palette.putpixel((0, 0), 0)
  opaque = _prepare(_encode(palette, "PNG"))
  np.testing.assert_array_equal(opaque.pixels[3, 3], [12, 34, 56])
  transparent = _prepare(_encode(palette, "PNG", transparency=0), background=(9, 9, 9))
  np.testing.assert_array_equal(transparent.pixels[0, 0], [9, 9, 9])  # transparent index -> background
  np.testing.assert_array_equal(transparent.pixels[3, 3], [12, 34, 56])

  la = _prepare(_encode(Image.new("LA", (6, 6), (100, 0)), "PNG"))
  np.testing.assert_array_equal(la.pixels[0, 0], [255, 255, 255])

  cmyk = _prepare(_encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
  assert cmyk.source_mode == "CMYK"
  np.testing.assert_allclose(cmyk.pixels[8, 8], [255, 0, 0], atol=8)

  deep = np.array([[0, 257 * 128, 65535, 1000]], np.uint16)  # 16-bit gray: value / 257
  sixteen = _prepare(_encode(Image.fromarray(deep), "PNG"))
  assert sixteen.source_mode.startswith("I;16")
  np.testing.assert_array_equal(sixteen.pixels[0, :, 0], [0, 128, 255, round(1000 / 257)])

  frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
  gif = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
  animated = _prepare(gif)
  assert animated.animated and animated.source_format == "GIF"
  np.testing.assert_array_equal(animated.pixels[4, 4], [255, 0, 0])  # the first frame


def test_bad_inputs_are_rejected_with_their_reason():
  good_png = _encode(Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), np.uint8)), "PNG")
  good_jpeg = _encode(Image.fromarray(np.random.RandomState(1).randint(0, 255, (64, 64, 3), np.uint8)), "JPEG")
  assert _reason(b"") == "empty_file"
  assert _reason(b"this is a text file named like an image\n") == "not_an_image"
  assert _reason(good_jpeg[:len(good_jpeg) // 2]) == "truncated"
  assert _reason(good_png[:len(good_png) // 2]) == "truncated"
  assert _reason(good_png[:40]) == "corrupt"  # PNG signature, IHDR cut
  damaged = bytearray(good_png)
  damaged[100:110] = bytes(10)
  assert _reason(bytes(damaged)) == "corrupt"


def test_pixel_bomb_is_rejected_from_the_header_before_decoding():
  """The patched PNG has no pixel data for its declared size: only a header check can call it a bomb."""
  previous = Image.MAX_IMAGE_PIXELS
  assert _reason(_png_with_header_size(50_000, 50_000)) == "too_many_pixels"  # default guard
  assert _reason(_png_with_header_size(101, 100), max_pixels=10_000) == "too_many_pixels"  # between 1x and 2x
  assert _reason(_png_with_header_size(100, 100), max_pixels=10_000) == "truncated"  # allowed -> decoded -> short
  assert Image.MAX_IMAGE_PIXELS == previous  # Pillow's global is restored


def test_decode_image_keeps_the_source_size():
  exif = Image.Exif()
  exif[0x0112] = 6
  pixels = image_io.decode_image(_encode(Image.new("RGB", (700, 300), (0, 128, 255)), "JPEG", exif=exif.tobytes()))
  assert pixels.shape == (700, 300, 3) and pixels.dtype == np.uint8
  with pytest.raises(image_io.ImageRejected, match="not_an_image"):
    image_io.decode_image(b"GIF? no")


def test_background_parsing_and_bad_values():
  assert image_io.parse_background("white") == (255, 255, 255)
  assert image_io.parse_background("#0a0B0c") == (10, 11, 12)
  assert image_io.parse_background(" 1, 2,3 ") == (1, 2, 3)
  for bad in ("purple-ish", "1,2", "#12345", "0,0,256"):
    with pytest.raises(ValueError, match="not a colour"):
      image_io.parse_background(bad)


def test_png_encoding_is_deterministic_and_lossless():
  pixels = np.random.RandomState(3).randint(0, 255, (9, 7, 3), np.uint8)
  first, second = image_io.encode_png(pixels), image_io.encode_png(pixels.copy())
  assert first == second
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(first))), pixels)
  with pytest.raises(ValueError, match="uint8"):
    image_io.encode_png(pixels.astype(np.float32))
