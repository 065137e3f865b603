"""The pixel size an encoded image declares in its header, read without decoding it.

The server caps the pixels a request may make a model decode (`--max_image_pixels`): a few kilobytes of PNG
can declare 100000 x 100000 pixels, and `tf.io.decode_image` inside an `*_encoded` signature would try to
allocate them. Covers the formats `tf.io.decode_image` decodes (PNG, JPEG, GIF, BMP, WebP); anything else
(garbage, truncated headers) gives None and is left to the model, which answers as TF Serving would.
"""

from __future__ import annotations

import struct

_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)


def _jpeg(data: bytes):
  i = 2
  while i + 4 <= len(data):
    if data[i] != 0xFF:
      return None
    marker = data[i + 1]
    if marker == 0xFF:  # fill byte
      i += 1
      continue
    if marker in (0x01, *range(0xD0, 0xD9)):  # standalone markers: no length
      i += 2
      continue
    (length,) = struct.unpack_from(">H", data, i + 2)
    if marker in _JPEG_SOF:
      if i + 9 > len(data):
        return None
      height, width = struct.unpack_from(">HH", data, i + 5)
      return height, width
    i += 2 + length
  return None


def _webp(data: bytes):
  chunk = data[12:16]
  if chunk == b"VP8 " and len(data) >= 30:
    width, height = struct.unpack_from("<HH", data, 26)
    return height & 0x3FFF, width & 0x3FFF
  if chunk == b"VP8L" and len(data) >= 25:
    (bits,) = struct.unpack_from("<I", data, 21)
    return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
  if chunk == b"VP8X" and len(data) >= 30:
    width = int.from_bytes(data[24:27], "little") + 1
    height = int.from_bytes(data[27:30], "little") + 1
    return height, width
  return None


def declared_size(data: bytes):
  """(height, width) from an encoded image's header, or None when the header is not one we can read."""
  try:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
      width, height = struct.unpack_from(">II", data, 16)
      return height, width
    if data.startswith(b"\xff\xd8"):
      return _jpeg(data)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
      width, height = struct.unpack_from("<HH", data, 6)
      return height, width
    if data.startswith(b"BM") and len(data) >= 26:
      (header,) = struct.unpack_from("<I", data, 14)
      if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack_from("<HH", data, 18)
      else:
        width, height = struct.unpack_from("<ii", data, 18)
      return abs(height), abs(width)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
      return _webp(data)
  except struct.error:
    return None
  return None
