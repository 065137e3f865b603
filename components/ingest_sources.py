"""Ingest's inputs: the files of the two domain folders, listed and named (components.ingest_lib uses them).

File names. Any name the file system allows is ingested: files are listed, hashed and opened by their raw bytes,
and only a printable text form of the name ever crosses a Beam coder or reaches a report. That form
(`printable_path`, used for `image/filename`, `image/source_id` and rejected.jsonl's `path` and `source_id`) keeps
every valid, printable UTF-8 character as it is and writes each byte of a "%", of a non-printable character
(newline, tab, other control or format characters) and of anything that is not valid UTF-8 as %XX (upper-case
hex). It is lossless: `path_bytes(text)` (urllib.parse.unquote_to_bytes) returns the exact bytes, e.g.
b"caf\xe9 1%\n.jpg" (Latin-1, a "%", a newline) <-> "caf%E9 1%25%0A.jpg". Ordinary names are unchanged.
stats.json and rejected.jsonl are ASCII JSON (so valid UTF-8) whatever the names.

Listing never fails the run: a folder that cannot be listed (permissions, a path longer than PATH_MAX, removed
while listed, ...) becomes a rejected.jsonl row with reason "unlistable_folder" and the OS error, counted in
stats.json as one listed entry and one rejection of its domain (so listed_files = stored + duplicates + rejected
still holds); everything else is ingested.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse

from components import image_io
from components.errors import StageError

# models.api.DOMAINS, repeated so that this TensorFlow-free stage need not import models/ (which imports
# TensorFlow); tests/test_architecture.py checks that the copies agree.
DOMAINS = ("a", "b")
SPLITS = ("train", "test")
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "__macosx", "$recycle.bin", "icon\r"})


def printable_path(path: str | bytes) -> str:
  """A lossless, printable text form of a path (see the module docstring, "File names").

  Args:
    path: bytes as the file system gives them, or a str (os.fsencode'd first: surrogate escapes from
      Python's file system decoding become their original bytes again).
  Returns:
    The UTF-8 reading of the bytes with each byte of "%", of a non-printable character (str.isprintable) and of
    every invalid UTF-8 sequence written as %XX; `path_bytes` inverts it.
  """
  text = os.fsencode(path).decode("utf-8", "surrogateescape")  # invalid bytes -> lone surrogates (not printable)
  return "".join(ch if ch != "%" and ch.isprintable()
                 else "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape")) for ch in text)


def path_bytes(text: str) -> bytes:
  """The exact path bytes of a `printable_path` text (image/filename, rejected.jsonl's path)."""
  return urllib.parse.unquote_to_bytes(text)


def os_error(e: OSError) -> str:
  """An OSError as "<type>: <reason>" without the path (paths are reported separately, printable)."""
  return f"{type(e).__name__}: {e.strerror or e}"


@dataclasses.dataclass(frozen=True)
class SourceFile:
  """One listed input file: `root/relpath` as raw bytes (any name the file system allows); `source_id` is
  printable (`printable_path`); split is "" when decided by hash (folder mode)."""
  domain: str
  split: str
  root: bytes
  relpath: bytes
  source_id: str

  @property
  def path(self) -> bytes:
    return os.path.join(self.root, self.relpath)

  @property
  def filename(self) -> str:
    """The path relative to the domain root, printable (`image/filename`)."""
    return printable_path(self.relpath)


def _is_junk(name: str | bytes) -> bool:
  """Hidden files/folders (".*", incl. AppleDouble "._x") and OS junk (Thumbs.db, desktop.ini, __MACOSX)."""
  name = os.fsdecode(name)
  return name.startswith(".") or name.lower() in JUNK_NAMES


def list_folder(root: str | bytes, domain: str, split: str,
                id_prefix: str = "") -> tuple[list[SourceFile], int, list[dict]]:
  """Lists every non-junk file under `root` (recursive, following directory links once), sorted by raw name.

  Names are handled as bytes, so no file name can make listing (or a Beam coder) fail. A folder that cannot
  be listed is reported, not fatal.

  Returns:
    (files, number of ignored hidden/junk entries, rejected.jsonl rows of the folders that could not be listed:
    reason "unlistable_folder", the OS error in "detail").
  """
  root = os.fsencode(root)
  files, ignored, seen, unlistable = [], 0, set(), []

  def report(error: OSError) -> None:
    folder = os.fsencode(error.filename) if error.filename is not None else root
    relpath = os.path.relpath(folder, root)
    unlistable.append({
        "path": printable_path(folder), "domain": domain, "reason": "unlistable_folder",
        "message": image_io.REASONS["unlistable_folder"], "detail": os_error(error),
        "source_id": id_prefix + ("" if relpath == b"." else printable_path(relpath) + "/")})

  for dirpath, dirnames, filenames in os.walk(root, onerror=report, followlinks=True):
    real = os.path.realpath(dirpath)
    if real in seen:  # a directory link cycle
      dirnames[:] = []
      continue
    seen.add(real)
    kept = sorted(d for d in dirnames if not _is_junk(d))
    ignored += len(dirnames) - len(kept)
    dirnames[:] = kept
    for name in sorted(filenames):
      if _is_junk(name):
        ignored += 1
        continue
      relpath = os.path.relpath(os.path.join(dirpath, name), root)
      files.append(SourceFile(domain, split, root, relpath, id_prefix + printable_path(relpath)))
  return files, ignored, unlistable


def list_inputs(config) -> tuple[list[SourceFile], dict[str, int], dict[str, list[str]], list[dict]]:
  """Lists the input files of both domains (`config`: an ingest_lib.IngestConfig: domain_a/domain_b or dataset_dir).

  Returns:
    (files, ignored junk count per domain, input roots per domain (printable), rejected.jsonl rows of the
    folders that could not be listed).
  Raises:
    StageError: a given folder does not exist.
  """
  if config.dataset_dir is not None:
    if not os.path.isdir(config.dataset_dir):
      raise StageError(f"--dataset_dir={config.dataset_dir} is not a directory")
    layout = {(d, s): os.path.join(config.dataset_dir, f"{s}{d.upper()}") for d in DOMAINS for s in SPLITS}
    for d in DOMAINS:
      if not os.path.isdir(layout[(d, "train")]):
        raise StageError(f"--dataset_dir={config.dataset_dir} has no train{d.upper()}/ folder: the CycleGAN "
                         f"layout is trainA/ trainB/ (and optionally testA/ testB/); or use --domain_a/--domain_b")
    roots = {(d, s): p for (d, s), p in layout.items() if os.path.isdir(p)}
  else:
    roots = {}
    for d, folder in zip(DOMAINS, (config.domain_a, config.domain_b)):
      if not os.path.isdir(folder):
        raise StageError(f"--domain_{d}={folder} is not a directory: give the folder holding domain {d}'s images")
      roots[(d, "")] = folder
  files, ignored, root_names, unlistable = [], {d: 0 for d in DOMAINS}, {d: [] for d in DOMAINS}, []
  for (d, s), root in sorted(roots.items()):
    prefix = printable_path(os.path.basename(os.path.normpath(root))) + "/" if s else ""
    listed, n_ignored, n_unlistable = list_folder(root, d, s, prefix)
    files.extend(listed)
    ignored[d] += n_ignored
    unlistable.extend(n_unlistable)
    root_names[d].append(printable_path(root))
  return files, ignored, root_names, unlistable
