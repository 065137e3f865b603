"""MUNIT networks (Huang et al., ECCV 2018) as subclassed Keras models, layer for layer NVlabs/MUNIT networks.py.

Shapes for the paper config (dim 64, n_downsample 2, n_res 4, style_dim 8) and an input `[B, H, W, 3]`:
  ContentEncoder  -> content code `[B, H/4, W/4, 256]`
  StyleEncoder    -> style code `[B, 8]`
  MLP             style `[B, 8]` -> AdaIN parameters `[B, 4096]` (4 blocks x 2 AdaIN x (beta, gamma) x 256)
  Decoder         [content, adain_params] -> image `[B, H, W, 3]` in [-1, 1] (float32)
  AdaINGenerator  one domain's auto-encoder: the four networks above (`encode`, `decode`)
  MultiScaleDiscriminator -> list of `num_scales` patch maps `[B, H/16, W/16, 1]`, `[B, H/32, W/32, 1]`, ...
Generators use Kaiming-normal init, discriminators N(0, 0.02) (MUNIT trainer: weights_init).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.layers import AdaINResBlock, ConvBlock, ResBlock, initializers
from models.layers.discriminator import MultiScalePatchDiscriminator

STYLE_N_DOWNSAMPLE = 4  # AdaINGen builds StyleEncoder(4, ...) regardless of n_downsample.


@keras.saving.register_keras_serializable(package="i2i")
class ContentEncoder(keras.Model):
  """7x7 conv-IN-ReLU, n_downsample x [4x4 s2 conv-IN-ReLU], n_res IN ResBlocks: `[B,H,W,3]` -> `[B,H/4,W/4,4dim]`."""

  def __init__(self, dim: int = 64, n_downsample: int = 2, n_res: int = 4, **kwargs):
    super().__init__(**kwargs)
    self.dim, self.n_downsample, self.n_res = dim, n_downsample, n_res
    blocks = [ConvBlock(dim, 7, 1, 3, "reflect", "in", "relu", name="conv_in")]
    for i in range(n_downsample):
      dim *= 2
      blocks.append(ConvBlock(dim, 4, 2, 1, "reflect", "in", "relu", name=f"down{i}"))
    blocks += [ResBlock("reflect", name=f"res{i}") for i in range(n_res)]
    self.blocks = blocks
    self.output_dim = dim

  def call(self, x, training=False):
    for block in self.blocks:
      x = block(x, training=training)
    return x

  def get_config(self):
    return {**super().get_config(), "dim": self.dim, "n_downsample": self.n_downsample, "n_res": self.n_res}


@keras.saving.register_keras_serializable(package="i2i")
class StyleEncoder(keras.Model):
  """Conv-ReLU stack without normalization, global average pooling and a 1x1 conv: `[B,H,W,3]` -> `[B, style_dim]`.

  7x7 s1 dim; 2 x [4x4 s2, channels doubled]; (n_downsample - 2) x [4x4 s2, same channels]; GAP; 1x1 conv.
  """

  def __init__(self, dim: int = 64, style_dim: int = 8, n_downsample: int = STYLE_N_DOWNSAMPLE, **kwargs):
    super().__init__(**kwargs)
    self.dim, self.style_dim, self.n_downsample = dim, style_dim, n_downsample
    blocks = [ConvBlock(dim, 7, 1, 3, "reflect", "none", "relu", name="conv_in")]
    for i in range(2):
      dim *= 2
      blocks.append(ConvBlock(dim, 4, 2, 1, "reflect", "none", "relu", name=f"down{i}"))
    for i in range(2, n_downsample):
      blocks.append(ConvBlock(dim, 4, 2, 1, "reflect", "none", "relu", name=f"down{i}"))
    self.blocks = blocks
    self.pool = keras.layers.GlobalAveragePooling2D()
    kernel_init, bias_init = initializers("kaiming", dim)
    self.out = keras.layers.Dense(style_dim, kernel_initializer=kernel_init, bias_initializer=bias_init,
                                  name="conv_out")  # the 1x1 conv on a 1x1 map is a dense layer

  def call(self, x, training=False):
    for block in self.blocks:
      x = block(x, training=training)
    return self.out(self.pool(x))

  def get_config(self):
    return {**super().get_config(), "dim": self.dim, "style_dim": self.style_dim, "n_downsample": self.n_downsample}


@keras.saving.register_keras_serializable(package="i2i")
class MLP(keras.Model):
  """style `[B, style_dim]` -> AdaIN parameters `[B, output_dim]`: n_blk dense layers, ReLU between, linear out."""

  def __init__(self, output_dim: int, dim: int = 256, n_blk: int = 3, **kwargs):
    super().__init__(**kwargs)
    self.output_dim, self.dim, self.n_blk = output_dim, dim, n_blk
    self.denses = []
    for i in range(n_blk):
      last = i == n_blk - 1
      kernel_init, bias_init = initializers("kaiming", dim)
      self.denses.append(keras.layers.Dense(output_dim if last else dim, activation=None if last else "relu",
                                            kernel_initializer=kernel_init, bias_initializer=bias_init,
                                            name=f"fc{i}"))

  def call(self, style, training=False):
    for dense in self.denses:
      style = dense(style)
    return style

  def get_config(self):
    return {**super().get_config(), "output_dim": self.output_dim, "dim": self.dim, "n_blk": self.n_blk}


@keras.saving.register_keras_serializable(package="i2i")
class Decoder(keras.Model):
  """[content `[B,h,w,C]`, adain_params `[B, 4C n_res]`] -> image `[B, h 2^n, w 2^n, 3]` in [-1, 1], float32.

  n_res AdaIN ResBlocks; n_upsample x [nearest x2, 5x5 conv C -> C/2, MUNITLayerNorm, ReLU]; 7x7 conv, tanh.
  adain_params are consumed block by block in MUNIT's order (beta, gamma per AdaIN layer).
  """

  def __init__(self, dim: int = 256, n_upsample: int = 2, n_res: int = 4, output_dim: int = 3, **kwargs):
    super().__init__(**kwargs)
    self.dim, self.n_upsample, self.n_res, self.output_dim = dim, n_upsample, n_res, output_dim
    self.res_blocks = [AdaINResBlock("reflect", name=f"adain_res{i}") for i in range(n_res)]
    self.up_blocks = []
    for i in range(n_upsample):
      dim //= 2
      self.up_blocks += [keras.layers.UpSampling2D(2, interpolation="nearest", name=f"upsample{i}"),
                         ConvBlock(dim, 5, 1, 2, "reflect", "ln", "relu", name=f"up{i}")]
    self.conv_out = ConvBlock(output_dim, 7, 1, 3, "reflect", "none", "tanh", name="conv_out")

  @property
  def num_adain_params(self) -> int:
    """Length of the AdaIN parameter vector: n_res blocks x 2 AdaIN layers x (beta, gamma) x dim."""
    return self.n_res * 4 * self.dim

  def call(self, inputs, training=False):
    x, params = inputs
    per_block = 4 * self.dim
    for i, block in enumerate(self.res_blocks):
      x = block([x, params[:, i * per_block:(i + 1) * per_block]], training=training)
    for upsample, conv in zip(self.up_blocks[::2], self.up_blocks[1::2]):
      # conv(upsample(x)), computed without the upsampled image (ConvBlock.call_upsampled); the first call
      # (building the block) takes the plain path.
      x = conv.call_upsampled(x) if conv.built else conv(upsample(x), training=training)
    return tf.cast(self.conv_out(x), tf.float32)

  def get_config(self):
    return {**super().get_config(), "dim": self.dim, "n_upsample": self.n_upsample, "n_res": self.n_res,
            "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="i2i")
class AdaINGenerator(keras.Model):
  """One domain's MUNIT auto-encoder (`AdaINGen`): content encoder, style encoder, MLP and AdaIN decoder.

  `call(x)` reconstructs x `[B, H, W, 3]`; `encode(x)` -> (content `[B, H/4, W/4, 256]`, style `[B, style_dim]`);
  `decode(content, style)` -> image `[B, H, W, 3]` float32 in [-1, 1].
  """

  def __init__(self, dim: int = 64, style_dim: int = 8, mlp_dim: int = 256, n_downsample: int = 2,
               n_res: int = 4, **kwargs):
    super().__init__(**kwargs)
    self.dim, self.style_dim, self.mlp_dim, self.n_downsample, self.n_res = dim, style_dim, mlp_dim, n_downsample, n_res
    self.style_encoder = StyleEncoder(dim, style_dim, name="style_encoder")
    self.content_encoder = ContentEncoder(dim, n_downsample, n_res, name="content_encoder")
    self.decoder = Decoder(self.content_encoder.output_dim, n_downsample, n_res, 3, name="decoder")
    self.mlp = MLP(self.decoder.num_adain_params, mlp_dim, 3, name="mlp")

  def encode(self, x, training=False):
    """x `[B, H, W, 3]` -> (content `[B, H/4, W/4, C]`, style `[B, style_dim]`)."""
    return self.content_encoder(x, training=training), self.style_encoder(x, training=training)

  def decode(self, content, style, training=False):
    """(content `[B, h, w, C]`, style `[B, style_dim]`) -> image `[B, 4h, 4w, 3]` float32."""
    return self.decoder([content, self.mlp(style, training=training)], training=training)

  def call(self, x, training=False):
    content, style = self.encode(x, training=training)
    return self.decode(content, style, training=training)

  def get_config(self):
    return {**super().get_config(), "dim": self.dim, "style_dim": self.style_dim, "mlp_dim": self.mlp_dim,
            "n_downsample": self.n_downsample, "n_res": self.n_res}


@keras.saving.register_keras_serializable(package="i2i")
class MultiScaleDiscriminator(MultiScalePatchDiscriminator):
  """MUNIT `MsImageDis`: the same PatchGAN at num_scales resolutions, 3x3 s2 average pooling between scales.

  Each scale: 4x4 s2 conv dim, LeakyReLU 0.2 (no norm, reflect padding 1); (n_layer - 1) x [4x4 s2 conv,
  channels doubled, LeakyReLU 0.2]; 1x1 conv -> 1; weights N(0, 0.02), biases 0.
  `[B, H, W, 3]` -> list of `[B, H / 2^n_layer / 2^s, ..., 1]` for s < num_scales.
  """

  def __init__(self, dim: int = 64, n_layer: int = 4, num_scales: int = 3, **kwargs):
    for fixed in ("kernel_size", "pad_type", "negative_slope", "init", "downsample"):
      kwargs.pop(fixed, None)
    super().__init__(dim, n_layer, num_scales, kernel_size=4, pad_type="reflect", negative_slope=0.2,
                     init="gaussian", downsample="avg_pool", **kwargs)
