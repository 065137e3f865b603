"""Entry point of the infra-validation stage: `python -m components.infra_validate --model_dir=SAVED_MODEL
--output_dir=DIR [--model_name=NAME] [--serving_binary=/usr/bin/tensorflow_model_server]`.

Serves the SavedModel in a model server on a free loopback port, replays its warmup requests over gRPC and
writes INFRA_BLESSED or INFRA_NOT_BLESSED (components/infra_validate_lib.py). Exits 0 in both cases (a
NOT_BLESSED model is the stage working), 1 on a StageError (e.g. --model_dir is not a SavedModel).
"""

from __future__ import annotations

import sys

from absl import app, flags

from components import infra_validate_lib, options
from components.errors import run_or_exit


define_flags, config_from_flags = options.stage_flags(infra_validate_lib.InfraValidateConfig)


def main(argv):
  """Builds an InfraValidateConfig from the flags and runs it; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  result = run_or_exit("infra_validate", lambda: infra_validate_lib.run(
      config_from_flags()))
  verdict = "INFRA_BLESSED" if result.blessed else "INFRA_NOT_BLESSED"
  print(f"infra_validate: {verdict}: {result.reason}", file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(options.required_flags(infra_validate_lib.InfraValidateConfig))
  app.run(main)
