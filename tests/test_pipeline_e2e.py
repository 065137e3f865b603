"""End to end: `python -m pipelines.local` on a few tiny images, killed during training, resumed, served.

One pipeline root goes through, in order (module fixture `runs`):
  1. a run that is SIGKILLed once the train stage has written a checkpoint;
  2. the same command again: ingest and validate are cache hits, training resumes in the killed execution's
     directory from its checkpoint, the rest completes and version 1 is pushed;
  3. the same command a third time: every stage is a cache hit and no new version is pushed.
The tests then check the lineage of those runs and ask the pushed model for a translation over gRPC.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipelines import demo_data
from pipelines import lineage_lib

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "munit"
STEPS = 12
IMAGE_SIZE = 32


def _command(data_dir, root, serving_root):
  return [sys.executable, "-m", "pipelines.local", f"--dataset_dir={data_dir}", f"--pipeline_root={root}",
          f"--serving_root={serving_root}", f"--model={MODEL}", "--preset=tiny", f"--image_size={IMAGE_SIZE}",
          f"--steps={STEPS}", "--checkpoint_every_steps=2", "--summary_every_steps=2", "--sample_every_steps=0",
          "--batch_size=2", "--model_name=digits", "--eval_images=2",
          "--set=export.verify=false",  # export's own tests verify the SavedModel; this saves a TF process here
          "--direct_num_workers=1"]  # an unknown flag: handed to Beam


def _env():
  return dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def _start(command, log):
  # A session of its own, so that the whole tree (with any model server it started) can be killed at once.
  return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT,
                          start_new_session=True)


def _kill_tree(process):
  if process.poll() is None:
    os.killpg(process.pid, signal.SIGKILL)
  process.wait()


def _run(command, log_path, timeout=600):
  with open(log_path, "w") as log:
    process = _start(command, log)
    try:
      process.wait(timeout)
    finally:
      _kill_tree(process)
  output = log_path.read_text()
  assert process.returncode == 0, f"pipeline failed:\n{output[-6000:]}"
  return output


@pytest.fixture(scope="module", name="runs")
def _runs(tmp_path_factory):
  base = tmp_path_factory.mktemp("e2e")
  data = demo_data.build_demo_dataset(str(base / "data"), num_train=6, num_test=2, image_size=36)
  root, serving_root = str(base / "root"), str(base / "serving")
  command = _command(data.dataset_dir, root, serving_root)
  start = time.monotonic()
  # 1. Kill the run as soon as training has a checkpoint.
  log_path = base / "killed.log"
  with open(log_path, "w") as log:
    process = _start(command, log)
    try:
      deadline = time.monotonic() + 600
      # The `checkpoint` state file is written last, after the data and index files of a checkpoint.
      while not glob.glob(os.path.join(root, "train", "*", "checkpoints", "checkpoint")):
        assert process.poll() is None, f"pipeline ended before a checkpoint:\n{log_path.read_text()[-4000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 600 s"
        time.sleep(0.05)
    finally:
      _kill_tree(process)
  killed_checkpoints = glob.glob(os.path.join(root, "train", "*", "checkpoints", "checkpoint"))
  # 2. Resume. 3. Fully cached.
  resumed = _run(command, base / "resumed.log")
  cached = _run(command, base / "cached.log")
  return {"root": root, "serving_root": serving_root, "resumed": resumed, "cached": cached,
          "killed_checkpoints": killed_checkpoints, "seconds": time.monotonic() - start}


def _executions(root):
  with lineage_lib.LineageStore(root, create=False) as store:
    return store.runs(), store.executions()


def test_killed_run_resumes_training_from_its_checkpoint(runs):
  all_runs, executions = _executions(runs["root"])
  assert [r.status for r in all_runs] == ["FAILED", "COMPLETE", "COMPLETE"]
  first = [e for e in executions if e.run_id == all_runs[0].id]
  assert [e.stage for e in first] == ["ingest", "validate", "train"]
  killed = first[-1]
  assert killed.status == "FAILED" and "interrupted" in killed.error
  second = {e.stage: e for e in executions if e.run_id == all_runs[1].id}
  assert second["ingest"].status == second["validate"].status == "CACHED"
  train = second["train"]
  assert train.status == "COMPLETE" and train.resumed_from == killed.id
  assert train.output_dir == killed.output_dir == os.path.dirname(os.path.dirname(runs["killed_checkpoints"][0]))
  assert train.outputs["start_step"] >= 2 and train.outputs["step"] == STEPS, runs["resumed"][-3000:]
  assert "resuming interrupted execution" in runs["resumed"]
  assert all(second[s].status == "COMPLETE" for s in ("evaluate", "export", "infra_validate", "push"))
  assert second["push"].outputs["pushed"] and second["push"].outputs["version"] == 1


def test_second_run_is_fully_cached_and_pushes_nothing(runs):
  all_runs, executions = _executions(runs["root"])
  third = [e for e in executions if e.run_id == all_runs[2].id]
  assert [e.status for e in third] == ["CACHED"] * 7
  assert runs["cached"].count("cache hit") == 7
  assert sorted(os.listdir(os.path.join(runs["serving_root"], "digits"))) == ["1"]
  assert "served model: digits version 1" in runs["cached"] and "nothing new to push" in runs["cached"]


def test_lineage_cli_shows_the_resumed_training(runs):
  _, executions = _executions(runs["root"])
  train = [e for e in executions if e.stage == "train" and e.status == "COMPLETE"][0]
  cli = [sys.executable, "-m", "pipelines.lineage", f"--pipeline_root={runs['root']}"]
  listing = subprocess.run(cli + ["list"], capture_output=True, text=True, env=_env(), cwd=ROOT, check=True)
  assert listing.stdout.count("\n") == len(executions) + 1
  shown = json.loads(subprocess.run(cli + ["show", str(train.id)], capture_output=True, text=True, env=_env(),
                                    cwd=ROOT, check=True).stdout)
  assert shown["resumed_from"] == train.resumed_from and shown["inputs"]["data_dir"]["producer"] is not None
  assert shown["parameters"]["family"] == MODEL and shown["parameters"]["steps"] == STEPS


def test_pushed_model_answers_grpc(runs):
  from serving.client import TranslationClient
  from serving.process import ServerProcess, free_port
  port = free_port()
  with ServerProcess(["--model_name=digits", f"--model_base_path={runs['serving_root']}/digits"], port) as server:
    with TranslationClient(server.target, "digits") as client:
      assert client.wait_until_available(60) == 1
      images = np.random.default_rng(0).integers(0, 256, (2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
      seed = np.array([0, 1], np.int64) if MODEL == "munit" else None
      out = client.translate(images, "a2b", seed=seed)
  assert out["images"].shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3) and out["images"].dtype == np.uint8
  assert out["images"].std() > 0
