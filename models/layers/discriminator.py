"""Multi-scale PatchGAN discriminator shared by MUNIT (`MsImageDis`) and UNIT v02 (`COCODis` / `COCOMsDis`).

Each scale is the same stack, with its own weights: n_layer x [pad p, k x k stride-2 conv (channels doubling
from `dim`), LeakyReLU] then a 1x1 conv -> 1; scale s sees the input downsampled s times.
`[B, H, W, C]` -> list of num_scales patch maps `[B, h_s, w_s, 1]` (compute dtype).
"""

from __future__ import annotations

import keras

from models.layers.blocks import ConvBlock, initializers
from models.layers.pooling import AveragePooling2DExcludePad, GaussianBlurDownsample2D

DOWNSAMPLES = ("avg_pool", "gaussian_blur")


@keras.saving.register_keras_serializable(package="i2i")
class MultiScalePatchDiscriminator(keras.Model):
  """Args:
    dim: channels of the first conv. n_layer: stride-2 convs per scale. num_scales: number of scales.
    kernel_size, pad_type, negative_slope, init: of every conv (see ConvBlock and `initializers`).
    downsample: "avg_pool" (3x3 s2 pad 1, padding not counted; MUNIT) or "gaussian_blur" (UNIT COCOMsDis).
  """

  def __init__(self, dim: int = 64, n_layer: int = 4, num_scales: int = 3, kernel_size: int = 4,
               pad_type: str = "reflect", negative_slope: float = 0.2, init: str = "gaussian",
               downsample: str = "avg_pool", **kwargs):
    super().__init__(**kwargs)
    if downsample not in DOWNSAMPLES:
      raise ValueError(f"Unknown downsample {downsample!r}; choose one of {', '.join(DOWNSAMPLES)}.")
    self.dim, self.n_layer, self.num_scales = dim, n_layer, num_scales
    self.kernel_size, self.pad_type, self.negative_slope, self.init = kernel_size, pad_type, negative_slope, init
    self.downsample_type = downsample
    self.downsample = None
    if num_scales > 1:
      self.downsample = (AveragePooling2DExcludePad(3, 2, 1, name="downsample") if downsample == "avg_pool"
                         else GaussianBlurDownsample2D(name="downsample"))
    self.scales = []
    for s in range(num_scales):
      layers, channels = [], dim
      for i in range(n_layer):
        layers.append(ConvBlock(channels, kernel_size, 2, 1, pad_type, "none", "leaky_relu", negative_slope,
                                init=init, name=f"scale{s}_conv{i}"))
        channels *= 2
      kernel_init, bias_init = initializers(init, channels // 2)
      layers.append(keras.layers.Conv2D(1, 1, kernel_initializer=kernel_init, bias_initializer=bias_init,
                                        name=f"scale{s}_out"))
      self.scales.append(layers)

  def call(self, x, training=False):
    outputs = []
    for s, layers in enumerate(self.scales):
      y = x
      for layer in layers:
        y = layer(y, training=training)
      outputs.append(y)
      if s + 1 < self.num_scales:
        x = self.downsample(x)
    return outputs

  def get_config(self):
    return {**super().get_config(), "dim": self.dim, "n_layer": self.n_layer, "num_scales": self.num_scales,
            "kernel_size": self.kernel_size, "pad_type": self.pad_type, "negative_slope": self.negative_slope,
            "init": self.init, "downsample": self.downsample_type}
