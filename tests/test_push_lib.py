"""Tests of components.push_lib: blessing gate, version numbering, atomic copy under injected crashes, retention;
version labels (canary, promote, rollback) under load on a real server."""

import filecmp
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from components import push_lib
from components.errors import StageError


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
  """A real (tiny) SavedModel with variables and an asset, so the copy has several files in subdirectories."""
  path = str(tmp_path_factory.mktemp("export") / "model")
  module = tf.Module()
  module.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
  module.f = tf.function(lambda x: {"y": tf.matmul(x, module.w)},
                         input_signature=[tf.TensorSpec([None, 2], tf.float32)])
  tf.saved_model.save(module, path, signatures={"serving_default": module.f})
  os.makedirs(os.path.join(path, "assets.extra"))
  with open(os.path.join(path, "assets.extra", "model_card.json"), "w") as f:
    f.write("{}")
  return path


def _bless(tmp_path, evaluation=True, infra=True):
  """Writes the blessing files the way evaluate/infra_validate do; returns (evaluation_dir, infra_dir)."""
  eval_dir, infra_dir = tmp_path / "eval", tmp_path / "infra"
  eval_dir.mkdir(exist_ok=True)
  infra_dir.mkdir(exist_ok=True)
  (eval_dir / ("BLESSED" if evaluation else "NOT_BLESSED")).write_text("kid_a2b 0.3 > max_kid 0.1")
  (infra_dir / ("INFRA_BLESSED" if infra else "INFRA_NOT_BLESSED")).write_text("server did not start")
  return str(eval_dir), str(infra_dir)


def _config(saved_model, tmp_path, **kwargs):
  eval_dir, infra_dir = _bless(tmp_path)
  return push_lib.PushConfig(model_dir=saved_model, serving_root=str(tmp_path / "serving"), model_name="m",
                             evaluation_dir=eval_dir, infra_validation_dir=infra_dir, **kwargs)


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("evaluation,infra,missing", [(False, True, "evaluate did not bless"),
                                                      (True, False, "infra_validate did not bless"),
                                                      (False, False, "kid_a2b 0.3")])
def test_a_model_without_both_blessings_is_not_pushed(saved_model, tmp_path, evaluation, infra, missing):
  eval_dir, infra_dir = _bless(tmp_path, evaluation, infra)
  result = push_lib.run(push_lib.PushConfig(saved_model, str(tmp_path / "serving"), "m", eval_dir, infra_dir))
  assert not result.pushed and missing in result.reason
  assert not os.path.exists(tmp_path / "serving" / "m")


def test_missing_blessing_files_name_the_stage_to_run(saved_model, tmp_path):
  result = push_lib.run(push_lib.PushConfig(saved_model, str(tmp_path / "s"), "m", str(tmp_path), str(tmp_path)))
  assert not result.pushed and "run components.evaluate" in result.reason and "components.infra_validate" in \
      result.reason


def test_pushes_increasing_versions_with_identical_files_and_keeps_newest(saved_model, tmp_path):
  root = tmp_path / "serving" / "m"
  os.makedirs(root / "7")  # an existing version (e.g. pushed by hand) and non-version entries
  os.makedirs(root / "notes")
  results = [push_lib.run(_config(saved_model, tmp_path)) for _ in range(2)]
  assert [r.version for r in results] == [8, 9] and all(r.pushed for r in results)
  assert _files(results[1].path) == _files(saved_model)
  assert not filecmp.dircmp(results[1].path, saved_model).diff_files
  loaded = tf.saved_model.load(results[1].path)
  np.testing.assert_allclose(loaded.signatures["serving_default"](tf.ones([1, 2]))["y"], [[3, 5, 7]])
  third = push_lib.run(_config(saved_model, tmp_path, keep_versions=2))
  assert third.version == 10 and third.removed_versions == (7, 8)
  assert push_lib.existing_versions(str(root)) == [9, 10] and sorted(os.listdir(root)) == ["10", "9", "notes"]


def test_a_push_crashing_after_any_file_copy_or_at_the_rename_leaves_no_partial_version(saved_model, tmp_path,
                                                                                          monkeypatch):
  root = tmp_path / "serving" / "m"
  assert push_lib.run(_config(saved_model, tmp_path)).version == 1
  real_copy, real_rename = push_lib.shutil.copy2, push_lib.os.rename
  n_files = len(_files(saved_model))
  assert n_files >= 4
  for fail_after in range(n_files + 1):
    copies = []

    def copy(src, dst, copies=copies, fail_after=fail_after):
      if len(copies) == fail_after:
        raise OSError(f"injected crash after {fail_after} copied files")
      copies.append(src)
      return real_copy(src, dst)

    def rename(src, dst):
      raise OSError("injected crash at the rename")

    monkeypatch.setattr(push_lib.shutil, "copy2", copy)
    if fail_after == n_files:
      monkeypatch.setattr(push_lib.os, "rename", rename)
    with pytest.raises(OSError, match="injected crash"):
      push_lib.run(_config(saved_model, tmp_path))
    # What a server would consider: only all-digit directories, here still only the complete version 1.
    assert push_lib.existing_versions(str(root)) == [1]
    assert _files(root / "1") == _files(saved_model)
    if fail_after < n_files:  # a crash mid-copy leaves a hidden copy (a SIGKILL cannot clean up either)
      assert any(name.startswith(".push-") for name in os.listdir(root))
  monkeypatch.setattr(push_lib.shutil, "copy2", real_copy)
  monkeypatch.setattr(push_lib.os, "rename", real_rename)
  result = push_lib.run(_config(saved_model, tmp_path))
  assert result.version == 2 and _files(result.path) == _files(saved_model)
  assert sorted(os.listdir(root)) == ["1", "2"]  # hidden leftovers were removed


def test_push_killed_by_sigkill_mid_copy_leaves_no_version(saved_model, tmp_path):
  """A real process killed (SIGKILL, no cleanup) while it copies: the serving root shows no version."""
  eval_dir, infra_dir = _bless(tmp_path)
  serving = tmp_path / "serving"
  script = (
      "import os, shutil, sys\n"
      "from components import push_lib\n"
      "real = shutil.copy2\n"
      "def copy(src, dst):\n"
      "  real(src, dst)\n"
      "  if len(os.listdir(os.path.dirname(dst))) >= 1 and dst.endswith('.pb'):\n"
      "    os.kill(os.getpid(), 9)\n"
      "shutil.copy2 = copy\n"
      f"push_lib.run(push_lib.PushConfig({saved_model!r}, {str(serving)!r}, 'm', {eval_dir!r}, {infra_dir!r}))\n")
  proc = subprocess.run([sys.executable, "-c", script], cwd=os.path.dirname(os.path.dirname(__file__)),
                        capture_output=True, timeout=120, check=False)
  assert proc.returncode == -9, proc.stderr.decode()[-2000:]
  assert push_lib.existing_versions(str(serving / "m")) == []
  assert [n for n in os.listdir(serving / "m") if n.startswith(".push-")]


def test_bad_config_and_non_savedmodel_are_stage_errors(saved_model, tmp_path):
  with pytest.raises(StageError, match="keep_versions must be >= 1"):
    _config(saved_model, tmp_path, keep_versions=0)
  with pytest.raises(StageError, match="not a usable directory name"):
    push_lib.PushConfig(saved_model, str(tmp_path), "a/b", str(tmp_path), str(tmp_path))
  with pytest.raises(StageError, match="no saved_model.pb"):
    push_lib.run(_config(str(tmp_path), tmp_path))


def test_push_cli_reports_an_unblessed_model_and_exits_zero(saved_model, tmp_path):
  eval_dir, infra_dir = _bless(tmp_path, evaluation=False)
  proc = subprocess.run([sys.executable, "-m", "components.push", f"--model_dir={saved_model}",
                         f"--serving_root={tmp_path / 'serving'}", "--model_name=m", f"--evaluation_dir={eval_dir}",
                         f"--infra_validation_dir={infra_dir}"], cwd=os.path.dirname(os.path.dirname(__file__)),
                        capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0 and "push: not pushed: evaluate did not bless it" in proc.stderr
  proc = subprocess.run([sys.executable, "-m", "components.push", f"--model_dir={saved_model}",
                         f"--serving_root={tmp_path / 'serving'}", "--model_name=m", "--keep_versions=0",
                         f"--evaluation_dir={eval_dir}", f"--infra_validation_dir={infra_dir}"],
                        cwd=os.path.dirname(os.path.dirname(__file__)), capture_output=True, text=True, timeout=120,
                        check=False)
  assert proc.returncode == 1 and "push: error: --keep_versions must be >= 1" in proc.stderr


# -- version labels: canary, promote, rollback ----------------------------------------------------------------------
def _model_config(path, base, labels=None, versions=None):
  """A models.config for model "m" at `base`, with a specific policy and labels (TF Serving's text format)."""
  policy = (" model_version_policy { specific { %s } }" % " ".join(f"versions: {v}" for v in versions)
            if versions else "")
  label_text = "".join(f' version_labels {{ key: "{k}" value: {v} }}' for k, v in (labels or {}).items())
  path.write_text('model_config_list { config { name: "m" base_path: "%s" model_platform: "tensorflow"%s%s } }'
                  % (base, policy, label_text))
  return str(path)


def test_promote_and_rollback_move_stable_within_the_served_versions(tmp_path):
  path = _model_config(tmp_path / "models.config", tmp_path, {"stable": 1, "canary": 2}, [1, 2])
  config = push_lib.LabelConfig(path, "m")
  promoted = push_lib.promote(config)
  assert (promoted.labels, promoted.versions) == ({"canary": 2, "stable": 2}, (1, 2))
  assert promoted.reason == "stable moved from 1 to 2"
  # What the servers read back: the same labels, a specific policy.
  from serving import config as serving_config
  (model,) = serving_config.read_model_config_file(path)
  assert model.version_labels == (("canary", 2), ("stable", 2)) and model.version_policy == ("specific", (1, 2))
  rolled = push_lib.rollback(config)
  assert (rolled.labels, rolled.versions, rolled.reason) == ({"stable": 1}, (1, 2), "stable rolled back from 2 to 1")
  with pytest.raises(StageError,
                     match=r"no earlier version of m is served beside stable version 1 \(served: \[1, 2\]\)"):
    push_lib.rollback(config)
  with pytest.raises(StageError, match="has no 'canary' label"):
    push_lib.promote(config)
  with pytest.raises(StageError, match=r"model 'x' is not in .* \(it has \['m'\]\)"):
    push_lib.promote(push_lib.LabelConfig(path, "x"))
  with pytest.raises(StageError, match="labelling a new version needs --server"):
    push_lib.load_canary(config, 3)
  (tmp_path / "bad.config").write_text("model_config_list { config { nme: 1 } }")
  with pytest.raises(StageError, match="is not a ModelServerConfig text proto"):
    push_lib.rollback(push_lib.LabelConfig(str(tmp_path / "bad.config"), "m"))
  assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]  # atomic writes leave no temporary file


def test_label_rollout_and_rollback_under_load_fail_no_request(tmp_path):
  """8 clients pinned to `stable` while a new version is pushed, loaded as canary, promoted and rolled back."""
  from serving import client as client_lib, config as serving_config
  from serving.server_lib import ModelServer
  from tests.test_serving_models import ToyTranslator, save_toy
  serving_root = tmp_path / "serving"
  save_toy(ToyTranslator(1), str(serving_root / "m" / "1"))
  candidate = save_toy(ToyTranslator(2), str(tmp_path / "export"))
  path = _model_config(tmp_path / "models.config", serving_root / "m", {"stable": 1}, [1])
  server = ModelServer(serving_config.ServerConfig(model_config_file=path, port=0, enable_model_warmup=False,
                                                   model_config_file_poll_wait_seconds=0.1,
                                                   file_system_poll_wait_seconds=0.1)).start()
  target = f"127.0.0.1:{server.port}"
  stop, seen, errors = threading.Event(), [], []

  def pinned(seed):
    with client_lib.TranslationClient(target, "m", version_label="stable", retries=0) as client:
      images = np.full([1, 2, 2, 3], seed, np.uint8)
      while not stop.is_set():
        sent = time.monotonic()
        try:
          out = client.predict("a2b", {"images": images})
          assert np.array_equal(out["images"], 255 - images)
          seen.append((sent, time.monotonic(), int(out["version"][0])))
        except Exception as e:  # any failure is what this test looks for
          errors.append(e)

  threads = [threading.Thread(target=pinned, args=(i,)) for i in range(8)]
  t = {}
  try:
    for thread in threads:
      thread.start()
    eval_dir, infra_dir = _bless(tmp_path)
    pushed = push_lib.run(push_lib.PushConfig(candidate, str(serving_root), "m", eval_dir, infra_dir))
    assert pushed.version == 2
    labels = push_lib.LabelConfig(path, "m", server=target, timeout=60)
    canary = push_lib.load_canary(labels, 2)
    assert (canary.labels, canary.versions) == ({"canary": 2, "stable": 1}, (1, 2))
    time.sleep(0.3)
    t["promote"] = time.monotonic()
    assert push_lib.promote(labels).labels == {"canary": 2, "stable": 2}
    t["promoted"] = time.monotonic()
    time.sleep(0.3)
    t["rollback"] = time.monotonic()
    assert push_lib.rollback(labels).labels == {"stable": 1}
    t["rolled_back"] = time.monotonic()
    time.sleep(0.3)
  finally:
    stop.set()
    for thread in threads:
      thread.join()
    server.stop()
  assert not errors, errors[:3]
  # Each step returns once the server answers the label with its version: every request sent after that and
  # answered before the next step began gets it (one in flight while a step runs may get either version).
  versions = lambda start, end: {v for sent, answered, v in seen if start <= sent and answered < end}
  assert versions(0, t["promote"]) == {1}  # the push and the canary never moved stable
  assert versions(t["promoted"], t["rollback"]) == {2}
  assert versions(t["rolled_back"], float("inf")) == {1}


def test_push_cli_rollback_prints_the_move(tmp_path):
  path = _model_config(tmp_path / "models.config", tmp_path, {"stable": 5}, [4, 5])
  proc = subprocess.run([sys.executable, "-m", "components.push", "--rollback", f"--model_config_file={path}",
                         "--model_name=m"], cwd=os.path.dirname(os.path.dirname(__file__)), capture_output=True,
                        text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
  assert "push: stable rolled back from 5 to 4; labels {'stable': 4}, served versions [4, 5]" in proc.stderr


def test_keep_versions_never_removes_a_labelled_or_served_version(saved_model, tmp_path):
  root = tmp_path / "serving" / "m"
  for v in (1, 2, 3):
    os.makedirs(root / str(v))
  # After a rollback: stable = 1, version 2 still listed; keep_versions=1 would otherwise delete both.
  path = _model_config(tmp_path / "models.config", root, {"stable": 1}, [1, 2])
  result = push_lib.run(_config(saved_model, tmp_path, keep_versions=1, model_config_file=path))
  assert result.version == 4 and result.removed_versions == (3,)
  assert push_lib.existing_versions(str(root)) == [1, 2, 4]
