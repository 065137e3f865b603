"""Tests of the shared layers in models/layers (padding, normalization, pooling, blocks).

Golden values are computed here in numpy from the formulas of the reference code (NVlabs/MUNIT networks.py,
mingyuliutw/UNIT version_02 common_net.py, torch semantics of ReflectionPad2d / AvgPool2d / ConvTranspose2d),
never from another implementation.
"""

from __future__ import annotations

import os
import platform

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import layers as L
from models.layers import conv as conv_lib

RNG = np.random.default_rng(0)


@pytest.fixture
def mixed_precision():
  """Runs a test under the mixed_float16 global policy and restores float32 afterwards."""
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy("float32")


def _roundtrip(layer):
  """Returns a layer rebuilt from its serialized config (registered "i2i" class)."""
  return keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))


def _np_instance_norm(x, eps=1e-5):
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = x.var(axis=(1, 2), keepdims=True)
  return (x - mean) / np.sqrt(var + eps)


# ReflectionPadding2D ---------------------------------------------------------------------------------------------

def test_reflection_padding_golden_and_config():
  x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
  y = L.ReflectionPadding2D((1, 2))(x)[0, :, :, 0].numpy()
  # torch ReflectionPad2d: mirror without repeating the border.
  expected = np.array([[5, 4, 3, 4, 5, 4, 3],
                       [2, 1, 0, 1, 2, 1, 0],
                       [5, 4, 3, 4, 5, 4, 3],
                       [8, 7, 6, 7, 8, 7, 6],
                       [5, 4, 3, 4, 5, 4, 3]], np.float32)
  np.testing.assert_array_equal(y, expected)
  assert _roundtrip(L.ReflectionPadding2D(3)).padding == (3, 3)


def test_reflection_padding_inference_and_training_paths_equal_numpy_reflect_bit_for_bit():
  # Inference pads by slices + concat (reflect_pad_by_concat), training by MirrorPad: both must be np.pad reflect.
  for shape, padding in (((2, 5, 7, 3), (1, 1)), ((1, 8, 6, 4), (3, 2)), ((1, 4, 4, 2), (0, 3)), ((3, 6, 5, 1), (2, 0))):
    x = RNG.normal(size=shape).astype(np.float32)
    expected = np.pad(x, [(0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0)], mode="reflect")
    layer = L.ReflectionPadding2D(padding)
    for training in (False, True):
      np.testing.assert_array_equal(layer(x, training=training).numpy(), expected)
      traced = tf.function(lambda t, training=training: layer(t, training=training))
      np.testing.assert_array_equal(traced(x).numpy(), expected)
      graph = traced.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
      assert any(op.type == "MirrorPad" for op in graph.get_operations()) == training


def test_crop2d_equals_numpy_slicing_for_static_and_unknown_shapes():
  x = RNG.normal(size=(2, 7, 6, 3)).astype(np.float32)
  for crop in ((1, 1, 1, 1), (1, 0, 2, 3), (0, 0, 0, 0), (3, 2, 0, 1)):
    top, bottom, left, right = crop
    expected = x[:, top:7 - bottom, left:6 - right]
    np.testing.assert_array_equal(L.padding.crop2d(tf.constant(x), *crop).numpy(), expected)
    traced = tf.function(lambda t, crop=crop: L.padding.crop2d(t, *crop),
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    np.testing.assert_array_equal(traced(x).numpy(), expected)
    # Unknown H and W (a serving signature) keep the known channel count, which the next layer needs.
    assert traced.get_concrete_function().structured_outputs.shape.as_list() == [None, None, None, 3]


def _float_strided_slices(fn, shape) -> list:
  """(op type, name) of every StridedSlice / StridedSliceGrad on float data in the graph of fn(x) and
  d(sum(fn(x)))/dx, x of `shape` (shape arithmetic on int32 is not counted)."""
  def grad(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x)
    return tape.gradient(tf.reduce_sum(y), x)
  graph = tf.function(grad).get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
  return [(op.type, op.name) for op in graph.get_operations()
          if op.type in ("StridedSlice", "StridedSliceGrad") and op.outputs[0].dtype.is_floating]


def test_training_crops_take_no_strided_slice_gradient():
  # The crops of the transposed convolution (UNIT's decoder) and the border terms of the upsampling 5x5
  # convolution (MUNIT's decoder) are Slice ops, whose gradient is Pad; StridedSliceGrad is ~10x slower on CPU
  # (BUILD.md, issue 17).
  block = L.ConvTransposeBlock(4, 3, 2, 1, 1)
  kernel = tf.constant(RNG.normal(size=(5, 5, 2, 3)).astype(np.float32))
  kernel3 = tf.constant(RNG.normal(size=(3, 3, 2, 3)).astype(np.float32))
  blur = L.GaussianBlurDownsample2D()
  for fn, shape in ((lambda x: block(x, training=True), (1, 6, 6, 2)),
                    (lambda x: L.conv.upsample2x_reflect_conv5(x, kernel), (1, 6, 6, 2)),
                    (lambda x: L.conv.upsample2x_reflect_conv3(x, kernel3), (1, 6, 6, 2)),
                    (blur, (1, 7, 6, 2))):
    assert not _float_strided_slices(fn, shape)


def test_reflection_padding_rejects_padding_not_smaller_than_input():
  with pytest.raises(ValueError, match="smaller than the height 3"):
    L.ReflectionPadding2D(3)(np.zeros([1, 3, 8, 1], np.float32))
  with pytest.raises(ValueError, match="non-negative"):
    L.ReflectionPadding2D(-1)


def _value_and_gradient(fn, x, dy):
  """fn(x) and d(sum(fn(x) * dy))/dx, as numpy."""
  x = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x)
    loss = tf.reduce_sum(y * tf.cast(dy, y.dtype))
  return y.numpy(), tape.gradient(loss, x).numpy()


def test_instance_standardize_values_and_gradient_equal_float64_autodiff():
  # The hand-written gradient against TensorFlow's autodiff of the plain formula in float64; spatially constant
  # channels (var 0) included.
  x = RNG.normal(size=(2, 5, 4, 3)).astype(np.float32) * 3 + 1
  x[1, :, :, 2] = 0.5
  dy = RNG.normal(size=x.shape).astype(np.float32)

  def plain(t):
    mean = tf.reduce_mean(t, axis=[1, 2], keepdims=True)
    return (t - mean) / tf.sqrt(tf.reduce_mean((t - mean) ** 2, axis=[1, 2], keepdims=True) + 1e-5)

  expected, expected_dx = _value_and_gradient(plain, x.astype(np.float64), dy)
  y, dx = _value_and_gradient(lambda t: L.normalization.instance_standardize(t, 1e-5), x, dy)
  np.testing.assert_allclose(y, expected, rtol=0, atol=2e-6)
  np.testing.assert_allclose(dx, expected_dx, rtol=1e-5, atol=2e-5)


def test_layer_standardize_values_and_gradient_equal_float64_autodiff():
  # MUNIT's LayerNorm statistics (unbiased sigma, eps outside the sqrt) over H, W, C per sample: the written-out
  # gradient against TensorFlow's autodiff of the plain formula in float64.
  x = RNG.normal(size=(2, 5, 4, 3)).astype(np.float32) * 3 + 1
  dy = RNG.normal(size=x.shape).astype(np.float32)

  def plain(t):
    centered = t - tf.reduce_mean(t, axis=[1, 2, 3], keepdims=True)
    return centered / (tf.sqrt(tf.reduce_sum(centered ** 2, axis=[1, 2, 3], keepdims=True) / (5 * 4 * 3 - 1)) + 1e-5)

  expected, expected_dx = _value_and_gradient(plain, x.astype(np.float64), dy)
  y, dx = _value_and_gradient(lambda t: L.normalization.layer_standardize(t, 1e-5), x, dy)
  np.testing.assert_allclose(y, expected, rtol=0, atol=2e-6)
  np.testing.assert_allclose(dx, expected_dx, rtol=1e-5, atol=2e-6)
  # A constant sample (sigma = 0): z = 0 and the gradient dz / eps - mean, finite (autodiff of sqrt gives NaN).
  with tf.GradientTape() as tape:
    flat = tf.fill([1, 2, 2, 1], 3.0)
    tape.watch(flat)
    y = L.normalization.layer_standardize(flat, 1e-5)
  np.testing.assert_array_equal(y.numpy(), 0.0)
  np.testing.assert_allclose(tape.gradient(y, flat).numpy(), 0.0, atol=1e-6)


# AdaIN -------------------------------------------------------------------------------------------------------------

def test_adain_golden():
  x = RNG.normal(2.0, 3.0, size=(2, 4, 5, 3)).astype(np.float32)
  gamma = RNG.normal(size=(2, 3)).astype(np.float32)
  beta = RNG.normal(size=(2, 3)).astype(np.float32)
  y = L.AdaIN()([x, gamma, beta]).numpy()
  # y = gamma * (x - mu) / sqrt(var + 1e-5) + beta, biased var per sample and channel over H, W.
  expected = _np_instance_norm(x) * gamma[:, None, None, :] + beta[:, None, None, :]
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_adain_eps_inside_sqrt_on_constant_input():
  x = np.full([1, 2, 2, 1], 7.0, np.float32)
  y = L.AdaIN(epsilon=1e-5)([x, np.ones([1, 1], np.float32), np.full([1, 1], 0.5, np.float32)]).numpy()
  np.testing.assert_allclose(y, 0.5)  # (x - mu) = 0 whatever eps is; output = beta


def test_adain_rejects_mismatched_gamma():
  with pytest.raises(ValueError, match=r"gamma must be \[B, 3\]"):
    L.AdaIN()([np.zeros([1, 2, 2, 3], np.float32), np.zeros([1, 4], np.float32), np.zeros([1, 3], np.float32)])
  assert _roundtrip(L.AdaIN(epsilon=1e-3)).epsilon == 1e-3


def test_adain_statistics_in_float32_under_mixed_precision(mixed_precision):
  # Values of ~1000 overflow a float16 variance (1e6 > 65504); float32 statistics keep the result exact.
  x = (RNG.normal(size=(1, 4, 4, 2)) * 1000.0).astype(np.float32)
  y = L.AdaIN()([tf.cast(x, tf.float16), np.ones([1, 2], np.float32), np.zeros([1, 2], np.float32)])
  assert y.dtype == tf.float16
  expected = _np_instance_norm(x.astype(np.float16).astype(np.float32))
  np.testing.assert_allclose(y.numpy().astype(np.float32), expected, atol=5e-3)


# MUNIT LayerNorm ---------------------------------------------------------------------------------------------------

def test_munit_layer_norm_golden_unbiased_std_eps_outside():
  keras.utils.set_random_seed(0)
  x = RNG.normal(1.0, 2.0, size=(3, 4, 4, 5)).astype(np.float32)
  layer = L.MUNITLayerNorm()
  y = layer(x).numpy()
  gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
  assert np.all((gamma >= 0) & (gamma < 1)) and np.all(beta == 0)  # gamma ~ U[0, 1), beta = 0
  flat = x.reshape(3, -1)
  mean = flat.mean(1)[:, None, None, None]
  std = flat.std(1, ddof=1)[:, None, None, None]  # torch .std() is unbiased
  expected = (x - mean) / (std + 1e-5) * gamma + beta
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_munit_layer_norm_eps_is_outside_the_sqrt():
  # Two values +-d: unbiased std = d * sqrt(2); with eps outside: d / (d sqrt(2) + eps).
  d = 1e-3
  x = np.array([d, -d], np.float32).reshape(1, 1, 2, 1)
  layer = L.MUNITLayerNorm(epsilon=1e-3, affine=False)
  np.testing.assert_allclose(layer(x).numpy().ravel(), [d / (d * np.sqrt(2) + 1e-3), -d / (d * np.sqrt(2) + 1e-3)],
                             rtol=1e-5)
  assert _roundtrip(layer).get_config()["affine"] is False


# Instance norm -----------------------------------------------------------------------------------------------------

def test_instance_norm_is_group_norm_with_one_group_per_channel():
  x = RNG.normal(size=(2, 5, 6, 4)).astype(np.float32)
  norm = L.instance_norm(affine=False)
  np.testing.assert_allclose(norm(x).numpy(), _np_instance_norm(x), rtol=1e-4, atol=1e-5)
  assert not norm.weights  # torch nn.InstanceNorm2d default: no affine terms
  affine = L.instance_norm(affine=True)
  affine(x)
  assert len(affine.trainable_weights) == 2


def test_fused_instance_norm_constants_are_the_float32_neighbours_of_one_and_zero():
  from models.layers import normalization
  assert np.float32(normalization.FUSED_IN_GAMMA) == np.nextafter(np.float32(1), np.float32(2))
  assert np.float32(normalization.FUSED_IN_BETA) == np.finfo(np.float32).tiny  # smallest normal, not a denormal


def _op_types(fn, x) -> set:
  """Op types that ran (after grappler) in two calls of the tf.function fn on x, from a TF profiler trace."""
  import tempfile  # pylint: disable=import-outside-toplevel
  from benchmarks.profile_ops import tf_op_times  # pylint: disable=import-outside-toplevel
  fn(x)
  logdir = tempfile.mkdtemp()
  tf.profiler.experimental.start(logdir)
  fn(x), fn(x)
  tf.profiler.experimental.stop()
  return set(tf_op_times(logdir, 2)[0])


@pytest.mark.skipif(not conv_lib.onednn_enabled(), reason="the fused kernel is oneDNN's")
def test_inference_instance_norm_and_adain_run_as_one_fused_kernel_training_as_plain_ops():
  x = (RNG.normal(size=(2, 8, 8, 16)) * 3 + 2).astype(np.float32)
  gamma, beta = RNG.normal(size=(2, 16)).astype(np.float32), RNG.normal(size=(2, 16)).astype(np.float32)
  norm, adain = L.instance_norm(affine=False), L.AdaIN()
  expected = _np_instance_norm(x)
  for training in (False, True):
    in_fn = tf.function(lambda t, training=training: tf.nn.relu(norm(t, training=training)))
    adain_fn = tf.function(lambda t, training=training: adain([t, gamma, beta], training=training))
    np.testing.assert_allclose(in_fn(x).numpy(), np.maximum(expected, 0), atol=1e-5)
    np.testing.assert_allclose(adain_fn(x).numpy(), expected * gamma[:, None, None] + beta[:, None, None],
                               atol=1e-5)
    for fn in (in_fn, adain_fn):
      ops = _op_types(fn, x)
      assert ("_MklFusedInstanceNorm" in ops) == (not training), (training, ops)
      assert ("Mean" in ops) == training, (training, ops)
  # The affine norm's gamma, beta are variables, which the remapper does not fuse: it keeps the plain ops.
  affine = L.instance_norm(affine=True)
  assert "_MklFusedInstanceNorm" not in _op_types(tf.function(lambda t: affine(t, training=False)), x)


# Pooling -----------------------------------------------------------------------------------------------------------

def test_average_pooling_excludes_padding_from_the_count():
  x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  y = L.AveragePooling2DExcludePad(3, 2, 1)(x)[0, :, :, 0].numpy()
  g = x[0, :, :, 0]
  # torch AvgPool2d(3, 2, padding=1, count_include_pad=False): windows start at -1, padded zeros not counted.
  expected = np.array([[g[0:2, 0:2].mean(), g[0:2, 1:4].mean()],
                       [g[1:4, 0:2].mean(), g[1:4, 1:4].mean()]])
  np.testing.assert_allclose(y, expected, rtol=1e-6)
  assert L.AveragePooling2DExcludePad()(np.zeros([1, 5, 7, 1], np.float32)).shape == (1, 3, 4, 1)


def test_gaussian_blur_downsample_golden():
  x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  y = L.GaussianBlurDownsample2D()(x)[0, :, :, 0].numpy()
  k = np.array([0.25, 0.5, 0.25])
  padded = np.pad(x[0, :, :, 0], 1, mode="edge")  # replicate padding
  blurred = np.array([[np.sum(np.outer(k, k) * padded[i:i + 3, j:j + 3]) for j in range(4)] for i in range(4)])
  np.testing.assert_allclose(y, blurred[::2, ::2], rtol=1e-6)


# Blocks ------------------------------------------------------------------------------------------------------------

def test_conv_transpose_block_matches_torch_cropping():
  # torch ConvTranspose2d(k=3, s=2, padding=1, output_padding=1) on [[1, 2], [3, 4]] with an all-ones kernel:
  # scatter-add the full (H - 1) * 2 + 3 = 5 output, then keep rows/cols 1..4.
  block = L.ConvTransposeBlock(1, 3, 2, 1, 1, norm="none", activation="none")
  x = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1)
  block(x)
  block.conv.kernel.assign(np.ones([3, 3, 1, 1], np.float32))
  block.conv.bias.assign([0.0])
  full = np.zeros([5, 5], np.float32)
  for i in range(2):
    for j in range(2):
      full[2 * i:2 * i + 3, 2 * j:2 * j + 3] += x[0, i, j, 0]
  np.testing.assert_allclose(block(x)[0, :, :, 0].numpy(), full[1:5, 1:5])


def test_conv_block_golden_reflect_pad_then_valid_conv():
  x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
  block = L.ConvBlock(1, 3, 1, 1, "reflect", "none", "leaky_relu", 0.2)
  block(x)
  block.conv.kernel.assign(np.ones([3, 3, 1, 1], np.float32))
  block.conv.bias.assign([-40.0])
  padded = np.pad(x[0, :, :, 0], 1, mode="reflect")
  conv = np.array([[padded[i:i + 3, j:j + 3].sum() for j in range(3)] for i in range(3)]) - 40.0
  np.testing.assert_allclose(block(x)[0, :, :, 0].numpy(), np.where(conv > 0, conv, 0.2 * conv), rtol=1e-6)
  zero = L.ConvBlock(1, 3, 2, 1, "zero", "none", "none")
  zero(x)
  zero.conv.kernel.assign(np.ones([3, 3, 1, 1], np.float32))
  zero.conv.bias.assign([0.0])
  padded = np.pad(x[0, :, :, 0], 1)  # torch Conv2d(padding=1, stride=2): symmetric zero padding
  np.testing.assert_allclose(zero(x)[0, :, :, 0].numpy(),
                             [[padded[i:i + 3, j:j + 3].sum() for j in (0, 2)] for i in (0, 2)])


def test_conv_block_shapes_and_config():
  x = np.zeros([2, 16, 12, 3], np.float32)
  block = L.ConvBlock(8, 4, 2, 1, "reflect", "in", "relu")
  assert block(x).shape == (2, 8, 6, 8)
  assert L.ConvBlock(8, 3, 2, 1, "zero", "none", "leaky_relu", 0.01)(x).shape == (2, 8, 6, 8)
  assert L.ConvBlock(4, 7, 1, 3, "reflect", "ln", "tanh")(x).shape == (2, 16, 12, 4)
  clone = _roundtrip(block)
  assert clone.get_config() == block.get_config()
  with pytest.raises(ValueError, match="Unknown norm 'bn'"):
    L.ConvBlock(8, 3, norm="bn")


def test_initializers_follow_the_references():
  keras.utils.set_random_seed(0)
  kaiming, zeros = L.initializers("kaiming", 0)
  w = kaiming((3, 3, 256, 256)).numpy()
  assert abs(w.std() - np.sqrt(2.0 / (9 * 256))) < 0.02 * np.sqrt(2.0 / (9 * 256))
  assert np.abs(w).max() > 2.5 * w.std()  # untruncated normal, like torch kaiming_normal_
  assert np.all(zeros((4,)).numpy() == 0)
  gaussian, _ = L.initializers("gaussian", 0)
  assert abs(gaussian((3, 3, 128, 128)).numpy().std() - 0.02) < 5e-4
  _, torch_bias = L.initializers("gaussian_torch_bias", 16)
  b = torch_bias((4096,)).numpy()
  assert b.min() >= -0.25 and b.max() <= 0.25 and b.max() > 0.24  # U(-1/sqrt(16), 1/sqrt(16))
  with pytest.raises(ValueError, match="Unknown init"):
    L.initializers("xavier", 1)


def test_res_block_is_identity_plus_residual():
  x = RNG.normal(size=(1, 6, 6, 4)).astype(np.float32)
  block = L.ResBlock("zero")
  block(x)
  block.block2.conv.kernel.assign(np.zeros(block.block2.conv.kernel.shape, np.float32))
  # With the second conv's kernel zeroed its output is its bias, constant per channel: instance norm maps it to 0.
  np.testing.assert_allclose(block(x).numpy(), x, atol=1e-5)


def test_adain_res_block_consumes_params_as_beta1_gamma1_beta2_gamma2():
  x = RNG.normal(size=(2, 5, 5, 3)).astype(np.float32)
  beta1, beta2 = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
  params = np.concatenate([beta1, np.zeros([2, 3]), beta2, np.zeros([2, 3])], axis=1).astype(np.float32)
  # gamma2 = 0: the second AdaIN outputs beta2 everywhere, so the block returns x + beta2.
  y = L.AdaINResBlock()([x, params]).numpy()
  np.testing.assert_allclose(y, x + beta2[:, None, None, :], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"adain_params of shape \[B, 12\]"):
    L.AdaINResBlock()([x, params[:, :8]])


def test_layers_run_under_mixed_precision(mixed_precision):
  x = tf.constant(RNG.normal(size=(1, 8, 8, 4)), tf.float32)
  for layer in (L.ConvBlock(4, 3, 1, 1, norm="ln"), L.ConvBlock(4, 3, 1, 1, norm="in"), L.ResBlock(),
                L.ConvTransposeBlock(4, 3, 2, 1, 1), L.AveragePooling2DExcludePad(), L.GaussianBlurDownsample2D()):
    y = layer(x)
    assert y.dtype == tf.float16, layer
    assert np.all(np.isfinite(y.numpy().astype(np.float32)))
  y = L.AdaINResBlock()([x, tf.ones([1, 16])])
  assert y.dtype == tf.float16


def test_multi_scale_patch_discriminator_shapes_and_options():
  x = np.zeros([1, 32, 32, 3], np.float32)
  dis = L.MultiScalePatchDiscriminator(4, 2, 2, kernel_size=4, pad_type="reflect", downsample="avg_pool")
  assert [o.shape for o in dis(x)] == [(1, 8, 8, 1), (1, 4, 4, 1)]
  blur = L.MultiScalePatchDiscriminator(4, 2, 3, kernel_size=3, pad_type="zero", negative_slope=0.01,
                                        init="gaussian_torch_bias", downsample="gaussian_blur")
  assert [o.shape for o in blur(x)] == [(1, 8, 8, 1), (1, 4, 4, 1), (1, 2, 2, 1)]
  assert L.MultiScalePatchDiscriminator.from_config(blur.get_config()).get_config() == blur.get_config()
  with pytest.raises(ValueError, match="Unknown downsample 'max_pool'"):
    L.MultiScalePatchDiscriminator(downsample="max_pool")


def _np_conv_grads(x, w, strides, dy):
  """y, dL/dx, dL/dw of a 'valid' (strided) cross-correlation and L = sum(y * dy), in float64 numpy."""
  (kh, kw), (sh, sw) = w.shape[:2], strides
  ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  x64, w64 = x.astype(np.float64), w.astype(np.float64)
  y, dx, dw = np.zeros((x.shape[0], ho, wo, w.shape[3])), np.zeros(x.shape), np.zeros(w.shape)
  for i in range(kh):
    for j in range(kw):
      rows, cols = slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw)
      y += np.einsum("bhwc,co->bhwo", x64[:, rows, cols, :], w64[i, j])
      dw[i, j] = np.einsum("bhwc,bhwo->co", x64[:, rows, cols, :], dy)
      dx[:, rows, cols, :] += np.einsum("bhwo,co->bhwc", dy, w64[i, j])
  return y, dx, dw


def _assert_conv_matches_numpy(conv, shape, kernel, strides):
  """conv(x, w)'s values and its gradients dL/dx, dL/dw of L = sum(y * dy) equal the numpy golden."""
  x = RNG.normal(size=shape).astype(np.float32)
  w = RNG.normal(size=kernel).astype(np.float32)
  ho, wo = (shape[1] - kernel[0]) // strides[0] + 1, (shape[2] - kernel[1]) // strides[1] + 1
  dy = RNG.normal(size=(shape[0], ho, wo, kernel[3])).astype(np.float32)

  @tf.function
  def run(x, w):
    with tf.GradientTape() as tape:
      tape.watch([x, w])
      y = conv(x, w)
      loss = tf.reduce_sum(y * dy)
    return (y, *tape.gradient(loss, [x, w]))

  for got, golden in zip(run(tf.constant(x), tf.constant(w)), _np_conv_grads(x, w, strides, dy)):
    np.testing.assert_allclose(got.numpy(), golden, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,kernel", [((2, 9, 11, 5), (3, 3, 5, 4)), ((1, 12, 12, 3), (7, 7, 3, 6)),
                                          ((3, 8, 10, 16), (5, 3, 16, 2)), ((1, 6, 6, 4), (1, 1, 4, 3))])
@pytest.mark.parametrize("forward_dx", [True, False])
def test_conv2d_valid_values_and_gradients_match_the_direct_convolution(shape, kernel, forward_dx):
  # The rewritten gradients (native=False: what runs without oneDNN), both input-gradient forms.
  _assert_conv_matches_numpy(lambda x, w: L.conv2d_valid(x, w, forward_dx=forward_dx, native=False), shape, kernel,
                             (1, 1))


@pytest.mark.parametrize("shape,kernel", [((2, 8, 10, 5), (3, 3, 5, 4)), ((1, 9, 7, 3), (3, 3, 3, 6)),
                                          ((1, 3, 3, 2), (3, 3, 2, 2))])
def test_winograd_conv3x3_values_and_gradients_match_numpy(shape, kernel):
  # Even and odd output sizes (odd ones are padded by a zero row/column and cropped), and a single output pixel.
  _assert_conv_matches_numpy(L.conv.winograd_conv3x3, shape, kernel, (1, 1))


def test_winograd_conv3x3_with_unknown_height_and_width():
  # The exported signatures take [None, None, None, C]: the tiles and the odd-size padding come from tf.shape.
  x, w = RNG.normal(size=(2, 7, 10, 3)).astype(np.float32), RNG.normal(size=(3, 3, 3, 4)).astype(np.float32)
  fn = tf.function(L.conv.winograd_conv3x3).get_concrete_function(tf.TensorSpec([None, None, None, 3]),
                                                                    tf.TensorSpec([3, 3, 3, 4]))
  assert fn.output_shapes.as_list() == [None, None, None, 4]
  for shape in ((2, 7, 10, 3), (1, 6, 6, 3)):
    x = RNG.normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(fn(tf.constant(x), tf.constant(w)).numpy(),
                               _np_conv_grads(x, w, (1, 1), np.zeros(shape[:1] + (shape[1] - 2, shape[2] - 2, 4)))[0],
                               rtol=1e-4, atol=1e-4)


def _forward_op_types(conv, shape, kernel, dtype=tf.float32):
  fn = tf.function(conv).get_concrete_function(tf.TensorSpec(shape, dtype), tf.TensorSpec(kernel, dtype))
  return {op.type for op in fn.graph.get_operations()}


def test_conv2d_valid_takes_winograd_for_float32_3x3_with_128_channels_or_more():
  # Where it was measured faster (conv.WINOGRAD_MIN_CHANNELS); fewer channels, other kernels and other dtypes
  # stay TensorFlow's convolution.
  winograd = _forward_op_types(L.conv2d_valid, [1, 6, 6, 128], [3, 3, 128, 128])
  assert {"MatMul", "BatchMatMulV2"} & winograd and "Conv2D" not in winograd
  for shape, kernel, dtype in (([1, 6, 6, 64], [3, 3, 64, 128], tf.float32),
                               ([1, 6, 6, 128], [3, 3, 128, 64], tf.float32),
                               ([1, 6, 6, 128], [5, 5, 128, 128], tf.float32),
                               ([1, 6, 6, 128], [3, 3, 128, 128], tf.bfloat16)):
    assert "Conv2D" in _forward_op_types(L.conv2d_valid, shape, kernel, dtype), (shape, kernel, dtype)


def _gradient_op_types(conv):
  x, w = tf.zeros([1, 8, 8, 4]), tf.zeros([3, 3, 4, 2])

  @tf.function
  def grads(x, w):
    with tf.GradientTape() as tape:
      tape.watch([x, w])
      y = conv(x, w)
    return tape.gradient(y, [x, w])

  return {op.type for op in grads.get_concrete_function(x, w).graph.get_operations()}


def test_conv2d_valid_keeps_tensorflows_gradients_when_onednn_computes_them(monkeypatch):
  # oneDNN (on by default in x86 TensorFlow) has fast stride-1 gradient kernels; without it the rewrite runs.
  monkeypatch.setattr(conv_lib, "NATIVE_STRIDE1_GRADIENTS", True)
  native = _gradient_op_types(L.conv2d_valid)
  assert {"Conv2DBackpropInput", "Conv2DBackpropFilter"} <= native
  monkeypatch.setattr(conv_lib, "NATIVE_STRIDE1_GRADIENTS", False)
  rewritten = _gradient_op_types(L.conv2d_valid)
  assert "Conv2DBackpropFilter" not in rewritten and "Transpose" in rewritten


def test_onednn_enabled_follows_the_environment_switch():
  # This process: oneDNN is on unless TF_ENABLE_ONEDNN_OPTS=0 (x86 TensorFlow >= 2.9); a child with it off says so.
  import subprocess, sys  # pylint: disable=import-outside-toplevel,multiple-imports
  code = "from models.layers.conv import onednn_enabled; print(onednn_enabled())"
  off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert off.stdout.strip().splitlines()[-1] == "False"
  if platform.machine() in ("x86_64", "AMD64"):
    assert conv_lib.onednn_enabled() is (os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0")


@pytest.mark.parametrize("shape,kernel,strides", [((2, 4, 4, 6), (3, 3, 6, 5), (2, 2)),   # UNIT D's last convs
                                                  ((3, 10, 6, 4), (4, 4, 4, 7), (2, 2)),  # MUNIT / U-GAT-IT D
                                                  ((1, 9, 8, 3), (3, 2, 3, 2), (3, 2)),   # uneven taps, strides
                                                  ((2, 3, 3, 8), (3, 3, 8, 16), (2, 2))])  # a 1x1 output
def test_conv2d_patches_values_and_gradients_match_the_direct_convolution(shape, kernel, strides):
  _assert_conv_matches_numpy(lambda x, w: L.conv2d_patches(x, w, strides), shape, kernel, strides)


def _assert_fast_conv2d_matches_keras(x, filters, kernel_size, strides, loss):
  """FastConv2D and keras Conv2D with the same weights give the same y and gradients of loss(y) (x, kernel, bias).

  Returns the built FastConv2D and Keras layers."""
  fast = L.FastConv2D(filters, kernel_size, strides=strides, name="conv")
  ref = keras.layers.Conv2D(filters, kernel_size, strides=strides, name="conv")
  fast.build(x.shape)
  ref.build(x.shape)
  for a, b in zip(ref.weights, fast.weights):
    a.assign(b)
  results = []
  for layer in (fast, ref):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x)
      value = loss(y)
    results.append([y, *tape.gradient(value, [x, *layer.trainable_weights])])
  for a, b in zip(*results):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=2e-4)
  return fast, ref


def test_fast_conv2d_strided_small_outputs_use_patches_and_match_keras():
  # A discriminator's deep end: 3x3 stride 2 on a zero-padded 4x4 map -> 2x2 (patches path), and a 34x34
  # output (Keras' own path); both must give Keras Conv2D's outputs and gradients with the same weights.
  for size, expect_patches in ((6, True), (70, False)):
    x = tf.constant(RNG.normal(size=(2, size, size, 8)).astype(np.float32))
    fast, _ = _assert_fast_conv2d_matches_keras(x, 6, 3, 2, lambda y: tf.reduce_sum(y * tf.cos(y)))
    assert conv_lib.use_patches(x.shape, fast.kernel.shape, fast.strides) == expect_patches


def test_fast_conv2d_is_keras_conv2d_with_the_same_weights_outputs_and_gradients():
  x = tf.constant(RNG.normal(size=(2, 70, 70, 8)).astype(np.float32))
  dy = tf.constant(RNG.normal(size=(2, 64, 64, 3)).astype(np.float32))
  # 7x7 -> 3 channels at 64x64: both gradients by forward convs
  fast, ref = _assert_fast_conv2d_matches_keras(x, 3, 7, 1, lambda y: tf.reduce_sum(y * dy))
  assert [v.shape for v in fast.weights] == [v.shape for v in ref.weights] and len(fast.weights) == 2


@pytest.mark.parametrize("strides", [1, 2])  # conv2d_valid, conv2d_patches (5x5 -> 2x2)
def test_fast_conv2d_under_mixed_precision(mixed_precision, strides):
  layer = L.FastConv2D(4, 3, strides=strides)
  x = tf.constant(RNG.normal(size=(1, 5 if strides == 2 else 10, 5 if strides == 2 else 10, 3)).astype(np.float32))
  with tf.GradientTape() as tape:
    y = layer(x)
    loss = tf.reduce_sum(tf.cast(y, tf.float32))
  grads = tape.gradient(loss, layer.trainable_weights)
  assert y.dtype == tf.float16 and all(g is not None and g.dtype == tf.float32 for g in grads)


@pytest.mark.parametrize("family, shape", [(family, shape) for family in ("munit", "ugatit")
                                           for shape in ((2, 5, 7, 6), (1, 2, 2, 4), (1, 8, 8, 16))]
                         + [("ugatit", (1, 1, 3, 2))])
def test_conv_block_call_upsampled_equals_upsampling_then_block(shape, family):
  # The decoders' up-sampling step: UpSampling2D(2, nearest) -> MUNIT's [reflect pad 2, 5x5 conv, LN, ReLU] or
  # U-GAT-IT's [reflect pad 1, 3x3 conv without bias, ILN, ReLU]; the phase-decomposed path must give the same
  # outputs and gradients (input, kernel, bias, and the norm's weights). U-GAT-IT's also holds for one row (MUNIT's
  # reflect pad 2 needs an upsampled height above 2).
  if family == "munit":
    block = L.ConvBlock(5, 5, 1, 2, "reflect", "ln", "relu")
  else:
    block = L.ConvBlock(5, 3, 1, 1, "reflect", "iln", "relu", init="torch", use_bias=False)
  x = tf.constant(RNG.normal(size=shape).astype(np.float32))
  upsample = keras.layers.UpSampling2D(2, interpolation="nearest")
  block(upsample(x))
  assert block.built
  if family == "ugatit":  # ILN's rho starts at 0 (pure LN): give the instance-norm half a share too
    block.norm_layer.rho.assign(np.linspace(0.2, 0.9, 5).astype(np.float32))
  dy = tf.constant(RNG.normal(size=(shape[0], 2 * shape[1], 2 * shape[2], 5)).astype(np.float32))
  results = []
  for fn in (lambda t: block(upsample(t)), block.call_upsampled):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x)
      loss = tf.reduce_sum(y * dy)
    results.append([y, *tape.gradient(loss, [x, *block.trainable_weights])])
  assert len(results[0]) == 6  # y, dx, kernel, and bias + LN gamma/beta or ILN rho/gamma/beta
  for a, b in zip(*results):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4)


def test_upsample2x_reflect_conv3_golden():
  # The reference: numpy's reflect pad of the upsampled image and a direct correlation (_np_conv_grads).
  for shape in ((1, 3, 4, 2), (2, 1, 2, 3)):
    x = RNG.normal(size=shape).astype(np.float32)
    w = RNG.normal(size=(3, 3, shape[3], 4)).astype(np.float32)
    up = x.repeat(2, axis=1).repeat(2, axis=2)
    golden = _np_conv_grads(np.pad(up, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect"), w, (1, 1),
                            np.zeros(up.shape[:3] + (4,)))[0]  # the values only
    np.testing.assert_allclose(L.conv.upsample2x_reflect_conv3(tf.constant(x), tf.constant(w)).numpy(), golden,
                               rtol=1e-4, atol=1e-4)


def test_upsample2x_reflect_conv5_golden():
  x = RNG.normal(size=(1, 3, 4, 2)).astype(np.float32)
  w = RNG.normal(size=(5, 5, 2, 3)).astype(np.float32)
  up = x.repeat(2, axis=1).repeat(2, axis=2)
  golden = _np_conv_grads(np.pad(up, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect"), w, (1, 1),
                          np.zeros((1, 6, 8, 3)))[0]  # the values only
  np.testing.assert_allclose(L.conv.upsample2x_reflect_conv5(tf.constant(x), tf.constant(w)).numpy(), golden,
                             rtol=1e-4, atol=1e-4)
