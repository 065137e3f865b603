"""Helpers for the evaluate/export/infra_validate tests: tiny model_dirs in components.train's layout.

`make_model_dir(path, family, **overrides)` builds the family's "tiny" preset with the models API, saves it with
a `tf.train.Checkpoint(model=..., step=...)` under `checkpoints/` and writes `config.json`, exactly what
components.train_lib.load_trained_model reads (docs/INTERFACES.md "model_dir"). The weights are the random
initialisation (seeded), which is all the export/serving tests need.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

import models
from components import train_lib


def make_model_dir(path: str, family_name: str, step: int = 3, seed: int = 0, **overrides) -> str:
  """Writes a model_dir for `family_name`'s tiny preset (+ overrides) at `path`; returns `path`."""
  keras.utils.set_random_seed(seed)
  family = models.get_family(family_name)
  config = models.get_config(family_name, "tiny", **overrides)
  model = family.build_model(config)
  checkpoint = tf.train.Checkpoint(model=model, step=tf.Variable(step, dtype=tf.int64))
  tf.train.CheckpointManager(checkpoint, os.path.join(path, train_lib.CHECKPOINT_DIR), max_to_keep=1).save()
  with open(os.path.join(path, train_lib.CONFIG_FILE), "w") as f:
    json.dump({"family": family_name, "preset": "tiny", "model": config.to_dict(), "train": {}}, f)
  return path
