"""components.ingest end to end on messy folders made here with Pillow.

Few Beam pipelines, many checks each (DirectRunner start-up costs seconds):
  * `messy` folders, in-process FnApiRunner (library `run`), records_per_shard=4 -> several shards;
  * the same inputs through the CLI `python -m components.ingest ... --direct_running_mode=multi_processing
    --direct_num_workers=2` (unknown flags passed to Beam) -> must be byte-identical;
  * a CycleGAN layout (trainA/trainB/testA, no testB).
"""

import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from components import ingest_lib
from components.errors import StageError
from tests.ingest_corpora import tree_bytes

LOAD = 48
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _save(path: str, image: Image.Image, fmt: str, **kwargs) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  buffer = io.BytesIO()
  image.save(buffer, fmt, **kwargs)
  with open(path, "wb") as f:
    f.write(buffer.getvalue())


def _noise(seed: int, width: int, height: int) -> Image.Image:
  return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), np.uint8))


def _make_messy(root: str) -> dict:
  """Builds domain folders a/ and b/; returns {"stored": {domain: set(relpath)}, "rejected": {relpath: reason},
  "junk": count}."""
  a, b = os.path.join(root, "a"), os.path.join(root, "b")
  stored_a = set()
  for i in range(10):
    _save(os.path.join(a, f"photo{i:02d}.jpg"), _noise(i, 64 + 4 * i, 60), "JPEG", quality=90)
    stored_a.add(f"photo{i:02d}.jpg")
  _save(os.path.join(a, "nested", "deeper", "rgba.png"), Image.new("RGBA", (60, 50), (255, 0, 0, 0)), "PNG")
  _save(os.path.join(a, "nested", "gray16.png"), Image.fromarray(np.full((50, 70), 40000, np.uint16)), "PNG")
  _save(os.path.join(a, "cmyk.jpg"), Image.new("CMYK", (64, 64), (0, 255, 0, 0)), "JPEG")
  frames = [_noise(100, 56, 56), _noise(101, 56, 56)]
  _save(os.path.join(a, "anim.gif"), frames[0], "GIF", save_all=True, append_images=frames[1:])
  exif = Image.Exif()
  exif[0x0112] = 8
  _save(os.path.join(a, "rotated.jpg"), _noise(7, 80, 50), "JPEG", exif=exif.tobytes())
  _save(os.path.join(a, "really_a_jpeg.png"), _noise(8, 64, 64), "JPEG")  # content decides, not the name
  _save(os.path.join(a, "no_extension"), _noise(9, 64, 64), "PNG")
  _save(os.path.join(a, "small.png"), _noise(10, 30, 20), "PNG")  # below load_size: kept, not upscaled
  stored_a |= {"nested/deeper/rgba.png", "nested/gray16.png", "cmyk.jpg", "anim.gif", "rotated.jpg",
               "really_a_jpeg.png", "no_extension", "small.png"}
  shutil.copy(os.path.join(a, "photo03.jpg"), os.path.join(a, "nested", "copy_of_photo03.jpg"))
  stored_a ^= {"photo03.jpg", "nested/copy_of_photo03.jpg"}  # identical files: the smallest source_id is kept
  # Bad inputs: each must be in rejected.jsonl with this reason.
  rejected = {"empty.jpg": "empty_file", "notes.jpg": "not_an_image", "truncated.jpg": "truncated",
              "broken_link.jpg": "broken_symlink", "bomb.png": "too_many_pixels", "pipe.png": "unreadable"}
  open(os.path.join(a, "empty.jpg"), "wb").close()
  with open(os.path.join(a, "notes.jpg"), "w") as f:
    f.write("not an image\n")
  # Identical bad files are each rejected, none hidden as a "duplicate".
  rejected.update({"nested/empty_too.png": "empty_file", "nested/notes_copy.jpg": "not_an_image"})
  shutil.copy(os.path.join(a, "empty.jpg"), os.path.join(a, "nested", "empty_too.png"))
  shutil.copy(os.path.join(a, "notes.jpg"), os.path.join(a, "nested", "notes_copy.jpg"))
  with open(os.path.join(a, "photo05.jpg"), "rb") as f:
    data = f.read()
  with open(os.path.join(a, "truncated.jpg"), "wb") as f:
    f.write(data[:len(data) // 2])
  os.symlink(os.path.join(a, "does_not_exist.jpg"), os.path.join(a, "broken_link.jpg"))
  bomb = bytearray(open(os.path.join(a, "small.png"), "rb").read())
  bomb[16:24] = (40_000).to_bytes(4, "big") * 2  # header says 40000 x 40000; CRC left wrong on purpose
  with open(os.path.join(a, "bomb.png"), "wb") as f:
    f.write(bytes(_fix_ihdr_crc(bomb)))
  os.mkfifo(os.path.join(a, "pipe.png"))  # reading it would block forever
  if os.geteuid() != 0:  # root reads anything: the permission case only exists for other users
    _save(os.path.join(a, "locked.jpg"), _noise(11, 64, 64), "JPEG")
    os.chmod(os.path.join(a, "locked.jpg"), 0)
    rejected["locked.jpg"] = "unreadable"
  # Hidden files and OS junk: ignored (valid images among them, so ignoring is what keeps them out).
  for junk in (".hidden.jpg", ".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX/photo00.jpg",
               ".git/photo.jpg", "nested/._rgba.png"):
    _save(os.path.join(a, junk), _noise(12, 64, 64), "JPEG")
  stored_b = set()
  for i in range(7):
    _save(os.path.join(b, f"z{i}.png"), _noise(50 + i, 60, 64 + i), "PNG")
    stored_b.add(f"z{i}.png")
  _save(os.path.join(b, "same_name_as_a.jpg"), Image.open(os.path.join(a, "photo03.jpg")), "JPEG")
  shutil.copy(os.path.join(a, "photo04.jpg"), os.path.join(b, "photo04.jpg"))  # dedup is per domain
  stored_b |= {"same_name_as_a.jpg", "photo04.jpg"}
  return {"stored": {"a": stored_a, "b": stored_b}, "rejected": rejected,
          "junk": 7}  # 5 files + the __MACOSX/ and .git/ folders


def _fix_ihdr_crc(png: bytearray) -> bytearray:
  png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
  return png


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
  """The messy inputs ingested once in-process (default FnApiRunner, in memory)."""
  root = str(tmp_path_factory.mktemp("messy"))
  expected = _make_messy(os.path.join(root, "in"))
  config = ingest_lib.IngestConfig(output_dir=os.path.join(root, "out"), domain_a=os.path.join(root, "in", "a"),
                                   domain_b=os.path.join(root, "in", "b"), load_size=LOAD, test_fraction=0.3,
                                   records_per_shard=4)
  result = ingest_lib.run(config)
  return root, expected, config, result


def test_stats_count_everything_and_nothing_is_silently_dropped(messy):
  _, expected, _, result = messy
  stats = result.stats
  a, b = stats["domains"]["a"], stats["domains"]["b"]
  for d, entry in (("a", a), ("b", b)):
    assert entry["listed_files"] == entry["stored"] + entry["duplicates"] + entry["rejected"]
    assert entry["stored"] == len(expected["stored"][d])
    assert entry["stored"] == sum(entry["splits"][s]["count"] for s in ("train", "test"))
  assert a["duplicates"] == 1 and b["duplicates"] == 0
  assert a["ignored_junk"] == expected["junk"]
  reasons = {}
  for reason in expected["rejected"].values():
    reasons[reason] = reasons.get(reason, 0) + 1
  assert a["rejected_by_reason"] == reasons and stats["rejected_by_reason"] == reasons
  assert b["rejected"] == 0
  total = a["total"]
  assert total["source_formats"] == {"GIF": 1, "JPEG": 13, "PNG": 4}  # really_a_jpeg.png counts as JPEG
  assert total["animated"] == 1 and total["exif_rotated"] == 1
  assert {"CMYK", "I;16", "RGBA", "P"} <= set(total["source_modes"])
  assert total["min_height"] == 20 and total["min_width"] == 30  # small.png kept as it was
  assert stats["config"]["upscale"] is False and "0..255" in stats["pixel_scale"]
  assert os.path.basename(result.stats_path) == "stats.json"
  with open(result.stats_path) as f:
    assert json.load(f) == stats


def test_rejected_jsonl_names_every_bad_file_with_a_readable_reason(messy):
  root, expected, _, result = messy
  with open(result.rejected_path) as f:
    rows = [json.loads(line) for line in f]
  got = {os.path.relpath(r["path"], os.path.join(root, "in", "a")): r["reason"] for r in rows}
  assert got == expected["rejected"]
  for row in rows:
    assert row["domain"] == "a" and len(row["message"]) > 20 and row["message"] == \
        ingest_lib.image_io.REASONS[row["reason"]]
  pair = {os.path.basename(r["path"]): r["detail"] for r in rows if "notes" in r["path"]}
  kept = os.path.join(root, "in", "a", "nested", "notes_copy.jpg")  # smallest source_id
  assert pair == {"notes_copy.jpg": "", "notes.jpg": f"same content as {kept}"}
  bomb = next(r for r in rows if r["reason"] == "too_many_pixels")
  assert "1600000000" in bomb["detail"]


def test_records_read_back_through_the_training_reader(messy):
  import tensorflow as tf
  from components import data

  root, expected, config, result = messy
  seen = {"a": set(), "b": set()}
  stored_pixels = []
  for d in ("a", "b"):
    for split in ("train", "test"):
      names = sorted(os.listdir(os.path.join(config.output_dir, f"domain_{d}")))
      n = result.stats["domains"][d]["splits"][split]["num_shards"]
      assert [x for x in names if x.startswith(split)] == [f"{split}-{i:05d}-of-{n:05d}.tfrecord.gz"
                                                          for i in range(n)]
      records = list(data.read_examples(config.output_dir, d, split))
      assert len(records) == result.stats["domains"][d]["splits"][split]["count"]
      for r in records:
        filename = r["image/filename"].decode()
        seen[d].add(filename)
        assert r["image/domain"] == d.encode() and r["image/format"] == b"png"
        assert r["image/source_id"].decode() == filename and r["image/channels"] == 3
        with open(os.path.join(root, "in", d, filename), "rb") as f:
          sha = hashlib.sha256(f.read()).hexdigest()
        assert r["image/key/sha256"].decode() == sha
        assert (ingest_lib.hash_fraction(sha) < config.test_fraction) == (split == "test")
        pixels = np.asarray(Image.open(io.BytesIO(r["image/encoded"])))
        assert pixels.shape == (r["image/height"], r["image/width"], 3) and pixels.dtype == np.uint8
        if filename != "small.png":
          assert min(pixels.shape[:2]) == LOAD
        if d == "a" and split == "train":
          stored_pixels.append(pixels.reshape(-1, 3).astype(np.float64))
  assert seen == expected["stored"]
  assert result.stats["domains"]["a"]["splits"]["train"]["num_shards"] > 1
  everything = np.concatenate(stored_pixels)
  split_stats = result.stats["domains"]["a"]["splits"]["train"]
  np.testing.assert_allclose(split_stats["mean_rgb"], everything.mean(0), atol=1e-3)
  np.testing.assert_allclose(split_stats["std_rgb"], everything.std(0), atol=1e-3)
  shapes = {r["image/filename"]: (r["image/height"], r["image/width"])
            for s in ("train", "test") for r in data.read_examples(config.output_dir, "a", s)}
  assert shapes[b"rotated.jpg"] == (77, LOAD)  # 80x50 source, EXIF orientation 8 -> portrait
  assert shapes[b"small.png"] == (20, 30)
  # The training reader over the same shards.
  train = data.make_dataset(config.output_dir, "a", "train", image_size=16, batch_size=3, training=True, seed=7)
  batches = [b.numpy() for b in train.take(4)]
  again = [b.numpy() for b in data.make_dataset(config.output_dir, "a", "train", image_size=16, batch_size=3,
                                                training=True, seed=7).take(4)]
  for x, y in zip(batches, again):
    assert x.shape == (3, 16, 16, 3) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_array_equal(x, y)
  test_count = result.stats["domains"]["b"]["splits"]["test"]["count"]
  evals = list(data.make_dataset(config.output_dir, "b", "test", 16, 2, training=False))
  assert sum(int(tf.shape(e)[0]) for e in evals) == test_count


@pytest.mark.slow
def test_cli_multiprocessing_two_workers_is_byte_identical(messy, tmp_path):
  """`python -m components.ingest` with Beam flags passed through, 2 worker processes: same bytes."""
  root, _, config, _ = messy
  out = str(tmp_path / "out")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run(
      [sys.executable, "-m", "components.ingest", f"--domain_a={config.domain_a}",
       f"--domain_b={config.domain_b}", f"--output_dir={out}", f"--load_size={LOAD}", "--test_fraction=0.3",
       "--records_per_shard=4", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "rejected by reason" in proc.stdout and "images/s" in proc.stdout
  assert proc.stderr.count("INFO:__main__:Python sdk harness starting.") == 2  # two worker processes ran
  first, second = tree_bytes(config.output_dir), tree_bytes(out)
  assert sorted(first) == sorted(second)
  for name in first:
    assert first[name] == second[name], f"{name} differs between runs"


def test_two_worker_threads_are_the_default_for_workers_and_byte_identical(messy, tmp_path):
  """`--direct_num_workers=2` alone runs DirectRunner's multi_threading mode (not Beam's single-threaded
  in_memory) and writes the same bytes; an explicit --direct_running_mode is kept."""
  from apache_beam.options.pipeline_options import DirectOptions

  mode = lambda *a: ingest_lib.pipeline_options(a).view_as(DirectOptions).direct_running_mode
  assert mode() == "in_memory" and mode("--direct_num_workers=1") == "in_memory"
  assert mode("--direct_num_workers=2") == "multi_threading"
  assert mode("--direct_num_workers=2", "--direct_running_mode=multi_processing") == "multi_processing"
  _, _, config, _ = messy
  out = str(tmp_path / "out")
  ingest_lib.run(dataclasses.replace(config, output_dir=out, beam_args=("--direct_num_workers=2",)))
  first, second = tree_bytes(config.output_dir), tree_bytes(out)
  assert sorted(first) == sorted(second)
  for name in first:
    assert first[name] == second[name], f"{name} differs between runs"


def test_cyclegan_layout_keeps_the_split_and_prefers_the_test_copy(tmp_path):
  from components import data

  root = tmp_path / "horse2zebra"
  for seed, (folder, n) in enumerate((("trainA", 5), ("trainB", 4), ("testA", 2))):
    for i in range(n):
      _save(str(root / folder / f"{folder}_{i}.jpg"), _noise(100 * seed + i, 64, 56), "JPEG")
  shutil.copy(root / "testA" / "testA_0.jpg", root / "trainA" / "leak.jpg")  # same file in train and test
  (root / "trainB" / "Thumbs.db").write_bytes(b"junk")
  out = str(tmp_path / "out")
  result = ingest_lib.run(ingest_lib.IngestConfig(output_dir=out, dataset_dir=str(root), load_size=LOAD,
                                                  test_fraction=0.9))  # ignored: the layout gives the split
  splits = {d: {s: result.stats["domains"][d]["splits"][s]["count"] for s in ("train", "test")} for d in "ab"}
  assert splits == {"a": {"train": 5, "test": 2}, "b": {"train": 4, "test": 0}}
  assert result.stats["domains"]["a"]["duplicates"] == 1 and result.stats["domains"]["b"]["ignored_junk"] == 1
  assert result.stats["config"]["split_by"] == "cyclegan_layout"
  test_a = list(data.read_examples(out, "a", "test"))
  assert sorted(r["image/filename"] for r in test_a) == [b"testA_0.jpg", b"testA_1.jpg"]
  assert sorted(r["image/source_id"] for r in test_a) == [b"testA/testA_0.jpg", b"testA/testA_1.jpg"]
  assert b"leak.jpg" not in {r["image/filename"] for r in data.read_examples(out, "a", "train")}
  assert list(data.read_examples(out, "b", "test")) == []  # no testB/: an empty shard, readable
  assert os.listdir(os.path.join(out, "domain_b")).count("test-00000-of-00001.tfrecord.gz") == 1


def test_bad_configuration_raises_stage_error_saying_what_to_do(tmp_path):
  folder = str(tmp_path)
  cases = [
      (dict(domain_a=folder), "both --domain_a and --domain_b"),
      (dict(domain_a=folder, domain_b=folder, dataset_dir=folder), "not both"),
      (dict(domain_a=folder, domain_b=str(tmp_path / "missing")), "--domain_b=.*is not a directory"),
      (dict(dataset_dir=folder), "has no trainA/"),
      (dict(domain_a=folder, domain_b=folder, test_fraction=1.0), "--test_fraction must be in"),
      (dict(domain_a=folder, domain_b=folder, load_size=0), "--load_size must be >= 1"),
      (dict(domain_a=folder, domain_b=folder, beam_args=("--direct_num_workers=2", "--domian_a=x")),
       "unknown option.* --domian_a: neither an ingest flag nor a Beam pipeline option"),
  ]
  for kwargs, message in cases:
    with pytest.raises(StageError, match=message):
      ingest_lib.run(ingest_lib.IngestConfig(output_dir=str(tmp_path / "out"), **kwargs))

