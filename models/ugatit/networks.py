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
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from models.layers.adalin import AdaLIN, ILN
from models.layers.cam import CAM
from models.layers.conv import FastConv2D
from models.layers.normalization import instance_norm
from models.layers.padding import ReflectionPadding2D
from models.layers.spectral_norm import SpectralNorm


def torch_kernel_initializer() -> keras.initializers.Initializer:
  """torch's default conv/linear weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a=sqrt(5))."""
  return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def torch_bias_initializer(fan_in: int) -> keras.initializers.Initializer:
  """torch's default conv/linear bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  return keras.initializers.RandomUniform(-bound, bound)


def _conv(filters: int, kernel_size: int, stride: int, in_channels: int, use_bias: bool, name: str,
          dtype=None) -> keras.layers.Conv2D:
  """A 'valid' Conv2D with torch default init (padding is done by ReflectionPadding2D).

  FastConv2D: keras.layers.Conv2D with faster CPU gradients for stride 1 (models/layers/conv.py).
  """
  return FastConv2D(
      filters, kernel_size, strides=stride, padding="valid", use_bias=use_bias, name=name, dtype=dtype,
      kernel_initializer=torch_kernel_initializer(),
      bias_initializer=torch_bias_initializer(in_channels * kernel_size * kernel_size))


def _dense(units: int, name: str, dtype=None) -> keras.layers.Dense:
  """A bias-free Dense with torch default init."""
  return keras.layers.Dense(units, use_bias=False, name=name, dtype=dtype,
                            kernel_initializer=torch_kernel_initializer())


def _run(layers, x, training=None):
  """Applies a list of layers in order (Keras drops `training` for layers whose call does not take it)."""
  for layer in layers:
    x = layer(x, training=training)
  return x


def _attach(owner, prefix: str, layers: list) -> tuple:
  """Sets layers[i] as the attribute `<prefix>_<i>` of owner and returns the attribute names.

  tf.train.Checkpoint (the trainer's checkpoints) does not follow Python lists of Keras 3 layers, only
  attributes, so every layer is an attribute and the lists are rebuilt from the names (`_layers`).
  """
  names = tuple(f"{prefix}_{i}" for i in range(len(layers)))
  for name, layer in zip(names, layers):
    setattr(owner, name, layer)
  return names


def _layers(owner, names: tuple) -> list:
  """The layers attached under `names` (see `_attach`)."""
  return [getattr(owner, name) for name in names]


def _build_sequence(layers, shape):
  """Builds a list of layers by walking static shapes; returns the output shape."""
  for layer in layers:
    if not layer.built:
      layer.build(shape)
    shape = layer.compute_output_shape(shape)
  return shape


@keras.saving.register_keras_serializable(package="i2i")
class ResnetBlock(keras.layers.Layer):
  """UGATIT-pytorch `ResnetBlock`: x + IN(conv(pad(ReLU(IN(conv(pad(x))))))), 3x3 convs without bias.

  Input and output: [B, H, W, C].
  """

  def __init__(self, channels: int, **kwargs):
    super().__init__(**kwargs)
    self.channels = int(channels)
    self._block_names = tuple(
        _attach(self, f"block{i}", [ReflectionPadding2D(1, dtype=self.dtype_policy),
                                    _conv(channels, 3, 1, channels, False, f"conv{i}", self.dtype_policy),
                                    instance_norm(name=f"in{i}")]) for i in (1, 2))

  @property
  def block1(self) -> list:
    return _layers(self, self._block_names[0])

  @property
  def block2(self) -> list:
    return _layers(self, self._block_names[1])

  def build(self, input_shape):
    _build_sequence(self.block1 + self.block2, tuple(input_shape))

  def call(self, x):
    return x + _run(self.block2, tf.nn.relu(_run(self.block1, x)))

  def compute_output_shape(self, input_shape):
    return tuple(input_shape)

  def get_config(self):
    return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="i2i")
class ResnetAdaLINBlock(keras.layers.Layer):
  """UGATIT-pytorch `ResnetAdaILNBlock`: `ResnetAdaLINBlock(C)([x, gamma, beta])`.

  y = x + AdaLIN(conv(pad(ReLU(AdaLIN(conv(pad(x)), gamma, beta)))), gamma, beta), 3x3 convs without bias.
  x: [B, H, W, C]; gamma, beta: [B, C]. Output [B, H, W, C].
  """

  def __init__(self, channels: int, **kwargs):
    super().__init__(**kwargs)
    self.channels = int(channels)
    self.pad1 = ReflectionPadding2D(1, dtype=self.dtype_policy)
    self.conv1 = _conv(channels, 3, 1, channels, False, "conv1", self.dtype_policy)
    self.norm1 = AdaLIN(name="norm1", dtype=self.dtype_policy)
    self.pad2 = ReflectionPadding2D(1, dtype=self.dtype_policy)
    self.conv2 = _conv(channels, 3, 1, channels, False, "conv2", self.dtype_policy)
    self.norm2 = AdaLIN(name="norm2", dtype=self.dtype_policy)

  def build(self, input_shape):
    x_shape, gamma_shape, beta_shape = (tuple(s) for s in input_shape)
    shape = _build_sequence([self.pad1, self.conv1], x_shape)
    self.norm1.build([shape, gamma_shape, beta_shape])
    shape = _build_sequence([self.pad2, self.conv2], shape)
    self.norm2.build([shape, gamma_shape, beta_shape])

  def call(self, inputs):
    x, gamma, beta = inputs
    y = tf.nn.relu(self.norm1([self.conv1(self.pad1(x)), gamma, beta]))
    y = self.norm2([self.conv2(self.pad2(y)), gamma, beta])
    return x + y

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[0])

  def get_config(self):
    return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="i2i", name="UGATITGenerator")  # unique in i2i>
class Generator(keras.Model):
  """U-GAT-IT generator (UGATIT-pytorch `ResnetGenerator(3, 3, ngf=ch, n_blocks=n_res, img_size, light)`).

  call(x [B, H, W, 3]) -> (image [B, H, W, 3] float32 in [-1, 1], cam_logit [B, 2], heatmap [B, H/4, W/4, 1]).
  Light: any H, W that are multiples of 4 (>= 8). Full: H == W == image_size only.
  """

  def __init__(self, ch: int = 64, n_res: int = 4, image_size: int = 256, light: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.ch, self.n_res, self.image_size, self.light = int(ch), int(n_res), int(image_size), bool(light)
    dt = self.dtype_policy
    c4 = 4 * ch
    down = [[ReflectionPadding2D(3, dtype=dt), _conv(ch, 7, 1, 3, False, "down_conv0", dt),
             instance_norm(name="down_in0")]]
    for i in range(2):
      mult = 2 ** i
      down.append([ReflectionPadding2D(1, dtype=dt),
                   _conv(ch * mult * 2, 3, 2, ch * mult, False, f"down_conv{i + 1}", dt),
                   instance_norm(name=f"down_in{i + 1}")])
    self._down_names = tuple(_attach(self, f"down{i}", block) for i, block in enumerate(down))
    self._encoder_names = _attach(self, "resblock", [ResnetBlock(c4, name=f"resblock{i + 1}", dtype=dt)
                                                     for i in range(n_res)])
    self.cam = CAM(leaky_relu_slope=0.0, spectral_norm=False, kernel_initializer=torch_kernel_initializer(),
                   bias_initializer=torch_bias_initializer(2 * c4), name="cam", dtype=dt)
    self._fc_names = _attach(self, "fc", [_dense(c4, "fc1", dt), _dense(c4, "fc2", dt)])
    self.gamma_fc = _dense(c4, "gamma", dt)
    self.beta_fc = _dense(c4, "beta", dt)
    self._decoder_names = _attach(self, "adalin_resblock", [
        ResnetAdaLINBlock(c4, name=f"adalin_resblock{i + 1}", dtype=dt) for i in range(n_res)])
    up = []
    for i in range(2):
      mult = 2 ** (2 - i)
      up.append([ReflectionPadding2D(1, dtype=dt),
                 _conv(ch * mult // 2, 3, 1, ch * mult, False, f"up_conv{i + 1}", dt),
                 ILN(name=f"iln{i + 1}", dtype=dt)])
    self._up_names = tuple(_attach(self, f"up{i}", block) for i, block in enumerate(up))
    self._out_names = _attach(self, "out", [ReflectionPadding2D(3, dtype=dt),
                                            _conv(3, 7, 1, ch, False, "out_conv", dt)])

  @property
  def down_sampling(self) -> list:
    """[[pad, conv, IN]] x 3: the 7x7 input block and the two stride-2 blocks."""
    return [_layers(self, names) for names in self._down_names]

  @property
  def encoder_blocks(self) -> list:
    return _layers(self, self._encoder_names)

  @property
  def fc(self) -> list:
    """The two FC layers of the gamma/beta MLP."""
    return _layers(self, self._fc_names)

  @property
  def decoder_blocks(self) -> list:
    return _layers(self, self._decoder_names)

  @property
  def up_sampling(self) -> list:
    """[[pad, conv, ILN]] x 2 (each after a nearest x2 upsampling)."""
    return [_layers(self, names) for names in self._up_names]

  @property
  def out(self) -> list:
    return _layers(self, self._out_names)

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
    shape = input_shape
    for block in self.down_sampling:
      shape = _build_sequence(block, shape)
    shape = _build_sequence(self.encoder_blocks, shape)
    self.cam.build(shape)
    c4 = 4 * self.ch
    if self.light:
      fc_in = c4
    else:
      fc_in = (self.image_size // 4) ** 2 * c4
    shape = _build_sequence(self.fc, (shape[0], fc_in))
    self.gamma_fc.build(shape)
    self.beta_fc.build(shape)
    feature_shape = (input_shape[0], None if input_shape[1] is None else input_shape[1] // 4,
                     None if input_shape[2] is None else input_shape[2] // 4, c4)
    for block in self.decoder_blocks:
      block.build([feature_shape, (input_shape[0], c4), (input_shape[0], c4)])
    shape = feature_shape
    for block in self.up_sampling:
      shape = (shape[0], None if shape[1] is None else shape[1] * 2, None if shape[2] is None else shape[2] * 2,
               shape[3])
      shape = _build_sequence(block, shape)
    _build_sequence(self.out, shape)

  def call(self, x, training=None):
    self._check_size(x.shape)
    x = tf.cast(x, self.compute_dtype)
    if not self.light and None in tuple(x.shape[1:3]):  # static sizes were checked above
      size = tf.shape(x)[1:3]
      tf.debugging.assert_equal(
          size, tf.constant([self.image_size, self.image_size]),
          message=f"U-GAT-IT full generator needs {self.image_size}x{self.image_size} images; got H, W =")
    for block in self.down_sampling:
      x = tf.nn.relu(_run(block, x))
    x = _run(self.encoder_blocks, x)
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
    for pad, conv, iln in self.up_sampling:
      x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)  # nearest-neighbour upsampling x2
      x = tf.nn.relu(iln(conv(pad(x))))
    image = tf.tanh(tf.cast(_run(self.out, x), tf.float32))
    return image, cam_logit, heatmap

  def get_config(self):
    return {**super().get_config(), "ch": self.ch, "n_res": self.n_res, "image_size": self.image_size,
            "light": self.light}


@keras.saving.register_keras_serializable(package="i2i", name="UGATITDiscriminator")  # unique in i2i>
class Discriminator(keras.Model):
  """U-GAT-IT discriminator (UGATIT-pytorch `Discriminator(3, ndf=ch, n_layers)`); 7 = global, 5 = local.

  call(x [B, H, W, 3]) -> (logit [B, h, w, 1], cam_logit [B, 2], heatmap [B, h + 1, w + 1, 1]), float32.
  """

  def __init__(self, ch: int = 64, n_layers: int = 7, **kwargs):
    super().__init__(**kwargs)
    if n_layers < 3:
      raise ValueError(f"Discriminator needs n_layers >= 3, got {n_layers}.")
    self.ch, self.n_layers = int(ch), int(n_layers)
    dt = self.dtype_policy

    def sn_conv(filters, stride, in_channels, use_bias, name):
      return SpectralNorm(_conv(filters, 4, stride, in_channels, use_bias, name, dt), name=f"sn_{name}", dtype=dt)

    blocks = [[ReflectionPadding2D(1, dtype=dt), sn_conv(ch, 2, 3, True, "conv0")]]
    for i in range(1, n_layers - 2):
      mult = 2 ** (i - 1)
      blocks.append([ReflectionPadding2D(1, dtype=dt), sn_conv(ch * mult * 2, 2, ch * mult, True, f"conv{i}")])
    mult = 2 ** (n_layers - 3)
    blocks.append([ReflectionPadding2D(1, dtype=dt),
                   sn_conv(ch * mult * 2, 1, ch * mult, True, f"conv{n_layers - 2}")])
    self._block_names = tuple(_attach(self, f"block{i}", block) for i, block in enumerate(blocks))
    c_cam = ch * 2 ** (n_layers - 2)
    self.cam = CAM(leaky_relu_slope=0.2, spectral_norm=True, kernel_initializer=torch_kernel_initializer(),
                   bias_initializer=torch_bias_initializer(2 * c_cam), name="cam", dtype=dt)
    self._out_names = _attach(self, "out", [ReflectionPadding2D(1, dtype=dt),
                                            sn_conv(1, 1, c_cam, False, "out_conv")])

  @property
  def blocks(self) -> list:
    """[[pad, spectral-normalized conv]] x (n_layers - 1), each followed by LeakyReLU(0.2) in call."""
    return [_layers(self, names) for names in self._block_names]

  @property
  def out(self) -> list:
    return _layers(self, self._out_names)

  def build(self, input_shape):
    shape = tuple(input_shape)
    if len(shape) != 4 or shape[-1] != 3:
      raise ValueError(f"U-GAT-IT discriminator expects RGB images [B, H, W, 3]; got shape {shape}.")
    for block in self.blocks:
      shape = _build_sequence(block, shape)
    self.cam.build(shape)
    _build_sequence(self.out, shape)

  def call(self, x, training=None):
    x = tf.cast(x, self.compute_dtype)
    for block in self.blocks:
      x = tf.nn.leaky_relu(_run(block, x, training=training), alpha=0.2)
    x, cam_logit, heatmap = self.cam(x, training=training)
    logit = tf.cast(_run(self.out, x, training=training), tf.float32)
    return logit, cam_logit, heatmap

  def get_config(self):
    return {**super().get_config(), "ch": self.ch, "n_layers": self.n_layers}
