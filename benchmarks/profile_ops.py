"""Where a step's time goes, on our side and the official side: the "what bounds this row" part of the benchmarks.

bench_train --profile and bench_inference --profile trace a few steps of ours (TensorFlow's profiler) and of the
official code (torch.profiler, in its subprocess: TORCH_PROFILER below is pasted into that script) and split each
side's op time into
  * kernels: the dense linear algebra, convolutions (forward and both gradients) and matrix products. On this CPU
    both frameworks run them in oneDNN's float32 primitives, so this part is the same code on both sides;
  * other: everything else (normalisation, padding, activations, optimizer updates, layout copies, ...).
The shares come from the traced steps (op time summed over threads) and are applied to the untraced wall time of
the same row. `bound` then says what the row can reach at best with these kernels: the official step's wall time
over our kernel time, i.e. our speed-up if every other op of ours cost nothing. A row whose bound is under the
target cannot reach it by removing overhead; only faster kernels (bfloat16, fewer FLOPs) can.
"""

from __future__ import annotations

import collections
import glob
import os
import tempfile

# TensorFlow op types (including oneDNN's renamed ones: _MklNativeConv2D, _MklNativeFusedConv2D, _MklMatMul, ...)
# and torch op names that are dense linear algebra.
TF_KERNEL_MARKS = ("Conv2D", "MatMul", "Einsum")
TORCH_KERNEL_MARKS = ("conv", "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul")


def is_kernel(op: str, framework: str) -> bool:
  """Whether `op` (a TF op type, or a torch op name with framework="torch") is a convolution or a matrix product."""
  marks = TF_KERNEL_MARKS if framework == "tf" else TORCH_KERNEL_MARKS
  return any(mark in op for mark in marks)


def tf_op_times(logdir: str, steps: int) -> tuple[collections.Counter, collections.Counter, collections.Counter]:
  """(ms per step by op type, ms per step by op name, calls per step by op type) from the newest .xplane.pb."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=import-outside-toplevel
  files = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
  if not files:
    raise RuntimeError(f"The profiler wrote no .xplane.pb under {logdir}.")
  space = xplane_pb2.XSpace()
  with open(files[-1], "rb") as f:
    space.ParseFromString(f.read())
  by_type, by_name, calls = collections.Counter(), collections.Counter(), collections.Counter()
  for plane in space.planes:
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if ":" not in name or "::" in name or ": " in name:  # runtime events (ExecutorState::Process, ...), not ops
          continue
        op_type = name.rsplit(":", 1)[1]
        ms = event.duration_ps / 1e9 / steps
        by_type[op_type] += ms
        by_name[name] += ms
        calls[op_type] += 1 / steps
  return by_type, by_name, calls


def tf_profile(run, steps: int, logdir: str = "") -> collections.Counter:
  """ms per step by op type while `run(steps)` runs under TensorFlow's profiler."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  logdir = logdir or tempfile.mkdtemp(prefix="profile_ops_")
  tf.profiler.experimental.start(logdir)
  try:
    run(steps)
  finally:
    tf.profiler.experimental.stop()
  return tf_op_times(logdir, steps)[0]


# Pasted into the official code's subprocess script (bench_train, bench_inference): profile(fn, n) runs fn n times
# under torch.profiler and returns the self CPU time per call of every op name, in ms. On the CPU the autograd
# engine runs backward on the calling thread, so self times add up to the traced wall time.
TORCH_PROFILER = r'''
def profile(fn, n):
  from torch.profiler import profile as _profile, ProfilerActivity
  with _profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(n):
      fn()
  return {e.key: e.self_cpu_time_total / 1e3 / n for e in prof.key_averages() if e.self_cpu_time_total > 0}
'''


def split(op_ms: dict, framework: str, top: int = 4) -> dict:
  """{"kernel_share", "total_ms", "other_top": [[op, ms], ...]} of one side's op times per step."""
  total = sum(op_ms.values())
  kernel = sum(ms for op, ms in op_ms.items() if is_kernel(op, framework))
  others = sorted(((op, ms) for op, ms in op_ms.items() if not is_kernel(op, framework)), key=lambda kv: -kv[1])
  return {"kernel_share": kernel / total if total else 0.0, "total_ms": total,
          "other_top": [[op, round(ms, 1)] for op, ms in others[:top]]}


TARGET = 1.5  # issue 17: every row at least 1.5x the official code


def other_cut_needed(ours_s: float, torch_s: float, ours_kernel_s: float, target: float = TARGET) -> float | None:
  """The fraction of our non-kernel time that would have to go for ours_s to reach torch_s / target.

  0 when the row is there already; None when even zero non-kernel time is not enough (the kernels alone are slower
  than the target allows).
  """
  allowed_other = torch_s / target - ours_kernel_s
  other = ours_s - ours_kernel_s
  if allowed_other < 0:
    return None
  if allowed_other >= other:
    return 0.0
  return 1.0 - allowed_other / other


def bound(ours_s: float, torch_s: float, ours: dict, theirs: dict, flops: float | None,
          ceiling_gflops: float | None) -> dict:
  """The row's bound from both sides' splits (split()) and untraced wall seconds per step.

  kernel seconds = wall x kernel share; bound = torch wall / our kernel seconds; with the official FLOPs and the
  matmul ceiling, each side's kernels' GFLOP/s as a fraction of the ceiling.
  """
  ours_kernel, torch_kernel = ours_s * ours["kernel_share"], torch_s * theirs["kernel_share"]
  result = {"ours_kernel_s": ours_kernel, "torch_kernel_s": torch_kernel,
            "ours_other_s": ours_s - ours_kernel, "torch_other_s": torch_s - torch_kernel,
            "bound": torch_s / ours_kernel if ours_kernel else None,
            "other_cut_needed": other_cut_needed(ours_s, torch_s, ours_kernel),
            "kernel_ratio": torch_kernel / ours_kernel if ours_kernel else None}
  if flops and ceiling_gflops:
    result["ours_kernel_of_ceiling"] = flops / 1e9 / ours_kernel / ceiling_gflops if ours_kernel else None
    result["torch_kernel_of_ceiling"] = flops / 1e9 / torch_kernel / ceiling_gflops if torch_kernel else None
  return result


def format_bound_table(rows: list, label) -> str:
  """Markdown: per row, each side's wall, kernel and other time, the kernels' share of the ceiling and the bound."""
  pct = lambda v: f"{100 * v:.0f}%" if v is not None else "-"  # noqa: E731
  cut = lambda v: "impossible (our kernels alone are too slow)" if v is None else pct(v)  # noqa: E731
  lines = ["| row | ms, torch / ours | ours / torch now | kernels ms, torch / ours (share of each side) | other ms, "
           f"torch / ours | kernels' GFLOP/s as % of ceiling, torch / ours | bound | to reach {TARGET}x, our other "
           "ops must shrink by | ours' largest other ops (ms, summed over threads) |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    b = r.get("bound_detail")
    if not b:
      continue
    others = ", ".join(f"{op.split('/')[-1]} {ms:.0f}" for op, ms in r["ours_split"]["other_top"])
    lines.append(
        f"| {label(r)} | {1e3 * r['bound_torch_s']:.0f} / {1e3 * r['bound_ours_s']:.0f} | "
        f"{r['bound_torch_s'] / r['bound_ours_s']:.2f} | {1e3 * b['torch_kernel_s']:.0f} / "
        f"{1e3 * b['ours_kernel_s']:.0f} ({pct(r['torch_split']['kernel_share'])} / "
        f"{pct(r['ours_split']['kernel_share'])}) | {1e3 * b['torch_other_s']:.0f} / {1e3 * b['ours_other_s']:.0f} | "
        f"{pct(b.get('torch_kernel_of_ceiling'))} / {pct(b.get('ours_kernel_of_ceiling'))} | **{b['bound']:.2f}** | "
        f"{cut(b['other_cut_needed'])} | {others} |")
  return "\n".join(lines)
