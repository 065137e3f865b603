"""components.validate over the stats.json of a real (tiny) ingest run: each failing check, the passing case,
anomalies.json written either way, and the CLI's exit status."""

import copy
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from components import ingest_lib, validate_lib
from components.errors import StageError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
  """Domain a: 4 images 50x40 + 2 bad files; domain b: only bad files. load_size 64 (nothing is resized)."""
  root = tmp_path_factory.mktemp("validate")
  a, b = root / "a", root / "b"
  a.mkdir()
  b.mkdir()
  for i in range(4):
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(i).randint(0, 256, (40, 50, 3), np.uint8)).save(buffer, "PNG")
    (a / f"{i}.png").write_bytes(buffer.getvalue())
  (a / "bad.jpg").write_text("text")
  (a / "empty.png").write_bytes(b"")
  (b / "readme.jpg").write_text("no images here")
  (b / "zero.png").write_bytes(b"")
  result = ingest_lib.run(ingest_lib.IngestConfig(output_dir=str(root / "data"), domain_a=str(a),
                                                  domain_b=str(b), load_size=64, test_fraction=0.0))
  return str(root / "data"), result.stats


def _with_stats(tmp_path, stats: dict) -> str:
  """Writes `stats` as <tmp_path>/data/stats.json; returns that data_dir."""
  data_dir = tmp_path / "data"
  data_dir.mkdir(exist_ok=True)
  (data_dir / "stats.json").write_text(json.dumps(stats))
  return str(data_dir)


def _healthy(stats: dict) -> dict:
  """The real stats with domain b replaced by a copy of domain a (so only the thresholds decide)."""
  fixed = copy.deepcopy(stats)
  fixed["domains"]["b"] = copy.deepcopy(fixed["domains"]["a"])
  return fixed


def _checks(anomalies, severity="error") -> set:
  return {(a["domain"], a["check"]) for a in anomalies if a["severity"] == severity}


def test_ingest_survives_a_domain_with_nothing_usable_and_validate_names_it(ingested, tmp_path):
  data_dir, stats = ingested
  assert stats["domains"]["b"]["stored"] == 0 and stats["domains"]["b"]["rejected"] == 2
  config = validate_lib.ValidateConfig(data_dir=data_dir, output_dir=str(tmp_path / "v"), image_size=32,
                                       max_reject_fraction=0.5)
  with pytest.raises(StageError, match=r"domain b has no usable image: 2 files found under .*rejected\.jsonl"):
    validate_lib.run(config)
  report = json.loads((tmp_path / "v" / "anomalies.json").read_text())
  assert report["ok"] is False
  assert _checks(report["anomalies"]) == {("b", "empty_domain")}


def test_each_threshold_fails_with_a_message_that_says_what_to_fix(ingested, tmp_path):
  _, stats = ingested
  data_dir = _with_stats(tmp_path, _healthy(stats))
  cases = [
      (dict(min_images=5), "too_few_images", r"4 train images, fewer than --min_images=5"),
      (dict(image_size=48), "images_too_small",
       r"as small as 40 high / 50 wide.*--image_size=48; ingest never upscales: remove source images"),
      (dict(image_size=100), "images_too_small", r"re-run ingest with --load_size >= 100"),
      (dict(max_reject_fraction=0.2), "too_many_rejected",
       r"2 of 6 files \(33.3%\) were rejected \(1 empty_file, 1 not_an_image\).*rejected\.jsonl"),
  ]
  for overrides, check, message in cases:
    kwargs = dict(data_dir=data_dir, image_size=32, min_images=1, max_reject_fraction=0.5)
    kwargs.update(overrides)
    with pytest.raises(StageError, match=message):
      validate_lib.run(validate_lib.ValidateConfig(**kwargs))
    report = json.loads((tmp_path / "data" / "anomalies.json").read_text())
    assert not report["ok"] and _checks(report["anomalies"]) == {("a", check), ("b", check)}, overrides


def test_passing_data_writes_ok_with_warnings(ingested, tmp_path):
  _, stats = ingested
  data_dir = _with_stats(tmp_path, _healthy(stats))
  result = validate_lib.run(validate_lib.ValidateConfig(data_dir=data_dir, image_size=40, min_images=4,
                                                        max_reject_fraction=0.34))
  assert result.ok and _checks(result.anomalies) == set()
  assert _checks(result.anomalies, "warning") == {("a", "empty_test_split"), ("b", "empty_test_split")}
  report = json.loads(open(result.anomalies_path).read())
  assert report["ok"] is True and report["thresholds"]["image_size"] == 40


def test_missing_or_foreign_stats_file(tmp_path):
  with pytest.raises(StageError, match="does not exist: run `python -m components.ingest"):
    validate_lib.run(validate_lib.ValidateConfig(data_dir=str(tmp_path)))
  (tmp_path / "stats.json").write_text('{"something": "else"}')
  with pytest.raises(StageError, match="is not an ingest stats file"):
    validate_lib.run(validate_lib.ValidateConfig(data_dir=str(tmp_path)))
  with pytest.raises(StageError, match="--max_reject_fraction in"):
    validate_lib.run(validate_lib.ValidateConfig(data_dir=str(tmp_path), max_reject_fraction=2.0))


def test_cli_exit_status(ingested, tmp_path):
  data_dir, _ = ingested
  command = [sys.executable, "-m", "components.validate", f"--data_dir={data_dir}",
             f"--output_dir={tmp_path}", "--image_size=32", "--max_reject_fraction=0.5"]
  failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert failed.returncode == 1 and "domain b has no usable image" in failed.stdout
  healthy_dir = _with_stats(tmp_path, _healthy(json.load(open(os.path.join(data_dir, "stats.json")))))
  command[3] = f"--data_dir={healthy_dir}"
  passed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert passed.returncode == 0 and "data is valid" in passed.stdout, passed.stdout + passed.stderr
