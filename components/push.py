"""Entry point of the push stage.

Push:      python -m components.push --model_dir=SAVED_MODEL --serving_root=DIR --model_name=NAME
               --evaluation_dir=DIR --infra_validation_dir=DIR [--keep_versions=N]
           copies a doubly blessed SavedModel to `<serving_root>/<model_name>/<max existing version + 1>/`
           atomically (see components/push_lib.py).
  + labels: [--model_config_file=models.config --server=HOST:PORT [--promote]]
           then serves the new version beside `stable`, labels it `canary` once the server has it AVAILABLE,
           and with --promote moves `stable` to it (the previous stable stays loaded for a rollback).
Promote:   python -m components.push --promote --model_config_file=F --model_name=NAME [--server=HOST:PORT]
Rollback:  python -m components.push --rollback --model_config_file=F --model_name=NAME [--server=HOST:PORT]
           moves `stable` back to the previous served version (and drops `canary`).
Prints what it did and why; exits 0 also when the model was not blessed (not pushing an unblessed model is the
stage working), 1 on a StageError.
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
flags.DEFINE_string("model_config_file", None, "ModelServerConfig text file the servers read: with it a pushed "
                    "version is labelled canary (needs --server), and --promote / --rollback move stable.")
flags.DEFINE_string("server", None, "gRPC host:port of a server reading --model_config_file; each label step "
                    "waits until it applied the change.")
flags.DEFINE_bool("promote", False, "Move the stable label to the canary version (after a push: to the new one).")
flags.DEFINE_bool("rollback", False, "Move the stable label back to the previous served version; pushes nothing.")
flags.DEFINE_float("label_timeout", 300, "Seconds to wait for the server at each label step.")

_PUSH_FLAGS = ("model_dir", "serving_root", "model_name", "evaluation_dir", "infra_validation_dir")


def _require(names) -> None:
  missing = [f"--{n}" for n in names if not getattr(flags.FLAGS, n)]
  if missing:
    raise app.UsageError(f"missing {', '.join(missing)}")


def main(argv):
  """Push and/or move labels, as the flags ask; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from components import push_lib  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  label_config = lambda: push_lib.LabelConfig(f.model_config_file, f.model_name, f.server,  # noqa: E731
                                              f.label_timeout)
  if f.rollback or (f.promote and not f.model_dir):
    _require(("model_config_file", "model_name"))
    step = push_lib.rollback if f.rollback else push_lib.promote
    result = run_or_exit("push", lambda: step(label_config()))
    print(f"push: {result.reason}; labels {result.labels}, served versions {list(result.versions)}", file=sys.stderr)
    return
  _require(_PUSH_FLAGS)
  if f.promote and not f.model_config_file:
    raise app.UsageError("--promote needs --model_config_file")
  result = run_or_exit("push", lambda: push_lib.run(push_lib.PushConfig(
      model_dir=f.model_dir, serving_root=f.serving_root, model_name=f.model_name,
      evaluation_dir=f.evaluation_dir, infra_validation_dir=f.infra_validation_dir,
      keep_versions=f.keep_versions, model_config_file=f.model_config_file)))
  where = f" as version {result.version} at {result.path}" if result.pushed else ""
  print(f"push: {result.reason}{where}", file=sys.stderr)
  if result.pushed and f.model_config_file:
    labels = run_or_exit("push", lambda: push_lib.load_canary(label_config(), result.version))
    print(f"push: {labels.reason}", file=sys.stderr)
    if f.promote:
      labels = run_or_exit("push", lambda: push_lib.promote(label_config()))
      print(f"push: {labels.reason}", file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
