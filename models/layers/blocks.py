"""The block vocabulary of every network (MUNIT, UNIT, U-GAT-IT), with the references' initializations.

ConvBlock (pad, conv, norm, activation) is the unit the generators and discriminators are composed of; ResBlock,
AdaINResBlock (MUNIT) and AdaLINResBlock (U-GAT-IT) are residual blocks of ConvBlocks or convolutions, and
ConvTransposeBlock is UNIT's up-sampling block. The networks hold their blocks as attributes or in plain Python
lists: the trainer's checkpoints hold every variable of `model.variables` by position (`model_checkpoint`, see
docs/INTERFACES.md), so no block needs to be an attribute for tf.train.Checkpoint to see it; a block must
therefore keep the order of its variables (tests/test_layers_blocks.py pins it).

Initializations (`init`):
  * "kaiming": weights N(0, 2 / fan_in) (torch `kaiming_normal_(a=0, mode="fan_in")`, untruncated), bias 0
    (MUNIT `weights_init("kaiming")`, its generators).
  * "gaussian": weights N(0, 0.02^2), bias 0 (MUNIT `weights_init("gaussian")`, its discriminators).
  * "gaussian_torch_bias": weights N(0, 0.02^2), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's default bias
    (UNIT v02 `gaussian_weights_init` only touches the weights). fan_in = in_channels * k * k for convs and
    transposed convs alike, as in torch <= 0.3 (`_ConvNd.reset_parameters`), which UNIT v02 ran on; current torch
    takes out_channels * k * k for a transposed conv.
  * "torch": torch's default conv/linear init, weights and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (`kaiming_uniform_(a=sqrt(5))`; U-GAT-IT, which keeps torch's defaults everywhere).

Seeded reproducibility: a Keras initializer without a seed draws its seed from Python's `random` when it is
constructed, so the order in which blocks construct their initializers fixes the initial weights under
`keras.utils.set_random_seed`. A ConvBlock given `in_channels` creates its convolution (and initializers) in
`__init__`, as torch's `nn.Conv2d(in, out, ...)` does; without it, in `build`.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from models.layers import conv as conv_lib
from models.layers.adalin import ILN, AdaLIN
from models.layers.conv import FastConv2D
from models.layers.normalization import AdaIN, MUNITLayerNorm, instance_norm
from models.layers.padding import ReflectionPadding2D, crop2d
from models.layers.spectral_norm import SpectralNorm

INITS = ("kaiming", "gaussian", "gaussian_torch_bias", "torch")
NORMS = ("none", "in", "ln", "iln")
ACTIVATIONS = ("none", "relu", "leaky_relu", "tanh")
PAD_TYPES = ("reflect", "zero")


def torch_kernel_initializer() -> keras.initializers.Initializer:
  """torch's default conv/linear weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a=sqrt(5))."""
  return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def torch_bias_initializer(fan_in: int) -> keras.initializers.Initializer:
  """torch's default conv/linear bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  return keras.initializers.RandomUniform(-bound, bound)


def initializers(init: str, fan_in: int):
  """Returns (kernel_initializer, bias_initializer) for one of INITS and the torch fan_in of the layer."""
  if init == "torch":
    return torch_kernel_initializer(), torch_bias_initializer(fan_in)
  if init == "kaiming":
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal"), keras.initializers.Zeros()
  if init == "gaussian":
    return keras.initializers.RandomNormal(0.0, 0.02), keras.initializers.Zeros()
  if init == "gaussian_torch_bias":
    return keras.initializers.RandomNormal(0.0, 0.02), torch_bias_initializer(fan_in)
  raise ValueError(f"Unknown init {init!r}; choose one of {', '.join(INITS)}.")


def _check_choice(value, choices, name):
  """Raises ValueError naming the valid choices when value is not one of them."""
  if value not in choices:
    raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(choices)}.")


def _activation(activation: str, negative_slope: float, dtype=None):
  """Returns the activation layer (or None for "none")."""
  _check_choice(activation, ACTIVATIONS, "activation")
  if activation == "relu":
    return keras.layers.ReLU(dtype=dtype)
  if activation == "leaky_relu":
    return keras.layers.LeakyReLU(negative_slope=negative_slope, dtype=dtype)
  if activation == "tanh":
    return keras.layers.Activation("tanh", dtype=dtype)
  return None


def _image_channels(layer: str, input_shape) -> int:
  """C of an input shape [B, H, W, C]; ValueError naming the layer unless the rank is 4 and C is known."""
  if len(input_shape) != 4 or input_shape[-1] is None:
    raise ValueError(f"{layer} expects [B, H, W, C] with known C, got {tuple(input_shape)}.")
  return int(input_shape[-1])


def _norm_and_activation(block, x):
  """x through `block.norm_layer` and then `block.act`, each when the block has one (the end of every conv block)."""
  if block.norm_layer is not None:
    x = block.norm_layer(x)
  if block.act is not None:
    x = block.act(x)
  return x


def build_chain(layers, input_shape) -> tuple:
  """Builds `layers` (applied in order) from static shapes, without running them; returns the output shape."""
  shape = tuple(input_shape)
  for layer in layers:
    if not layer.built:
      layer.build(shape)
    shape = tuple(layer.compute_output_shape(shape))
  return shape


@keras.saving.register_keras_serializable(package="i2i")
class ConvBlock(keras.layers.Layer):
  """pad -> conv -> norm -> activation (MUNIT `Conv2dBlock`, UNIT `LeakyReLUConv2d`/`ReLUINSConv2d`, U-GAT-IT's
  `[ReflectionPad2d, Conv2d(bias=False), InstanceNorm2d / ILN, ReLU]` and spectral-normalized discriminator convs).

  Input `[B, H, W, C_in]` -> `[B, floor((H + 2p - k) / s) + 1, ..., filters]`.

  Args:
    filters, kernel_size, strides: the convolution.
    padding: p rows/columns added on each side before the (valid) convolution.
    pad_type: "reflect" (MUNIT, U-GAT-IT) or "zero" (UNIT; torch Conv2d padding).
    norm: "none", "in" (instance norm without affine), "ln" (MUNITLayerNorm) or "iln" (U-GAT-IT's ILN).
    activation: "none", "relu", "leaky_relu" (slope `negative_slope`) or "tanh".
    init: one of INITS.
    use_bias: the convolution has a bias (U-GAT-IT's generator convs have none).
    spectral_norm: wrap the convolution in torch-style `SpectralNorm` (U-GAT-IT's discriminators); `conv` is
      then the wrapper and `conv.layer` the convolution.
    in_channels: C_in; when given, the convolution is created here rather than in `build` (see the module
      docstring), and its variables come before the norm's in `variables`.
  """

  def __init__(self, filters: int, kernel_size: int, strides: int = 1, padding: int = 0, pad_type: str = "reflect",
               norm: str = "none", activation: str = "relu", negative_slope: float = 0.2, init: str = "kaiming",
               use_bias: bool = True, spectral_norm: bool = False, in_channels: int | None = None, **kwargs):
    super().__init__(**kwargs)
    _check_choice(pad_type, PAD_TYPES, "pad_type")
    _check_choice(norm, NORMS, "norm")
    _check_choice(init, INITS, "init")
    self.filters, self.kernel_size, self.strides, self.padding = int(filters), int(kernel_size), int(strides), int(padding)
    self.pad_type, self.norm, self.activation, self.negative_slope, self.init = (
        pad_type, norm, activation, float(negative_slope), init)
    self.use_bias, self.spectral_norm = bool(use_bias), bool(spectral_norm)
    self.in_channels = None if in_channels is None else int(in_channels)
    dt = self.dtype_policy
    self.pad = None
    if self.padding:
      self.pad = (ReflectionPadding2D(self.padding, dtype=dt) if pad_type == "reflect"
                  else keras.layers.ZeroPadding2D(self.padding, dtype=dt))
    self.conv = None
    if self.in_channels is not None:
      self.conv = self._make_conv(self.in_channels)
    self.norm_layer = {"none": lambda: None, "in": lambda: instance_norm(False, name="norm", dtype=dt),
                       "ln": lambda: MUNITLayerNorm(name="norm", dtype=dt),
                       "iln": lambda: ILN(name="norm", dtype=dt)}[norm]()
    self.act = _activation(activation, self.negative_slope, dt)

  def _make_conv(self, in_channels: int):
    """The (valid) convolution, spectral-normalized if asked, with `init` for fan_in = in_channels * k * k."""
    kernel_init, bias_init = initializers(self.init, in_channels * self.kernel_size ** 2)
    conv = FastConv2D(self.filters, self.kernel_size, self.strides, padding="valid", use_bias=self.use_bias,
                      kernel_initializer=kernel_init, bias_initializer=bias_init, name="conv", dtype=self.dtype_policy)
    return SpectralNorm(conv, name="sn_conv", dtype=self.dtype_policy) if self.spectral_norm else conv

  def build(self, input_shape):
    channels = _image_channels("ConvBlock", input_shape)
    if self.conv is None:
      self.conv = self._make_conv(channels)
    elif channels != self.in_channels:
      raise ValueError(f"ConvBlock {self.name} was made for {self.in_channels} input channels, got input shape "
                       f"{tuple(input_shape)}.")
    build_chain([layer for layer in (self.pad, self.conv, self.norm_layer) if layer is not None], input_shape)

  def call(self, x, training=None):
    if self.pad is not None:
      x = self.pad(x)
    x = self.conv(x, training=training)
    return _norm_and_activation(self, x)

  def compute_output_shape(self, input_shape):
    b, h, w, _ = input_shape
    size = lambda n: None if n is None else (n + 2 * self.padding - self.kernel_size) // self.strides + 1
    return (b, size(h), size(w), self.filters)

  def call_upsampled(self, x):
    """`self(nearest_upsample_2x(x))` (Keras UpSampling2D(2, "nearest"), then this block): `[B, H, W, C]` ->
    `[B, 2H, 2W, filters]`.

    The reflect-padded stride-1 blocks run the convolution on x itself, without the 4x larger upsampled image
    (same values): MUNIT's (5x5, padding 2; H and W >= 2 known) as `conv.upsample2x_reflect_conv5` with 9/25 of
    the multiply-adds, U-GAT-IT's (3x3, padding 1) as `conv.upsample2x_reflect_conv3` with 16/36 of them. Any
    other block (or one not built yet) upsamples with ops.repeat and calls itself.
    """
    h, w = x.shape[1], x.shape[2]
    phase_conv = None
    if self.built and not self.spectral_norm and self.pad_type == "reflect" and self.strides == 1:
      if self.kernel_size == 5 and self.padding == 2 and h is not None and w is not None and min(h, w) >= 2:
        phase_conv = conv_lib.upsample2x_reflect_conv5
      elif self.kernel_size == 3 and self.padding == 1:
        phase_conv = conv_lib.upsample2x_reflect_conv3
    if phase_conv is None:
      return self(ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2))
    x = ops.cast(x, self.compute_dtype)
    y = phase_conv(x, self.conv.kernel)
    if self.use_bias:
      y = y + ops.cast(self.conv.bias, y.dtype)
    return _norm_and_activation(self, y)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "padding": self.padding, "pad_type": self.pad_type, "norm": self.norm,
            "activation": self.activation, "negative_slope": self.negative_slope, "init": self.init,
            "use_bias": self.use_bias, "spectral_norm": self.spectral_norm, "in_channels": self.in_channels}


@keras.saving.register_keras_serializable(package="i2i")
class ConvTransposeBlock(keras.layers.Layer):
  """Transposed conv (torch semantics) -> optional instance norm -> activation (UNIT `ReLUINSConvTranspose2d`).

  Matches torch `ConvTranspose2d(k, s, padding=p, output_padding=op)`: the full transposed convolution of
  size (H - 1) * s + k is cropped by p at the start and p - op at the end, so
  `[B, H, W, C_in]` -> `[B, (H - 1) * s - 2p + k + op, ..., filters]` (k3 s2 p1 op1: 2H).

  Args:
    filters, kernel_size, strides, padding, output_padding: the torch ConvTranspose2d arguments.
    norm: "none" or "in"; activation: as ConvBlock; init: one of INITS.
  """

  def __init__(self, filters: int, kernel_size: int, strides: int = 1, padding: int = 0, output_padding: int = 0,
               norm: str = "in", activation: str = "relu", negative_slope: float = 0.01,
               init: str = "gaussian_torch_bias", **kwargs):
    super().__init__(**kwargs)
    _check_choice(norm, ("none", "in"), "norm")
    if not 0 <= output_padding <= padding:
      raise ValueError(f"output_padding must be in [0, padding], got output_padding={output_padding}, "
                       f"padding={padding}.")
    self.filters, self.kernel_size, self.strides = int(filters), int(kernel_size), int(strides)
    self.padding, self.output_padding = int(padding), int(output_padding)
    self.norm, self.activation, self.negative_slope, self.init = norm, activation, float(negative_slope), init
    self.norm_layer = instance_norm(False) if norm == "in" else None
    self.act = _activation(activation, self.negative_slope)
    self.crop = (self.padding, self.padding - self.output_padding)  # start, end; the same on both axes
    self.conv = None

  def build(self, input_shape):
    kernel_init, bias_init = initializers(self.init, _image_channels("ConvTransposeBlock", input_shape)
                                          * self.kernel_size ** 2)
    self.conv = keras.layers.Conv2DTranspose(self.filters, self.kernel_size, self.strides, padding="valid",
                                             kernel_initializer=kernel_init, bias_initializer=bias_init,
                                             name="conv_transpose")

  def call(self, x):
    x = self.conv(x)
    if any(self.crop):
      x = crop2d(x, *self.crop, *self.crop)
    return _norm_and_activation(self, x)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "padding": self.padding, "output_padding": self.output_padding,
            "norm": self.norm, "activation": self.activation, "negative_slope": self.negative_slope,
            "init": self.init}


@keras.saving.register_keras_serializable(package="i2i")
class ResBlock(keras.layers.Layer):
  """Residual block x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x) (MUNIT `ResBlock`, UNIT `INSResBlock`,
  U-GAT-IT `ResnetBlock`): two ConvBlocks, `block1` and `block2`.

  Instance norm without affine terms; no activation after the sum. `[B, H, W, C]` -> `[B, H, W, C]`.

  Args:
    pad_type: "reflect" (MUNIT, U-GAT-IT) or "zero" (UNIT).
    init: one of INITS.
    use_bias: the convolutions have biases (U-GAT-IT's have none).
    channels: C; when given, the blocks are created here (ConvBlock `in_channels`), else in `build`.
  """

  def __init__(self, pad_type: str = "reflect", init: str = "kaiming", use_bias: bool = True,
               channels: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.pad_type, self.init, self.use_bias = pad_type, init, bool(use_bias)
    self.channels = None if channels is None else int(channels)
    self.block1 = self.block2 = None
    if self.channels is not None:
      self._make_blocks(self.channels)

  def _make_blocks(self, channels: int):
    common = dict(init=self.init, use_bias=self.use_bias, in_channels=self.channels, dtype=self.dtype_policy)
    self.block1 = ConvBlock(channels, 3, 1, 1, self.pad_type, "in", "relu", name="conv1", **common)
    self.block2 = ConvBlock(channels, 3, 1, 1, self.pad_type, "in", "none", name="conv2", **common)

  def build(self, input_shape):
    channels = _image_channels("ResBlock", input_shape)
    if self.block1 is None:
      self._make_blocks(channels)
    build_chain([self.block1, self.block2], input_shape)

  def call(self, x):
    return x + self.block2(self.block1(x))

  def compute_output_shape(self, input_shape):
    return tuple(input_shape)

  def get_config(self):
    return {**super().get_config(), "pad_type": self.pad_type, "init": self.init, "use_bias": self.use_bias,
            "channels": self.channels}


@keras.saving.register_keras_serializable(package="i2i")
class AdaINResBlock(keras.layers.Layer):
  """MUNIT decoder residual block with AdaIN: x + [pad, conv3x3, AdaIN, ReLU, pad, conv3x3, AdaIN](x).

  Inputs: [x `[B, H, W, C]`, adain_params `[B, 4C]`] where adain_params is this block's slice of the MLP
  output in MUNIT's order: (beta1, gamma1, beta2, gamma2), each `[B, C]` (bias first, then weight).
  Output: `[B, H, W, C]`.

  Known difference from torch, kept so that seeded runs reproduce: both convolutions are built with one
  initializer pair, whose seed is drawn once, so conv1 and conv2 start with equal kernels (torch draws each).
  """

  def __init__(self, pad_type: str = "reflect", init: str = "kaiming", **kwargs):
    super().__init__(**kwargs)
    _check_choice(pad_type, PAD_TYPES, "pad_type")
    self.pad_type, self.init = pad_type, init
    self.pad = ReflectionPadding2D(1) if pad_type == "reflect" else keras.layers.ZeroPadding2D(1)
    self.adain1, self.adain2 = AdaIN(name="adain1"), AdaIN(name="adain2")
    self.relu = keras.layers.ReLU()
    self.conv1 = self.conv2 = None

  def build(self, input_shape):
    x_shape, p_shape = input_shape
    if len(x_shape) != 4 or x_shape[-1] is None:
      raise ValueError(f"AdaINResBlock expects x of shape [B, H, W, C] with known C, got {tuple(x_shape)}.")
    c = x_shape[-1]
    if len(p_shape) != 2 or p_shape[-1] != 4 * c:
      raise ValueError(f"AdaINResBlock needs adain_params of shape [B, {4 * c}] for {c} channels, got "
                       f"{tuple(p_shape)}.")
    kernel_init, bias_init = initializers(self.init, c * 9)
    self.conv1 = FastConv2D(c, 3, kernel_initializer=kernel_init, bias_initializer=bias_init, name="conv1")
    self.conv2 = FastConv2D(c, 3, kernel_initializer=kernel_init, bias_initializer=bias_init, name="conv2")

  def call(self, inputs):
    x, params = inputs
    beta1, gamma1, beta2, gamma2 = ops.split(params, 4, axis=-1)
    y = self.relu(self.adain1([self.conv1(self.pad(x)), gamma1, beta1]))
    y = self.adain2([self.conv2(self.pad(y)), gamma2, beta2])
    return x + y

  def compute_output_shape(self, input_shape):
    return input_shape[0]

  def get_config(self):
    return {**super().get_config(), "pad_type": self.pad_type, "init": self.init}


@keras.saving.register_keras_serializable(package="i2i")
class AdaLINResBlock(keras.layers.Layer):
  """U-GAT-IT decoder residual block (UGATIT-pytorch `ResnetAdaILNBlock`): `AdaLINResBlock(C)([x, gamma, beta])`.

  y = x + AdaLIN(conv2(pad(ReLU(AdaLIN(conv1(pad(x)), gamma, beta)))), gamma, beta): `conv1`, `conv2` are
  ConvBlocks (pad 1, 3x3, no norm, no activation), `norm1`, `norm2` AdaLIN layers sharing gamma and beta.
  x: [B, H, W, C]; gamma, beta: [B, C]. Output [B, H, W, C].

  Args:
    channels: C (the blocks are created here, as in torch).
    pad_type, init, use_bias: of both convolutions (U-GAT-IT: reflect, torch's init, no bias).
  """

  def __init__(self, channels: int, pad_type: str = "reflect", init: str = "torch", use_bias: bool = False,
               **kwargs):
    super().__init__(**kwargs)
    self.channels, self.pad_type, self.init, self.use_bias = int(channels), pad_type, init, bool(use_bias)
    dt = self.dtype_policy
    conv = dict(pad_type=pad_type, norm="none", activation="none", init=init, use_bias=use_bias,
                in_channels=self.channels, dtype=dt)
    self.conv1 = ConvBlock(self.channels, 3, 1, 1, name="conv1", **conv)
    self.norm1 = AdaLIN(name="norm1", dtype=dt)
    self.conv2 = ConvBlock(self.channels, 3, 1, 1, name="conv2", **conv)
    self.norm2 = AdaLIN(name="norm2", dtype=dt)

  def build(self, input_shape):
    x_shape, gamma_shape, beta_shape = (tuple(s) for s in input_shape)
    for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2)):
      norm.build([build_chain([conv], x_shape), gamma_shape, beta_shape])

  def call(self, inputs):
    x, gamma, beta = inputs
    y = ops.relu(self.norm1([self.conv1(x), gamma, beta]))
    y = self.norm2([self.conv2(y), gamma, beta])
    return x + y

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[0])

  def get_config(self):
    return {**super().get_config(), "channels": self.channels, "pad_type": self.pad_type, "init": self.init,
            "use_bias": self.use_bias}
