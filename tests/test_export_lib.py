"""Tests of components.export_lib: the SavedModel contract for every family, verified against the Keras model."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

import models
from components import export_lib, translator
from components.errors import StageError
from serving import warmup
from tests.stage_models import exported, make_model_dir


def _family_or_skip(name):
  try:
    models.get_family(name)
  except (ImportError, AttributeError) as e:
    pytest.skip(f"models/{name} has not landed yet: {e}")


CASES = [("unit", {}), ("munit", {}), ("ugatit", {}), ("ugatit", {"light": False})]


@pytest.mark.slow
@pytest.mark.parametrize("family,overrides", CASES, ids=["unit", "munit", "ugatit_light", "ugatit_full"])
def test_export_matches_the_contract_and_the_keras_model(family, overrides):
  _family_or_skip(family)
  model_dir, result = exported(family, **overrides)
  # run() already compared every signature, reloaded in a fresh TensorFlow-only process, with the Keras model.
  assert set(result.max_differences) == set(result.signatures)
  for name, diffs in result.max_differences.items():
    assert all(d <= (1 if k in ("images", "image_bytes") else 1e-3) for k, d in diffs.items()), name
  names = {"serving_default", "a2b", "b2a", "a2b_encoded", "b2a_encoded"}
  if family == "munit":
    names |= {"a2b_style", "b2a_style", "a2b_reference", "b2a_reference"}
  assert set(result.signatures) == names
  a2b = result.signatures["a2b"]
  assert a2b["inputs"]["images"] == ("uint8", [None, None, None, 3])
  assert a2b["outputs"]["images"] == ("uint8", [None, None, None, 3])
  if family == "munit":
    assert a2b["inputs"]["seed"] == ("int64", [None]) and a2b["outputs"]["style"][0] == "float32"
  if family == "ugatit":
    assert a2b["outputs"]["attention"] == ("float32", [None, None, None])
  assert result.signatures["a2b_encoded"]["inputs"] == {"image_bytes": ("string", [None])}

  records = warmup.read_warmup_records(result.path)
  assert all(isinstance(r, prediction_log_pb2.PredictionLog) for r in records)
  assert sorted(r.predict_log.request.model_spec.signature_name for r in records) == sorted(names)
  with open(os.path.join(result.path, export_lib.MODEL_CARD_PATH)) as f:
    card = json.load(f)
  assert card["family"] == family and card["training_step"] == 3 and card["preset"] == "tiny"


@pytest.mark.slow
def test_munit_same_seed_same_output_and_any_size_is_padded_and_cropped():
  _family_or_skip("munit")
  _, result = exported("munit")
  loaded = tf.saved_model.load(result.path)
  images = np.random.default_rng(0).integers(0, 256, size=(2, 30, 22, 3), dtype=np.uint8)  # not multiples
  first = loaded.signatures["a2b"](images=images, seed=tf.constant([5, 5], tf.int64))
  again = loaded.signatures["a2b"](images=images, seed=tf.constant([5, 6], tf.int64))
  assert first["images"].shape == (2, 30, 22, 3) and first["images"].dtype == tf.uint8
  np.testing.assert_array_equal(first["images"][0], again["images"][0])
  np.testing.assert_array_equal(first["style"][0], first["style"][1])
  assert not np.array_equal(first["style"][1], again["style"][1])
  styled = loaded.signatures["a2b_style"](images=images, style=first["style"])
  np.testing.assert_array_equal(styled["images"], first["images"])
  ref = loaded.signatures["b2a_reference"](images=images, reference=images[:, :16, :20])
  assert ref["images"].shape == (2, 30, 22, 3) and ref["style"].shape[0] == 2
  with pytest.raises(tf.errors.InvalidArgumentError, match="one row per image"):
    loaded.signatures["a2b"](images=images, seed=tf.constant([1], tf.int64))


@pytest.mark.slow
def test_ugatit_full_rejects_other_sizes_naming_both_and_light_takes_any_size():
  _family_or_skip("ugatit")
  _, full = exported("ugatit", light=False)
  loaded = tf.saved_model.load(full.path)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"only 32x32 images.*\[36\] \[28\]"):
    loaded.signatures["a2b"](images=np.zeros((1, 36, 28, 3), np.uint8))
  _, light = exported("ugatit")
  out = tf.saved_model.load(light.path).signatures["b2a"](images=np.zeros((1, 26, 37, 3), np.uint8))
  assert out["images"].shape == (1, 26, 37, 3) and out["attention"].shape == (1, 26, 37)
  assert 0.0 <= float(tf.reduce_min(out["attention"])) and float(tf.reduce_max(out["attention"])) <= 1.0
  jpeg = tf.io.encode_jpeg(np.full((20, 28, 3), 128, np.uint8)).numpy()
  png = tf.io.encode_png(np.zeros((12, 8, 3), np.uint8)).numpy()  # a batch may mix formats and sizes
  encoded = tf.saved_model.load(light.path).signatures["a2b_encoded"](image_bytes=tf.constant([jpeg, png]))
  decoded = [tf.io.decode_png(b).numpy() for b in encoded["image_bytes"].numpy()]
  assert [d.shape for d in decoded] == [(20, 28, 3), (12, 8, 3)]


@pytest.mark.slow
def test_a_savedmodel_that_differs_from_the_keras_model_fails_verification():
  _family_or_skip("ugatit")
  _, result = exported("ugatit")
  other = models.get_family("ugatit").build_model(models.get_config("ugatit", "tiny"))  # other random weights
  traits = translator.family_traits("ugatit", other)
  with pytest.raises(StageError, match="differs from the Keras model by"):
    export_lib.verify(result.path, other, traits, 32)


def test_compare_outputs_tolerates_one_grey_level_and_rejects_wrong_keys():
  want = {"images": np.full((1, 2, 2, 3), 10, np.uint8)}
  assert export_lib.compare_outputs("a2b", {"images": want["images"] + 1}, want) == {"images": 1.0}
  with pytest.raises(StageError, match="differ from the expected"):
    export_lib.compare_outputs("a2b", {"output_0": want["images"]}, want)


def test_export_refuses_a_non_empty_output_dir_and_a_missing_stats_file(tmp_path):
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "x").write_text("")
  with pytest.raises(StageError, match="is not empty"):
    export_lib.run(export_lib.ExportConfig(str(tmp_path), str(tmp_path / "out")))
  with pytest.raises(StageError, match="does not exist"):
    export_lib.run(export_lib.ExportConfig(str(tmp_path), str(tmp_path / "new"), stats_path="/nope.json"))


def test_bfloat16_export_is_verified_and_records_what_bfloat16_costs_against_float32(tmp_path):
  model_dir = make_model_dir(str(tmp_path / "m"), "unit")
  f32 = export_lib.run(export_lib.ExportConfig(model_dir=model_dir, output_dir=str(tmp_path / "f32"), verify=False))
  result = export_lib.run(export_lib.ExportConfig(model_dir=model_dir, output_dir=str(tmp_path / "b16"),
                                                  compute_dtype="bfloat16"))
  assert f32.precision is None
  # Verified against the bfloat16 Keras model (same graph) within the uint8 tolerance, in a fresh process.
  assert set(result.max_differences) == set(result.signatures)
  with open(os.path.join(result.path, export_lib.MODEL_CARD_PATH)) as f:
    card = json.load(f)
  assert card["compute_dtype"] == "bfloat16" and card["precision"] == result.precision
  cost = result.precision["vs_float32"]
  assert set(cost) == {"a2b", "b2a"}
  for c in cost.values():  # bfloat16 moves the images (it really computed in bfloat16), by little
    assert 0 < c["mean_abs"] < 3 and 20 < c["psnr_db"], c
  # The served outputs themselves differ from the float32 export's by that much, not more.
  images = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
  out32 = tf.saved_model.load(f32.path).signatures["a2b"](images=images)["images"].numpy().astype(int)
  out16 = tf.saved_model.load(result.path).signatures["a2b"](images=images)["images"].numpy().astype(int)
  assert 0 < np.abs(out32 - out16).mean() < 3


def test_unknown_compute_dtype_is_refused_with_the_choices(tmp_path):
  with pytest.raises(StageError) as e:
    export_lib.ExportConfig(model_dir=str(tmp_path), output_dir=str(tmp_path / "o"), compute_dtype="float16")
  assert str(e.value) == "--compute_dtype must be one of float32, bfloat16, got 'float16'"
