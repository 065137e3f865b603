"""`python -m pipelines.local`: one command from two image folders to a served model, run in this process.

  python -m pipelines.local --domain_a=horses/ --domain_b=zebras/ --model=munit --preset=paper \\
      --pipeline_root=out/pipeline --serving_root=out/serving
  python -m pipelines.local --dataset_dir=horse2zebra/ --model=ugatit --preset=paper --strategy=mirrored \\
      --runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers=2

Runs ingest -> validate -> train -> evaluate -> export -> infra_validate -> push (pipelines.pipeline_lib),
each stage's outputs under `<pipeline_root>/<stage>/<execution_id>/`, lineage in
`<pipeline_root>/lineage.sqlite` (read it with `python -m pipelines.lineage --pipeline_root=...`).
Starting the same command again reuses every stage whose inputs and parameters did not change and continues
an interrupted training from its checkpoint; `--nocache` re-executes everything.

Flags (pipelines.cli, generated from the stages' configs): the data and pipeline flags; every flag of
`python -m components.train` (--model, --preset, --steps, --strategy, --cpu_replicas, --eval_every_steps,
--ema_decay, each model setting such as --lr, --gan_w, --image_size, --batch_size; --eval_images, when given,
also limits the evaluate stage's test images per domain); every other stage's option as --STAGE.FIELD
(--evaluate.max_kid=0.05, --validate.min_images=100, --ingest.load_size=300, --push.keep_versions=3, ...), also
spelled `--set STAGE.FIELD=VALUE`; `--flagfile=FILE`. Every flag not defined here goes to Beam (ingest's
pipeline options). `--model_dir=DIR` takes an existing model_dir (e.g. from `components.import_official`)
instead of training one.
"""

from __future__ import annotations

import sys

from absl import app, flags

from pipelines import cli, pipeline_lib

FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
  """Runs the pipeline; prints progress, the summary table and the served model; exit 1 on failure."""
  from components import trainer  # pylint: disable=import-outside-toplevel
  from pipelines import runner  # pylint: disable=import-outside-toplevel
  positional = [a for a in argv[1:] if not a.startswith("-")]
  if positional:
    raise app.UsageError(f"unexpected arguments {positional}; flags start with --")
  config = cli.pipeline_config_from_flags(FLAGS, argv[1:])
  cli.quiet_tensorflow_logs()
  # before any stage initializes TensorFlow's devices
  trainer.configure_cpu_replicas(config.runtime_options["train"]["cpu_replicas"])
  result = runner.run_pipeline(pipeline_lib.create_pipeline(config), enable_cache=FLAGS.cache, argv=sys.argv)
  print(runner.summary_table(result, served=runner.served_model(result)))
  print(f"lineage: python -m pipelines.lineage --pipeline_root={config.pipeline_root} list")
  return 0 if result.ok else 1


if __name__ == "__main__":
  cli.define_flags()
  app.run(main, flags_parser=cli.parse_flags)
