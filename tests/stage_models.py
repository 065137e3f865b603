"""Helpers for the evaluate/export/infra_validate tests: tiny model_dirs in components.train's layout.

`make_model_dir(path, family, **overrides)` builds the family's "tiny" preset with the models API, saves it with
`components.model_dir.model_checkpoint(model, step=...)` under `checkpoints/` and writes `config.json`, exactly what
components.model_dir.load_trained_model reads (docs/INTERFACES.md "model_dir"). The weights are the random
initialisation (seeded), which is all the export/serving tests need.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

import models
from components import model_dir as model_dir_lib


def make_model_dir(path: str, family_name: str, step: int = 3, seed: int = 0, **overrides) -> str:
  """Writes a model_dir for `family_name`'s tiny preset (+ overrides) at `path`; returns `path`."""
  keras.utils.set_random_seed(seed)
  family = models.get_family(family_name)
  config = models.get_config(family_name, "tiny", **overrides)
  model = family.build_model(config)
  checkpoint = model_dir_lib.model_checkpoint(model, step=tf.Variable(step, dtype=tf.int64))
  tf.train.CheckpointManager(checkpoint, os.path.join(path, model_dir_lib.CHECKPOINT_DIR), max_to_keep=1).save()
  with open(os.path.join(path, model_dir_lib.CONFIG_FILE), "w") as f:
    json.dump({"family": family_name, "preset": "tiny", "model": config.to_dict(), "train": {}}, f)
  return path


_ROOT = None
_EXPORTS: dict = {}


def exported(family_name: str, **overrides):
  """(model_dir, ExportResult) of a verified export of the tiny model, made once per test process and shared by
  the export, infra_validate and evaluate tests (an export with verification takes tens of seconds here)."""
  global _ROOT
  from components import export_lib  # pylint: disable=import-outside-toplevel
  key = (family_name, tuple(sorted(overrides.items())))
  if key not in _EXPORTS:
    if _ROOT is None:
      _ROOT = tempfile.mkdtemp(prefix="i2i_stage_models_")
      atexit.register(shutil.rmtree, _ROOT, True)
    name = "_".join([family_name] + [f"{k}{v}" for k, v in key[1]])
    model_dir = make_model_dir(os.path.join(_ROOT, name, "model_dir"), family_name, **overrides)
    result = export_lib.run(export_lib.ExportConfig(model_dir, os.path.join(_ROOT, name, "export")))
    _EXPORTS[key] = (model_dir, result)
  return _EXPORTS[key]
