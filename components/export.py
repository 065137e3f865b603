"""Entry point of the export stage: `python -m components.export --model_dir=M --output_dir=SAVED_MODEL
[--stats_path=ingest/stats.json] [--metrics_path=evaluate/metrics.json] [--model_name=NAME] [--noverify]`.

Writes a SavedModel with the DESIGN.md signatures, warmup requests and a model card, then checks it in a fresh
TensorFlow-only process against the Keras model (components/export_lib.py). A StageError exits 1.
"""

from __future__ import annotations

import sys

from absl import app, flags

from components import export_lib, options
from components.errors import run_or_exit


define_flags, config_from_flags = options.stage_flags(export_lib.ExportConfig)


def main(argv):
  """Builds an ExportConfig from the flags and exports; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  result = run_or_exit("export", lambda: export_lib.run(config_from_flags()))
  checked = "verified in a fresh process" if result.max_differences else "not verified (--noverify)"
  print(f"export: {result.family} step {result.step} ({result.checkpoint['checkpoint']} checkpoint, "
        f"{result.checkpoint['weights']} weights) -> {result.path} with signatures "
        f"{', '.join(sorted(result.signatures))}; {checked}", file=sys.stderr)
  if result.precision:
    psnr = lambda db: "identical" if db is None else f"PSNR {db:.1f} dB"  # noqa: E731  (None: no difference)
    cost = "; ".join(f"{name} mean {c['mean_abs']:.2f} / max {c['max_abs']:.0f} grey levels, {psnr(c['psnr_db'])}"
                     for name, c in result.precision["vs_float32"].items())
    print(f"export: {result.precision['compute_dtype']} compute vs float32 on the verification images: {cost}",
          file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(options.required_flags(export_lib.ExportConfig))
  app.run(main)
