"""Normalization layers of MUNIT and UNIT; statistics are always computed in float32 (mixed precision safe).

* `AdaIN` (Huang & Belongie, ICCV 2017), conditioning passed as inputs: `AdaIN()([x, gamma, beta])`.
* `MUNITLayerNorm`: the LayerNorm of NVlabs/MUNIT networks.py (unbiased std, eps outside the sqrt).
* `instance_norm(affine)`: instance normalization, `InstanceNormalization` (Keras' GroupNormalization with one
  group per channel), torch `nn.InstanceNorm2d` eps 1e-5.

In inference (training falsy) on a oneDNN build, the affine-free instance norm of `InstanceNormalization` and
`AdaIN` is written as the op pattern that grappler's remapper rewrites into one `_MklFusedInstanceNorm` kernel,
with a directly following Relu fused in (`fusable_instance_norm`). Training runs `instance_standardize`, whose
gradient is written out (its intermediate values feed the gradient, so the fused kernel would not help there).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from models.layers.conv import onednn_enabled

# grappler's constant folding removes a multiplication by 1 and an addition of 0 before the remapper runs, and
# the remapper fuses only when gamma and beta are constants, so the affine-free norm uses their float32
# neighbours: gamma = 1 + 2^-23 scales each output by one unit in the last place at most, and beta = 2^-126 (the
# smallest normal float32; a denormal counts as 0 there) vanishes when added to any number above 2^-102 in magnitude.
FUSED_IN_GAMMA = 1.0 + 2.0 ** -23
FUSED_IN_BETA = 2.0 ** -126
FUSED_INSTANCE_NORM = onednn_enabled()


def fusable_instance_norm(x, epsilon: float):
  """Instance norm of float32 x `[B, H, W, C]` (known C) as the remapper's `_MklFusedInstanceNorm` pattern.

  mean, var = moments over H, W; scale = rsqrt(var + eps) * gamma; y = x * scale + (beta - mean * scale), with the
  constants FUSED_IN_GAMMA, FUSED_IN_BETA. Without oneDNN the same ops run unfused (and the plain path is used).
  """
  channels = x.shape[-1]
  mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
  var = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=[1, 2], keepdims=True)
  scale = tf.math.rsqrt(var + epsilon) * tf.constant(np.full([channels], FUSED_IN_GAMMA, np.float32))
  return x * scale + (tf.constant(np.full([channels], FUSED_IN_BETA, np.float32)) - mean * scale)


def instance_standardize(x, epsilon: float):
  """(x - mu) / sqrt(var + eps), mu and the biased var per sample and channel over H, W; float32 `[B, H, W, C]`.

  The training path of `AdaIN` and `InstanceNormalization`, with the gradient written out
  dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)) (means over H, W): 7 ops where autodiff of the forward
  takes 15 (Tile, RealDiv, Neg, the squared difference's own gradient, ...), the largest non-convolution cost of
  MUNIT's and UNIT's training steps (BUILD.md, issue 17).
  """
  @tf.custom_gradient
  def standardize(x):
    centered = x - tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    rstd = tf.math.rsqrt(tf.reduce_mean(tf.square(centered), axis=[1, 2], keepdims=True) + epsilon)
    xhat = centered * rstd

    def grad(dy):
      mean = lambda t: tf.reduce_mean(t, axis=[1, 2], keepdims=True)  # noqa: E731
      return rstd * (dy - mean(dy) - xhat * mean(dy * xhat))

    return xhat, grad

  return standardize(x)


def layer_standardize(x, epsilon: float):
  """(x - mu) / (sigma + eps), mu and the unbiased sigma (divisor N - 1) per sample over every non-batch axis.

  MUNITLayerNorm's normalisation, float32 `[B, ...]`, with the gradient written out: for z = (x - mu) / D,
  D = sigma + eps, dx = (dz - mean(dz)) / D - z * sum(dz * z) / ((N - 1) sigma) (0 where sigma = 0, where
  autodiff's sqrt gives NaN).
  """
  axes = list(range(1, len(x.shape)))

  @tf.custom_gradient
  def standardize(x):
    centered = x - tf.reduce_mean(x, axis=axes, keepdims=True)
    n_minus_1 = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32) - 1.0
    sigma = tf.sqrt(tf.reduce_sum(tf.square(centered), axis=axes, keepdims=True) / n_minus_1)
    denominator = sigma + epsilon
    z = centered / denominator

    def grad(dz):
      spread = tf.math.divide_no_nan(tf.reduce_sum(dz * z, axis=axes, keepdims=True), n_minus_1 * sigma)
      return (dz - tf.reduce_mean(dz, axis=axes, keepdims=True)) / denominator - z * spread

    return z, grad

  return standardize(x)


def _check_image(input_shape, layer: str):
  """Raises ValueError unless input_shape is [B, H, W, C] with a known C."""
  if len(input_shape) != 4 or input_shape[-1] is None:
    raise ValueError(f"{layer} expects x of shape [B, H, W, C] with known C, got {tuple(input_shape)}.")


@keras.saving.register_keras_serializable(package="i2i")
class AdaIN(keras.layers.Layer):
  """Adaptive instance normalization with per-sample affine parameters given as inputs.

  AdaIN(x, gamma, beta) = gamma * (x - mu(x)) / sqrt(var(x) + eps) + beta, with mu and the biased variance
  taken per sample and channel over H, W (torch `F.batch_norm` on a [1, B*C, H, W] view, as MUNIT does).
  No "1 +" on gamma: MUNIT's MLP outputs gamma directly.

  Inputs: [x `[B, H, W, C]`, gamma `[B, C]`, beta `[B, C]`]. Output: `[B, H, W, C]` in the compute dtype.
  In inference the normalisation is `fusable_instance_norm` (one fused kernel), then gamma and beta.

  Args:
    epsilon: added to the variance inside the square root (1e-5 in MUNIT).
  """

  def __init__(self, epsilon: float = 1e-5, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = float(epsilon)

  def build(self, input_shape):
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3:
      raise ValueError(f"AdaIN takes [x, gamma, beta], got input shapes {input_shape}.")
    x_shape, gamma_shape, beta_shape = input_shape
    _check_image(x_shape, "AdaIN")
    for name, shape in (("gamma", gamma_shape), ("beta", beta_shape)):
      if len(shape) != 2 or shape[-1] not in (None, x_shape[-1]):
        raise ValueError(f"AdaIN: {name} must be [B, {x_shape[-1]}] for x of shape {tuple(x_shape)}, "
                         f"got {tuple(shape)}.")

  def call(self, inputs, training=None):
    x, gamma, beta = inputs
    x32 = ops.cast(x, "float32")
    gamma = ops.cast(gamma, "float32")[:, None, None, :]
    beta = ops.cast(beta, "float32")[:, None, None, :]
    if not training and FUSED_INSTANCE_NORM:
      return ops.cast(fusable_instance_norm(x32, self.epsilon) * gamma + beta, self.compute_dtype)
    return ops.cast(instance_standardize(x32, self.epsilon) * gamma + beta, self.compute_dtype)

  def compute_output_shape(self, input_shape):
    return input_shape[0]

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="i2i")
class MUNITLayerNorm(keras.layers.Layer):
  """MUNIT's layer normalization with a per-channel affine transform.

  y = (x - mu) / (sigma + eps) * gamma_c + beta_c, where mu and the UNBIASED standard deviation sigma
  (divisor N - 1, N = H * W * C) are taken per sample over H, W, C; eps is outside the square root.
  gamma ~ U[0, 1), beta = 0 at initialization (NVlabs/MUNIT networks.py LayerNorm).

  Input / output: `[B, H, W, C]` (any rank >= 2 with channels last).

  Args:
    epsilon: added to sigma (1e-5).
    affine: learn gamma and beta.
  """

  def __init__(self, epsilon: float = 1e-5, affine: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = float(epsilon)
    self.affine = bool(affine)

  def build(self, input_shape):
    if len(input_shape) < 2 or input_shape[-1] is None:
      raise ValueError(f"MUNITLayerNorm expects [B, ..., C] with known C, got {tuple(input_shape)}.")
    if self.affine:
      channels = input_shape[-1]
      self.gamma = self.add_weight(shape=(channels,), name="gamma",
                                   initializer=keras.initializers.RandomUniform(0.0, 1.0))
      self.beta = self.add_weight(shape=(channels,), name="beta", initializer="zeros")

  def call(self, x):
    y = layer_standardize(ops.cast(x, "float32"), self.epsilon)
    if self.affine:
      y = y * ops.cast(self.gamma, "float32") + ops.cast(self.beta, "float32")
    return ops.cast(y, self.compute_dtype)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon, "affine": self.affine}


@keras.saving.register_keras_serializable(package="i2i")
class InstanceNormalization(keras.layers.GroupNormalization):
  """Keras' GroupNormalization (one group per channel: instance norm), the same weights and configuration. With
  one group per channel it runs `instance_standardize` (a hand-written gradient), and in inference on a oneDNN
  build the affine-free norm runs as `fusable_instance_norm` (one fused kernel)."""

  def call(self, inputs, training=None):
    if self.groups != inputs.shape[-1]:
      return super().call(inputs)
    x32 = ops.cast(inputs, "float32")
    if not training and not self.center and not self.scale and FUSED_INSTANCE_NORM:
      return ops.cast(fusable_instance_norm(x32, self.epsilon), self.compute_dtype)
    y = instance_standardize(x32, self.epsilon)
    if self.scale:
      y = y * ops.cast(self.gamma, "float32")
    if self.center:
      y = y + ops.cast(self.beta, "float32")
    return ops.cast(y, self.compute_dtype)


def instance_norm(affine: bool = False, epsilon: float = 1e-5, name: str | None = None, dtype=None):
  """Instance normalization `[B, H, W, C]` -> same: `InstanceNormalization` (GroupNormalization, groups=-1).

  IN(x) = (x - mu_bc) / sqrt(var_bc + eps) [* gamma_c + beta_c if affine]; torch `nn.InstanceNorm2d` defaults
  (affine=False, eps=1e-5) are what MUNIT and UNIT use. Keras' GroupNormalization computes in float32.
  """
  return InstanceNormalization(groups=-1, epsilon=epsilon, center=affine, scale=affine, name=name, dtype=dtype)
