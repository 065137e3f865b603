"""The train stage: a family's model trained on ingest's TFRecords, with checkpoints, logs and samples.

`run(TrainConfig) -> TrainResult` is the library; `python -m components.train` is its absl entry point.
model_dir layout (docs/INTERFACES.md): `config.json`, `checkpoints/` (tf.train.CheckpointManager, one
checkpoint per `checkpoint_every_steps`, named `ckpt-<step>`), `checkpoints/best/` (the best checkpoint by
`best_metric` and `best.json`, when `eval_every_steps` > 0), `logs/` (TensorBoard), `samples/step_XXXXXXXX.png`.

The loop (one iteration = one global batch):
  1. next (x_a [B, S, S, 3], x_b [B, S, S, 3]) from domains A and B, shuffled independently (different seeds)
     and zipped: the data are unpaired;
  2. `strategy.run(family.train_step)` (D update, then G update) and SUM-reduce the per-replica losses;
  3. a non-finite loss stops the run (StageError naming the step and the term) without saving that state;
  3b. with `ema_decay` > 0 the generator EMA is updated inside the same tf.function (trainer.GeneratorEMA);
  4. every interval: progress line + TensorBoard scalars, sample grid, in-training evaluation (the evaluate
     stage's metrics on the first `eval_images` test images, TensorBoard `eval/<metric>`, the best checkpoint
     kept in checkpoints/best/), checkpoint; SIGTERM/SIGINT save and stop.
Rerunning the same command resumes from the newest checkpoint in model_dir (model, optimizers, step and the RNG
state of the train step's random draws; the input pipeline restarts with a seed derived from the step, so resumed
runs see fresh batches rather than replaying the first ones).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Any, Mapping

import keras
import numpy as np
import tensorflow as tf

import models
from components import data as data_lib
from components import measurement
from components import metrics as metrics_lib
from components import trainer
from components.errors import StageError
# The model_dir format this stage writes lives in the contract module (readers import it, not this stage); the
# names stay importable from here for the loop below and for benchmarks.
from components.model_dir import (BEST_DIR, CHECKPOINT_CHOICES, CHECKPOINT_DIR, CONFIG_FILE,  # noqa: F401
                                  LOG_DIR, SAMPLE_DIR, TrainedModel, best_checkpoint_dir, load_model_dir,
                                  load_trained_model, model_checkpoint, read_config, restore_model)


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


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a training run produced.

  Attributes:
    model_dir: the model directory.
    family: the family name.
    start_step: the step the run started from (> 0 when resumed).
    step: the last completed (and checkpointed) step.
    checkpoint: path prefix of the newest checkpoint (None when no step was ever run).
    losses: the last step's loss terms (global-batch means).
    stopped_by: None when all steps ran, else the signal name ("SIGTERM", "SIGINT") that stopped the run.
    images_per_sec: global images per second over this run (excluding the first step's tracing).
    num_replicas: replicas in sync (all workers).
    best: the best checkpoint's record (checkpoints/best/best.json: step, metric, mode, value, metrics,
      checkpoint) when in-training evaluation is on, else None.
  """

  model_dir: str
  family: str
  start_step: int
  step: int
  checkpoint: str | None
  losses: dict[str, float]
  stopped_by: str | None
  images_per_sec: float
  num_replicas: int
  best: dict | None = None


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


def _input_iterator(strategy, config: TrainConfig, model_config, start_step: int, transform):
  """Distributed iterator over zipped (x_a, x_b) global batches; order seeded by (seed, start_step)."""
  seed = config.seed + 1_000_003 * start_step

  def domain(name, domain_seed):
    try:
      return data_lib.make_dataset(config.data_dir, name, "train", model_config.image_size,
                                   model_config.batch_size, training=True, seed=domain_seed, transform=transform)
    except ValueError as e:
      raise StageError(f"Cannot read training data: {e}") from e

  ds = tf.data.Dataset.zip((domain("a", seed), domain("b", seed + 1)))
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  ds = ds.with_options(options)
  return iter(strategy.experimental_distribute_dataset(ds))


def _sample_batch(config: TrainConfig, model_config, transform) -> tuple[tf.Tensor, tf.Tensor]:
  """The fixed sample batch: the first `num_samples` test images of each domain (train images if no test split)."""
  batch = []
  for name in ("a", "b"):
    for split in ("test", "train"):
      try:
        ds = data_lib.make_dataset(config.data_dir, name, split, model_config.image_size, config.num_samples,
                                   training=False, transform=transform)
      except ValueError:
        continue
      images = next(iter(ds), None)
      if images is not None:
        batch.append(images)
        break
    else:
      raise StageError(f"No images for domain {name} in {config.data_dir}: run components.ingest first.")
  n = min(int(batch[0].shape[0]), int(batch[1].shape[0]))
  return batch[0][:n], batch[1][:n]


def _task_id(strategy) -> int:
  """This worker's task id (0 outside multi-worker)."""
  resolver = getattr(strategy.extended, "_cluster_resolver", None)
  return int(resolver.task_id or 0) if resolver is not None and resolver.task_type else 0


def _scalars(losses: Mapping[str, float], model, gen_optimizer, dis_optimizer) -> dict[str, float]:
  """TensorBoard scalars besides timing: loss/<term>, lr/gen, lr/dis and (U-GAT-IT) rho/mean|min|max."""
  out = {f"loss/{k}": v for k, v in losses.items()}
  out["lr/gen"] = float(tf.convert_to_tensor(gen_optimizer.learning_rate))  # a MirroredVariable needs converting
  out["lr/dis"] = float(tf.convert_to_tensor(dis_optimizer.learning_rate))
  for stat, value in trainer.variable_stats(model.variables, "rho").items():
    out[f"rho/{stat}"] = value
  return out


def run(config: TrainConfig, *, family: models.Family | None = None) -> TrainResult:
  """Trains (or resumes) the model described by `config`; see the module docstring for the loop.

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
  chief = trainer.is_chief(strategy)
  _check_resumable(config.model_dir, family.name, model_config, config.ema_decay)
  if model_config.batch_size % strategy.num_replicas_in_sync:
    raise StageError(f"--batch_size={model_config.batch_size} (global) must be a multiple of the "
                     f"{strategy.num_replicas_in_sync} replicas.")

  previous_policy = keras.mixed_precision.global_policy()
  if config.mixed_precision:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
      model = family.build_model(model_config)
      gen_optimizer, dis_optimizer = family.build_optimizers(model_config)
      gen_optimizer.build(model.generator_variables)
      dis_optimizer.build(model.discriminator_variables)
      step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      ema = trainer.GeneratorEMA(model.generator_variables, config.ema_decay) if config.ema_decay else None
    rng = trainer.make_rng(strategy, config.seed)
    ema_objects = {"generator_ema": ema.averages} if ema else {}
    checkpoint = model_checkpoint(model, gen_optimizer=gen_optimizer, dis_optimizer=dis_optimizer, step=step_var,
                                  rng=rng, **ema_objects)
    keeper = trainer.CheckpointKeeper(checkpoint, os.path.join(config.model_dir, CHECKPOINT_DIR),
                                      max_to_keep=config.keep_checkpoints, chief=chief,
                                      task_id=_task_id(strategy))
    try:
      last_checkpoint = keeper.restore_latest()
    except (AssertionError, ValueError) as e:
      raise StageError(f"The checkpoint in {config.model_dir} does not fit this {family.name} model ({e}); "
                       f"resume with the original settings or use a new --model_dir.") from e
    start_step = int(step_var.numpy())
    best_keeper = None
    if config.eval_every_steps:
      best_keeper = trainer.BestCheckpointKeeper(
          model_checkpoint(model, step=step_var, **ema_objects),
          os.path.join(config.model_dir, CHECKPOINT_DIR, BEST_DIR), metric=config.best_metric,
          mode=metrics_lib.METRIC_MODES[config.best_metric], chief=chief, task_id=_task_id(strategy))

    if chief:
      tf.io.gfile.makedirs(os.path.join(config.model_dir, SAMPLE_DIR))
      trainer.write_json(os.path.join(config.model_dir, CONFIG_FILE),
                         {"family": family.name, "preset": config.preset, "model": model_config.to_dict(),
                          "schedule": schedule, "train": config.to_dict()})
      writer = tf.summary.create_file_writer(os.path.join(config.model_dir, LOG_DIR))
    else:
      writer = tf.summary.create_noop_writer()

    if start_step >= total_steps:
      return TrainResult(config.model_dir, family.name, start_step, start_step, last_checkpoint, {}, None, 0.0,
                         strategy.num_replicas_in_sync, best_keeper.record if best_keeper else None)

    iterator = _input_iterator(strategy, config, model_config, start_step, family.transform)
    sample_a, sample_b = (_sample_batch(config, model_config, family.transform) if config.sample_every_steps
                          else (None, None))
    global_batch = model_config.batch_size
    step_fn = trainer.make_distributed_step(
        strategy, lambda x_a, x_b, seed: family.train_step(model, gen_optimizer, dis_optimizer, x_a, x_b,
                                                           global_batch, seed=seed),
        jit_compile=config.jit_compile, rng=rng, after_step=ema.update if ema else None)
    evaluator = InTrainingEvaluation(config, family, model_config, model) if config.eval_every_steps else None

    def evaluate(step):
      """Measures the held-out slice (EMA weights when on), logs eval/<metric>, keeps the best checkpoint."""
      start = time.perf_counter()
      with (ema.applied() if ema else contextlib.nullcontext()):
        values = evaluator.measure()
      seconds = time.perf_counter() - start
      with writer.as_default(step=step):
        for name, value in values.items():
          tf.summary.scalar(f"eval/{name}", value)
        tf.summary.scalar("perf/eval_seconds", seconds)
      value = values.get(config.best_metric)
      improved = best_keeper.improves(value)
      if improved:
        best_keeper.save(step, values)
      if chief:
        shown = ", ".join(f"{k} {values[k]:.4g}" for k in ("kid", "fid", "cycle_psnr", "diversity_l1") if k in values)
        progress.note(f"eval at step {step}: {shown} ({seconds:.1f} s)"
                      + (f"; new best {config.best_metric} {value:.4g}" if improved else ""))

    def write_samples(step):
      rows = family.sample_rows(model, sample_a, sample_b)
      grid = trainer.sample_grid(rows)
      trainer.write_png(os.path.join(config.model_dir, SAMPLE_DIR, f"step_{step:08d}.png"), grid)
      with writer.as_default(step=step):
        tf.summary.image("samples", grid[None])

    progress = trainer.Progress(total_steps)
    if chief:
      progress.note(f"train: {family.name} on {strategy.num_replicas_in_sync} replica(s), global batch "
                    f"{global_batch}, " + (f"resuming from step {start_step} ({last_checkpoint})" if last_checkpoint
                                           else "starting at step 0") + f", {total_steps} steps in total")
    step = start_step
    losses: dict[str, float] = {}
    sums: dict[str, float] = {}
    interval_steps, interval_start = 0, time.perf_counter()
    timed_steps, timed_seconds = 0, 0.0
    stopped_by = None
    with trainer.StopRequest() as stop:
      while step < total_steps:
        t0 = time.perf_counter()
        losses = {k: float(v) for k, v in step_fn(iterator).items()}
        bad = sorted(k for k, v in losses.items() if not np.isfinite(v))
        if bad:
          raise StageError(
              f"Training diverged at step {step + 1}: loss {bad[0]} = {losses[bad[0]]} is not finite "
              f"(all terms: {', '.join(f'{k}={v:.4g}' for k, v in losses.items())}). That state was not saved; the "
              f"last good checkpoint is {keeper.latest or 'none'}. Lower --lr or the loss weights, or check the "
              f"data, then rerun to resume from the last checkpoint.")
        step += 1
        step_var.assign(step)
        if step > start_step + 1:  # the first step includes tracing
          timed_steps += 1
          timed_seconds += time.perf_counter() - t0
        for k, v in losses.items():
          sums[k] = sums.get(k, 0.0) + v
        interval_steps += 1

        if step % config.summary_every_steps == 0 or step == total_steps:
          elapsed = time.perf_counter() - interval_start
          means = {k: v / interval_steps for k, v in sums.items()}
          steps_per_sec = interval_steps / elapsed if elapsed > 0 else 0.0
          if chief:
            progress.update(step, means, steps_per_sec * global_batch, steps_per_sec)
          scalars = _scalars(means, model, gen_optimizer, dis_optimizer)
          scalars["perf/step_time_sec"] = elapsed / interval_steps
          scalars["perf/images_per_sec"] = steps_per_sec * global_batch
          with writer.as_default(step=step):
            for name, value in scalars.items():
              tf.summary.scalar(name, value)
          sums, interval_steps, interval_start = {}, 0, time.perf_counter()
        if config.sample_every_steps and chief and (step % config.sample_every_steps == 0 or step == total_steps):
          write_samples(step)
        if evaluator and (step % config.eval_every_steps == 0 or step == total_steps):
          evaluate(step)
        if stop.requested or step % config.checkpoint_every_steps == 0 or step == total_steps:
          last_checkpoint = keeper.save(step)
        if stop.requested:
          stopped_by = stop.requested
          break
    progress.close()
    writer.flush()
    rate = timed_steps * global_batch / timed_seconds if timed_seconds > 0 else 0.0
    return TrainResult(config.model_dir, family.name, start_step, step, last_checkpoint, losses, stopped_by, rate,
                       strategy.num_replicas_in_sync, best_keeper.record if best_keeper else None)
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)


class InTrainingEvaluation:
  """The evaluate stage's metrics on a small held-out slice, measured during training.

  The slice: the first `eval_images` test images of each domain in file order, through the family's test
  transform (a dataset without a test split is a StageError before training starts). Measured exactly as
  `components.evaluate` measures (components.measurement's `translate_both_ways` and `compute_metrics` through
  the exported TranslatorModule, evaluate's defaults for KID subsets, seeds and MUNIT styles as
  `measurement.MeasureOptions`), with `eval_feature_extractor` features: the numbers equal what
  `python -m components.evaluate --num_images=<eval_images> --feature_extractor=<same>` reports for that
  checkpoint.
  """

  def __init__(self, config: TrainConfig, family: models.Family, model_config, model):
    size = int(model_config.image_size)
    self.images = {}
    for domain in ("a", "b"):
      try:
        self.images[domain] = measurement.load_test_images(config.data_dir, domain, size, config.eval_images,
                                                           family.transform)
      except StageError as e:
        raise StageError(f"In-training evaluation (--eval_every_steps) needs a test split: {e}") from e
    self.eval_config = measurement.MeasureOptions()  # evaluate's defaults (KID subsets, seed, styles)
    self.extractor = metrics_lib.build_feature_extractor(config.eval_feature_extractor)
    self.signatures = measurement.Signatures.of_model(model, family)
    self.lpips_net = None
    if self.signatures.multimodal:
      self.lpips_net = (self.extractor if isinstance(self.extractor, metrics_lib.HedVgg16Features)
                        else metrics_lib.HedVgg16Features())

  def measure(self) -> dict[str, float]:
    """Metric name -> value for the model's current weights (kid, fid, cycle_l1, cycle_psnr, per direction...)."""
    num_styles = self.eval_config.num_styles if self.signatures.multimodal else 1
    outputs = measurement.translate_both_ways(self.signatures, self.images, self.eval_config, num_styles)
    return measurement.compute_metrics(outputs, self.images, self.extractor, self.eval_config, self.lpips_net)
