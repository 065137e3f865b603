"""Where a train step spends its time: TF profiler op times of one bench_train configuration, by op type and op.

  .venv/bin/python -m benchmarks.profile_train --model=unit --size=64 --batch=4

Builds the same step as benchmarks/bench_train.py (paper architecture, default strategy, in-memory batch), runs
--warmup steps, traces --steps steps with `tf.profiler.experimental` into --logdir (viewable in TensorBoard's
profile plugin when installed) and prints the op time per step summed over the executor threads (so the total
exceeds the wall time when ops run in parallel). This is how the slow convolution gradients behind
`models/layers/conv.py` were found (BUILD.md, training benchmark).
"""

from __future__ import annotations

import tempfile

from absl import app, flags

from benchmarks.bench_train import tf_stepper
from benchmarks.profile_ops import tf_op_times

flags.DEFINE_enum("model", "unit", ["unit", "munit", "ugatit"], "Family.")
flags.DEFINE_integer("size", 64, "Image size.")
flags.DEFINE_integer("batch", 4, "Batch size.")
flags.DEFINE_boolean("xla", False, "Trace the XLA-compiled step instead.")
flags.DEFINE_integer("top", 25, "Rows of each table.")
flags.DEFINE_string("logdir", "", "Profiler output directory (default: a new temp dir).")
FLAGS = flags.FLAGS


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
  by_type, by_name, calls = tf_op_times(logdir, FLAGS.profile_steps)
  print(f"op time per step, all threads: {sum(by_type.values()):.0f} ms (trace in {logdir})")
  for op_type, ms in by_type.most_common(FLAGS.top):
    print(f"{ms:10.1f} ms {calls[op_type]:7.0f} calls  {op_type}")
  print("slowest ops:")
  for name, ms in by_name.most_common(FLAGS.top):
    print(f"{ms:10.1f} ms  {name[-120:]}")


if __name__ == "__main__":
  app.run(main)
