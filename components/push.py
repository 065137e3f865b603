"""Entry point of the push stage: `python -m components.push --model_dir=SAVED_MODEL --serving_root=DIR
--model_name=NAME --evaluation_dir=DIR --infra_validation_dir=DIR [--keep_versions=N]`.

Copies a doubly blessed SavedModel to `<serving_root>/<model_name>/<max existing version + 1>/` atomically
(see components/push_lib.py). Prints whether it pushed and why; exits 0 also when the model was not blessed
(not pushing an unblessed model is the stage working), 1 on a StageError.
"""

from __future__ import annotations

import sys

from absl import app, flags

from components.errors import run_or_exit

flags.DEFINE_string("model_dir", None, "The exported SavedModel directory (components.export --output_dir).")
flags.DEFINE_string("serving_root", None, "TF Serving model base directory; the model goes to "
                    "<serving_root>/<model_name>/<version>/.")
flags.DEFINE_string("model_name", None, "Served model name.")
flags.DEFINE_string("evaluation_dir", None, "components.evaluate --output_dir (must hold BLESSED).")
flags.DEFINE_string("infra_validation_dir", None, "components.infra_validate --output_dir (must hold "
                    "INFRA_BLESSED).")
flags.DEFINE_integer("keep_versions", None, "Keep only the newest N versions after pushing (default: all).")


def main(argv):
  """Builds a PushConfig from the flags and pushes; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from components import push_lib  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  result = run_or_exit("push", lambda: push_lib.run(push_lib.PushConfig(
      model_dir=f.model_dir, serving_root=f.serving_root, model_name=f.model_name,
      evaluation_dir=f.evaluation_dir, infra_validation_dir=f.infra_validation_dir,
      keep_versions=f.keep_versions)))
  where = f" as version {result.version} at {result.path}" if result.pushed else ""
  print(f"push: {result.reason}{where}", file=sys.stderr)


if __name__ == "__main__":
  flags.mark_flags_as_required(["model_dir", "serving_root", "model_name", "evaluation_dir",
                                "infra_validation_dir"])
  app.run(main)
