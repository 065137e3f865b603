"""U-GAT-IT generator and discriminators, matching znxlwm/UGATIT-pytorch `networks.py` exactly (NHWC here).

Generator (`ResnetGenerator`), input x [B, H, W, 3] in [-1, 1]:
  encoder: reflect pad 3, 7x7 conv ch, IN, ReLU; 2x [reflect pad 1, 3x3 s2 conv, IN, ReLU] to 4ch;
           n_res IN ResBlocks. Convs without bias, IN without affine (`nn.InstanceNorm2d` defaults, biased var;
           `models.layers.normalization.instance_norm`, float32 statistics).
  CAM (ReLU): features f' [B, H/4, W/4, 4ch], cam_logit [B, 2], heatmap [B, H/4, W/4, 1].
  gamma, beta: full = flatten(f') -> FC 4ch -> ReLU -> FC 4ch -> ReLU (fixes H = W = image_size);
               light = GAP(f') -> FC -> ReLU -> FC -> ReLU; then gamma = FC(.), beta = FC(.) (no biases).
  decoder: n_res AdaLIN ResBlocks sharing (gamma, beta); 2x [nearest upsample x2, reflect pad 1, 3x3 conv
           C -> C/2, ILN, ReLU]; reflect pad 3, 7x7 conv -> 3, tanh.
  returns (image [B, H, W, 3], cam_logit [B, 2], heatmap [B, H/4, W/4, 1]).
Discriminator (`Discriminator(n_layers)`), all convs and the CAM linears spectral-normalized as torch does
(`models.layers.spectral_norm.SpectralNorm`: raw kernel = `weight_orig`, u/v power iteration per training
call, gradient through sigma), LReLU 0.2:
  reflect pad 1, 4x4 s2 conv ch; n_layers - 3 more [reflect pad 1, 4x4 s2 conv, doubling]; reflect pad 1,
  4x4 s1 conv doubling; CAM (LeakyReLU 0.2, 1x1 conv without spectral norm); reflect pad 1, 4x4 s1 conv -> 1
  without bias. Global: n_layers 7 (6x6 output at 256 px); local: n_layers 5 (30x30).
  returns (logit [B, h, w, 1], cam_logit [B, 2], heatmap [B, h', w', 1]).
Initialization is torch's default for every conv and linear: weights and biases ~ U(-1/sqrt(fan_in),
1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)). Flatten order is NHWC (torch flattens NCHW): same
parameter count, different row order of the first full-model FC.
Norms run in float32 under mixed_float16; the networks return float32 outputs.
Built from the shared blocks of models/layers (ConvBlock with init="torch", use_bias=False; ResBlock;
AdaLINResBlock), held in plain lists: the trainer checkpoints `model.variables` by position.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.layers.blocks import (AdaLINResBlock, ConvBlock, ResBlock, build_chain, torch_bias_initializer,
                                  torch_kernel_initializer)
from models.layers.cam import CAM


def _dense(units: int, name: str, dtype=None) -> keras.layers.Dense:
  """A bias-free Dense with torch default init."""
  return keras.layers.Dense(units, use_bias=False, name=name, dtype=dtype,
                            kernel_initializer=torch_kernel_initializer())


def _conv(filters: int, kernel_size: int, stride: int, padding: int, in_channels: int, name: str, dtype, **kwargs):
  """A reflect-padded ConvBlock with torch's default init, created for `in_channels` (U-GAT-IT's conv layers)."""
  return ConvBlock(filters, kernel_size, stride, padding, "reflect", init="torch", in_channels=in_channels,
                   name=name, dtype=dtype, **kwargs)


@keras.saving.register_keras_serializable(package="i2i", name="UGATITGenerator")  # unique in i2i>
class Generator(keras.Model):
  """U-GAT-IT generator (UGATIT-pytorch `ResnetGenerator(3, 3, ngf=ch, n_blocks=n_res, img_size, light)`).

  call(x [B, H, W, 3]) -> (image [B, H, W, 3] float32 in [-1, 1], cam_logit [B, 2], heatmap [B, H/4, W/4, 1]).
  Light: any H, W that are multiples of 4 (>= 8). Full: H == W == image_size only.

  Blocks: `down_sampling` (3 ConvBlocks: the 7x7 input block and the two stride-2 blocks, IN + ReLU),
  `encoder_blocks` (n_res ResBlocks), `cam`, `fc` (the two FC layers of the gamma/beta MLP), `gamma_fc`,
  `beta_fc`, `decoder_blocks` (n_res AdaLINResBlocks), `up_sampling` (2 ConvBlocks with ILN + ReLU, each after
  a nearest x2 upsampling) and `out` (the 7x7 ConvBlock -> RGB; tanh in call).
  """

  def __init__(self, ch: int = 64, n_res: int = 4, image_size: int = 256, light: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.ch, self.n_res, self.image_size, self.light = int(ch), int(n_res), int(image_size), bool(light)
    dt = self.dtype_policy
    c4 = 4 * ch
    gen_conv = dict(norm="in", activation="relu", use_bias=False)
    self.down_sampling = [_conv(ch, 7, 1, 3, 3, "down0", dt, **gen_conv)] + [
        _conv(ch * 2 ** (i + 1), 3, 2, 1, ch * 2 ** i, f"down{i + 1}", dt, **gen_conv) for i in range(2)]
    self.encoder_blocks = [ResBlock("reflect", "torch", use_bias=False, channels=c4, name=f"resblock{i + 1}",
                                    dtype=dt) for i in range(n_res)]
    self.cam = CAM(leaky_relu_slope=0.0, spectral_norm=False, kernel_initializer=torch_kernel_initializer(),
                   bias_initializer=torch_bias_initializer(2 * c4), name="cam", dtype=dt)
    self.fc = [_dense(c4, "fc1", dt), _dense(c4, "fc2", dt)]
    self.gamma_fc = _dense(c4, "gamma", dt)
    self.beta_fc = _dense(c4, "beta", dt)
    self.decoder_blocks = [AdaLINResBlock(c4, name=f"adalin_resblock{i + 1}", dtype=dt) for i in range(n_res)]
    self.up_sampling = [_conv(ch * 2 ** (2 - i) // 2, 3, 1, 1, ch * 2 ** (2 - i), f"up{i + 1}", dt, norm="iln",
                              activation="relu", use_bias=False) for i in range(2)]
    self.out = _conv(3, 7, 1, 3, ch, "out", dt, activation="none", use_bias=False)

  def _check_size(self, shape):
    """Raises ValueError for static input sizes this generator cannot take."""
    if len(shape) != 4 or shape[-1] != 3:
      raise ValueError(f"U-GAT-IT generator expects RGB images [B, H, W, 3]; got shape {tuple(shape)}.")
    h, w = shape[1], shape[2]
    if not self.light and (h, w) != (self.image_size, self.image_size) and None not in (h, w):
      raise ValueError(f"U-GAT-IT full generator needs {self.image_size}x{self.image_size} images (its MLP "
                       f"fixes the input size); got {h}x{w}. Resize the images or use the light model.")
    for size in (h, w):
      if size is not None and (size % 4 or size < 8):
        raise ValueError(f"U-GAT-IT generator needs H and W multiples of 4 and >= 8; got {h}x{w}.")

  def build(self, input_shape):
    input_shape = tuple(input_shape)
    self._check_size(input_shape)
    shape = build_chain(self.down_sampling + self.encoder_blocks, input_shape)
    self.cam.build(shape)
    c4 = 4 * self.ch
    fc_in = c4 if self.light else (self.image_size // 4) ** 2 * c4
    shape = build_chain(self.fc, (shape[0], fc_in))
    self.gamma_fc.build(shape)
    self.beta_fc.build(shape)
    feature_shape = (input_shape[0], None if input_shape[1] is None else input_shape[1] // 4,
                     None if input_shape[2] is None else input_shape[2] // 4, c4)
    for block in self.decoder_blocks:
      block.build([feature_shape, (input_shape[0], c4), (input_shape[0], c4)])
    shape = feature_shape
    for block in self.up_sampling:
      shape = build_chain([block], (shape[0], None if shape[1] is None else shape[1] * 2,
                                    None if shape[2] is None else shape[2] * 2, shape[3]))
    build_chain([self.out], shape)

  def call(self, x, training=None):
    self._check_size(x.shape)
    x = tf.cast(x, self.compute_dtype)
    if not self.light and None in tuple(x.shape[1:3]):  # static sizes were checked above
      size = tf.shape(x)[1:3]
      tf.debugging.assert_equal(
          size, tf.constant([self.image_size, self.image_size]),
          message=f"U-GAT-IT full generator needs {self.image_size}x{self.image_size} images; got H, W =")
    for block in self.down_sampling + self.encoder_blocks:
      x = block(x)
    x, cam_logit, heatmap = self.cam(x, training=training)
    if self.light:
      mlp_in = tf.reduce_mean(x, axis=[1, 2])
    else:
      mlp_in = tf.reshape(x, [tf.shape(x)[0], (self.image_size // 4) ** 2 * 4 * self.ch])
    for fc in self.fc:
      mlp_in = tf.nn.relu(fc(mlp_in))
    gamma, beta = self.gamma_fc(mlp_in), self.beta_fc(mlp_in)
    for block in self.decoder_blocks:
      x = block([x, gamma, beta])
    for block in self.up_sampling:
      x = block.call_upsampled(x)  # nearest-neighbour upsampling x2, then the block
    image = tf.tanh(tf.cast(self.out(x), tf.float32))
    return image, cam_logit, heatmap

  def get_config(self):
    return {**super().get_config(), "ch": self.ch, "n_res": self.n_res, "image_size": self.image_size,
            "light": self.light}


@keras.saving.register_keras_serializable(package="i2i", name="UGATITDiscriminator")  # unique in i2i>
class Discriminator(keras.Model):
  """U-GAT-IT discriminator (UGATIT-pytorch `Discriminator(3, ndf=ch, n_layers)`); 7 = global, 5 = local.

  call(x [B, H, W, 3]) -> (logit [B, h, w, 1], cam_logit [B, 2], heatmap [B, h + 1, w + 1, 1]), float32.
  Blocks: `blocks` (n_layers - 1 ConvBlocks: reflect pad 1, spectral-normalized 4x4 conv with bias, LeakyReLU
  0.2), `cam` and `out` (reflect pad 1, spectral-normalized 4x4 conv -> 1 without bias).
  """

  def __init__(self, ch: int = 64, n_layers: int = 7, **kwargs):
    super().__init__(**kwargs)
    if n_layers < 3:
      raise ValueError(f"Discriminator needs n_layers >= 3, got {n_layers}.")
    self.ch, self.n_layers = int(ch), int(n_layers)
    dt = self.dtype_policy
    sn_conv = dict(spectral_norm=True, activation="leaky_relu", negative_slope=0.2)
    blocks = [_conv(ch, 4, 2, 1, 3, "conv0", dt, **sn_conv)]
    for i in range(1, n_layers - 2):
      mult = 2 ** (i - 1)
      blocks.append(_conv(ch * mult * 2, 4, 2, 1, ch * mult, f"conv{i}", dt, **sn_conv))
    mult = 2 ** (n_layers - 3)
    blocks.append(_conv(ch * mult * 2, 4, 1, 1, ch * mult, f"conv{n_layers - 2}", dt, **sn_conv))
    self.blocks = blocks
    c_cam = ch * 2 ** (n_layers - 2)
    self.cam = CAM(leaky_relu_slope=0.2, spectral_norm=True, kernel_initializer=torch_kernel_initializer(),
                   bias_initializer=torch_bias_initializer(2 * c_cam), name="cam", dtype=dt)
    self.out = _conv(1, 4, 1, 1, c_cam, "out", dt, spectral_norm=True, activation="none", use_bias=False)

  def build(self, input_shape):
    shape = tuple(input_shape)
    if len(shape) != 4 or shape[-1] != 3:
      raise ValueError(f"U-GAT-IT discriminator expects RGB images [B, H, W, 3]; got shape {shape}.")
    shape = build_chain(self.blocks, shape)
    self.cam.build(shape)
    build_chain([self.out], shape)

  def call(self, x, training=None):
    x = tf.cast(x, self.compute_dtype)
    for block in self.blocks:
      x = block(x, training=training)
    x, cam_logit, heatmap = self.cam(x, training=training)
    logit = tf.cast(self.out(x, training=training), tf.float32)
    return logit, cam_logit, heatmap

  def get_config(self):
    return {**super().get_config(), "ch": self.ch, "n_layers": self.n_layers}
