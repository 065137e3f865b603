"""Entry point of the train stage: `python -m components.train --model=munit --data_dir=D --model_dir=M ...`.

Flags build a frozen `components.train_lib.TrainConfig`; `--flagfile=FILE` reads flags from a file and
`--helpfull` lists them all. Besides the stage's own flags, every field of every model family's config
(loss weights such as `--gan_w`/`--cycle_weight`, `--lr`, `--beta1`, `--beta2`, `--weight_decay`, the lr
policy fields, `--image_size`, `--batch_size` (global), ...) is a flag whose default None means "the preset's
value"; setting one that the chosen `--model` does not have is an error naming it.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any

from absl import app, flags

import models
from components import trainer
from components.errors import run_or_exit

STAGE_FLAGS = ("model", "preset", "data_dir", "model_dir", "steps", "checkpoint_every_steps", "keep_checkpoints",
               "summary_every_steps", "sample_every_steps", "num_samples", "seed", "mixed_precision", "jit_compile",
               "strategy", "cpu_replicas", "eval_every_steps", "eval_images", "best_metric", "eval_feature_extractor",
               "ema_decay")

flags.DEFINE_enum("model", None, list(models.FAMILY_NAMES), "Model family to train.")
flags.DEFINE_string("preset", "paper", "Config preset of the family: 'paper' (official defaults), 'tiny', ...")
flags.DEFINE_string("data_dir", None, "components.ingest output_dir (domain_a/, domain_b/ TFRecords).")
flags.DEFINE_string("model_dir", None, "Output: config.json, checkpoints/, logs/ (TensorBoard), samples/. "
                    "Training resumes from its newest checkpoint.")
flags.DEFINE_integer("steps", None, "Total training steps (global batches); default: the config's max_iter.")
flags.DEFINE_integer("checkpoint_every_steps", 1000, "Checkpoint interval in steps (also saved at the end "
                     "and on SIGTERM/SIGINT).")
flags.DEFINE_integer("keep_checkpoints", 5, "How many recent checkpoints to keep.")
flags.DEFINE_integer("summary_every_steps", 100, "Interval of progress lines and TensorBoard scalars.")
flags.DEFINE_integer("sample_every_steps", 1000, "Interval of sample grids (TensorBoard and samples/*.png); "
                     "0 disables them.")
flags.DEFINE_integer("num_samples", 4, "Examples (grid columns) in the fixed sample batch.")
flags.DEFINE_integer("seed", 0, "Seed of weights, input order (domain B uses seed + 1) and random ops.")
flags.DEFINE_boolean("mixed_precision", False, "Compute in bfloat16 with float32 variables (mixed_bfloat16).")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the per-replica train step.")
flags.DEFINE_enum("strategy", "auto", list(trainer.STRATEGIES),
                  "auto: MirroredStrategy over all local GPUs when more than one (or over --cpu_replicas "
                  "logical CPUs), else default; mirrored; multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG.")
flags.DEFINE_integer("eval_every_steps", 0, "In-training evaluation interval in steps (0: off): the evaluate "
                     "stage's metrics (KID/FID, cycle PSNR/L1, MUNIT diversity) on --eval_images test images per "
                     "domain, in TensorBoard as eval/<metric>; the best checkpoint by --best_metric is kept in "
                     "checkpoints/best/ (with best.json), apart from the --keep_checkpoints rolling ones.")
flags.DEFINE_integer("eval_images", 16, "Test images per domain of the in-training evaluation (the first ones).")
flags.DEFINE_enum("best_metric", "kid", ["kid", "fid", "cycle_l1", "cycle_psnr", "diversity_l1", "diversity_lpips"],
                  "Metric choosing the best checkpoint (kid, fid, cycle_l1: lower is better; cycle_psnr and "
                  "MUNIT's diversity_*: higher is better).")
flags.DEFINE_enum("eval_feature_extractor", "hed", ["auto", "inception", "hed"], "KID/FID features of the "
                  "in-training evaluation (hed: the offline bundled VGG16; see components.evaluate).")
flags.DEFINE_float("ema_decay", 0.0, "Generator weight EMA decay (0: off), e.g. 0.999: an exponential moving "
                   "average of the generator weights, updated after every step and checkpointed; in-training "
                   "evaluation, evaluate and export then use the averaged weights.")
flags.DEFINE_integer("cpu_replicas", 1, "Split the CPU into this many logical devices so MirroredStrategy "
                     "runs one replica on each (for machines without GPUs).")


def _model_fields() -> dict[str, tuple[type, dict[str, Any]]]:
  """Field name -> (annotated type, {family: paper-preset value}) over every family's config class."""
  fields: dict[str, tuple[type, dict]] = {}
  for name in models.FAMILY_NAMES:
    family = models.get_family(name)
    hints = typing.get_type_hints(family.config_class)
    paper = family.presets.get("paper")
    for field in dataclasses.fields(family.config_class):
      entry = fields.setdefault(field.name, (hints[field.name], {}))
      entry[1][name] = getattr(paper, field.name) if paper is not None else field.default
  return fields



def _define_model_flags() -> list[str]:
  """Defines one flag (default None = the preset's value) per model-config field; returns their names."""
  names = []
  for name, (annotation, paper_values) in sorted(_model_fields().items()):
    if name in STAGE_FLAGS:
      continue
    owners = ", ".join(f"{family}={value!r}" for family, value in paper_values.items())
    help_text = (f"Model setting {name} ({', '.join(paper_values)} only). Default: the preset's value "
                 f"(paper: {owners}).")
    origin = typing.get_origin(annotation) or annotation
    if annotation is bool:
      flags.DEFINE_boolean(name, None, help_text)
    elif annotation is int:
      flags.DEFINE_integer(name, None, help_text)
    elif annotation is float:
      flags.DEFINE_float(name, None, help_text)
    elif origin in (tuple, list):
      flags.DEFINE_list(name, None, help_text + " Comma-separated.")
    else:
      flags.DEFINE_string(name, None, help_text)
    names.append(name)
  return names


MODEL_FLAGS = _define_model_flags()
FLAGS = flags.FLAGS


def config_from_flags(flag_values=FLAGS):
  """Builds the TrainConfig from parsed flags (model flags left at None keep the preset's values)."""
  from components import train_lib  # pylint: disable=import-outside-toplevel
  overrides = {name: flag_values[name].value for name in MODEL_FLAGS if flag_values[name].value is not None}
  return train_lib.TrainConfig(
      family=flag_values.model, data_dir=flag_values.data_dir, model_dir=flag_values.model_dir,
      preset=flag_values.preset, model_overrides=overrides, steps=flag_values.steps,
      checkpoint_every_steps=flag_values.checkpoint_every_steps, keep_checkpoints=flag_values.keep_checkpoints,
      summary_every_steps=flag_values.summary_every_steps, sample_every_steps=flag_values.sample_every_steps,
      num_samples=flag_values.num_samples, seed=flag_values.seed, mixed_precision=flag_values.mixed_precision,
      jit_compile=flag_values.jit_compile, strategy=flag_values.strategy, cpu_replicas=flag_values.cpu_replicas,
      eval_every_steps=flag_values.eval_every_steps, eval_images=flag_values.eval_images,
      best_metric=flag_values.best_metric, eval_feature_extractor=flag_values.eval_feature_extractor,
      ema_decay=flag_values.ema_decay)


def main(argv):
  """Parses flags into a TrainConfig, trains, prints the result; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from components import train_lib  # pylint: disable=import-outside-toplevel
  result = run_or_exit("train", lambda: train_lib.run(config_from_flags()))
  if result.best:
    print(f"train: best {result.best['metric']} {result.best['value']:.4g} at step {result.best['step']} "
          f"(checkpoints/best/)", file=sys.stderr)
  print(f"train: step {result.step} in {result.model_dir} (checkpoint {result.checkpoint}; "
        f"{result.images_per_sec:.2f} img/s{'; stopped by ' + result.stopped_by if result.stopped_by else ''})",
        file=sys.stderr)


if __name__ == "__main__":
  flags.mark_flags_as_required(["model", "data_dir", "model_dir"])
  app.run(main)
