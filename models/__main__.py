"""Model inspector: parameter counts (trainable and not) and output shapes of every network of a family.

  python -m models --model=munit --preset=paper --image_size=256
  python -m models --model=unit --preset=tiny --json

Works for every family through `models.get_family`: the networks are the `keras.Model` attributes of the
family's model (and one level of their own sub-networks); output shapes are recorded while the family's
`sample_rows` runs on a `[batch, image_size, image_size, 3]` input, and networks it does not reach (the
discriminators) are run on that image.
"""

from __future__ import annotations

import contextlib
import json
import sys

import keras
import numpy as np
import tensorflow as tf

import models


def _params(weights) -> int:
  return int(sum(int(np.prod(w.shape)) for w in weights))


def _sub_networks(net) -> list:
  """The direct children of `net` that are keras Models, in tracking order."""
  return [layer for layer in net.layers if isinstance(layer, keras.Model)]


@contextlib.contextmanager
def _record_outputs(nets, shapes: dict):
  """While active, the first output shapes of each net's call are stored in shapes[net name]."""
  originals = {}
  for net in nets:
    original = net.call

    def recorder(*args, _net=net, _original=original, **kwargs):
      out = _original(*args, **kwargs)
      shapes.setdefault(_net.name, tf.nest.map_structure(lambda t: [d for d in t.shape], out))
      return out

    originals[net] = original
    object.__setattr__(net, "call", recorder)
  try:
    yield
  finally:
    for net in originals:
      object.__delattr__(net, "call")


def inspect_family(name: str, preset: str = "paper", image_size: int | None = None, batch_size: int = 1) -> dict:
  """Builds `name`'s model at `preset` (optionally another image_size) and describes every network.

  Returns:
    {"family", "preset", "image_size", "input_shape", "networks": [{"name", "trainable_params",
    "non_trainable_params", "output_shapes", "children": [same without children]}], "total": {...}}.
  """
  family = models.get_family(name)
  overrides = {} if image_size is None else {"image_size": int(image_size)}
  config = models.get_config(name, preset, **overrides)
  model = family.build_model(config)
  size = int(config.image_size)
  top = _sub_networks(model)
  children = {net.name: _sub_networks(net) for net in top}
  shapes: dict = {}
  x = tf.random.stateless_uniform([batch_size, size, size, 3], seed=[0, 0], minval=-1.0, maxval=1.0)
  all_nets = top + [c for net in top for c in children[net.name]]
  with _record_outputs(all_nets, shapes):
    family.sample_rows(model, x, x)
    for net in top:
      if net.name not in shapes:
        try:
          net(x)
        except Exception:  # a network that does not take an image (none today): no shape to report
          pass

  def describe(net):
    return {"name": net.name, "trainable_params": _params(net.trainable_weights),
            "non_trainable_params": _params(net.non_trainable_weights), "output_shapes": shapes.get(net.name)}

  networks = [{**describe(net), "children": [describe(c) for c in children[net.name]]} for net in top]
  return {"family": name, "preset": preset, "image_size": size, "input_shape": [batch_size, size, size, 3],
          "networks": networks,
          "total": {"trainable_params": _params(model.trainable_weights),
                    "non_trainable_params": _params(model.non_trainable_weights)}}


def format_table(report: dict) -> str:
  """Renders an `inspect_family` report as a text table."""
  lines = [f"{report['family']} preset={report['preset']} input={report['input_shape']}",
           f"{'network':<34}{'trainable':>14}{'non-trainable':>15}  output shapes"]
  for net in report["networks"]:
    rows = [(net, "")] + [(child, "  ") for child in net["children"]]
    for item, indent in rows:
      lines.append(f"{indent + item['name']:<34}{item['trainable_params']:>14,}{item['non_trainable_params']:>15,}"
                   f"  {item['output_shapes']}")
  total = report["total"]
  lines.append(f"{'total':<34}{total['trainable_params']:>14,}{total['non_trainable_params']:>15,}")
  return "\n".join(lines)


def main(argv):
  """absl entry point: reads the flags, prints the table or JSON."""
  del argv
  from absl import flags
  FLAGS = flags.FLAGS
  try:
    report = inspect_family(FLAGS.model, FLAGS.preset, FLAGS.image_size, FLAGS.batch_size)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(json.dumps(report, indent=1) if FLAGS.json else format_table(report))


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_enum("model", "munit", list(models.FAMILY_NAMES), "Model family.")
  flags.DEFINE_string("preset", "paper", "Config preset (paper, tiny, ...).")
  flags.DEFINE_integer("image_size", None, "Input size (default: the preset's image_size).")
  flags.DEFINE_integer("batch_size", 1, "Batch size of the probe input.")
  flags.DEFINE_bool("json", False, "Print JSON instead of a table.")
  app.run(main)
