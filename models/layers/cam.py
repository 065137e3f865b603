"""CAM: U-GAT-IT's class-activation-map attention block (Kim et al., ICLR 2020, Sec. 2.1).

Matches the CAM part of `ResnetGenerator.forward` / `Discriminator.forward` in znxlwm/UGATIT-pytorch
`networks.py` exactly (NHWC here):

  gap_logit = w_gap . GAP(f)            gmp_logit = w_gmp . GMP(f)      (Linear C -> 1, no bias)
  cam_logit = [gap_logit, gmp_logit]                                   [B, 2]
  f'        = act(conv1x1(concat(f * w_gap, f * w_gmp)))               2C -> C with bias
  heatmap   = sum_c f'                                                 [B, H, W, 1]

Generator: act = ReLU, no spectral norm. Discriminator: act = LeakyReLU(0.2), the two C -> 1 linears are
spectral-normalized the torch way (`models.layers.spectral_norm.SpectralNorm`: logits use w / sigma(w), with a
power iteration per training call and the gradient through sigma) and the 1x1 conv is not. As in the
reference, the feature re-weighting uses the stored weight (`list(gap_fc.parameters())[0]`, i.e. `weight_orig`
under torch's spectral norm), not w / sigma.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.layers.spectral_norm import SpectralNorm


@keras.saving.register_keras_serializable(package="i2i")
class CAM(keras.layers.Layer):
  """CAM attention block: `features, cam_logit, heatmap = CAM()(x)`.

  Input: x [B, H, W, C]. Outputs: features [B, H, W, C] (compute dtype), cam_logit [B, 2] and
  heatmap [B, H, W, 1] (float32).

  Args:
    leaky_relu_slope: 0.0 gives ReLU (generator); 0.2 gives the discriminator's LeakyReLU.
    spectral_norm: wrap the GAP/GMP linears in torch-style `SpectralNorm` (discriminator).
    kernel_initializer: for the two C -> 1 linears and the 1x1 conv kernel.
    bias_initializer: for the 1x1 conv bias.
  """

  def __init__(self, leaky_relu_slope: float = 0.0, spectral_norm: bool = False,
               kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
    super().__init__(**kwargs)
    self.leaky_relu_slope = float(leaky_relu_slope)
    self.spectral_norm = bool(spectral_norm)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.bias_initializer = keras.initializers.get(bias_initializer)

  def _logit_layer(self, name: str):
    dense = keras.layers.Dense(1, use_bias=False, name=name, dtype=self.dtype_policy,
                               kernel_initializer=keras.initializers.get(
                                   keras.initializers.serialize(self.kernel_initializer)))
    if self.spectral_norm:
      return SpectralNorm(dense, name=f"sn_{name}", dtype=self.dtype_policy)
    return dense

  def build(self, input_shape):
    input_shape = tuple(input_shape)
    if len(input_shape) != 4 or input_shape[-1] is None:
      raise ValueError(f"CAM expects features [B, H, W, C] with a known C; got shape {input_shape}.")
    channels = int(input_shape[-1])
    self.gap_fc = self._logit_layer("gap_fc")
    self.gmp_fc = self._logit_layer("gmp_fc")
    self.conv1x1 = keras.layers.Conv2D(
        channels, 1, use_bias=True, name="conv1x1", dtype=self.dtype_policy,
        kernel_initializer=keras.initializers.get(keras.initializers.serialize(self.kernel_initializer)),
        bias_initializer=self.bias_initializer)
    self.gap_fc.build((input_shape[0], channels))
    self.gmp_fc.build((input_shape[0], channels))
    self.conv1x1.build(input_shape[:3] + (2 * channels,))

  @staticmethod
  def _stored_kernel(layer) -> tf.Variable:
    """The weight the reference multiplies the features by (`weight_orig` under spectral norm)."""
    return layer.layer.kernel if isinstance(layer, SpectralNorm) else layer.kernel

  def call(self, x, training=None):
    w_gap = tf.cast(self._stored_kernel(self.gap_fc)[:, 0], x.dtype)
    w_gmp = tf.cast(self._stored_kernel(self.gmp_fc)[:, 0], x.dtype)
    gap = tf.reduce_mean(x, axis=[1, 2])
    gmp = tf.reduce_max(x, axis=[1, 2])
    gap_logit = self.gap_fc(gap, training=training)
    gmp_logit = self.gmp_fc(gmp, training=training)
    cam_logit = tf.cast(tf.concat([gap_logit, gmp_logit], axis=1), tf.float32)
    features = self.conv1x1(tf.concat([x * w_gap, x * w_gmp], axis=-1))
    if self.leaky_relu_slope:
      features = tf.nn.leaky_relu(features, alpha=self.leaky_relu_slope)
    else:
      features = tf.nn.relu(features)
    heatmap = tf.reduce_sum(tf.cast(features, tf.float32), axis=-1, keepdims=True)
    return features, cam_logit, heatmap

  def compute_output_shape(self, input_shape):
    input_shape = tuple(input_shape)
    return input_shape, (input_shape[0], 2), input_shape[:3] + (1,)

  def get_config(self):
    return {**super().get_config(), "leaky_relu_slope": self.leaky_relu_slope,
            "spectral_norm": self.spectral_norm,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer)}
