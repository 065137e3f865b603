"""Translation without a server: an exported SavedModel's signatures, in-process, over a folder or a video.

`run(TranslateConfig(saved_model, input_path, output_dir, ...)) -> TranslateResult` is what
`python -m serving.translate` does. The model is called only through its SavedModel signatures (DESIGN.md
"SavedModel signature contract"), by the same `serving.servable.Servable` the server uses, so a model this
project did not build works too and an image translated here equals what the server answers for it.

Inputs: a folder (every file under it, recursively, in sorted order), one image file, or one video file
(by extension, see VIDEO_EXTENSIONS; needs the optional extra `video`, imageio-ffmpeg). Images are decoded by
`serving.client.read_image` (any Pillow format, EXIF orientation applied, RGB); files that cannot be read are
skipped, listed in `<output_dir>/skipped.jsonl` ({"path", "reason"}) and in the result: nothing is lost
silently.

Sizes (what the signatures accept; the model card `assets.extra/model_card.json` that components.export
writes says `size_multiple` and `fixed_size`; without a card any size is assumed):
  * fully convolutional models take any H, W >= size_multiple (the signature reflect-pads to the multiple and
    crops back); a smaller side is padded here (symmetric) and cropped back;
  * a fixed-size model (U-GAT-IT full) gets the image resized to fixed_size x fixed_size (bicubic, Pillow's
    antialiased resize) and its outputs resized back to the input size, as the official test.py resizes;
  * an image with a side over `tile_size` (fully convolutional models only) is translated in overlapping
    tiles of at most tile_size x tile_size, blended with a raised-cosine window (see `tile_windows`); the
    output always has the input's size.
Outputs: `<stem>_<direction>.png` (MUNIT with num_styles K > 1: `<stem>_<direction>_style<k>.png`; U-GAT-IT
also `<stem>_<direction>[_style<k>]_attention.png`), the names `python -m serving.client` writes, in the input's
sub-folder under output_dir. A video gives `<stem>_<direction>[_style<k>][_attention].mp4` (H.264, the input's
frame rate and size: yuv420p, or yuv444p when a side is odd) or, with video_output="frames", PNG frames
`<stem>_frames/frame<NNNNNN>_<direction>....png`.
MUNIT: style k uses seed `seed + k` (the a2b signature's `seed`); with `style_image` the style comes from
`<direction>_reference` once and every image goes through `<direction>_style`.
Batching: up to batch_size pieces (whole images, tiles or frames) of the same size go into one signature call.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np

from serving import signatures as contract
from serving.config import MODEL_CARD_RELATIVE_PATH as MODEL_CARD, read_model_card

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")
DIRECTIONS = ("a2b", "b2a")
VIDEO_OUTPUTS = ("video", "frames")
SKIPPED_FILE = "skipped.jsonl"
VIDEO_EXTRA_MISSING = ("reading and writing video needs the optional extra `video` (imageio-ffmpeg, which ships "
                       "an ffmpeg binary): pip install 'i2i-translate[video]' (or: pip install imageio-ffmpeg)")


class TranslateError(ValueError):
  """A problem the user must fix (bad flag, unusable model or input); the message says what to do."""


@dataclasses.dataclass(frozen=True)
class TranslateConfig:
  """What to translate and how.

  Attributes:
    saved_model: an exported SavedModel directory, or a model base path holding integer versions (the highest
      is used, as the server would).
    input_path: a folder of images, one image file, or one video file.
    output_dir: where the outputs go (created; must not be inside a folder input).
    direction: "a2b" or "b2a".
    num_styles: MUNIT: K random styles per image (seeds seed .. seed + K - 1), one output each.
    style_image: MUNIT: take the style from this image of the target domain instead.
    seed: MUNIT: the seed of the first style.
    batch_size: pieces (images, tiles, frames) of one size per signature call.
    tile_size: images with a side over this are translated in tiles of at most tile_size x tile_size.
    tile_overlap: pixels adjacent tiles share at least (blended); None: tile_size // 8. Tiles are spaced evenly,
      so they may share more; 0 gives hard seams only where tiles fit the image exactly.
    video_output: "video" (an .mp4 per output stream) or "frames" (PNG frames).
    progress: show a progress bar with ETA (tqdm, on stderr).
  """

  saved_model: str
  input_path: str
  output_dir: str
  direction: str = "a2b"
  num_styles: int = 1
  style_image: str | None = None
  seed: int = 0
  batch_size: int = 4
  tile_size: int = 512
  tile_overlap: int | None = None
  video_output: str = "video"
  progress: bool = True

  def __post_init__(self):
    if self.direction not in DIRECTIONS:
      raise TranslateError(f"--direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
    if self.num_styles < 1:
      raise TranslateError(f"--num_styles must be >= 1, got {self.num_styles}")
    if self.style_image is not None and self.num_styles > 1:
      raise TranslateError("--style_image and --num_styles > 1 exclude each other: a reference image gives one "
                           "style")
    if self.batch_size < 1:
      raise TranslateError(f"--batch_size must be >= 1, got {self.batch_size}")
    if self.tile_size < 16:
      raise TranslateError(f"--tile_size must be >= 16 pixels, got {self.tile_size}")
    if self.tile_overlap is None:
      object.__setattr__(self, "tile_overlap", self.tile_size // 8)
    if not 0 <= self.tile_overlap <= self.tile_size // 2:
      raise TranslateError(f"--tile_overlap must be between 0 and --tile_size / 2 = {self.tile_size // 2}, got "
                           f"{self.tile_overlap}")
    if self.video_output not in VIDEO_OUTPUTS:
      raise TranslateError(f"--video_output must be one of {', '.join(VIDEO_OUTPUTS)}, got {self.video_output!r}")


@dataclasses.dataclass(frozen=True)
class TranslateResult:
  """written: output paths; skipped: ((path, reason), ...); translated: inputs (images or frames) translated;
  tiled: of those, how many in tiles; batch_sizes: the batch size of every signature call, in order;
  seconds: wall time of the translation (model loading excluded); skipped_path: skipped.jsonl or None."""

  written: tuple
  skipped: tuple
  translated: int
  tiled: int
  batch_sizes: tuple
  seconds: float
  skipped_path: str | None = None

  @property
  def images_per_second(self) -> float:
    return self.translated / self.seconds if self.seconds > 0 else 0.0


def is_video(path: str) -> bool:
  """True when `path`'s extension is a video container's (VIDEO_EXTENSIONS, case-insensitive)."""
  return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def resolve_saved_model(path: str) -> str:
  """`path` itself when it holds saved_model.pb, else its highest integer version subdirectory that does."""
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    return path
  if os.path.isdir(path):
    versions = sorted((int(n) for n in os.listdir(path)
                       if n.isdigit() and os.path.isfile(os.path.join(path, n, "saved_model.pb"))), reverse=True)
    if versions:
      return os.path.join(path, str(versions[0]))
    raise TranslateError(f"--saved_model {path} holds no saved_model.pb and no integer version folder with one; "
                         "pass an exported SavedModel directory (components.export's output) or a model base path")
  raise TranslateError(f"--saved_model {path} does not exist; pass an exported SavedModel directory")


# --- the model, through its signatures only ---------------------------------------------------------------------
class SignatureModel:
  """A SavedModel called by signature in-process (serving.servable.Servable: the server's own checks).

  Attributes:
    path: the SavedModel directory; signatures: name -> (input aliases, output aliases);
    size_multiple, fixed_size: from the model card (1 and None without one); calls: batch sizes run so far.
  """

  def __init__(self, path: str):
    from serving.errors import ServingError  # pylint: disable=import-outside-toplevel
    from serving.servable import Servable  # pylint: disable=import-outside-toplevel
    self._serving_error = ServingError
    self.path = resolve_saved_model(path)
    try:
      self._servable = Servable("offline", 0, self.path)
    except ServingError as e:
      raise TranslateError(f"cannot load the SavedModel {self.path}: {e.message}") from None
    self.signatures = {name: (tuple(sorted(s.inputs)), tuple(sorted(s.outputs)))
                       for name, s in self._servable.signature_defs.items() if not name.startswith("__")}
    card = read_model_card(self.path)
    self.size_multiple = int(card.get("size_multiple") or 1)
    self.fixed_size = int(card["fixed_size"]) if card.get("fixed_size") else None
    self.calls = []

  def require(self, name: str, why: str) -> tuple:
    """(inputs, outputs) of signature `name`, or TranslateError saying which option needs it."""
    if name not in self.signatures:
      raise TranslateError(f"{why} needs a model with the {name!r} signature; {self.path} has "
                           f"{', '.join(sorted(self.signatures))}")
    return self.signatures[name]

  def run(self, name: str, inputs: dict) -> dict:
    """Calls signature `name` on numpy `inputs`; returns its images (and attention/style) as numpy.

    Raises TranslateError with the model's own message (e.g. a size a fixed-size model refuses).
    """
    wanted = tuple(o for o in ("images", "attention", "style") if o in self.signatures[name][1])
    self.calls.append(int(next(iter(inputs.values())).shape[0]))
    try:
      return self._servable.predict(name, inputs, wanted)
    except self._serving_error as e:
      raise TranslateError(f"the model's {name} signature failed: {e.message}") from None


# --- sizes and tiles -------------------------------------------------------------------------------------------
def tile_starts(length: int, tile: int, overlap: int) -> list:
  """Start offsets of tiles of `tile` pixels covering `length` with at least `overlap` shared pixels (about
  `overlap` - 1 after rounding), evenly spaced, the last flush with the end. One tile when length <= tile."""
  if length <= tile:
    return [0]
  count = math.ceil((length - overlap) / (tile - overlap))
  return [int(round(i * (length - tile) / (count - 1))) for i in range(count)]


def _ramp(overlap: int, rising: bool) -> np.ndarray:
  """Raised cosine over `overlap` pixels: sin^2(pi/2 (j + 0.5) / overlap) rising, cos^2 falling (they sum to 1)."""
  phase = (np.arange(overlap) + 0.5) / overlap * (np.pi / 2)
  return np.sin(phase) ** 2 if rising else np.cos(phase) ** 2


def axis_windows(starts: list, tile: int) -> list:
  """1-D blending weights [tile] for each tile start: 1 except over the pixels shared with a neighbour, where
  this tile's weight falls (rises) as the neighbour's rises (falls): the weights of two neighbours sum to 1."""
  windows = []
  for i, start in enumerate(starts):
    w = np.ones(tile, np.float64)
    if i > 0:
      shared = starts[i - 1] + tile - start
      if shared > 0:
        w[:shared] *= _ramp(shared, rising=True)
    if i + 1 < len(starts):
      shared = start + tile - starts[i + 1]
      if shared > 0:
        w[tile - shared:] *= _ramp(shared, rising=False)
    windows.append(w)
  return windows


def tile_windows(height: int, width: int, tile: int, overlap: int) -> list:
  """[(y, x, h, w, weights [h, w])] of the tiles of an image: the outer product of the two axes' windows, so
  the weights of all tiles sum to 1 at every pixel where only neighbours overlap (normalised anyway)."""
  tile_h, tile_w = min(tile, height), min(tile, width)
  ys, xs = tile_starts(height, tile_h, overlap), tile_starts(width, tile_w, overlap)
  wys, wxs = axis_windows(ys, tile_h), axis_windows(xs, tile_w)
  return [(y, x, tile_h, tile_w, np.outer(wy, wx)) for y, wy in zip(ys, wys) for x, wx in zip(xs, wxs)]


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 [H, W, 3] (bicubic) or float [H, W] (bilinear) to [height, width] with Pillow (antialiased)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if array.shape[:2] == (height, width):
    return array
  if array.ndim == 2:
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))
  return np.asarray(Image.fromarray(array).resize((width, height), Image.BICUBIC))


class _Job:
  """One output of one input (one style): collects its pieces' answers and blends or crops them."""

  def __init__(self, height: int, width: int, pieces: int, blend: bool, done):
    self.height, self.width = height, width
    self.pending = pieces
    self.blend = blend
    self.done = done
    self.error = None
    self.image = self.attention = None
    self.weight = None

  def add(self, placement, result: dict | None, error: str | None) -> None:
    """Accepts one piece's answer (or its error); calls done(image, attention, error) after the last."""
    self.pending -= 1
    if error is not None:
      self.error = self.error or error
    elif self.error is None:
      self._place(placement, result)
    if self.pending == 0:
      if self.error is not None:
        self.done(None, None, self.error)
        return
      image, attention = self.image, self.attention
      if self.blend:
        image = np.clip(np.round(image / self.weight[..., None]), 0, 255).astype(np.uint8)
        attention = None if attention is None else (attention / self.weight).astype(np.float32)
      self.done(image, attention, None)

  def _place(self, placement, result: dict) -> None:
    kind = placement[0]
    attention = result.get("attention")
    if kind == "whole":  # crop the padding off (or resize back from the fixed size)
      _, resize = placement
      if resize:
        self.image = _resize(result["images"], self.height, self.width)
        self.attention = None if attention is None else _resize(attention, self.height, self.width)
      else:
        self.image = result["images"][:self.height, :self.width]
        self.attention = None if attention is None else attention[:self.height, :self.width]
      return
    _, y, x, weights = placement
    h, w = weights.shape
    if self.image is None:
      self.image = np.zeros([self.height, self.width, 3], np.float64)
      self.weight = np.zeros([self.height, self.width], np.float64)
      if attention is not None:
        self.attention = np.zeros([self.height, self.width], np.float64)
    # Tiles of an image smaller than size_multiple were cut from its padded copy: keep what lies inside.
    h, w = min(h, self.height - y), min(w, self.width - x)
    weights = weights[:h, :w]
    self.image[y:y + h, x:x + w] += weights[..., None] * result["images"][:h, :w]
    self.weight[y:y + h, x:x + w] += weights
    if attention is not None:
      self.attention[y:y + h, x:x + w] += weights * attention[:h, :w]


class _Batcher:
  """Queues pieces per (signature, shape); runs a queue when it holds batch_size pieces (or on flush)."""

  def __init__(self, model: SignatureModel, batch_size: int):
    self.model = model
    self.batch_size = batch_size
    self.queues = {}

  def add(self, signature: str, piece: np.ndarray, extra: dict, callback) -> None:
    key = (signature, piece.shape, tuple(sorted(extra)))
    queue = self.queues.setdefault(key, [])
    queue.append((piece, extra, callback))
    if len(queue) >= self.batch_size:
      self._run(key)

  def flush(self) -> None:
    for key in list(self.queues):
      self._run(key)

  def _run(self, key) -> None:
    items = self.queues.pop(key)
    signature, _, extra_names = key
    inputs = {"images": np.stack([piece for piece, _, _ in items])}
    for name in extra_names:
      inputs[name] = np.stack([np.asarray(extra[name]) for _, extra, _ in items])
    try:
      outputs = self.model.run(signature, inputs)
    except TranslateError as e:
      for _, _, callback in items:
        callback(None, str(e))
      return
    for i, (_, _, callback) in enumerate(items):
      callback({name: value[i] for name, value in outputs.items()}, None)


class Translator:
  """Turns one image into its outputs (one per style) through a SignatureModel, tiling and batching.

  `submit(image, done)` queues the work; `done(results, error)` is called once per image with results =
  [(suffix, image uint8 [H, W, 3], attention float [H, W] or None)] in style order, or error (a string).
  `flush()` runs what is queued. Results come in submission order for images of the same size.
  """

  def __init__(self, model: SignatureModel, config: TranslateConfig, reference: np.ndarray | None = None):
    self.model = model
    self.config = config
    direction = config.direction
    inputs, _ = model.require(direction, f"--direction={direction}")
    multimodal = contract.takes_seed(inputs)
    if config.num_styles > 1 and not multimodal:
      raise TranslateError(f"--num_styles={config.num_styles} needs a multimodal model (MUNIT, whose {direction} "
                           "signature takes a seed); this model's takes only images")
    if reference is not None:
      model.require(f"{direction}_reference", "--style_image")
      model.require(f"{direction}_style", "--style_image")
      ref = self._fit_reference(reference)
      style = model.run(f"{direction}_reference", {"images": ref[None], "reference": ref[None]})["style"][0]
      self.variants = [("", f"{direction}_style", {"style": style})]
    elif multimodal:
      self.variants = [(f"_style{k}" if config.num_styles > 1 else "", direction,
                        {"seed": np.int64(config.seed + k)}) for k in range(config.num_styles)]
    else:
      self.variants = [("", direction, {})]
    self.batcher = _Batcher(model, config.batch_size)
    self.tiled = 0

  def _fit_reference(self, image: np.ndarray) -> np.ndarray:
    """The reference as the model takes it: resized to the fixed size, or (its style being a global statistic)
    shrunk to fit tile_size, and padded to size_multiple."""
    if self.model.fixed_size:
      return _resize(image, self.model.fixed_size, self.model.fixed_size)
    height, width = image.shape[:2]
    scale = self.config.tile_size / max(height, width)
    if scale < 1:
      image = _resize(image, max(1, round(height * scale)), max(1, round(width * scale)))
    return self._pad_to_multiple(image)

  def _pad_to_multiple(self, image: np.ndarray) -> np.ndarray:
    """Pads (symmetric, bottom/right) a side shorter than size_multiple up to it; the signature does the rest."""
    m = self.model.size_multiple
    pad_h, pad_w = max(0, m - image.shape[0]), max(0, m - image.shape[1])
    if pad_h or pad_w:
      image = np.pad(image, [[0, pad_h], [0, pad_w], [0, 0]], mode="symmetric")
    return image

  def plan(self, height: int, width: int) -> str:
    """"whole", "resize" (fixed-size model) or "tiles" for an image of this size."""
    if self.model.fixed_size:
      return "resize"
    return "tiles" if max(height, width) > self.config.tile_size else "whole"

  def submit(self, image: np.ndarray, done) -> None:
    height, width = image.shape[:2]
    plan = self.plan(height, width)
    results = [None] * len(self.variants)
    state = {"pending": len(self.variants), "error": None}

    def finished(k, suffix):
      def callback(out_image, attention, error):
        state["pending"] -= 1
        state["error"] = state["error"] or error
        results[k] = (suffix, out_image, attention)
        if state["pending"] == 0:
          done(None if state["error"] else results, state["error"])
      return callback

    if plan == "tiles":
      self.tiled += 1
      padded = self._pad_to_multiple(image)
      tiles = tile_windows(padded.shape[0], padded.shape[1], self.config.tile_size, self.config.tile_overlap)
    for k, (suffix, signature, extra) in enumerate(self.variants):
      if plan == "tiles":
        job = _Job(height, width, len(tiles), True, finished(k, suffix))
        for y, x, h, w, weights in tiles:
          placement = ("tile", y, x, weights)
          self.batcher.add(signature, padded[y:y + h, x:x + w], extra,
                           lambda r, e, job=job, p=placement: job.add(p, r, e))
      else:
        job = _Job(height, width, 1, False, finished(k, suffix))
        if plan == "resize":
          piece = _resize(image, self.model.fixed_size, self.model.fixed_size)
        else:
          piece = self._pad_to_multiple(image)
        placement = ("whole", plan == "resize")
        self.batcher.add(signature, piece, extra, lambda r, e, job=job, p=placement: job.add(p, r, e))

  def flush(self) -> None:
    self.batcher.flush()


# --- inputs and outputs ----------------------------------------------------------------------------------------
def list_inputs(folder: str, output_dir: str) -> list:
  """Every file under `folder` (recursively, sorted), skipping `output_dir` if it lies inside."""
  output = os.path.abspath(output_dir)
  paths = []
  for root, dirs, files in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if os.path.abspath(os.path.join(root, d)) != output)
    paths.extend(os.path.join(root, f) for f in sorted(files))
  return paths


def output_stems(paths: list, folder: str) -> dict:
  """path -> output stem relative to the output folder: `<subdir>/<stem>`; files of one folder that share a
  stem (a.jpg, a.png) keep their extension in it (`a_jpg`, `a_png`) so no output overwrites another."""
  stems = {}
  for path in paths:
    rel = os.path.relpath(path, folder)
    stems[path] = os.path.splitext(rel)[0]
  counts = {}
  for stem in stems.values():
    counts[stem] = counts.get(stem, 0) + 1
  return {p: s if counts[s] == 1 else f"{s}_{os.path.splitext(p)[1].lstrip('.')}" for p, s in stems.items()}


def _read(path: str):
  """(image, None) or (None, reason) for one input file."""
  from PIL import Image  # pylint: disable=import-outside-toplevel

  from serving.client import read_image  # pylint: disable=import-outside-toplevel
  if is_video(path):
    return None, (f"cannot read {path}: a video inside a folder is not translated; pass the video file itself "
                  "as --input")
  try:
    return read_image(path), None
  except ValueError as e:
    return None, str(e)
  except Image.DecompressionBombError as e:
    return None, f"cannot read {path}: {e}"


def _progress(config: TranslateConfig, total: int | None, unit: str):
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  return tqdm(total=total, unit=unit, disable=not config.progress, dynamic_ncols=True, smoothing=0.1)


def _write_png(path: str, array: np.ndarray) -> str:
  from serving.client import write_png  # pylint: disable=import-outside-toplevel
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  write_png(path, array)
  return path


def _translate_images(config: TranslateConfig, translator: Translator, paths: list, stems: dict,
                      written: list, skipped: list) -> int:
  """Folder / single-image mode; returns how many images were translated."""
  direction = config.direction
  count = [0]
  pending = [0]
  with _progress(config, len(paths), "img") as bar:
    for path in paths:
      image, reason = _read(path)
      if reason is not None:
        skipped.append((path, reason))
        bar.update(1)
        continue

      def done(results, error, path=path):
        pending[0] -= 1
        if error is not None:
          skipped.append((path, f"cannot translate {path}: {error}"))
        else:
          base = os.path.join(config.output_dir, stems[path] + "_" + direction)
          for suffix, out_image, attention in results:
            written.append(_write_png(f"{base}{suffix}.png", out_image))
            if attention is not None:
              written.append(_write_png(f"{base}{suffix}_attention.png", attention))
          count[0] += 1
        bar.update(1)

      pending[0] += 1
      translator.submit(image, done)
      if pending[0] >= 4 * config.batch_size:  # bounds memory when sizes vary
        translator.flush()
    translator.flush()
  return count[0]


def _ffmpeg():
  try:
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise TranslateError(VIDEO_EXTRA_MISSING) from None
  return imageio_ffmpeg


class _VideoSink:
  """The outputs of a video: one H.264 writer per (style, image|attention), or PNG frames; writes frames in
  order (a reorder buffer, though the batcher already keeps one size's pieces in order)."""

  def __init__(self, config: TranslateConfig, stem: str, fps: float, written: list):
    self.config, self.stem, self.fps, self.written = config, stem, fps, written
    self.writers = {}
    self.buffer = {}
    self.next_index = 0

  def add(self, index: int, results) -> None:
    self.buffer[index] = results
    while self.next_index in self.buffer:
      self._write(self.next_index, self.buffer.pop(self.next_index))
      self.next_index += 1

  def _write(self, index: int, results) -> None:
    direction = self.config.direction
    for suffix, image, attention in results or ():
      streams = [("", image)] + ([("_attention", attention)] if attention is not None else [])
      for kind, frame in streams:
        if self.config.video_output == "frames":
          folder = os.path.join(self.config.output_dir, f"{self.stem}_frames")
          self.written.append(_write_png(os.path.join(folder, f"frame{index:06d}_{direction}{suffix}{kind}.png"),
                                         frame))
          continue
        if frame.ndim == 2:  # attention in [0, 1] -> grey RGB, quantised as write_png does
          frame = np.repeat(np.clip(frame * 255.0 + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
        key = suffix + kind
        if key not in self.writers:
          path = os.path.join(self.config.output_dir, f"{self.stem}_{direction}{key}.mp4")
          # yuv420p plays everywhere but needs even sides; an odd side keeps its size with yuv444p.
          even = frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0
          writer = _ffmpeg().write_frames(path, (frame.shape[1], frame.shape[0]), fps=self.fps, codec="libx264",
                                          pix_fmt_out="yuv420p" if even else "yuv444p", macro_block_size=1,
                                          ffmpeg_log_level="error")
          writer.send(None)
          self.writers[key] = (path, writer)
        self.writers[key][1].send(np.ascontiguousarray(frame).tobytes())

  def close(self) -> None:
    for path, writer in self.writers.values():
      writer.close()
      self.written.append(path)
    self.writers = {}


def _translate_video(config: TranslateConfig, translator: Translator, path: str, written: list,
                     skipped: list) -> int:
  """Video mode: decodes frames with ffmpeg, translates them in batches, writes videos or frames."""
  ffmpeg = _ffmpeg()
  try:
    total, _ = ffmpeg.count_frames_and_secs(path)
    reader = ffmpeg.read_frames(path, pix_fmt="rgb24")
    meta = reader.__next__()
  except (RuntimeError, OSError, StopIteration) as e:
    raise TranslateError(f"cannot read the video {path}: {str(e).strip().splitlines()[-1] if str(e) else e}; "
                         "is it a video ffmpeg can decode?") from None
  width, height = meta["size"]
  sink = _VideoSink(config, os.path.splitext(os.path.basename(path))[0], float(meta.get("fps") or 25.0), written)
  count = [0]
  try:
    with _progress(config, total, "frame") as bar:
      for index, data in enumerate(reader):
        frame = np.frombuffer(data, np.uint8).reshape(height, width, 3)

        def done(results, error, index=index):
          if error is not None:
            skipped.append((f"{path}#frame{index}", f"cannot translate frame {index} of {path}: {error}"))
          else:
            count[0] += 1
          sink.add(index, results)
          bar.update(1)

        translator.submit(frame, done)
      translator.flush()
  finally:
    reader.close()
    sink.close()
  return count[0]


def run(config: TranslateConfig, model: SignatureModel | None = None) -> TranslateResult:
  """Translates config.input_path into config.output_dir (see the module docstring).

  `model`: an already loaded SignatureModel of config.saved_model (the benchmark reuses one); loaded if None.
  Raises TranslateError for bad options, an unusable model, a missing input, a video without the `video`
  extra, or an unreadable --style_image; files that cannot be read are skipped and reported instead.
  """
  source = config.input_path
  if not os.path.exists(source):
    raise TranslateError(f"--input {source} does not exist; pass a folder of images, an image or a video file")
  folder = os.path.isdir(source)
  if folder:
    inside = os.path.commonpath([os.path.abspath(source), os.path.abspath(config.output_dir)])
    if inside == os.path.abspath(source):
      raise TranslateError(f"--output_dir {config.output_dir} is inside --input {source}; choose a folder outside "
                           "it (its outputs would be read as inputs by the next run)")
  video = not folder and is_video(source)
  if video:
    _ffmpeg()
  reference = None
  if config.style_image is not None:
    from serving.client import read_image  # pylint: disable=import-outside-toplevel
    try:
      reference = read_image(config.style_image)
    except ValueError as e:
      raise TranslateError(f"--style_image: {e}") from None
  model = model or SignatureModel(config.saved_model)
  translator = Translator(model, config, reference)
  calls_before = len(model.calls)
  os.makedirs(config.output_dir, exist_ok=True)
  written, skipped = [], []
  start = time.perf_counter()
  if video:
    translated = _translate_video(config, translator, source, written, skipped)
  else:
    paths = list_inputs(source, config.output_dir) if folder else [source]
    stems = output_stems(paths, source if folder else (os.path.dirname(source) or "."))
    translated = _translate_images(config, translator, paths, stems, written, skipped)
  seconds = time.perf_counter() - start
  skipped_path = None
  if skipped:
    skipped_path = os.path.join(config.output_dir, SKIPPED_FILE)
    with open(skipped_path, "w", encoding="utf-8") as f:
      for path, reason in skipped:
        f.write(json.dumps({"path": path, "reason": reason}) + "\n")
  return TranslateResult(written=tuple(written), skipped=tuple(skipped), translated=translated,
                         tiled=translator.tiled, batch_sizes=tuple(model.calls[calls_before:]), seconds=seconds,
                         skipped_path=skipped_path)
