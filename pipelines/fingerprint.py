"""Fingerprints of artifacts and stage executions, the keys of the pipeline cache.

Two kinds of artifact are fingerprinted differently, on purpose:

* Source folders the user hands in (the two image folders, a CycleGAN dataset dir) can hold many gigabytes,
  so `source_fingerprint` hashes only each file's relative path, size and modification time (nanoseconds).
  Touching or replacing a file invalidates the cache; an unchanged folder is fingerprinted in milliseconds.
* Artifacts the pipeline itself writes (TFRecords, model dirs, SavedModels, reports) are hashed once, right
  after the execution that produced them succeeded, by `content_fingerprint`: relative paths, sizes and the
  SHA-256 of every file's bytes. The digest is stored in the lineage store and reused, never recomputed, so
  the price is paid once per produced artifact.

An execution's fingerprint (`execution_fingerprint`) is the SHA-256 of the stage name, the source code of the
stage's library module, its parameters (canonical JSON) and the fingerprints of everything it consumes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from typing import Any, Callable, Mapping

_CHUNK = 1 << 20


def _walk_files(root: str) -> list[str]:
  """Returns the relative paths of all regular files under `root`, sorted (symlinks followed)."""
  rel_paths = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames.sort()
    for name in filenames:
      rel_paths.append(os.path.relpath(os.path.join(dirpath, name), root))
  return sorted(rel_paths)


def _file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _path_fingerprint(path: str, describe_file: Callable[[str], str], kind: str) -> str:
  if not os.path.exists(path):
    raise FileNotFoundError(f"cannot fingerprint {path!r}: it does not exist")
  digest = hashlib.sha256(kind.encode())
  if os.path.isdir(path):
    for rel in _walk_files(path):
      digest.update(f"{rel}\0{describe_file(os.path.join(path, rel))}\n".encode())
  else:
    digest.update(f"{os.path.basename(path)}\0{describe_file(path)}\n".encode())
  return digest.hexdigest()


def source_fingerprint(path: str) -> str:
  """Cheap fingerprint of a user folder or file: relative path + size + mtime_ns of every file (hex str)."""
  def describe(p):
    """size:mtime_ns of one file."""
    st = os.stat(p)
    return f"{st.st_size}:{st.st_mtime_ns}"
  return _path_fingerprint(path, describe, "source")


def content_fingerprint(path: str) -> str:
  """Content fingerprint of a produced artifact: relative path + size + SHA-256 of every file (hex str)."""
  return _path_fingerprint(path, lambda p: f"{os.path.getsize(p)}:{_file_sha256(p)}", "content")


def canonical_json(value: Any) -> str:
  """JSON with sorted keys and no whitespace: equal values give equal strings."""
  return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def code_fingerprint(module: str) -> str:
  """SHA-256 of the source file of the stage's library module (found without importing it), or of its name."""
  try:
    spec = importlib.util.find_spec(module)
  except (ImportError, ValueError):
    spec = None
  if spec is not None and spec.origin and os.path.isfile(spec.origin):
    return _file_sha256(spec.origin)
  return hashlib.sha256(module.encode()).hexdigest()


def execution_fingerprint(stage: str, code: str, parameters: Mapping[str, Any],
                          input_fingerprints: Mapping[str, str]) -> str:
  """The cache key of one stage execution (hex str)."""
  return hashlib.sha256(canonical_json({
      "stage": stage, "code": code, "parameters": parameters, "inputs": input_fingerprints,
  }).encode()).hexdigest()
