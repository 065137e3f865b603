"""Which versions of which models are loaded: file-system polling, version policies, labels, status.

Mirrors TF Serving's ServerCore + AspiredVersionsManager for the file-system source:
  * each model's base_path holds integer-named version directories (other names are ignored);
  * the version policy picks the aspired versions (latest n, all, or specific);
  * aspired versions are loaded (and warmed up) before they become visible; versions no longer aspired are
    unloaded only after that, so a request never finds no version while a new one rolls in;
  * a base path that disappears changes nothing (the poll fails, as in TF Serving); one that holds no version
    any more unloads every version (TF Serving's default: servable_versions_always_present is false);
  * a version that fails to load is reported in status (state END, its error) and is retried only when its
    directory changes; the versions already available keep serving;
  * version labels map to available versions.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

import grpc

from serving.errors import ServingError, from_exception
from serving.servable import Servable

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclasses.dataclass(frozen=True)
class VersionStatus:
  """One version's state as GetModelStatus reports it (error_code 0 = OK)."""

  version: int
  state: str
  error_code: int = 0
  error_message: str = ""


def list_versions(base_path: str) -> dict:
  """Integer version -> directory under base_path (non-integer names ignored); {} if base_path is missing."""
  try:
    names = os.listdir(base_path)
  except OSError:
    return {}
  out = {}
  for name in names:
    if name.isdigit() and os.path.isdir(os.path.join(base_path, name)):
      out[int(name)] = os.path.join(base_path, name)
  return out


def directory_fingerprint(path: str) -> tuple:
  """(relative path, size, mtime) of every file under `path`: changes when a version is rewritten."""
  entries = []
  for root, _, files in os.walk(path):
    for f in files:
      full = os.path.join(root, f)
      try:
        st = os.stat(full)
      except OSError:
        continue
      entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
  return tuple(sorted(entries))


def aspired_versions(policy: tuple, available_on_disk) -> set:
  """The versions a policy wants among those on disk: ("latest", n) | ("all",) | ("specific", versions)."""
  on_disk = sorted(available_on_disk)
  if policy[0] == "all":
    return set(on_disk)
  if policy[0] == "specific":
    return set(policy[1]) & set(on_disk)
  return set(on_disk[-int(policy[1]):]) if on_disk else set()


class _ModelState:
  """Mutable per-model bookkeeping (guarded by ModelManager._lock)."""

  def __init__(self, config):
    self.config = config
    self.servables = {}  # version -> Servable (AVAILABLE)
    self.status = {}  # version -> VersionStatus (every version ever seen)
    self.failed = {}  # version -> fingerprint of the directory that failed
    self.labels = {}  # label -> version
    self.warned_empty = False  # "no versions found" is logged once, not at every poll


class ModelManager:
  """Holds the served models; `resolve` gives the Servable a request's ModelSpec names.

  Args:
    load_servable: (name, version, path) -> Servable; raises on failure (ServingError keeps its code).
    warmup_iterations: warmup replays per record at load (0 = no warmup).
  """

  def __init__(self, load_servable=None, warmup_iterations: int = 1, metrics=None):
    self._load_servable = load_servable or (lambda name, version, path: Servable(name, version, path))
    self._warmup_iterations = warmup_iterations
    self._metrics = metrics  # serving.metrics.ServerMetrics or None
    self._lock = threading.RLock()
    self._poll_lock = threading.Lock()  # one reconciliation at a time (poller thread vs. config reload)
    self._models = {}

  # -- configuration ----------------------------------------------------------------------------------------
  def set_models(self, configs: tuple) -> None:
    """Replaces the served model list, loads what the new policies want, then applies version labels.

    Models that left the list are unloaded. Raises ServingError(FAILED_PRECONDITION) if a label names a
    version that is not available (the labels are then left unchanged; the models are still loaded).
    """
    with self._poll_lock:
      with self._lock:
        new_names = {c.name for c in configs}
        removed = [s for n, s in self._models.items() if n not in new_names]
        for config in configs:
          state = self._models.get(config.name)
          if state is None:
            self._models[config.name] = _ModelState(config)
          else:
            state.config = config
        for state in removed:
          del self._models[state.config.name]
      for state in removed:
        for version in list(state.servables):
          self._unload(state, version)
      self._reconcile_all()
      self._apply_labels(configs)

  def _apply_labels(self, configs) -> None:
    with self._lock:
      new_labels = {}
      for config in configs:
        state = self._models[config.name]
        labels = {}
        for label, version in config.version_labels:
          if version not in state.servables:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Request to assign label to version {version} of model {config.name}, which is "
                               "not currently available for inference")
          labels[label] = version
        new_labels[config.name] = labels
      for name, labels in new_labels.items():
        self._models[name].labels = labels

  # -- polling ------------------------------------------------------------------------------------------------
  def poll(self) -> None:
    """One file-system scan of every model: load newly aspired versions, then unload unaspired ones."""
    with self._poll_lock:
      self._reconcile_all()

  def _reconcile_all(self) -> None:
    with self._lock:
      states = list(self._models.values())
    for state in states:
      self._reconcile(state)

  def _reconcile(self, state: _ModelState) -> None:
    config = state.config
    if not os.path.isdir(config.base_path):
      # As TF Serving's file-system source: a missing (or transiently unavailable) base path fails the poll,
      # so nothing changes: the loaded versions keep serving from memory until the folder is back.
      if state.servables and not state.warned_empty:
        logging.warning("Could not find base path %s for servable %s; keeping the loaded versions",
                        config.base_path, config.name)
      state.warned_empty = True
      return
    on_disk = list_versions(config.base_path)
    aspired = aspired_versions(config.version_policy, on_disk)
    if not on_disk and not state.warned_empty:
      logging.warning("No versions of servable %s found under base path %s", config.name, config.base_path)
    state.warned_empty = not on_disk
    for version in sorted(aspired, reverse=True):
      if version in state.servables:
        continue
      path = on_disk[version]
      fingerprint = directory_fingerprint(path)
      if state.failed.get(version) == fingerprint:
        continue
      self._load(state, version, path, fingerprint)
    with self._lock:
      aspired_available = [v for v in state.servables if v in aspired]
    for version in list(state.servables):
      # Keep an unaspired version while an aspired one is not available (e.g. the new version failed to
      # load); with nothing aspired at all (the base path holds no version any more) unload it, as TF
      # Serving's availability-preserving policy does.
      if version not in aspired and (aspired_available or not aspired):
        self._unload(state, version)

  def _load(self, state: _ModelState, version: int, path: str, fingerprint: tuple) -> None:
    name = state.config.name
    with self._lock:
      state.status[version] = VersionStatus(version, LOADING)
    logging.info("Loading servable version {name: %s version: %d} from %s", name, version, path)
    servable = None
    start = time.monotonic()
    try:
      servable = self._load_servable(name, version, path)
      if self._metrics is not None:
        self._metrics.record_load(path, True, time.monotonic() - start)
      if self._warmup_iterations > 0:
        start = time.monotonic()
        servable.warmup(self._warmup_iterations)
        if self._metrics is not None:
          self._metrics.record_warmup(path, "OK", time.monotonic() - start)
    except Exception as e:  # a failed load is a status, never a crash
      error = from_exception(e)
      if self._metrics is not None:
        if servable is None:
          self._metrics.record_load(path, False, time.monotonic() - start)
        else:
          self._metrics.record_warmup(path, f"{error.code.name}: {error.message}", time.monotonic() - start)
      if servable is not None:
        servable.close()
      logging.error("Loading servable version {name: %s version: %d} failed: %s", name, version, error.message)
      with self._lock:
        state.failed[version] = fingerprint
        state.status[version] = VersionStatus(version, END, error.code_number, error.message)
      return
    with self._lock:
      state.failed.pop(version, None)
      state.servables[version] = servable
      state.status[version] = VersionStatus(version, AVAILABLE)
    logging.info("Successfully loaded servable version {name: %s version: %d}", name, version)

  def _unload(self, state: _ModelState, version: int) -> None:
    with self._lock:
      servable = state.servables.pop(version, None)
      if servable is None:
        return
      state.status[version] = VersionStatus(version, UNLOADING)
    # Requests already holding `servable` finish on it; new ones no longer find it.
    servable.close()
    with self._lock:
      state.status[version] = VersionStatus(version, END)
    logging.info("Unloaded servable version {name: %s version: %d}", state.config.name, version)

  def close(self) -> None:
    """Unloads everything."""
    with self._lock:
      states = list(self._models.values())
    for state in states:
      for version in list(state.servables):
        self._unload(state, version)

  # -- lookups ------------------------------------------------------------------------------------------------
  def resolve(self, model_spec) -> Servable:
    """The Servable for a ModelSpec (name + version | version_label | latest), with TF Serving's errors."""
    name = model_spec.name
    choice = model_spec.WhichOneof("version_choice")
    with self._lock:
      state = self._models.get(name)
      if choice == "version_label":
        label = model_spec.version_label
        version = state.labels.get(label) if state is not None else None
        if version is None:
          raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
        choice_text = f"Specific({name}, {version})"
      elif choice == "version":
        version = int(model_spec.version.value)
        choice_text = f"Specific({name}, {version})"
      else:
        version = max(state.servables) if state is not None and state.servables else None
        choice_text = f"Latest({name})"
      servable = state.servables.get(version) if state is not None and version is not None else None
    if servable is None:
      raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {choice_text}")
    return servable

  def status(self, name: str, version: int | None = None) -> list:
    """VersionStatus list (highest version first), or NOT_FOUND with TF Serving's messages."""
    with self._lock:
      state = self._models.get(name)
      statuses = dict(state.status) if state is not None else {}
    if version is not None:
      if version not in statuses:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
      return [statuses[version]]
    if not statuses:
      raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
    return [statuses[v] for v in sorted(statuses, reverse=True)]

  def model_names(self) -> list:
    """Names of the configured models."""
    with self._lock:
      return sorted(self._models)

  def statuses(self) -> dict:
    """name -> [VersionStatus] of every configured model (highest version first)."""
    with self._lock:
      return {n: [s.status[v] for v in sorted(s.status, reverse=True)] for n, s in self._models.items()}

  def available(self) -> dict:
    """name -> sorted list of available versions."""
    with self._lock:
      return {n: sorted(s.servables) for n, s in self._models.items()}
