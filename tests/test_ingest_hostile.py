"""End to end through `python -m components.ingest` on a hostile folder (issue 14's "done when").

Domain B's root itself has a non-UTF-8 name; domain A holds names that are not UTF-8, names with newlines and
tabs, "%" escapes that are not escapes, 255-byte names, a non-UTF-8 subfolder, bad files with such names, a
FIFO, a link loop, and folders nested past PATH_MAX (files there cannot be opened, the deepest folder cannot be
listed: root cannot read those either). Exit 0; every valid image stored exactly once; every bad file and the
unlistable folder in rejected.jsonl with its reason; stats.json / rejected.jsonl strict UTF-8 JSON; a second
run (two worker threads, into an output folder whose name is not UTF-8) byte-identical.
"""

import hashlib
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from components import image_io, ingest_sources
from tests import ingest_corpora as corpora

LOAD = 16
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _make_hostile(root: bytes) -> tuple[bytes, bytes, dict]:
  """Builds the two domain folders; returns (a, b, {"stored": {d: {relpath}}, "duplicates": {d: n},
  "rejected": {d: {relpath: reason}}}) with relpaths as bytes."""
  a, b = os.path.join(root, b"a"), os.path.join(root, b"b \xff\xfe domain")
  stored = {
      b"caf\xe9.png": corpora.image_bytes(1, 24, 20),  # Latin-1
      b"new\nline.jpg": corpora.image_bytes(2, 24, 20, "JPEG"),
      b"tab\there %41 100%.png": corpora.image_bytes(3, 20, 30),
      "é".encode() * 125 + b".png": corpora.image_bytes(4, 20, 24),  # 254 bytes
      b"\xff" * 251 + b".png": corpora.image_bytes(5, 24, 24, "GIF", "P"),  # 255 bytes, each escaped
      b"latin\xe9/inner\xff.png": corpora.image_bytes(6, 30, 20),
      b"\xed\xa0\x80 utf8 of a surrogate.bmp": corpora.image_bytes(7, 20, 20, "BMP"),
      b"CR\r and DEL\x7f.png": corpora.image_bytes(8, 22, 20),
  }
  for rel, data in stored.items():
    corpora.write(os.path.join(a, rel), data)
  shutil.copy(os.path.join(a, b"caf\xe9.png"), os.path.join(a, b"latin\xe9/copy\n\xe9.png"))  # a duplicate
  rejected = {b"notes\x80.png": "not_an_image", b"empty\nfile.jpg": "empty_file", b"trunc\xc3(.jpg": "truncated",
              b"loop\xff.png": "broken_symlink", b"fifo\n.png": "unreadable",
              b"latin\xe9/bad \xe9.gif": "not_an_image"}
  corpora.write(os.path.join(a, b"notes\x80.png"), b"<html>not an image</html>\n")
  corpora.write(os.path.join(a, b"empty\nfile.jpg"), b"")
  corpora.write(os.path.join(a, b"trunc\xc3(.jpg"), corpora.image_bytes(9, 64, 64, "JPEG")[:1500])
  corpora.write(os.path.join(a, b"latin\xe9/bad \xe9.gif"), b"GIF? no")
  shutil.copy(os.path.join(a, b"notes\x80.png"), os.path.join(a, b"latin\xe9/notes copy\n.png"))  # same bad bytes
  rejected[b"latin\xe9/notes copy\n.png"] = "not_an_image"  # identical bad files: each rejected, none a duplicate
  os.symlink(b"loop\xff.png", os.path.join(a, b"loop\xff.png"))
  os.mkfifo(os.path.join(a, b"fifo\n.png"))
  stored_a = set(stored)
  for folder, file in corpora.deep_chain(a, b"d\xff" * 100, b"f\n" * 60 + b".png", corpora.PATH_MAX):
    if len(folder) >= corpora.PATH_MAX:
      rejected[os.path.relpath(folder, a)] = "unlistable_folder"
      break
    if len(file) >= corpora.PATH_MAX:
      rejected[os.path.relpath(file, a)] = "unreadable"
    else:
      stored_a.add(os.path.relpath(file, a))
  assert "unlistable_folder" in rejected.values() and "unreadable" in rejected.values()
  stored_b = {b"z0.png", b"z\xff1.png", b"sub\n/z2.jpg"}
  for i, rel in enumerate(sorted(stored_b)):
    corpora.write(os.path.join(b, rel), corpora.image_bytes(50 + i, 20, 26, "JPEG" if rel.endswith(b"jpg") else "PNG"))
  corpora.write(os.path.join(b, b"bad\xfe.png"), b"\x89PNG\r\n\x1a\n garbage")
  return a, b, {"stored": {"a": stored_a, "b": stored_b}, "duplicates": {"a": 1, "b": 0},
                "rejected": {"a": rejected, "b": {b"bad\xfe.png": "truncated"}}}


def _ingest(a: bytes, b: bytes, out: str, *extra: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.run(
      [sys.executable, "-m", "components.ingest", b"--domain_a=" + a, b"--domain_b=" + b, f"--output_dir={out}",
       f"--load_size={LOAD}", "--test_fraction=0.3", "--records_per_shard=3", *extra],
      cwd=REPO, env=env, capture_output=True, timeout=300)


@pytest.mark.slow
def test_hostile_folder_ingests_with_exit_0_everything_accounted_and_reruns_byte_identical(tmp_path):
  a, b, expected = _make_hostile(os.fsencode(tmp_path / "in"))
  first, second = str(tmp_path / "out1"), os.fsdecode(os.fsencode(tmp_path) + b"/out2 \xfe\n")  # any output name
  proc = _ingest(a, b, first)
  assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
  assert b"rejected by reason:" in proc.stdout and b"unlistable_folder" in proc.stdout
  stats, rows = corpora.read_reports(first)
  roots = {"a": a, "b": b}
  for d in ("a", "b"):
    records = corpora.read_records(first, d)
    names = [ingest_sources.path_bytes(r["image/filename"].decode("utf-8")) for r in records]
    assert sorted(names) == sorted(expected["stored"][d]), d  # each valid image exactly once
    for name, record in zip(names, records):
      with open(os.path.join(roots[d], name), "rb") as f:
        assert record["image/key/sha256"].decode() == hashlib.sha256(f.read()).hexdigest()
      assert record["image/filename"].decode().isprintable() and record["image/source_id"] == record[
          "image/filename"]
      pixels = np.asarray(Image.open(io.BytesIO(record["image/encoded"])))
      assert pixels.dtype == np.uint8 and pixels.shape == (record["image/height"], record["image/width"], 3)
      assert min(pixels.shape[:2]) == LOAD
    got = {os.path.relpath(ingest_sources.path_bytes(r["path"]), roots[d]): r["reason"] for r in rows
           if r["domain"] == d}
    assert got == expected["rejected"][d], d
    entry = stats["domains"][d]
    assert entry["stored"] == len(expected["stored"][d]) and entry["duplicates"] == expected["duplicates"][d]
    assert entry["rejected"] == len(expected["rejected"][d])
    assert entry["listed_files"] == entry["stored"] + entry["duplicates"] + entry["rejected"]
    assert entry["roots"] == [ingest_sources.printable_path(roots[d])]
  assert stats["domains"]["b"]["roots"][0].endswith("/b %FF%FE domain")
  for row in rows:
    assert row["message"] == image_io.REASONS[row["reason"]] and row["path"].isprintable()
  # Two worker threads: the same bytes.
  proc = _ingest(a, b, second, "--direct_num_workers=2")
  assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
  one, two = corpora.tree_bytes(first), corpora.tree_bytes(second)
  assert sorted(one) == sorted(two)
  for name in one:
    assert one[name] == two[name], f"{name} differs between runs"
