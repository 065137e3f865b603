"""components.train_lib in-process (default strategy): outputs, load, incompatible configs, divergence.

Resume after a kill, strategies and multi-worker runs are in test_train_distributed.py (subprocesses).
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from components import train_lib
from components.errors import StageError
from tests.test_train_data import FAST_OVERRIDES, read_scalars, write_dataset

FAMILY = "ugatit"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return write_dataset(str(tmp_path_factory.mktemp("data")))


def _config(data_dir, model_dir, **kwargs):
  """A tiny TrainConfig for FAMILY; kwargs override TrainConfig fields."""
  base = dict(family=FAMILY, data_dir=data_dir, model_dir=model_dir, preset="tiny",
              model_overrides=FAST_OVERRIDES[FAMILY], steps=3, checkpoint_every_steps=2, summary_every_steps=1,
              sample_every_steps=3, num_samples=2, strategy="default")
  base.update(kwargs)
  return train_lib.TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  """A model_dir trained for 3 steps, and the TrainResult."""
  model_dir = str(tmp_path_factory.mktemp("model"))
  return model_dir, train_lib.run(_config(data_dir, model_dir))


def test_run_writes_checkpoints_config_samples_and_summaries(trained):
  model_dir, result = trained
  assert (result.start_step, result.step, result.stopped_by, result.num_replicas) == (0, 3, None, 1)
  assert result.checkpoint == os.path.join(model_dir, "checkpoints", "ckpt-3")
  assert tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints")).all_model_checkpoint_paths[-2:] == [
      os.path.join(model_dir, "checkpoints", "ckpt-2"), os.path.join(model_dir, "checkpoints", "ckpt-3")]
  assert int(tf.train.load_variable(result.checkpoint, "step/.ATTRIBUTES/VARIABLE_VALUE")) == 3
  assert set(result.losses) >= {"g_loss", "d_loss"} and all(np.isfinite(list(result.losses.values())))

  saved = json.load(open(os.path.join(model_dir, "config.json")))
  expected_model = models.get_config(FAMILY, "tiny", **FAST_OVERRIDES[FAMILY]).to_dict()
  assert saved["family"] == FAMILY and saved["preset"] == "tiny"
  assert saved["model"] == expected_model
  assert saved["train"]["steps"] == 3 and saved["train"]["model_overrides"] == FAST_OVERRIDES[FAMILY]

  # Sample grid: one row per sample_rows entry, one column per fixed example (num_samples=2), 2 px borders.
  grid = tf.io.decode_png(tf.io.read_file(os.path.join(model_dir, "samples", "step_00000003.png"))).numpy()
  x = tf.zeros([2, 32, 32, 3])
  family = models.get_family(FAMILY)
  keras.utils.set_random_seed(0)
  rows = family.sample_rows(family.build_model(models.get_config(FAMILY, "tiny", **FAST_OVERRIDES[FAMILY])), x, x)
  assert grid.shape == (len(rows) * 34 + 2, 2 * 34 + 2, 3)

  scalars = read_scalars(os.path.join(model_dir, "logs"))
  assert sorted(scalars["loss/g_loss"]) == [1, 2, 3]
  assert scalars["loss/g_loss"][3] == pytest.approx(result.losses["g_loss"], rel=1e-6)
  for tag in ("lr/gen", "lr/dis", "perf/step_time_sec", "perf/images_per_sec"):
    assert tag in scalars, tag
  assert scalars["lr/gen"][1] == pytest.approx(1e-4)
  assert 0.0 <= scalars["rho/min"][3] <= scalars["rho/mean"][3] <= scalars["rho/max"][3] <= 1.0


def test_load_trained_model_restores_trained_weights(trained):
  model_dir, _ = trained
  family, config, model, step = train_lib.load_trained_model(model_dir)
  assert (family.name, step) == (FAMILY, 3)
  assert config == models.get_config(FAMILY, "tiny", **FAST_OVERRIDES[FAMILY])
  keras.utils.set_random_seed(0)
  untrained = family.build_model(config)
  trained_values = [v.numpy() for v in model.generator_variables]
  initial_values = [v.numpy() for v in untrained.generator_variables]
  assert any(not np.allclose(a, b) for a, b in zip(trained_values, initial_values))
  path = os.path.join(model_dir, "checkpoints", "ckpt-3")
  saved = {np.asarray(tf.train.load_variable(path, name)).tobytes() for name, _ in tf.train.list_variables(path)}
  assert all(v.tobytes() in saved for v in trained_values)


def test_incompatible_model_dir_is_a_clear_error(trained, data_dir):
  model_dir, _ = trained
  changed = dict(FAST_OVERRIDES[FAMILY], cycle_weight=3.0)
  with pytest.raises(StageError, match=r"different ugatit config \(cycle_weight: 10.0 -> 3.0\)"):
    train_lib.run(_config(data_dir, model_dir, model_overrides=changed, steps=5))


def test_unknown_model_setting_names_the_flag(data_dir, tmp_path):
  with pytest.raises(StageError, match=r"--gan_w is not a setting of the ugatit model"):
    train_lib.run(_config(data_dir, str(tmp_path), model_overrides={"gan_w": 2.0}))
  with pytest.raises(StageError, match=r"Unknown --preset='huge'"):
    train_lib.run(_config(data_dir, str(tmp_path), preset="huge"))
  with pytest.raises(StageError, match=r"--checkpoint_every_steps must be >= 1"):
    train_lib.run(_config(data_dir, str(tmp_path), checkpoint_every_steps=0))


def test_non_finite_loss_stops_run_and_keeps_last_good_checkpoint(data_dir, tmp_path):
  family = models.get_family(FAMILY)

  def poisoned_train_step(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size):
    """The real step; from the 3rd generator update on, g_loss is reported as NaN (a diverged run)."""
    losses = family.train_step(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size)
    poison = tf.where(gen_optimizer.iterations >= 3, float("nan"), 0.0)
    return dict(losses, g_loss=losses["g_loss"] + poison)

  model_dir = str(tmp_path / "model")
  with pytest.raises(StageError, match=r"diverged at step 3: loss g_loss = nan is not finite.*ckpt-2"):
    train_lib.run(_config(data_dir, model_dir, steps=6, sample_every_steps=0),
                  family=dataclasses.replace(family, train_step=poisoned_train_step))
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-2")
  assert not tf.io.gfile.glob(os.path.join(model_dir, "checkpoints", "ckpt-3*"))
