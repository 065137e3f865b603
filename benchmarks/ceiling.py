"""The machine's matmul ceiling and the FLOP count of a traced graph, shared by the speed benchmarks.

No flags here: bench_generators, bench_export and bench_inference import it.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf


MATMUL_N = 2048


def matmul_fn():
  """A compiled float32 n x n x n matmul and its operands; 2 n^3 FLOPs per call."""
  a = tf.random.stateless_normal([MATMUL_N, MATMUL_N], seed=[1, 2])
  b = tf.random.stateless_normal([MATMUL_N, MATMUL_N], seed=[3, 4])
  fn = tf.function(lambda x, y: tf.matmul(x, y))
  return lambda: fn(a, b).numpy()


def matmul_ceiling(runs: int = 10) -> float:
  """Best GFLOP/s of matmul_fn on this machine (best of `runs` calls after one warm-up call)."""
  matmul = matmul_fn()
  matmul()
  best = float("inf")
  for _ in range(runs):
    start = time.perf_counter()
    matmul()
    best = min(best, time.perf_counter() - start)
  return 2.0 * MATMUL_N ** 3 / best / 1e9


def graph_flops(concrete_function) -> int:
  """Multiply-add FLOPs (x2) of Conv2D, Conv2DBackpropInput (transposed conv) and MatMul ops in a traced graph."""
  total = 0
  for op in concrete_function.graph.get_operations():
    if op.type == "Conv2D":
      kh, kw, cin, _ = op.inputs[1].shape
      total += 2 * int(np.prod(op.outputs[0].shape)) * kh * kw * cin
    elif op.type == "Conv2DBackpropInput":
      kh, kw, cout, _ = op.inputs[1].shape
      total += 2 * int(np.prod(op.inputs[2].shape)) * kh * kw * cout
    elif op.type in ("MatMul", "BatchMatMulV2"):
      a, b = op.inputs[0].shape, op.inputs[1].shape
      m = a[-1] if op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x") else a[-2]
      k = a[-2] if op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x") else a[-1]
      n = b[-2] if op.get_attr("transpose_b" if op.type == "MatMul" else "adj_y") else b[-1]
      total += 2 * int(np.prod(a[:-2])) * m * k * n if len(a) > 2 else 2 * m * k * n
  return int(total)
