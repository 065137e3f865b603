"""The model importer node: an existing model_dir enters a pipeline in place of training (TFX's Importer).

A model_dir written by `components.import_official` (an official PyTorch checkpoint) or by an earlier
`components.train` run is checked here (config.json names a known family, a checkpoint exists and restores into
that family's model) and handed on unchanged, so evaluate, export, infra_validate and push treat it exactly as a
model trained in the pipeline. `python -m pipelines.local --model_dir=DIR ...` wires this node instead of train.
"""

from __future__ import annotations

import dataclasses
import os

from components import model_dir as model_dir_lib
from components.trainer import write_json

RECORD_FILE = "imported_model.json"


@dataclasses.dataclass(frozen=True)
class ImportModelConfig:
  """model_dir: the existing model directory; output_dir: this execution's directory (a record is written)."""

  model_dir: str
  output_dir: str


@dataclasses.dataclass(frozen=True)
class ImportModelResult:
  """The model_dir handed downstream, its family, the checkpoint's step and what it was imported from."""

  model_dir: str
  family: str
  step: int
  imported_from: dict


def run(config: ImportModelConfig) -> ImportModelResult:
  """Loads the model_dir once (StageError when it is not a complete model_dir) and records it."""
  saved = model_dir_lib.read_config(config.model_dir)
  family, _, _, step = model_dir_lib.load_trained_model(config.model_dir)
  result = ImportModelResult(os.path.abspath(config.model_dir), family.name, step, dict(saved.get("imported_from", {})))
  os.makedirs(config.output_dir, exist_ok=True)
  write_json(os.path.join(config.output_dir, RECORD_FILE), dataclasses.asdict(result))
  return result
