"""AdaLIN and ILN: U-GAT-IT's learned mix of instance and layer normalization (Kim et al., ICLR 2020).

Matches znxlwm/UGATIT-pytorch `networks.py` (`adaILN`, `ILN`, `RhoClipper`) exactly:

  IN(x)  = (x - mean_hw(x))  / sqrt(var_hw(x)  + eps)      per example and channel
  LN(x)  = (x - mean_hwc(x)) / sqrt(var_hwc(x) + eps)      per example
  AdaLIN(x, gamma, beta) = (rho * IN(x) + (1 - rho) * LN(x)) * gamma + beta
  ILN(x)                 = (rho * IN(x) + (1 - rho) * LN(x)) * gamma_c + beta_c

with the UNBIASED variance of `torch.var` (divide by n - 1), eps = 1e-5 inside the square root and a per-channel
`rho` kept in [0, 1] by `RhoClipper`, a Keras constraint that the optimizer applies after every update (the
reference clips rho after every generator step). AdaLIN's rho starts at 0.9 and its gamma, beta [B, C] are
inputs (computed by the generator's MLP); ILN's rho starts at 0 with learned gamma = 1, beta = 0 per channel.
The statistics, the mix and the affine are computed in float32 also under a mixed_float16 policy (the weights
are created with autocast=False, so they are read in float32).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="i2i")
class RhoClipper(keras.constraints.Constraint):
  """Clips a weight to [min_value, max_value] (the reference's `RhoClipper(0, 1)` as a Keras constraint)."""

  def __init__(self, min_value: float = 0.0, max_value: float = 1.0):
    if not min_value < max_value:
      raise ValueError(f"RhoClipper needs min_value < max_value; got min_value={min_value}, "
                       f"max_value={max_value}.")
    self.min_value = float(min_value)
    self.max_value = float(max_value)

  def __call__(self, w):
    """Returns `w` (any shape) clipped elementwise to [min_value, max_value]."""
    return keras.ops.clip(w, self.min_value, self.max_value)

  def get_config(self):
    return {"min_value": self.min_value, "max_value": self.max_value}


def instance_layer_norm_affine(x: tf.Tensor, rho: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor,
                               epsilon: float) -> tf.Tensor:
  """Returns (rho * IN(x) + (1 - rho) * LN(x)) * gamma + beta in float32, unbiased variances as in UGATIT-pytorch.

  With s = 1 / sqrt(var + eps): rho s_in (x - mu_in) + (1 - rho) s_ln (x - mu_ln)
  = (rho s_in + (1 - rho) s_ln) (x - mu_in) + (1 - rho) s_ln (mu_in - mu_ln), so the output is the instance-
  centred x times one per-channel scale plus one per-channel shift: three passes over x for the output instead
  of the ten of normalizing twice and mixing. The layer statistics come from the instance ones (equal counts per
  channel): mu_ln = mean_c(mu_in) and, by the law of total variance, var_ln = mean_c(var_in) +
  mean_c((mu_in - mu_ln)^2), so x is reduced once, not twice. Everything stays centred (no x * s - mu * s
  cancellation): with x scaled around the mean the gradients keep float32 accuracy where features are nearly
  constant over the image (a large mean against a small spread).

  Args:
    x: [B, H, W, C] features (any float dtype; cast to float32). H * W must be at least 2.
    rho: [C] mixing weights.
    gamma, beta: [B, C] (AdaLIN) or [C] (ILN).
    epsilon: added to the variance inside the square root.
  Returns:
    [B, H, W, C] float32.
  """
  x = tf.cast(x, tf.float32)
  rho, gamma, beta = (tf.cast(t, tf.float32) for t in (rho, gamma, beta))
  shape = tf.shape(x)
  n_in = tf.cast(shape[1] * shape[2], tf.float32)
  n_ln = n_in * tf.cast(shape[3], tf.float32)
  in_mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)  # [B, 1, 1, C]
  centred = x - in_mean
  in_var = tf.reduce_mean(tf.square(centred), axis=[1, 2], keepdims=True)  # biased
  ln_mean = tf.reduce_mean(in_mean, axis=3, keepdims=True)
  ln_var = (tf.reduce_mean(in_var, axis=3, keepdims=True)
            + tf.reduce_mean(tf.math.squared_difference(in_mean, ln_mean), axis=3, keepdims=True))
  in_scale = tf.math.rsqrt(in_var * (n_in / (n_in - 1.0)) + epsilon)  # torch.var is unbiased by default
  ln_scale = tf.math.rsqrt(ln_var * (n_ln / (n_ln - 1.0)) + epsilon)
  if gamma.shape.rank == 2:
    gamma, beta = gamma[:, None, None, :], beta[:, None, None, :]
  ln_part = (1.0 - rho) * ln_scale
  scale = gamma * (rho * in_scale + ln_part)
  shift = beta + gamma * ln_part * (in_mean - ln_mean)
  return centred * scale + shift


def _check_feature_shape(layer_name: str, shape) -> int:
  """Validates a [B, H, W, C] feature shape and returns C."""
  if len(shape) != 4 or shape[-1] is None:
    raise ValueError(f"{layer_name} expects features [B, H, W, C] with a known C; got shape {tuple(shape)}.")
  if shape[1] is not None and shape[2] is not None and shape[1] * shape[2] < 2:
    raise ValueError(f"{layer_name} needs at least 2 spatial positions for the unbiased variance; got "
                     f"shape {tuple(shape)}. Use a larger input image.")
  return int(shape[-1])


@keras.saving.register_keras_serializable(package="i2i")
class AdaLIN(keras.layers.Layer):
  """Adaptive Layer-Instance Normalization: `AdaLIN()([x, gamma, beta])`.

  y = (rho * IN(x) + (1 - rho) * LN(x)) * gamma + beta  (UGATIT-pytorch `adaILN`).

  Inputs: x [B, H, W, C], gamma [B, C], beta [B, C]. Output: [B, H, W, C] in the layer's compute dtype.
  Weights: rho [C], initialized to `rho_init` (0.9), constrained to [0, 1] by `RhoClipper`.
  """

  def __init__(self, epsilon: float = 1e-5, rho_init: float = 0.9, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = float(epsilon)
    self.rho_init = float(rho_init)

  def build(self, input_shape):
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3:
      raise ValueError(f"AdaLIN expects three inputs [x, gamma, beta]; got input shapes {input_shape}.")
    x_shape, gamma_shape, beta_shape = (tuple(s) for s in input_shape)
    channels = _check_feature_shape("AdaLIN", x_shape)
    for name, s in (("gamma", gamma_shape), ("beta", beta_shape)):
      if len(s) != 2 or s[-1] != channels:
        raise ValueError(f"AdaLIN expects {name} of shape [B, {channels}] for features {x_shape}; got {s}.")
    self.rho = self.add_weight(name="rho", shape=(channels,),
                               initializer=keras.initializers.Constant(self.rho_init),
                               constraint=RhoClipper(0.0, 1.0), trainable=True, autocast=False)

  def call(self, inputs):
    x, gamma, beta = inputs
    return tf.cast(instance_layer_norm_affine(x, self.rho, gamma, beta, self.epsilon), self.compute_dtype)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[0])

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon, "rho_init": self.rho_init}


@keras.saving.register_keras_serializable(package="i2i")
class ILN(keras.layers.Layer):
  """Instance-Layer Normalization with learned affine: `ILN()(x)` (UGATIT-pytorch `ILN`).

  y = (rho * IN(x) + (1 - rho) * LN(x)) * gamma + beta with per-channel learned rho (init 0, constrained to
  [0, 1]), gamma (init 1) and beta (init 0). Input and output: [B, H, W, C].
  """

  def __init__(self, epsilon: float = 1e-5, rho_init: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = float(epsilon)
    self.rho_init = float(rho_init)

  def build(self, input_shape):
    channels = _check_feature_shape("ILN", tuple(input_shape))
    self.rho = self.add_weight(name="rho", shape=(channels,),
                               initializer=keras.initializers.Constant(self.rho_init),
                               constraint=RhoClipper(0.0, 1.0), trainable=True, autocast=False)
    self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones", trainable=True,
                                 autocast=False)
    self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros", trainable=True,
                                autocast=False)

  def call(self, x):
    return tf.cast(instance_layer_norm_affine(x, self.rho, self.gamma, self.beta, self.epsilon),
                   self.compute_dtype)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape)

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon, "rho_init": self.rho_init}
