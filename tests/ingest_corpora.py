"""Helpers for the hostile-input ingest tests: folders made byte by byte, and readers that need no TensorFlow.

Paths are handled as bytes everywhere here (names that are not UTF-8 exist only as bytes).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct

import numpy as np
from PIL import Image

from components import image_io

PATH_MAX = os.pathconf("/", "PC_PATH_MAX")  # 4096 on Linux: a path of >= PATH_MAX bytes gives ENAMETOOLONG


def image_bytes(seed: int, width: int, height: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
  """A noise image of the given size, mode and format (distinct bytes per seed)."""
  pixels = np.random.RandomState(seed).randint(0, 256, (height, width, 3), np.uint8)
  image = Image.fromarray(pixels)
  if mode != "RGB":
    image = image.convert(mode)
  buffer = io.BytesIO()
  image.save(buffer, fmt)
  return buffer.getvalue()


def write(path: bytes, data: bytes) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def deep_chain(base: bytes, level_name: bytes, file_name: bytes, min_length: int) -> list[tuple[bytes, bytes]]:
  """Nested folders `base/level_name/level_name/...` until a folder's path is >= `min_length` bytes, with one
  distinct PNG `file_name` in each, made through directory file descriptors (the full paths may be too long
  for the kernel). Returns [(folder path, file path)] from the top."""
  out, path = [], base
  fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
  try:
    level = 0
    while len(path) < min_length:
      os.mkdir(level_name, dir_fd=fd)
      child = os.open(level_name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
      os.close(fd)
      fd, path, level = child, os.path.join(path, level_name), level + 1
      out_fd = os.open(file_name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
      with os.fdopen(out_fd, "wb") as f:
        f.write(image_bytes(1000 + level, 24, 20))
      out.append((path, os.path.join(path, file_name)))
  finally:
    os.close(fd)
  return out


def read_records(output_dir: str, domain: str) -> list[dict]:
  """Every tf.train.Example of one domain's shards (both splits), as {key: bytes | int} dicts plus "split"."""
  folder = os.path.join(output_dir, f"domain_{domain}")
  rows = []
  for name in sorted(os.listdir(folder)):
    with gzip.open(os.path.join(folder, name), "rb") as f:
      data = f.read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      example = image_io._Example.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      row = {"split": name.split("-")[0]}
      for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        row[key] = getattr(feature, kind).value[0]
      rows.append(row)
  return rows


def strict_json_loads(data: bytes):
  """Parses JSON that must be valid UTF-8 and hold no lone surrogate (json.loads alone accepts "\\udcff")."""
  def check(value):
    if isinstance(value, str):
      value.encode("utf-8")  # raises on a lone surrogate
    elif isinstance(value, dict):
      for k, v in value.items():
        check(k)
        check(v)
    elif isinstance(value, list):
      for v in value:
        check(v)
    return value
  return check(json.loads(data.decode("utf-8")))


def read_reports(output_dir: str) -> tuple[dict, list[dict]]:
  """(stats.json, rejected.jsonl rows), both checked to be strict UTF-8 JSON."""
  with open(os.path.join(output_dir, "stats.json"), "rb") as f:
    stats = strict_json_loads(f.read())
  with open(os.path.join(output_dir, "rejected.jsonl"), "rb") as f:
    rows = [strict_json_loads(line) for line in f.read().split(b"\n") if line]
  return stats, rows


def tree_bytes(root: str) -> dict:
  """{relative path: bytes} of every file under root."""
  out = {}
  for dirpath, _, names in os.walk(root):
    for name in names:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = f.read()
  return out
