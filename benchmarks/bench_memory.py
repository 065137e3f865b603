"""Memory over a long run: the resident set of a training run and of a model server under a request loop.

  python -m benchmarks.bench_memory --model=unit --data_dir=DIR --work_dir=DIR [--preset=budget] \
      [--steps=2000] [--serve_minutes=10] [--image_size=64] [--json=FILE]

Three phases, each a real child process whose resident set (VmRSS in /proc/<pid>/status, Linux) is sampled
every --sample_seconds by this process:
  1. train: `python -m components.train` for --steps on ingest's output (--data_dir);
  2. export: `python -m components.export` of that model_dir into <work_dir>/serving/<model>/1 (not sampled);
  3. serve: `python -m serving.server` on that model root (serving.process.ServerProcess, loopback), and a loop
     of one-image a2b Predict calls over gRPC (serving.client.TranslationClient) for --serve_minutes.
"Flat" means the peak of the last half of a phase is within --flat_tolerance (fraction) of the peak of its
second quarter (the first quarter is start-up: imports, tracing, the first checkpoint). Prints one Markdown row
per phase and the verdict; --json keeps the samples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
from absl import app, flags

from benchmarks.procstat import status_mib

flags.DEFINE_string("model", "unit", "Family to train and serve.")
flags.DEFINE_string("preset", "budget", "Family preset.")
flags.DEFINE_string("data_dir", None, "ingest's output_dir (domain_a/, domain_b/ TFRecords).")
flags.DEFINE_string("work_dir", None, "Where the model_dir, the SavedModel and the server's log go.")
flags.DEFINE_integer("steps", 2000, "Training steps.")
flags.DEFINE_float("serve_minutes", 10.0, "Length of the request loop.")
flags.DEFINE_integer("image_size", 0, "Request image size (0: the model's training size).")
flags.DEFINE_float("sample_seconds", 1.0, "RSS sampling interval.")
flags.DEFINE_float("flat_tolerance", 0.05, "Allowed growth of the late peak over the early peak (fraction).")
flags.DEFINE_list("phases", ["train", "serve"], "Phases to run (serve needs a trained model_dir in work_dir).")
flags.DEFINE_string("json", "", "Optional path for the samples and the summary as JSON.")
FLAGS = flags.FLAGS


def rss_mib(pid: int) -> float | None:
  """Resident set of `pid` in MiB (VmRSS), or None once the process is gone."""
  return status_mib(pid, "VmRSS")


class RssSampler:
  """Samples rss_mib(pid) every `interval` seconds in a thread: `samples` is [(seconds since start, MiB)]."""

  def __init__(self, pid: int, interval: float):
    self.pid, self.interval, self.samples = pid, interval, []
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._start = time.monotonic()

  def _run(self):
    while not self._stop.is_set():
      value = rss_mib(self.pid)
      if value is not None:
        self.samples.append((time.monotonic() - self._start, value))
      self._stop.wait(self.interval)

  def __enter__(self) -> "RssSampler":
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def summarize(samples: list, tolerance: float) -> dict:
  """Early peak (second quarter of the samples), late peak (last half), growth and the flat verdict."""
  values = [v for _, v in samples]
  n = len(values)
  if n < 8:
    raise ValueError(f"only {n} RSS samples: the phase was too short to judge (lower --sample_seconds)")
  early, late = max(values[n // 4:n // 2]), max(values[n // 2:])
  return {"samples": n, "seconds": samples[-1][0], "start_mib": values[n // 4], "early_peak_mib": early,
          "late_peak_mib": late, "peak_mib": max(values), "final_mib": values[-1],
          "growth_fraction": late / early - 1.0, "flat": late <= early * (1.0 + tolerance)}


def run_sampled(argv: list, interval: float, log_path: str) -> list:
  """Runs `argv` to completion, sampling its RSS; raises RuntimeError with the log tail if it fails."""
  with open(log_path, "wb") as log:
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    with RssSampler(proc.pid, interval) as sampler:
      code = proc.wait()
  if code:
    with open(log_path, "rb") as f:
      tail = b"\n".join(f.read().splitlines()[-15:]).decode("utf-8", "replace")
    raise RuntimeError(f"{' '.join(argv[:4])} ... exited with {code}:\n{tail}")
  return sampler.samples


def train_phase(model: str, preset: str, data_dir: str, model_dir: str, steps: int, interval: float,
                log_path: str) -> list:
  """RSS samples of one components.train run of `steps` steps (no in-training evaluation)."""
  argv = [sys.executable, "-m", "components.train", f"--model={model}", f"--preset={preset}",
          f"--data_dir={data_dir}", f"--model_dir={model_dir}", f"--steps={steps}", "--eval_every_steps=0"]
  return run_sampled(argv, interval, log_path)


def export_model(model_dir: str, output_dir: str, log_path: str) -> None:
  """components.export of the last checkpoint of `model_dir` into `output_dir`."""
  argv = [sys.executable, "-m", "components.export", f"--model_dir={model_dir}", f"--output_dir={output_dir}",
          "--checkpoint=latest"]
  run_sampled(argv, 1.0, log_path)


def serve_phase(model_root: str, model_name: str, image_size: int, minutes: float, interval: float) -> dict:
  """RSS samples of the model server over a loop of one-image a2b gRPC requests for `minutes`."""
  from serving.client import TranslationClient  # pylint: disable=import-outside-toplevel
  from serving.process import ServerProcess, free_port  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  requests = 0
  with ServerProcess([f"--model_name={model_name}", f"--model_base_path={model_root}"], free_port()) as server:
    with TranslationClient(server.target, model_name) as client, \
        RssSampler(server.process.pid, interval) as sampler:
      client.wait_until_available()
      deadline = time.monotonic() + 60.0 * minutes
      while time.monotonic() < deadline:
        image = rng.integers(0, 256, size=(1, image_size, image_size, 3), dtype=np.uint8)
        client.translate(image, "a2b")
        requests += 1
  return {"samples": sampler.samples, "requests": requests}


def main(argv):
  """absl entry point: runs the phases and prints the table."""
  del argv
  if not FLAGS.work_dir:
    raise app.UsageError("--work_dir is required: where the model_dir and the SavedModel are written.")
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  model_dir = os.path.join(FLAGS.work_dir, "model")
  model_root = os.path.join(FLAGS.work_dir, "serving", FLAGS.model)
  result = {"model": FLAGS.model, "preset": FLAGS.preset}
  if "train" in FLAGS.phases:
    if not FLAGS.data_dir:
      raise app.UsageError("--data_dir is required for the train phase: ingest's output_dir.")
    samples = train_phase(FLAGS.model, FLAGS.preset, FLAGS.data_dir, model_dir, FLAGS.steps, FLAGS.sample_seconds,
                          os.path.join(FLAGS.work_dir, "train.log"))
    result["train"] = {"steps": FLAGS.steps, **summarize(samples, FLAGS.flat_tolerance), "curve": samples}
  if "serve" in FLAGS.phases:
    export_dir = os.path.join(model_root, "1")
    if not os.path.isdir(export_dir):
      export_model(model_dir, export_dir, os.path.join(FLAGS.work_dir, "export.log"))
    from components.model_dir import read_config  # pylint: disable=import-outside-toplevel
    size = FLAGS.image_size or int(read_config(model_dir)["model"]["image_size"])
    served = serve_phase(model_root, FLAGS.model, size, FLAGS.serve_minutes, FLAGS.sample_seconds)
    result["serve"] = {"requests": served["requests"], "image_size": size,
                       **summarize(served["samples"], FLAGS.flat_tolerance), "curve": served["samples"]}
  print(f"| {FLAGS.model} ({FLAGS.preset}) | phase | length | RSS at 1/4 MiB | peak 1/4-1/2 MiB | peak last half MiB "
        f"| growth | flat (<= {100 * FLAGS.flat_tolerance:.0f}%) |")
  print("|---|---|---|---|---|---|---|---|")
  for phase, length in (("train", lambda r: f"{r['steps']} steps, {r['seconds']:.0f} s"),
                        ("serve", lambda r: f"{r['requests']} requests, {r['seconds']:.0f} s")):
    if phase in result:
      r = result[phase]
      print(f"| {FLAGS.model} | {phase} | {length(r)} | {r['start_mib']:.0f} | {r['early_peak_mib']:.0f} | "
            f"{r['late_peak_mib']:.0f} | {100 * r['growth_fraction']:+.1f}% | {'yes' if r['flat'] else 'NO'} |")
  if FLAGS.json:
    with open(FLAGS.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  app.run(main)
