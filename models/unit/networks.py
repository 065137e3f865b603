"""UNIT networks, paper version (mingyuliutw/UNIT branch version_02, src/trainers/cocogan_nets.py), as Keras models.

COCOResGen is split into its six parts; the shared ones are single networks used by both domains:
  Encoder (per domain)   `[B, H, W, 3]` -> `[B, H/4, W/4, 4ch]`: 7x7 s1 conv + LeakyReLU(0.01) (no norm);
                         (n_enc_front_blk - 1) x [3x3 s2 conv, IN, ReLU]; n_enc_res_blk IN ResBlocks.
                         (`resample_norm="none"` drops the IN of the stride-2 convs here and in the Generator.)
  SharedEncoder          n_enc_shared_blk IN ResBlocks -> mu; training adds N(0, I) noise: z = mu + eps.
  SharedDecoder          n_gen_shared_blk IN ResBlocks.
  Generator (per domain) n_gen_res_blk IN ResBlocks; (n_gen_front_blk - 1) x [3x3 s2 transposed conv, IN, ReLU];
                         1x1 transposed conv -> 3, tanh: `[B, H/4, W/4, 4ch]` -> `[B, H, W, 3]` float32.
  Discriminator          COCODis (1 scale) / COCOMsDis (n scales): per scale [3x3 s2 conv, LeakyReLU(0.01)]
                         x n_layer with doubling channels, 1x1 conv -> 1 logit map.
Convolutions pad with zeros as torch does; IN has no affine terms. Initialization as the paper code: every conv
weight N(0, 0.02) (`gaussian_weights_init`), biases keep torch's default U(+-1/sqrt(fan_in)).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.layers import ConvBlock, ConvTransposeBlock, ResBlock
from models.layers.discriminator import MultiScalePatchDiscriminator

INIT = "gaussian_torch_bias"


@keras.saving.register_keras_serializable(package="i2i")
class Encoder(keras.Model):
  """One domain's encoder front-end (`encode_A`): `[B, H, W, 3]` -> `[B, H / 2^(n_front-1), ..., ch 2^(n_front-1)]`."""

  def __init__(self, ch: int = 64, n_front_blk: int = 3, n_res_blk: int = 3, resample_norm: str = "in", **kwargs):
    super().__init__(**kwargs)
    self.ch, self.n_front_blk, self.n_res_blk, self.resample_norm = ch, n_front_blk, n_res_blk, resample_norm
    blocks = [ConvBlock(ch, 7, 1, 3, "zero", "none", "leaky_relu", 0.01, init=INIT, name="conv_in")]
    for i in range(1, n_front_blk):
      ch *= 2
      blocks.append(ConvBlock(ch, 3, 2, 1, "zero", resample_norm, "relu", init=INIT, name=f"down{i}"))
    blocks += [ResBlock("zero", init=INIT, name=f"res{i}") for i in range(n_res_blk)]
    self.blocks = blocks
    self.output_dim = ch

  def call(self, x, training=False):
    for block in self.blocks:
      x = block(x, training=training)
    return x

  def get_config(self):
    return {**super().get_config(), "ch": self.ch, "n_front_blk": self.n_front_blk, "n_res_blk": self.n_res_blk,
            "resample_norm": self.resample_norm}


@keras.saving.register_keras_serializable(package="i2i")
class SharedResBlocks(keras.Model):
  """A stack of IN ResBlocks shared by both domains; with `noise=True` adds N(0, I) in training (z = mu + eps).

  `[B, h, w, C]` -> `[B, h, w, C]` (enc_shared: noise=True, dec_shared: noise=False). The noise is `noise`
  (`[B, h, w, C]`, when the caller drew it), else a stateless draw from `seed` (`[2]`), else a draw from the
  layer's own Keras SeedGenerator.
  """

  def __init__(self, n_blk: int = 1, noise: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.n_blk, self.noise = n_blk, noise
    self.blocks = [ResBlock("zero", init=INIT, name=f"res{i}") for i in range(n_blk)]
    self.seed_generator = keras.random.SeedGenerator(name="seed_generator") if noise else None

  def call(self, x, training=False, seed=None, noise=None):
    return self.add_noise(self.mean(x, training=training), training=training, seed=seed, noise=noise)

  def mean(self, x, training=False):
    """The blocks alone: mu, before any noise. `[B, h, w, C]` -> `[B, h, w, C]`."""
    for block in self.blocks:
      x = block(x, training=training)
    return x

  def add_noise(self, mu, training=False, seed=None, noise=None):
    """mu + eps in training with `noise=True` (eps as `call` describes), else mu."""
    if not (self.noise and training):
      return mu
    if noise is None:
      seed = self.seed_generator.next() if seed is None else seed
      noise = tf.random.stateless_normal(tf.shape(mu), seed=seed, dtype=mu.dtype)
    return mu + tf.cast(noise, mu.dtype)

  def get_config(self):
    return {**super().get_config(), "n_blk": self.n_blk, "noise": self.noise}


@keras.saving.register_keras_serializable(package="i2i", name="UNITGenerator")  # unique in i2i>
class Generator(keras.Model):
  """One domain's decoder back-end (`decode_A`): `[B, h, w, C]` -> `[B, h 2^(n_front-1), ..., 3]` in [-1, 1], float32."""

  def __init__(self, ch: int = 256, n_res_blk: int = 3, n_front_blk: int = 3, output_dim: int = 3,
               resample_norm: str = "in", **kwargs):
    super().__init__(**kwargs)
    self.ch, self.n_res_blk, self.n_front_blk, self.output_dim = ch, n_res_blk, n_front_blk, output_dim
    self.resample_norm = resample_norm
    blocks = [ResBlock("zero", init=INIT, name=f"res{i}") for i in range(n_res_blk)]
    for i in range(n_front_blk - 1):
      ch //= 2
      blocks.append(ConvTransposeBlock(ch, 3, 2, 1, 1, resample_norm, "relu", init=INIT, name=f"up{i}"))
    blocks.append(ConvTransposeBlock(output_dim, 1, 1, 0, 0, "none", "tanh", init=INIT, name="conv_out"))
    self.blocks = blocks

  def call(self, x, training=False):
    for block in self.blocks:
      x = block(x, training=training)
    return tf.cast(x, tf.float32)

  def get_config(self):
    return {**super().get_config(), "ch": self.ch, "n_res_blk": self.n_res_blk, "n_front_blk": self.n_front_blk,
            "output_dim": self.output_dim, "resample_norm": self.resample_norm}


@keras.saving.register_keras_serializable(package="i2i", name="UNITDiscriminator")  # unique in i2i>
class Discriminator(MultiScalePatchDiscriminator):
  """One domain's discriminator: `[B, H, W, 3]` -> list of num_scales logit maps `[B, H / 2^n_layer / 2^s, ..., 1]`.

  Per scale: n_layer x [3x3 s2 conv (zero padding 1), LeakyReLU 0.01], channels doubling from ch; 1x1 conv -> 1.
  num_scales = 1 is COCODis; > 1 is COCOMsDis (scale s sees the input Gaussian-blurred and subsampled s times).
  """

  def __init__(self, ch: int = 64, n_layer: int = 6, num_scales: int = 1, **kwargs):
    for fixed in ("dim", "kernel_size", "pad_type", "negative_slope", "init", "downsample"):
      kwargs.pop(fixed, None)
    super().__init__(ch, n_layer, num_scales, kernel_size=3, pad_type="zero", negative_slope=0.01, init=INIT,
                     downsample="gaussian_blur", **kwargs)
    self.ch = ch

  def get_config(self):
    return {**super().get_config(), "ch": self.ch}
