"""Ingest throughput: the Beam pipeline vs a plain single-process Pillow loop doing the same per-image work.

  python -m benchmarks.bench_ingest --num_images=300

Generates `num_images` photo-like 1024x768 JPEGs (smooth gradients + shapes + mild noise, quality 90), split
between the two domains, then measures, on the same files:
  * loop:          for each file: read, sha256, image_io.prepare_image (decode with JPEG draft, EXIF, RGB,
                   LANCZOS resize to --load_size) and image_io.encode_png: exactly the per-image work of ingest,
                   minus Beam, Example serialisation, dedup, sharding and gzip;
  * in-memory:     components.ingest_lib.run with --direct_running_mode=in_memory (the whole stage: listing,
                   pipeline start-up, dedup, shards, stats.json);
  * 2 threads:     the same with --direct_num_workers=2 (DirectRunner's multi_threading mode, ingest's default
                   for N workers: Pillow releases the GIL, so two threads use both cores);
  * 2 processes:   the same with --direct_running_mode=multi_processing --direct_num_workers=2 (each worker
                   process starts a Python and imports Beam first: about 1 s of CPU).
Prints a table of seconds, images/s and the ratio to the loop. Both sides share PNG compress level
(image_io.PNG_COMPRESS_LEVEL) and the JPEG draft decode, so they do the same work per image.
"""

import hashlib
import os
import resource
import shutil
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from components import image_io, ingest_lib

flags.DEFINE_integer("num_images", 300, "JPEGs generated (split evenly between domain a and b).")
flags.DEFINE_integer("width", 1024, "Generated image width.")
flags.DEFINE_integer("height", 768, "Generated image height.")
flags.DEFINE_integer("load_size", 286, "Ingest --load_size.")
flags.DEFINE_string("workdir", None, "Where images and outputs go (default: a temporary directory, removed).")
flags.DEFINE_list("modes", "loop,in_memory,multi_threading,multi_processing", "Which measurements to run.")

FLAGS = flags.FLAGS


def make_images(root: str, n: int, width: int, height: int) -> list[str]:
  """Writes n photo-like JPEGs (shifted smooth colour waves + ellipses + noise) under root/a and root/b."""
  rng = np.random.RandomState(0)
  yy, xx = np.mgrid[0:2 * height, 0:2 * width].astype(np.float32)
  waves = np.stack([127 + 100 * np.sin(xx / (60 + 7 * c) + yy / (90 + 5 * c) + c) for c in range(3)], -1)
  waves = waves.astype(np.uint8)
  paths = []
  for i in range(n):
    top, left = rng.randint(0, height), rng.randint(0, width)
    pixels = waves[top:top + height, left:left + width] + rng.randint(0, 12, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
      x0, y0 = rng.randint(0, width - 200), rng.randint(0, height - 200)
      draw.ellipse([x0, y0, x0 + rng.randint(40, 200), y0 + rng.randint(40, 200)],
                   fill=tuple(int(v) for v in rng.randint(0, 256, 3)))
    path = os.path.join(root, "ab"[i % 2], f"img_{i:05d}.jpg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, "JPEG", quality=90)
    paths.append(path)
  return paths


def plain_loop(paths: list[str], load_size: int) -> float:
  """Seconds for the single-process loop over `paths` (read, hash, decode/convert/resize, PNG encode)."""
  start = time.perf_counter()
  for path in paths:
    with open(path, "rb") as f:
      data = f.read()
    hashlib.sha256(data).hexdigest()
    image = image_io.prepare_image(data, load_size=load_size)
    image_io.encode_png(image.pixels)
  return time.perf_counter() - start


def beam_run(root: str, out: str, load_size: int, beam_args: tuple[str, ...]) -> float:
  """Seconds for one whole ingest run (library `run`) with the given Beam options."""
  start = time.perf_counter()
  result = ingest_lib.run(ingest_lib.IngestConfig(output_dir=out, domain_a=os.path.join(root, "a"),
                                                  domain_b=os.path.join(root, "b"), load_size=load_size,
                                                  beam_args=beam_args))
  seconds = time.perf_counter() - start
  stored = sum(result.stats["domains"][d]["stored"] for d in "ab")
  if stored != len(os.listdir(os.path.join(root, "a"))) + len(os.listdir(os.path.join(root, "b"))):
    raise RuntimeError(f"ingest stored {stored} images; expected all of them: {result.stats}")
  return seconds


def _cpu_seconds() -> float:
  """User + system CPU seconds of this process and its finished children (Beam worker processes)."""
  own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv):
  del argv
  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="bench_ingest_")
  try:
    root = os.path.join(workdir, "images")
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    paths = make_images(root, FLAGS.num_images, FLAGS.width, FLAGS.height)
    print(f"generated {len(paths)} {FLAGS.width}x{FLAGS.height} JPEGs in {time.perf_counter() - start:.1f} s "
          f"({sum(os.path.getsize(p) for p in paths) / len(paths) / 1024:.0f} KiB each); "
          f"load_size={FLAGS.load_size}, png_compress_level={image_io.PNG_COMPRESS_LEVEL}, cpus={os.cpu_count()}")
    runs = {
        "loop": ("plain Pillow loop, 1 process", lambda: plain_loop(paths, FLAGS.load_size)),
        "in_memory": ("Beam in-memory (FnApiRunner)", lambda: beam_run(
            root, os.path.join(workdir, "out_mem"), FLAGS.load_size, ("--direct_running_mode=in_memory",))),
        "multi_processing": ("Beam DirectRunner, 2 worker processes", lambda: beam_run(
            root, os.path.join(workdir, "out_mp"), FLAGS.load_size,
            ("--direct_running_mode=multi_processing", "--direct_num_workers=2"))),
        "multi_threading": ("Beam DirectRunner, 2 worker threads", lambda: beam_run(
            root, os.path.join(workdir, "out_mt"), FLAGS.load_size,
            ("--direct_num_workers=2",))),
    }
    plain_loop(paths[:4], FLAGS.load_size)  # warm imports and caches
    load_before = os.getloadavg()[0]
    results = {}
    for name in FLAGS.modes:
      cpu_before = _cpu_seconds()
      seconds = runs[name][1]()
      results[name] = (seconds, _cpu_seconds() - cpu_before)
    print(f"\n| {'run':<40} | {'seconds':>8} | {'images/s':>9} | {'vs loop':>8} | {'CPU s':>6} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 11}|{'-' * 10}|{'-' * 8}|")
    for name, (seconds, cpu) in results.items():
      ratio = f"{results['loop'][0] / seconds:.2f}x" if "loop" in results else "-"
      print(f"| {runs[name][0]:<40} | {seconds:8.2f} | {len(paths) / seconds:9.1f} | {ratio:>8} | {cpu:6.1f} |")
    print(f"(vs loop = loop seconds / run seconds, > 1 is faster; Beam runs include start-up, dedup, sharding, "
          f"gzip and stats; CPU s = user+sys of this process and its workers; 1-min load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs)")
  finally:
    if FLAGS.workdir is None:
      shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
