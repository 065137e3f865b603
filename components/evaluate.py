"""Entry point of the evaluate stage: `python -m components.evaluate --model_dir=M --data_dir=D --output_dir=O
[--max_kid=0.05] [--max_fid=...] [--max_cycle_l1=0.3] [--min_psnr=15] [--baseline_model_dir=SERVING_ROOT/NAME
--baseline_metric=kid --baseline_margin=0.005] [--feature_extractor=auto|inception|hed]`.

Translates the test split both ways, writes metrics.json, sample grids, report.html and BLESSED or NOT_BLESSED
(components/evaluate_lib.py). Exits 0 for either verdict, 1 on a StageError.
"""

from __future__ import annotations

import sys

from absl import app, flags

from components import evaluate_lib, options
from components.errors import run_or_exit


define_flags, config_from_flags = options.stage_flags(evaluate_lib.EvaluateConfig)


def main(argv):
  """Builds an EvaluateConfig from the flags and evaluates; a StageError exits 1 with its message."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  result = run_or_exit("evaluate", lambda: evaluate_lib.run(
      config_from_flags()))
  shown = ", ".join(f"{k} {result.metrics[k]:.4g}" for k in ("kid", "fid", "cycle_l1", "cycle_psnr"))
  print(f"evaluate: {result.checkpoint['checkpoint']} checkpoint (step {result.checkpoint['step']}, "
        f"{result.checkpoint['weights']} weights): {shown}; {'BLESSED' if result.blessed else 'NOT_BLESSED'}: {result.reason}; report "
        f"{result.report_path}", file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(options.required_flags(evaluate_lib.EvaluateConfig))
  app.run(main)
