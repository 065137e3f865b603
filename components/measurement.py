"""How a translation model is measured: shared by components.evaluate and the trainer's in-training evaluation.

Everything goes through the signature contract: a candidate Keras model is wrapped in
components.translator.TranslatorModule (the object export saves), a SavedModel (a baseline) is called through
its signatures, so both are measured by the same code on the same uint8 test images. MUNIT styles come from fixed
seeds. `translate_both_ways` and `compute_metrics` take their options from any object with the fields of
`MeasureOptions` (components.evaluate passes its EvaluateConfig, whose defaults are the same).
A contract module: stages import it, it imports no stage.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

import models  # noqa: F401  (type hints)
from components import data, metrics
from components.errors import StageError
from components.translator import TranslatorModule
from models.api import DOMAINS, to_wire_images
from serving import signatures as contract

DIRECTIONS = contract.DIRECTIONS
STYLE_SEED_STRIDE = 1_000_003  # seeds of style k for image i: k * stride + i (distinct for any test set size)


@dataclasses.dataclass(frozen=True)
class MeasureOptions:
  """The measurement's options (components.evaluate's EvaluateConfig has the same fields and defaults).

  Attributes:
    batch_size: images per forward pass.
    seed: KID subset seed and MUNIT style seed offset.
    kid_subsets, kid_subset_size: KID subsets (Binkowski et al.: 100 of 1000; capped at the set size).
    num_styles: styles per input of a multimodal model for the diversity metrics (>= 2).
  """

  batch_size: int = 8
  seed: int = 0
  kid_subsets: int = 100
  kid_subset_size: int = 1000
  num_styles: int = 4


def load_test_images(data_dir: str, domain: str, image_size: int, num_images: int | None,
                     transform=None) -> np.ndarray:
  """uint8 [N, S, S, 3] test inputs of `domain` (at most `num_images`, in file order).

  `transform`: the family's `models.api.ImageTransform` (its official test transform: resize, then the center
  crop when the resize leaves a side longer than S); None: center crops of the stored images.
  """
  try:
    dataset = data.make_dataset(data_dir, domain, "test", image_size, 16, training=False, transform=transform)
  except ValueError as e:
    raise StageError(f"cannot read the test split of domain {domain}: {e}") from e
  if num_images is not None:
    dataset = dataset.unbatch().take(num_images).batch(16)
  batches = [to_wire_images(b).numpy() for b in dataset]
  images = np.concatenate(batches) if batches else np.zeros((0, image_size, image_size, 3), np.uint8)
  if len(images) < 2:
    raise StageError(f"the test split of domain {domain} in {data_dir} has {len(images)} image(s); KID/FID need "
                     "at least 2: ingest with a test split (e.g. --test_fraction) or a testA/testB folder")
  return images


class Signatures:
  """Uniform numpy access to a2b/b2a-style signatures of the candidate (in-process) or a SavedModel baseline.

  `call(name, **inputs)` -> dict of numpy arrays; `multimodal`: the model draws styles (the family's trait for
  the candidate; for a SavedModel, serving.signatures.traits_of: a2b takes a `seed`).
  """

  def __init__(self, functions: dict, multimodal: bool, owner=None):
    self._functions = functions
    self.multimodal = multimodal
    self._owner = owner  # the module / restored SavedModel object: keeps the functions' variables alive

  @classmethod
  def of_model(cls, model, family: "models.Family | str") -> "Signatures":
    """The candidate: `model` (of `family`, a Family or a registered name) through components.translator."""
    module = TranslatorModule(model, family)
    return cls(dict(module.functions), module.traits["multimodal"], module)

  @classmethod
  def of_saved_model(cls, path: str) -> "Signatures":
    loaded = tf.saved_model.load(path)
    for name in DIRECTIONS:
      if name not in loaded.signatures:
        raise StageError(f"baseline {path} has no {name!r} signature: it is not a model exported by "
                         "components.export")
    _, inputs = loaded.signatures[contract.DEFAULT_DIRECTION].structured_input_signature
    traits = contract.traits_of({contract.DEFAULT_DIRECTION: {"inputs": inputs, "outputs": {}}})
    return cls(dict(loaded.signatures), traits.multimodal, loaded)

  def call(self, name: str, batch_size: int, **inputs) -> dict:
    """Runs signature `name` over `inputs` (arrays with a common first dim) in batches; concatenated numpy."""
    n = len(next(iter(inputs.values())))
    parts = []
    for i in range(0, n, batch_size):
      out = self._functions[name](**{k: tf.constant(v[i:i + batch_size]) for k, v in inputs.items()})
      parts.append({k: v.numpy() for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _seeds(n: int, style_index: int, offset: int) -> np.ndarray:
  return (style_index * STYLE_SEED_STRIDE + offset + np.arange(n)).astype(np.int64)


def translate_both_ways(signatures: Signatures, images: dict, config: "MeasureOptions", num_styles: int = 1) -> dict:
  """For each direction: {"source", "translated", "cycled", "attention"?, "styles"? [K, N, ...]} (uint8)."""
  out = {}
  for direction in DIRECTIONS:
    source = images[direction[0]]
    back = "b2a" if direction == "a2b" else "a2b"
    extra = {"seed": _seeds(len(source), 0, config.seed)} if signatures.multimodal else {}
    forward = signatures.call(direction, config.batch_size, images=source, **extra)
    if signatures.multimodal:  # the paper's cycle: content of x_ab decoded with the style of x_a
      cycled = signatures.call(f"{back}_reference", config.batch_size, images=forward["images"], reference=source)
    else:
      cycled = signatures.call(back, config.batch_size, images=forward["images"])
    result = {"source": source, "translated": forward["images"], "cycled": cycled["images"]}
    if "attention" in forward:
      result["attention"] = forward["attention"]
    if signatures.multimodal and num_styles > 1:
      result["styles"] = np.stack([forward["images"]] + [
          signatures.call(direction, config.batch_size, images=source,
                          seed=_seeds(len(source), k, config.seed))["images"] for k in range(1, num_styles)])
    out[direction] = result
  return out


def compute_metrics(outputs: dict, images: dict, extractor, config: "MeasureOptions", lpips_net=None) -> dict:
  """Metric name -> float from `translate_both_ways` outputs and the real test images per domain."""
  values = {}
  real_features = {domain: extractor.pooled(images[domain]) for domain in DOMAINS}
  for direction, out in outputs.items():
    fake = extractor.pooled(out["translated"])
    real = real_features[direction[-1]]
    values[f"kid_{direction}"], values[f"kid_std_{direction}"] = metrics.kid(
        fake, real, config.kid_subsets, config.kid_subset_size, config.seed)
    values[f"fid_{direction}"] = metrics.fid(fake, real)
    values[f"cycle_l1_{direction}"] = metrics.cycle_l1(out["source"], out["cycled"])
    values[f"cycle_psnr_{direction}"] = metrics.psnr(out["source"], out["cycled"])
    if "styles" in out:
      values[f"diversity_l1_{direction}"] = metrics.mean_pairwise_l1(out["styles"])
      maps = [lpips_net.feature_maps(s) for s in out["styles"]]
      k = len(maps)
      values[f"diversity_lpips_{direction}"] = float(np.mean(
          [metrics.lpips_like_distance(maps[i], maps[j]).mean() for i in range(k) for j in range(i + 1, k)]))
  for name in ("kid", "fid", "cycle_l1", "cycle_psnr", "diversity_l1", "diversity_lpips"):
    if f"{name}_a2b" in values:
      values[name] = (values[f"{name}_a2b"] + values[f"{name}_b2a"]) / 2.0
  return values
