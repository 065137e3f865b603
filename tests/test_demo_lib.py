"""Tests of pipelines.demo_lib's data side: held-out images come from ingest's test split, centre-cropped."""

import os

import numpy as np
import pytest
from PIL import Image

from components import ingest_lib
from pipelines import demo_data
from pipelines import demo_lib


@pytest.fixture(scope="module", name="ingested")
def _ingested(tmp_path_factory):
  base = tmp_path_factory.mktemp("demo_lib")
  data = demo_data.build_demo_dataset(str(base / "data"), num_train=3, num_test=2, image_size=36)
  ingest_lib.run(ingest_lib.IngestConfig(output_dir=str(base / "ingest"), dataset_dir=data.dataset_dir,
                                         load_size=36))
  return data, str(base / "ingest")


def test_center_crop():
  image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
  assert np.array_equal(demo_lib.center_crop(image, 4), image[1:5, 2:6])
  assert demo_lib.center_crop(image, 10).shape == (6, 8, 3)


def test_held_out_images_are_the_test_split_center_cropped(ingested):
  data, data_dir = ingested
  sources = [np.asarray(Image.open(os.path.join(data.test_b, name)).convert("RGB"))
             for name in sorted(os.listdir(data.test_b))]
  images = demo_lib.held_out_images(data_dir, "b", 5, 32)
  assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8  # only 2 test images exist
  for image in images:
    assert any(np.array_equal(image, source[2:34, 2:34]) for source in sources)
  assert demo_lib.held_out_images(data_dir, "a", 1, 32).shape == (1, 32, 32, 3)
  with pytest.raises(ValueError, match="no images of at least 40x40"):
    demo_lib.held_out_images(data_dir, "a", 1, 40)
