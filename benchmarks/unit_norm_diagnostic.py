"""Diagnostic for UNIT's collapse on the quality benchmark (issue 13): the `budget` preset with the instance norms
of the encoders' stride-2 convs and/or the decoders' stride-2 transposed convs removed (the ResBlocks keep theirs).

  .venv/bin/python -m benchmarks.unit_norm_diagnostic --work_dir=DIR --without=encoder,decoder --seeds=0,1 --steps=600

This swaps the blocks' norm argument while models.unit.networks builds them (a patch of this process only, for
measuring; the project's UNIT keeps the paper's COCOResGen norms), then runs benchmarks.quality_lib.run_one like
`benchmarks.quality --models=unit` (results under <work_dir>/runs/unit_budget_s<seed>_<tag>/). Measured results
and what they mean: BUILD.md, "Quality benchmark with targets", UNIT's collapse.
"""

from __future__ import annotations

from absl import app, flags

flags.DEFINE_string("work_dir", None, "Scratch directory (data, classifiers, runs), as benchmarks.quality's.")
flags.DEFINE_list("without", ["encoder", "decoder"], "Where to drop the instance norm: encoder, decoder or both.")
flags.DEFINE_list("seeds", ["0"], "Training seeds.")
flags.DEFINE_integer("steps", 600, "Training steps.")
flags.DEFINE_float("ema_decay", 0.995, "Generator EMA decay (0: off).")
flags.mark_flag_as_required("work_dir")
FLAGS = flags.FLAGS


def drop_instance_norms(encoder: bool, decoder: bool) -> None:
  """Makes models.unit.networks build its "down*" convs (encoder) / "up*" transposed convs (decoder) without norm."""
  from models.unit import networks  # pylint: disable=import-outside-toplevel
  conv, conv_t = networks.ConvBlock, networks.ConvTransposeBlock

  def patched_conv(filters, kernel, stride, padding, pad_type, norm, *args, **kwargs):
    if encoder and kwargs.get("name", "").startswith("down") and norm == "in":
      norm = "none"
    return conv(filters, kernel, stride, padding, pad_type, norm, *args, **kwargs)

  def patched_conv_t(filters, kernel, stride, padding, output_padding, norm, *args, **kwargs):
    if decoder and kwargs.get("name", "").startswith("up") and norm == "in":
      norm = "none"
    return conv_t(filters, kernel, stride, padding, output_padding, norm, *args, **kwargs)

  networks.ConvBlock, networks.ConvTransposeBlock = patched_conv, patched_conv_t


def main(argv):
  del argv
  from benchmarks import quality_lib  # pylint: disable=import-outside-toplevel
  where = set(FLAGS.without)
  if not where or not where <= {"encoder", "decoder"}:
    raise app.UsageError(f"--without takes encoder, decoder or both, got {FLAGS.without}")
  drop_instance_norms("encoder" in where, "decoder" in where)
  arrays = quality_lib.make_arrays(seed=0)
  data_dir = quality_lib.build_data(FLAGS.work_dir, arrays)
  classifiers = quality_lib.train_classifiers(arrays, seed=0, cache_dir=FLAGS.work_dir)
  tag = "without_in_" + "_".join(sorted(where)) + f"_{FLAGS.steps}"
  for seed in FLAGS.seeds:
    quality_lib.run_one(family="unit", preset="budget", seed=int(seed), work_dir=FLAGS.work_dir, data_dir=data_dir,
                        arrays=arrays, classifiers=classifiers, steps=FLAGS.steps, tag=tag,
                        ema_decay=FLAGS.ema_decay, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
  app.run(main)
