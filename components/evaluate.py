"""Entry point of the evaluate stage: `python -m components.evaluate --model_dir=M --data_dir=D --output_dir=O
[--max_kid=0.05] [--max_fid=...] [--max_cycle_l1=0.3] [--min_psnr=15] [--baseline_model_dir=SERVING_ROOT/NAME
--baseline_metric=kid --baseline_margin=0.005] [--feature_extractor=auto|inception|hed]`.

Translates the test split both ways, writes metrics.json, sample grids, report.html and BLESSED or NOT_BLESSED
(components/evaluate_lib.py). Exits 0 for either verdict, 1 on a StageError.
"""

from __future__ import annotations

import sys

from absl import app, flags

from components.errors import run_or_exit

flags.DEFINE_string("model_dir", None, "components.train --model_dir.")
flags.DEFINE_string("data_dir", None, "components.ingest --output_dir (the test split is used).")
flags.DEFINE_string("output_dir", None, "Where metrics.json, report.html, grids and the blessing go.")
flags.DEFINE_integer("num_images", None, "At most this many test images per domain (default: all).")
flags.DEFINE_integer("batch_size", 8, "Images per forward pass.")
flags.DEFINE_enum("feature_extractor", "auto", ["auto", "inception", "hed"],
                  "KID/FID features: InceptionV3 (needs its ImageNet weights file, comparable with papers), HED "
                  "VGG16 (offline, bundled weights, not comparable), or auto (inception if the file exists).")
flags.DEFINE_string("inception_weights", None, "InceptionV3 no-top weights .h5 (default: ~/.keras/models/...).")
flags.DEFINE_integer("kid_subsets", 100, "KID subsets.")
flags.DEFINE_integer("kid_subset_size", 1000, "KID subset size (capped at the number of images).")
flags.DEFINE_integer("num_styles", 4, "MUNIT: random styles per input for diversity and the style rows.")
flags.DEFINE_integer("grid_images", 4, "Columns of the sample grids.")
flags.DEFINE_float("max_kid", None, "Bless only if the mean KID of both directions is at most this.")
flags.DEFINE_float("max_fid", None, "Bless only if the mean FID is at most this.")
flags.DEFINE_float("max_cycle_l1", None, "Bless only if the mean cycle L1 ([-1, 1] units) is at most this.")
flags.DEFINE_float("min_psnr", None, "Bless only if the mean cycle PSNR (dB) is at least this.")
flags.DEFINE_string("baseline_model_dir", None, "SavedModel, or TF Serving model root (latest version used), "
                    "to be no worse than; a root without versions means no baseline yet.")
flags.DEFINE_enum("baseline_metric", "kid", ["kid", "fid", "cycle_l1", "cycle_psnr"], "Metric compared with "
                  "the baseline.")
flags.DEFINE_float("baseline_margin", 0.0, "How much worse than the baseline is allowed (metric units).")
flags.DEFINE_integer("seed", 0, "KID subset seed and MUNIT style seed offset.")
flags.DEFINE_enum("checkpoint", "auto", ["auto", "best", "latest"], "Checkpoint of --model_dir to evaluate: best "
                  "(kept by training's --eval_every_steps), latest, or auto (best when present, else latest).")


def main(argv):
  """Builds an EvaluateConfig from the flags and evaluates; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from components import evaluate_lib  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  names = ("model_dir", "data_dir", "output_dir", "num_images", "batch_size", "feature_extractor",
           "inception_weights", "kid_subsets", "kid_subset_size", "num_styles", "grid_images", "max_kid", "max_fid",
           "max_cycle_l1", "min_psnr", "baseline_model_dir", "baseline_metric", "baseline_margin", "seed", "checkpoint")
  result = run_or_exit("evaluate", lambda: evaluate_lib.run(
      evaluate_lib.EvaluateConfig(**{name: f[name].value for name in names})))
  shown = ", ".join(f"{k} {result.metrics[k]:.4g}" for k in ("kid", "fid", "cycle_l1", "cycle_psnr"))
  print(f"evaluate: {result.checkpoint['checkpoint']} checkpoint (step {result.checkpoint['step']}, "
        f"{result.checkpoint['weights']} weights): {shown}; {'BLESSED' if result.blessed else 'NOT_BLESSED'}: {result.reason}; report "
        f"{result.report_path}", file=sys.stderr)


if __name__ == "__main__":
  flags.mark_flags_as_required(["model_dir", "data_dir", "output_dir"])
  app.run(main)
