"""Export: a trained model_dir -> a TF Serving SavedModel with the DESIGN.md signature contract.

The SavedModel is a `tf.Module` with `tf.function`s (not a Keras save: the server loads it without this
project's Python classes). It holds only the variables the signatures capture (no discriminators, no VGG).

Signatures (wire images are uint8 RGB `[N, H, W, 3]`, model images float32 in [-1, 1]):
  all families:
    a2b, b2a:                 images uint8 [N, H, W, 3] -> images uint8 [N, H, W, 3]
    serving_default:          = a2b
    a2b_encoded, b2a_encoded: image_bytes string [N] (PNG or JPEG; each image may have its own size)
                              -> image_bytes string [N] (PNG)
  MUNIT (multimodal): a2b/b2a take a REQUIRED `seed` int64 [N] next to `images` (a serving signature has no
    optional inputs, and TF Serving needs every input) and return `style` float32 [N, style_dim] =
    model.sample_style(seed): the same seed gives the same output. Encoded signatures use seed 0 per image.
    a2b_style, b2a_style:         images + style float32 [N, style_dim] -> images
    a2b_reference, b2a_reference: images + reference uint8 [N, H', W', 3] (target-domain example)
                                  -> images + style (the reference's encoded style)
  U-GAT-IT: a2b/b2a also return `attention` float32 [N, H, W] in [0, 1] (CAM heatmap at image size).
Sizes: any H, W >= model.size_multiple: the input is reflect-padded at the bottom/right to a multiple of
`model.size_multiple` and the outputs cropped back. U-GAT-IT full (flattening MLP) only takes
image_size x image_size; other sizes fail with InvalidArgumentError naming the size got and the size needed.

Also written: `assets.extra/tf_serving_warmup_requests` (one request per signature, via serving.warmup) and
`assets.extra/model_card.json` (family, preset, step, the checkpoint read (best/latest, EMA or trained weights),
config, signatures, ingest statistics, evaluation metrics).
Then the SavedModel is reloaded in a fresh Python process that imports only TensorFlow, every signature is run
on fixed inputs, and the results are compared with the Keras model (uint8 within 1 grey level, floats within
1e-3); a mismatch or a signature that differs from the contract raises StageError.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np
import tensorflow as tf
from PIL import Image

from components import train_lib
from components.errors import StageError
from serving import config as config_lib
from serving import warmup

MODEL_CARD_PATH = config_lib.MODEL_CARD_RELATIVE_PATH
UINT8_TOLERANCE = 1
FLOAT_TOLERANCE = 1e-3
VERIFY_BATCH = 2
VERIFY_SEEDS = (0, 7)


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """Parameters of the export stage.

  Attributes:
    model_dir: components.train's model_dir (config.json + checkpoints/).
    output_dir: where the SavedModel is written (must not exist or be empty).
    stats_path: ingest's stats.json, copied into the model card (optional).
    metrics_path: evaluate's metrics.json, copied into the model card (optional).
    model_name: the model name put into the warmup requests' model_spec (the server ignores it during warmup).
    verify: reload in a fresh process and compare every signature with the Keras model (default True).
    checkpoint: which checkpoint of model_dir: "best", "latest" or "auto" (best when present, else latest);
      recorded in the model card (`checkpoint`) and the result (the lineage). With a generator EMA the
      averaged generator weights are exported.
  """

  model_dir: str
  output_dir: str
  stats_path: str | None = None
  metrics_path: str | None = None
  model_name: str = "model"
  verify: bool = True
  checkpoint: str = "auto"

  def __post_init__(self):
    if self.checkpoint not in train_lib.CHECKPOINT_CHOICES:
      raise StageError(f"--checkpoint must be one of {', '.join(train_lib.CHECKPOINT_CHOICES)}, got "
                       f"{self.checkpoint!r}")


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """The written SavedModel `path`, its `signatures` (name -> {inputs, outputs}), and the verification report
  (signature name -> largest absolute difference to the Keras model per output); `checkpoint`: which checkpoint
  was exported (train_lib.TrainedModel.describe(): checkpoint best/latest, path, step, weights)."""

  path: str
  family: str
  step: int
  signatures: dict
  max_differences: dict
  checkpoint: dict | None = None


def to_model_images(images: tf.Tensor) -> tf.Tensor:
  """uint8 [N, H, W, 3] wire images -> float32 [N, H, W, 3] in [-1, 1]."""
  return tf.cast(images, tf.float32) / 127.5 - 1.0


def to_wire_images(images: tf.Tensor) -> tf.Tensor:
  """float [N, H, W, 3] in [-1, 1] -> uint8 [N, H, W, 3]: round((x + 1) * 127.5), clipped to [0, 255]."""
  return tf.cast(tf.round(tf.clip_by_value((tf.cast(images, tf.float32) + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def family_traits(family_name: str, model) -> dict:
  """What the signatures depend on: {"multimodal", "attention", "fixed_size" (int or None), "style_dim"}."""
  multimodal = family_name == "munit"
  style_dim = int(model.sample_style(tf.constant([0], tf.int64)).shape[-1]) if multimodal else None
  fixed = family_name == "ugatit" and not model.config.light
  return {"multimodal": multimodal, "attention": family_name == "ugatit",
          "fixed_size": int(model.config.image_size) if fixed else None, "style_dim": style_dim}


class TranslatorModule(tf.Module):
  """The exported object: uint8 <-> model conversion, padding and the signature functions around a model.

  Also used in-process by components.evaluate, so that a candidate model and a pushed baseline SavedModel are
  measured through the same code path.
  """

  def __init__(self, model, family_name: str):
    super().__init__(name="translator")
    traits = family_traits(family_name, model)
    # The model sits in a non-trackable holder so that the SavedModel does not save the whole Keras object
    # (discriminators, perceptual VGG, ...); `signatures()` tracks exactly the variables the functions capture.
    self._holder = types.SimpleNamespace(model=model)
    self.traits = traits
    self.multiple = int(model.size_multiple)
    images = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    seed = tf.TensorSpec([None], tf.int64, name="seed")
    # Untracked too: only the signatures are saved (saving the tf.functions as well would trace them twice).
    self._holder.functions = {}
    for direction in ("a2b", "b2a"):
      if traits["multimodal"]:
        style = tf.TensorSpec([None, traits["style_dim"]], tf.float32, name="style")
        reference = tf.TensorSpec([None, None, None, 3], tf.uint8, name="reference")
        self.functions[direction] = tf.function(self._seeded(direction), input_signature=[images, seed])
        self.functions[f"{direction}_style"] = tf.function(self._styled(direction), input_signature=[images, style])
        self.functions[f"{direction}_reference"] = tf.function(self._referenced(direction),
                                                               input_signature=[images, reference])
      else:
        self.functions[direction] = tf.function(self._plain(direction), input_signature=[images])
      self.functions[f"{direction}_encoded"] = tf.function(
          self._encoded(direction), input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])

  @property
  def functions(self) -> dict:
    """Signature name (without serving_default) -> tf.function with its input signature."""
    return self._holder.functions

  # --- the computations, shared by all signatures ---------------------------------------------------------
  def _checked_padded(self, images: tf.Tensor, what: str = "images") -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """uint8 [N, H, W, 3] -> (float [N, H', W', 3] reflect-padded to the size multiple, H, W); asserts sizes."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    fixed = self.traits["fixed_size"]
    if fixed is not None:
      check = tf.debugging.Assert(
          tf.logical_and(tf.equal(height, fixed), tf.equal(width, fixed)),
          [f"U-GAT-IT full translates only {fixed}x{fixed} {what} (its MLP flattens the feature map); got "
           "height x width =", height, width, f"; resize or crop the {what} to {fixed}x{fixed}."])
    else:
      check = tf.debugging.Assert(
          tf.logical_and(height >= self.multiple, width >= self.multiple),
          [f"{what} must be at least {self.multiple}x{self.multiple} pixels; got height x width =", height, width])
    with tf.control_dependencies([check]):
      x = to_model_images(images)
    if fixed is not None:
      return tf.ensure_shape(x, [None, fixed, fixed, 3]), height, width
    pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
    x = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="REFLECT")
    return x, height, width

  def translate(self, images: tf.Tensor, direction: str, style: tf.Tensor | None = None) -> dict:
    """uint8 [N, H, W, 3] -> {"images": uint8 [N, H, W, 3], "attention"?: [N, H, W]} (padding/cropping)."""
    x, height, width = self._checked_padded(images)
    out = self._holder.model.translate(x, direction, style=style, training=False)
    result = {"images": to_wire_images(out["images"][:, :height, :width])}
    if self.traits["attention"]:
      result["attention"] = tf.clip_by_value(tf.cast(out["attention"][:, :height, :width], tf.float32), 0., 1.)
    return result

  def _batch_check(self, images: tf.Tensor, other: tf.Tensor, name: str):
    """Asserts that `other` has one row per image."""
    return tf.debugging.assert_equal(tf.shape(other)[0], tf.shape(images)[0],
                                     message=f"`{name}` needs one row per image in `images`")

  def _plain(self, direction: str):
    def fn(images):
      return self.translate(images, direction)
    return fn

  def _seeded(self, direction: str):
    def fn(images, seed):
      with tf.control_dependencies([self._batch_check(images, seed, "seed")]):
        style = tf.cast(self._holder.model.sample_style(seed), tf.float32)
      return {**self.translate(images, direction, style=style), "style": style}
    return fn

  def _styled(self, direction: str):
    def fn(images, style):
      with tf.control_dependencies([self._batch_check(images, style, "style")]):
        style = tf.identity(style)
      return self.translate(images, direction, style=style)
    return fn

  def _referenced(self, direction: str):
    target_domain = direction[-1]
    def fn(images, reference):
      with tf.control_dependencies([self._batch_check(images, reference, "reference")]):
        x_ref, _, _ = self._checked_padded(reference, "reference images")
      style = tf.cast(self._holder.model.encode_style(x_ref, target_domain), tf.float32)
      return {**self.translate(images, direction, style=style), "style": style}
    return fn

  def _encoded(self, direction: str):
    def one(data):
      image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)[None]
      if self.traits["multimodal"]:
        style = tf.cast(self._holder.model.sample_style(tf.zeros([1], tf.int64)), tf.float32)
        out = self.translate(image, direction, style=style)
      else:
        out = self.translate(image, direction)
      return tf.io.encode_png(out["images"][0])

    def fn(image_bytes):
      return {"image_bytes": tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))}
    return fn

  def signatures(self) -> dict:
    """Signature name -> concrete function, including serving_default (= a2b)."""
    concrete = {name: fn.get_concrete_function() for name, fn in self.functions.items()}
    captured = {}
    for function in concrete.values():
      for variable in function.variables:
        captured.setdefault(id(variable), variable)
    self.model_variables = list(captured.values())  # tracked: what tf.saved_model.save writes
    return {"serving_default": concrete["a2b"], **concrete}


def expected_signatures(traits: dict) -> dict:
  """The contract: name -> {"inputs": {name: (dtype, shape)}, "outputs": {...}}, shapes with None for any size."""
  img = ("uint8", [None, None, None, 3])
  out = {"images": img}
  if traits["attention"]:
    out["attention"] = ("float32", [None, None, None])
  spec = {}
  for d in ("a2b", "b2a"):
    if traits["multimodal"]:
      style = ("float32", [None, traits["style_dim"]])
      spec[d] = {"inputs": {"images": img, "seed": ("int64", [None])}, "outputs": {**out, "style": style}}
      spec[f"{d}_style"] = {"inputs": {"images": img, "style": style}, "outputs": dict(out)}
      spec[f"{d}_reference"] = {"inputs": {"images": img, "reference": img}, "outputs": {**out, "style": style}}
    else:
      spec[d] = {"inputs": {"images": img}, "outputs": dict(out)}
    spec[f"{d}_encoded"] = {"inputs": {"image_bytes": ("string", [None])},
                            "outputs": {"image_bytes": ("string", [None])}}
  spec["serving_default"] = spec["a2b"]
  return spec


def _png(image: np.ndarray) -> bytes:
  """uint8 [H, W, 3] -> PNG bytes (Pillow)."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def fixed_inputs(traits: dict, size: int, batch: int = VERIFY_BATCH) -> dict:
  """Deterministic inputs for every signature: name -> {input name: np.ndarray} (images `size` x `size`)."""
  rng = np.random.default_rng(1234)
  inputs = {}
  for d in ("a2b", "b2a"):
    images = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    if traits["multimodal"]:
      inputs[d] = {"images": images, "seed": np.array(VERIFY_SEEDS[:batch], np.int64)}
      inputs[f"{d}_style"] = {"images": images,
                              "style": rng.normal(size=(batch, traits["style_dim"])).astype(np.float32)}
      inputs[f"{d}_reference"] = {"images": images,
                                  "reference": rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)}
    else:
      inputs[d] = {"images": images}
    inputs[f"{d}_encoded"] = {"image_bytes": np.array([_png(im) for im in images], dtype=object)}
  inputs["serving_default"] = inputs["a2b"]
  return inputs


def keras_reference(model, traits: dict, name: str, inputs: dict) -> dict:
  """What signature `name` must answer for `inputs`, computed with the Keras model directly (numpy out)."""
  direction = "a2b" if name == "serving_default" else name[:3]
  if name.endswith("_encoded"):
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in inputs["image_bytes"]])
    style = model.sample_style(tf.zeros([len(images)], tf.int64)) if traits["multimodal"] else None
    out = model.translate(to_model_images(images), direction, style=style)
    return {"image_bytes": to_wire_images(out["images"]).numpy()}
  style = None
  if "seed" in inputs:
    style = model.sample_style(tf.constant(inputs["seed"]))
  elif "style" in inputs:
    style = tf.constant(inputs["style"])
  elif "reference" in inputs:
    style = model.encode_style(to_model_images(inputs["reference"]), direction[-1])
  out = model.translate(to_model_images(inputs["images"]), direction, style=style)
  result = {"images": to_wire_images(out["images"]).numpy()}
  if traits["attention"]:
    result["attention"] = out["attention"].numpy()
  if "seed" in inputs or "reference" in inputs:
    result["style"] = style.numpy()
  return result


# Runs in a fresh interpreter (`python -I`): imports only TensorFlow/numpy, never this project's classes.
_CHECKER = r"""
import pickle, sys
import tensorflow as tf
path, inputs_path, outputs_path = sys.argv[1:4]
loaded = tf.saved_model.load(path)
with open(inputs_path, "rb") as f:
  requests = pickle.load(f)
report = {"signatures": {}, "outputs": {}}
for name, fn in loaded.signatures.items():
  _, kwargs = fn.structured_input_signature
  report["signatures"][name] = {
      "inputs": {k: (s.dtype.name, s.shape.as_list()) for k, s in kwargs.items()},
      "outputs": {k: (s.dtype.name, s.shape.as_list()) for k, s in fn.structured_outputs.items()}}
for name, inputs in requests.items():
  result = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
  report["outputs"][name] = {k: v.numpy() for k, v in result.items()}
with open(outputs_path, "wb") as f:
  pickle.dump(report, f)
"""


def run_in_fresh_process(saved_model_dir: str, inputs: dict, timeout: float = 600.0) -> dict:
  """Loads the SavedModel in a new `python -I` process (TensorFlow only) and runs `inputs` through it.

  Returns {"signatures": name -> {"inputs"/"outputs": name -> (dtype, shape)}, "outputs": name -> arrays}.
  """
  with tempfile.TemporaryDirectory() as tmp:
    inputs_path, outputs_path = os.path.join(tmp, "inputs.pkl"), os.path.join(tmp, "outputs.pkl")
    with open(inputs_path, "wb") as f:
      pickle.dump(inputs, f)
    proc = subprocess.run([sys.executable, "-I", "-c", _CHECKER, saved_model_dir, inputs_path, outputs_path],
                          cwd=tmp, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
      raise StageError(f"the exported SavedModel {saved_model_dir} does not load or run in a fresh TensorFlow "
                       f"process:\n{proc.stderr[-3000:]}")
    with open(outputs_path, "rb") as f:
      return pickle.load(f)


def _decode_pngs(values: np.ndarray) -> np.ndarray:
  """object/bytes [N] PNG -> uint8 [N, H, W, 3]."""
  return np.stack([np.asarray(Image.open(io.BytesIO(v)).convert("RGB")) for v in values])


def compare_outputs(name: str, got: dict, want: dict) -> dict:
  """Max |difference| per output of one signature; StageError beyond UINT8_TOLERANCE / FLOAT_TOLERANCE."""
  if set(got) != set(want):
    raise StageError(f"signature {name}: outputs {sorted(got)} differ from the expected {sorted(want)}")
  diffs = {}
  for key, expected in want.items():
    actual = got[key]
    if key == "image_bytes":
      actual = _decode_pngs(actual)
    if actual.shape != expected.shape:
      raise StageError(f"signature {name}: output {key} has shape {actual.shape}, the Keras model gives "
                       f"{expected.shape}")
    diff = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64)))) if actual.size else 0.
    limit = UINT8_TOLERANCE if expected.dtype == np.uint8 else FLOAT_TOLERANCE
    if not diff <= limit:
      raise StageError(f"signature {name}: output {key} differs from the Keras model by {diff} (> {limit}); "
                       "the export is wrong, do not serve it")
    diffs[key] = diff
  return diffs


def verify(saved_model_dir: str, model, traits: dict, size: int) -> dict:
  """Checks a SavedModel in a fresh TensorFlow-only process against the Keras `model` on `fixed_inputs`.

  Returns signature name -> {output: max |difference|}; raises StageError when the signatures differ from
  `expected_signatures(traits)` or an output differs beyond the tolerances.
  """
  inputs = fixed_inputs(traits, size)
  report = run_in_fresh_process(saved_model_dir, inputs)
  expected = expected_signatures(traits)
  signatures = {name: {part: {k: (d, list(s)) for k, (d, s) in spec.items()} for part, spec in sig.items()}
                for name, sig in report["signatures"].items()}
  if signatures != expected:
    raise StageError(f"the SavedModel's signatures differ from the contract:\n got {signatures}\n want {expected}")
  return {name: compare_outputs(name, report["outputs"][name], keras_reference(model, traits, name, value))
          for name, value in inputs.items()}


def _read_json(path: str | None, what: str):
  """Parsed JSON file or None when no path is given; StageError when a given path is missing."""
  if not path:
    return None
  if not tf.io.gfile.exists(path):
    raise StageError(f"{what} {path} does not exist; pass the right path or leave the flag out")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def run(config: ExportConfig) -> ExportResult:
  """Exports `config.model_dir`'s newest checkpoint as a verified SavedModel in `config.output_dir`."""
  if tf.io.gfile.exists(config.output_dir) and tf.io.gfile.listdir(config.output_dir):
    raise StageError(f"--output_dir {config.output_dir} is not empty; give a new directory (an export is never "
                     "written over another)")
  stats = _read_json(config.stats_path, "--stats_path")
  metrics_json = _read_json(config.metrics_path, "--metrics_path")
  loaded = train_lib.load_model_dir(config.model_dir, config.checkpoint)
  family, model_config, model, step = loaded.family, loaded.config, loaded.model, loaded.step
  saved = train_lib.read_config(config.model_dir)
  module = TranslatorModule(model, family.name)
  traits = module.traits
  tf.saved_model.save(module, config.output_dir, signatures=module.signatures())

  size = int(model_config.image_size)
  inputs = fixed_inputs(traits, size)
  warmup.write_warmup_file(config.output_dir, config.model_name,
                           [(name, value) for name, value in inputs.items()])
  expected = expected_signatures(traits)
  card = {
      "family": family.name, "preset": saved.get("preset"), "training_step": step,
      "checkpoint": loaded.describe(),
      "model_config": model_config.to_dict(), "image_size": size, "size_multiple": module.multiple,
      "fixed_size": traits["fixed_size"], "signatures": expected, "data_statistics": stats,
      "evaluation_metrics": metrics_json, "source_model_dir": os.path.abspath(config.model_dir),
      "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  with tf.io.gfile.GFile(os.path.join(config.output_dir, MODEL_CARD_PATH), "w") as f:
    json.dump(card, f, indent=2, default=str)

  differences = {}
  if config.verify:
    try:
      differences = verify(config.output_dir, model, traits, size)
    except StageError as e:
      shutil.rmtree(config.output_dir, ignore_errors=True)  # never leave a wrong model for later stages
      raise StageError(f"{e}\n(the failed export in {config.output_dir} was deleted)") from e
  return ExportResult(path=config.output_dir, family=family.name, step=step, signatures=expected,
                      max_differences=differences, checkpoint=loaded.describe())
