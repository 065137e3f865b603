"""Serving benchmark: gRPC (python -m serving.server) vs. calling the SavedModel in-process.

  python -m benchmarks.bench_serving [--saved_model=DIR] [--sizes=64,128,256] [--clients=1,8]
                                     [--requests_per_client=10] [--signature=a2b] [--output_json=PATH]

For each image size: latency p50/p99 and throughput (images/s) of
  * in-process: `tf.saved_model.load(dir).signatures[sig](images=...)`, 1 caller; N threads; one batch of N;
  * gRPC: N clients (threads, one channel each) against a server child process, batching off and on
    (max_batch_size N, batch_timeout_micros 2000).
Targets: gRPC adds <= 10 % to in-process latency at 256 px (1 client, batching off); with batching and 8
clients, gRPC throughput >= 90 % of the in-process batched throughput.
Without --saved_model a conv-net SavedModel of realistic per-pixel cost (a small ResNet generator, uint8 in/out,
any size) is built in a temporary directory, so the benchmark runs without a trained model.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "SavedModel directory to serve (default: build a conv-net one).")
flags.DEFINE_list("sizes", ["64", "128", "256"], "Square image sizes.")
flags.DEFINE_list("clients", ["1", "8"], "Concurrent client counts.")
flags.DEFINE_integer("requests_per_client", 10, "Timed requests per client per cell (after 2 warmup requests).")
flags.DEFINE_string("signature", "a2b", "Signature to call (input `images` uint8 [N, H, W, 3]).")
flags.DEFINE_string("output_json", None, "Also write the table as JSON here.")


def build_conv_savedmodel(path: str, width: int = 32, res_blocks: int = 4) -> str:
  """A fully convolutional generator (7x7 conv, 2 stride-2 downs, res blocks, 2 ups, 7x7 conv, tanh).

  Signature a2b/serving_default: images uint8 [N, H, W, 3] (H, W multiples of 4) -> images uint8 [N, H, W, 3].
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from models.api import to_model_images, to_wire_images  # pylint: disable=import-outside-toplevel

  class Generator(tf.Module):
    """The network; variables drawn with He init from a fixed seed."""
    def __init__(self):
      super().__init__()
      rng = tf.random.Generator.from_seed(0)
      def conv(k, cin, cout):
        return tf.Variable(rng.normal([k, k, cin, cout]) * (2.0 / (k * k * cin)) ** 0.5)
      self.stem = conv(7, 3, width)
      self.down = [conv(3, width, 2 * width), conv(3, 2 * width, 4 * width)]
      self.res = [(conv(3, 4 * width, 4 * width), conv(3, 4 * width, 4 * width)) for _ in range(res_blocks)]
      self.up = [conv(3, 4 * width, 2 * width), conv(3, 2 * width, width)]
      self.head = conv(7, width, 3)

    @staticmethod
    def _norm(x):
      mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
      return (x - mean) * tf.math.rsqrt(var + 1e-5)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def a2b(self, images):
      x = to_model_images(images)
      x = tf.nn.relu(self._norm(tf.nn.conv2d(x, self.stem, 1, "SAME")))
      for w in self.down:
        x = tf.nn.relu(self._norm(tf.nn.conv2d(x, w, 2, "SAME")))
      for w1, w2 in self.res:
        y = tf.nn.relu(self._norm(tf.nn.conv2d(x, w1, 1, "SAME")))
        x = x + self._norm(tf.nn.conv2d(y, w2, 1, "SAME"))
      for w in self.up:
        x = tf.image.resize(x, tf.shape(x)[1:3] * 2, method="nearest")
        x = tf.nn.relu(self._norm(tf.nn.conv2d(x, w, 1, "SAME")))
      x = tf.tanh(tf.nn.conv2d(x, self.head, 1, "SAME"))
      return {"images": to_wire_images(x)}

  module = Generator()
  fn = module.a2b.get_concrete_function()
  tf.saved_model.save(module, path, signatures={"a2b": fn, "serving_default": fn})
  return path


def _stats(latencies: list, images: int, wall: float) -> dict:
  ms = np.asarray(latencies) * 1000.0
  return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
          "images_per_s": images / wall}


def _concurrent(call, clients: int, requests: int) -> tuple:
  """Runs `call(i)` requests times in each of `clients` threads; (latencies, wall seconds)."""
  latencies = []
  def worker(i):
    out = []
    for _ in range(2):
      call(i)
    for _ in range(requests):
      t0 = time.perf_counter()
      call(i)
      out.append(time.perf_counter() - t0)
    return out
  barrier_start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    for result in pool.map(worker, range(clients)):
      latencies.extend(result)
  wall = time.perf_counter() - barrier_start
  # Warmup requests are inside the wall time; discount them proportionally.
  wall *= requests / (requests + 2)
  return latencies, wall


def bench_in_process(path: str, signature: str, sizes: list, clients: list, requests: int) -> list:
  """Rows for direct signature calls: 1 caller, N threads, and one [N, size, size, 3] batch."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  fn = tf.saved_model.load(path).signatures[signature]
  rows = []
  for size in sizes:
    for n in clients:
      one = np.random.default_rng(0).integers(0, 256, [1, size, size, 3], dtype=np.uint8)
      lat, wall = _concurrent(lambda i: fn(images=tf.constant(one))["images"].numpy(), n, requests)
      rows.append({"size": size, "clients": n, "mode": "in-process", **_stats(lat, n * requests, wall)})
      if n > 1:
        batch = np.repeat(one, n, axis=0)
        lat, wall = _concurrent(lambda i: fn(images=tf.constant(batch))["images"].numpy(), 1, requests)
        rows.append({"size": size, "clients": n, "mode": f"in-process batch of {n}",
                     **_stats(lat, n * requests, wall)})
  return rows


def bench_grpc(path: str, signature: str, sizes: list, clients: list, requests: int, batching: bool) -> list:
  """Rows for N gRPC clients (threads, a channel each) against a `python -m serving.server` child process."""
  from serving import client as client_lib  # pylint: disable=import-outside-toplevel
  from serving import process  # pylint: disable=import-outside-toplevel
  root = tempfile.mkdtemp(prefix="bench_serving_")
  os.symlink(os.path.abspath(path), os.path.join(root, "1"))
  args = ["--model_name=bench", f"--model_base_path={root}", "--file_system_poll_wait_seconds=0"]
  if batching:
    params = os.path.join(root, "batching.txt")
    with open(params, "w") as f:
      f.write(f"max_batch_size {{ value: {max(clients)} }} batch_timeout_micros {{ value: 2000 }} "
              f"num_batch_threads {{ value: 1 }} max_enqueued_batches {{ value: 100 }}")
    args += ["--enable_batching", f"--batching_parameters_file={params}"]
  rows = []
  try:
    with process.ServerProcess(args, process.free_port()) as server:
      stubs = [client_lib.TranslationClient(server.target, "bench", timeout=300) for _ in range(max(clients))]
      stubs[0].wait_until_available(120)
      for size in sizes:
        one = np.random.default_rng(0).integers(0, 256, [1, size, size, 3], dtype=np.uint8)
        for n in clients:
          lat, wall = _concurrent(lambda i: stubs[i].predict(signature, {"images": one}), n, requests)
          rows.append({"size": size, "clients": n, "mode": "gRPC batching " + ("on" if batching else "off"),
                       **_stats(lat, n * requests, wall)})
      for stub in stubs:
        stub.close()
  finally:
    shutil.rmtree(root, ignore_errors=True)
  return rows


def main(argv):
  """Runs every cell and prints the table and the two target ratios."""
  del argv
  sizes = [int(s) for s in FLAGS.sizes]
  clients = [int(c) for c in FLAGS.clients]
  tmp = None
  path = FLAGS.saved_model
  if path is None:
    tmp = tempfile.mkdtemp(prefix="bench_model_")
    path = build_conv_savedmodel(os.path.join(tmp, "model"))
  try:
    rows = bench_in_process(path, FLAGS.signature, sizes, clients, FLAGS.requests_per_client)
    for batching in (False, True):
      rows += bench_grpc(path, FLAGS.signature, sizes, clients, FLAGS.requests_per_client, batching)
  finally:
    if tmp:
      shutil.rmtree(tmp, ignore_errors=True)
  rows.sort(key=lambda r: (r["size"], r["clients"], r["mode"]))
  print(f"{'size':>5} {'clients':>7}  {'mode':<24} {'p50 ms':>8} {'p99 ms':>8} {'img/s':>8}")
  for r in rows:
    print(f"{r['size']:>5} {r['clients']:>7}  {r['mode']:<24} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
          f"{r['images_per_s']:>8.1f}")
  def find(size, n, mode):
    return next((r for r in rows if r["size"] == size and r["clients"] == n and r["mode"] == mode), None)
  big, many = max(sizes), max(clients)
  inproc, grpc_off = find(big, 1, "in-process"), find(big, 1, "gRPC batching off")
  if inproc and grpc_off:
    overhead = grpc_off["p50_ms"] / inproc["p50_ms"] - 1.0
    print(f"gRPC latency overhead at {big} px, 1 client: {overhead * 100:+.1f}% (target <= +10%)")
  batched, grpc_on = find(big, many, f"in-process batch of {many}"), find(big, many, "gRPC batching on")
  if batched and grpc_on:
    ratio = grpc_on["images_per_s"] / batched["images_per_s"]
    print(f"gRPC batched throughput at {big} px, {many} clients: {ratio * 100:.0f}% of in-process batched "
          "(target >= 90%)")
  if FLAGS.output_json:
    with open(FLAGS.output_json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main)
