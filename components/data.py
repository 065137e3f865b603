"""The training/evaluation data reader: tf.data over the TFRecords written by components.ingest.

Layout read (DESIGN.md, ingest): `<data_dir>/domain_<a|b>/<split>-SSSSS-of-NNNNN.tfrecord.gz`, GZIP TFRecords of
`tf.train.Example`s whose `image/encoded` is a PNG (8-bit RGB, shorter side = ingest's `load_size`).

Two public functions (docs/INTERFACES.md, "Data"):
  * `make_dataset(...)` -> batches of float32 `[batch, image_size, image_size, 3]` in [-1, 1]
    (training: shuffle, [the family's resize,] random crop, random horizontal flip, repeat; eval: file order,
    [the family's test resize,] center crop, no repeat). The resize rule is the family's official loader's,
    declared in models/ (`models.api.ImageTransform`, `Family.transform`) and passed in as `transform`;
    without it images are cropped from the size ingest stored;
  * `read_examples(...)` -> plain Python dicts of every Example feature (for tests, evaluation and tools).
"""

from __future__ import annotations

import os
import random
from typing import Iterator

import tensorflow as tf

from models.api import DOMAINS, to_model_images

SPLITS = ("train", "test")
SHUFFLE_BUFFER = 2048  # serialized records (PNG bytes), so memory stays ~ buffer x mean PNG size

# The tf.train.Example schema of DESIGN.md: key -> (dtype, default).
BYTES_KEYS = ("image/encoded", "image/format", "image/filename", "image/source_id", "image/key/sha256",
              "image/domain")
INT_KEYS = ("image/height", "image/width", "image/channels")


def record_files(data_dir: str, domain: str, split: str) -> list[str]:
  """Returns the sorted shard paths of one domain and split; raises ValueError naming what is missing.

  Args:
    data_dir: ingest's output_dir (holds `domain_a/`, `domain_b/`).
    domain: "a" or "b".
    split: "train" or "test".
  """
  if domain not in DOMAINS:
    raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  pattern = os.path.join(data_dir, f"domain_{domain}", f"{split}-*-of-*.tfrecord.gz")
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise ValueError(f"no TFRecord shards match {pattern}: run `python -m components.ingest "
                     f"--output_dir={data_dir} ...` first (or check --data_dir)")
  return files


def _parse_image(serialized: tf.Tensor) -> tf.Tensor:
  """Parses one serialized Example -> uint8 `[H, W, 3]` image (PNG decoded)."""
  features = tf.io.parse_single_example(
      serialized, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})
  return tf.io.decode_png(features["image/encoded"], channels=3)


def _ensure_min_side(image: tf.Tensor, image_size: int) -> tf.Tensor:
  """Upscales (bicubic) an `[H, W, 3]` image whose shorter side is below `image_size`; others unchanged.

  components.validate rejects datasets with such images; this only keeps the reader from crashing on a dataset
  that skipped validation.
  """
  shape = tf.shape(image)
  short = tf.minimum(shape[0], shape[1])

  def upscale():
    scale = tf.cast(image_size, tf.float32) / tf.cast(short, tf.float32)
    new_hw = tf.cast(tf.math.ceil(tf.cast(shape[:2], tf.float32) * scale), tf.int32)
    new_hw = tf.maximum(new_hw, image_size)
    resized = tf.image.resize(image, new_hw, method="bicubic", antialias=False)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

  return tf.cond(short < image_size, upscale, lambda: image)


def resize_image(image: tf.Tensor, size: int, mode: str) -> tf.Tensor:
  """uint8 `[H, W, 3]` -> uint8 resized (bilinear, antialiased, rounded like PIL's uint8 output).

  mode "square": to `[size, size]`; "shorter_side": the shorter side to `size`, the other side scaled alike
  (rounded, at least `size`). An image already at the target size is returned unchanged.
  """
  shape = tf.shape(image)
  if mode == "square":
    new_hw = tf.constant([size, size], tf.int32)
  else:
    short = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
    new_hw = tf.maximum(tf.cast(tf.round(tf.cast(shape[:2], tf.float32) * (size / short)), tf.int32), size)

  def resize():
    resized = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

  return tf.cond(tf.reduce_all(tf.equal(shape[:2], new_hw)), lambda: image, resize)


def make_dataset(data_dir: str, domain: str, split: str, image_size: int, batch_size: int, *,
                 training: bool, seed: int | None = None, repeat: bool | None = None,
                 transform=None) -> tf.data.Dataset:
  """Builds the input pipeline of one domain.

  Args:
    data_dir: ingest's output_dir.
    domain: "a" or "b".
    split: "train" or "test".
    image_size: side of the square crop.
    batch_size: images per batch (the global batch under tf.distribute).
    training: True -> shuffle records, random crop, random horizontal flip, repeat, drop the last partial
      batch (static batch shape); False -> file order, center crop, no flip, keep the last partial batch.
    seed: fixes the shuffle order and the crops/flips (same seed, same batches). None draws a fresh seed.
    repeat: overrides the repeat-forever default (None -> repeat iff training).
    transform: the family's `models.api.ImageTransform` (`Family.transform`): each image is first resized to
      `transform.resized_size(image_size, training)` ("square" or "shorter_side"), then cropped (random when
      training, center otherwise) and, when training and `transform.flip`, randomly flipped. None: no resize
      (crops come from the stored size, images smaller than image_size are upscaled), random flip in training.

  Returns:
    tf.data.Dataset of float32 `[batch, image_size, image_size, 3]` in [-1, 1].
  """
  if image_size <= 0 or batch_size <= 0:
    raise ValueError(f"image_size and batch_size must be positive, got {image_size}, {batch_size}")
  files = record_files(data_dir, domain, split)
  if repeat is None:
    repeat = training
  if seed is None:
    seed = random.SystemRandom().randrange(2**31)
  ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
  if training:
    ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  size = [image_size, image_size, 3]

  def load(serialized):
    image = _parse_image(serialized)
    if transform is not None:
      image = resize_image(image, transform.resized_size(image_size, training), transform.resize)
    return _ensure_min_side(image, image_size)

  flip = transform is None or transform.flip

  def train_map(index, serialized):
    image = load(serialized)
    crop_seed = tf.stack([tf.cast(seed, tf.int64), index])
    image = tf.image.stateless_random_crop(image, size, seed=crop_seed)
    if flip:
      flip_seed = tf.stack([tf.cast(seed, tf.int64) + 1, index])
      image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return to_model_images(image)

  def eval_map(serialized):
    image = load(serialized)
    shape = tf.shape(image)
    top = (shape[0] - image_size) // 2
    left = (shape[1] - image_size) // 2
    image = tf.image.crop_to_bounding_box(image, top, left, image_size, image_size)
    return tf.ensure_shape(to_model_images(image), size)

  if training:
    ds = ds.enumerate().map(train_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  else:
    ds = ds.map(eval_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=training)
  return ds.prefetch(tf.data.AUTOTUNE)


def read_examples(data_dir: str, domain: str, split: str) -> Iterator[dict]:
  """Yields every record of one domain and split, in file order, as a dict of Python values.

  Keys are the tf.train.Example keys of DESIGN.md: bytes for `image/encoded`, `image/format`,
  `image/filename`, `image/source_id`, `image/key/sha256`, `image/domain`; int for `image/height`,
  `image/width`, `image/channels`.
  """
  for path in record_files(data_dir, domain, split):
    for serialized in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
      example = tf.train.Example.FromString(serialized)
      feature = example.features.feature
      record = {}
      for key in BYTES_KEYS:
        record[key] = feature[key].bytes_list.value[0] if feature[key].bytes_list.value else b""
      for key in INT_KEYS:
        record[key] = int(feature[key].int64_list.value[0]) if feature[key].int64_list.value else 0
      yield record
