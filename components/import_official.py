"""Entry point of the import stage: an official PyTorch checkpoint -> a model_dir that export and serving take.

  python -m components.import_official --model=munit --checkpoint=outputs/edges2shoes/checkpoints/gen_01000000.pt \
      --checkpoint=outputs/edges2shoes/checkpoints/dis_01000000.pt --official_config=configs/edges2shoes_folder.yaml \
      --model_dir=/tmp/munit_official
  python -m components.import_official --model=unit --checkpoint=snapshots/cat2tiger_gen_00500000.pkl \
      --checkpoint=snapshots/cat2tiger_dis_00500000.pkl --official_config=exps/unit/cat2tiger.yaml --model_dir=DIR
  python -m components.import_official --model=ugatit --checkpoint=results/selfie2anime/model/selfie2anime_params_1000000.pt \
      --model_dir=DIR

Then `python -m components.export --model_dir=DIR --output_dir=SAVED_MODEL` (or the pipeline) as for a trained
model. Needs torch (`.venv/bin/pip install -e '.[official]'`). A StageError exits 1 with its message.
"""

from __future__ import annotations

import sys

from absl import app, flags

from components import import_official_lib, options
from components.errors import run_or_exit


# One flag per ImportConfig field: `family` is --model, `checkpoints` the repeated --checkpoint.
define_flags, config_from_flags = options.stage_flags(import_official_lib.ImportConfig)


def main(argv):
  """Builds an ImportConfig from the flags and imports; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  result = run_or_exit("import_official", lambda: import_official_lib.run(
      config_from_flags()))
  print(f"import_official: {result.family} iteration {result.step} -> {result.model_dir} ({result.checkpoint})",
        file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(options.required_flags(import_official_lib.ImportConfig))
  app.run(main)
