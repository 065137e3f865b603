"""The pipeline's command line, shared by `python -m pipelines.local` and `python -m pipelines.demo`.

Flags, all generated from the stages' config dataclasses (components.options) except the pipeline's own:
- the pipeline's own: --pipeline_root, --serving_root, --domain_a/--domain_b or --dataset_dir, --model_name,
  --model_dir (an existing model_dir instead of training one), --checkpoint (evaluate's and export's),
  --compare_with_served, --nocache, --set;
- every field of the train stage's config under the name `python -m components.train` gives it (--model,
  --preset, --steps, --strategy, --cpu_replicas, --eval_every_steps, --ema_decay, ...) and every model setting
  (--lr, --gan_w, --image_size, --batch_size, ...); --eval_images, when given, also limits the evaluate stage's
  test images per domain (all of them otherwise);
- every field of every other stage's config as --STAGE.FIELD, e.g. --evaluate.max_kid=0.05,
  --ingest.load_size=300, --validate.min_images=100, --export.verify=false, --push.keep_versions=3
  (the fields create_pipeline wires from upstream outputs are not options: pipeline_lib.WIRED_FIELDS);
- `--set STAGE.FIELD=VALUE` is the same options spelled as one repeatable flag (`--set evaluate.num_images=64`,
  `--set train.seed=3`, `--set train.lr=2e-4`); the value is parsed by the option's flag.
A field marked `runtime` in its dataclass goes to PipelineConfig.runtime_options (not part of the cache key),
every other one to stage_options. The train stage's fields are always passed (so its cache key names them all);
another stage's only when given. Every argument that is not a flag goes to Beam (ingest's beam_args).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from typing import Any, Mapping

from absl import app, flags, logging

from components import options
from pipelines import pipeline_lib

FLAGS = flags.FLAGS
TRAIN = "train"


@functools.lru_cache(maxsize=None)
def stage_config_class(stage: str) -> type:
  """The config dataclass of `stage` (pipeline_lib.STAGE_CONFIGS)."""
  module, name = pipeline_lib.STAGE_CONFIGS[stage]
  return getattr(importlib.import_module(module), name)


def stage_prefix(stage: str) -> str:
  """The flag prefix of `stage`'s options: none for train (its flags keep components.train's names)."""
  return "" if stage == TRAIN else f"{stage}."


@functools.lru_cache(maxsize=None)
def stage_flags(stage: str) -> dict[str, str]:
  """Config field -> pipeline flag name, for every option (non-wired field with a flag) of `stage`."""
  config_class = stage_config_class(stage)
  return {f.name: options.flag_name(f, stage_prefix(stage))
          for f in options.option_fields(config_class, exclude=pipeline_lib.WIRED_FIELDS[stage])}


@functools.lru_cache(maxsize=None)
def model_flags() -> tuple[str, ...]:
  """The model-setting flags (--lr, --image_size, ...): every family's config fields not named like a train flag."""
  return tuple(options.model_flag_names(skip=stage_flags(TRAIN).values()))


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines the pipeline's flags (see the module docstring) on `flag_values`."""
  flags.DEFINE_string("pipeline_root", "out/pipeline", "Where every stage's outputs and lineage.sqlite go.",
                      flag_values=flag_values)
  flags.DEFINE_string("serving_root", None, "TF Serving model root that push writes <model_name>/<version>/ "
                      "into (default: <pipeline_root>/serving).", flag_values=flag_values)
  flags.DEFINE_string("domain_a", None, "Folder of domain A images (searched recursively).", flag_values=flag_values)
  flags.DEFINE_string("domain_b", None, "Folder of domain B images (searched recursively).", flag_values=flag_values)
  flags.DEFINE_string("dataset_dir", None, "CycleGAN-layout folder (trainA/ trainB/ [testA/ testB/]) instead "
                      "of --domain_a/--domain_b.", flag_values=flag_values)
  flags.DEFINE_string("model_name", None, "Name of the served model (default: the --model family).",
                      flag_values=flag_values)
  flags.DEFINE_string("model_dir", None, "An existing model_dir (components.import_official's, or an earlier "
                      "training's) to evaluate, export, validate and push instead of training one.",
                      flag_values=flag_values)
  flags.DEFINE_enum("checkpoint", None, ["auto", "best", "latest"], "evaluate and export: which checkpoint of the "
                    "trained model (default auto: the best kept by --eval_every_steps when there is one, else the "
                    "latest); the lineage records which was used. --evaluate.checkpoint / --export.checkpoint set "
                    "one stage's.", flag_values=flag_values)
  flags.DEFINE_boolean("compare_with_served", False, "evaluate: bless only if not worse than the newest version "
                       "already in <serving_root>/<model_name> (--evaluate.baseline_metric, "
                       "--evaluate.baseline_margin); the first push has no baseline. The served versions are not "
                       "part of the cache key.", flag_values=flag_values)
  flags.DEFINE_multi_string("set", [], "STAGE.FIELD=VALUE: a stage option spelled as one flag (the same as "
                            "--STAGE.FIELD=VALUE; train's as --FIELD=VALUE).", flag_values=flag_values)
  flags.DEFINE_boolean("cache", True, "Reuse the outputs of earlier executions with the same fingerprint "
                       "(--nocache re-executes every stage).", flag_values=flag_values)
  for stage in pipeline_lib.ALL_STAGE_NAMES:
    options.define_flags(stage_config_class(stage), flag_values, prefix=stage_prefix(stage),
                         exclude=pipeline_lib.WIRED_FIELDS[stage])
  options.define_model_flags(flag_values, skip=stage_flags(TRAIN).values())


def set_option_flag(stage: str, field: str) -> str:
  """The flag that `--set STAGE.FIELD=...` sets.

  Raises:
    app.UsageError: unknown stage, or a field that is not an option of it (the message lists its options).
  """
  if stage not in pipeline_lib.ALL_STAGE_NAMES:
    raise app.UsageError(f"unknown stage {stage!r}; stages: {', '.join(pipeline_lib.ALL_STAGE_NAMES)}")
  names = stage_flags(stage)
  if field in names:
    return names[field]
  if stage == TRAIN and field in model_flags():
    return field
  if field in pipeline_lib.WIRED_FIELDS[stage]:
    raise app.UsageError(f"{stage}.{field} is wired by the pipeline (an input or output of the stage), not an "
                         "option")
  hint = " and every model setting (lr, gan_w, batch_size, ...)" if stage == TRAIN else ""
  raise app.UsageError(f"{field!r} is not an option of the {stage} stage; its options: "
                       f"{', '.join(names) or 'none'}{hint}")


def parse_set_options(assignments: list[str], flag_values: flags.FlagValues = FLAGS) -> dict[str, Any]:
  """Parses `STAGE.FIELD=VALUE` strings into {flag name: value}, each VALUE parsed by that option's flag."""
  values: dict[str, Any] = {}
  for assignment in assignments:
    key, sep, raw = assignment.partition("=")
    stage, dot, field = key.partition(".")
    if not (sep and dot and stage and field):
      raise app.UsageError(f"--set {assignment!r}: write STAGE.FIELD=VALUE, e.g. --set evaluate.num_images=64")
    try:
      name = set_option_flag(stage, field)
    except app.UsageError as e:
      raise app.UsageError(f"--set {assignment!r}: {e}") from e
    flag = flag_values[name]
    try:
      value = flag.parser.parse(raw)
    except (ValueError, flags.IllegalFlagValueError) as e:
      raise app.UsageError(f"--set {assignment!r}: {raw!r} is not a value of --{name} "
                           f"({flag.parser.flag_type()}): {e}") from e
    if isinstance(flag, flags.MultiFlag):
      value = [*values.get(name, []), *(value if isinstance(value, list) else [value])]
    values[name] = value
  return values


@dataclasses.dataclass(frozen=True)
class _Resolved:
  """Flag values after --set and the caller's defaults: --set, then the command line, then defaults, then the
  flag's default."""
  flag_values: flags.FlagValues
  assigned: Mapping[str, Any]
  defaults: Mapping[str, Any]

  def given(self, name: str) -> bool:
    return name in self.assigned or self.flag_values[name].present or name in self.defaults

  def __getitem__(self, name: str) -> Any:
    if name in self.assigned:
      return self.assigned[name]
    if self.flag_values[name].present or name not in self.defaults:
      return self.flag_values[name].value
    return self.defaults[name]


def split_stage_options(values: Mapping[str, Mapping[str, Any]]) -> tuple[dict, dict]:
  """stage -> {config field: value} -> (stage_options, runtime_options) of a PipelineConfig: a field goes to
  runtime_options (not in the cache key) when its config dataclass marks it `runtime` (components.options), else
  to stage_options. A stage with no field of a kind is left out of that dict."""
  stage_options: dict[str, dict[str, Any]] = {}
  runtime_options: dict[str, dict[str, Any]] = {}
  for stage, chosen in values.items():
    runtime = options.runtime_fields(stage_config_class(stage))
    for field, value in chosen.items():
      (runtime_options if field in runtime else stage_options).setdefault(stage, {})[field] = value
  return stage_options, runtime_options


def pipeline_config_from_flags(flag_values: flags.FlagValues, beam_args: list[str], *,
                               defaults: Mapping[str, Any] | None = None,
                               **overrides: Any) -> pipeline_lib.PipelineConfig:
  """Builds the PipelineConfig from the parsed flags.

  Args:
    flag_values: FlagValues with `define_flags`' flags, parsed.
    beam_args: the arguments that are no flag of ours (ingest's Beam options).
    defaults: flag name -> value used when the flag is not on the command line (the demo's settings).
    **overrides: PipelineConfig fields that replace what the flags say.

  Raises:
    app.UsageError: a bad --set, an unknown name in `defaults`, no --model, no data, ... (saying what to give).
  """
  defaults = dict(defaults or {})
  unknown = sorted(name for name in defaults if name not in flag_values)
  if unknown:
    raise app.UsageError(f"defaults for unknown flags {unknown}")
  resolved = _Resolved(flag_values, parse_set_options(flag_values["set"].value, flag_values), defaults)
  chosen: dict[str, dict[str, Any]] = {"ingest": {"beam_args": tuple(beam_args)}}
  for stage in pipeline_lib.ALL_STAGE_NAMES:
    given = None if stage == TRAIN else resolved.given  # train's are all passed: its cache key names them all
    chosen.setdefault(stage, {}).update(options.values_from_flags(
        stage_config_class(stage), flag_values, prefix=stage_prefix(stage), exclude=pipeline_lib.WIRED_FIELDS[stage],
        given=given, value_of=resolved.__getitem__))
  stage_options, runtime_options = split_stage_options(chosen)
  train = stage_options.pop(TRAIN)
  family, preset, steps = train.pop("family"), train.pop("preset"), train.pop("steps")
  stage_options[TRAIN] = train
  if family is None:
    raise app.UsageError("--model is required: one of unit, munit, ugatit")
  if resolved["checkpoint"] is not None:  # one choice for both stages that read the trained model
    for stage in ("evaluate", "export"):
      stage_options.setdefault(stage, {}).setdefault("checkpoint", resolved["checkpoint"])
  if "eval_images" in resolved.assigned or flag_values["eval_images"].present:
    stage_options.setdefault("evaluate", {}).setdefault("num_images", resolved["eval_images"])
  pipeline_root = overrides.get("pipeline_root", resolved["pipeline_root"])
  serving_root = overrides.get("serving_root") or resolved["serving_root"] or os.path.join(pipeline_root, "serving")
  model_name = resolved["model_name"]
  if resolved["compare_with_served"]:
    stage_options.setdefault("evaluate", {}).setdefault("baseline_model_dir",
                                                        os.path.join(serving_root, model_name or family))
  model_overrides = {name: resolved[name] for name in model_flags()
                     if name != "image_size" and resolved[name] is not None}
  image_size = resolved["image_size"]
  if image_size is None:  # the preset's, so that validate and ingest check and store the size training crops
    import models  # pylint: disable=import-outside-toplevel
    try:
      image_size = models.get_config(family, preset).image_size
    except ValueError as e:
      raise app.UsageError(str(e)) from e
  config = dict(
      pipeline_root=pipeline_root, serving_root=serving_root,
      domain_a=resolved["domain_a"], domain_b=resolved["domain_b"], dataset_dir=resolved["dataset_dir"],
      family=family, preset=preset, image_size=image_size, steps=steps, model_overrides=model_overrides,
      model_name=model_name, stage_options=stage_options, runtime_options=runtime_options,
      model_dir=resolved["model_dir"])
  config.update(overrides)
  try:
    return pipeline_lib.PipelineConfig(**config)
  except ValueError as e:
    raise app.UsageError(str(e)) from e


def quiet_tensorflow_logs(flag_values: flags.FlagValues = FLAGS) -> None:
  """Keeps TensorFlow's INFO lines (checkpoint sharding, ...) out of the progress unless -v/--verbosity is given."""
  if not flag_values["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def parse_flags(argv: list[str]) -> list[str]:
  """Parses our flags; returns argv[0] + every unknown argument (handed to Beam)."""
  return FLAGS(argv, known_only=True)


# The flags defined above belong to the entry point that calls define_flags (its --help lists them).
flags.disclaim_key_flags()
