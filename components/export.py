"""Entry point of the export stage: `python -m components.export --model_dir=M --output_dir=SAVED_MODEL
[--stats_path=ingest/stats.json] [--metrics_path=evaluate/metrics.json] [--model_name=NAME] [--noverify]`.

Writes a SavedModel with the DESIGN.md signatures, warmup requests and a model card, then checks it in a fresh
TensorFlow-only process against the Keras model (components/export_lib.py). A StageError exits 1.
"""

from __future__ import annotations

import sys

from absl import app, flags

from components.errors import run_or_exit

flags.DEFINE_string("model_dir", None, "components.train --model_dir (config.json + checkpoints/).")
flags.DEFINE_string("output_dir", None, "Where to write the SavedModel (new or empty directory).")
flags.DEFINE_string("stats_path", None, "Ingest stats.json to copy into the model card (optional).")
flags.DEFINE_string("metrics_path", None, "Evaluate metrics.json to copy into the model card (optional).")
flags.DEFINE_string("model_name", "model", "Model name written into the warmup requests' model_spec.")
flags.DEFINE_enum("checkpoint", "auto", ["auto", "best", "latest"], "Checkpoint of --model_dir to export: best "
                  "(kept by training's --eval_every_steps), latest, or auto (best when present, else latest).")
flags.DEFINE_boolean("verify", True, "Reload the SavedModel in a fresh process and compare every signature "
                     "with the Keras model (a mismatch fails the export).")


def main(argv):
  """Builds an ExportConfig from the flags and exports; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from components import export_lib  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  result = run_or_exit("export", lambda: export_lib.run(export_lib.ExportConfig(
      model_dir=f.model_dir, output_dir=f.output_dir, stats_path=f.stats_path, metrics_path=f.metrics_path,
      model_name=f.model_name, verify=f.verify, checkpoint=f.checkpoint)))
  checked = "verified in a fresh process" if result.max_differences else "not verified (--noverify)"
  print(f"export: {result.family} step {result.step} ({result.checkpoint['checkpoint']} checkpoint, "
        f"{result.checkpoint['weights']} weights) -> {result.path} with signatures "
        f"{', '.join(sorted(result.signatures))}; {checked}", file=sys.stderr)


if __name__ == "__main__":
  flags.mark_flags_as_required(["model_dir", "output_dir"])
  app.run(main)
