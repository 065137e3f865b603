"""Push: copy a doubly blessed SavedModel into a TF Serving model root as a new integer version.

Like TFX's Pusher, only a model with both blessings is pushed: `BLESSED` in the evaluation directory (written by
components.evaluate) AND `INFRA_BLESSED` in the infra-validation directory (components.infra_validate).

Layout written: `<serving_root>/<model_name>/<version>/` (saved_model.pb, variables/, assets*/, ...).
Version policy: max(existing integer versions) + 1, starting at 1. (TFX uses a timestamp; max + 1 is chosen
here because it is dense, readable, and still strictly increasing whatever the clock does; TF Serving's
"latest" policy serves the largest number.)

Atomicity: the model is first copied into a hidden sibling directory `<model_name>/.push-<version>-<pid>/`
(TF Serving and our server only consider all-digit directory names, so it is never loaded), every file is
flushed to disk, then one `os.rename` makes `<version>/` appear complete. A crash at any point leaves at most a
hidden directory, which the next push removes. If another pusher took the same version meanwhile the rename
fails and the next number is tried. `keep_versions` removes the oldest versions after a push: each is first
renamed to a hidden name (so a server never sees a half-deleted version), then deleted.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from components.errors import StageError

BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"
INFRA_BLESSED_FILE = "INFRA_BLESSED"
INFRA_NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"
HIDDEN_PREFIX = ".push-"
MAX_RENAME_ATTEMPTS = 20


@dataclasses.dataclass(frozen=True)
class PushConfig:
  """Parameters of the push stage.

  Attributes:
    model_dir: the exported SavedModel directory (components.export output).
    serving_root: the TF Serving model base directory holding `<model_name>/<version>/`.
    model_name: the served model's name.
    evaluation_dir: components.evaluate's output directory (must hold BLESSED).
    infra_validation_dir: components.infra_validate's output directory (must hold INFRA_BLESSED).
    keep_versions: if set (>= 1), only the newest this many versions are kept after a push.
  """

  model_dir: str
  serving_root: str
  model_name: str
  evaluation_dir: str
  infra_validation_dir: str
  keep_versions: int | None = None

  def __post_init__(self):
    if not self.model_name or os.sep in self.model_name or self.model_name.startswith("."):
      raise StageError(f"--model_name {self.model_name!r} is not a usable directory name; give a plain name "
                       "such as 'horse2zebra'")
    if self.keep_versions is not None and self.keep_versions < 1:
      raise StageError(f"--keep_versions must be >= 1 (or unset to keep all), got {self.keep_versions}")


@dataclasses.dataclass(frozen=True)
class PushResult:
  """What push did: `pushed` with the new `version` and its `path`, or not, and `reason` in both cases."""

  pushed: bool
  reason: str
  version: int | None = None
  path: str | None = None
  removed_versions: tuple = ()


def existing_versions(model_root: str) -> list[int]:
  """Sorted integer versions (all-digit directory names) under `<serving_root>/<model_name>`; [] if none."""
  if not os.path.isdir(model_root):
    return []
  return sorted(int(name) for name in os.listdir(model_root)
                if name.isdigit() and os.path.isdir(os.path.join(model_root, name)))


def write_blessing(directory: str, blessed: bool, reason: str, *, infra: bool = False) -> str:
  """Writes BLESSED/NOT_BLESSED (or INFRA_BLESSED/INFRA_NOT_BLESSED) holding `reason`; removes a stale opposite
  file from an earlier run so that push never sees both. Returns the written path. (Used by evaluate and
  infra_validate; push reads these files.)"""
  good, bad = (INFRA_BLESSED_FILE, INFRA_NOT_BLESSED_FILE) if infra else (BLESSED_FILE, NOT_BLESSED_FILE)
  os.makedirs(directory, exist_ok=True)
  for name in (good, bad):
    if os.path.exists(os.path.join(directory, name)):
      os.remove(os.path.join(directory, name))
  path = os.path.join(directory, good if blessed else bad)
  with open(path, "w", encoding="utf-8") as f:
    f.write(reason.rstrip() + "\n")
  return path


def _blessing_problem(config: PushConfig) -> str | None:
  """Returns why the model is not doubly blessed (quoting the NOT_BLESSED reasons), or None if it is."""
  problems = []
  for directory, good, bad, stage in ((config.evaluation_dir, BLESSED_FILE, NOT_BLESSED_FILE, "evaluate"),
                                      (config.infra_validation_dir, INFRA_BLESSED_FILE, INFRA_NOT_BLESSED_FILE,
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


def _copy_tree_durably(source: str, target: str) -> None:
  """Copies directory `source` to the new directory `target`, fsyncing every file and directory."""
  os.makedirs(target)
  for root, dirs, files in os.walk(source):
    relative = os.path.relpath(root, source)
    destination = os.path.normpath(os.path.join(target, relative))
    for name in dirs:
      os.makedirs(os.path.join(destination, name), exist_ok=True)
    for name in files:
      path = os.path.join(destination, name)
      shutil.copy2(os.path.join(root, name), path)
      with open(path, "rb") as f:
        os.fsync(f.fileno())
  for root, _, _ in os.walk(target):
    _fsync_dir(root)


def _fsync_dir(path: str) -> None:
  """Flushes a directory entry (so a rename or a new file survives a power loss)."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _remove_stale_hidden_dirs(model_root: str) -> None:
  """Deletes hidden directories left by pushes/removals that crashed (never loaded by a server)."""
  for name in os.listdir(model_root):
    if name.startswith(HIDDEN_PREFIX):
      shutil.rmtree(os.path.join(model_root, name), ignore_errors=True)


def _remove_old_versions(model_root: str, keep: int) -> tuple:
  """Removes all but the newest `keep` versions (rename to hidden, then delete); returns the removed ones."""
  versions = existing_versions(model_root)
  removed = tuple(versions[:-keep]) if len(versions) > keep else ()
  for version in removed:
    hidden = os.path.join(model_root, f"{HIDDEN_PREFIX}delete-{version}-{os.getpid()}")
    os.rename(os.path.join(model_root, str(version)), hidden)
    shutil.rmtree(hidden)
  return removed


def run(config: PushConfig) -> PushResult:
  """Pushes `config.model_dir` as a new version if it is doubly blessed.

  Returns:
    PushResult(pushed=False, reason=...) for a model without both blessings (nothing is written), else
    PushResult(pushed=True, version, path, removed_versions).
  Raises:
    StageError: the model directory is not a SavedModel, or the serving root cannot be written.
  """
  problem = _blessing_problem(config)
  if problem:
    return PushResult(pushed=False, reason=f"not pushed: {problem}")
  if not os.path.isfile(os.path.join(config.model_dir, "saved_model.pb")):
    raise StageError(f"{config.model_dir} holds no saved_model.pb; pass components.export's --output_dir as "
                     "--model_dir")
  model_root = os.path.join(config.serving_root, config.model_name)
  os.makedirs(model_root, exist_ok=True)
  _remove_stale_hidden_dirs(model_root)
  for _ in range(MAX_RENAME_ATTEMPTS):
    version = (existing_versions(model_root) or [0])[-1] + 1
    hidden = os.path.join(model_root, f"{HIDDEN_PREFIX}{version}-{os.getpid()}")
    _copy_tree_durably(config.model_dir, hidden)
    final = os.path.join(model_root, str(version))
    try:
      os.rename(hidden, final)  # atomic; fails if `final` exists and is not empty
    except OSError:
      if not os.path.isdir(final):
        shutil.rmtree(hidden, ignore_errors=True)
        raise
      shutil.rmtree(hidden, ignore_errors=True)  # another pusher won this number: take the next one
      continue
    _fsync_dir(model_root)
    removed = _remove_old_versions(model_root, config.keep_versions) if config.keep_versions else ()
    return PushResult(pushed=True, reason="pushed: BLESSED and INFRA_BLESSED", version=version, path=final,
                      removed_versions=removed)
  raise StageError(f"could not claim a new version under {model_root} after {MAX_RENAME_ATTEMPTS} attempts "
                   "(other pushers keep taking the numbers); retry")
