"""The pipeline as data: which stages run, in what order, wired to which upstream outputs.

`create_pipeline(config)` is pure wiring in the TFX-template sense: it imports no stage, creates no file and
starts nothing; it returns a `Pipeline` value that `pipelines.runner.run_pipeline` executes. Each `Stage`
names the library module whose `run(config) -> result` does the work (`components.<stage>_lib`), how to
build that module's frozen `<Stage>Config` (`config_class`, a mapping from config fields to upstream outputs
or source folders, the field that receives the execution's output directory, and fixed parameters), and
whether an interrupted execution is resumed in place (training).

    ingest -> validate -> train -> evaluate -> export -> infra_validate -> push

A stage's outputs are the fields of its result dataclass (plus "output_dir", the execution directory);
`Output("train", "model_dir")` refers to one of them. `Source(path)` is a folder the user handed in.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping, Union


@dataclasses.dataclass(frozen=True)
class Source:
  """A folder or file from outside the pipeline (fingerprinted by path + size + mtime)."""
  path: str


@dataclasses.dataclass(frozen=True)
class Output:
  """The output `key` of the upstream stage `stage` (a field of its result, or "output_dir")."""
  stage: str
  key: str


InputRef = Union[Source, Output]


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of the pipeline: spec (inputs, parameters) split from the executor (`module.run`).

  Attributes:
    name: stage name; outputs go to `<pipeline_root>/<name>/<execution_id>/`.
    module: dotted name of the library module holding `run(config) -> result` and `config_class`.
    config_class: name of the frozen config dataclass in `module`, e.g. "TrainConfig".
    inputs: config field -> `Source` or `Output`; the resolved path/value is passed in that field and its
      fingerprint is part of the cache key.
    output_field: config field that receives the execution directory (None: the stage writes elsewhere,
      e.g. push into the serving root; the execution directory still exists for the record).
    parameters: config field -> value, part of the cache key.
    runtime: config field -> value passed to the config but NOT part of the cache key (how to run, not
      what to compute: the fields marked `metadata={"runtime": True}` in the config dataclass, e.g. Beam
      runner options, the distribution strategy; pipelines.cli sorts the options by that marker).
    after: stages that must succeed first although no output of theirs is consumed (validate gates train).
    resumable: an interrupted execution with the same fingerprint is continued in its own directory
      (the trainer resumes from its latest checkpoint there) instead of starting in a new one.
  """
  name: str
  module: str
  config_class: str
  inputs: Mapping[str, InputRef]
  output_field: str | None
  parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  runtime: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  after: tuple[str, ...] = ()
  resumable: bool = False

  @property
  def upstream(self) -> tuple[str, ...]:
    """Names of the stages this one depends on, in declaration order, without repeats."""
    names = [ref.stage for ref in self.inputs.values() if isinstance(ref, Output)] + list(self.after)
    return tuple(dict.fromkeys(names))

  def executor(self) -> Callable[[Any], Any]:
    """Imports `module` and returns its `run` function."""
    return getattr(importlib.import_module(self.module), "run")

  def build_config(self, inputs: Mapping[str, Any], output_dir: str) -> Any:
    """Builds the stage's `<Stage>Config` from resolved inputs, its output dir and its parameters.

    Raises:
      ValueError: when a wired field is not a field of the config class (the wiring is out of date).
    """
    config_cls = getattr(importlib.import_module(self.module), self.config_class)
    values = {**self.parameters, **self.runtime, **inputs}
    if self.output_field:
      values[self.output_field] = output_dir
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(
          f"stage {self.name!r}: {self.module}.{self.config_class} has no field(s) {unknown}; "
          f"its fields are {sorted(known)}. Fix the option names (--set {self.name}.FIELD=VALUE).")
    return config_cls(**values)


@dataclasses.dataclass(frozen=True)
class Pipeline:
  """An ordered, validated list of stages under one pipeline root."""
  name: str
  root: str
  stages: tuple[Stage, ...]

  def __post_init__(self):
    seen = set()
    for stage in self.stages:
      if stage.name in seen:
        raise ValueError(f"pipeline {self.name!r}: stage {stage.name!r} appears twice")
      missing = [u for u in stage.upstream if u not in seen]
      if missing:
        raise ValueError(f"pipeline {self.name!r}: stage {stage.name!r} needs {missing}, which must come "
                         "earlier in the stage list")
      seen.add(stage.name)

  def stage(self, name: str) -> Stage:
    """The stage called `name`; KeyError when there is none."""
    for stage in self.stages:
      if stage.name == name:
        return stage
    raise KeyError(f"pipeline {self.name!r} has no stage {name!r}; stages: {[s.name for s in self.stages]}")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything a pipeline run is parameterized by (built from flags by pipelines.cli for local and the demo).

  Attributes:
    pipeline_root: where every stage's outputs and the lineage store go.
    serving_root: TF Serving model root that push writes `<model_name>/<version>/` into.
    domain_a, domain_b: the two source image folders, or
    dataset_dir: a CycleGAN-layout folder (trainA, trainB, testA, testB) instead of domain_a/domain_b.
    family: the model family, "unit", "munit" or "ugatit" (the --model flag).
    preset: the model preset ("tiny", "paper", ...).
    image_size: training crop size; None keeps the preset's (then validate's and ingest's defaults apply).
      When set it also sets validate's minimum image size and ingest's stored size (286/256 of it, the
      papers' resize-then-crop ratio) unless those are given in stage_options.
    steps: training steps; None -> the preset's max_iter.
    model_overrides: model-config field -> value (loss weights, lr, batch_size, ...).
    model_name: the served model's name (default: the model family).
    stage_options: stage name -> {config field: value}: what to compute (part of the cache key).
    runtime_options: stage name -> {config field: value}: how to run it, NOT part of the cache key (Beam
      options for ingest, the distribution strategy and CPU replicas for train).
    pipeline_name: recorded in the lineage store.
    model_dir: an existing model_dir (components.import_official's, or an earlier training's) to evaluate,
      export, validate and push instead of training one: the `import_model` node replaces `train`.
  """
  pipeline_root: str
  serving_root: str
  domain_a: str | None = None
  domain_b: str | None = None
  dataset_dir: str | None = None
  family: str = "munit"
  preset: str = "tiny"
  image_size: int | None = None
  steps: int | None = None
  model_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  model_name: str | None = None
  stage_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  runtime_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  pipeline_name: str = "i2i-translate"
  model_dir: str | None = None

  def __post_init__(self):
    if self.dataset_dir and (self.domain_a or self.domain_b):
      raise ValueError("give either --dataset_dir (CycleGAN layout) or --domain_a and --domain_b, not both")
    if not self.dataset_dir and not (self.domain_a and self.domain_b):
      raise ValueError("no data: give --dataset_dir (a folder with trainA/ trainB/ [testA/ testB/]) or both "
                       "--domain_a and --domain_b (two folders of images)")
    unknown = sorted((set(self.stage_options) | set(self.runtime_options)) - set(ALL_STAGE_NAMES))
    if unknown:
      raise ValueError(f"options for unknown stage(s) {unknown}; the stages are {list(ALL_STAGE_NAMES)}")
    if self.image_size is not None and self.image_size < 1:
      raise ValueError(f"--image_size must be >= 1, got {self.image_size}")


STAGE_NAMES = ("ingest", "validate", "train", "evaluate", "export", "infra_validate", "push")
IMPORT_STAGE = "import_model"  # replaces train when PipelineConfig.model_dir is given
ALL_STAGE_NAMES = STAGE_NAMES + (IMPORT_STAGE,)

# Stage name -> (library module with run(config), its config dataclass).
STAGE_CONFIGS = {
    "ingest": ("components.ingest_lib", "IngestConfig"),
    "validate": ("components.validate_lib", "ValidateConfig"),
    "train": ("components.train_lib", "TrainConfig"),
    IMPORT_STAGE: ("components.import_model_lib", "ImportModelConfig"),
    "evaluate": ("components.evaluate_lib", "EvaluateConfig"),
    "export": ("components.export_lib", "ExportConfig"),
    "infra_validate": ("components.infra_validate_lib", "InfraValidateConfig"),
    "push": ("components.push_lib", "PushConfig"),
}
# Config fields that create_pipeline wires (upstream outputs, source folders, the execution directory): every
# other field of a stage's config is a stage option (PipelineConfig.stage_options / runtime_options; on the
# command line, pipelines.cli's generated flags).
WIRED_FIELDS = {
    "ingest": ("output_dir", "domain_a", "domain_b", "dataset_dir"),
    "validate": ("data_dir", "output_dir"),
    "train": ("data_dir", "model_dir"),
    IMPORT_STAGE: ("model_dir", "output_dir"),
    "evaluate": ("model_dir", "data_dir", "output_dir"),
    "export": ("model_dir", "stats_path", "metrics_path", "output_dir"),
    "infra_validate": ("model_dir", "output_dir"),
    "push": ("model_dir", "evaluation_dir", "infra_validation_dir"),
}


def create_pipeline(config: PipelineConfig) -> Pipeline:
  """Wires the seven stages for `config`. Pure: no imports of stages, no files, no processes.

  Returns:
    a Pipeline whose stages run in order ingest, validate, train, evaluate, export, infra_validate, push
    (with `config.model_dir`, import_model in place of train).
  """
  options = {name: dict(config.stage_options.get(name, {})) for name in ALL_STAGE_NAMES}
  runtime = {name: dict(config.runtime_options.get(name, {})) for name in ALL_STAGE_NAMES}
  model_overrides = dict(config.model_overrides)
  if config.image_size is not None:
    options["ingest"].setdefault("load_size", -(-config.image_size * 286 // 256))
    options["validate"].setdefault("image_size", config.image_size)
    model_overrides.setdefault("image_size", config.image_size)
  train = {"family": config.family, "preset": config.preset, **options["train"]}
  if model_overrides:
    train["model_overrides"] = {**model_overrides, **train.get("model_overrides", {})}
  if config.steps is not None:
    train.setdefault("steps", config.steps)
  if config.dataset_dir:
    sources = {"dataset_dir": Source(config.dataset_dir)}
  else:
    sources = {"domain_a": Source(config.domain_a), "domain_b": Source(config.domain_b)}
  data = Output("ingest", "output_dir")
  trained = IMPORT_STAGE if config.model_dir else "train"
  model_dir = Output(trained, "model_dir")
  saved_model = Output("export", "path")
  model_name = config.model_name or config.family

  def stage(name, inputs, output_field, parameters, **kwargs):
    """A Stage `name` (module and config class from STAGE_CONFIGS) with this pipeline's runtime options."""
    module, config_class = STAGE_CONFIGS[name]
    return Stage(name, module, config_class, inputs=inputs, output_field=output_field, parameters=parameters,
                 runtime=runtime[name], **kwargs)

  stages = (
      stage("ingest", sources, "output_dir", options["ingest"]),
      stage("validate", {"data_dir": data}, "output_dir", options["validate"]),
      stage(IMPORT_STAGE, {"model_dir": Source(config.model_dir)}, "output_dir", options[IMPORT_STAGE])
      if config.model_dir else
      stage("train", {"data_dir": data}, "model_dir", train, after=("validate",), resumable=True),
      stage("evaluate", {"model_dir": model_dir, "data_dir": data}, "output_dir", options["evaluate"]),
      stage("export", {"model_dir": model_dir, "stats_path": Output("ingest", "stats_path"),
                       "metrics_path": Output("evaluate", "metrics_path")}, "output_dir",
            {"model_name": model_name, **options["export"]}),
      stage("infra_validate", {"model_dir": saved_model}, "output_dir",
            {"model_name": model_name, **options["infra_validate"]}),
      stage("push", {"model_dir": saved_model, "evaluation_dir": Output("evaluate", "output_dir"),
                     "infra_validation_dir": Output("infra_validate", "output_dir")}, None,
            {"serving_root": config.serving_root, "model_name": model_name, **options["push"]}),
  )
  return Pipeline(name=config.pipeline_name, root=config.pipeline_root, stages=stages)
