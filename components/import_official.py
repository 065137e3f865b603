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

from components.errors import run_or_exit

flags.DEFINE_enum("model", None, ["unit", "munit", "ugatit"], "The family of the official checkpoint.")
flags.DEFINE_multi_string("checkpoint", [], "An official checkpoint file (repeat for gen and dis files).")
flags.DEFINE_string("official_config", None, "The official run's YAML config (MUNIT and UNIT).")
flags.DEFINE_string("model_dir", None, "Where to write config.json and checkpoints/ (a new directory).")
flags.DEFINE_integer("image_size", None, "Square image size of the imported model (default: the official crop size).")


def main(argv):
  """Builds an ImportConfig from the flags and imports; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from components import import_official_lib  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  result = run_or_exit("import_official", lambda: import_official_lib.run(import_official_lib.ImportConfig(
      family=f.model, checkpoints=tuple(f.checkpoint), model_dir=f.model_dir, official_config=f.official_config,
      image_size=f.image_size)))
  print(f"import_official: {result.family} iteration {result.step} -> {result.model_dir} ({result.checkpoint})",
        file=sys.stderr)


if __name__ == "__main__":
  flags.mark_flags_as_required(["model", "model_dir"])
  app.run(main)
