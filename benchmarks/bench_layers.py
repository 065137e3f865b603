"""Training-path layer rewrites against the plain TensorFlow ops they replace: forward + gradient, same inputs.

  python -m benchmarks.bench_layers [--reps=20] [--rounds=3]

Rows (issue 17's third pass, BUILD.md):
  * crop by 1 on each side: `models.layers.padding.crop2d` (Slice, gradient Pad) vs strided indexing
    `x[:, 1:-1, 1:-1]` (StridedSlice, gradient StridedSliceGrad);
  * instance norm: `instance_standardize` (written-out gradient) vs the same formula under autodiff;
  * MUNIT LayerNorm: `layer_standardize` vs the same formula under autodiff;
  * MUNIT's upsampling conv (nearest x2, reflect pad 2, 5x5): `upsample2x_reflect_conv5` vs upsample + pad + conv.
Each case is one `tf.function` returning the input (and kernel) gradients of sum(y * dy). The two sides alternate
for --rounds rounds of --reps calls; the best round of each is kept (load from other processes only slows a run
down). Prints a Markdown table: ms per call, plain / ours.
"""

from __future__ import annotations

import time

import tensorflow as tf
from absl import app, flags

from models.layers.conv import upsample2x_reflect_conv5
from models.layers.normalization import instance_standardize, layer_standardize
from models.layers.padding import crop2d

FLAGS = flags.FLAGS
flags.DEFINE_integer("reps", 20, "Calls per timed round.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds (ours, plain); the best of each side is kept.")


def _plain_instance_norm(x):
  mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
  return (x - mean) * tf.math.rsqrt(tf.reduce_mean(tf.square(x - mean), axis=[1, 2], keepdims=True) + 1e-5)


def _plain_layer_norm(x):
  centered = x - tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
  n = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32)
  return centered / (tf.sqrt(tf.reduce_sum(tf.square(centered), axis=[1, 2, 3], keepdims=True) / (n - 1)) + 1e-5)


def _plain_upsample_conv(x, kernel):
  up = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
  return tf.nn.conv2d(tf.pad(up, [[0, 0], [2, 2], [2, 2], [0, 0]], "REFLECT"), kernel, 1, "VALID")


def cases() -> list:
  """(name, shape, ours(x, w), plain(x, w), kernel shape or None) for every row."""
  rows = []
  for shape in ((2, 128, 128, 64), (4, 64, 64, 128)):
    rows.append(("crop 1", shape, lambda x, w: crop2d(x, 1, 1, 1, 1), lambda x, w: x[:, 1:-1, 1:-1], None))
  for shape in ((1, 32, 32, 256), (2, 32, 32, 256), (2, 64, 64, 128)):
    rows.append(("instance norm", shape, lambda x, w: instance_standardize(x, 1e-5),
                 lambda x, w: _plain_instance_norm(x), None))
  for shape in ((2, 64, 64, 128), (2, 128, 128, 64)):
    rows.append(("MUNIT LayerNorm", shape, lambda x, w: layer_standardize(x, 1e-5),
                 lambda x, w: _plain_layer_norm(x), None))
  for shape, c_out in (((2, 32, 32, 256), 128), ((2, 64, 64, 128), 64)):
    rows.append((f"upsample conv 5x5 -> {c_out}", shape, upsample2x_reflect_conv5, _plain_upsample_conv,
                 (5, 5, shape[-1], c_out)))
  return rows


def _step(fn, x, w, dy):
  @tf.function
  def step():
    with tf.GradientTape() as tape:
      tape.watch(x)
      if w is not None:
        tape.watch(w)
      y = fn(x, w)
      loss = tf.reduce_sum(y * dy)
    return tape.gradient(loss, [x] if w is None else [x, w])
  return step


def measure(name, shape, ours, plain, kernel_shape) -> dict:
  """Best ms per call of each side over the rounds."""
  x = tf.random.stateless_normal(shape, seed=[1, 2])
  w = None if kernel_shape is None else tf.random.stateless_normal(kernel_shape, seed=[3, 4]) * 0.05
  dy = tf.random.stateless_normal(ours(x, w).shape, seed=[5, 6])
  steps = {"ours": _step(ours, x, w, dy), "plain": _step(plain, x, w, dy)}
  for step in steps.values():
    step()
    step()
  best = {key: float("inf") for key in steps}
  for _ in range(FLAGS.rounds):
    for key, step in steps.items():
      start = time.perf_counter()
      for _ in range(FLAGS.reps):
        step()
      best[key] = min(best[key], (time.perf_counter() - start) / FLAGS.reps * 1e3)
  return {"name": name, "shape": "x".join(map(str, shape)), **best}


def main(argv):
  del argv
  print("| layer (forward + gradient) | input | ours ms | plain ms | plain / ours |")
  print("|---|---|---|---|---|")
  for case in cases():
    r = measure(*case)
    print(f"| {r['name']} | {r['shape']} | {r['ours']:.2f} | {r['plain']:.2f} | **{r['plain'] / r['ours']:.2f}** |",
          flush=True)


if __name__ == "__main__":
  app.run(main)
