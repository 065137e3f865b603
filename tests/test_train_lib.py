"""components.train_lib in-process: bad settings, incompatible model_dir, a diverging run stops cleanly.

Full runs (outputs, load, strategies, resume after SIGKILL, multi-worker) are in test_train_distributed.py,
in subprocesses.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import tensorflow as tf

import models
from components import train_lib
from components.errors import StageError
from tests.test_train_data import FAST_OVERRIDES, write_dataset

FAMILY = "munit"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return write_dataset(str(tmp_path_factory.mktemp("data")), train=6, test=2)


def _config(data_dir, model_dir, **kwargs):
  """A tiny TrainConfig for FAMILY; kwargs override TrainConfig fields."""
  base = dict(family=FAMILY, data_dir=data_dir, model_dir=model_dir, preset="tiny",
              model_overrides=FAST_OVERRIDES[FAMILY], steps=3, checkpoint_every_steps=2, summary_every_steps=1,
              sample_every_steps=0, num_samples=2, strategy="default")
  base.update(kwargs)
  return train_lib.TrainConfig(**base)


def test_unknown_settings_are_clear_errors(data_dir, tmp_path):
  with pytest.raises(StageError, match=r"--cycle_weight is not a setting of the munit model"):
    train_lib.run(_config(data_dir, str(tmp_path), model_overrides={"cycle_weight": 2.0}))
  with pytest.raises(StageError, match=r"Unknown --preset='huge'"):
    train_lib.run(_config(data_dir, str(tmp_path), preset="huge"))
  with pytest.raises(StageError, match=r"--checkpoint_every_steps must be >= 1"):
    train_lib.run(_config(data_dir, str(tmp_path), checkpoint_every_steps=0))
  with pytest.raises(StageError, match=r"Invalid munit setting: .*image_size"):
    train_lib.run(_config(data_dir, str(tmp_path), model_overrides={"image_size": -4}))
  with pytest.raises(StageError, match=r"Cannot read training data: no TFRecord shards"):
    train_lib.run(_config(str(tmp_path / "nothing"), str(tmp_path / "m")))


def test_model_dir_of_another_model_is_a_clear_error(data_dir, tmp_path):
  config = models.get_config(FAMILY, "tiny", **FAST_OVERRIDES[FAMILY])
  with open(tmp_path / "config.json", "w") as f:
    json.dump({"family": FAMILY, "preset": "tiny", "model": config.to_dict(), "train": {}}, f)
  with pytest.raises(StageError, match=r"holds a 'munit' model, not 'unit'.*--model=munit"):
    train_lib.run(_config(data_dir, str(tmp_path), family="unit", model_overrides={}))
  changed = dict(FAST_OVERRIDES[FAMILY], recon_x_w=3.0)
  with pytest.raises(StageError, match=r"different munit config \(recon_x_w: 10.0 -> 3.0\)"):
    train_lib.run(_config(data_dir, str(tmp_path), model_overrides=changed))


def test_non_finite_loss_stops_run_and_keeps_last_good_checkpoint(data_dir, tmp_path):
  family = models.get_family(FAMILY)

  def diverging_train_step(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size):
    """The real step; from the 3rd generator update on, gen_total is reported as NaN (a diverged run)."""
    losses = family.train_step(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size)
    poison = tf.where(gen_optimizer.iterations >= 3, float("nan"), 0.0)
    return dict(losses, gen_total=losses["gen_total"] + poison)

  model_dir = str(tmp_path / "model")
  with pytest.raises(StageError, match=r"diverged at step 3: loss gen_total = nan is not finite.*ckpt-2"):
    train_lib.run(_config(data_dir, model_dir, steps=6),
                  family=dataclasses.replace(family, train_step=diverging_train_step))
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-2")
  assert not tf.io.gfile.glob(os.path.join(model_dir, "checkpoints", "ckpt-3*"))
  assert train_lib.load_trained_model(model_dir)[3] == 2
