"""Entry point of the infra-validation stage: `python -m components.infra_validate --model_dir=SAVED_MODEL
--output_dir=DIR [--model_name=NAME] [--serving_binary=/usr/bin/tensorflow_model_server]`.

Serves the SavedModel in a model server on a free loopback port, replays its warmup requests over gRPC and
writes INFRA_BLESSED or INFRA_NOT_BLESSED (components/infra_validate_lib.py). Exits 0 in both cases (a
NOT_BLESSED model is the stage working), 1 on a StageError (e.g. --model_dir is not a SavedModel).
"""

from __future__ import annotations

import sys

from absl import app, flags

from components.errors import run_or_exit

flags.DEFINE_string("model_dir", None, "The exported SavedModel (components.export --output_dir).")
flags.DEFINE_string("output_dir", None, "Where INFRA_BLESSED / INFRA_NOT_BLESSED and infra_validation.json go.")
flags.DEFINE_string("model_name", "model", "Name the model is served under during the check.")
flags.DEFINE_string("serving_binary", None, "Path of a tensorflow_model_server executable (same flags); "
                    "default: python -m serving.server.")
flags.DEFINE_float("startup_timeout", 120.0, "Seconds for the server to open its port.")
flags.DEFINE_float("available_timeout", 120.0, "Seconds for the model version to become AVAILABLE.")
flags.DEFINE_float("request_timeout", 60.0, "Deadline of each Predict call in seconds.")


def main(argv):
  """Builds an InfraValidateConfig from the flags and runs it; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from components import infra_validate_lib  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  result = run_or_exit("infra_validate", lambda: infra_validate_lib.run(infra_validate_lib.InfraValidateConfig(
      model_dir=f.model_dir, output_dir=f.output_dir, model_name=f.model_name, serving_binary=f.serving_binary,
      startup_timeout=f.startup_timeout, available_timeout=f.available_timeout,
      request_timeout=f.request_timeout)))
  verdict = "INFRA_BLESSED" if result.blessed else "INFRA_NOT_BLESSED"
  print(f"infra_validate: {verdict}: {result.reason}", file=sys.stderr)


if __name__ == "__main__":
  flags.mark_flags_as_required(["model_dir", "output_dir"])
  app.run(main)
