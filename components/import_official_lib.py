"""The import stage: a checkpoint written by the official PyTorch code -> a model_dir like components.train's.

Users of NVlabs/MUNIT, mingyuliutw/UNIT (version_02) and znxlwm/UGATIT-pytorch have checkpoints trained for days
on a GPU. `run(ImportConfig)` reads them into our networks and writes `config.json` + `checkpoints/ckpt-<step>`,
which `components.evaluate`, `export`, `infra_validate`, `push` and the pipeline accept exactly as a trained
model_dir. What each family reads:

  munit   gen_<iter>.pt ({"a": state_dict, "b": state_dict}), optionally dis_<iter>.pt, and the run's YAML
  unit    <prefix>_gen_<iter>.pkl and optionally <prefix>_dis_<iter>.pkl (state_dicts), and the run's YAML
  ugatit  <dataset>_params_<iter>.pt ({"genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB"}); full or light
          and the sizes come from the checkpoint's own shapes

The architecture always comes from the official config and the checkpoint's shapes, never from a preset.
The family's `models.<family>.official` module maps names and layouts, and checks that every official tensor is
used exactly once and every variable of ours is filled exactly once (`models.official.OfficialWeights`).
Reading `.pt` / `.pkl` files needs PyTorch, an optional extra (`pip install -e '.[official]'`); the rest of the
stage (`import_tensors`) takes numpy arrays and needs only TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

import models
from components import model_dir as model_dir_lib
from components.errors import StageError
from components.trainer import write_json
from models.official import OfficialImportError

TORCH_MISSING = ("Reading official PyTorch checkpoints needs torch, which the core install leaves out. Install "
                 "the optional extra: .venv/bin/pip install -e '.[official]' (or pip install torch), then rerun.")
PRESET_NAME = "official"


@dataclasses.dataclass(frozen=True)
class ImportConfig:
  """One import.

  Attributes:
    family: "munit", "unit" or "ugatit".
    checkpoints: the official files (see the module docstring); their order does not matter.
    model_dir: where to write config.json and checkpoints/ (must not hold a model yet).
    official_config: the official run's YAML (MUNIT, UNIT: required; U-GAT-IT: none, shapes tell).
    image_size: the square size the model is exported and evaluated at (default: the YAML's crop size;
      U-GAT-IT full: fixed by its checkpoint, U-GAT-IT light: 256).
  """

  family: str = dataclasses.field(metadata={"flag": "model", "choices": models.FAMILY_NAMES})
  checkpoints: tuple[str, ...] = dataclasses.field(metadata={"flag": "checkpoint"})
  model_dir: str
  official_config: str | None = None
  image_size: int | None = None


@dataclasses.dataclass(frozen=True)
class ImportResult:
  """What an import wrote: the model_dir, its family, the official iteration, the checkpoint path and config."""

  model_dir: str
  family: str
  step: int
  checkpoint: str
  model_config: Any


def family_module(family: str):
  """`models.<family>.official`: config_from_official, official_tensors, load_official."""
  if family not in models.FAMILY_NAMES:
    raise StageError(f"Unknown --model={family!r}; choose one of {', '.join(models.FAMILY_NAMES)}.")
  return importlib.import_module(f"models.{family}.official")


def _to_numpy(obj):
  """Nested dicts / lists of torch tensors -> the same structure of numpy arrays (other leaves kept)."""
  if hasattr(obj, "detach") and hasattr(obj, "cpu"):
    return obj.detach().cpu().float().numpy() if obj.is_floating_point() else obj.detach().cpu().numpy()
  if isinstance(obj, Mapping):
    return {str(k): _to_numpy(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_to_numpy(v) for v in obj)
  return obj


def load_torch_file(path: str):
  """torch.load(path) on the CPU, tensors as numpy arrays. StageError when torch is missing or the file is bad."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise StageError(TORCH_MISSING) from None
  if not os.path.isfile(path):
    raise StageError(f"Official checkpoint {path} does not exist; pass the files the official trainer saved.")
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  (torch raises many kinds for a bad file)
    raise StageError(f"Cannot read {path} as a PyTorch checkpoint ({type(e).__name__}: {str(e)[:200]}); pass "
                     f"the .pt/.pkl files written by the official trainer.") from e
  return _to_numpy(obj)


def read_official_config(path: str | None) -> dict | None:
  """Parses the official YAML (None when no path); StageError when unreadable."""
  if not path:
    return None
  import yaml  # pylint: disable=import-outside-toplevel  (apache-beam depends on PyYAML)
  try:
    with open(path, encoding="utf-8") as f:
      parsed = yaml.safe_load(f)
  except (OSError, yaml.YAMLError) as e:
    raise StageError(f"Cannot read the official config {path}: {e}") from e
  if not isinstance(parsed, dict):
    raise StageError(f"The official config {path} is not a YAML mapping of settings.")
  return parsed


def official_step(paths) -> int:
  """The training iteration in the official file names (gen_00100000.pt -> 100000; none -> 0)."""
  steps = [int(m.group(1)) for p in paths for m in [re.search(r"(\d+)\.(?:pt|pkl|pth)$", os.path.basename(p))]
           if m]
  return max(steps) if steps else 0


def import_tensors(family: str, files: Mapping[str, Any], model_dir: str, *, official_config: dict | None = None,
                   image_size: int | None = None, step: int = 0, source: Mapping[str, Any] | None = None
                   ) -> ImportResult:
  """Builds the family's model from official tensors (numpy) and writes a model_dir.

  Args:
    family: "munit", "unit" or "ugatit".
    files: file name -> what torch.load returned for it, tensors as numpy arrays (see load_torch_file).
    model_dir: output directory; StageError when it already holds a model.
    official_config: the parsed official YAML (MUNIT, UNIT).
    image_size: override of the model's square size.
    step: the official iteration recorded as the checkpoint's step.
    source: recorded in config.json under "imported_from".
  """
  if family not in models.FAMILY_NAMES:
    raise StageError(f"Unknown --model={family!r}; choose one of {', '.join(models.FAMILY_NAMES)}.")
  if tf.io.gfile.exists(os.path.join(model_dir, model_dir_lib.CONFIG_FILE)):
    raise StageError(f"{model_dir} already holds a model ({model_dir_lib.CONFIG_FILE}); import into a new --model_dir.")
  module = family_module(family)
  fam = models.get_family(family)
  try:
    tensors = module.official_tensors(files)
    model_config = module.config_from_official(official_config, tensors, image_size=image_size)
    model = fam.build_model(model_config)
    module.load_official(model, tensors, source=", ".join(sorted(files)))
  except OfficialImportError as e:
    raise StageError(f"Cannot import the official {family} checkpoint: {e}") from e
  tf.io.gfile.makedirs(model_dir)
  step_var = tf.Variable(step, dtype=tf.int64, trainable=False, name="step")
  manager = tf.train.CheckpointManager(model_dir_lib.model_checkpoint(model, step=step_var),
                                       os.path.join(model_dir, model_dir_lib.CHECKPOINT_DIR), max_to_keep=1)
  path = manager.save(checkpoint_number=step)
  write_json(os.path.join(model_dir, model_dir_lib.CONFIG_FILE),
             {"family": family, "preset": PRESET_NAME, "model": model_config.to_dict(),
              "train": {"steps": step}, "imported_from": dict(source or {})})
  return ImportResult(model_dir, family, step, path, model_config)


def run(config: ImportConfig) -> ImportResult:
  """Reads the official files with torch and imports them (see `import_tensors`)."""
  if not config.checkpoints:
    raise StageError("Pass the official checkpoint files with --checkpoint (repeatable).")
  files = {os.path.basename(p): load_torch_file(p) for p in config.checkpoints}
  official = read_official_config(config.official_config)
  source = {"checkpoints": [os.path.abspath(p) for p in config.checkpoints],
            "official_config": os.path.abspath(config.official_config) if config.official_config else None}
  return import_tensors(config.family, files, config.model_dir, official_config=official,
                        image_size=config.image_size, step=official_step(config.checkpoints), source=source)


def numpy_files(npz_path: str) -> dict[str, dict[str, np.ndarray]]:
  """Reads fixture-style `.npz` weights (keys `<file>::<network>::<tensor>` or `<file>::<tensor>`) into `files`."""
  files: dict[str, Any] = {}
  with np.load(npz_path) as data:
    for key in data.files:
      parts = key.split("::")
      node = files
      for part in parts[:-1]:
        node = node.setdefault(part, {})
      node[parts[-1]] = data[key]
  return files
