"""Each family's official training/test transform (models.api.ImageTransform) as components.data applies it.

UGATIT-pytorch: flip, resize to (img_size + 30) square (here 286/256 of the size), random crop; test: resize to
the size square, no crop. MUNIT: shorter side to new_size (= the crop size), random crop, flip; test: resize.
UNIT v02: scale to 1.2 x the crop size, random crop, flip; test: the same scale, center crop.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import models
from components import data, measurement
from models.api import ImageTransform
from tests.test_data_reader import _positional, _to_uint8, _write


def _resize(image: np.ndarray, hw) -> np.ndarray:
  """The reference resize: bilinear with antialiasing, rounded to uint8 (what data.resize_image promises)."""
  out = tf.image.resize(image, hw, method="bilinear", antialias=True).numpy()
  return np.clip(np.round(out), 0, 255).astype(np.int64)


def _smooth(size: int, tag: int = 0) -> np.ndarray:
  rows, cols = np.mgrid[0:size, 0:size]
  return np.stack([rows * 200 // size, cols * 200 // size, np.full_like(rows, tag)], -1).astype(np.uint8)


def test_family_transforms_are_the_official_rules():
  assert models.get_family("ugatit").transform == ImageTransform("square", 286 / 256, 1.0)
  assert models.get_family("munit").transform == ImageTransform("shorter_side", 1.0, 1.0)
  assert models.get_family("unit").transform == ImageTransform("shorter_side", 1.2, 1.2)
  ugatit = models.get_family("ugatit").transform
  assert ugatit.resized_size(256, training=True) == 286  # = img_size + 30 at the paper's size
  assert ugatit.resized_size(32, training=True) == 36 and ugatit.resized_size(32, training=False) == 32
  assert models.get_family("unit").transform.resized_size(216, training=True) == 259  # round(1.2 * 216)
  with pytest.raises(ValueError, match="resize must be one of"):
    ImageTransform("crop")


def test_ugatit_jitters_a_32px_image_and_tests_on_a_plain_resize(tmp_path):
  image = _smooth(32)  # stored already at the training size: without the transform there is no crop jitter
  _write(tmp_path, "a", "train", [image])
  _write(tmp_path, "a", "test", [_positional(40, 48)] * 2)
  transform = models.get_family("ugatit").transform
  crops = [_to_uint8(next(iter(data.make_dataset(str(tmp_path), "a", "train", 32, 1, training=True, seed=s,
                                                transform=transform)))[0].numpy()) for s in range(8)]
  resized = _resize(image, [36, 36])  # 286 / 256 * 32 = 35.75 -> 36, square
  windows = {(y, x): resized[y:y + 32, x:x + 32] for y in range(5) for x in range(5)}
  origins = set()
  for crop in crops:
    matches = [yx for yx, w in windows.items() if np.array_equal(crop, w) or np.array_equal(crop, w[:, ::-1])]
    assert matches, "each training input is a 32x32 window of the 36x36 resize (maybe flipped)"
    origins.add(matches[0])
  assert len(origins) > 1  # jitter
  plain = [_to_uint8(next(iter(data.make_dataset(str(tmp_path), "a", "train", 32, 1, training=True, seed=s)))[0]
                     .numpy()) for s in range(4)]
  assert all(np.array_equal(p, image) or np.array_equal(p, image[:, ::-1]) for p in plain)  # no transform: none
  test = measurement.load_test_images(str(tmp_path), "a", 32, None, transform)
  np.testing.assert_array_equal(test[0].astype(np.int64), _resize(_positional(40, 48), [32, 32]))  # no crop


def test_munit_resizes_the_shorter_side_then_crops_along_the_longer_one(tmp_path):
  image = _positional(40, 60)
  _write(tmp_path, "b", "train", [image])
  _write(tmp_path, "b", "test", [image] * 2)
  transform = models.get_family("munit").transform
  resized = _resize(image, [32, 48])  # shorter side 40 -> 32, 60 -> 48
  origins = set()
  for seed in range(8):
    crop = _to_uint8(next(iter(data.make_dataset(str(tmp_path), "b", "train", 32, 1, training=True, seed=seed,
                                                 transform=transform)))[0].numpy())
    match = [x for x in range(17) if np.array_equal(crop, resized[:, x:x + 32])
             or np.array_equal(crop, resized[:, x:x + 32][:, ::-1])]
    assert match, seed
    origins.add(match[0])
  assert len(origins) > 1
  test = measurement.load_test_images(str(tmp_path), "b", 32, None, transform)
  np.testing.assert_array_equal(test[0].astype(np.int64), resized[:, 8:40])  # resize, center of the long side


def test_unit_scales_to_1_2_times_the_crop(tmp_path):
  image = _smooth(32, tag=9)
  _write(tmp_path, "a", "train", [image])
  _write(tmp_path, "a", "test", [image] * 2)
  transform = models.get_family("unit").transform
  resized = _resize(image, [38, 38])  # round(1.2 * 32) = 38
  crop = _to_uint8(next(iter(data.make_dataset(str(tmp_path), "a", "train", 32, 1, training=True, seed=3,
                                               transform=transform)))[0].numpy())
  windows = [resized[y:y + 32, x:x + 32] for y in range(7) for x in range(7)]
  assert any(np.array_equal(crop, w) or np.array_equal(crop, w[:, ::-1]) for w in windows)
  test = measurement.load_test_images(str(tmp_path), "a", 32, None, transform)
  np.testing.assert_array_equal(test[0].astype(np.int64), resized[3:35, 3:35])  # center crop of the 1.2x resize
