"""Quality benchmark with targets (issue 13): does every family learn the known-answer digits task on a CPU?

  .venv/bin/python -m benchmarks.quality --models=unit,munit,ugatit --seeds=0,1 --work_dir=/tmp/quality

Builds the data once (MNIST <-> colourized MNIST, 32 px, see benchmarks/quality_lib.py) and ingests it with
components.ingest_lib.run, trains one classifier per domain, then for every family and seed trains the family's
`--preset` (default "budget") with components.train_lib.run and measures the untrained model (step 0, same seed)
and the trained one: content kept both ways, A->B colour distance to real B, cycle PSNR, MUNIT style diversity
and reference following. Writes <work_dir>/runs/<run>/result.json and grid.png (upscaled, labelled rows) and
<work_dir>/results.json (every run of this preset and tag in work_dir, also from earlier invocations, the
real-data reference values, and per family the mean over seeds).

Sweeps: `--steps=N` and `--set=key=value` (repeatable model overrides) with `--tag=NAME` to keep the runs apart.
Long runs: `--eval_every_steps=N --export` evaluate during training, keep the best checkpoint, measure it and the
last one, and export with components.export's defaults (which take the best).
"""

from __future__ import annotations

import json
import os

from absl import app, flags

flags.DEFINE_list("models", ["unit", "munit", "ugatit"], "Families to run.")
flags.DEFINE_list("seeds", ["0", "1"], "Training seeds (one run per family and seed).")
flags.DEFINE_string("preset", "budget", "Preset of every family.")
flags.DEFINE_string("work_dir", "/tmp/quality", "Scratch directory (data, runs, results.json).")
flags.DEFINE_integer("steps", None, "Training steps (default: the preset's max_iter).")
flags.DEFINE_multi_string("set", [], "Model config override key=value (repeatable), e.g. --set=lr=0.0002.")
flags.DEFINE_float("ema_decay", 0.995, "Generator weight EMA decay of every run (0: off; see components.train). "
                   "The budget recipe: the averaged generators are measured, and the raw ones beside them.")
flags.DEFINE_string("tag", "", "Suffix of the run directories (for sweeps).")
flags.DEFINE_integer("eval_every_steps", 0, "In-training evaluation interval (0: off), as components.train: the best "
                     "checkpoint by --best_metric is kept and measured; the last one is measured beside it.")
flags.DEFINE_integer("eval_images", 64, "Test images per domain of the in-training evaluation.")
flags.DEFINE_string("best_metric", "kid", "Metric of the best checkpoint (components.train --best_metric).")
flags.DEFINE_bool("export", False, "Export every run with components.export's defaults and record which "
                  "checkpoint it took (the lineage).")
FLAGS = flags.FLAGS


def main(argv):
  """Data, classifiers, one run per family and seed, results.json."""
  del argv
  from benchmarks import quality_lib  # pylint: disable=import-outside-toplevel
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  overrides = quality_lib.parse_overrides(FLAGS.set)
  arrays = quality_lib.make_arrays(seed=0)
  data_dir = quality_lib.build_data(FLAGS.work_dir, arrays)
  classifiers = quality_lib.train_classifiers(arrays, seed=0, cache_dir=FLAGS.work_dir)
  reference = quality_lib.real_data_reference(arrays, classifiers)
  print("quality: real-data reference " + json.dumps({k: round(v, 3) for k, v in reference.items()}), flush=True)
  records = []
  for family in FLAGS.models:
    for seed in FLAGS.seeds:
      records.append(quality_lib.run_one(family=family, preset=FLAGS.preset, seed=int(seed),
                                         work_dir=FLAGS.work_dir, data_dir=data_dir, arrays=arrays,
                                         classifiers=classifiers, steps=FLAGS.steps, overrides=overrides,
                                         tag=FLAGS.tag, ema_decay=FLAGS.ema_decay,
                                         eval_every_steps=FLAGS.eval_every_steps, eval_images=FLAGS.eval_images,
                                         best_metric=FLAGS.best_metric, export=FLAGS.export,
                                         log=lambda line: print(line, flush=True)))
  all_records = quality_lib.collect(FLAGS.work_dir, FLAGS.preset, FLAGS.tag)  # earlier invocations' runs too
  results = {"reference": reference, "summary": quality_lib.summarize(all_records), "runs": all_records}
  name = "results.json" if not FLAGS.tag else f"results_{FLAGS.tag}.json"
  with open(os.path.join(FLAGS.work_dir, name), "w") as f:
    json.dump(results, f, indent=2, default=float)
  print(f"quality: wrote {os.path.join(FLAGS.work_dir, name)}")
  for record in records:
    print(f"{record['run']:32s} {quality_lib.format_row(record)}")


if __name__ == "__main__":
  app.run(main)
