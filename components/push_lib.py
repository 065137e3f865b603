"""Push: copy a doubly blessed SavedModel into a TF Serving model root as a new integer version.

Like TFX's Pusher, only a model with both blessings is pushed: `BLESSED` in the evaluation directory (written by
components.evaluate) AND `INFRA_BLESSED` in the infra-validation directory (components.infra_validate); the
files are the contract of components.blessing.

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

from components.blessing import blessing_problem
from components.errors import StageError

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
    keep_versions: if set (>= 1), only the newest this many versions are kept after a push (never a version
      that `model_config_file` labels or lists in a `specific` policy: stable and its rollback target).
    model_config_file: the ModelServerConfig the servers read, when version labels are used (see load_canary).
  """

  model_dir: str
  serving_root: str
  model_name: str
  evaluation_dir: str
  infra_validation_dir: str
  keep_versions: int | None = None
  model_config_file: str | None = None

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


def _remove_old_versions(model_root: str, keep: int, protected=()) -> tuple:
  """Removes all but the newest `keep` versions and the `protected` ones (rename to hidden, then delete); returns
  the removed ones."""
  versions = existing_versions(model_root)
  removed = tuple(v for v in (versions[:-keep] if len(versions) > keep else ()) if v not in protected)
  for version in removed:
    hidden = os.path.join(model_root, f"{HIDDEN_PREFIX}delete-{version}-{os.getpid()}")
    os.rename(os.path.join(model_root, str(version)), hidden)
    shutil.rmtree(hidden)
  return removed


def _versions_in_use(config: PushConfig) -> set:
  """Versions the model config file labels or serves through a `specific` policy (empty without the file)."""
  if not config.model_config_file:
    return set()
  entry = _entry(read_model_config(config.model_config_file),
                 LabelConfig(config.model_config_file, config.model_name))
  return {int(v) for v in entry.version_labels.values()} | set(_served_versions(entry))


def run(config: PushConfig) -> PushResult:
  """Pushes `config.model_dir` as a new version if it is doubly blessed.

  Returns:
    PushResult(pushed=False, reason=...) for a model without both blessings (nothing is written), else
    PushResult(pushed=True, version, path, removed_versions).
  Raises:
    StageError: the model directory is not a SavedModel, or the serving root cannot be written.
  """
  problem = blessing_problem(config.evaluation_dir, config.infra_validation_dir)
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
    removed = (_remove_old_versions(model_root, config.keep_versions, _versions_in_use(config))
               if config.keep_versions else ())
    return PushResult(pushed=True, reason="pushed: BLESSED and INFRA_BLESSED", version=version, path=final,
                      removed_versions=removed)
  raise StageError(f"could not claim a new version under {model_root} after {MAX_RENAME_ATTEMPTS} attempts "
                   "(other pushers keep taking the numbers); retry")


# -- version labels: canary, promotion and rollback through the model config file --------------------------------
# TF Serving (and serving.server) route `version_label` requests by the `version_labels` of the ModelServerConfig
# they re-read every --model_config_file_poll_wait_seconds. A label may only name a version that is already
# AVAILABLE (without --allow_version_labels_for_unavailable_models the whole config is refused), so a rollout is:
#   1. serve the new version beside stable: policy `specific { versions: [stable, new] }` (stable keeps serving);
#   2. wait until the server reports the new version AVAILABLE, then label it `canary`;
#   3. promote: move `stable` to it; the previous stable stays loaded (still in `specific`), so
#   4. rollback moves `stable` back to it at once (the highest served version below the current stable).
# Each step writes the file atomically (temporary file, fsync, rename) and, given a server, waits until the server
# answers for the label with the new version, so clients pinned to `stable` never see a missing version.
STABLE = "stable"
CANARY = "canary"


@dataclasses.dataclass(frozen=True)
class LabelConfig:
  """Where the labels live and who serves them.

  Attributes:
    model_config_file: the ModelServerConfig text file the servers read (--model_config_file).
    model_name: the model entry whose labels change.
    server: gRPC "host:port" of a server reading that file; each step waits until it has applied the change
      (None: only write the file; a canary then cannot be labelled, since its load cannot be confirmed).
    timeout: seconds to wait for each step on the server.
  """

  model_config_file: str
  model_name: str
  server: str | None = None
  timeout: float = dataclasses.field(default=300.0, metadata={"flag": "label_timeout"})


@dataclasses.dataclass(frozen=True)
class LabelResult:
  """The labels and served versions after a step."""

  labels: dict
  versions: tuple
  reason: str


def read_model_config(path: str):
  """The ModelServerConfig proto of a model config file (StageError naming the problem)."""
  from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
  from tensorflow_serving.config import model_server_config_pb2  # pylint: disable=import-outside-toplevel
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except OSError as e:
    raise StageError(f"cannot read --model_config_file {path!r}: {e.strerror}") from None
  proto = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, proto)
  except text_format.ParseError as e:
    raise StageError(f"--model_config_file {path!r} is not a ModelServerConfig text proto: {e}") from None
  return proto


def write_model_config(path: str, proto) -> None:
  """Validates `proto` as the servers would, then replaces `path` atomically (a server never reads half a file)."""
  from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
  from serving import config as serving_config  # pylint: disable=import-outside-toplevel
  try:
    serving_config.model_configs_from_proto(proto)
  except ValueError as e:
    raise StageError(f"refusing to write {path}: {e}") from None
  directory = os.path.dirname(os.path.abspath(path))
  temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
  with open(temporary, "w", encoding="utf-8") as f:
    f.write("# Written by components.push (version labels); TF Serving's ModelServerConfig text format.\n")
    f.write(text_format.MessageToString(proto))
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)
  _fsync_dir(directory)


def _entry(proto, config: LabelConfig):
  for entry in proto.model_config_list.config:
    if entry.name == config.model_name:
      return entry
  names = [e.name for e in proto.model_config_list.config]
  raise StageError(f"model {config.model_name!r} is not in {config.model_config_file} (it has {names}); add a "
                   "`config { name: ... base_path: ... }` entry for it first")


def _served_versions(entry) -> list:
  policy = entry.model_version_policy
  return sorted(int(v) for v in policy.specific.versions) if policy.WhichOneof("policy_choice") == "specific" else []


def _result(entry, reason: str) -> LabelResult:
  return LabelResult(labels=dict(sorted((k, int(v)) for k, v in entry.version_labels.items())),
                     versions=tuple(_served_versions(entry)), reason=reason)


def _wait(config: LabelConfig, check, what: str) -> None:
  """Polls `check(client_factory)` until it returns True; StageError after config.timeout naming `what`."""
  import time  # pylint: disable=import-outside-toplevel
  from serving import client as serving_client  # pylint: disable=import-outside-toplevel
  deadline = time.monotonic() + config.timeout
  last = ""
  while True:
    try:
      if check(lambda **kw: serving_client.TranslationClient(config.server, config.model_name, retries=0,
                                                             timeout=10, **kw)):
        return
    except serving_client.TranslationError as e:
      last = f" (last answer: {e})"
    if time.monotonic() >= deadline:
      raise StageError(f"the server at {config.server} did not {what} within {config.timeout:.0f} s{last}; check "
                       "that it reads this --model_config_file (--model_config_file_poll_wait_seconds > 0)")
    time.sleep(0.1)


def _wait_for_label(config: LabelConfig, label: str, version: int) -> None:
  def check(make_client):
    with make_client(version_label=label) as client:
      return client.metadata()["version"] == version
  _wait(config, check, f"answer version {version} for label {label!r}")


def load_canary(config: LabelConfig, version: int) -> LabelResult:
  """Serves `version` beside `stable` and labels it `canary` once the server has it AVAILABLE.

  The first version of a model (no `stable` yet) becomes `stable` too. Needs `config.server`.
  """
  if not config.server:
    raise StageError("labelling a new version needs --server: TF Serving refuses a label on a version that is not "
                     "AVAILABLE, so push must see it loaded first")
  from serving.errors import status_code_from_number  # pylint: disable=import-outside-toplevel
  proto = read_model_config(config.model_config_file)
  entry = _entry(proto, config)
  stable = entry.version_labels.get(STABLE)
  keep = {version} | ({int(stable)} if stable is not None else set())
  versions = entry.model_version_policy.specific.versions  # selects the `specific` policy of the oneof
  del versions[:]
  versions.extend(sorted(keep))
  for label in [k for k, v in entry.version_labels.items() if int(v) not in keep]:
    del entry.version_labels[label]  # a label on a version leaving the served set would be refused
  write_model_config(config.model_config_file, proto)

  def available(make_client):
    with make_client() as client:
      for status in client.model_status():
        if status["version"] == version and status["state"] == "END" and status["error_code"]:
          raise StageError(f"version {version} of {config.model_name} failed to load on {config.server}: "
                           f"{status_code_from_number(status['error_code']).name}: {status['error_message']}; "
                           f"{STABLE} is unchanged")
        if status["version"] == version and status["state"] == "AVAILABLE":
          return True
    return False
  _wait(config, available, f"load version {version}")
  entry.version_labels[CANARY] = version
  if stable is None:
    entry.version_labels[STABLE] = version
  write_model_config(config.model_config_file, proto)
  _wait_for_label(config, CANARY, version)
  if stable is None:
    _wait_for_label(config, STABLE, version)
  return _result(entry, f"version {version} is AVAILABLE and labelled {CANARY}"
                        + (f" and {STABLE} (the first version)" if stable is None else f"; {STABLE} is {stable}"))


def _labelled(config: LabelConfig, label: str, what_to_do: str):
  """(model config proto, the model's entry, the version `label` names); StageError ending in `what_to_do` when
  the model has no such label."""
  proto = read_model_config(config.model_config_file)
  entry = _entry(proto, config)
  if label not in entry.version_labels:
    raise StageError(f"model {config.model_name} has no {label!r} label in {config.model_config_file}{what_to_do}")
  return proto, entry, int(entry.version_labels[label])


def promote(config: LabelConfig) -> LabelResult:
  """Moves `stable` to the `canary` version; the previous stable stays served, for rollback."""
  proto, entry, canary = _labelled(config, CANARY, "; push a version with --model_config_file and --server first")
  previous = entry.version_labels.get(STABLE)
  entry.version_labels[STABLE] = canary
  write_model_config(config.model_config_file, proto)
  if config.server:
    _wait_for_label(config, STABLE, canary)
  return _result(entry, f"{STABLE} moved from {previous} to {canary}")


def rollback(config: LabelConfig) -> LabelResult:
  """Moves `stable` back to the highest served version below it and drops `canary` (the rolled-back version
  stays loaded, unlabelled, until the next push replaces it)."""
  proto, entry, current = _labelled(config, STABLE, ": nothing to roll back")
  earlier = [v for v in _served_versions(entry) if v < current]
  if not earlier:
    raise StageError(f"no earlier version of {config.model_name} is served beside {STABLE} version {current} "
                     f"(served: {_served_versions(entry)}); rollback needs the previous version loaded, as a push "
                     "with labels leaves it")
  target = earlier[-1]
  entry.version_labels[STABLE] = target
  if CANARY in entry.version_labels:
    del entry.version_labels[CANARY]
  write_model_config(config.model_config_file, proto)
  if config.server:
    _wait_for_label(config, STABLE, target)
  return _result(entry, f"{STABLE} rolled back from {current} to {target}")
