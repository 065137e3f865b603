"""Downsampling layers of the multi-scale discriminators (MUNIT MsImageDis, UNIT COCOMsDis)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="i2i")
class AveragePooling2DExcludePad(keras.layers.Layer):
  """Average pooling with symmetric zero padding that is excluded from the average.

  Equals torch `nn.AvgPool2d(pool_size, stride, padding, count_include_pad=False)` (MUNIT's 3x3 s2 pad 1
  between discriminator scales); Keras' "same" pooling pads asymmetrically, so it is not the same.
  y[i, j] = sum_{window} x / #(non-padded positions in the window).

  Input `[B, H, W, C]` -> `[B, floor((H + 2p - k) / s) + 1, ..., C]`.

  Args:
    pool_size: window size k.
    strides: stride s.
    padding: zero rows/columns p on each side (p <= k // 2).
  """

  def __init__(self, pool_size: int = 3, strides: int = 2, padding: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.pool_size, self.strides, self.padding = int(pool_size), int(strides), int(padding)
    if not 0 <= self.padding <= self.pool_size // 2:
      raise ValueError(f"padding must be in [0, pool_size // 2], got padding={padding}, pool_size={pool_size}.")

  def build(self, input_shape):
    if len(input_shape) != 4:
      raise ValueError(f"AveragePooling2DExcludePad expects [B, H, W, C], got {tuple(input_shape)}.")

  def call(self, x):
    p = self.padding
    pads = [[0, 0], [p, p], [p, p], [0, 0]]
    x32 = ops.pad(ops.cast(x, "float32"), pads)
    ones = ops.pad(ops.ones_like(ops.cast(x, "float32")[:, :, :, :1]), pads)
    total = ops.average_pool(x32, self.pool_size, self.strides, padding="valid")
    count = ops.average_pool(ones, self.pool_size, self.strides, padding="valid")
    return ops.cast(total / count, self.compute_dtype)

  def compute_output_shape(self, input_shape):
    b, h, w, c = input_shape
    out = lambda n: None if n is None else (n + 2 * self.padding - self.pool_size) // self.strides + 1
    return (b, out(h), out(w), c)

  def get_config(self):
    return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}


@keras.saving.register_keras_serializable(package="i2i")
class GaussianBlurDownsample2D(keras.layers.Layer):
  """3x3 Gaussian blur with replicate padding, then keep every second row and column (UNIT v02 COCOMsDis).

  kernel = k k^T with k = [0.25, 0.5, 0.25] (OpenCV getGaussianKernel(3, -1)), applied per channel.
  Input `[B, H, W, C]` -> `[B, ceil(H / 2), ceil(W / 2), C]`.
  """

  def build(self, input_shape):
    if len(input_shape) != 4 or input_shape[-1] is None:
      raise ValueError(f"GaussianBlurDownsample2D expects [B, H, W, C] with known C, got {tuple(input_shape)}.")
    k = np.array([0.25, 0.5, 0.25], np.float32)
    self._kernel = np.tile(np.outer(k, k)[:, :, None, None], [1, 1, input_shape[-1], 1])

  def call(self, x):
    x32 = ops.pad(ops.cast(x, "float32"), [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")
    # Stride 2 keeps rows and columns 0, 2, ... of the blur: the same sums as slicing [::2, ::2] after a stride-1
    # blur, without computing the dropped ones (or the strided slice's slow CPU gradient).
    blurred = ops.depthwise_conv(x32, ops.convert_to_tensor(self._kernel), strides=2, padding="valid")
    return ops.cast(blurred, self.compute_dtype)

  def compute_output_shape(self, input_shape):
    b, h, w, c = input_shape
    return (b, None if h is None else (h + 1) // 2, None if w is None else (w + 1) // 2, c)
