"""Export: a trained model_dir -> a TF Serving SavedModel with the DESIGN.md signature contract.

The SavedModel is a `tf.Module` with `tf.function`s (not a Keras save: the server loads it without this
project's Python classes). It holds only the variables the signatures capture (no discriminators, no VGG).

Signatures: the table of serving.signatures (DESIGN.md's contract), chosen by the family's traits: a2b, b2a,
serving_default (= a2b) and the *_encoded PNG/JPEG variants for every family; a multimodal family (MUNIT) adds a
REQUIRED `seed` input to a2b/b2a (a serving signature has no optional inputs) returning `style` =
model.sample_style(seed), and the *_style / *_reference signatures; an attention family (U-GAT-IT) returns
`attention` [N, H, W] in [0, 1]. The functions are components.translator.TranslatorModule's.
Sizes: any H, W >= model.size_multiple: the input is reflect-padded at the bottom/right to a multiple of
`model.size_multiple` and the outputs cropped back. A fixed-size family (traits.fixed_size, U-GAT-IT full) only
takes that size; other sizes fail with InvalidArgumentError naming the size got and the size needed.

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
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from components import image_io
from components import model_dir as model_dir_lib
from components.errors import StageError
from components.translator import TranslatorModule, expected_signatures
from models import precision
from models.api import to_model_images, to_wire_images
from serving import config as config_lib
from serving import signatures as contract
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
    compute_dtype: "float32", or "bfloat16": the networks compute in bfloat16 (float32 weights, float32 and uint8
      outputs); on a CPU with AMX-BF16 up to several times faster, without AMX (AVX512_BF16 alone) slower than
      float32 (BUILD.md, issue 17's inference tables). What it
      costs is measured at export against the float32 model on the verification inputs and recorded in the
      model card and the result (`precision`: mean/max absolute uint8 difference and PSNR per direction).
  """

  model_dir: str
  output_dir: str
  stats_path: str | None = None
  metrics_path: str | None = None
  model_name: str = "model"
  verify: bool = True
  checkpoint: str = "auto"
  compute_dtype: str = dataclasses.field(default="float32", metadata={"choices": precision.COMPUTE_DTYPES})

  def __post_init__(self):
    model_dir_lib.check_checkpoint_choice(self.checkpoint)
    if self.compute_dtype not in precision.COMPUTE_DTYPES:
      raise StageError(f"--compute_dtype must be one of {', '.join(precision.COMPUTE_DTYPES)}, got "
                       f"{self.compute_dtype!r}")


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """The written SavedModel `path`, its `signatures` (name -> {inputs, outputs}), and the verification report
  (signature name -> largest absolute difference to the Keras model per output); `checkpoint`: which checkpoint
  was exported (model_dir.TrainedModel.describe(): checkpoint best/latest, path, step, weights)."""

  path: str
  family: str
  step: int
  signatures: dict
  max_differences: dict
  checkpoint: dict | None = None
  precision: dict | None = None


def fixed_inputs(traits: dict, size: int, batch: int = VERIFY_BATCH) -> dict:
  """Deterministic inputs for every signature of the table: name -> {input alias: np.ndarray} (images `size` x
  `size`; the signatures of one direction share their images)."""
  rng = np.random.default_rng(1234)
  images = {d: rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8) for d in contract.DIRECTIONS}
  inputs = {}
  for name, spec in expected_signatures(traits).items():
    if name == contract.SERVING_DEFAULT:
      continue
    direction = contract.direction_of(name)
    inputs[name] = {}
    for alias, (_, shape) in spec["inputs"].items():
      if alias == contract.IMAGES:
        value = images[direction]
      elif alias == contract.SEED:
        value = np.array(VERIFY_SEEDS[:batch], np.int64)
      elif alias == contract.STYLE:
        value = rng.normal(size=(batch, shape[-1])).astype(np.float32)
      elif alias == contract.REFERENCE:
        value = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
      elif alias == contract.IMAGE_BYTES:
        value = np.array([image_io.encode_png(im) for im in images[direction]], dtype=object)
      else:
        raise ValueError(f"signature {name}: no verification input for {alias!r}; extend fixed_inputs")
      inputs[name][alias] = value
  inputs[contract.SERVING_DEFAULT] = inputs[contract.DEFAULT_DIRECTION]
  return inputs


def keras_reference(model, traits: dict, name: str, inputs: dict) -> dict:
  """What signature `name` must answer for `inputs`, computed with the Keras model directly (numpy out)."""
  direction = contract.direction_of(name)
  if name.endswith(contract.ENCODED_SUFFIX):
    images = _decode_pngs(inputs["image_bytes"])
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
  """object/bytes [N] encoded images -> uint8 [N, H, W, 3] RGB (components.image_io.decode_image)."""
  return np.stack([image_io.decode_image(v) for v in values])


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


def precision_cost(reference_model, model, traits: dict, size: int) -> dict:
  """How far `model` (e.g. bfloat16 compute) answers from `reference_model` (float32, same weights) on the
  verification images: direction -> {mean_abs, max_abs (uint8 grey levels), psnr_db}."""
  inputs = fixed_inputs(traits, size)
  cost = {}
  for name in contract.DIRECTIONS:
    want = keras_reference(reference_model, traits, name, inputs[name])["images"].astype(np.float64)
    got = keras_reference(model, traits, name, inputs[name])["images"].astype(np.float64)
    mse = float(np.mean((want - got) ** 2))
    cost[name] = {"mean_abs": float(np.mean(np.abs(want - got))), "max_abs": float(np.max(np.abs(want - got))),
                  "psnr_db": None if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))}
  return cost


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
  loaded = model_dir_lib.load_model_dir(config.model_dir, config.checkpoint, config.compute_dtype)
  family, model_config, model, step = loaded.family, loaded.config, loaded.model, loaded.step
  saved = model_dir_lib.read_config(config.model_dir)
  module = TranslatorModule(model, family)
  traits = module.traits
  tf.saved_model.save(module, config.output_dir, signatures=module.signatures())

  size = int(model_config.image_size)
  inputs = fixed_inputs(traits, size)
  warmup.write_warmup_file(config.output_dir, config.model_name,
                           [(name, value) for name, value in inputs.items()])
  expected = expected_signatures(traits)
  cost = None
  if config.compute_dtype != "float32":
    reference = model_dir_lib.load_model_dir(config.model_dir, config.checkpoint).model
    cost = {"compute_dtype": config.compute_dtype, "vs_float32": precision_cost(reference, model, traits, size)}
  card = {
      "family": family.name, "preset": saved.get("preset"), "training_step": step,
      "checkpoint": loaded.describe(),
      "model_config": model_config.to_dict(), "image_size": size, "size_multiple": module.multiple,
      "fixed_size": traits["fixed_size"], "signatures": expected, "data_statistics": stats,
      "evaluation_metrics": metrics_json, "source_model_dir": os.path.abspath(config.model_dir),
      "compute_dtype": config.compute_dtype, "precision": cost,
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
                      max_differences=differences, checkpoint=loaded.describe(), precision=cost)
