"""Generator EMA (components.trainer.GeneratorEMA, train_lib --ema_decay): hand formula, checkpoint, resume, readers.

ema_0 = the initial weights; after step t: ema_t = decay * ema_{t-1} + (1 - decay) * w_t.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from components import model_dir as model_dir_lib
from components import train_lib, trainer
from components.errors import StageError
from tests.test_train_data import FAST_OVERRIDES, write_dataset


def test_ema_update_matches_the_hand_formula_and_applied_swaps_back():
  w = [tf.Variable([1.0, 2.0]), tf.Variable([[-4.0]])]
  ema = trainer.GeneratorEMA(w, 0.9)
  w[0].assign([3.0, 4.0])
  w[1].assign([[6.0]])
  ema.update()  # 0.9 * [1, 2] + 0.1 * [3, 4]; 0.9 * -4 + 0.1 * 6
  np.testing.assert_allclose(ema.averages[0].numpy(), [1.2, 2.2], rtol=1e-6)
  np.testing.assert_allclose(ema.averages[1].numpy(), [[-3.0]], rtol=1e-6)
  w[0].assign([5.0, 6.0])
  ema.update()  # 0.9 * [1.2, 2.2] + 0.1 * [5, 6]
  np.testing.assert_allclose(ema.averages[0].numpy(), [1.58, 2.58], rtol=1e-6)
  with ema.applied():
    np.testing.assert_allclose(w[0].numpy(), [1.58, 2.58], rtol=1e-6)
  np.testing.assert_array_equal(w[0].numpy(), [5.0, 6.0])
  with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
    trainer.GeneratorEMA(w, 1.0)


def test_ema_runs_inside_the_distributed_step():
  strategy = tf.distribute.get_strategy()
  with strategy.scope():
    w = tf.Variable(0.0)
    ema = trainer.GeneratorEMA([w], 0.9)

  def replica_step(x):
    w.assign_add(x)
    return {"w": tf.identity(w)}

  step = trainer.make_distributed_step(strategy, replica_step, after_step=ema.update)
  iterator = iter(tf.data.Dataset.from_tensor_slices([1.0, 1.0, 1.0]).batch(1).map(lambda x: (x[0],)))
  expected = 0.0
  for t in range(1, 4):
    step(iterator)
    expected = 0.9 * expected + 0.1 * t  # w_t = t
    assert float(ema.averages[0].numpy()) == pytest.approx(expected, rel=1e-6)
  assert expected == pytest.approx(0.561)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return write_dataset(str(tmp_path_factory.mktemp("data")), train=4, test=2)


def _config(data_dir, model_dir, **kwargs):
  base = dict(family="munit", data_dir=data_dir, model_dir=model_dir, preset="tiny",
              model_overrides=FAST_OVERRIDES["munit"], steps=2, checkpoint_every_steps=1, keep_checkpoints=5,
              summary_every_steps=1, sample_every_steps=0, strategy="default", ema_decay=0.5)
  base.update(kwargs)
  return train_lib.TrainConfig(**base)


def _read(model_dir, step):
  """(generator weights, generator EMA, discriminator weights) stored in ckpt-<step>, as numpy lists."""
  config = models.get_config("munit", "tiny", **FAST_OVERRIDES["munit"])
  model = models.get_family("munit").build_model(config)
  averages = [tf.Variable(tf.zeros(v.shape, v.dtype)) for v in model.generator_variables]
  model_dir_lib.restore_model(model, os.path.join(model_dir, "checkpoints", f"ckpt-{step}"), generator_ema=averages)
  return ([v.numpy() for v in model.generator_variables], [a.numpy() for a in averages],
          [v.numpy() for v in model.discriminator_variables])


def _assert_ema_step(previous_ema, weights, ema, decay=0.5):
  for before, w, after in zip(previous_ema, weights, ema):
    np.testing.assert_allclose(after, decay * before + (1 - decay) * w, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_ema_is_checkpointed_resumed_and_read_by_load_model_dir(data_dir, tmp_path):
  model_dir = str(tmp_path / "model")
  train_lib.run(_config(data_dir, model_dir))
  keras.utils.set_random_seed(0)  # the trainer's initialisation (seed 0): ema_0
  initial = [v.numpy() for v in models.get_family("munit").build_model(
      models.get_config("munit", "tiny", **FAST_OVERRIDES["munit"])).generator_variables]
  w1, ema1, _ = _read(model_dir, 1)
  w2, ema2, _ = _read(model_dir, 2)
  _assert_ema_step(initial, w1, ema1)
  _assert_ema_step(ema1, w2, ema2)
  assert any(not np.allclose(a, b) for a, b in zip(w2, ema2))
  # Resume: step 3 continues from the checkpointed average (not from the weights).
  result = train_lib.run(_config(data_dir, model_dir, steps=3))
  assert result.start_step == 2
  w3, ema3, d3 = _read(model_dir, 3)
  _assert_ema_step(ema2, w3, ema3)
  # The one model_dir reader puts the averages into the generators; discriminators keep their trained weights.
  loaded = model_dir_lib.load_model_dir(model_dir, "latest")
  assert (loaded.weights, loaded.checkpoint, loaded.step) == ("ema", "latest", 3)
  for got, want in zip(loaded.model.generator_variables, ema3):
    np.testing.assert_array_equal(got.numpy(), want)
  for got, want in zip(loaded.model.discriminator_variables, d3):
    np.testing.assert_array_equal(got.numpy(), want)
  with pytest.raises(StageError, match="No best checkpoint"):
    model_dir_lib.load_model_dir(model_dir, "best")
  # Switching the EMA off in the middle of a run is refused.
  with pytest.raises(StageError, match="--ema_decay=0.5"):
    train_lib.run(_config(data_dir, model_dir, steps=4, ema_decay=0.0))


def test_bad_ema_decay_is_a_clear_error(data_dir, tmp_path):
  with pytest.raises(StageError, match=r"--ema_decay must be in \[0, 1\)"):
    train_lib.run(_config(data_dir, str(tmp_path), ema_decay=1.0))


_MIRRORED_DRIVER = r"""
import json, sys
import tensorflow as tf
from components import trainer
trainer.configure_cpu_replicas(2)
strategy = trainer.create_strategy("mirrored", 2)
with strategy.scope():
  w = tf.Variable([1.0, -1.0])
  ema = trainer.GeneratorEMA([w], 0.75)
  optimizer = tf.keras.optimizers.SGD(0.5)

def replica_step(x):
  # Each replica sees its own x; the gradient of mean(x) * w summed over replicas is the all-reduced update.
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x * w) / 2.0
  optimizer.apply_gradients([(tape.gradient(loss, w), w)])
  return {"loss": loss}

step = trainer.make_distributed_step(strategy, replica_step, after_step=ema.update)
data = tf.data.Dataset.from_tensor_slices(tf.constant([[1.0, 2.0], [3.0, 4.0]] * 3)).batch(2).map(lambda x: (x,))
iterator = iter(strategy.experimental_distribute_dataset(data))
out = []
for _ in range(3):
  step(iterator)
  out.append({"w": [v.numpy().tolist() for v in strategy.experimental_local_results(w)],
              "ema": [v.numpy().tolist() for v in strategy.experimental_local_results(ema.averages[0])]})
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "steps": out}))
"""


def test_ema_under_mirrored_strategy_on_two_logical_cpus():
  import json  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-c", _MIRRORED_DRIVER], cwd=root, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report["replicas"] == 2
  # Replica r gets x = [1, 2] or [3, 4]; the summed gradient is ([1, 2] + [3, 4]) / 2 = [2, 3]; SGD lr 0.5:
  # w_t = w_{t-1} - [1, 1.5]; ema_t = 0.75 ema_{t-1} + 0.25 w_t, ema_0 = w_0 = [1, -1].
  w, ema = np.array([1.0, -1.0]), np.array([1.0, -1.0])
  for got in report["steps"]:
    w = w - np.array([1.0, 1.5])
    ema = 0.75 * ema + 0.25 * w
    for replica in range(2):  # every replica's copy holds the same, correct average
      np.testing.assert_allclose(got["w"][replica], w, rtol=1e-6)
      np.testing.assert_allclose(got["ema"][replica], ema, rtol=1e-6)
