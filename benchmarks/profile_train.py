"""Where a train step spends its time: TF profiler op times of one bench_train configuration, by op type and op.

  .venv/bin/python -m benchmarks.profile_train --model=unit --size=64 --batch=4

Builds the same step as benchmarks/bench_train.py (paper architecture, default strategy, in-memory batch), runs
--warmup steps, traces --steps steps with `tf.profiler.experimental` into --logdir (viewable in TensorBoard's
profile plugin when installed) and prints the op time per step summed over the executor threads (so the total
exceeds the wall time when ops run in parallel). This is how the slow convolution gradients behind
`models/layers/conv.py` were found (BUILD.md, training benchmark).
"""

from __future__ import annotations

import collections
import glob
import os
import tempfile

from absl import app, flags

from benchmarks.bench_train import tf_stepper

flags.DEFINE_enum("model", "unit", ["unit", "munit", "ugatit"], "Family.")
flags.DEFINE_integer("size", 64, "Image size.")
flags.DEFINE_integer("batch", 4, "Batch size.")
flags.DEFINE_integer("profile_steps", 3, "Traced steps.")
flags.DEFINE_boolean("xla", False, "Trace the XLA-compiled step instead.")
flags.DEFINE_integer("top", 25, "Rows of each table.")
flags.DEFINE_string("logdir", "", "Profiler output directory (default: a new temp dir).")
FLAGS = flags.FLAGS


def op_times(logdir: str, steps: int) -> tuple[collections.Counter, collections.Counter, collections.Counter]:
  """(ms per step by op type, ms per step by op name, calls per step by op type) from the newest .xplane.pb."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=import-outside-toplevel
  files = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
  if not files:
    raise RuntimeError(f"The profiler wrote no .xplane.pb under {logdir}.")
  space = xplane_pb2.XSpace()
  with open(files[-1], "rb") as f:
    space.ParseFromString(f.read())
  by_type, by_name, calls = collections.Counter(), collections.Counter(), collections.Counter()
  for plane in space.planes:
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if ":" not in name or "::" in name or ": " in name:  # runtime events (ExecutorState::Process, ...), not ops
          continue
        op_type = name.rsplit(":", 1)[1]
        ms = event.duration_ps / 1e9 / steps
        by_type[op_type] += ms
        by_name[name] += ms
        calls[op_type] += 1 / steps
  return by_type, by_name, calls


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  run, free = tf_stepper(FLAGS.model, FLAGS.size, FLAGS.batch, FLAGS.xla, warmup=2)
  seconds = run(FLAGS.profile_steps)
  print(f"{FLAGS.model} {FLAGS.size}px batch {FLAGS.batch}: {FLAGS.profile_steps / seconds:.3f} steps/s untraced")
  logdir = FLAGS.logdir or tempfile.mkdtemp(prefix="profile_train_")
  tf.profiler.experimental.start(logdir)
  run(FLAGS.profile_steps)
  tf.profiler.experimental.stop()
  free()
  by_type, by_name, calls = op_times(logdir, FLAGS.profile_steps)
  print(f"op time per step, all threads: {sum(by_type.values()):.0f} ms (trace in {logdir})")
  for op_type, ms in by_type.most_common(FLAGS.top):
    print(f"{ms:10.1f} ms {calls[op_type]:7.0f} calls  {op_type}")
  print("slowest ops:")
  for name, ms in by_name.most_common(FLAGS.top):
    print(f"{ms:10.1f} ms  {name[-120:]}")


if __name__ == "__main__":
  app.run(main)
