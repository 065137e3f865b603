"""`python -m components.validate --data_dir=DIR --image_size=256`: checks ingest's stats.json.

Writes anomalies.json (into --output_dir, default --data_dir) and exits 1 with a message saying what to fix
when a domain is empty, too small, has images smaller than the crop, or had too many files rejected.
See components/validate_lib.py.
"""

from absl import app, flags

from components import options, validate_lib
from components.errors import StageError


define_flags, config_from_flags = options.stage_flags(validate_lib.ValidateConfig)


def main(argv: list[str]) -> int:
  """Builds ValidateConfig from the flags and runs validation."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = config_from_flags()
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
  define_flags()
  flags.mark_flags_as_required(options.required_flags(validate_lib.ValidateConfig))
  app.run(main)
