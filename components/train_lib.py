"""The train stage's library: `run(TrainConfig) -> TrainResult`; `python -m components.train` is its entry point.

This module says what a run is: the settings (`TrainConfig`, one flag each), their checks, the family's model
config (preset + overrides, `build_model_config`) with the learning-rate schedule scaled to the run's length
(`schedule_for_run`), the check that model_dir holds a run these settings can resume, and the distribution
strategy. The training loop itself, and the model_dir it writes, is the trainer's: `components.trainer_loop.fit`
(built from the pieces in components.trainer).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import tensorflow as tf

import models
from components import metrics as metrics_lib
from components import trainer
from components import trainer_loop
from components.errors import StageError
from components.model_dir import CHECKPOINT_DIR, CONFIG_FILE


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything one training run needs.

  Attributes:
    family: "unit", "munit" or "ugatit".
    data_dir: ingest's output_dir (domain_a/, domain_b/ TFRecords).
    model_dir: where config.json, checkpoints/, logs/ and samples/ go; resumed from when it has checkpoints.
    preset: the family preset to start from ("paper", "tiny", ...).
    model_overrides: model-config field -> value applied on top of the preset (loss weights, lr, betas,
      weight_decay, lr policy fields, image_size, batch_size (global), ...); a name the family lacks is an error.
    steps: total number of training steps (global batches); None -> the model config's max_iter.
    checkpoint_every_steps, keep_checkpoints: checkpoint interval and how many to keep.
    summary_every_steps: interval of progress lines and TensorBoard scalars.
    sample_every_steps: interval of sample grids (TensorBoard + samples/*.png); 0 disables them.
    num_samples: examples (grid columns) in the fixed sample batch.
    seed: seeds weights, the two input orders (domain B gets seed + 1) and the run's random state (the
      checkpointed tf.random.Generator of trainer.make_rng, from which every random draw of a step derives).
    mixed_precision: Keras "mixed_bfloat16" policy (bfloat16 compute, float32 variables, no loss scaling).
    jit_compile: XLA-compile the per-replica train step.
    strategy: "auto", "default", "mirrored" or "multi_worker" (see components.trainer.create_strategy).
    cpu_replicas: split the CPU into this many logical devices (before TF initializes devices).
    eval_every_steps: in-training evaluation interval (0: off; also run at the last step when on).
    eval_images: test images per domain of the held-out slice (the first ones in file order: deterministic).
    best_metric: the metric the best checkpoint is chosen by (components.metrics.METRIC_MODES: kid, fid,
      cycle_l1 lower is better; cycle_psnr, MUNIT's diversity_l1 / diversity_lpips higher is better).
    eval_feature_extractor: KID/FID features of the in-training evaluation ("hed": offline, bundled; "auto",
      "inception" as components.evaluate).
    ema_decay: generator weight EMA decay (0: off); when on, evaluation, evaluate and export use the averages.
  Each field is a flag of `python -m components.train` and of the pipeline (components.options); fields marked
  `runtime` say how to run, not what to compute, and are not part of the pipeline's cache key.
  """

  family: str = dataclasses.field(metadata={"flag": "model", "choices": models.FAMILY_NAMES})
  data_dir: str
  model_dir: str
  preset: str = "paper"
  model_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict, metadata={"flag": None})
  steps: int | None = None
  checkpoint_every_steps: int = dataclasses.field(default=1000, metadata={"runtime": True})
  keep_checkpoints: int = 5
  summary_every_steps: int = dataclasses.field(default=100, metadata={"runtime": True})
  sample_every_steps: int = dataclasses.field(default=1000, metadata={"runtime": True})
  num_samples: int = 4
  seed: int = 0
  mixed_precision: bool = False
  jit_compile: bool = dataclasses.field(default=False, metadata={"runtime": True})
  strategy: str = dataclasses.field(default="auto", metadata={"runtime": True, "choices": trainer.STRATEGIES})
  cpu_replicas: int = dataclasses.field(default=1, metadata={"runtime": True})
  eval_every_steps: int = 0
  eval_images: int = 16
  best_metric: str = dataclasses.field(default="kid", metadata={"choices": tuple(metrics_lib.METRIC_MODES)})
  eval_feature_extractor: str = dataclasses.field(default="hed", metadata={"choices": metrics_lib.FEATURE_EXTRACTORS})
  ema_decay: float = 0.0

  def to_dict(self) -> dict[str, Any]:
    """JSON-friendly dict of every field (the "train" section of config.json)."""
    out = dataclasses.asdict(self)
    out["model_overrides"] = dict(self.model_overrides)
    return out


def build_model_config(family: models.Family, preset: str, overrides: Mapping[str, Any]):
  """Returns the family's `preset` config with `overrides` applied; names the offending setting on error."""
  if preset not in family.presets:
    raise StageError(f"Unknown --preset={preset!r} for --model={family.name}; "
                     f"choose one of {', '.join(sorted(family.presets))}.")
  base = family.presets[preset]
  fields = [f.name for f in dataclasses.fields(base)]
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise StageError(f"--{', --'.join(unknown)} {'is not a setting' if len(unknown) == 1 else 'are not settings'} "
                     f"of the {family.name} model; remove {'it' if len(unknown) == 1 else 'them'} or use a "
                     f"model that has {'it' if len(unknown) == 1 else 'them'}. {family.name} settings: "
                     f"{', '.join(fields)}.")
  try:
    return base.replace(**overrides)
  except (TypeError, ValueError) as e:
    raise StageError(f"Invalid {family.name} setting: {e}") from e


SCHEDULE_FIELDS = ("max_iter", "step_size")  # derived from the run's length: not part of the resume check
SCHEDULE_RULE = ("the preset's schedule is scaled to the run's length like the official trainers' iteration count: "
                 "max_iter = steps (U-GAT-IT's linear decay starts at steps // 2 and reaches 0 at steps); "
                 "step_size = round(preset step_size * steps / preset max_iter) for lr_policy 'step' "
                 "(MUNIT/UNIT); a step_size given explicitly is kept as given")


def schedule_for_run(preset_config, model_config, overrides: Mapping[str, Any], steps: int | None):
  """Scales the learning-rate schedule of `model_config` to the run's length (see SCHEDULE_RULE).

  Args:
    preset_config: the preset the run starts from (its max_iter is what its step_size was chosen for).
    model_config: the preset with the user's overrides (build_model_config).
    overrides: the user's model overrides (an explicit step_size is not rescaled).
    steps: the run's --steps (None: model_config.max_iter, i.e. the preset's or --max_iter).
  Returns:
    (effective model config, record) where record says the rule, the run's steps, the preset's max_iter and the
    requested and effective values of the schedule fields (written to config.json under "schedule").
  """
  run_steps = int(model_config.max_iter if steps is None else steps)
  reference = int(preset_config.max_iter)
  changes: dict[str, Any] = {"max_iter": max(run_steps, 2)}
  policy = getattr(model_config, "lr_policy", "constant")
  if policy == "step" and hasattr(model_config, "step_size") and "step_size" not in overrides:
    changes["step_size"] = max(1, int(round(model_config.step_size * run_steps / reference)))
  effective = model_config.replace(**changes)
  fields = [f for f in SCHEDULE_FIELDS if hasattr(model_config, f)]
  record = {"rule": SCHEDULE_RULE, "lr_policy": policy, "steps": run_steps, "preset_max_iter": reference,
            "scale": run_steps / reference,
            "requested": {f: getattr(model_config, f) for f in fields},
            "effective": {f: getattr(effective, f) for f in fields},
            "explicit": sorted(f for f in fields if f in overrides)}
  if policy == "linear":
    record["decay_starts_at"] = effective.max_iter // 2
  return effective, record


def _validate(config: TrainConfig) -> None:
  """Raises StageError for settings that cannot work."""
  if config.family not in models.family_names():
    raise StageError(f"Unknown --model={config.family!r}; choose one of {', '.join(models.family_names())}.")
  for name in ("checkpoint_every_steps", "keep_checkpoints", "summary_every_steps", "num_samples",
               "cpu_replicas"):
    if getattr(config, name) < 1:
      raise StageError(f"--{name} must be >= 1, got {getattr(config, name)}.")
  if config.sample_every_steps < 0:
    raise StageError(f"--sample_every_steps must be >= 0 (0 disables samples), got {config.sample_every_steps}.")
  if config.steps is not None and config.steps < 0:
    raise StageError(f"--steps must be >= 0, got {config.steps}.")
  if not config.model_dir:
    raise StageError("--model_dir is required: where checkpoints, logs, samples and config.json are written.")
  if config.eval_every_steps < 0:
    raise StageError(f"--eval_every_steps must be >= 0 (0 disables in-training evaluation), got "
                     f"{config.eval_every_steps}.")
  if config.eval_images < 2:
    raise StageError(f"--eval_images must be >= 2 (KID/FID need two images per set), got {config.eval_images}.")
  if config.best_metric not in metrics_lib.METRIC_MODES:
    raise StageError(f"--best_metric must be one of {', '.join(metrics_lib.METRIC_MODES)}, got "
                     f"{config.best_metric!r}.")
  if config.best_metric.startswith("diversity") and not models.get_family(config.family).traits.multimodal:
    raise StageError(f"--best_metric={config.best_metric} is measured for multimodal families only (MUNIT only of "
                     f"the built-in ones; {config.family} draws no styles); choose kid, fid, cycle_l1 or cycle_psnr.")
  if config.eval_feature_extractor not in metrics_lib.FEATURE_EXTRACTORS:
    raise StageError(f"--eval_feature_extractor must be one of {metrics_lib.FEATURE_EXTRACTORS}, got "
                     f"{config.eval_feature_extractor!r}.")
  if not 0.0 <= config.ema_decay < 1.0:
    raise StageError(f"--ema_decay must be in [0, 1) (0 disables the generator EMA), got {config.ema_decay}.")


def _check_resumable(model_dir: str, family: str, model_config, ema_decay: float = 0.0) -> None:
  """Raises StageError when model_dir holds a different family or model config than the one requested, or
  when the generator EMA would be switched on or off in the middle of a run."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return
  with tf.io.gfile.GFile(path) as f:
    previous = json.load(f)
  if previous.get("family") != family:
    raise StageError(f"{model_dir} holds a {previous.get('family')!r} model, not {family!r}: use a new "
                     f"--model_dir, or --model={previous.get('family')} to resume it.")
  current = json.loads(json.dumps(model_config.to_dict()))
  before = previous.get("model", {})
  changed = sorted(k for k in set(current) | set(before)
                   if current.get(k) != before.get(k) and k not in SCHEDULE_FIELDS)
  if changed:
    diffs = ", ".join(f"{k}: {before.get(k)!r} -> {current.get(k)!r}" for k in changed)
    raise StageError(f"{model_dir} was trained with a different {family} config ({diffs}). Resume with the "
                     f"original settings (see {path}) or use a new --model_dir.")
  before_ema = float(previous.get("train", {}).get("ema_decay", 0.0) or 0.0)
  if (before_ema > 0) != (ema_decay > 0) and tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR)):
    raise StageError(f"{model_dir} was trained with --ema_decay={before_ema:g}; the generator EMA cannot be "
                     f"switched {'on' if ema_decay > 0 else 'off'} when resuming. Resume with "
                     f"--ema_decay={before_ema:g} or use a new --model_dir.")


def run(config: TrainConfig, *, family: models.Family | None = None) -> trainer_loop.TrainResult:
  """Trains (or resumes) the model described by `config`; the loop is components.trainer_loop.fit.

  Args:
    config: the run's settings.
    family: the Family to train; None -> models.get_family(config.family). (Tests pass a Family whose
      train_step is wrapped, e.g. to plant a non-finite loss.)
  Returns:
    TrainResult. Raises StageError on bad settings or data, on a non-finite loss (the last good checkpoint is
    kept), and when model_dir holds an incompatible model.
  """
  _validate(config)
  family = family or models.get_family(config.family)
  requested_config = build_model_config(family, config.preset, config.model_overrides)
  total_steps = requested_config.max_iter if config.steps is None else config.steps
  model_config, schedule = schedule_for_run(family.presets[config.preset], requested_config,
                                            config.model_overrides, config.steps)
  strategy = trainer.create_strategy(config.strategy, config.cpu_replicas)
  _check_resumable(config.model_dir, family.name, model_config, config.ema_decay)
  if model_config.batch_size % strategy.num_replicas_in_sync:
    raise StageError(f"--batch_size={model_config.batch_size} (global) must be a multiple of the "
                     f"{strategy.num_replicas_in_sync} replicas.")
  return trainer_loop.fit(config, family, model_config, schedule, total_steps, strategy)
