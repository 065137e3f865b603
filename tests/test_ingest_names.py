"""Ingest under hostile names and unreadable inputs, as root too (CI runs as root: `chmod 000` stops nobody).

Unreadable files and folders are made in ways that hold for root: a FIFO, dangling / looping links, a link
through a file, paths of PATH_MAX bytes or more (ENAMETOOLONG), and `open` / `os.scandir` replaced in-process
(the in-memory Beam runner runs the DoFns in this process) for the permission errors a normal user would get.
"""

import errno
import os
import shutil

import pytest

from components import image_io, ingest_lib, ingest_sources
from tests import ingest_corpora as corpora

LOAD = 16


@pytest.mark.parametrize("raw, text", [
    (b"photo.jpg", "photo.jpg"),
    ("café 日本 (1).png".encode(), "café 日本 (1).png"),  # valid, printable UTF-8 is kept as it is
    (b"caf\xe9 1%\n.jpg", "caf%E9 1%25%0A.jpg"),  # Latin-1 byte, "%", newline
    (b"a\tb\x7f\r", "a%09b%7F%0D"),
    (b"\xed\xb3\xbf.png", "%ED%B3%BF.png"),  # UTF-8 of a surrogate is not valid UTF-8
    ("line\u2028sep\u200b.png".encode(), "line%E2%80%A8sep%E2%80%8B.png"),  # not printable
    (b"dir\xff/sub/x.png", "dir%FF/sub/x.png"),
    (b"%41", "%2541"),  # an escape-looking name stays itself
])
def test_printable_path_is_lossless_printable_and_keeps_ordinary_names(raw, text):
  assert ingest_sources.printable_path(raw) == text
  assert ingest_sources.printable_path(os.fsdecode(raw)) == text  # Python's surrogate-escaped str: same form
  assert ingest_sources.path_bytes(text) == raw
  assert text.isprintable() and text.encode("utf-8")


def test_listing_reports_a_folder_it_cannot_list_and_lists_the_rest(tmp_path, monkeypatch):
  root = os.fsencode(tmp_path)
  for rel in (b"a.png", b"locked\xff/b.png", b"open/c.png", b"open/locked\xff/d.png"):
    corpora.write(os.path.join(root, rel), b"x")
  real_scandir = os.scandir

  def scandir(path="."):
    if isinstance(path, (str, bytes)) and os.path.basename(os.fsencode(path)) == b"locked\xff":
      raise PermissionError(errno.EACCES, "Permission denied", path)
    return real_scandir(path)

  monkeypatch.setattr(os, "scandir", scandir)
  files, ignored, unlistable = ingest_sources.list_folder(root, "a", "", "")
  assert [f.relpath for f in files] == [b"a.png", b"open/c.png"] and ignored == 0
  assert unlistable == [
      {"path": ingest_sources.printable_path(os.path.join(root, folder)), "domain": "a", "reason": "unlistable_folder",
       "message": image_io.REASONS["unlistable_folder"], "detail": "PermissionError: Permission denied",
       "source_id": source_id}
      for folder, source_id in ((b"locked\xff", "locked%FF/"), (b"open/locked\xff", "open/locked%FF/"))]


def test_listing_an_unlistable_root_reports_it(tmp_path, monkeypatch):
  root = str(tmp_path / "photos")
  os.mkdir(root)
  monkeypatch.setattr(os, "scandir", lambda path=".": (_ for _ in ()).throw(OSError(errno.EIO, "I/O error", path)))
  files, _, unlistable = ingest_sources.list_folder(root, "b", "train", "trainB/")
  assert files == []
  assert [(r["path"], r["source_id"], r["detail"]) for r in unlistable] == [(root, "trainB/", "OSError: I/O error")]


def test_unreadable_files_and_folders_are_rejected_with_their_reason_and_the_rest_is_stored(tmp_path, monkeypatch):
  """One in-process run over every kind of unreadable input; the exact rejected.jsonl rows are asserted."""
  a, b = os.fsencode(tmp_path / "a"), os.fsencode(tmp_path / "b")
  for i, name in enumerate((b"ok.png", b"ok \xff\nname.png", b"locked.jpg", b"vanishing.png")):
    corpora.write(os.path.join(a, name), corpora.image_bytes(i, 20, 24))
  shutil.copy(os.path.join(a, b"vanishing.png"), os.path.join(a, b"vanishing copy.png"))
  corpora.write(os.path.join(b, b"z.png"), corpora.image_bytes(9, 20, 24))
  os.mkfifo(os.path.join(a, b"pipe.png"))
  os.symlink(b"nowhere.png", os.path.join(a, b"dangling.png"))
  os.symlink(b"loop.png", os.path.join(a, b"loop.png"))
  os.symlink(b"ok.png/inside.png", os.path.join(a, b"through_file.png"))  # a path component that is a file
  # Folders nested until a folder's path reaches PATH_MAX: files whose own path reaches it cannot be opened
  # (listed, then unreadable), the first folder that reaches it cannot be listed.
  chain = corpora.deep_chain(a, b"d" * 200, b"f" * 120 + b".png", corpora.PATH_MAX)
  real_open, opened = open, []

  def fake_open(path, *args, **kwargs):  # permission denied, and a file that vanishes after hashing
    name = os.path.basename(os.fsencode(path)) if isinstance(path, (str, bytes)) else b""
    opened.append(name)
    if name == b"locked.jpg":
      raise PermissionError(errno.EACCES, "Permission denied", path)
    if name == b"vanishing copy.png" and opened.count(name) > 1:
      raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
    return real_open(path, *args, **kwargs)

  monkeypatch.setattr(ingest_lib, "open", fake_open, raising=False)
  out = str(tmp_path / "out")
  result = ingest_lib.run(ingest_lib.IngestConfig(output_dir=out, domain_a=os.fsdecode(a), domain_b=os.fsdecode(b),
                                                  load_size=LOAD, test_fraction=0.0))
  stats, rows = corpora.read_reports(out)
  printable = ingest_sources.printable_path
  expected = {
      b"locked.jpg": ("unreadable", "PermissionError: Permission denied"),
      b"pipe.png": ("unreadable", "not a regular file (FIFO, socket or device)"),
      b"dangling.png": ("broken_symlink", "points to nowhere.png"),
      b"loop.png": ("broken_symlink", "points to loop.png: a loop of links (OSError: Too many levels of symbolic "
                                      "links)"),
      b"through_file.png": ("broken_symlink", "points to ok.png/inside.png"),
      b"vanishing copy.png": ("unreadable", "FileNotFoundError: No such file or directory"),
      b"vanishing.png": ("unreadable", "FileNotFoundError: No such file or directory; same content as "
                                       + printable(os.path.join(a, b"vanishing copy.png"))),
  }
  stored = {b"ok.png", b"ok \xff\nname.png"}
  for folder, file in chain:
    if len(folder) >= corpora.PATH_MAX:
      expected[os.path.relpath(folder, a)] = ("unlistable_folder", "OSError: File name too long")
      break
    if len(file) >= corpora.PATH_MAX:
      expected[os.path.relpath(file, a)] = ("unreadable", "OSError: File name too long")
    else:
      stored.add(os.path.relpath(file, a))
  assert {"unreadable", "unlistable_folder"} <= {reason for reason, _ in expected.values()}
  assert {ingest_sources.path_bytes(r["path"]): (r["reason"], r["detail"]) for r in rows} == {
      os.path.join(a, rel): value for rel, value in expected.items()}
  for row in rows:
    rel = os.path.relpath(ingest_sources.path_bytes(row["path"]), a)
    assert row["domain"] == "a" and row["message"] == image_io.REASONS[row["reason"]]
    assert row["source_id"] == printable(rel) + ("/" if row["reason"] == "unlistable_folder" else "")
  records = corpora.read_records(out, "a")
  assert sorted(ingest_sources.path_bytes(r["image/filename"].decode()) for r in records) == sorted(stored)
  assert all(r["image/source_id"] == r["image/filename"] for r in records)
  entry = stats["domains"]["a"]
  assert entry["stored"] == len(stored) and entry["rejected"] == len(expected) and entry["duplicates"] == 0
  assert entry["listed_files"] == entry["stored"] + entry["duplicates"] + entry["rejected"]
  assert entry["rejected_by_reason"]["unlistable_folder"] == 1
  assert stats["domains"]["b"]["stored"] == 1 and result.stats == stats


def test_cyclegan_layout_with_hostile_names_keeps_split_prefixes_printable(tmp_path, monkeypatch):
  """--dataset_dir: source ids are "<split folder>/<printable relpath>"; an unlistable testA/ is reported with
  source_id "testA/" and the rest ingests."""
  root = os.fsencode(tmp_path / "horse2zebra")
  corpora.write(os.path.join(root, b"trainA", b"h\xff\n.png"), corpora.image_bytes(1, 20, 20))
  corpora.write(os.path.join(root, b"trainB", b"sub%", b"z.png"), corpora.image_bytes(2, 20, 20))
  corpora.write(os.path.join(root, b"testA", b"t.png"), corpora.image_bytes(3, 20, 20))
  real_scandir = os.scandir

  def scandir(path="."):
    if isinstance(path, (str, bytes)) and os.fsencode(path).endswith(b"testA"):  # not the fds rmtree passes
      raise PermissionError(errno.EACCES, "Permission denied", path)
    return real_scandir(path)

  monkeypatch.setattr(os, "scandir", scandir)
  out = str(tmp_path / "out")
  result = ingest_lib.run(ingest_lib.IngestConfig(output_dir=out, dataset_dir=os.fsdecode(root), load_size=LOAD))
  stats, rows = corpora.read_reports(out)
  assert [(r["source_id"], r["reason"], r["detail"]) for r in rows] == [
      ("testA/", "unlistable_folder", "PermissionError: Permission denied")]
  assert [(r["image/filename"], r["image/source_id"], r["split"]) for r in corpora.read_records(out, "a")] == [
      (b"h%FF%0A.png", b"trainA/h%FF%0A.png", "train")]
  assert [(r["image/filename"], r["image/source_id"]) for r in corpora.read_records(out, "b")] == [
      (b"sub%25/z.png", b"trainB/sub%25/z.png")]
  entry = stats["domains"]["a"]
  assert (entry["listed_files"], entry["stored"], entry["rejected"]) == (2, 1, 1) and result.stats == stats
