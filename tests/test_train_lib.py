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
from components import model_dir as model_dir_lib
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

  def diverging_train_step(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size, seed=None):
    """The real step; from the 3rd generator update on, g/total is reported as NaN (a diverged run)."""
    losses = family.train_step(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size, seed)
    poison = tf.where(gen_optimizer.iterations >= 3, float("nan"), 0.0)
    return {**losses, "g/total": losses["g/total"] + poison}

  model_dir = str(tmp_path / "model")
  with pytest.raises(StageError, match=r"diverged at step 3: loss g/total = nan is not finite.*ckpt-2"):
    train_lib.run(_config(data_dir, model_dir, steps=6),
                  family=dataclasses.replace(family, train_step=diverging_train_step))
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-2")
  assert not tf.io.gfile.glob(os.path.join(model_dir, "checkpoints", "ckpt-3*"))
  assert model_dir_lib.load_trained_model(model_dir)[3] == 2


def _recording(family, *, fail_from_step=None):
  """`family` with a train step that only draws: `style_draw`, the sum of the step's first MUNIT prior styles.

  (No update: the test is about the random state, and a trivial step keeps it fast.) The value is logged as the
  TensorBoard scalar loss/style_draw of every step. With `fail_from_step`, that step and later ones report a NaN
  loss: the run stops there without saving, like a run killed after its last checkpoint.
  """
  from models.munit.train import draw_prior_styles  # pylint: disable=import-outside-toplevel

  def train_step(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size, seed=None):  # noqa: ARG001
    gen_optimizer.iterations.assign_add(1)
    draw = tf.reduce_sum(draw_prior_styles(model, tf.shape(x_a)[0], seed).dis_s_a)
    poison = 0.0 if fail_from_step is None else tf.where(gen_optimizer.iterations >= fail_from_step, float("nan"), 0.0)
    return {"style_draw": draw, "g/total": poison}

  return dataclasses.replace(family, train_step=train_step)


def test_resumed_run_draws_the_same_random_values_as_an_uninterrupted_run(data_dir, tmp_path):
  from components.trainer import read_scalars  # pylint: disable=import-outside-toplevel
  family = models.get_family(FAMILY)
  straight = str(tmp_path / "straight")
  train_lib.run(_config(data_dir, straight, steps=4), family=_recording(family))
  expected = read_scalars(os.path.join(straight, "logs"))["loss/style_draw"]
  assert sorted(expected) == [1, 2, 3, 4] and len(set(expected.values())) == 4  # a new draw every step

  # Killed during step 3 (its state is lost; ckpt-2 is the newest checkpoint), then the same run resumed.
  resumed = str(tmp_path / "resumed")
  with pytest.raises(StageError, match=r"diverged at step 3.*ckpt-2"):
    train_lib.run(_config(data_dir, resumed, steps=4), family=_recording(family, fail_from_step=3))
  result = train_lib.run(_config(data_dir, resumed, steps=4), family=_recording(family))
  assert (result.start_step, result.step) == (2, 4)
  draws = read_scalars(os.path.join(resumed, "logs"))["loss/style_draw"]
  assert draws == expected  # steps 1-2 from the first process, 3-4 after the restore: bit for bit


@pytest.mark.parametrize("name", ["munit", "unit"])
def test_train_step_draws_only_from_its_seed(name):
  """Same seed -> same losses whatever TF's global RNG did meanwhile; another seed -> other draws."""
  import keras  # pylint: disable=import-outside-toplevel
  from tests.test_train_data import FAST_OVERRIDES  # pylint: disable=import-outside-toplevel
  family = models.get_family(name)
  config = models.get_config(name, "tiny", **dict(FAST_OVERRIDES[name], image_size=16, dis_n_layer=2))
  x_a = tf.random.stateless_uniform([1, 16, 16, 3], seed=[1, 2], minval=-1.0, maxval=1.0)
  x_b = tf.random.stateless_uniform([1, 16, 16, 3], seed=[3, 4], minval=-1.0, maxval=1.0)

  def step(seed, global_seed):
    keras.utils.set_random_seed(0)
    model = family.build_model(config)
    gen_opt, dis_opt = family.build_optimizers(config)
    tf.random.set_seed(global_seed)
    return family.train_step(model, gen_opt, dis_opt, x_a, x_b, 1, tf.constant(seed, tf.int64))

  first, again, other = step([5, 6], 1), step([5, 6], 2), step([7, 8], 1)
  assert {k: float(v) for k, v in first.items()} == {k: float(v) for k, v in again.items()}
  terms = ("g/kl_a", "g/kl_b") if name == "unit" else ("g/recon_s_a", "g/recon_s_b")
  assert all(float(first[t]) != float(other[t]) for t in terms)


def test_mixed_precision_trains_in_bfloat16_with_float32_variables(data_dir, tmp_path, monkeypatch):
  import keras  # pylint: disable=import-outside-toplevel

  set_policy, policies = keras.mixed_precision.set_global_policy, []
  monkeypatch.setattr(keras.mixed_precision, "set_global_policy",
                      lambda p: (policies.append(getattr(p, "name", p)), set_policy(p)))
  result = train_lib.run(_config(data_dir, str(tmp_path), steps=2, mixed_precision=True))
  assert policies == ["mixed_bfloat16", "float32"]
  assert result.step == 2 and result.losses
  assert all(tf.math.is_finite(v) for v in result.losses.values()), result.losses
  assert keras.mixed_precision.global_policy().name == "float32"  # the run restores the policy it found
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["train"]["mixed_precision"] is True
  _, _, model, step = model_dir_lib.load_trained_model(str(tmp_path))
  assert step == 2 and {v.dtype for v in model.variables} <= {"float32", "uint32", "int64"}
