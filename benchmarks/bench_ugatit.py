"""U-GAT-IT train-step and translation speed on this machine, per preset and image size.

  python -m benchmarks.bench_ugatit [--presets=tiny,paper_light] [--image_sizes=32,64] [--batch_size=1]
                                    [--steps=5] [--jit_compile=false]

For each (preset, image size): builds the model (light presets take any size; a full preset is built at
that size), then times with `tf.function` on the default strategy
  * trace: the first call of the train step (tracing + graph optimization), optimizers built beforehand;
  * step: mean seconds of the next `--steps` train steps (D update + G update), and images/s;
  * translate: mean seconds of one compiled a2b translation of the batch.
The paper preset (full, 256 px) needs ~7 GB for two generators and their Adam slots; on a CPU use
paper_light or smaller sizes. Prints a Markdown table.
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf
from absl import app, flags

import models

flags.DEFINE_list("presets", ["tiny", "paper_light"], "U-GAT-IT presets to measure.")
flags.DEFINE_list("image_sizes", ["32", "64"], "Image sizes (multiples of 4; global D needs enough pixels).")
flags.DEFINE_integer("batch_size", 1, "Batch size.")
flags.DEFINE_integer("steps", 5, "Timed steps after the first (tracing) one.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step.")

FLAGS = flags.FLAGS


def measure(preset: str, image_size: int, batch_size: int, steps: int, jit_compile: bool) -> dict:
  """Returns {"trace_s", "step_s", "images_per_s", "translate_s", "params_g", "params_d"} for one setting."""
  family = models.get_family("ugatit")
  base = family.presets[preset]
  overrides = {"image_size": image_size, "batch_size": batch_size}
  if image_size < 128 and base.global_dis_layers == 7:
    overrides.update(global_dis_layers=5, local_dis_layers=4)  # the paper's 7-layer D needs >= ~96 px
  config = models.get_config("ugatit", preset, **overrides)
  keras.utils.set_random_seed(0)
  model = family.build_model(config)
  gen_opt, dis_opt = family.build_optimizers(config)
  gen_opt.build(model.generator_variables)
  dis_opt.build(model.discriminator_variables)
  x_a = tf.random.uniform([batch_size, image_size, image_size, 3], -1, 1, seed=1)
  x_b = tf.random.uniform([batch_size, image_size, image_size, 3], -1, 1, seed=2)
  step = tf.function(lambda a, b: family.train_step(model, gen_opt, dis_opt, a, b, batch_size),
                     jit_compile=jit_compile)
  start = time.perf_counter()
  step(x_a, x_b)
  trace = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    losses = step(x_a, x_b)
  float(losses["g/total"])
  step_s = (time.perf_counter() - start) / steps
  translate = tf.function(lambda a: model.translate(a, "a2b")["images"])
  translate(x_a)
  start = time.perf_counter()
  for _ in range(steps):
    translate(x_a).numpy()
  translate_s = (time.perf_counter() - start) / steps
  count = lambda variables: sum(int(tf.size(v)) for v in variables)  # noqa: E731
  return {"trace_s": trace, "step_s": step_s, "images_per_s": batch_size / step_s, "translate_s": translate_s,
          "params_g": count(model.generator_variables), "params_d": count(model.discriminator_variables)}


def main(argv):
  del argv
  print("| preset | size | batch | G params | D params | first call (s) | step (s) | images/s | a2b (s) |")
  print("|---|---|---|---|---|---|---|---|---|")
  for preset in FLAGS.presets:
    for size in (int(s) for s in FLAGS.image_sizes):
      r = measure(preset, size, FLAGS.batch_size, FLAGS.steps, FLAGS.jit_compile)
      print(f"| {preset} | {size} | {FLAGS.batch_size} | {r['params_g']:,} | {r['params_d']:,} | "
            f"{r['trace_s']:.1f} | {r['step_s']:.3f} | {r['images_per_s']:.1f} | {r['translate_s']:.4f} |",
            flush=True)


if __name__ == "__main__":
  app.run(main)
