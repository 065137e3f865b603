"""Inference from the exported SavedModel (what the model server runs) against the official generator, every family.

  python -m benchmarks.bench_inference [--rows=unit:paper,munit:paper,ugatit:paper_light,ugatit:paper] \
      [--image_size=256] [--batches=1,8] [--runs=3] [--dtypes=float32,bfloat16] [--json=FILE]

Per (family, preset) the model (random weights: speed does not depend on them) is wrapped exactly as
components.export saves it (components.translator.TranslatorModule) and written with tf.saved_model.save, once per
compute dtype (--dtypes: "bfloat16" builds the networks under Keras' mixed_bfloat16 policy, float32 variables).
Then each (row, batch, dtype) is measured in a fresh process that only loads that SavedModel, as a server does:
  * ours: the `a2b` signature on a uint8 [B, S, S, 3] batch (MUNIT: with a seed, its served default);
  * the official generator in eval mode under torch.no_grad() on a float [B, 3, S, S] batch, same architecture
    (NVlabs/MUNIT AdaINGen encode + decode with a random style, mingyuliutw/UNIT version_02 COCOResGen.forward_a2b,
    znxlwm/UGATIT-pytorch ResnetGenerator light or full), in a --torch_python ($I2I_TORCH_PYTHON) subprocess built
    from the mirrored repositories ($I2I_OFFICIAL_REPOS, benchmarks/official/source.py), waiting on a pipe;
  * the ceiling: a 2048^3 float32 tf.matmul (2 n^3 FLOPs) in our process.
After one warm-up call each, --runs rounds alternate: one matmul, one SavedModel call, one torch call; each column
is the median of its rounds. FLOPs are those of the official architecture, counted by torch's FlopCounterMode on
the official generator (so a cheaper algorithm of ours shows as more than 100% of the ceiling); without torch, the
FLOPs of our traced graph (benchmarks.bench_generators.graph_flops) are used and the table says so.
Peak resident memory (VmHWM) of each measuring process is reported: ours loads only the SavedModel; torch only
builds the generator. With --dtypes containing bfloat16 the output difference to float32 (same weights, uint8
outputs, the same input batch) is measured too.
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
from absl import app, flags

from benchmarks import profile_ops
from benchmarks.procstat import peak_rss_mib
from benchmarks.profile_ops import TORCH_PROFILER
from benchmarks.torch_process import TorchProcess, export_official

flags.DEFINE_list("rows", ["unit:paper", "munit:paper", "ugatit:paper_light", "ugatit:paper"],
                  "family:preset pairs to measure.")
flags.DEFINE_integer("image_size", 256, "Square input size.")
flags.DEFINE_list("batches", ["1", "8"], "Batch sizes.")
flags.DEFINE_integer("runs", 3, "Alternating timed rounds per row (medians reported).")
flags.DEFINE_list("dtypes", ["float32"], "Compute dtypes of our SavedModel: float32 and/or bfloat16.")
flags.DEFINE_integer("profile", 0, "Also trace this many calls of each side (float32 rows) and report what bounds "
                     "the row (benchmarks/profile_ops.py): kernel time, other ops, share of the ceiling.")
flags.DEFINE_string("torch_python", os.environ.get("I2I_TORCH_PYTHON", ""),
                    "Python with torch for the official column (default: $I2I_TORCH_PYTHON).")
flags.DEFINE_string("mirrors", os.environ.get("I2I_OFFICIAL_REPOS", ""),
                    "Directory holding the official repositories (default: $I2I_OFFICIAL_REPOS).")
flags.DEFINE_string("json", "", "Optional path for the rows as JSON.")
flags.DEFINE_string("work_dir", "", "Where the SavedModels go (default: a temporary directory, removed).")
flags.DEFINE_list("render", [], "Print the tables from these --json files of earlier runs (merged) and exit.")
flags.DEFINE_string("save", "", "Internal: 'family,preset,dtype,size,dir' -> write that SavedModel and exit.")
flags.DEFINE_string("row", "", "Internal: 'family,preset,dtype,size,batch,dir' -> measure it, print JSON.")
FLAGS = flags.FLAGS

TORCH_PRELUDE = r'''
import json, sys, time, types
src, cfg = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, src)
try:
  import cv2  # noqa: F401
except ImportError:
  sys.modules["cv2"] = types.ModuleType("cv2")  # only UNIT's GaussianSmoother (COCOMsDis) uses it
import torch
from torch.utils.flop_counter import FlopCounterMode
torch.manual_seed(0)
family, size, batch, m = cfg["family"], cfg["size"], cfg["batch"], cfg["model"]
x = torch.rand(batch, 3, size, size) * 2 - 1
'''

# Family -> torch code defining `fn`, the official generator's a2b translation of `x` at the preset's architecture.
TORCH_GENERATORS = {
    "munit": r'''
from networks import AdaINGen
params = dict(dim=m["dim"], mlp_dim=m["mlp_dim"], style_dim=m["style_dim"], activ="relu",
              n_downsample=m["n_downsample"], n_res=m["n_res"], pad_type="reflect")
gen_a, gen_b = AdaINGen(3, params).eval(), AdaINGen(3, params).eval()
style = torch.randn(batch, m["style_dim"], 1, 1)
fn = lambda: gen_b.decode(gen_a.encode(x)[0], style)
''',
    "unit": r'''
from trainers.cocogan_nets import COCOResGen
gen = COCOResGen(dict(input_dim_a=3, input_dim_b=3, ch=m["ch"], n_enc_front_blk=m["n_enc_front_blk"],
                      n_enc_res_blk=m["n_enc_res_blk"], n_enc_shared_blk=m["n_enc_shared_blk"],
                      n_gen_shared_blk=m["n_gen_shared_blk"], n_gen_res_blk=m["n_gen_res_blk"],
                      n_gen_front_blk=m["n_gen_front_blk"])).eval()
fn = lambda: gen.forward_a2b(x)[0]
''',
    "ugatit": r'''
from networks import ResnetGenerator
gen = ResnetGenerator(3, 3, ngf=m["ch"], n_blocks=m["n_res"], img_size=size, light=m["light"]).eval()
fn = lambda: gen(x)
''',
}

TORCH_LOOP = r'''
with torch.no_grad():
  with FlopCounterMode(display=False) as counter:
    fn()
  fn()
  print(json.dumps({"flops": counter.get_total_flops(), "threads": torch.get_num_threads(),
                    "version": torch.__version__}), flush=True)
  for line in sys.stdin:  # one timed call per line; "profile N": op self times per call over N traced calls
    if line.startswith("profile"):
      print(json.dumps({"ops": profile(fn, int(line.split()[1]))}), flush=True)
      continue
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    with open("/proc/self/status") as status:  # VmHWM: this process's peak resident set (ru_maxrss would include
      hwm = [int(l.split()[1]) for l in status if l.startswith("VmHWM:")]  # the parent's, inherited at fork)
    print(json.dumps({"seconds": seconds, "maxrss_mib": hwm[0] / 1024 if hwm else None}), flush=True)
'''


def saved_model_dir(root: str, family: str, preset: str, dtype: str, size: int) -> str:
  return os.path.join(root, f"{family}_{preset}_{dtype}_{size}")


def build_module(family_name: str, preset: str, dtype: str, size: int):
  """The TranslatorModule of the preset's model at `size`, built under `dtype` compute (seeded weights)."""
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import models  # pylint: disable=import-outside-toplevel
  from components.translator import TranslatorModule  # pylint: disable=import-outside-toplevel
  from models.precision import compute_policy  # pylint: disable=import-outside-toplevel
  family = models.get_family(family_name)
  config = models.get_config(family_name, preset, image_size=size)
  with compute_policy(dtype):
    keras.utils.set_random_seed(0)
    model = family.build_model(config)
  module = TranslatorModule(model, family)
  module.translate(tf.zeros([1, size, size, 3], tf.uint8), "a2b")  # builds every variable
  return module, config


def save(family_name: str, preset: str, dtype: str, size: int, path: str) -> None:
  """Writes the SavedModel exactly as components.export's signatures define it."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  module, _ = build_module(family_name, preset, dtype, size)
  tf.saved_model.save(module, path, signatures=module.signatures())


def request(loaded, batch: int, size: int, seed: int = 0) -> dict:
  """One a2b request's inputs (uint8 images; a seed when the signature takes one)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  images = np.random.default_rng(seed).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
  inputs = {"images": tf.constant(images)}
  if "seed" in loaded.signatures["a2b"].structured_input_signature[1]:
    inputs["seed"] = tf.constant(np.arange(batch), tf.int64)
  return inputs


def torch_generator(family: str, size: int, batch: int, model_config: dict, workdir: str) -> TorchProcess:
  """The official generator in a torch subprocess: built, FLOPs counted, warmed up; one timed call per request."""
  src, why = export_official(family, workdir, FLAGS.mirrors)
  if src is None:
    return TorchProcess.unavailable(why)
  cfg = {"family": family, "size": size, "batch": batch, "model": model_config}
  return TorchProcess(FLAGS.torch_python, TORCH_PRELUDE + TORCH_PROFILER + TORCH_GENERATORS[family] + TORCH_LOOP,
                      [src, json.dumps(cfg)], workdir)


def measure_row(family: str, preset: str, dtype: str, size: int, batch: int, path: str) -> dict:
  """One row in this (fresh) process: medians of alternating SavedModel / torch / matmul calls, FLOPs, RSS."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import models  # pylint: disable=import-outside-toplevel
  from benchmarks.ceiling import MATMUL_N, graph_flops, matmul_fn  # pylint: disable=import-outside-toplevel
  loaded = tf.saved_model.load(path)
  fn = loaded.signatures["a2b"]
  inputs = request(loaded, batch, size)
  fn(**inputs)  # warm-up
  config = models.get_config(family, preset, image_size=size)
  torch = torch_generator(family, size, batch, config.to_dict(), tempfile.mkdtemp(prefix="bench_inference_"))
  matmul = matmul_fn()
  matmul()
  ours, theirs, ceiling, torch_rss = [], [], [], None
  for _ in range(FLAGS.runs):
    start = time.perf_counter()
    matmul()
    ceiling.append(time.perf_counter() - start)
    start = time.perf_counter()
    _ = [v.numpy() for v in fn(**inputs).values()]
    ours.append(time.perf_counter() - start)
    answer = torch.request("1")
    if answer:
      theirs.append(answer["seconds"])
      torch_rss = answer["maxrss_mib"]
  profiled = {}
  if FLAGS.profile and theirs and dtype == "float32":
    ours_split = profile_ops.split(profile_ops.tf_profile(
        lambda n: [[v.numpy() for v in fn(**inputs).values()] for _ in range(n)], FLAGS.profile), "tf")
    profiled = {"ours_split": ours_split,
                "torch_split": profile_ops.split(torch.request(f"profile {FLAGS.profile}")["ops"], "torch")}
  torch.close()
  rss_ours = peak_rss_mib()
  flops = torch.info.get("flops")
  flops_source = "official (torch FlopCounterMode)"
  if not flops:
    family_obj = models.get_family(family)
    model = family_obj.build_model(config)
    style = tf.zeros([batch, model.sample_style(tf.constant([0], tf.int64)).shape[-1]]) \
        if family_obj.traits.multimodal else None
    forward = tf.function(lambda x: model.translate(x, "a2b", style=style)["images"])
    flops = graph_flops(forward.get_concrete_function(tf.TensorSpec([batch, size, size, 3], tf.float32)))
    flops_source = "ours (traced graph)"
  return {"family": family, "preset": preset, "dtype": dtype, "size": size, "batch": batch,
          "ours_s": statistics.median(ours), "ours_runs": ours,
          "torch_s": statistics.median(theirs) if theirs else None, "torch_runs": theirs, "torch_why": torch.why,
          "ceiling_gflops": 2.0 * MATMUL_N ** 3 / statistics.median(ceiling) / 1e9,
          "flops": flops, "flops_source": flops_source, "ours_maxrss_mib": rss_ours, "torch_maxrss_mib": torch_rss,
          "torch_threads": torch.info.get("threads"), "tf_threads": tf.config.threading.get_intra_op_parallelism_threads(),
          **profiled}


def output_difference(family: str, preset: str, size: int) -> dict:
  """bfloat16 vs float32 compute with the same weights on one batch: uint8 output differences and PSNR."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  f32, _ = build_module(family, preset, "float32", size)
  b16, _ = build_module(family, preset, "bfloat16", size)
  # The same architecture lists its weights in the same order (the checkpoint layout relies on it); names can
  # differ between two builds in one process (Keras' unique-name counters).
  pairs = list(zip(f32._holder.model.weights, b16._holder.model.weights))  # pylint: disable=protected-access
  if not pairs or any(a.shape != b.shape for a, b in pairs):
    raise RuntimeError("the float32 and bfloat16 models do not list the same weights")
  for a, b in pairs:
    b.assign(a)
  images = tf.constant(np.random.default_rng(1).integers(0, 256, size=(2, size, size, 3), dtype=np.uint8))
  style = None
  if f32.traits["multimodal"]:
    style = tf.random.stateless_normal([2, f32.traits["style_dim"]], seed=[1, 2])
  x = f32.translate(images, "a2b", style=style)["images"].numpy().astype(np.float64)
  y = b16.translate(images, "a2b", style=style)["images"].numpy().astype(np.float64)
  mse = float(np.mean((x - y) ** 2))
  return {"mean_abs": float(np.mean(np.abs(x - y))), "max_abs": float(np.max(np.abs(x - y))),
          "psnr_db": float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)}


def with_bound(row: dict) -> dict:
  """The row with profile_ops.bound's fields (from its medians, FLOPs, ceiling and both sides' op time splits)."""
  return {**row, "bound_ours_s": row["ours_s"], "bound_torch_s": row["torch_s"],
          "bound_detail": profile_ops.bound(row["ours_s"], row["torch_s"], row["ours_split"], row["torch_split"],
                                            row["flops"], row["ceiling_gflops"])}


def format_table(rows: list, diffs: dict, size: int, runs: int) -> str:
  """The Markdown tables (speed, memory and FLOPs per row; the bfloat16 output difference per family)."""
  lines = []
  out = lines.append
  out(f"{size} px; medians of {runs} alternating rounds; FLOPs of the official architecture; "
        "ceiling = float32 2048^3 tf.matmul in the same rounds")
  out("| family (preset) | dtype | batch | GFLOP/img | ours ms/batch | torch ms/batch | torch / ours | ours GFLOP/s "
        "| ceiling GFLOP/s | % of ceiling | ours peak RSS MiB | torch peak RSS MiB |")
  out("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    gflop = r["flops"] / 1e9 / r["batch"]
    rate = gflop * r["batch"] / r["ours_s"]
    torch_ms = f"{1e3 * r['torch_s']:.0f}" if r["torch_s"] else "-"
    ratio = f"**{r['torch_s'] / r['ours_s']:.2f}**" if r["torch_s"] else "-"
    torch_rss = f"{r['torch_maxrss_mib']:.0f}" if r["torch_maxrss_mib"] else "-"
    out(f"| {r['family']} ({r['preset']}) | {r['dtype']} | {r['batch']} | {gflop:.1f} | {1e3 * r['ours_s']:.0f} | "
          f"{torch_ms} | {ratio} | {rate:.1f} | {r['ceiling_gflops']:.1f} | {100 * rate / r['ceiling_gflops']:.0f}% | "
          f"{r['ours_maxrss_mib']:.0f} | {torch_rss} |")
  for why in sorted({r["torch_why"] for r in rows if r["torch_why"]}):
    out(f"torch column skipped: {why}")
  if {r["flops_source"] for r in rows} != {"official (torch FlopCounterMode)"}:
    out("FLOPs: some rows count our traced graph (no torch): an algorithmic saving of ours is not visible there")
  profiled = [with_bound(r) for r in rows if r.get("ours_split")]
  if profiled:
    out("\nWhat bounds each float32 row (benchmarks/profile_ops.py; ms per batch):")
    out(profile_ops.format_bound_table(profiled, lambda r: f"{r['family']} ({r['preset']}) b{r['batch']}"))
  if diffs:
    out("\n| family (preset) | bfloat16 vs float32: mean abs (of 255) | max abs | PSNR dB |\n|---|---|---|---|")
    for spec, d in diffs.items():
      out(f"| {spec} | {d['mean_abs']:.2f} | {d['max_abs']:.0f} | {d['psnr_db']:.1f} |")
  return "\n".join(lines)


def _child(argv: list) -> str:
  proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_inference", *argv,
                         f"--torch_python={FLAGS.torch_python}", f"--mirrors={FLAGS.mirrors}",
                         f"--runs={FLAGS.runs}", f"--profile={FLAGS.profile}"], capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f"{argv[0]} failed:\n" + "\n".join(proc.stderr.strip().splitlines()[-8:]))
  return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def main(argv):
  """Saves each SavedModel, measures every (row, batch, dtype) in its own process, prints the table."""
  del argv
  if FLAGS.save:
    family, preset, dtype, size, path = FLAGS.save.split(",")
    save(family, preset, dtype, int(size), path)
    return
  if FLAGS.render:
    rows, diffs = [], {}
    for path in FLAGS.render:
      with open(path, encoding="utf-8") as f:
        saved = json.load(f)
      rows += saved["rows"]
      diffs.update(saved.get("bfloat16_difference", {}))
    print(format_table(rows, diffs, rows[0]["size"], FLAGS.runs))
    return
  if FLAGS.row:
    family, preset, dtype, size, batch, path = FLAGS.row.split(",")
    print(json.dumps(measure_row(family, preset, dtype, int(size), int(batch), path)))
    return
  root = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_inference_models_")
  size, rows, diffs = FLAGS.image_size, [], {}
  for spec in FLAGS.rows:
    family, preset = spec.split(":")
    for dtype in FLAGS.dtypes:
      path = saved_model_dir(root, family, preset, dtype, size)
      if not os.path.isdir(path):
        _child([f"--save={family},{preset},{dtype},{size},{path}"])
      for batch in map(int, FLAGS.batches):
        row = json.loads(_child([f"--row={family},{preset},{dtype},{size},{batch},{path}"]))
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("_runs")}), file=sys.stderr, flush=True)
    if "bfloat16" in FLAGS.dtypes:
      diffs[spec] = output_difference(family, preset, size)
  print(format_table(rows, diffs, size, FLAGS.runs))
  if FLAGS.json:
    with open(FLAGS.json, "w", encoding="utf-8") as f:
      json.dump({"rows": rows, "bfloat16_difference": diffs}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
