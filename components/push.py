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

from components import options, push_lib
from components.errors import run_or_exit

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """One flag per PushConfig field, LabelConfig's `server` and `timeout` (--label_timeout), and the actions."""
  options.define_flags(push_lib.PushConfig, flag_values)
  options.define_flags(push_lib.LabelConfig, flag_values, exclude=("model_config_file", "model_name"))
  flags.DEFINE_bool("promote", False, "Move the stable label to the canary version (after a push: to the new one).",
                    flag_values=flag_values)
  flags.DEFINE_bool("rollback", False, "Move the stable label back to the previous served version; pushes "
                    "nothing.", flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> push_lib.PushConfig:
  """The PushConfig the parsed flags describe."""
  return options.config_from_flags(push_lib.PushConfig, flag_values)


def label_config_from_flags(flag_values: flags.FlagValues = FLAGS) -> push_lib.LabelConfig:
  """The LabelConfig of --model_config_file, --model_name, --server and --label_timeout."""
  return options.config_from_flags(push_lib.LabelConfig, flag_values,
                                   model_config_file=flag_values["model_config_file"].value,
                                   model_name=flag_values["model_name"].value)


def _require(names) -> None:
  missing = [f"--{n}" for n in names if not FLAGS[n].value]
  if missing:
    raise app.UsageError(f"missing {', '.join(missing)}")


def main(argv):
  """Push and/or move labels, as the flags ask; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  f = FLAGS
  label_config = lambda: label_config_from_flags(f)  # noqa: E731
  if f.rollback or (f.promote and not f.model_dir):
    _require(("model_config_file", "model_name"))
    step = push_lib.rollback if f.rollback else push_lib.promote
    result = run_or_exit("push", lambda: step(label_config()))
    print(f"push: {result.reason}; labels {result.labels}, served versions {list(result.versions)}", file=sys.stderr)
    return
  _require(options.required_flags(push_lib.PushConfig))
  if f.promote and not f.model_config_file:
    raise app.UsageError("--promote needs --model_config_file")
  result = run_or_exit("push", lambda: push_lib.run(config_from_flags(f)))
  where = f" as version {result.version} at {result.path}" if result.pushed else ""
  print(f"push: {result.reason}{where}", file=sys.stderr)
  if result.pushed and f.model_config_file:
    labels = run_or_exit("push", lambda: push_lib.load_canary(label_config(), result.version))
    print(f"push: {labels.reason}", file=sys.stderr)
    if f.promote:
      labels = run_or_exit("push", lambda: push_lib.promote(label_config()))
      print(f"push: {labels.reason}", file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  app.run(main)
