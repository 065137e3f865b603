"""Export reads the best or the latest checkpoint (--checkpoint), exports the generator EMA when the run kept one,
and records which in the model card and its result (the pipeline lineage)."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from components import export_lib, trainer, translator
from components import model_dir as model_dir_lib
from components.errors import StageError

FAMILY = "unit"


def _save(directory: str, model, averages, step: int) -> None:
  checkpoint = model_dir_lib.model_checkpoint(model, step=tf.Variable(step, dtype=tf.int64), generator_ema=averages)
  tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1).save(checkpoint_number=step)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A UNIT tiny model_dir trained "with --ema_decay": latest ckpt-3 and best ckpt-7, each with its own weights
  and its own generator averages (weights + 0.01 * N(0, 1), so that outputs of the two differ)."""
  path = str(tmp_path_factory.mktemp("model_dir"))
  keras.utils.set_random_seed(0)
  config = models.get_config(FAMILY, "tiny")
  model = models.get_family(FAMILY).build_model(config)
  rng = np.random.default_rng(0)
  weights = {}
  for step, directory in ((3, os.path.join(path, "checkpoints")), (7, os.path.join(path, "checkpoints", "best"))):
    for v in model.variables:
      v.assign(v.numpy() + 0.01 * rng.standard_normal(v.shape).astype(np.float32))
    averages = [tf.Variable(v.numpy() + 0.01 * rng.standard_normal(v.shape).astype(np.float32))
                for v in model.generator_variables]
    _save(directory, model, averages, step)
    weights[step] = ([v.numpy() for v in model.variables], [a.numpy() for a in averages])
  trainer.write_json(os.path.join(path, "checkpoints", "best", "best.json"),
                     {"step": 7, "metric": "kid", "mode": "min", "value": 0.1, "metrics": {"kid": 0.1},
                      "checkpoint": "ckpt-7"})
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump({"family": FAMILY, "preset": "tiny", "model": config.to_dict(), "train": {"ema_decay": 0.5}}, f)
  return path, weights


def _translations(weights, averages, images, use_ema: bool) -> np.ndarray:
  model = models.get_family(FAMILY).build_model(models.get_config(FAMILY, "tiny"))
  for v, w in zip(model.variables, weights):
    v.assign(w)
  if use_ema:
    for v, a in zip(model.generator_variables, averages):
      v.assign(a)
  return translator.TranslatorModule(model, FAMILY).functions["a2b"](images=tf.constant(images))["images"].numpy()


@pytest.mark.slow
def test_export_defaults_to_best_exports_ema_weights_and_records_it(model_dir, tmp_path):
  path, weights = model_dir
  result = export_lib.run(export_lib.ExportConfig(path, str(tmp_path / "export"), verify=False))
  assert result.step == 7
  assert {k: result.checkpoint[k] for k in ("checkpoint", "step", "weights")} == {
      "checkpoint": "best", "step": 7, "weights": "ema"}
  assert result.checkpoint["path"].endswith(os.path.join("best", "ckpt-7"))
  card = json.load(open(tmp_path / "export" / export_lib.MODEL_CARD_PATH))
  assert card["checkpoint"]["checkpoint"] == "best" and card["checkpoint"]["best"]["metric"] == "kid"
  images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
  served = tf.saved_model.load(str(tmp_path / "export")).signatures["a2b"](images=tf.constant(images))["images"]
  np.testing.assert_array_equal(served.numpy(), _translations(*weights[7], images, use_ema=True))
  assert not np.array_equal(served.numpy(), _translations(*weights[7], images, use_ema=False))


@pytest.mark.slow
def test_export_latest_on_request(model_dir, tmp_path):
  path, weights = model_dir
  result = export_lib.run(export_lib.ExportConfig(path, str(tmp_path / "export"), verify=False,
                                                  checkpoint="latest"))
  assert (result.step, result.checkpoint["checkpoint"], result.checkpoint["best"]) == (3, "latest", None)
  images = np.full((1, 32, 32, 3), 90, np.uint8)
  served = tf.saved_model.load(str(tmp_path / "export")).signatures["a2b"](images=tf.constant(images))["images"]
  np.testing.assert_array_equal(served.numpy(), _translations(*weights[3], images, use_ema=True))
  with pytest.raises(StageError, match="--checkpoint must be one of"):
    export_lib.ExportConfig(path, str(tmp_path / "x"), checkpoint="newest")
