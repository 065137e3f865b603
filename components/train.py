"""Entry point of the train stage: `python -m components.train --model=munit --data_dir=D --model_dir=M ...`.

Every field of `components.train_lib.TrainConfig` is a flag (components.options: name, type, default and help
come from the dataclass; its `family` field is `--model`); `--flagfile=FILE` reads flags from a file and
`--helpfull` lists them all. Besides the stage's own flags, every field of every model family's config (loss
weights such as `--gan_w`/`--cycle_weight`, `--lr`, `--beta1`, `--beta2`, `--weight_decay`, the lr policy fields,
`--image_size`, `--batch_size` (global), ...) is a flag whose default None means "the preset's value"; setting one
that the chosen `--model` does not have is an error naming it.
"""

from __future__ import annotations

import sys

from absl import app, flags

from components import options, train_lib
from components.errors import run_or_exit

FLAGS = flags.FLAGS
STAGE_FLAGS = tuple(options.flag_name(f) for f in options.option_fields(train_lib.TrainConfig))
MODEL_FLAGS = tuple(options.model_flag_names(skip=STAGE_FLAGS))


def define_flags(flag_values: flags.FlagValues = FLAGS) -> tuple[dict[str, str], list[str]]:
  """Defines the stage's flags (one per TrainConfig field) and the model-setting flags on `flag_values`.

  Returns:
    (TrainConfig field -> flag name, model-setting flag names).
  """
  stage = options.define_flags(train_lib.TrainConfig, flag_values)
  return stage, options.define_model_flags(flag_values, skip=stage.values())


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> train_lib.TrainConfig:
  """Builds the TrainConfig from parsed flags (model flags left at None keep the preset's values)."""
  return options.config_from_flags(train_lib.TrainConfig, flag_values,
                                   model_overrides=options.model_overrides_from_flags(MODEL_FLAGS, flag_values))


def main(argv):
  """Parses flags into a TrainConfig, trains, prints the result; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  result = run_or_exit("train", lambda: train_lib.run(config_from_flags()))
  if result.best:
    print(f"train: best {result.best['metric']} {result.best['value']:.4g} at step {result.best['step']} "
          f"(checkpoints/best/)", file=sys.stderr)
  print(f"train: step {result.step} in {result.model_dir} (checkpoint {result.checkpoint}; "
        f"{result.images_per_sec:.2f} img/s{'; stopped by ' + result.stopped_by if result.stopped_by else ''})",
        file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(options.required_flags(train_lib.TrainConfig))
  app.run(main)
