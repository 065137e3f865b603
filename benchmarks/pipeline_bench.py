"""Wall time of each pipeline stage on the demo dataset, cold and fully cached.

  .venv/bin/python -m benchmarks.pipeline_bench --model=munit --steps=300 --work_dir=/tmp/pipeline_bench

Builds the offline demo dataset (pipelines.demo_data), runs the whole pipeline once with --nocache (every stage
executes) and once more with the cache on (every stage should be a cache hit), and prints a markdown table of
the per-stage seconds of both runs plus the training throughput. The work dir is wiped first.
"""

from __future__ import annotations

import os
import shutil
import time

from absl import app, flags

flags.DEFINE_string("work_dir", "/tmp/pipeline_bench", "Scratch directory (wiped).")
flags.DEFINE_string("model", "munit", "Model family.")
flags.DEFINE_string("preset", "tiny", "Model preset.")
flags.DEFINE_integer("steps", 300, "Training steps.")
flags.DEFINE_integer("image_size", 32, "Training crop size.")
flags.DEFINE_integer("batch_size", None, "Global batch size (default: the preset's).")
flags.DEFINE_integer("num_train", 300, "Demo images per domain.")
FLAGS = flags.FLAGS


def main(argv):
  """Builds the demo data, runs the pipeline cold and cached, prints the table."""
  del argv
  from pipelines import cli, demo_data, pipeline_lib, runner  # pylint: disable=import-outside-toplevel
  shutil.rmtree(FLAGS.work_dir, ignore_errors=True)
  start = time.monotonic()
  data = demo_data.build_demo_dataset(os.path.join(FLAGS.work_dir, "data"), num_train=FLAGS.num_train,
                                      num_test=8, image_size=36)
  data_seconds = time.monotonic() - start
  overrides = {"batch_size": FLAGS.batch_size} if FLAGS.batch_size else {}
  stage_options, runtime_options = cli.split_stage_options(  # by the config's field markers
      {"train": {"checkpoint_every_steps": max(1, FLAGS.steps // 3), "sample_every_steps": 0,
                 "summary_every_steps": max(1, FLAGS.steps // 10)}})
  config = pipeline_lib.PipelineConfig(
      pipeline_root=os.path.join(FLAGS.work_dir, "pipeline"), serving_root=os.path.join(FLAGS.work_dir, "serving"),
      dataset_dir=data.dataset_dir, family=FLAGS.model, preset=FLAGS.preset, image_size=FLAGS.image_size,
      steps=FLAGS.steps, model_overrides=overrides,
      stage_options=stage_options, runtime_options=runtime_options)
  pipeline = pipeline_lib.create_pipeline(config)
  cold = runner.run_pipeline(pipeline, enable_cache=False)
  warm = runner.run_pipeline(pipeline)
  print(f"\n{FLAGS.model}/{FLAGS.preset} {FLAGS.image_size}px, {FLAGS.steps} steps, {FLAGS.num_train} images "
        f"per domain; demo data built in {data_seconds:.1f} s")
  print("| stage | cold run (s) | status | cached run (s) | status |")
  print("|---|---:|---|---:|---|")
  for c, w in zip(cold.stages, warm.stages):
    print(f"| {c.stage} | {c.seconds:.1f} | {c.status} | {w.seconds:.2f} | {w.status} |")
  print(f"| total | {sum(r.seconds for r in cold.stages):.1f} | {cold.status} | "
        f"{sum(r.seconds for r in warm.stages):.2f} | {warm.status} |")
  train = cold.report("train").outputs
  if train:
    print(f"training: {train.get('images_per_sec', 0.0):.1f} images/s after tracing")
  print(runner.served_model(cold))


if __name__ == "__main__":
  app.run(main)
