"""models.precision: bfloat16 compute with float32 variables, one place that sets and restores the policy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from components import model_dir as model_dir_lib
from models import precision
from tests.stage_models import make_model_dir


def test_compute_policy_restores_the_previous_policy_also_after_an_error():
  before = keras.mixed_precision.global_policy().name
  with pytest.raises(RuntimeError, match="inside"):
    with precision.compute_policy("bfloat16"):
      assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
      raise RuntimeError("inside")
  assert keras.mixed_precision.global_policy().name == before


def test_unknown_compute_dtype_is_refused_with_the_choices():
  with pytest.raises(ValueError) as e:
    with precision.compute_policy("float16"):
      pass
  assert str(e.value) == "compute dtype must be one of float32, bfloat16, got 'float16'"


@pytest.mark.parametrize("family_name", ["unit", "munit", "ugatit"])
def test_bfloat16_model_computes_in_bfloat16_keeps_float32_weights_and_restores_the_same_checkpoint(
    family_name, tmp_path):
  model_dir = make_model_dir(str(tmp_path / "m"), family_name)
  f32 = model_dir_lib.load_model_dir(model_dir, "latest")
  b16 = model_dir_lib.load_model_dir(model_dir, "latest", compute_dtype="bfloat16")
  # Same checkpoint, float32 variables in both: the restored weights are bit-identical.
  assert {v.dtype for v in b16.model.weights} == {"float32"}
  for a, b in zip(f32.model.weights, b16.model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  size = f32.config.image_size
  x = tf.random.stateless_uniform([2, size, size, 3], seed=[1, 2], minval=-1.0, maxval=1.0)
  style = None
  if models.get_family(family_name).traits.multimodal:
    style = f32.model.sample_style(tf.constant([0, 1], tf.int64))
  y32 = f32.model.translate(x, "a2b", style=style)["images"].numpy()
  y16 = b16.model.translate(x, "a2b", style=style)["images"]
  assert y16.dtype == tf.float32  # the generators hand float32 to the wire conversion
  diff = np.abs(y32 - y16.numpy())
  # bfloat16 keeps 8 significant bits (relative step 2^-8 ~ 0.004): outputs in [-1, 1] move by about that
  # much per layer, not more; and they do move, so bfloat16 really computed.
  assert 0.0 < diff.mean() < 0.02, diff.mean()
  assert diff.max() < 0.25, diff.max()
