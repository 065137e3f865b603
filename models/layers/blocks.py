"""Convolution and residual blocks shared by the MUNIT and UNIT networks, with the references' initializations.

Initializations (`init`):
  * "kaiming": weights N(0, 2 / fan_in) (torch `kaiming_normal_(a=0, mode="fan_in")`, untruncated), bias 0
    (MUNIT `weights_init("kaiming")`, its generators).
  * "gaussian": weights N(0, 0.02^2), bias 0 (MUNIT `weights_init("gaussian")`, its discriminators).
  * "gaussian_torch_bias": weights N(0, 0.02^2), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's default bias
    (UNIT v02 `gaussian_weights_init` only touches the weights). fan_in = in_channels * k * k for convs and
    transposed convs alike, as in torch <= 0.3 (`_ConvNd.reset_parameters`), which UNIT v02 ran on; current torch
    takes out_channels * k * k for a transposed conv.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from models.layers import conv as conv_lib
from models.layers.conv import FastConv2D
from models.layers.normalization import AdaIN, MUNITLayerNorm, instance_norm
from models.layers.padding import ReflectionPadding2D

INITS = ("kaiming", "gaussian", "gaussian_torch_bias")
NORMS = ("none", "in", "ln")
ACTIVATIONS = ("none", "relu", "leaky_relu", "tanh")
PAD_TYPES = ("reflect", "zero")


def initializers(init: str, fan_in: int):
  """Returns (kernel_initializer, bias_initializer) for one of INITS and the torch fan_in of the layer."""
  if init == "kaiming":
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal"), keras.initializers.Zeros()
  if init == "gaussian":
    return keras.initializers.RandomNormal(0.0, 0.02), keras.initializers.Zeros()
  if init == "gaussian_torch_bias":
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomNormal(0.0, 0.02), keras.initializers.RandomUniform(-bound, bound)
  raise ValueError(f"Unknown init {init!r}; choose one of {', '.join(INITS)}.")


def _check_choice(value, choices, name):
  """Raises ValueError naming the valid choices when value is not one of them."""
  if value not in choices:
    raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(choices)}.")


def _activation(activation: str, negative_slope: float):
  """Returns the activation layer (or None for "none")."""
  _check_choice(activation, ACTIVATIONS, "activation")
  if activation == "relu":
    return keras.layers.ReLU()
  if activation == "leaky_relu":
    return keras.layers.LeakyReLU(negative_slope=negative_slope)
  if activation == "tanh":
    return keras.layers.Activation("tanh")
  return None


@keras.saving.register_keras_serializable(package="i2i")
class ConvBlock(keras.layers.Layer):
  """pad -> conv (with bias) -> norm -> activation (MUNIT `Conv2dBlock`, UNIT `LeakyReLUConv2d`/`ReLUINSConv2d`).

  Input `[B, H, W, C_in]` -> `[B, floor((H + 2p - k) / s) + 1, ..., filters]`.

  Args:
    filters, kernel_size, strides: the convolution.
    padding: p rows/columns added on each side before the (valid) convolution.
    pad_type: "reflect" (MUNIT) or "zero" (UNIT; torch Conv2d padding).
    norm: "none", "in" (instance norm without affine) or "ln" (MUNITLayerNorm).
    activation: "none", "relu", "leaky_relu" (slope `negative_slope`) or "tanh".
    init: one of INITS.
  """

  def __init__(self, filters: int, kernel_size: int, strides: int = 1, padding: int = 0, pad_type: str = "reflect",
               norm: str = "none", activation: str = "relu", negative_slope: float = 0.2, init: str = "kaiming",
               **kwargs):
    super().__init__(**kwargs)
    _check_choice(pad_type, PAD_TYPES, "pad_type")
    _check_choice(norm, NORMS, "norm")
    self.filters, self.kernel_size, self.strides, self.padding = int(filters), int(kernel_size), int(strides), int(padding)
    self.pad_type, self.norm, self.activation, self.negative_slope, self.init = (
        pad_type, norm, activation, float(negative_slope), init)
    self.pad = None
    if self.padding:
      self.pad = (ReflectionPadding2D(self.padding) if pad_type == "reflect"
                  else keras.layers.ZeroPadding2D(self.padding))
    self.norm_layer = {"none": None, "in": instance_norm(False), "ln": MUNITLayerNorm()}[norm]
    self.act = _activation(activation, self.negative_slope)
    self.conv = None

  def build(self, input_shape):
    if len(input_shape) != 4 or input_shape[-1] is None:
      raise ValueError(f"ConvBlock expects [B, H, W, C] with known C, got {tuple(input_shape)}.")
    kernel_init, bias_init = initializers(self.init, input_shape[-1] * self.kernel_size ** 2)
    self.conv = FastConv2D(self.filters, self.kernel_size, self.strides, padding="valid",
                           kernel_initializer=kernel_init, bias_initializer=bias_init, name="conv")

  def call(self, x):
    if self.pad is not None:
      x = self.pad(x)
    x = self.conv(x)
    if self.norm_layer is not None:
      x = self.norm_layer(x)
    if self.act is not None:
      x = self.act(x)
    return x

  def call_upsampled(self, x):
    """`self(nearest_upsample_2x(x))` (Keras UpSampling2D(2, "nearest"), then this block): `[B, H, W, C]` ->
    `[B, 2H, 2W, filters]`.

    For MUNIT's up-sampling block (5x5, stride 1, reflect padding 2, built, H and W >= 2 known) the convolution
    runs as `conv.upsample2x_reflect_conv5` on x itself (same values, 9/25 of the multiply-adds, no 4x
    larger upsampled image); any other block upsamples with ops.repeat and calls itself.
    """
    h, w = x.shape[1], x.shape[2]
    if not (self.built and conv_lib.ENABLED and self.pad_type == "reflect" and self.kernel_size == 5
            and self.padding == 2 and self.strides == 1 and h is not None and w is not None and min(h, w) >= 2):
      return self(ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2))
    x = ops.cast(x, self.compute_dtype)
    y = conv_lib.upsample2x_reflect_conv5(x, self.conv.kernel)
    y = y + ops.cast(self.conv.bias, y.dtype)
    if self.norm_layer is not None:
      y = self.norm_layer(y)
    if self.act is not None:
      y = self.act(y)
    return y

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "padding": self.padding, "pad_type": self.pad_type, "norm": self.norm,
            "activation": self.activation, "negative_slope": self.negative_slope, "init": self.init}


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
    crop = (self.padding, self.padding - self.output_padding)
    self.crop = keras.layers.Cropping2D((crop, crop)) if any(crop) else None
    self.conv = None

  def build(self, input_shape):
    if len(input_shape) != 4 or input_shape[-1] is None:
      raise ValueError(f"ConvTransposeBlock expects [B, H, W, C] with known C, got {tuple(input_shape)}.")
    kernel_init, bias_init = initializers(self.init, input_shape[-1] * self.kernel_size ** 2)
    self.conv = keras.layers.Conv2DTranspose(self.filters, self.kernel_size, self.strides, padding="valid",
                                             kernel_initializer=kernel_init, bias_initializer=bias_init,
                                             name="conv_transpose")

  def call(self, x):
    x = self.conv(x)
    if self.crop is not None:
      x = self.crop(x)
    if self.norm_layer is not None:
      x = self.norm_layer(x)
    if self.act is not None:
      x = self.act(x)
    return x

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "padding": self.padding, "output_padding": self.output_padding,
            "norm": self.norm, "activation": self.activation, "negative_slope": self.negative_slope,
            "init": self.init}


@keras.saving.register_keras_serializable(package="i2i")
class ResBlock(keras.layers.Layer):
  """Residual block x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x) (MUNIT `ResBlock`, UNIT `INSResBlock`).

  Instance norm without affine terms; no activation after the sum. `[B, H, W, C]` -> `[B, H, W, C]`.

  Args:
    pad_type: "reflect" (MUNIT) or "zero" (UNIT).
    init: one of INITS.
  """

  def __init__(self, pad_type: str = "reflect", init: str = "kaiming", **kwargs):
    super().__init__(**kwargs)
    self.pad_type, self.init = pad_type, init
    self.block1 = self.block2 = None

  def build(self, input_shape):
    if len(input_shape) != 4 or input_shape[-1] is None:
      raise ValueError(f"ResBlock expects [B, H, W, C] with known C, got {tuple(input_shape)}.")
    c = input_shape[-1]
    self.block1 = ConvBlock(c, 3, 1, 1, self.pad_type, "in", "relu", init=self.init, name="conv1")
    self.block2 = ConvBlock(c, 3, 1, 1, self.pad_type, "in", "none", init=self.init, name="conv2")

  def call(self, x):
    return x + self.block2(self.block1(x))

  def get_config(self):
    return {**super().get_config(), "pad_type": self.pad_type, "init": self.init}


@keras.saving.register_keras_serializable(package="i2i")
class AdaINResBlock(keras.layers.Layer):
  """MUNIT decoder residual block with AdaIN: x + [pad, conv3x3, AdaIN, ReLU, pad, conv3x3, AdaIN](x).

  Inputs: [x `[B, H, W, C]`, adain_params `[B, 4C]`] where adain_params is this block's slice of the MLP
  output in MUNIT's order: (beta1, gamma1, beta2, gamma2), each `[B, C]` (bias first, then weight).
  Output: `[B, H, W, C]`.
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
