"""Image decoding, normalisation and record encoding shared by ingest (and usable by serving clients/evaluate).

Pure Pillow + numpy + protobuf: no TensorFlow import, so Beam workers start in well under a second.

`prepare_image(source, ...)` turns one source file (its bytes, or a binary file object read lazily) into an 8-bit RGB image whose shorter side is at most
`load_size`:
  1. the content decides the format (never the file name); an empty file, non-image, truncated/corrupt file or
     an image with more than `max_pixels` pixels (checked from the header, BEFORE decoding, by Pillow's own
     decompression-bomb guard set to raise) raises `ImageRejected` with a reason code and a sentence;
  2. animated images (GIF/APNG/WebP/multi-page TIFF) use their first frame;
  3. JPEGs much larger than needed are decoded at a reduced DCT scale (Pillow draft mode, still >= load_size);
  4. the EXIF orientation is applied (ImageOps.exif_transpose);
  5. modes are converted to RGB: L/1/P/CMYK/YCbCr/LAB/HSV by Pillow; 16-bit (I;16*, I) scaled by 1/257;
     float (F) clipped to [0, 255]; anything with alpha (RGBA, LA, PA, P with transparency) is composited
     over `background`;
  6. the image is downscaled (LANCZOS, with Pillow's reducing_gap pre-reduction) so its shorter side is
     `load_size`, aspect ratio kept. Images already smaller are NEVER upscaled: upscaling invents no detail and
     would hide a too-small dataset; components.validate reports images smaller than the training crop.

`encode_example(features)` serialises a `tf.train.Example` (wire-identical to TensorFlow's proto, parsed by
tf.io.parse_single_example / tf.train.Example.FromString) without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import io
import math
import threading
import warnings
from typing import BinaryIO

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from PIL import Image, ImageFile, ImageOps

# Reason codes -> what a person should understand (and do). Used in rejected.jsonl and stats.json.
REASONS = {
    "empty_file": "the file is empty (0 bytes); re-copy or delete it",
    "not_an_image": "the content is not an image format Pillow can read (the file name does not matter); "
                    "delete it or convert it to PNG/JPEG",
    "truncated": "the image data ends early (truncated download or copy); re-download or delete it",
    "corrupt": "the image data is corrupt and cannot be decoded; re-download or delete it",
    "too_many_pixels": "the header declares more pixels than --max_pixels (decompression-bomb guard); "
                       "shrink the image or raise --max_pixels",
    "unreadable": "the file cannot be read (permissions or I/O error); fix its permissions",
    "broken_symlink": "the path is a symbolic link whose target does not exist (or a loop of links); fix or "
                      "remove the link",
    "unlistable_folder": "the folder cannot be listed (permissions, I/O error, path too long): none of its files "
                         "were ingested; fix it or move its files to a shorter path",
}

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default limit (~ 0.25 GB of RGBA)
PNG_COMPRESS_LEVEL = 1  # zlib level for stored PNGs: ~5x faster than Pillow's default 6 for ~10% more bytes


class ImageRejected(Exception):
  """An input that cannot become a training image; `reason` is a key of REASONS."""

  def __init__(self, reason: str, detail: str = ""):
    if reason not in REASONS:
      raise ValueError(f"unknown rejection reason {reason!r}; known: {sorted(REASONS)}")
    self.reason = reason
    self.detail = detail
    super().__init__(f"{reason}: {REASONS[reason]}" + (f" ({detail})" if detail else ""))


@dataclasses.dataclass(frozen=True)
class PreparedImage:
  """One decoded, normalised image.

  Attributes:
    pixels: uint8 `[H, W, 3]` RGB, shorter side min(load_size, source shorter side).
    source_format: Pillow's format name of the content ("JPEG", "PNG", "GIF", ...).
    source_mode: Pillow mode of the (first) frame before conversion ("RGB", "RGBA", "I;16", "CMYK", ...).
    source_width, source_height: source size in pixels after EXIF orientation.
    animated: the source had more than one frame (the first was used).
    exif_rotated: an EXIF orientation other than 1 was applied.
  """
  pixels: np.ndarray
  source_format: str
  source_mode: str
  source_width: int
  source_height: int
  animated: bool
  exif_rotated: bool


def parse_background(text: str) -> tuple[int, int, int]:
  """Parses a background colour ("white", "black", "#rrggbb", "r,g,b") -> (r, g, b) in 0..255."""
  named = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128)}
  value = text.strip().lower()
  if value in named:
    return named[value]
  try:
    if value.startswith("#") and len(value) == 7:
      rgb = tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))
    else:
      rgb = tuple(int(v) for v in value.split(","))
  except ValueError:
    rgb = ()
  if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
    raise ValueError(f"background {text!r} is not a colour: use white, black, gray, #rrggbb or r,g,b (0..255)")
  return rgb  # type: ignore[return-value]


def target_size(width: int, height: int, load_size: int) -> tuple[int, int]:
  """(width, height) after scaling the shorter side to `load_size` (never up); aspect ratio kept, rounded."""
  short = min(width, height)
  if short <= load_size:
    return width, height
  scale = load_size / short
  if width <= height:
    return load_size, max(1, round(height * scale))
  return max(1, round(width * scale)), load_size


def _decode_error(e: Exception) -> ImageRejected:
  """Maps a Pillow decode exception to a truncated/corrupt rejection."""
  text = f"{type(e).__name__}: {e}"
  if isinstance(e, EOFError) or "truncated" in str(e).lower() or "end of file" in str(e).lower():
    return ImageRejected("truncated", text)
  return ImageRejected("corrupt", text)


# _HOSTILE_BYTES: Pillow's format plugins raise many exception types on damaged or hostile bytes, not only
# OSError (a TIFF without a width raises TypeError "Missing dimensions"; KeyError, IndexError, struct.error,
# ZeroDivisionError occur too). Any exception while opening or decoding one file rejects that file as corrupt
# (or truncated): one file must never stop an ingest run. The exception's type and message are the detail.
_PIL_GUARD_LOCK = threading.Lock()
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"),
               (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"RIFF", "WebP"))


def _open(stream: BinaryIO, max_pixels: int) -> Image.Image:
  """Image.open (header only) with Pillow's decompression-bomb guard set to `max_pixels` and made to raise.

  Pillow checks width*height from the header inside Image.open, before any pixel is decoded.
  """
  try:
    with _PIL_GUARD_LOCK, warnings.catch_warnings():  # the guard is a Pillow global: set, open, restore
      previous = Image.MAX_IMAGE_PIXELS
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      Image.MAX_IMAGE_PIXELS = max_pixels
      try:
        return Image.open(stream)
      finally:
        Image.MAX_IMAGE_PIXELS = previous
  except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
    raise ImageRejected("too_many_pixels", f"--max_pixels={max_pixels}; Pillow: {e}") from None
  except Image.UnidentifiedImageError:
    stream.seek(0)
    head = stream.read(16)
    signature = next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)
    if signature:
      raise ImageRejected("corrupt", f"starts like a {signature} file but its header cannot be read "
                                     f"(truncated or damaged)") from None
    raise ImageRejected("not_an_image") from None
  except Exception as e:  # noqa: BLE001 - see _HOSTILE_BYTES
    raise _decode_error(e) from None


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
  """Converts any Pillow mode to 8-bit RGB (16-bit scaled, alpha composited over `background`)."""
  mode = image.mode
  if mode == "P" and "transparency" in image.info:
    image, mode = image.convert("RGBA"), "RGBA"
  if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, background + (255,))
    return Image.alpha_composite(canvas, rgba).convert("RGB")
  if mode.startswith("I;16") or mode == "I":
    values = np.asarray(image, dtype=np.float64)
    gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")
  if mode == "F":  # NaN -> 0 (a NaN -> uint8 cast is undefined), +-inf clipped like any other value; the NaNs
    # are replaced in float32 (casting a signalling NaN, e.g. bits 0x7f807f80, to float64 raises "invalid")
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")
  if mode == "RGB":
    return image
  return image.convert("RGB")


def prepare_image(source: bytes | BinaryIO, *, load_size: int | None, max_pixels: int = DEFAULT_MAX_PIXELS,
                  background: tuple[int, int, int] = (255, 255, 255)) -> PreparedImage:
  """Decodes one source file's bytes into an RGB image with shorter side <= load_size (see module doc).

  Args:
    source: the whole file content, or a seekable binary file object (read only as far as decoding needs,
      so a huge non-image costs no memory; it must stay open until this returns).
    load_size: target length of the shorter side (images already smaller are kept as they are); None keeps
      every image at its source size.
    max_pixels: largest width*height accepted, checked from the header before any pixel is decoded.
    background: RGB colour transparent pixels are composited on.

  Returns:
    PreparedImage with `pixels` uint8 `[H, W, 3]`.

  Raises:
    ImageRejected: the bytes cannot become an image (reason code in `.reason`).
  """
  stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
  if not stream.read(1):
    raise ImageRejected("empty_file")
  stream.seek(0)
  if ImageFile.LOAD_TRUNCATED_IMAGES:
    raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; ingest must see truncated files")
  image = _open(stream, max_pixels)
  try:
    return _prepare_opened(image, load_size, background)
  except ImageRejected:
    raise
  except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:  # a plugin's own check in load()
    raise ImageRejected("too_many_pixels", f"while decoding; Pillow: {e}") from None
  except Exception as e:  # noqa: BLE001 - see _HOSTILE_BYTES
    raise _decode_error(e) from None


def _prepare_opened(image: Image.Image, load_size: int | None,
                    background: tuple[int, int, int]) -> PreparedImage:
  """prepare_image after the header was read: decode the first frame, orient, convert, resize."""
  source_format = image.format or "unknown"
  animated = getattr(image, "n_frames", 1) > 1
  width, height = image.size
  drafted = False
  if load_size is not None and source_format == "JPEG" and min(width, height) >= 2 * load_size:
    scale = load_size / min(width, height)
    image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
    drafted = True
  # TIFF reports the oriented size at open and applies (then drops) the orientation tag itself in load().
  header_orientation = image.getexif().get(0x0112, 1)
  image.load()  # the first frame only
  source_mode = image.mode
  orientation = image.getexif().get(0x0112, 1)  # what is left to apply after load()
  if orientation != 1:
    image = ImageOps.exif_transpose(image)
    if orientation in (5, 6, 7, 8):
      width, height = height, width
  rgb = _to_rgb(image, background)
  if load_size is not None:
    # The target comes from the full source size: a draft-decoded JPEG has a rounded-up, slightly different
    # aspect ratio (11x13 drafted to 3x4 would give 2x3 instead of 2x2). Never upscaled (see target_size).
    size = target_size(width, height, load_size) if drafted else target_size(rgb.width, rgb.height, load_size)
    if rgb.size != size:
      rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
  pixels = np.asarray(rgb, dtype=np.uint8)
  return PreparedImage(pixels=pixels, source_format=source_format, source_mode=source_mode,
                       source_width=width, source_height=height, animated=animated,
                       exif_rotated=any(o in range(2, 9) for o in (header_orientation, orientation)))


def encode_png(pixels: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
  """uint8 `[H, W, 3]` -> PNG bytes (deterministic: no timestamp or text chunks)."""
  if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] != 3:
    raise ValueError(f"encode_png needs uint8 [H, W, 3] pixels, got {pixels.dtype} {list(pixels.shape)}")
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG", compress_level=compress_level)
  return buffer.getvalue()


def write_png(path: str, pixels: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> str:
  """Writes uint8 `[H, W, 3]` pixels to the PNG file `path` (encode_png); returns `path`."""
  data = encode_png(pixels, compress_level)
  with open(path, "wb") as f:
    f.write(data)
  return path


def decode_image(data: bytes | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
  """Any image file's bytes -> uint8 `[H, W, 3]` RGB at the source size (steps 1-5 of the module doc, no resize,
  alpha on white). Raises ImageRejected when the bytes are not a decodable image."""
  return prepare_image(data, load_size=None, max_pixels=max_pixels).pixels


def _example_classes():
  """Builds tensorflow.Example's message classes (tensorflow/core/example/{example,feature}.proto) in a private
  descriptor pool, so records are written with the real protobuf encoder but without importing TensorFlow."""
  fdp = descriptor_pb2.FileDescriptorProto(name="i2i_translate/tf_example.proto", package="tensorflow",
                                           syntax="proto3")
  label_rep = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
  label_opt = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
  types = descriptor_pb2.FieldDescriptorProto
  for name, ftype in (("BytesList", types.TYPE_BYTES), ("FloatList", types.TYPE_FLOAT),
                      ("Int64List", types.TYPE_INT64)):
    msg = fdp.message_type.add(name=name)
    field = msg.field.add(name="value", number=1, label=label_rep, type=ftype)
    if ftype != types.TYPE_BYTES:
      field.options.packed = True
  feature = fdp.message_type.add(name="Feature")
  feature.oneof_decl.add(name="kind")
  for number, (fname, tname) in enumerate((("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                           ("int64_list", "Int64List")), start=1):
    feature.field.add(name=fname, number=number, label=label_opt, type=types.TYPE_MESSAGE,
                      type_name=f".tensorflow.{tname}", oneof_index=0)
  features = fdp.message_type.add(name="Features")
  entry = features.nested_type.add(name="FeatureEntry")
  entry.options.map_entry = True
  entry.field.add(name="key", number=1, label=label_opt, type=types.TYPE_STRING)
  entry.field.add(name="value", number=2, label=label_opt, type=types.TYPE_MESSAGE,
                  type_name=".tensorflow.Feature")
  features.field.add(name="feature", number=1, label=label_rep, type=types.TYPE_MESSAGE,
                     type_name=".tensorflow.Features.FeatureEntry")
  example = fdp.message_type.add(name="Example")
  example.field.add(name="features", number=1, label=label_opt, type=types.TYPE_MESSAGE,
                    type_name=".tensorflow.Features")
  pool = descriptor_pool.DescriptorPool()
  pool.Add(fdp)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


_Example = _example_classes()


def encode_example(features: dict[str, bytes | int]) -> bytes:
  """Serialises a tf.train.Example: bytes values -> bytes_list, int values -> int64_list (one value each).

  Deterministic (map keys sorted), so equal inputs give byte-identical records.
  """
  example = _Example()
  for key, value in features.items():
    if isinstance(value, bytes):
      example.features.feature[key].bytes_list.value.append(value)
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
      example.features.feature[key].int64_list.value.append(int(value))
    else:
      raise TypeError(f"feature {key!r} must be bytes or int, got {type(value).__name__}")
  return example.SerializeToString(deterministic=True)
