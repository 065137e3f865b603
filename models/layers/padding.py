"""Reflection padding, the border handling of the MUNIT, UNIT and U-GAT-IT generators (torch nn.ReflectionPad2d)."""

from __future__ import annotations

import keras
import tensorflow as tf


def reflect_pad_by_concat(x, ph: int, pw: int):
  """tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]], "REFLECT") as slices, reverses and two concatenations.

  The same values bit for bit. In the forward pass it runs at 0.6-2.2x MirrorPad's speed on this project's maps
  (faster from 4x18x18x256 up: 9.4 -> 6.0 ms at 1x256x256x64, BUILD.md); with its gradient it is slower than
  MirrorPad + MirrorPadGrad, so only inference uses it.
  """
  if ph:
    x = tf.concat([tf.reverse(x[:, 1:ph + 1], [1]), x, tf.reverse(x[:, -ph - 1:-1], [1])], axis=1)
  if pw:
    x = tf.concat([tf.reverse(x[:, :, 1:pw + 1], [2]), x, tf.reverse(x[:, :, -pw - 1:-1], [2])], axis=2)
  return x


def crop2d(x, top: int, bottom: int, left: int, right: int):
  """x[:, top:H - bottom, left:W - right] of `[B, H, W, C]`, as one Slice op.

  The same values as the strided-slice indexing (and keras.layers.Cropping2D), but its gradient is one Pad:
  TensorFlow's CPU StridedSliceGrad kernel takes ~10x as long for these crops (2x128x128x64 by 1 on each side,
  17 vs 1.5 ms forward + gradient, BUILD.md), and training crops every transposed and upsampling convolution.
  """
  shape = tf.shape(x)
  dim = lambda i: x.shape[i] if x.shape[i] is not None else shape[i]  # noqa: E731
  y = tf.slice(x, [0, top, left, 0], [-1, dim(1) - top - bottom, dim(2) - left - right, -1])
  # A size computed from tf.shape (unknown H or W) leaves every static dimension unknown: keep B and C.
  static = lambda i, cut: None if x.shape[i] is None else x.shape[i] - cut  # noqa: E731
  y.set_shape([x.shape[0], static(1, top + bottom), static(2, left + right), x.shape[3]])
  return y


def _pair(value, name: str) -> tuple[int, int]:
  """Normalizes an int or a pair of ints to (height, width) and checks it is non-negative."""
  if isinstance(value, int):
    value = (value, value)
  value = tuple(int(v) for v in value)
  if len(value) != 2 or min(value) < 0:
    raise ValueError(f"{name} must be a non-negative int or a pair (height, width) of them, got {value!r}.")
  return value


@keras.saving.register_keras_serializable(package="i2i")
class ReflectionPadding2D(keras.layers.Layer):
  """Pads H and W by mirroring without repeating the border pixel (torch `ReflectionPad2d`, tf.pad REFLECT).

  Input `[B, H, W, C]` -> output `[B, H + 2 * ph, W + 2 * pw, C]`; requires ph < H and pw < W. Training pads with
  MirrorPad, inference with `reflect_pad_by_concat` (the same values, a faster forward).

  Args:
    padding: int or (ph, pw) rows/columns added on each side.
  """

  def __init__(self, padding=1, **kwargs):
    super().__init__(**kwargs)
    self.padding = _pair(padding, "padding")

  def build(self, input_shape):
    if len(input_shape) != 4:
      raise ValueError(f"ReflectionPadding2D expects [B, H, W, C] input, got shape {tuple(input_shape)}.")
    for size, pad, axis in zip(input_shape[1:3], self.padding, ("height", "width")):
      if size is not None and pad >= size:
        raise ValueError(f"ReflectionPadding2D: padding {pad} must be smaller than the {axis} {size} "
                         f"(input shape {tuple(input_shape)}); use a larger image.")

  def call(self, x, training=None):
    ph, pw = self.padding
    if not training:
      return reflect_pad_by_concat(x, ph, pw)
    return keras.ops.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]], mode="reflect")

  def compute_output_shape(self, input_shape):
    b, h, w, c = input_shape
    ph, pw = self.padding
    return (b, None if h is None else h + 2 * ph, None if w is None else w + 2 * pw, c)

  def get_config(self):
    return {**super().get_config(), "padding": self.padding}
