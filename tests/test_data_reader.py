"""components.data: crops, flips, scaling, order, repeat and errors, on records whose pixels encode their position.

Records are written with ingest's own writers (image_io.encode_example, ingest_shards.write_tfrecord_shard), and
their TensorFlow compatibility is checked against tf.train.Example itself.
"""

import numpy as np
import pytest
import tensorflow as tf

from components import data, image_io, ingest_shards


def _positional(height: int, width: int, tag: int = 0) -> np.ndarray:
  """uint8 [H, W, 3]: R = 10 * row, G = 10 * col, B = tag (identifies the image)."""
  rows, cols = np.mgrid[0:height, 0:width]
  return np.stack([rows * 10, cols * 10, np.full_like(rows, tag)], -1).astype(np.uint8)


def _write(data_dir, domain: str, split: str, images: list[np.ndarray], shards: int = 1) -> None:
  per_shard = [images[i::shards] for i in range(shards)]
  for index, chunk in enumerate(per_shard):
    records = [image_io.encode_example({
        "image/encoded": image_io.encode_png(img), "image/format": b"png", "image/height": img.shape[0],
        "image/width": img.shape[1], "image/channels": 3, "image/filename": f"{index}_{k}.png".encode(),
        "image/source_id": b"id", "image/key/sha256": b"00", "image/domain": domain.encode()})
        for k, img in enumerate(chunk)]
    ingest_shards.write_tfrecord_shard(ingest_shards.shard_path(str(data_dir), domain, split, index, shards), records)


def _to_uint8(x: np.ndarray) -> np.ndarray:
  """Inverse of the [-1, 1] scaling, exact for uint8 sources."""
  return np.rint((x + 1.0) * 127.5).astype(np.int64)


def test_example_encoding_is_byte_identical_to_tensorflows():
  features = {"image/encoded": b"\x89PNG...", "image/format": b"png", "image/height": 7, "image/width": 300,
              "image/channels": 3, "image/filename": "dir/ü.png".encode(), "image/domain": b"a"}
  reference = tf.train.Example(features=tf.train.Features(feature={
      k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])) if isinstance(v, bytes)
      else tf.train.Feature(int64_list=tf.train.Int64List(value=[v])) for k, v in features.items()}))
  assert image_io.encode_example(features) == reference.SerializeToString(deterministic=True)
  with pytest.raises(TypeError, match="image/height"):
    image_io.encode_example({"image/height": 1.5})


def test_eval_mode_center_crops_keeps_file_order_and_the_last_partial_batch(tmp_path):
  images = [_positional(6, 10, tag) for tag in range(5)]
  _write(tmp_path, "a", "test", images)
  batches = [b.numpy() for b in data.make_dataset(str(tmp_path), "a", "test", image_size=4, batch_size=2,
                                                  training=False)]
  assert [b.shape for b in batches] == [(2, 4, 4, 3), (2, 4, 4, 3), (1, 4, 4, 3)]
  out = np.concatenate(batches)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, np.stack([img[1:5, 3:7] for img in images]) / 127.5 - 1.0, atol=1e-6)
  assert list(_to_uint8(out)[:, 0, 0, 2]) == [0, 1, 2, 3, 4]


def test_training_mode_random_crops_flips_repeats_and_is_seeded(tmp_path):
  images = [_positional(8, 9, tag) for tag in range(3)]
  _write(tmp_path, "b", "train", images, shards=2)

  def draw(seed):
    ds = data.make_dataset(str(tmp_path), "b", "train", image_size=5, batch_size=4, training=True, seed=seed)
    assert ds.element_spec.shape.as_list() == [4, 5, 5, 3]  # static batch: drop_remainder
    return np.concatenate([b.numpy() for b in ds.take(15)])  # 60 crops from 3 images: repeats

  first = draw(3)
  np.testing.assert_array_equal(first, draw(3))
  assert not np.array_equal(first, draw(4))
  offsets, flips = set(), 0
  for crop in _to_uint8(first):
    source = images[crop[0, 0, 2]]
    if crop[0, 0, 1] > crop[0, -1, 1]:  # mirrored: columns run backwards
      flips += 1
      crop = crop[:, ::-1]
    top, left = crop[0, 0, 0] // 10, crop[0, 0, 1] // 10
    np.testing.assert_array_equal(crop, source[top:top + 5, left:left + 5])
    offsets.add((int(top), int(left)))
  assert 10 < flips < 50  # both flipped and unflipped crops occur
  assert len(offsets) > 5 and all(0 <= t <= 3 and 0 <= l <= 4 for t, l in offsets)


def test_images_smaller_than_the_crop_are_upscaled_not_crashing(tmp_path):
  _write(tmp_path, "a", "train", [_positional(3, 6)])
  out = next(iter(data.make_dataset(str(tmp_path), "a", "train", 4, 1, training=True, seed=0)))
  assert out.shape == (1, 4, 4, 3)
  out = next(iter(data.make_dataset(str(tmp_path), "a", "train", 4, 1, training=False)))
  assert out.shape == (1, 4, 4, 3) and np.all(np.abs(out.numpy()) <= 1.0)


def test_read_examples_and_errors(tmp_path):
  _write(tmp_path, "a", "train", [_positional(2, 3, 9)])
  (record,) = list(data.read_examples(str(tmp_path), "a", "train"))
  assert record["image/height"] == 2 and record["image/width"] == 3 and record["image/domain"] == b"a"
  assert set(record) == set(data.BYTES_KEYS) | set(data.INT_KEYS)
  with pytest.raises(ValueError, match=r"no TFRecord shards match .*run `python -m components.ingest"):
    data.make_dataset(str(tmp_path), "b", "train", 4, 1, training=True)
  with pytest.raises(ValueError, match="domain must be one of"):
    data.record_files(str(tmp_path), "c", "train")
  with pytest.raises(ValueError, match="split must be one of"):
    list(data.read_examples(str(tmp_path), "a", "validation"))
