"""Reflection padding, the border handling of the MUNIT, UNIT and U-GAT-IT generators (torch nn.ReflectionPad2d)."""

from __future__ import annotations

import keras


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

  Input `[B, H, W, C]` -> output `[B, H + 2 * ph, W + 2 * pw, C]`; requires ph < H and pw < W.

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

  def call(self, x):
    ph, pw = self.padding
    return keras.ops.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]], mode="reflect")

  def compute_output_shape(self, input_shape):
    b, h, w, c = input_shape
    ph, pw = self.padding
    return (b, None if h is None else h + 2 * ph, None if w is None else w + 2 * pw, c)

  def get_config(self):
    return {**super().get_config(), "padding": self.padding}
