"""The blessing contract: the files evaluate and infra_validate write and push reads (TFX's model blessings).

`BLESSED` or `NOT_BLESSED` in evaluate's output directory, `INFRA_BLESSED` or `INFRA_NOT_BLESSED` in
infra_validate's, each holding the reason as text. Only a model with both good files is pushed.
A contract module: stages import it, it imports no stage.
"""

from __future__ import annotations

import os

BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"
INFRA_BLESSED_FILE = "INFRA_BLESSED"
INFRA_NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"


def write_blessing(directory: str, blessed: bool, reason: str, *, infra: bool = False) -> str:
  """Writes BLESSED/NOT_BLESSED (or INFRA_BLESSED/INFRA_NOT_BLESSED) holding `reason`; removes a stale opposite
  file from an earlier run so that push never sees both. Returns the written path. (Used by evaluate and
  infra_validate; push reads these files with `blessing_problem`.)"""
  good, bad = (INFRA_BLESSED_FILE, INFRA_NOT_BLESSED_FILE) if infra else (BLESSED_FILE, NOT_BLESSED_FILE)
  os.makedirs(directory, exist_ok=True)
  for name in (good, bad):
    if os.path.exists(os.path.join(directory, name)):
      os.remove(os.path.join(directory, name))
  path = os.path.join(directory, good if blessed else bad)
  with open(path, "w", encoding="utf-8") as f:
    f.write(reason.rstrip() + "\n")
  return path


def blessing_problem(evaluation_dir: str, infra_validation_dir: str) -> str | None:
  """Why a model is not doubly blessed (quoting the NOT_BLESSED reasons), or None if both blessings are there."""
  problems = []
  for directory, good, bad, stage in ((evaluation_dir, BLESSED_FILE, NOT_BLESSED_FILE, "evaluate"),
                                      (infra_validation_dir, INFRA_BLESSED_FILE, INFRA_NOT_BLESSED_FILE,
                                       "infra_validate")):
    if os.path.isfile(os.path.join(directory, good)):
      continue
    bad_path = os.path.join(directory, bad)
    if os.path.isfile(bad_path):
      with open(bad_path, encoding="utf-8") as f:
        problems.append(f"{stage} did not bless it ({bad_path}: {f.read().strip()})")
    else:
      problems.append(f"no {good} file in {directory} (run components.{stage} first)")
  return "; ".join(problems) or None
