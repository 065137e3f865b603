"""Tests of components.infra_validate_lib: real model servers over exported SavedModels, blessing files."""

import json
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf

import models
from components import infra_validate_lib as ivl
from components.errors import StageError
from serving import warmup
from tests.stage_models import exported


def _family_or_skip(name):
  try:
    models.get_family(name)
  except (ImportError, AttributeError) as e:
    pytest.skip(f"models/{name} has not landed yet: {e}")


def _server_children():
  """Our `serving.server` child processes still alive (the stage must always stop its server)."""
  out = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "serving.server"], capture_output=True, text=True,
                       check=False)
  return out.stdout.split()


@pytest.mark.slow
def test_munit_export_is_infra_blessed_after_every_signature_answers(tmp_path):
  _family_or_skip("munit")
  _, export = exported("munit")
  result = ivl.run(ivl.InfraValidateConfig(export.path, str(tmp_path), model_name="munit"))
  assert result.blessed, result.reason
  assert sorted(c["signature"] for c in result.checks) == sorted(export.signatures)
  assert (tmp_path / "INFRA_BLESSED").exists() and not (tmp_path / "INFRA_NOT_BLESSED").exists()
  report = json.loads((tmp_path / "infra_validation.json").read_text())
  assert report["blessed"] and report["checks"][0]["outputs"]
  assert not _server_children()


@pytest.mark.slow
def test_ugatit_full_is_blessed_and_rejects_a_mis_sized_image_with_invalid_argument_over_grpc(tmp_path):
  _family_or_skip("ugatit")
  _, export = exported("ugatit", light=False)
  result = ivl.run(ivl.InfraValidateConfig(export.path, str(tmp_path)))
  assert result.blessed, result.reason
  size_check = [c for c in result.checks if "request" in c]
  assert size_check and size_check[0]["request"].startswith("1x36x36x3") and not size_check[0]["problems"]


@pytest.mark.slow
def test_a_model_whose_answers_break_the_contract_is_not_blessed(tmp_path):
  """A real SavedModel whose a2b returns half-height images and NaN attention: served fine, answers wrong."""
  path = str(tmp_path / "bad")
  module = tf.Module()
  module.a2b = tf.function(
      lambda images: {"images": images[:, ::2], "attention": tf.fill(tf.shape(images)[:3], np.nan)},
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
  tf.saved_model.save(module, path, signatures={"a2b": module.a2b, "serving_default": module.a2b})
  images = np.zeros((1, 8, 8, 3), np.uint8)
  warmup.write_warmup_file(path, "m", [("a2b", {"images": images})])
  result = ivl.run(ivl.InfraValidateConfig(path, str(tmp_path / "out")))
  assert not result.blessed
  text = (tmp_path / "out" / "INFRA_NOT_BLESSED").read_text()
  assert "images: size (4, 8) != input size (8, 8)" in text and "attention: non-finite values" in text
  assert not _server_children()
  # A warmup request the model cannot answer makes the version fail to load (TF Serving semantics): reported
  # at once from GetModelStatus, not after the AVAILABLE timeout.
  warmup.write_warmup_file(path, "m", [("b2a", {"images": images})])
  result = ivl.run(ivl.InfraValidateConfig(path, str(tmp_path / "out"), available_timeout=600))
  assert not result.blessed and "failed to load" in result.reason and "b2a" in result.reason


def test_a_server_that_cannot_start_is_not_blessed_and_says_why(tmp_path):
  _family_or_skip("ugatit")
  _, export = exported("ugatit")
  (tmp_path / "INFRA_BLESSED").write_text("stale blessing of an earlier run")
  result = ivl.run(ivl.InfraValidateConfig(export.path, str(tmp_path), serving_binary="/bin/false",
                                           startup_timeout=20))
  assert not result.blessed and "could not serve the model" in result.reason
  assert (tmp_path / "INFRA_NOT_BLESSED").exists() and not (tmp_path / "INFRA_BLESSED").exists()


def test_no_warmup_requests_is_not_blessed_and_a_non_savedmodel_is_a_stage_error(tmp_path):
  path = str(tmp_path / "plain")
  module = tf.Module()
  module.f = tf.function(lambda x: {"y": x}, input_signature=[tf.TensorSpec([None], tf.float32)])
  tf.saved_model.save(module, path, signatures={"serving_default": module.f})
  result = ivl.run(ivl.InfraValidateConfig(path, str(tmp_path / "out")))
  assert not result.blessed and "no warmup requests" in result.reason
  with pytest.raises(StageError, match="must be an exported SavedModel"):
    ivl.run(ivl.InfraValidateConfig(str(tmp_path), str(tmp_path / "out")))


def test_check_response_golden_cases():
  signature = {"inputs": {"image_bytes": ("string", [None])}, "outputs": {"image_bytes": ("string", [None])}}
  png = tf.io.encode_png(np.zeros((3, 5, 3), np.uint8)).numpy()
  jpeg = tf.io.encode_jpeg(np.zeros((3, 5, 3), np.uint8)).numpy()
  inputs = {"image_bytes": np.array([png], object)}
  assert ivl.check_response(signature, inputs, {"image_bytes": np.array([png], object)}) == []
  assert "want PNG" in ivl.check_response(signature, inputs, {"image_bytes": np.array([jpeg], object)})[0]
  assert "rows for 1 inputs" in ivl.check_response(signature, inputs, {"image_bytes": np.array([png, png],
                                                                                               object)})[0]
  assert "output keys" in ivl.check_response(signature, inputs, {"images": np.zeros(1)})[0]
