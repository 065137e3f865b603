"""Tiny TFRecord datasets in the ingest format (DESIGN.md) for the train tests, and a check that data.py reads them.

`write_dataset(data_dir, ...)` writes `domain_{a,b}/{train,test}-00000-of-00001.tfrecord.gz` with every
tf.train.Example key of DESIGN.md; domain A holds dark discs, domain B bright squares, so the domains differ.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import tensorflow as tf

from components import data


def _image(domain: str, index: int, size: int) -> np.ndarray:
  """uint8 [size, size, 3]: a disc (domain a) or a square (domain b) at a position depending on `index`."""
  rng = np.random.default_rng(1000 * (domain == "b") + index)
  yy, xx = np.mgrid[:size, :size]
  cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
  r = size // 5
  if domain == "a":
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    fg, bg = rng.integers(120, 255, 3), np.array([20, 20, 40])
  else:
    mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    fg, bg = rng.integers(0, 100, 3), np.array([230, 220, 200])
  image = np.where(mask[..., None], fg, bg) + rng.integers(0, 16, (size, size, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def _example(domain: str, index: int, image: np.ndarray) -> tf.train.Example:
  """The ingest-format tf.train.Example of one image."""
  png = tf.io.encode_png(image).numpy()
  name = f"img_{index:04d}.png".encode()

  def b(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

  def i(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

  return tf.train.Example(features=tf.train.Features(feature={
      "image/encoded": b(png), "image/format": b(b"png"), "image/height": i(image.shape[0]),
      "image/width": i(image.shape[1]), "image/channels": i(3), "image/filename": b(name),
      "image/source_id": b(name), "image/key/sha256": b(hashlib.sha256(png).hexdigest().encode()),
      "image/domain": b(domain.encode())}))


def write_dataset(data_dir: str, *, size: int = 32, train: int = 12, test: int = 4) -> str:
  """Writes a two-domain dataset of `size` x `size` images (train/test counts per domain); returns data_dir."""
  for domain in ("a", "b"):
    os.makedirs(os.path.join(data_dir, f"domain_{domain}"), exist_ok=True)
    for split, count, offset in (("train", train, 0), ("test", test, train)):
      path = os.path.join(data_dir, f"domain_{domain}", f"{split}-00000-of-00001.tfrecord.gz")
      with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for index in range(offset, offset + count):
          writer.write(_example(domain, index, _image(domain, index, size)).SerializeToString())
  return data_dir


def test_data_reader_reads_written_dataset(tmp_path):
  data_dir = write_dataset(str(tmp_path), size=32, train=6, test=2)
  batch = next(iter(data.make_dataset(data_dir, "b", "train", 32, 3, training=True, seed=1)))
  assert batch.shape == (3, 32, 32, 3)
  assert -1.0 <= float(tf.reduce_min(batch)) and float(tf.reduce_max(batch)) <= 1.0
  # Domain B is bright: its mean is far above domain A's.
  batch_a = next(iter(data.make_dataset(data_dir, "a", "test", 32, 2, training=False)))
  assert float(tf.reduce_mean(batch)) > float(tf.reduce_mean(batch_a)) + 0.5
  records = list(data.read_examples(data_dir, "a", "test"))
  assert [r["image/filename"] for r in records] == [b"img_0006.png", b"img_0007.png"]


# Per-family overrides that keep the tiny presets' shapes (32x32, batch 2) but cut layers, so that tracing a train
# step (the bulk of a short run's time) stays fast.
FAST_OVERRIDES = {
    "munit": {"dis_num_scales": 1},
    "ugatit": {"batch_size": 2, "n_res": 1, "global_dis_layers": 3, "local_dis_layers": 3},
    "unit": {"dis_n_layer": 3},
}
