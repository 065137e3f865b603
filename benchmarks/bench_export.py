"""Exported SavedModel latency per model and signature at several sizes, against this CPU's matmul ceiling.

  python -m benchmarks.bench_export [--models=unit,munit,ugatit] [--preset=paper] [--sizes=64,128,256]
      [--repeats=5] [--output=bench_export.md]

For each family the preset's model (random weights: speed does not depend on them) is wrapped exactly as
components.export saves it (`components.translator.TranslatorModule`, signatures only), saved, and reloaded with
`tf.saved_model.load`; then every a2b-side signature (a2b, a2b_encoded, MUNIT's a2b_style and a2b_reference;
b2a is symmetric) is called in-process on one image per size: median wall time of `--repeats` calls after one
warm-up call. FLOPs per image are counted exactly from the traced graph of the a2b translation at that size
(benchmarks.bench_generators.graph_flops: convs, transposed convs, matmuls), and the achieved GFLOP/s is set
against the best GFLOP/s of a 2048^3 float32 `tf.matmul` measured in the same run (before and after; other load
on the machine lowers it). U-GAT-IT full (`--preset=paper` for ugatit) only runs at its image_size; the
ugatit family therefore uses `paper_light` when the preset is `paper`, like the table's label says.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags
from PIL import Image

import models
from benchmarks.ceiling import graph_flops, matmul_ceiling
from components.translator import TranslatorModule

flags.DEFINE_list("models", ["unit", "munit", "ugatit"], "Model families to measure (--families and --runs "
                  "belong to benchmarks.bench_generators, whose FLOP counter and ceiling are reused).")
flags.DEFINE_string("preset", "paper", "Config preset (ugatit: paper -> paper_light, see the module doc).")
flags.DEFINE_list("sizes", ["64", "128", "256"], "Square image sizes.")
flags.DEFINE_integer("repeats", 5, "Timed calls per signature and size (median reported).")
flags.DEFINE_string("output", None, "Also write the Markdown table to this file.")


def _preset(family_name: str, preset: str) -> str:
  """`preset`, or its `<preset>_light` variant when `preset` builds a fixed-size model (U-GAT-IT full: paper ->
  paper_light), which could not be measured at every --sizes."""
  family = models.get_family(family_name)
  config = family.presets.get(preset)
  light = f"{preset}_light"
  return light if config is not None and family.fixed_size(config) is not None and light in family.presets else preset


def _inputs(signature: str, size: int, style_dim: int | None) -> dict:
  """One-image inputs of an a2b-side signature at `size` x `size`."""
  image = np.random.default_rng(0).integers(0, 256, size=(1, size, size, 3), dtype=np.uint8)
  if signature.endswith("_encoded"):
    buffer = io.BytesIO()
    Image.fromarray(image[0]).save(buffer, format="PNG")
    return {"image_bytes": tf.constant([buffer.getvalue()])}
  inputs = {"images": tf.constant(image)}
  if signature == "a2b" and style_dim:
    inputs["seed"] = tf.constant([1], tf.int64)
  if signature == "a2b_style":
    inputs["style"] = tf.zeros([1, style_dim])
  if signature == "a2b_reference":
    inputs["reference"] = tf.constant(image)
  return inputs


def measure_family(family_name: str, preset: str, sizes: list, runs: int) -> list:
  """Rows {family, preset, signature, size, ms, gflop} for one family."""
  family = models.get_family(family_name)
  model = family.build_model(models.get_config(family_name, preset))
  module = TranslatorModule(model, family_name)
  style_dim = module.traits["style_dim"]
  rows = []
  with tempfile.TemporaryDirectory() as path:
    tf.saved_model.save(module, path, signatures=module.signatures())
    loaded = tf.saved_model.load(path)
    names = [n for n in loaded.signatures if n.startswith("a2b")]
    for size in sizes:
      style = tf.zeros([1, style_dim]) if style_dim else None
      forward = tf.function(lambda x: module.translate(x, "a2b", style=style)["images"])
      flops = graph_flops(forward.get_concrete_function(tf.TensorSpec([1, size, size, 3], tf.uint8)))
      for name in sorted(names):
        fn, inputs = loaded.signatures[name], _inputs(name, size, style_dim)
        fn(**inputs)  # warm-up
        times = []
        for _ in range(runs):
          start = time.perf_counter()
          out = fn(**inputs)
          _ = [v.numpy() for v in out.values()]
          times.append(time.perf_counter() - start)
        rows.append({"family": family_name, "preset": preset, "signature": name, "size": size,
                     "ms": 1e3 * statistics.median(times), "gflop": flops / 1e9})
  return rows


def main(argv):
  del argv
  f = flags.FLAGS
  sizes = [int(s) for s in f.sizes]
  ceilings = [matmul_ceiling()]
  rows = []
  for family in f.models:
    preset = _preset(family, f.preset)
    rows += measure_family(family, preset, sizes, f.repeats)
    ceilings.append(matmul_ceiling())
  ceiling = max(ceilings)
  lines = [f"matmul ceiling (2048^3 float32, best of the run): {ceiling:.1f} GFLOP/s; batch 1, median of "
           f"{f.repeats} calls, in-process SavedModel", "",
           "| model | preset | signature | size | latency ms | GFLOP/image | GFLOP/s | % of ceiling |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    rate = r["gflop"] / (r["ms"] / 1e3)
    lines.append(f"| {r['family']} | {r['preset']} | {r['signature']} | {r['size']} | {r['ms']:.1f} | "
                 f"{r['gflop']:.2f} | {rate:.1f} | {100 * rate / ceiling:.0f}% |")
  table = "\n".join(lines)
  print(table)
  if f.output:
    with open(f.output, "w", encoding="utf-8") as out:
      out.write(table + "\n")


if __name__ == "__main__":
  app.run(main)
