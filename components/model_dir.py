"""The model_dir contract: what components.train writes and every later stage reads (docs/INTERFACES.md).

A model_dir holds `config.json` ({"family", "preset", "model": <model config>, "train": <train config>, ...}),
`checkpoints/` (tf.train.CheckpointManager over `model_checkpoint`, `ckpt-<step>`), `checkpoints/best/` (the best
checkpoint by in-training evaluation and its best.json), `logs/` (TensorBoard) and `samples/`.
`load_model_dir` is the one reader that rebuilds a model from it (evaluate, export, import_model, the demo);
train and import_official write it with `model_checkpoint`, CONFIG_FILE and CHECKPOINT_DIR.
A contract module: stages import it, it imports no stage.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import tensorflow as tf

import models
from models import precision
from components import trainer
from components.errors import StageError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"  # under CHECKPOINT_DIR
CHECKPOINT_CHOICES = ("auto", "best", "latest")
LOG_DIR = "logs"
SAMPLE_DIR = "samples"


def check_checkpoint_choice(checkpoint: str) -> None:
  """StageError unless `checkpoint` is one of CHECKPOINT_CHOICES (the --checkpoint flag of evaluate and export)."""
  if checkpoint not in CHECKPOINT_CHOICES:
    raise StageError(f"--checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, got {checkpoint!r}")


def model_checkpoint(model, **objects) -> tf.train.Checkpoint:
  """The checkpoint layout of model_dir/checkpoints: `model`, `model_variables` and `objects`.

  Training passes `gen_optimizer`, `dis_optimizer`, `step` and `rng` (the tf.random.Generator every random draw
  of a train step derives from) as `objects`, and `generator_ema` (trainer.GeneratorEMA.averages, positional
  like model_variables) when the EMA is on. The best checkpoint (checkpoints/best/) holds `model`,
  `model_variables`, `step` and `generator_ema` only.

  Keras 3 layers held in Python lists are not children in tf.train.Checkpoint's object graph, so
  `Checkpoint(model=model)` alone misses most weights; every variable of `model.variables` is therefore also
  saved by position under `model_variables` (the same architecture always lists them in the same order).
  """
  return tf.train.Checkpoint(model=model, model_variables=list(model.variables), **objects)


def restore_model(model, path: str, **objects) -> int:
  """Restores `model`'s weights (and `objects`, e.g. generator_ema) from the checkpoint `path`; returns its step.

  Raises StageError when a model variable (or object) is missing from the checkpoint or has another shape (a
  different architecture or config).
  """
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  try:
    model_checkpoint(model, step=step, **objects).restore(path).assert_existing_objects_matched().expect_partial()
  except (AssertionError, ValueError) as e:
    raise StageError(f"Checkpoint {path} does not fit this model ({e}); was it written for another config?") from e
  return int(step.numpy())


def read_config(model_dir: str) -> dict[str, Any]:
  """Returns the parsed model_dir/config.json; StageError when it is missing."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise StageError(f"{path} not found: {model_dir} is not a trained model directory (run components.train).")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A model rebuilt from a model_dir by `load_model_dir`.

  Attributes:
    family, config, model, step: the Family, its config dataclass, the built model with the chosen weights, and
      the training step of the checkpoint.
    checkpoint: "best" or "latest" (which checkpoint was read); path: its `ckpt-N` prefix.
    weights: "ema" (the generator EMA was on: the generators hold the averages) or "trained".
    best: the best checkpoint's record (best.json) when `checkpoint` is "best", else None.
  """

  family: models.Family
  config: Any
  model: Any
  step: int
  checkpoint: str
  path: str
  weights: str
  best: dict | None = None

  def describe(self) -> dict[str, Any]:
    """What was loaded, for metrics.json, the model card and the lineage: checkpoint, path, step, weights, best."""
    return {"checkpoint": self.checkpoint, "path": self.path, "step": self.step, "weights": self.weights,
            "best": self.best}


def best_checkpoint_dir(model_dir: str) -> str:
  """model_dir/checkpoints/best."""
  return os.path.join(model_dir, CHECKPOINT_DIR, BEST_DIR)


def load_model_dir(model_dir: str, checkpoint: str = "auto", compute_dtype: str = "float32") -> TrainedModel:
  """Rebuilds the model of a model_dir from config.json and one of its checkpoints (the one reader of model_dirs).

  Args:
    model_dir: components.train's model_dir.
    checkpoint: "best" (checkpoints/best/, kept by in-training evaluation), "latest" (the newest rolling
      checkpoint) or "auto" (best when present, else latest).
    compute_dtype: "float32", or "bfloat16" to build the networks with bfloat16 compute (models.precision; the
      variables, and so the restored weights, stay float32).
  Returns:
    TrainedModel. When the run kept a generator EMA (config.json train.ema_decay > 0) the generators hold the
    averages (weights "ema"). StageError when the asked-for checkpoint does not exist.
  """
  if checkpoint not in CHECKPOINT_CHOICES:
    raise StageError(f"--checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, got {checkpoint!r}.")
  saved = read_config(model_dir)
  try:
    family = models.get_family(saved.get("family"))
  except ValueError as e:
    raise StageError(f"{os.path.join(model_dir, CONFIG_FILE)} names the model family {saved.get('family')!r}, "
                     f"which is not registered ({e}); register it with models.register_family before loading "
                     "this model_dir.") from None
  model_config = family.config_class.from_dict(saved["model"])
  best_path = tf.train.latest_checkpoint(best_checkpoint_dir(model_dir))
  if checkpoint == "best" and best_path is None:
    raise StageError(f"No best checkpoint in {best_checkpoint_dir(model_dir)}: train with --eval_every_steps > 0 "
                     "to keep one, or use --checkpoint=latest.")
  kind = "best" if checkpoint == "best" or (checkpoint == "auto" and best_path) else "latest"
  path = best_path if kind == "best" else tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR))
  if path is None:
    raise StageError(f"No checkpoint in {os.path.join(model_dir, CHECKPOINT_DIR)}: train the model first.")
  with precision.compute_policy(compute_dtype):
    model = family.build_model(model_config)
  ema_on = float(saved.get("train", {}).get("ema_decay", 0.0) or 0.0) > 0
  if ema_on:
    averages = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in model.generator_variables]
    step = restore_model(model, path, generator_ema=averages)
    for variable, average in zip(model.generator_variables, averages):
      variable.assign(average)
  else:
    step = restore_model(model, path)
  best = trainer.read_best(best_checkpoint_dir(model_dir)) if kind == "best" else None
  return TrainedModel(family, model_config, model, step, kind, path, "ema" if ema_on else "trained", best)


def load_trained_model(model_dir: str, checkpoint: str = "auto"):
  """`load_model_dir` as a tuple: (family, model_config, model, step)."""
  loaded = load_model_dir(model_dir, checkpoint)
  return loaded.family, loaded.config, loaded.model, loaded.step
