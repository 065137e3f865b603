"""`python -m components.validate --data_dir=DIR --image_size=256`: checks ingest's stats.json.

Writes anomalies.json (into --output_dir, default --data_dir) and exits 1 with a message saying what to fix
when a domain is empty, too small, has images smaller than the crop, or had too many files rejected.
See components/validate_lib.py.
"""

from absl import app, flags

from components import validate_lib
from components.errors import StageError

flags.DEFINE_string("data_dir", None, "Ingest's output_dir (holds stats.json).")
flags.DEFINE_string("output_dir", None, "Where anomalies.json is written (default: --data_dir).")
flags.DEFINE_integer("image_size", 256, "Training crop size: every stored image must be at least this large.")
flags.DEFINE_integer("min_images", 1, "Fewest train images accepted per domain.")
flags.DEFINE_float("max_reject_fraction", 0.1, "Largest accepted share of rejected input files per domain.")
flags.mark_flag_as_required("data_dir")

FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
  """Builds ValidateConfig from the flags and runs validation."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = validate_lib.ValidateConfig(
      data_dir=FLAGS.data_dir, output_dir=FLAGS.output_dir, image_size=FLAGS.image_size,
      min_images=FLAGS.min_images, max_reject_fraction=FLAGS.max_reject_fraction)
  try:
    result = validate_lib.run(config)
  except StageError as e:
    print(f"validate failed: {e}")
    return 1
  for anomaly in result.anomalies:
    print(f"warning: {anomaly['message']}")
  print(f"data is valid; report in {result.anomalies_path}")
  return 0


if __name__ == "__main__":
  app.run(main)
