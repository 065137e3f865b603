"""Training throughput: our Keras train steps vs the official PyTorch code, same architecture and batch, this CPU.

  .venv/bin/python -m benchmarks.bench_train --models=unit,munit,ugatit --sizes=64,128 --batches=1,4
  .venv/bin/python -m benchmarks.bench_train --models=unit --sizes=64 --batches=1     # the smallest config

For every (model, size, batch): steps/s of one full iteration (D update then G update) of
  * tf: `components.trainer.make_distributed_step` over `Family.train_step` (default strategy), fed from a
    repeated in-memory batch, without and (--jit) with XLA (`jit_compile=True`);
  * torch: the official networks imported from the mirrored repositories (NVlabs/MUNIT networks.py,
    mingyuliutw/UNIT version_02 cocogan_nets.py, znxlwm/UGATIT-pytorch networks.py, written to a temp dir with
    `git show`) with the official losses and torch.optim.Adam, run by --torch_python ($I2I_TORCH_PYTHON). The
    iteration bodies follow trainer.py / cocogan_trainer.py / UGATIT.py (logging left out); CUDA calls become
    no-ops. Skipped with a message when the torch interpreter or a mirror is missing.
Architectures are each family's "paper" preset at the requested size (U-GAT-IT: "paper_light", and the global
discriminator shortened to the deepest that fits the size). Prints one table; --json writes the rows.

Each row runs in its own process. Side by side: both sides are built and warmed up, then --rounds alternating
bursts of --steps steps (ours, then torch: the torch process waits on a pipe between its bursts, idle) are timed;
each column is the median over the rounds, so a slow spell of the machine hits both sides rather than one. With
--bfloat16 our step is built a second time under --mixed_precision (models.precision: bfloat16 compute, float32
variables) and alternates with torch the same way (torch's column is the median of all its bursts). The XLA
column is timed on its own after. Peak resident memory: VmHWM of our row process and of the torch process; the bfloat16
peak is reset to the resident set after the float32 step was freed, which TF's allocator partly keeps, so it is an
upper bound.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from benchmarks import profile_ops
from benchmarks.procstat import peak_rss_mib
from benchmarks.profile_ops import TORCH_PROFILER
from benchmarks.torch_process import TorchProcess, export_official

flags.DEFINE_list("models", ["unit", "munit", "ugatit"], "Families to benchmark.")
flags.DEFINE_list("sizes", ["64", "128"], "Image sizes.")
flags.DEFINE_list("batches", ["1", "4"], "Batch sizes.")
flags.DEFINE_integer("steps", 2, "Timed steps per burst.")
flags.DEFINE_integer("rounds", 3, "Alternating bursts (ours, torch) per configuration; columns are medians.")
flags.DEFINE_integer("warmup", 1, "Untimed steps first (tracing/compilation, allocator warmup).")
flags.DEFINE_boolean("jit", True, "Also time the XLA-compiled (--jit_compile) TF step.")
flags.DEFINE_boolean("bfloat16", False, "Also time our step under --mixed_precision (bfloat16 compute, float32 "
                     "variables), alternating with torch like the float32 column.")
flags.DEFINE_boolean("profile", False, "Also trace --profile_steps steps of each side (float32) and report what "
                     "bounds the row (benchmarks/profile_ops.py): kernel time, other ops, official FLOPs, ceiling.")
flags.DEFINE_integer("profile_steps", 2, "Traced steps per side with --profile (and in profile_train).")
flags.DEFINE_string("torch_python", os.environ.get("I2I_TORCH_PYTHON", ""),
                    "Python with torch for the reference column (default: $I2I_TORCH_PYTHON).")
flags.DEFINE_string("mirrors", os.environ.get("I2I_OFFICIAL_REPOS", ""),
                    "Directory holding the official repositories (default: $I2I_OFFICIAL_REPOS; see "
                    "benchmarks/official/source.py).")
flags.DEFINE_string("json", "", "Optional path for the result rows as JSON.")
flags.DEFINE_string("render", "", "Print the tables of an earlier run's --json file and exit.")
flags.DEFINE_string("row", "", "Internal: measure one 'model,size,batch' in this process and print it as JSON.")
FLAGS = flags.FLAGS

PRESET = {"unit": "paper", "munit": "paper", "ugatit": "paper_light"}


def _ugatit_fit(size: int) -> dict:
  """U-GAT-IT's global discriminator as deep as `size` allows (the paper's 7 layers need 256 x 256)."""
  from models.ugatit.config import min_discriminator_size  # pylint: disable=import-outside-toplevel
  layers = 7
  while min_discriminator_size(layers) > size:
    layers -= 1
  return {"global_dis_layers": layers}


# Family -> size -> the overrides that make its benchmark architecture fit `size` (none for UNIT and MUNIT).
FIT_TO_SIZE = {"ugatit": _ugatit_fit}


def model_config(family: str, size: int, batch: int):
  """The family's paper architecture at `size` and `batch` (U-GAT-IT: light, global D as deep as fits)."""
  import models  # pylint: disable=import-outside-toplevel
  overrides = {"image_size": size, "batch_size": batch}
  if family in FIT_TO_SIZE:
    overrides.update(FIT_TO_SIZE[family](size))
  return models.get_config(family, PRESET[family], **overrides)


def tf_stepper(family_name: str, size: int, batch: int, jit: bool, warmup: int, compute_dtype: str = "float32"):
  """Builds our distributed train step (default strategy) on a fixed in-memory batch and runs `warmup` steps.

  Returns (run, free): run(n) times n steps and returns their seconds; free() releases the models.
  """
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import models  # pylint: disable=import-outside-toplevel
  from components import trainer  # pylint: disable=import-outside-toplevel
  from models.precision import compute_policy  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(0)
  family = models.get_family(family_name)
  config = model_config(family_name, size, batch)
  with compute_policy(compute_dtype):
    state = {"model": family.build_model(config)}
  gen_opt, dis_opt = family.build_optimizers(config)
  strategy = tf.distribute.get_strategy()
  x = tf.random.uniform([batch, size, size, 3], -1.0, 1.0, seed=1)
  state["iterator"] = iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((x, x)).repeat()))
  state["step"] = trainer.make_distributed_step(
      strategy, lambda a, b: family.train_step(state["model"], gen_opt, dis_opt, a, b, batch), jit_compile=jit)

  def run(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
      losses = state["step"](state["iterator"])
    float(next(iter(losses.values())))  # waits for the steps to finish
    return time.perf_counter() - start

  def free():  # before the row's XLA step is built (MUNIT 128 px batch 4 holds GBs of activations)
    state.clear()
    keras.backend.clear_session()
    gc.collect()

  run(warmup)
  return run, free


TORCH_PRELUDE = r'''
import json, sys, time, types, itertools
import torch, torch.nn as nn
torch.Tensor.cuda = lambda self, *a, **k: self          # the official code calls .cuda(); run on the CPU
nn.Module.cuda = lambda self, *a, **k: self
sys.modules.setdefault("cv2", types.ModuleType("cv2"))  # imported (unused for these nets) by UNIT's common_net
src, cfg = sys.argv[1], json.loads(sys.argv[2])
family, size, batch, warmup = cfg["family"], cfg["size"], cfg["batch"], cfg["warmup"]
m = cfg["model"]
torch.manual_seed(0)
x_a = torch.rand(batch, 3, size, size) * 2 - 1
x_b = torch.rand(batch, 3, size, size) * 2 - 1
adam = lambda params: torch.optim.Adam(params, lr=m["lr"], betas=(m["beta1"], m["beta2"]), weight_decay=m["weight_decay"])
'''

# Family -> torch code defining `step()`, one training step of the official code (run between TORCH_PRELUDE and
# TORCH_LOOP).
TORCH_STEPS = {
    "munit": r'''
sys.path.insert(0, src + "/munit")
from networks import AdaINGen, MsImageDis
gen = dict(dim=m["dim"], mlp_dim=m["mlp_dim"], style_dim=m["style_dim"], activ="relu", n_downsample=m["n_downsample"],
           n_res=m["n_res"], pad_type="reflect")
dis = dict(dim=m["dis_dim"], norm="none", activ="lrelu", n_layer=m["dis_n_layer"], gan_type="lsgan",
           num_scales=m["dis_num_scales"], pad_type="reflect")
gen_a, gen_b, dis_a, dis_b = AdaINGen(3, gen), AdaINGen(3, gen), MsImageDis(3, dis), MsImageDis(3, dis)
gen_opt = adam(list(gen_a.parameters()) + list(gen_b.parameters()))
dis_opt = adam(list(dis_a.parameters()) + list(dis_b.parameters()))
l1 = lambda a, b: torch.mean(torch.abs(a - b))
def step():  # trainer.py dis_update then gen_update
  sd = m["style_dim"]
  dis_opt.zero_grad()
  s_a, s_b = torch.randn(batch, sd, 1, 1), torch.randn(batch, sd, 1, 1)
  c_a, _ = gen_a.encode(x_a); c_b, _ = gen_b.encode(x_b)
  x_ba, x_ab = gen_a.decode(c_b, s_a), gen_b.decode(c_a, s_b)
  loss = m["gan_w"] * dis_a.calc_dis_loss(x_ba.detach(), x_a) + m["gan_w"] * dis_b.calc_dis_loss(x_ab.detach(), x_b)
  loss.backward(); dis_opt.step()
  gen_opt.zero_grad()
  s_a, s_b = torch.randn(batch, sd, 1, 1), torch.randn(batch, sd, 1, 1)
  c_a, s_a_p = gen_a.encode(x_a); c_b, s_b_p = gen_b.encode(x_b)
  x_a_r, x_b_r = gen_a.decode(c_a, s_a_p), gen_b.decode(c_b, s_b_p)
  x_ba, x_ab = gen_a.decode(c_b, s_a), gen_b.decode(c_a, s_b)
  c_b_r, s_a_r = gen_a.encode(x_ba); c_a_r, s_b_r = gen_b.encode(x_ab)
  loss = (m["gan_w"] * (dis_a.calc_gen_loss(x_ba) + dis_b.calc_gen_loss(x_ab))
          + m["recon_x_w"] * (l1(x_a_r, x_a) + l1(x_b_r, x_b)) + m["recon_s_w"] * (l1(s_a_r, s_a) + l1(s_b_r, s_b))
          + m["recon_c_w"] * (l1(c_a_r, c_a) + l1(c_b_r, c_b)))
  loss.backward(); gen_opt.step()
''',
    "unit": r'''
sys.path.insert(0, src + "/unit")
from trainers.cocogan_nets import COCOResGen, COCODis
gen = COCOResGen(dict(input_dim_a=3, input_dim_b=3, ch=m["ch"], n_enc_front_blk=m["n_enc_front_blk"],
                      n_enc_res_blk=m["n_enc_res_blk"], n_enc_shared_blk=m["n_enc_shared_blk"],
                      n_gen_shared_blk=m["n_gen_shared_blk"], n_gen_res_blk=m["n_gen_res_blk"],
                      n_gen_front_blk=m["n_gen_front_blk"]))
dis = COCODis(dict(ch=m["dis_ch"], input_dim_a=3, input_dim_b=3, n_layer=m["dis_n_layer"]))
gen_opt, dis_opt = adam(gen.parameters()), adam(dis.parameters())
bce = nn.functional.binary_cross_entropy
def step():  # cocogan_trainer.py dis_update then gen_update
  dis.zero_grad()
  _, x_ba, x_ab, _, _ = gen(x_a, x_b)
  res_a, res_b = dis(torch.cat((x_a, x_ba), 0), torch.cat((x_b, x_ab), 0))
  loss = 0
  for out_a, out_b in zip(res_a, res_b):
    out_a, out_b = torch.sigmoid(out_a), torch.sigmoid(out_b)
    ta, fa = torch.split(out_a, out_a.size(0) // 2, 0); tb, fb = torch.split(out_b, out_b.size(0) // 2, 0)
    loss = loss + bce(ta, torch.ones_like(ta)) + bce(fa, torch.zeros_like(fa)) + bce(tb, torch.ones_like(tb)) + bce(fb, torch.zeros_like(fb))
  (m["gan_w"] * loss).backward(); dis_opt.step()
  gen.zero_grad()
  x_aa, x_ba, x_ab, x_bb, shared = gen(x_a, x_b)
  x_bab, shared_bab = gen.forward_a2b(x_ba); x_aba, shared_aba = gen.forward_b2a(x_ab)
  outs_a, outs_b = dis(x_ba, x_ab)
  ad = sum(bce(torch.sigmoid(o), torch.ones_like(o)) for o in list(outs_a) + list(outs_b))
  kl = lambda mu: torch.mean(mu ** 2)
  l1 = nn.functional.l1_loss
  loss = (m["gan_w"] * ad + m["ll_direct_link_w"] * (l1(x_aa, x_a) + l1(x_bb, x_b))
          + m["ll_cycle_link_w"] * (l1(x_aba, x_a) + l1(x_bab, x_b)) + m["kl_direct_link_w"] * 2 * kl(shared)
          + m["kl_cycle_link_w"] * (kl(shared_bab) + kl(shared_aba)))
  loss.backward(); gen_opt.step()
''',
    "ugatit": r'''
sys.path.insert(0, src + "/ugatit")
from networks import ResnetGenerator, Discriminator, RhoClipper
G = lambda: ResnetGenerator(3, 3, ngf=m["ch"], n_blocks=m["n_res"], img_size=size, light=m["light"])
gA2B, gB2A = G(), G()
dGA, dGB = Discriminator(3, m["ch"], m["global_dis_layers"]), Discriminator(3, m["ch"], m["global_dis_layers"])
dLA, dLB = Discriminator(3, m["ch"], m["local_dis_layers"]), Discriminator(3, m["ch"], m["local_dis_layers"])
G_opt = adam(itertools.chain(gA2B.parameters(), gB2A.parameters()))
D_opt = adam(itertools.chain(dGA.parameters(), dGB.parameters(), dLA.parameters(), dLB.parameters()))
clip = RhoClipper(0, 1)
mse, l1, bce = nn.MSELoss(), nn.L1Loss(), nn.BCEWithLogitsLoss()
one = lambda t: mse(t, torch.ones_like(t)); zero = lambda t: mse(t, torch.zeros_like(t))
def step():  # UGATIT.py train(): D update, G update, rho clipping
  D_opt.zero_grad()
  f_ab, _, _ = gA2B(x_a); f_ba, _, _ = gB2A(x_b)
  loss = 0
  for d, real, fake in ((dGA, x_a, f_ba), (dLA, x_a, f_ba), (dGB, x_b, f_ab), (dLB, x_b, f_ab)):
    rl, rc, _ = d(real); fl, fc, _ = d(fake)
    loss = loss + one(rl) + zero(fl) + one(rc) + zero(fc)
  (m["adv_weight"] * loss).backward(); D_opt.step()
  G_opt.zero_grad()
  f_ab, f_ab_cam, _ = gA2B(x_a); f_ba, f_ba_cam, _ = gB2A(x_b)
  f_aba, _, _ = gB2A(f_ab); f_bab, _, _ = gA2B(f_ba)
  f_aa, f_aa_cam, _ = gB2A(x_a); f_bb, f_bb_cam, _ = gA2B(x_b)
  adv = 0
  for d, fake in ((dGA, f_ba), (dLA, f_ba), (dGB, f_ab), (dLB, f_ab)):
    fl, fc, _ = d(fake); adv = adv + one(fl) + one(fc)
  loss = (m["adv_weight"] * adv + m["cycle_weight"] * (l1(f_aba, x_a) + l1(f_bab, x_b))
          + m["identity_weight"] * (l1(f_aa, x_a) + l1(f_bb, x_b))
          + m["cam_weight"] * (bce(f_ba_cam, torch.ones_like(f_ba_cam)) + bce(f_aa_cam, torch.zeros_like(f_aa_cam))
                               + bce(f_ab_cam, torch.ones_like(f_ab_cam)) + bce(f_bb_cam, torch.zeros_like(f_bb_cam))))
  loss.backward(); G_opt.step()
  gA2B.apply(clip); gB2A.apply(clip)
''',
}

TORCH_LOOP = r'''for _ in range(warmup):
  step()
print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:  # one burst per line: the number of steps; answers with their seconds
  if line.startswith("profile"):  # "profile N": op self times per step over N traced steps
    print(json.dumps({"ops": profile(step, int(line.split()[1]))}), flush=True)
    continue
  if line.startswith("flops"):  # FLOPs of one step (forward and backward), torch's FlopCounterMode
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
      step()
    print(json.dumps({"flops": counter.get_total_flops()}), flush=True)
    continue
  start = time.perf_counter()
  for _ in range(int(line)):
    step()
  seconds = time.perf_counter() - start
  with open("/proc/self/status") as status:  # VmHWM: this process's peak resident set
    hwm = [int(l.split()[1]) for l in status if l.startswith("VmHWM:")]
  print(json.dumps({"seconds": seconds, "peak_rss_mib": hwm[0] / 1024 if hwm else None}), flush=True)
'''


def torch_stepper(family: str, size: int, batch: int, workdir: str) -> TorchProcess:
  """The official PyTorch iteration in a subprocess, built and warmed up; request(str(n)) runs a burst of n."""
  if family not in TORCH_STEPS:
    return TorchProcess.unavailable(f"no official training step for {family} in TORCH_STEPS")
  src, why = export_official(family, workdir, FLAGS.mirrors)
  if src is None:
    return TorchProcess.unavailable(why)
  cfg = {"family": family, "size": size, "batch": batch, "warmup": FLAGS.warmup,
         "model": model_config(family, size, batch).to_dict()}
  return TorchProcess(FLAGS.torch_python, TORCH_PRELUDE + TORCH_PROFILER + TORCH_STEPS[family] + TORCH_LOOP,
                      [os.path.dirname(src), json.dumps(cfg)], workdir)


def median(values):
  values = sorted(v for v in values if v is not None)
  return values[len(values) // 2] if values else None


def measure(family: str, size: int, batch: int, src: str) -> tuple[dict, list[str]]:
  """One row: steps/s of ours (float32, and bfloat16 with --bfloat16) and torch, each the median of bursts that
  alternate with torch's; then ours with XLA; peak resident memory of each; and notes."""
  row = {"model": family, "size": size, "batch": batch}
  torch = torch_stepper(family, size, batch, src)
  torch_rates = []
  dtypes = ["float32"] + (["bfloat16"] if FLAGS.bfloat16 else [])
  peak_rss_mib(reset=True)
  for dtype in dtypes:
    run_tf, free_tf = tf_stepper(family, size, batch, False, FLAGS.warmup, dtype)
    tf_rates = []
    for _ in range(FLAGS.rounds):
      tf_rates.append(FLAGS.steps / run_tf(FLAGS.steps))
      answer = torch.request(str(FLAGS.steps))
      torch_rates.append(FLAGS.steps / answer["seconds"] if answer else None)
      row["torch_peak_rss_mib"] = answer.get("peak_rss_mib") if answer else None
    key = "tf" if dtype == "float32" else "tf_bf16"
    row[key], row[f"{key}_bursts"] = median(tf_rates), tf_rates
    if FLAGS.profile and dtype == "float32":
      profile_row(row, run_tf, torch, median(torch_rates))
    free_tf()
    row[f"{key}_peak_rss_mib"] = peak_rss_mib(reset=True)
  torch.close()
  row["torch"], row["torch_bursts"] = median(torch_rates), torch_rates
  notes = [f"torch column skipped for {family}: {torch.why}"] if torch.why else []
  if FLAGS.jit:
    try:
      run_xla, free_xla = tf_stepper(family, size, batch, True, FLAGS.warmup)
      row["tf_xla"] = median([FLAGS.steps / run_xla(FLAGS.steps) for _ in range(FLAGS.rounds)])
      free_xla()
    except Exception as e:  # pylint: disable=broad-except
      row["tf_xla"] = None
      notes.append(f"XLA failed for {family}: {type(e).__name__}: {str(e).splitlines()[0][:150]}")
  return row, notes


def profile_row(row: dict, run_tf, torch: TorchProcess, torch_rate: float | None) -> None:
  """--profile: both sides' op time split (kernels / other), the official FLOPs of a step, the matmul ceiling and
  the bound (benchmarks/profile_ops.py) into `row`."""
  from benchmarks.ceiling import matmul_ceiling  # pylint: disable=import-outside-toplevel
  if not torch_rate:
    return
  row["ours_split"] = profile_ops.split(profile_ops.tf_profile(run_tf, FLAGS.profile_steps), "tf")
  row["torch_split"] = profile_ops.split(torch.request(f"profile {FLAGS.profile_steps}")["ops"], "torch")
  row["flops"] = torch.request("flops")["flops"]
  row["ceiling_gflops"] = matmul_ceiling(runs=3)
  row["bound_ours_s"], row["bound_torch_s"] = 1 / row["tf"], 1 / torch_rate
  row["bound_detail"] = profile_ops.bound(row["bound_ours_s"], row["bound_torch_s"], row["ours_split"],
                                         row["torch_split"], row["flops"], row["ceiling_gflops"])


def measure_in_subprocess(family: str, size: int, batch: int) -> tuple[dict, list[str]]:
  """measure() in a fresh process: memory freed between rows (in one process the grid grew past 20 GB)."""
  argv = [sys.executable, "-m", "benchmarks.bench_train", f"--row={family},{size},{batch}",
          f"--steps={FLAGS.steps}", f"--rounds={FLAGS.rounds}", f"--warmup={FLAGS.warmup}",
          f"--{'' if FLAGS.jit else 'no'}jit", f"--{'' if FLAGS.bfloat16 else 'no'}bfloat16", f"--{'' if FLAGS.profile else 'no'}profile",
          f"--profile_steps={FLAGS.profile_steps}", f"--torch_python={FLAGS.torch_python}", f"--mirrors={FLAGS.mirrors}"]
  proc = subprocess.run(argv, capture_output=True, text=True)
  if proc.returncode:
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
    return {"model": family, "size": size, "batch": batch, "tf": None}, [f"{family} {size}/{batch} failed: {tail}"]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  return result["row"], result["notes"]


def format_table(rows: list) -> str:
  """The Markdown table of the rows; with profiled rows (--profile) also what bounds each of them."""
  num = lambda v, spec=".3f": format(v, spec) if v else "-"  # noqa: E731
  lines = ["| model | size | batch | ours steps/s | ours + XLA | ours bfloat16 | official torch | ours / torch "
           "| bfloat16 / torch | ours peak RSS MiB | bf16 peak RSS MiB | torch peak RSS MiB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    ratio = lambda key: f"**{r[key] / r['torch']:.2f}**" if r.get(key) and r.get("torch") else "-"  # noqa: E731
    lines.append(f"| {r['model']} | {r['size']} | {r['batch']} | {num(r.get('tf'))} | {num(r.get('tf_xla'))} | "
                 f"{num(r.get('tf_bf16'))} | {num(r.get('torch'))} | {ratio('tf')} | {ratio('tf_bf16')} | "
                 f"{num(r.get('tf_peak_rss_mib'), '.0f')} | {num(r.get('tf_bf16_peak_rss_mib'), '.0f')} | "
                 f"{num(r.get('torch_peak_rss_mib'), '.0f')} |")
  if any(r.get("bound_detail") for r in rows):
    lines += ["", "What bounds each row (float32; benchmarks/profile_ops.py; ms per step):",
              profile_ops.format_bound_table(rows, lambda r: f"{r['model']} {r['size']}/{r['batch']}")]
  return "\n".join(lines)


def main(argv):
  """Runs every configuration (each in its own process) and prints the table."""
  del argv
  if FLAGS.row:
    family, size, batch = FLAGS.row.split(",")
    row, notes = measure(family, int(size), int(batch), tempfile.mkdtemp(prefix="bench_train_torch_"))
    print(json.dumps({"row": row, "notes": notes}))
    return
  if FLAGS.render:
    with open(FLAGS.render, encoding="utf-8") as f:
      print(format_table(json.load(f)))
    return
  rows, notes = [], set()
  for family in FLAGS.models:
    for size in map(int, FLAGS.sizes):
      for batch in map(int, FLAGS.batches):
        row, row_notes = measure_in_subprocess(family, size, batch)
        notes.update(row_notes)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
  print(format_table(rows))
  for note in sorted(notes):
    print("note:", note)
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  app.run(main)
