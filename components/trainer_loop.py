"""The training loop of the train stage (its run_fn): a family's model trained on ingest's TFRecords.

`components.train_lib.run` checks the stage's settings, builds the model config and the strategy, and hands them
to `fit`, which owns everything that happens in model_dir from then on (docs/INTERFACES.md "model_dir"):
`config.json`, `checkpoints/` (tf.train.CheckpointManager, one checkpoint per `checkpoint_every_steps`, named
`ckpt-<step>`), `checkpoints/best/` (the best checkpoint by `best_metric` and `best.json`, when `eval_every_steps`
> 0), `logs/` (TensorBoard), `samples/step_XXXXXXXX.png`. The pieces it is built from (strategy, distributed
step, checkpoint keepers, EMA, progress, summaries) are components.trainer.

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

`config` below is the stage's `components.train_lib.TrainConfig`, read by attribute (this module is shared by
the stage, not part of it, and imports no stage module).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Mapping

import keras
import numpy as np
import tensorflow as tf

import models
from models import precision
from models.api import DOMAINS
from components import data as data_lib
from components import measurement
from components import metrics as metrics_lib
from components import trainer
from components.errors import StageError
from components.model_dir import BEST_DIR, CHECKPOINT_DIR, CONFIG_FILE, LOG_DIR, SAMPLE_DIR, model_checkpoint


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


def _input_iterator(strategy, config, model_config, start_step: int, transform):
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


def _sample_batch(config, model_config, transform) -> tuple[tf.Tensor, tf.Tensor]:
  """The fixed sample batch: the first `num_samples` test images of each domain (train images if no test split)."""
  batch = []
  for name in DOMAINS:
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


def fit(config, family: models.Family, model_config, schedule: Mapping, total_steps: int,
        strategy: tf.distribute.Strategy) -> TrainResult:
  """Trains (or resumes) `family`'s model in config.model_dir; see the module docstring for the loop.

  Args:
    config: the run's settings (components.train_lib.TrainConfig, already checked).
    family: the Family to train (its build_model, build_optimizers, train_step, sample_rows, transform).
    model_config: the effective model config (preset, overrides, the schedule scaled to the run).
    schedule: the schedule record written to config.json under "schedule".
    total_steps: the step to train up to (a model_dir already there returns without training).
    strategy: the distribution strategy (components.trainer.create_strategy); the global batch divides evenly.
  Returns:
    TrainResult. Raises StageError on unreadable data, on a non-finite loss (the last good checkpoint is
    kept), and when the checkpoint in model_dir does not fit the model.
  """
  with precision.compute_policy("bfloat16" if config.mixed_precision else "float32"):
    return _fit(config, family, model_config, schedule, total_steps, strategy)


def _fit(config, family: models.Family, model_config, schedule: Mapping, total_steps: int,
         strategy: tf.distribute.Strategy) -> TrainResult:
  """fit's loop, under the run's compute policy."""
  chief = trainer.is_chief(strategy)
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

  def __init__(self, config, family: models.Family, model_config, model):
    size = int(model_config.image_size)
    self.images = {}
    for domain in DOMAINS:
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
