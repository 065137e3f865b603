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

Flags: the data and pipeline flags below; every flag of `python -m components.train` (--model, --preset,
--steps, --strategy, --cpu_replicas, --checkpoint_every_steps, --eval_every_steps, --best_metric, --ema_decay,
and each model setting such as --lr, --gan_w, --image_size, --batch_size; --eval_images, when given, also
limits the evaluate stage's test images per domain, which are all of them otherwise); `--set STAGE.FIELD=VALUE` for any other field of a stage's config (the value
is parsed as JSON when it parses, else kept as a string), e.g. `--set evaluate.num_images=64`;
`--flagfile=FILE`. Every flag not defined here goes to Beam (ingest's pipeline options).
`--model_dir=DIR` takes an existing model_dir (e.g. from `components.import_official`) instead of training one.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app, flags, logging

import models
from components import train as train_entry  # defines the train stage's flags (model, strategy, settings)
from pipelines import pipeline_lib

flags.DEFINE_string("pipeline_root", "out/pipeline", "Where every stage's outputs and lineage.sqlite go.")
flags.DEFINE_string("serving_root", None, "TF Serving model root that push writes <model_name>/<version>/ "
                    "into (default: <pipeline_root>/serving).")
flags.DEFINE_string("domain_a", None, "Folder of domain A images (searched recursively).")
flags.DEFINE_string("domain_b", None, "Folder of domain B images (searched recursively).")
flags.DEFINE_string("dataset_dir", None, "CycleGAN-layout folder (trainA/ trainB/ [testA/ testB/]) instead "
                    "of --domain_a/--domain_b.")
flags.DEFINE_string("model_name", None, "Name of the served model (default: the --model family).")
flags.DEFINE_integer("keep_versions", None, "push: keep only the newest this many versions (default: all).")
flags.DEFINE_integer("min_images", None, "validate: fewest train images accepted per domain.")
flags.DEFINE_float("max_reject_fraction", None, "validate: largest accepted share of rejected files.")
flags.DEFINE_integer("load_size", None, "ingest: shorter side of stored images (default: 286/256 of the "
                     "training image size, the papers' resize-then-crop ratio).")
flags.DEFINE_float("max_kid", None, "evaluate: bless only if the mean KID is at most this.")
flags.DEFINE_float("max_fid", None, "evaluate: bless only if the mean FID is at most this.")
flags.DEFINE_float("max_cycle_l1", None, "evaluate: bless only if the mean cycle L1 ([-1, 1] units) is at most this.")
flags.DEFINE_float("min_psnr", None, "evaluate: bless only if the mean cycle PSNR (dB) is at least this.")
flags.DEFINE_boolean("compare_with_served", False, "evaluate: bless only if not worse than the newest version "
                     "already in <serving_root>/<model_name> (--baseline_metric, --baseline_margin); the first "
                     "push has no baseline. The served versions are not part of the cache key.")
flags.DEFINE_string("baseline_metric", None, "evaluate: kid, fid, cycle_l1 or cycle_psnr (default: kid).")
flags.DEFINE_float("baseline_margin", None, "evaluate: how much worse than the baseline is still blessed.")
flags.DEFINE_enum("checkpoint", None, ["auto", "best", "latest"], "evaluate and export: which checkpoint of the "
                  "trained model (default auto: the best kept by --eval_every_steps when there is one, else the "
                  "latest); the lineage records which was used.")
flags.DEFINE_multi_string("set", [], "STAGE.FIELD=VALUE: any other field of a stage's config.")
flags.DEFINE_boolean("cache", True, "Reuse the outputs of earlier executions with the same fingerprint "
                     "(--nocache re-executes every stage).")

FLAGS = flags.FLAGS

# How to run training, not what it computes: changing them does not invalidate the cache or a resume.
TRAIN_RUNTIME_FLAGS = ("strategy", "cpu_replicas", "checkpoint_every_steps", "summary_every_steps",
                       "sample_every_steps", "jit_compile")
TRAIN_PARAMETER_FLAGS = ("keep_checkpoints", "num_samples", "seed", "mixed_precision", "eval_every_steps",
                         "eval_images", "best_metric", "eval_feature_extractor", "ema_decay")


def parse_set_options(assignments: list[str]) -> dict[str, dict[str, Any]]:
  """Parses `STAGE.FIELD=VALUE` strings into {stage: {field: value}} (VALUE as JSON if it parses)."""
  options: dict[str, dict[str, Any]] = {}
  for assignment in assignments:
    key, sep, raw = assignment.partition("=")
    stage, dot, field = key.partition(".")
    if not (sep and dot and stage and field):
      raise app.UsageError(f"--set {assignment!r}: write STAGE.FIELD=VALUE, e.g. --set evaluate.num_images=64")
    if stage not in pipeline_lib.ALL_STAGE_NAMES:
      raise app.UsageError(f"--set {assignment!r}: unknown stage {stage!r}; stages: "
                           f"{', '.join(pipeline_lib.ALL_STAGE_NAMES)}")
    try:
      value = json.loads(raw)
    except json.JSONDecodeError:
      value = raw
    options.setdefault(stage, {})[field] = value
  return options


def pipeline_config_from_flags(beam_args: list[str], **overrides: Any) -> pipeline_lib.PipelineConfig:
  """Builds the PipelineConfig from the parsed flags; `overrides` replace PipelineConfig fields."""
  if FLAGS.model is None:
    raise app.UsageError("--model is required: one of unit, munit, ugatit")
  stage_options = parse_set_options(FLAGS.set)
  runtime_options: dict[str, dict[str, Any]] = {"ingest": {"beam_args": tuple(beam_args)}, "train": {}}
  for name in TRAIN_RUNTIME_FLAGS:
    runtime_options["train"][name] = FLAGS[name].value
  for name in TRAIN_PARAMETER_FLAGS:
    stage_options.setdefault("train", {}).setdefault(name, FLAGS[name].value)
  for stage, name, field in (("validate", "min_images", "min_images"),
                             ("validate", "max_reject_fraction", "max_reject_fraction"),
                             ("ingest", "load_size", "load_size"), ("push", "keep_versions", "keep_versions"),
                             ("evaluate", "max_kid", "max_kid"),
                             ("evaluate", "max_fid", "max_fid"), ("evaluate", "max_cycle_l1", "max_cycle_l1"),
                             ("evaluate", "min_psnr", "min_psnr"), ("evaluate", "baseline_metric", "baseline_metric"),
                             ("evaluate", "baseline_margin", "baseline_margin"),
                             ("evaluate", "checkpoint", "checkpoint"), ("export", "checkpoint", "checkpoint")):
    if FLAGS[name].value is not None:
      stage_options.setdefault(stage, {}).setdefault(field, FLAGS[name].value)
  if FLAGS["eval_images"].present:  # components.train's flag; given to the pipeline it also sizes evaluate
    stage_options.setdefault("evaluate", {}).setdefault("num_images", FLAGS.eval_images)
  pipeline_root = overrides.get("pipeline_root", FLAGS.pipeline_root)
  serving_root = overrides.get("serving_root") or FLAGS.serving_root or os.path.join(pipeline_root, "serving")
  if FLAGS.compare_with_served:
    stage_options.setdefault("evaluate", {}).setdefault(
        "baseline_model_dir", os.path.join(serving_root, FLAGS.model_name or FLAGS.model))
  model_overrides = {name: FLAGS[name].value for name in train_entry.MODEL_FLAGS
                     if name != "image_size" and FLAGS[name].value is not None}
  image_size = FLAGS.image_size
  if image_size is None:  # the preset's, so that validate and ingest check and store the size training crops
    try:
      image_size = models.get_config(FLAGS.model, FLAGS.preset).image_size
    except ValueError as e:
      raise app.UsageError(str(e)) from e
  values = dict(
      pipeline_root=pipeline_root,
      serving_root=serving_root,
      domain_a=FLAGS.domain_a, domain_b=FLAGS.domain_b, dataset_dir=FLAGS.dataset_dir,
      model=FLAGS.model, preset=FLAGS.preset, image_size=image_size, steps=FLAGS.steps,
      model_overrides=model_overrides, model_name=FLAGS.model_name,
      stage_options=stage_options, runtime_options=runtime_options, model_dir=FLAGS.model_dir)
  values.update(overrides)
  try:
    return pipeline_lib.PipelineConfig(**values)
  except ValueError as e:
    raise app.UsageError(str(e)) from e


def quiet_tensorflow_logs() -> None:
  """Keeps TensorFlow's INFO lines (checkpoint sharding, ...) out of the progress unless -v/--verbosity is given."""
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def parse_flags(argv: list[str]) -> list[str]:
  """Parses our flags; returns argv[0] + every unknown argument (handed to Beam)."""
  return FLAGS(argv, known_only=True)


def main(argv: list[str]) -> int:
  """Runs the pipeline; prints progress, the summary table and the served model; exit 1 on failure."""
  from components import trainer  # pylint: disable=import-outside-toplevel
  from pipelines import runner  # pylint: disable=import-outside-toplevel
  positional = [a for a in argv[1:] if not a.startswith("-")]
  if positional:
    raise app.UsageError(f"unexpected arguments {positional}; flags start with --")
  config = pipeline_config_from_flags(argv[1:])
  quiet_tensorflow_logs()
  trainer.configure_cpu_replicas(FLAGS.cpu_replicas)  # before any stage initializes TensorFlow's devices
  result = runner.run_pipeline(pipeline_lib.create_pipeline(config), enable_cache=FLAGS.cache, argv=sys.argv)
  print(runner.summary_table(result, served=runner.served_model(result)))
  print(f"lineage: python -m pipelines.lineage --pipeline_root={config.pipeline_root} list")
  return 0 if result.ok else 1


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
