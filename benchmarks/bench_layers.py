"""Layer rewrites against the plain TensorFlow ops they replace: forward, and forward + gradient, same inputs.

  python -m benchmarks.bench_layers [--reps=20] [--rounds=3]

Rows (issue 17's third pass, BUILD.md):
  * crop by 1 on each side: `models.layers.padding.crop2d` (Slice, gradient Pad) vs strided indexing
    `x[:, 1:-1, 1:-1]` (StridedSlice, gradient StridedSliceGrad);
  * instance norm: `instance_standardize` (written-out gradient) vs the same formula under autodiff;
  * MUNIT LayerNorm: `layer_standardize` vs the same formula under autodiff;
  * MUNIT's upsampling conv (nearest x2, reflect pad 2, 5x5): `upsample2x_reflect_conv5` vs upsample + pad + conv;
  * U-GAT-IT's upsampling conv (nearest x2, reflect pad 1, 3x3): `upsample2x_reflect_conv3` vs the same;
  * AdaLIN: `instance_layer_norm_affine` vs the two-norm formula (normalize twice, mix, scale, shift);
  * 3x3 convolution: `winograd_conv3x3` vs tf.nn.conv2d (oneDNN's direct convolution).
Each case is timed forward only and as one `tf.function` returning the input (and kernel) gradients of
sum(y * dy). The two sides alternate for --rounds rounds of --reps calls; the best round of each is kept (load
from other processes only slows a run down). Prints a Markdown table: ms per call, plain / ours.
"""

from __future__ import annotations

import time

import tensorflow as tf
from absl import app, flags

from models.layers.adalin import instance_layer_norm_affine
from models.layers.conv import upsample2x_reflect_conv3, upsample2x_reflect_conv5, winograd_conv3x3
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
  pad = kernel.shape[0] // 2
  return tf.nn.conv2d(tf.pad(up, [[0, 0], [pad, pad], [pad, pad], [0, 0]], "REFLECT"), kernel, 1, "VALID")


def _adalin_args(shape):
  """rho, gamma, beta of an AdaLIN over `shape` (fixed values)."""
  channels = shape[-1]
  return (tf.linspace(0.0, 1.0, channels), tf.random.stateless_normal([shape[0], channels], seed=[7, 8]),
          tf.random.stateless_normal([shape[0], channels], seed=[9, 10]))


def _plain_adalin(x, rho, gamma, beta):
  def norm(axes):
    n = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)
    mean, var = tf.nn.moments(x, axes, keepdims=True)
    return (x - mean) * tf.math.rsqrt(var * n / (n - 1) + 1e-5)
  return (rho * norm([1, 2]) + (1 - rho) * norm([1, 2, 3])) * gamma[:, None, None] + beta[:, None, None]


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
  for shape, c_out in (((1, 64, 64, 256), 128), ((1, 128, 128, 128), 64), ((4, 32, 32, 256), 128)):
    rows.append((f"upsample conv 3x3 -> {c_out}", shape, upsample2x_reflect_conv3, _plain_upsample_conv,
                 (3, 3, shape[-1], c_out)))
  for shape in ((1, 64, 64, 256), (4, 32, 32, 256), (1, 16, 16, 256)):
    args = _adalin_args(shape)
    rows.append(("AdaLIN", shape, lambda x, w, args=args: instance_layer_norm_affine(x, *args, 1e-5),
                 lambda x, w, args=args: _plain_adalin(x, *args), None))
  for shape, c_out in (((1, 18, 18, 256), 256), ((4, 18, 18, 256), 256), ((1, 34, 34, 256), 256),
                       ((4, 34, 34, 256), 256), ((1, 66, 66, 256), 256), ((8, 66, 66, 256), 256),
                       ((1, 66, 66, 256), 512), ((1, 34, 34, 128), 256), ((4, 66, 66, 128), 256),
                       ((1, 66, 66, 64), 64)):
    rows.append((f"conv 3x3 -> {c_out}", shape, winograd_conv3x3, lambda x, w: tf.nn.conv2d(x, w, 1, "VALID"),
                 (3, 3, shape[-1], c_out)))
  return rows


def _step(fn, x, w, dy, gradient: bool):
  @tf.function
  def step():
    if not gradient:
      return fn(x, w)
    with tf.GradientTape() as tape:
      tape.watch(x)
      if w is not None:
        tape.watch(w)
      y = fn(x, w)
      loss = tf.reduce_sum(y * dy)
    return tape.gradient(loss, [x] if w is None else [x, w])
  return step


def measure(name, shape, ours, plain, kernel_shape) -> dict:
  """Best ms per call of each side over the rounds, forward ("ours", "plain") and with the gradient ("+g")."""
  x = tf.random.stateless_normal(shape, seed=[1, 2])
  w = None if kernel_shape is None else tf.random.stateless_normal(kernel_shape, seed=[3, 4]) * 0.05
  dy = tf.random.stateless_normal(ours(x, w).shape, seed=[5, 6])
  steps = {f"{side}{suffix}": _step(fn, x, w, dy, bool(suffix)) for suffix in ("", "+g")
           for side, fn in (("ours", ours), ("plain", plain))}
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
  print("| layer | input | forward ms, ours / plain | plain / ours | forward + gradient ms, ours / plain | "
        "plain / ours |")
  print("|---|---|---|---|---|---|")
  for case in cases():
    r = measure(*case)
    print(f"| {r['name']} | {r['shape']} | {r['ours']:.2f} / {r['plain']:.2f} | **{r['plain'] / r['ours']:.2f}** | "
          f"{r['ours+g']:.2f} / {r['plain+g']:.2f} | **{r['plain+g'] / r['ours+g']:.2f}** |", flush=True)


if __name__ == "__main__":
  app.run(main)
