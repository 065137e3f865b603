"""Tests of pipelines.demo_lib's data side: held-out images come from ingest's test split, centre-cropped."""

import json
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


def test_translation_grid_is_upscaled_and_labelled():
  inputs = np.zeros((2, 8, 8, 3), np.uint8)
  outputs = np.full((2, 8, 8, 3), 200, np.uint8)
  grid = demo_lib.translation_grid("a2b", [inputs, outputs], scale=4)
  # label margin 110 + pad 2 + 2 * (32 + 2); rows 2 + 2 * (32 + 2)
  assert grid.shape == (70, 110 + 2 + 68, 3)
  assert (grid[2:34, 112:144] == 0).all() and (grid[36:68, 112:144] == 200).all()
  assert (grid[:, :110] < 255).any()  # the labels


def test_read_scalars_and_curves(tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  writer = tf.summary.create_file_writer(str(tmp_path))
  with writer.as_default():
    for step, (d, g, kid) in enumerate(((1.0, 5.0, 0.3), (0.8, 4.0, 0.2)), start=1):
      tf.summary.scalar("loss/d/total", d, step=step * 10)
      tf.summary.scalar("loss/g/total", g, step=step * 10)
      tf.summary.scalar("loss/g/total_a", g / 2, step=step * 10)  # U-GAT-IT's per-domain sum: in neither plot
      tf.summary.scalar("loss/g/recon_x_a", g / 10, step=step * 10)
      tf.summary.scalar("eval/kid", kid, step=step * 10)
  writer.flush()
  scalars = demo_lib.read_scalars(str(tmp_path))
  assert scalars["loss/d/total"] == [(10, 1.0), (20, pytest.approx(0.8))]
  groups = dict(demo_lib.curve_groups(scalars))
  assert set(groups) == {"discriminator loss terms", "generator loss terms", "generator total loss",
                         "in-training kid"}
  assert set(groups["discriminator loss terms"]) == {"d/total"}
  assert set(groups["generator total loss"]) == {"g/total"} and set(groups["generator loss terms"]) == {"g/recon_x_a"}
  svg = demo_lib.svg_plot(groups["in-training kid"], "kid")
  assert svg.startswith("<svg") and "polyline" in svg and "last 0.2" in svg
  assert demo_lib.svg_plot({}, "empty") == ""


def test_verdict_says_whether_the_trained_model_beats_the_untrained_one():
  metrics = {"metrics": {"kid": 0.1}, "baseline": {"metrics": {"kid": 0.4}},
             "thresholds": {"baseline_metric": "kid"}, "blessed": True}
  assert demo_lib.verdict(metrics).startswith("The trained model is BETTER than the untrained one on kid (0.1 vs 0.4")
  metrics = {"metrics": {"cycle_psnr": 9.0}, "baseline": {"metrics": {"cycle_psnr": 12.0}},
             "thresholds": {"baseline_metric": "cycle_psnr"}, "blessed": False}
  assert "NOT better" in demo_lib.verdict(metrics) and "NOT blessed" in demo_lib.verdict(metrics)
  assert "no untrained baseline" in demo_lib.verdict({"metrics": {"kid": 0.1}, "blessed": True, "reason": "r"})


def test_untrained_model_overrides_follow_the_train_stage():
  from pipelines import pipeline_lib  # pylint: disable=import-outside-toplevel
  config = pipeline_lib.PipelineConfig(pipeline_root="/tmp/p", serving_root="/tmp/s", dataset_dir="/tmp/d",
                                       family="ugatit", preset="budget", image_size=32, model_overrides={"lr": 0.001},
                                       stage_options={"train": {"model_overrides": {"ch": 4}}})
  assert demo_lib.untrained_model_overrides(config) == {"lr": 0.001, "image_size": 32, "ch": 4}


@pytest.mark.slow
def test_untrained_baseline_exports_a_step_0_saved_model(tmp_path):
  from pipelines import pipeline_lib  # pylint: disable=import-outside-toplevel
  config = pipeline_lib.PipelineConfig(pipeline_root="/tmp/p", serving_root="/tmp/s", dataset_dir="/tmp/d",
                                       family="unit", preset="tiny", image_size=32)
  path = demo_lib.untrained_baseline(config, str(tmp_path), log=lambda _: None)
  assert os.path.exists(os.path.join(path, "saved_model.pb"))
  with open(os.path.join(path, "assets.extra", "model_card.json")) as f:
    card = json.load(f)
  assert card["training_step"] == 0 and card["family"] == "unit"
  assert demo_lib.untrained_baseline(config, str(tmp_path), log=lambda _: 1 / 0) == path  # reused, no re-export
