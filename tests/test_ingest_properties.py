"""Property-based tests (hypothesis) of image_io and the ingest pipeline over generated hostile corpora.

Invariant: nothing crashes; every input is either stored once as 8-bit RGB at the requested size (shorter side
min(load_size, source's), aspect ratio kept) or rejected with a known reason; nothing is lost (listed = stored +
duplicates + rejected, each entry accounted for by name); reruns are byte-identical.

Generated: image bytes in every (mode, format) pair Pillow writes and reads back (modes 1, L, P, RGB, RGBA, LA, PA,
I;16, I, F, CMYK, YCbCr, LAB, HSV; formats PNG, JPEG, GIF, BMP, TIFF, WebP, PPM, TGA, PCX, SGI, IM, DDS, QOI),
sizes 1..40 px, pixel values from raw random bytes (F-mode NaN/inf included), animation, EXIF orientations 1..8,
mutations (truncation, flipped bytes, prefix/suffix garbage), raw bytes behind real magic numbers; folders with
arbitrary byte names (not UTF-8, newlines, "%", junk names, 255 bytes), subfolders, duplicates, empty, garbage,
FIFOs, dangling and looping links.

Reproducible in CI: `derandomize=True` (examples derived from each test's source, no example database) and no
deadline (2 shared cores). To hunt for new cases: `I2I_HYPOTHESIS_EXPLORE=1` (random seeds) and
`I2I_HYPOTHESIS_SCALE=10` (ten times the examples); a failure prints its `@example(...)` to keep here. The
examples kept below are the cases these tests found (see each one's comment).
"""

import dataclasses
import hashlib
import io
import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from components import image_io, ingest_lib, ingest_sources
from tests import ingest_corpora as corpora

# numpy's "invalid value encountered in cast" (NaN -> uint8 is undefined) must fail the properties, not pass by.
# Pillow's TIFF reader warns about the damaged files it is given on purpose.
pytestmark = [pytest.mark.filterwarnings("error::RuntimeWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")]
EXPLORE = os.environ.get("I2I_HYPOTHESIS_EXPLORE", "") not in ("", "0")
SCALE = float(os.environ.get("I2I_HYPOTHESIS_SCALE", "1"))


def _settings(examples: int) -> settings:
  return settings(max_examples=max(1, int(examples * SCALE)), derandomize=not EXPLORE, deadline=None,
                  database=None if not EXPLORE else settings.default.database, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------------------------------
# Image bytes
# ---------------------------------------------------------------------------------------------------------------
BYTES_PER_PIXEL = {"L": 1, "P": 1, "RGB": 3, "RGBA": 4, "LA": 2, "PA": 2, "CMYK": 4, "YCbCr": 3, "LAB": 3,
                   "HSV": 3, "I;16": 2, "I;16B": 2, "I": 4, "F": 4}
MODES = ("1",) + tuple(BYTES_PER_PIXEL)
# Not ICO: its writer picks square icon sizes from a list (and writes a file with no icon below 16 px), so the
# decoded size is the writer's choice; ICO bytes are covered by the magic-number and damaged-bytes tests.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "TGA", "PCX", "SGI", "IM", "DDS", "QOI")
ANIMATED = ("GIF", "PNG", "WEBP", "TIFF")
EXIF_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF")


def _frame(mode: str, width: int, height: int, raw: bytes, palette_seed: int) -> Image.Image:
  """An image of `mode` whose pixel memory is `raw` (repeated to length): any value the mode can hold."""
  n = (width + 7) // 8 * height if mode == "1" else width * height * BYTES_PER_PIXEL[mode]
  data = (raw * (n // max(1, len(raw)) + 1))[:n] if raw else bytes(n)
  image = Image.frombytes(mode, (width, height), data)
  if mode in ("P", "PA"):
    image.putpalette(np.random.RandomState(palette_seed).randint(0, 256, 768, np.uint8).tobytes())
  return image


def _encode(mode: str, fmt: str, width: int, height: int, raw: bytes, frames: int = 1, orientation: int = 1,
            transparency: int | None = None) -> bytes:
  images = [_frame(mode, width, height, raw[i:] + raw[:i], i) for i in range(frames)]
  options = {}
  if frames > 1:
    options.update(save_all=True, append_images=images[1:])
  if orientation != 1:
    exif = Image.Exif()
    exif[0x0112] = orientation
    options["exif"] = exif.tobytes()
  if transparency is not None and mode == "P":
    options["transparency"] = transparency
  buffer = io.BytesIO()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    images[0].save(buffer, fmt, **options)
  return buffer.getvalue()


def _writable(mode: str, fmt: str, **kwargs) -> bool:
  """Pillow writes this (mode, format) and reads its own file back (a pair it cannot read back, such as a
  YCbCr TIFF, is a Pillow round-trip limit, not a valid input; see the YCbCr TIFF regression test)."""
  try:
    data = _encode(mode, fmt, 3, 2, bytes(range(7, 250, 3)), **kwargs)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      Image.open(io.BytesIO(data)).load()
  except Exception:  # noqa: BLE001 - Pillow raises OSError/ValueError/KeyError/TypeError for unsupported pairs
    return False
  return bool(data)


COMBOS = tuple((m, f) for f in FORMATS for m in MODES if _writable(m, f))
ANIMATED_COMBOS = frozenset((m, f) for m, f in COMBOS if f in ANIMATED and _writable(m, f, frames=2))
EXIF_COMBOS = frozenset((m, f) for m, f in COMBOS if f in EXIF_FORMATS and _writable(m, f, orientation=6))


@dataclasses.dataclass(frozen=True)
class ImageCase:
  """Generated image bytes and what they must become: `size` = (width, height) after EXIF orientation."""
  data: bytes
  mode: str
  fmt: str
  size: tuple[int, int]
  frames: int
  orientation: int


def _case(mode: str, fmt: str, width: int, height: int, raw: bytes = b"", frames: int = 1,
          orientation: int = 1) -> ImageCase:
  """An explicit ImageCase (for the regression examples)."""
  size = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
  return ImageCase(_encode(mode, fmt, width, height, raw, frames, orientation), mode, fmt, size, frames, orientation)


@st.composite
def image_cases(draw, max_side: int = 40) -> ImageCase:
  mode, fmt = draw(st.sampled_from(COMBOS))
  width, height = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
  raw = draw(st.binary(min_size=0, max_size=64))
  frames = draw(st.integers(1, 2)) if (mode, fmt) in ANIMATED_COMBOS else 1
  orientation = draw(st.integers(1, 8)) if (mode, fmt) in EXIF_COMBOS else 1
  transparency = draw(st.none() | st.integers(0, 255)) if mode == "P" else None
  data = _encode(mode, fmt, width, height, raw, frames, orientation, transparency)
  size = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
  return ImageCase(data, mode, fmt, size, frames, orientation)


def _mutate(data: bytes, mutation) -> bytes:
  kind, arg = mutation
  if kind == "truncate":
    return data[:int(len(data) * arg)]
  if kind == "flip":
    out = bytearray(data)
    for position, mask in arg:
      out[position % len(out)] ^= mask
    return bytes(out)
  if kind == "append":
    return data + arg
  return arg + data  # prefix


MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 2**20), st.integers(1, 255)), min_size=1,
                                        max_size=6)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("prefix"), st.binary(min_size=1, max_size=16)))
MAGICS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"GIF87a", b"BM", b"II*\x00", b"MM\x00*",
          b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"P6\n", b"P5 1 1 255\n", b"\x00\x00\x01\x00", b"qoif", b"DDS ",
          b"\x01\xda", b"<svg", b"%PDF-1.4", b"8BPS", b"\x0a\x05\x01\x08")


def _outcome(data: bytes, load_size: int, max_pixels: int):
  """prepare_image's result, or the rejection reason; any other exception propagates (the test fails)."""
  try:
    return image_io.prepare_image(data, load_size=load_size, max_pixels=max_pixels, background=(10, 200, 30))
  except image_io.ImageRejected as e:
    assert e.reason in image_io.REASONS
    return e.reason


def _check_stored(prepared: image_io.PreparedImage, size: tuple[int, int], load_size: int) -> None:
  """RGB uint8 with shorter side min(load_size, source's) and the documented target size."""
  pixels = prepared.pixels
  assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
  width, height = image_io.target_size(*size, load_size)
  assert (pixels.shape[1], pixels.shape[0]) == (width, height), (pixels.shape, size, load_size)
  assert min(pixels.shape[:2]) == min(load_size, *size)


@_settings(150)
@given(case=image_cases(), load_size=st.integers(1, 48), max_pixels=st.sampled_from([100, 600, 10**6]))
# Found by this test (both fixed in image_io.prepare_image):
@example(case=_case("1", "JPEG", 11, 13), load_size=2, max_pixels=10**6).via(
    "a draft-decoded JPEG was resized from its drafted 3x4 (rounded-up aspect ratio) to 2x3 instead of 2x2")
@example(case=_case("RGB", "TIFF", 30, 20, b"\x01\x02", orientation=6), load_size=8, max_pixels=10**6).via(
    "Pillow's TIFF loader applies and drops the orientation tag itself: the rotation was not counted "
    "(exif_rotated False, stats.json exif_rotated too low)")
@example(case=_case("F", "TIFF", 2, 1, b"\x80\x7f\x80\x7f\x00\x00\x80\xff"), load_size=4, max_pixels=10**6).via(
    "float pixels that are NaN (here a signalling NaN) were cast to uint8: undefined value, numpy RuntimeWarning")
def test_every_generated_image_becomes_rgb_at_the_requested_size_or_too_many_pixels(case, load_size, max_pixels):
  got = _outcome(case.data, load_size, max_pixels)
  if case.size[0] * case.size[1] > max_pixels:
    assert got == "too_many_pixels", (case.mode, case.fmt, case.size)
    return
  assert isinstance(got, image_io.PreparedImage), (case.mode, case.fmt, got)
  _check_stored(got, case.size, load_size)
  assert (got.source_width, got.source_height) == case.size
  assert got.exif_rotated == (case.orientation != 1)
  again = image_io.prepare_image(case.data, load_size=load_size, max_pixels=max_pixels, background=(10, 200, 30))
  np.testing.assert_array_equal(got.pixels, again.pixels)
  assert image_io.encode_png(got.pixels) == image_io.encode_png(again.pixels)
  full = image_io.decode_image(case.data, max_pixels=max_pixels)
  assert full.shape == (case.size[1], case.size[0], 3) and full.dtype == np.uint8


@_settings(150)
@given(case=image_cases(max_side=24), mutation=MUTATIONS, load_size=st.integers(1, 32))
# Found with I2I_HYPOTHESIS_EXPLORE=1 (then pinned to the smallest flips that show it): Pillow's TIFF plugin
# raised TypeError, not OSError, which escaped prepare_image and would have failed the whole Beam run.
@example(case=_case("1", "TIFF", 2, 2, b"\x10\x80"), mutation=("flip", [(106, 1)]), load_size=4).via(
    "TIFF without its ImageWidth tag: TypeError 'Missing dimensions'")
@example(case=_case("RGB", "TIFF", 2, 2, b"\x10\x80"), mutation=("flip", [(72, 1)]), load_size=4).via(
    "TIFF with a rational where an integer belongs: TypeError 'IFDRational' object cannot be interpreted ...")
def test_damaged_images_are_stored_at_the_requested_size_or_rejected_with_a_reason(case, mutation, load_size):
  data = _mutate(case.data, mutation)
  got = _outcome(data, load_size, 10**5)
  if isinstance(got, image_io.PreparedImage):
    _check_stored(got, (got.source_width, got.source_height), load_size)
  assert got != "empty_file" or not data


@_settings(150)
@given(head=st.sampled_from(MAGICS + (b"",)), body=st.binary(max_size=200), load_size=st.integers(1, 32))
@example(head=b"", body=b"", load_size=8).via("the empty file")
def test_arbitrary_bytes_behind_real_magic_numbers_never_crash(head, body, load_size):
  data = head + body
  got = _outcome(data, load_size, 10**5)
  if isinstance(got, image_io.PreparedImage):
    _check_stored(got, (got.source_width, got.source_height), load_size)
  else:
    assert (got == "empty_file") == (not data)


@_settings(300)
@given(raw=st.binary(max_size=300))
@example(raw=b"%").via("a lone escape character")
@example(raw=b"\xed\xa0\x80").via("UTF-8 of a surrogate")
def test_printable_path_round_trips_any_bytes(raw):
  text = ingest_sources.printable_path(raw)
  assert ingest_sources.path_bytes(text) == raw
  assert text.isprintable() and text.encode("utf-8").decode("utf-8") == text
  if not raw.count(b"%"):
    try:
      plain = raw.decode("utf-8")
    except UnicodeDecodeError:
      return
    if plain.isprintable():
      assert text == plain  # ordinary names are kept as they are


# ---------------------------------------------------------------------------------------------------------------
# The ingest pipeline over generated folders
# ---------------------------------------------------------------------------------------------------------------
_NAME_BYTES = st.binary(min_size=1, max_size=24) | st.text(min_size=1, max_size=16).map(lambda t: t.encode(
    "utf-8", "surrogatepass")) | st.builds(lambda unit, n: unit * n, st.sampled_from([b"a", b"\xff", "é".encode(),
                                                                                       b"%", b"\n"]),
                                            st.integers(60, 85)) | st.sampled_from(
    [b".hidden.png", b"Thumbs.db", b"desktop.ini", b"__MACOSX", b"._x.png", b"%41.png", b"a\nb.png", b"\xff.png"])
NAMES = _NAME_BYTES.map(lambda b: b.replace(b"/", b"_").replace(b"\x00", b"_")[:255]).filter(
    lambda b: b not in (b".", b".."))
KINDS = ("image", "image", "image", "copy", "empty", "garbage", "truncated", "fifo", "dangling", "loop")
PIPELINE_COMBOS = tuple(c for c in (("RGB", "JPEG"), ("RGB", "PNG"), ("RGBA", "PNG"), ("P", "GIF"), ("L", "BMP"),
                                    ("I;16", "PNG"), ("CMYK", "JPEG"), ("RGB", "WEBP")) if c in COMBOS)


@dataclasses.dataclass(frozen=True)
class Entry:
  domain: str
  folder: bytes | None
  name: bytes
  kind: str
  seed: int
  width: int
  height: int
  combo: int


ENTRIES = st.builds(Entry, domain=st.sampled_from("ab"), folder=st.none() | NAMES, name=NAMES,
                    kind=st.sampled_from(KINDS), seed=st.integers(0, 3), width=st.integers(1, 24),
                    height=st.integers(1, 24), combo=st.integers(0, len(PIPELINE_COMBOS) - 1))


def _junk(name: bytes) -> bool:
  text = os.fsdecode(name)
  return text.startswith(".") or text.lower() in ingest_sources.JUNK_NAMES


def _build(root: bytes, entries: list[Entry]) -> dict:
  """Writes the entries (skipping any whose path clashes with an earlier one); returns per domain
  {relpath: (kind, sha256 or None, (width, height) of a valid image or None)} of the entries ingest must
  account for (junk names and whatever is inside junk folders excluded)."""
  expected = {"a": {}, "b": {}}
  written = {}  # (domain, relpath) -> (bytes, size if a valid image)
  for entry in entries:
    rel = os.path.join(entry.folder, entry.name) if entry.folder else entry.name
    path = os.path.join(root, entry.domain.encode(), rel)
    mode, fmt = PIPELINE_COMBOS[entry.combo]
    image = _encode(mode, fmt, entry.width, entry.height, bytes([entry.seed]) * 7 + b"\x10\x80\xf0")
    data, size = {"image": (image, (entry.width, entry.height)), "empty": (b"", None),
                  "garbage": (b"not an image " + bytes([entry.seed]) * 20, None),
                  "truncated": (image[:len(image) // 3], None)}.get(entry.kind, (None, None))
    if entry.kind == "copy":
      sources = [v for (d, _), v in written.items() if d == entry.domain and v[0] is not None]
      data, size = sources[entry.seed % len(sources)] if sources else (image, (entry.width, entry.height))
    try:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      if entry.kind == "fifo":
        os.mkfifo(path)
      elif entry.kind == "dangling":
        os.symlink(b"missing-" + entry.name, path)
      elif entry.kind == "loop":
        os.symlink(entry.name, path)
      else:
        with open(path, "xb") as f:
          f.write(data)
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
      continue
    written[(entry.domain, rel)] = (data, size)
    if _junk(entry.name) or (entry.folder and _junk(entry.folder)):
      continue
    expected[entry.domain][rel] = (entry.kind, hashlib.sha256(data).hexdigest() if data is not None else None,
                                   size)
  return expected


def _sizes_by_sha(expected: dict) -> dict:
  return {sha: size for rows in expected.values() for _, sha, size in rows.values() if size}


@pytest.mark.slow  # 2 Beam runs (~0.5 s of CPU each) per example: ~10 s on a quiet machine, more under load
@_settings(8)
@given(entries=st.lists(ENTRIES, max_size=9), load_size=st.integers(1, 20),
       test_fraction=st.sampled_from([0.0, 0.5]), records_per_shard=st.integers(1, 3))
@example(entries=[Entry("a", b"\xff\n", b"%41\xe9.png", "image", 0, 5, 9, 0),
                  Entry("a", None, b"x", "copy", 0, 1, 1, 0), Entry("b", None, b".hidden", "garbage", 0, 1, 1, 0),
                  Entry("b", b"sub", b"loop", "loop", 0, 1, 1, 0), Entry("b", None, b"e\xfe", "empty", 0, 1, 1, 0)],
         load_size=4, test_fraction=0.5, records_per_shard=1).via("a non-UTF-8 folder, a duplicate, junk, a loop")
def test_ingest_stores_or_rejects_every_generated_file_once_and_reruns_identically(
    entries, load_size, test_fraction, records_per_shard):
  with tempfile.TemporaryDirectory() as tmp:
    root = os.fsencode(tmp)
    for d in (b"a", b"b"):
      os.makedirs(os.path.join(root, d))
    expected = _build(root, entries)
    config = ingest_lib.IngestConfig(output_dir=os.path.join(tmp, "out1"), domain_a=os.path.join(tmp, "a"),
                                     domain_b=os.path.join(tmp, "b"), load_size=load_size,
                                     test_fraction=test_fraction, records_per_shard=records_per_shard)
    result = ingest_lib.run(config)
    stats, rows = corpora.read_reports(config.output_dir)
    assert stats == result.stats
    sizes = _sizes_by_sha(expected)
    for d in ("a", "b"):
      base = os.path.join(root, d.encode())
      want = expected[d]
      records = corpora.read_records(config.output_dir, d)
      stored = [ingest_sources.path_bytes(r["image/filename"].decode("utf-8")) for r in records]
      rejected = {os.path.relpath(ingest_sources.path_bytes(r["path"]), base): r["reason"] for r in rows
                  if r["domain"] == d}
      assert len(stored) == len(set(stored)) and not set(stored) & set(rejected)
      assert set(stored) | set(rejected) <= set(want)
      stored_shas = {r["image/key/sha256"].decode() for r in records}
      assert len(stored_shas) == len(records)  # identical content stored once per domain
      duplicates = [rel for rel in want if rel not in rejected and rel not in stored]
      assert all(want[rel][1] in stored_shas for rel in duplicates), "a file neither stored, duplicate nor rejected"
      entry = stats["domains"][d]
      assert (entry["stored"], entry["duplicates"], entry["rejected"]) == (len(stored), len(duplicates),
                                                                          len(rejected))
      assert entry["listed_files"] == len(want) == entry["stored"] + entry["duplicates"] + entry["rejected"]
      for rel, (kind, sha, size) in want.items():
        if size:  # a valid image: stored or a duplicate of a stored one, never rejected
          assert rel not in rejected, (rel, rejected.get(rel))
        elif kind in ("fifo", "dangling", "loop", "empty"):
          assert rejected[rel] == {"fifo": "unreadable", "dangling": "broken_symlink", "loop": "broken_symlink",
                                   "empty": "empty_file"}[kind]
        else:
          assert rel in rejected, rel  # garbage, truncated: identical bad files are all rejected
      for record in records:
        size = sizes[record["image/key/sha256"].decode()]
        pixels = np.asarray(Image.open(io.BytesIO(record["image/encoded"])))
        assert pixels.shape == (*image_io.target_size(*size, load_size)[::-1], 3) and pixels.dtype == np.uint8
        assert Image.open(io.BytesIO(record["image/encoded"])).mode == "RGB"
    again = dataclasses.replace(config, output_dir=os.path.join(tmp, "out2"))
    ingest_lib.run(again)
    one, two = corpora.tree_bytes(config.output_dir), corpora.tree_bytes(again.output_dir)
    assert sorted(one) == sorted(two) and all(one[k] == two[k] for k in one)


def test_pillow_typeerrors_on_damaged_tiffs_reject_the_file_as_corrupt():
  """The regression cases above, with their exact outcome (they crashed the run before)."""
  for mode, position, message in (("1", 106, "TypeError: Missing dimensions"),
                                  ("RGB", 72, "TypeError: 'IFDRational' object cannot be interpreted")):
    data = _mutate(_case(mode, "TIFF", 2, 2, b"\x10\x80").data, ("flip", [(position, 1)]))
    with pytest.raises(image_io.ImageRejected) as info:
      image_io.prepare_image(data, load_size=4)
    assert info.value.reason == "corrupt" and info.value.detail.startswith(message)


def test_float_nan_and_infinite_pixels_have_defined_values():
  """F-mode NaN -> 0, +inf -> 255, -inf -> 0, others rounded and clipped (found by the properties: NaN was cast
  to uint8, which is undefined)."""
  values = np.array([[np.nan, np.inf, -np.inf, 1e30, -5.0, 300.7, 127.5, 3.4]], np.float32)
  buffer = io.BytesIO()
  Image.fromarray(values).save(buffer, "TIFF")
  pixels = image_io.decode_image(buffer.getvalue())
  np.testing.assert_array_equal(pixels[0, :, 0], [0, 255, 0, 255, 0, 255, 128, 3])
  assert (pixels == pixels[..., :1]).all()


def test_a_ycbcr_tiff_pillow_cannot_read_back_is_rejected_not_a_crash():
  """Found by the properties (explore mode): Pillow writes YCbCr TIFFs without a YCbCrSubSampling tag and then
  reads them as 2x2-subsampled (the TIFF default), so its own file is "truncated". Ingest rejects it with that
  reason; the generator leaves such pairs out of the must-store cases (_writable reads each pair back)."""
  data = _encode("YCbCr", "TIFF", 5, 7, b"\x05\x80\xf0")
  with pytest.raises(image_io.ImageRejected) as info:
    image_io.prepare_image(data, load_size=4)
  assert info.value.reason == "truncated"
  assert ("YCbCr", "TIFF") not in COMBOS


def test_generated_corpora_cover_the_formats_and_modes_they_claim():
  """The strategies really reach the hostile cases (a silent narrowing would make the properties vacuous)."""
  formats = {f for _, f in COMBOS}
  assert {"PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"} <= formats
  assert {m for m, _ in COMBOS} >= {"1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK", "YCbCr"}
  assert ("RGB", "GIF") in ANIMATED_COMBOS and ("RGB", "JPEG") in EXIF_COMBOS
  assert len(PIPELINE_COMBOS) == 8
