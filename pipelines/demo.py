"""`python -m pipelines.demo` (`./run demo`): the whole product on a small built-in dataset, offline.

  ./run demo                                   # MNIST digits -> photo-textured digits, tiny preset, 32 px
  ./run demo --model=munit --steps=2000        # another family, more steps
  ./run demo --dataset_dir=horse2zebra/ --model=munit --preset=paper --image_size=256 --strategy=mirrored \\
      --output_dir=out/horse2zebra            # a real CycleGAN-layout dataset with the paper settings

Builds the demo dataset (pipelines.demo_data) under <output_dir>/data unless --dataset_dir is given, runs the
pipeline (pipeline root <output_dir>/pipeline, serving root <output_dir>/serving), serves the pushed model,
translates test images over gRPC into <output_dir>/translations/ and prints where everything is. Every flag
of `python -m pipelines.local` works here too (pipelines.cli: --nocache, --STAGE.FIELD=VALUE, Beam options, ...).
"""

from __future__ import annotations

import os

from absl import app, flags

from pipelines import cli

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The pipeline's flags (pipelines.cli) and the demo's own."""
  cli.define_flags(flag_values)
  flags.DEFINE_string("output_dir", "demo_output", "Where data/, pipeline/, serving/ and translations/ go.",
                      flag_values=flag_values)
  flags.DEFINE_integer("num_train", 300, "Demo dataset: training images per domain.", flag_values=flag_values)
  flags.DEFINE_integer("num_test", 64, "Demo dataset: test images per domain (what evaluate and the in-training "
                       "evaluation measure: 8 made the best-checkpoint choice by KID a coin toss).",
                       flag_values=flag_values)
  flags.DEFINE_integer("num_requests", 8, "Test images translated over gRPC per direction.", flag_values=flag_values)


# The family and preset that learn most in the demo's budget (BUILD.md, "Quality benchmark"): UNIT in its "budget"
# preset keeps the digit both ways in under two minutes of training on 2 CPU cores (U-GAT-IT light needs about
# five for less; MUNIT ten).
DEFAULT_MODEL = "unit"
# Settings for the built-in dataset only (flags given on the command line win); with --dataset_dir or
# --domain_a/--domain_b the train stage's own defaults apply (--preset=paper, the preset's size and max_iter).
# The preset's schedule follows --steps (components.train_lib.schedule_for_run). In-training evaluation every
# 100 steps gives the report its metric curves and keeps the best checkpoint, which evaluate and export use.
# The generator EMA (decay 0.995: a ~200-step average) kept more of the digit A->B in every measured budget run.
DEMO_DEFAULTS = {"preset": "budget", "image_size": 32, "steps": 500, "checkpoint_every_steps": 100,
                 "sample_every_steps": 200, "summary_every_steps": 20, "eval_every_steps": 100,
                 "eval_images": 64, "ema_decay": 0.995}
DEMO_IMAGE_SIZE = 36  # stored demo images; the 32 px crop leaves room for random crops


def main(argv: list[str]) -> int:
  """Builds the data, runs the demo, prints where everything is; exit 1 when the pipeline failed."""
  from components import trainer  # pylint: disable=import-outside-toplevel
  from pipelines import demo_data, demo_lib, runner  # pylint: disable=import-outside-toplevel
  output_dir = os.path.abspath(FLAGS.output_dir)
  overrides = {"pipeline_root": FLAGS.pipeline_root if FLAGS["pipeline_root"].present
                                else os.path.join(output_dir, "pipeline")}
  overrides["serving_root"] = FLAGS.serving_root or os.path.join(output_dir, "serving")
  defaults = {"model": DEFAULT_MODEL}  # flags given on the command line win over these
  if not (FLAGS.dataset_dir or FLAGS.domain_a or FLAGS.domain_b):
    defaults.update(DEMO_DEFAULTS)
    print(f"demo: building the demo dataset in {os.path.join(output_dir, 'data')}", flush=True)
    dataset = demo_data.build_demo_dataset(os.path.join(output_dir, "data"), num_train=FLAGS.num_train,
                                           num_test=FLAGS.num_test, image_size=DEMO_IMAGE_SIZE)
    overrides["dataset_dir"] = dataset.dataset_dir
  config = cli.pipeline_config_from_flags(FLAGS, argv[1:], defaults=defaults, **overrides)
  cli.quiet_tensorflow_logs()
  trainer.configure_cpu_replicas(config.runtime_options["train"]["cpu_replicas"])
  result = demo_lib.run(demo_lib.DemoConfig(pipeline=config, output_dir=output_dir, enable_cache=FLAGS.cache,
                                            num_requests=FLAGS.num_requests))
  print(runner.summary_table(result.run, served=runner.served_model(result.run)))
  print(f"pipeline root:     {config.pipeline_root}  (python -m pipelines.lineage "
        f"--pipeline_root={config.pipeline_root} list)")
  print(f"serving root:      {config.serving_root}")
  if result.report_path:
    print(f"evaluation report: {result.report_path}")
  if result.translations_dir:
    print(f"translations:      {result.translations_dir}/a2b.png, b2a.png (labelled rows, upscaled; "
          f"{len(result.translated)} files) from {result.model_name} version {result.version} over gRPC")
  if result.demo_report_path:
    print(f"demo report:       {result.demo_report_path} (training curves, trained vs untrained, verdict)")
  return 0 if result.run.ok and result.translations_dir else 1


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
