"""Generator forward-pass speed (MUNIT a2b, UNIT a2b) against this machine's float32 matmul ceiling, beside
the official PyTorch generators.

  python -m benchmarks.bench_generators [--families=munit,unit] [--image_size=256] [--runs=5]

In one run it measures
  * per family, the paper-preset a2b translation of one `[1, S, S, 3]` image as a compiled `tf.function`;
    its FLOPs are counted exactly from the traced graph
    (Conv2D: 2 * |output| * kh * kw * C_in, transposed conv: 2 * |input| * kh * kw * C_out, MatMul: 2 m k n);
  * the ceiling: GFLOP/s of a compiled 2048x2048x2048 float32 `tf.matmul` (2 n^3 FLOPs), run alternately
    with the generator (`--runs` rounds of one matmul + one translation) so that both see the same load from
    other processes; the best time of each is kept (load only ever slows a run down);
  * the official generator (NVlabs/MUNIT AdaINGen encode + decode, mingyuliutw/UNIT version_02 COCOResGen
    forward_a2b) in CPU PyTorch, as a subprocess of --torch_python ($I2I_TORCH_PYTHON) on a script generated here from
    the official repositories ($I2I_OFFICIAL_REPOS, see benchmarks/official/source.py); that column is skipped with a message when the venv or a mirror is absent.
Prints a Markdown table (GFLOP/s, % of the ceiling, torch ms).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

import models
from benchmarks.ceiling import MATMUL_N, graph_flops, matmul_fn


TORCH_PRELUDE = r'''
import json, statistics, sys, time, types
sys.path.insert(0, sys.argv[1])
try:
  import cv2  # noqa: F401
except ImportError:
  sys.modules["cv2"] = types.ModuleType("cv2")  # only UNIT's GaussianSmoother (COCOMsDis) uses it
import torch
family, size, runs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
x = torch.rand(1, 3, size, size) * 2 - 1
'''

# Family -> torch code defining `fn`, the official paper generator's a2b translation of `x` (run between
# TORCH_PRELUDE and TORCH_TIMING).
TORCH_GENERATORS = {
    "munit": r'''
from networks import AdaINGen
params = dict(dim=64, mlp_dim=256, style_dim=8, activ="relu", n_downsample=2, n_res=4, pad_type="reflect")
gen_a, gen_b = AdaINGen(3, params).eval(), AdaINGen(3, params).eval()
style = torch.randn(1, 8, 1, 1)
fn = lambda: gen_b.decode(gen_a.encode(x)[0], style)
''',
    "unit": r'''
from trainers.cocogan_nets import COCOResGen
gen = COCOResGen(dict(input_dim_a=3, input_dim_b=3, ch=64, n_enc_front_blk=3, n_enc_res_blk=3,
                      n_enc_shared_blk=1, n_gen_shared_blk=1, n_gen_res_blk=3, n_gen_front_blk=3)).eval()
fn = lambda: gen.forward_a2b(x)[0]
''',
}

TORCH_TIMING = r'''
times = []
with torch.no_grad():
  for _ in range(2):
    fn()
  for _ in range(runs):
    t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
print(json.dumps({"best_s": min(times), "median_s": statistics.median(times), "threads": torch.get_num_threads(),
                  "version": torch.__version__}))
'''

flags.DEFINE_list("families", ["munit", "unit"], "Families whose paper-preset generator is measured.")
flags.DEFINE_integer("image_size", 256, "Square input size (multiple of 4).")
flags.DEFINE_integer("runs", 5, "Timed runs (median) after warm-up.")
flags.DEFINE_string("torch_python", os.environ.get("I2I_TORCH_PYTHON", ""),
                    "Python with torch for the official column (default: $I2I_TORCH_PYTHON).")


def measure_tf(family_name: str, image_size: int, runs: int) -> dict:
  """Best seconds and FLOPs of the paper generator's compiled a2b translation of one image, and the best
  seconds of the ceiling matmul run alternately with it."""
  family = models.get_family(family_name)
  config = models.get_config(family_name, "paper", image_size=image_size)
  model = family.build_model(config)
  x = tf.random.stateless_uniform([1, image_size, image_size, 3], seed=[5, 6], minval=-1.0, maxval=1.0)
  if family.traits.multimodal:
    style = tf.random.stateless_normal([1, config.style_dim], seed=[7, 8])
    fn = tf.function(lambda images: model.translate(images, "a2b", style=style)["images"])
  else:
    fn = tf.function(lambda images: model.translate(images, "a2b")["images"])
  flops = graph_flops(fn.get_concrete_function(tf.TensorSpec(x.shape, tf.float32)))
  matmul = matmul_fn()
  for _ in range(2):
    fn(x).numpy()
    matmul()
  model_times, matmul_times = [], []
  for _ in range(runs):
    t = time.perf_counter()
    matmul()
    matmul_times.append(time.perf_counter() - t)
    t = time.perf_counter()
    fn(x).numpy()
    model_times.append(time.perf_counter() - t)
  return {"best_s": min(model_times), "median_s": statistics.median(model_times), "flops": flops,
          "ceiling_gflops": 2.0 * MATMUL_N ** 3 / min(matmul_times) / 1e9}


def measure_torch(family_name: str, image_size: int, runs: int) -> dict | str:
  """Best and median seconds of the official PyTorch generator, or a message saying why it was skipped."""
  from benchmarks.official import source  # pylint: disable=import-outside-toplevel
  torch_python = flags.FLAGS.torch_python
  if not torch_python or not os.path.exists(torch_python):
    return f"skipped: no torch interpreter at {torch_python!r} (set --torch_python or $I2I_TORCH_PYTHON)"
  if family_name not in TORCH_GENERATORS:
    return f"skipped: no official generator for {family_name} in TORCH_GENERATORS"
  with tempfile.TemporaryDirectory() as tmp:
    try:
      src = source.export_reference(family_name, tmp)
    except FileNotFoundError as e:
      return f"skipped: {e}"
    script = os.path.join(tmp, "bench_torch.py")
    with open(script, "w") as f:
      f.write(TORCH_PRELUDE + TORCH_GENERATORS[family_name] + TORCH_TIMING)
    proc = subprocess.run([torch_python, script, src, family_name, str(image_size), str(runs)],
                          capture_output=True, text=True, timeout=1800)
  if proc.returncode != 0:
    return f"skipped: torch run failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}"
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv):
  """absl entry point: measures every family in --families and prints the Markdown table."""
  del argv
  print(f"{os.cpu_count()} CPUs; best of {FLAGS.runs} runs; ceiling = float32 {MATMUL_N}^3 tf.matmul run "
        f"alternately with each generator\n")
  print("| generator (paper, a2b) | input | GFLOP | ceiling GFLOP/s | TF ms (median) | TF GFLOP/s | % of ceiling "
        "| torch ms (median) | torch GFLOP/s |")
  print("|---|---|---|---|---|---|---|---|---|")
  for family_name in FLAGS.families:
    tf_result = measure_tf(family_name, FLAGS.image_size, FLAGS.runs)
    torch_result = measure_torch(family_name, FLAGS.image_size, FLAGS.runs)
    gflop = tf_result["flops"] / 1e9
    tf_rate = gflop / tf_result["best_s"]
    ceiling = tf_result["ceiling_gflops"]
    if isinstance(torch_result, dict):
      torch_cols = (f"{torch_result['best_s'] * 1e3:.0f} ({torch_result['median_s'] * 1e3:.0f}) | "
                    f"{gflop / torch_result['best_s']:.1f}")
    else:
      torch_cols = f"{torch_result} | -"
      print(torch_result, file=sys.stderr)
    print(f"| {family_name} | 1x{FLAGS.image_size}x{FLAGS.image_size}x3 | {gflop:.1f} | {ceiling:.1f} | "
          f"{tf_result['best_s'] * 1e3:.0f} ({tf_result['median_s'] * 1e3:.0f}) | {tf_rate:.1f} | "
          f"{100 * tf_rate / ceiling:.0f}% | {torch_cols} |", flush=True)


FLAGS = flags.FLAGS

if __name__ == "__main__":
  app.run(main)
