"""'Valid' 2-D convolutions whose gradients avoid TensorFlow's slow CPU gradient kernels.

Which kernels are slow depends on the build. With oneDNN (TensorFlow's default on x86 since 2.9; `onednn_enabled`)
the stride-1 gradient kernels are fast: fwd + both gradients of this project's stride-1 convolutions measured
0.43-1.06x the time of the forward-convolution gradients below (2026-12-02, 2-core AVX512 CPU; e.g. a 3x3 256 -> 256
conv on 32x32 at batch 4, 72 vs 157 ms), so `conv2d_valid` keeps TensorFlow's own gradients there. Without oneDNN
(`TF_ENABLE_ONEDNN_OPTS=0`, other CPUs) it uses the rewrite below. The strided small-output case
(`conv2d_patches`) stays faster with oneDNN as well (1.3-3.4x, same measurement).

TensorFlow's Eigen CPU kernels for the convolution gradients (`Conv2DBackpropInput`, `Conv2DBackpropFilter`)
materialize an im2col buffer and scatter it back (col2im); for large images or few output channels they are
several times slower than the forward `Conv2D` kernel (measured on this project's 2-core CPU: the MUNIT
decoder's 5x5 conv 128 -> 64 at 68x68, backprop input 43 ms vs 14 ms; its 7x7 conv 64 -> 3, 26 ms vs 2 ms).
XLA rewrites both gradients as forward convolutions; `conv2d_valid` does the same without XLA:

  y  = x * w                                   (cross-correlation, 'valid')
  dx = pad(dy, k - 1) * rot180(w)^T            (full correlation with the flipped kernel, in/out swapped)
  dw = transpose(x^T * dy^T)                   (batch and channel axes swapped: a conv whose "filter" is dy)

The math is the convolution's exact gradient; only the summation order (float rounding) differs.

Strided convolutions with a small output (the deep end of the PatchGAN discriminators: UNIT's 3x3 stride-2
1024 -> 2048 conv on a 2x2 map) are worse still: the gradient kernels take ~400 ms for 225 M multiply-adds at
batch 4. `conv2d_patches` runs them as one matrix product over the image patches (im2col with
ExtractImagePatches), with both gradients as matrix products and the patches' own gradient for dx:

  P = patches(x)  `[B Ho Wo, kh kw Ci]`;   y = P W;   dW = P^T dy;   dP = (W dy^T)^T;   dx = patches^T(dP)
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from models.layers.padding import crop2d

# The input gradient uses a forward convolution only where that was measured faster: few output channels (the
# 7x7 -> RGB convolution), or large outputs (>= 48x48 pixels) with a non-trivial number of input channels; the
# filter gradient always does (never slower in the measurements, up to 6x faster).
MIN_OUTPUT_PIXELS = 48 * 48
MAX_OUTPUT_CHANNELS = 8
MIN_INPUT_CHANNELS = 16
# Strided convolutions with at most this many output pixels (per image) use conv2d_patches: measured 1.2-10x
# faster (fwd + both gradients) up to 8x8 outputs, slower from 16x16 (the patch matrix grows kh kw / s^2 times
# the input, and its gradient is a sparse scatter).
MAX_PATCH_OUTPUT_PIXELS = 8 * 8


def onednn_enabled() -> bool:
  """Whether TensorFlow runs its CPU kernels through oneDNN in this process (x86 builds by default since TF 2.9;
  `TF_ENABLE_ONEDNN_OPTS=0` turns it off)."""
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  return bool(getattr(_pywrap_util_port, "IsMklEnabled", lambda: False)())


# Stride-1 convolutions keep TensorFlow's own gradients when oneDNN computes them (see the module docstring).
NATIVE_STRIDE1_GRADIENTS = onednn_enabled()


def forward_input_gradient(input_shape, kernel_shape) -> bool:
  """True when dx is expected to be faster as a forward convolution than with Conv2DBackpropInput."""
  h, w = input_shape[1], input_shape[2]
  kh, kw, c_in, c_out = kernel_shape
  if h is None or w is None:
    return c_out <= MAX_OUTPUT_CHANNELS
  pixels = (h - kh + 1) * (w - kw + 1)
  return c_out <= MAX_OUTPUT_CHANNELS or (pixels >= MIN_OUTPUT_PIXELS and c_in >= MIN_INPUT_CHANNELS)


def _rotated(kernel):
  """The kernel of a 'valid' convolution's input gradient: rotated by 180 degrees, channels swapped
  (`[kh, kw, Ci, Co]` -> `[kh, kw, Co, Ci]`)."""
  return tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])


def _input_gradient(dy, kernel, input_shape, forward: bool):
  """dx of a 'valid' stride-1 convolution: pad(dy, k - 1) * rot180(kernel)^T, or Conv2DBackpropInput."""
  kh, kw = kernel.shape[0], kernel.shape[1]
  if forward:
    return tf.nn.conv2d(tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]), _rotated(kernel), 1, "VALID")
  return tf.raw_ops.Conv2DBackpropInput(input_sizes=input_shape, filter=kernel, out_backprop=dy, strides=[1, 1, 1, 1],
                                         padding="VALID")


def _filter_gradient(x, dy):
  """dw[i, j, c, o] = sum_{b, h, w} x[b, h + i, w + j, c] dy[b, h, w, o]: a convolution of x^T (channels as the
  batch, the batch as channels) with dy^T as the filter, `[Ci, kh, kw, Co]` transposed to `[kh, kw, Ci, Co]`."""
  dw = tf.nn.conv2d(tf.transpose(x, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]), 1, "VALID")
  return tf.transpose(dw, [1, 2, 0, 3])


def _make_conv(forward_dx: bool):
  """A 'valid' stride-1 conv op whose filter gradient (and, with forward_dx, input gradient) are forward convs."""

  @tf.custom_gradient
  def conv(x, kernel):
    y = tf.nn.conv2d(x, kernel, 1, "VALID")

    def grad(dy):
      return _input_gradient(dy, kernel, tf.shape(x), forward_dx), _filter_gradient(x, dy)

    return y, grad

  return conv


_CONV_FORWARD_DX, _CONV_NATIVE_DX = _make_conv(True), _make_conv(False)


# Winograd F(4x4, 3x3) (Lavin & Gray, 2016; interpolation points 0, +-1, +-2): a 3x3 'valid' convolution computed
# per 4x4 output tile from the 6x6 input tile d as A^T [(G g G^T) * (B^T d B)] A, i.e. 36 channel matrix products
# per 16 output pixels instead of 144. Both axes at once: the Kronecker products below act on the 36 tile positions
# (row-major: position 6 r + c), so every transform is one matrix product with a constant.
_WINOGRAD_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
_WINOGRAD_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                        [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)
_WINOGRAD_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                        np.float64)
_WINOGRAD_INPUT = np.kron(_WINOGRAD_BT, _WINOGRAD_BT).astype(np.float32)  # [36, 36]: B^T d B
_WINOGRAD_KERNEL = np.kron(_WINOGRAD_G, _WINOGRAD_G).astype(np.float32)  # [36, 9]: G g G^T
_WINOGRAD_OUTPUT = np.kron(_WINOGRAD_AT, _WINOGRAD_AT).astype(np.float32)  # [16, 36]: A^T m A
# float32 3x3 convolutions with at least this many input and output channels take the Winograd path. Measured
# against tf.nn.conv2d with oneDNN (BUILD.md "Fifth pass"; chains of 4 residual convs, forward / forward + both
# gradients, two runs): 256 channels, 32x32 to 64x64 maps, batch 1 to 8: 1.25-2.2x / 1.4-2.0x; 128 channels:
# 1x128x128 1.2-1.3x / 1.25x, 4x32x32 0.8-0.85x / 0.9-1.0x (the threshold stays at 128 for the large maps, where
# the time is); F(2x2, 3x3) did 0.4-0.6x on 64 channels.
WINOGRAD_MIN_CHANNELS = 128


def use_winograd(x, kernel) -> bool:
  """Whether conv2d_valid runs `[B, H, W, Ci]` x `kernel` as `winograd_conv3x3`."""
  kh, kw, c_in, c_out = kernel.shape
  return (kh == 3 and kw == 3 and x.dtype == tf.float32 and min(c_in, c_out) >= WINOGRAD_MIN_CHANNELS)


def _dims(t) -> list:
  """t's shape, static where known, else from tf.shape."""
  dynamic = tf.shape(t)
  return [d if d is not None else dynamic[i] for i, d in enumerate(t.shape.as_list())]


def _tile_index(b, n, m, height, width):
  """`[36, B n m]` int32: the row of each tile pixel in the flattened `[B height width, C]` image, position-major
  (position 6 r + c of the 6x6 tile), tiles in (b, i, j) order; tile (i, j) starts at row 4 i, column 4 j."""
  offsets = tf.range(6)
  rows = 4 * tf.range(n)[None, :] + offsets[:, None]  # [6, n]
  cols = 4 * tf.range(m)[None, :] + offsets[:, None]  # [6, m]
  index = ((tf.range(b)[None, None, :, None, None] * height + rows[:, None, None, :, None]) * width
           + cols[None, :, None, None, :])
  return tf.reshape(index, [36, -1])


def _output_index(b, n, m, height, width):
  """`[B height width]` int32: the row of each output pixel (b, r, c) in the flattened `[16 B n m, Co]` tile
  outputs (position 4 (r mod 4) + c mod 4 of tile (b, r div 4, c div 4))."""
  r, c = tf.range(height), tf.range(width)
  position = (r % 4)[:, None] * 4 + (c % 4)[None, :]
  tile = (tf.range(b)[:, None, None] * n + (r // 4)[None, :, None]) * m + (c // 4)[None, None, :]
  return tf.reshape(position[None] * (b * n * m) + tile, [-1])


def _winograd_tiles(x, border: int = 0):
  """The 6x6 input tiles at stride 4 of x `[B, H, W, C]` zero-padded by `border` on every side, transformed: V
  `[36, T, C]` (T = B n m tiles, position-major, tiles in (b, i, j) order), and (n, m): the tile rows and columns
  (ceil((H' - 2) / 4), ceil((W' - 2) / 4) of the bordered size H' x W').

  x gets the border and the zeros up to 4 n + 2 rows and 4 m + 2 columns in one Pad; one Gather of its pixel rows
  (`_tile_index`) lays the overlapping tiles out position-major, and B^T d B is one product with the 36 x 36
  constant. (The Gather replaced a reshape, two slices and a concat per axis and a transpose: 20-28% less time
  for chains of 256- and 128-channel convs, BUILD.md "Sixth pass".)
  """
  b, h, w, c = _dims(x)
  h, w = h + 2 * border, w + 2 * border
  n, m = (h + 1) // 4, (w + 1) // 4  # ceil((h - 2) / 4)
  x = tf.pad(x, [[0, 0], [border, 4 * n + 2 - h + border], [border, 4 * m + 2 - w + border], [0, 0]])
  d = tf.gather(tf.reshape(x, [-1, c]), _tile_index(b, n, m, 4 * n + 2, 4 * m + 2))
  return tf.reshape(tf.matmul(_WINOGRAD_INPUT, tf.reshape(d, [36, -1])), [36, -1, c]), (n, m)


def _winograd_forward(x, u, border: int = 0):
  """conv3x3_valid(x zero-padded by `border`, g) from the transformed kernel U = G g G^T `[36, Ci, Co]`; also
  returns V and the tiling. The 16 outputs of each tile (A^T M A: one 16 x 36 constant product) are put in place
  and cropped to `[B, H' - 2, W' - 2, Co]` by one Gather (`_output_index`)."""
  b, h, w, _ = _dims(x)
  h, w = h + 2 * border, w + 2 * border
  c_out = u.shape[2]
  v, (n, m) = _winograd_tiles(x, border)
  products = tf.matmul(v, u)
  y = tf.reshape(tf.matmul(_WINOGRAD_OUTPUT, tf.reshape(products, [36, -1])), [-1, c_out])
  y = tf.reshape(tf.gather(y, _output_index(b, n, m, h - 2, w - 2)), [b, h - 2, w - 2, c_out])
  y.set_shape([x.shape[0], *(s + 2 * border - 2 if s is not None else None for s in x.shape[1:3]), c_out])
  return y, v, (n, m)


def _winograd_kernel(kernel):
  c_in, c_out = kernel.shape[2], kernel.shape[3]
  return tf.reshape(tf.matmul(_WINOGRAD_KERNEL, tf.reshape(kernel, [9, c_in * c_out])), [36, c_in, c_out])


@tf.custom_gradient
def winograd_conv3x3(x, kernel):
  """tf.nn.conv2d(x, kernel, 1, "VALID") for a 3x3 kernel by Winograd F(4x4, 3x3), float32.

  x `[B, H, W, Ci]`, kernel `[3, 3, Ci, Co]` -> `[B, H - 2, W - 2, Co]`, any H, W >= 3 (also unknown: the
  exported signatures take any size; the tiling pads with zeros and the output is cropped). The input tiles are
  transformed by one 36 x 36 constant product (B^T d B), each of the 36 tile positions is one channel matrix
  product with the transformed kernel (G g G^T: one 36 x 9 constant product; the 36 products are one batched
  MatMul, measured as fast as 36 separate ones or faster), and one 16 x 36 product (A^T M A)
  gives the 16 output pixels of each tile: 36/144 of the direct multiply-adds. The values differ from the direct
  convolution by float32 rounding (relative 1e-5 of the largest output on this project's maps; F(2x2, 3x3) was
  2e-6 at 16/36).

  Gradients are written out rather than differentiated through the tiling (whose gradient is slices, pads and
  transposes of every intermediate): dx is the same Winograd convolution of dy with a zero border of 2 (in the
  tiling's one Pad) and the kernel rotated by 180 degrees, channels swapped; dkernel = G^T [V^T (A dy_tiles A^T)] G
  per tile position, with V kept from the forward pass.
  """
  u = _winograd_kernel(kernel)
  y, v, (n, m) = _winograd_forward(x, u)

  def grad(dy):
    dx = _winograd_forward(dy, _winograd_kernel(_rotated(kernel)), border=2)[0]
    b, oh, ow, c_out = _dims(dy)
    dy = tf.pad(dy, [[0, 0], [0, 4 * n - oh], [0, 4 * m - ow], [0, 0]])
    dy = tf.reshape(tf.transpose(tf.reshape(dy, [b, n, 4, m, 4, c_out]), [2, 4, 0, 1, 3, 5]), [16, -1])
    dm = tf.reshape(tf.matmul(_WINOGRAD_OUTPUT, dy, transpose_a=True), [36, -1, c_out])
    du = tf.matmul(v, dm, transpose_a=True)
    dkernel = tf.matmul(_WINOGRAD_KERNEL, tf.reshape(du, [36, -1]), transpose_a=True)
    return dx, tf.reshape(dkernel, kernel.shape)

  return y, grad


def conv2d_valid(x, kernel, forward_dx: bool | None = None, native: bool | None = None):
  """Stride-1 'valid' convolution `[B, H, W, Ci]` x `[kh, kw, Ci, Co]` -> `[B, H - kh + 1, W - kw + 1, Co]`.

  Same values as `tf.nn.conv2d(x, kernel, 1, "VALID")` and the same (exact) gradients. `native` (default:
  NATIVE_STRIDE1_GRADIENTS, i.e. oneDNN is on) is plain tf.nn.conv2d with TensorFlow's gradient kernels; otherwise
  as above: the filter gradient by a forward convolution (1x1 kernels: TensorFlow's own), the input gradient as
  `forward_input_gradient` decides (or `forward_dx`).
  """
  kernel = tf.cast(tf.convert_to_tensor(kernel), x.dtype)  # a value, not a variable, for tf.custom_gradient
  if use_winograd(x, kernel):
    return winograd_conv3x3(x, kernel)
  if native is None:
    native = NATIVE_STRIDE1_GRADIENTS
  if native or (kernel.shape[0] == 1 and kernel.shape[1] == 1):
    return tf.nn.conv2d(x, kernel, 1, "VALID")
  if forward_dx is None:
    forward_dx = forward_input_gradient(x.shape, kernel.shape)
  return (_CONV_FORWARD_DX if forward_dx else _CONV_NATIVE_DX)(x, kernel)


def _patches(x, kernel_size, strides):
  """ExtractImagePatches, 'valid': `[B, H, W, Ci]` -> `[B, Ho, Wo, kh kw Ci]` in the kernel's (kh, kw, Ci) order."""
  return tf.image.extract_patches(x, [1, *kernel_size, 1], [1, *strides, 1], [1, 1, 1, 1], "VALID")


def conv2d_patches(x, kernel, strides):
  """'Valid' convolution `[B, H, W, Ci]` x `[kh, kw, Ci, Co]` with `strides` (sh, sw) as a patch matrix product.

  Same values and exact gradients as `tf.nn.conv2d(x, kernel, strides, "VALID")` (see the module docstring);
  meant for small outputs (MAX_PATCH_OUTPUT_PIXELS), where it is several times faster on CPU.
  """
  kernel = tf.cast(tf.convert_to_tensor(kernel), x.dtype)
  kh, kw, c_in, c_out = kernel.shape
  strides = tuple(strides)

  @tf.custom_gradient
  def conv(x, kernel):
    patches = _patches(x, (kh, kw), strides)
    out_shape = tf.concat([tf.shape(patches)[:3], [c_out]], 0)
    p2 = tf.reshape(patches, [-1, kh * kw * c_in])
    k2 = tf.reshape(kernel, [kh * kw * c_in, c_out])
    y = tf.reshape(tf.matmul(p2, k2), out_shape)

    def grad(dy):
      dy2 = tf.reshape(dy, [-1, c_out])
      dw = tf.reshape(tf.matmul(p2, dy2, transpose_a=True), [kh, kw, c_in, c_out])
      # (W dy^T)^T, not dy W^T: with few rows in dy, the transposed-operand product of TF's CPU matmul was 10x
      # slower here (115 vs 5 ms for 4 x 2048 by 2048 x 9216).
      d_patches = tf.reshape(tf.transpose(tf.matmul(k2, dy2, transpose_b=True)), tf.shape(patches))
      with tf.GradientTape() as tape:  # dx: the adjoint of patch extraction (TensorFlow's own gradient)
        tape.watch(x)
        again = _patches(x, (kh, kw), strides)
      return tape.gradient(again, x, output_gradients=d_patches), dw

    return y, grad

  return conv(x, kernel)


def use_patches(input_shape, kernel_shape, strides) -> bool:
  """True for a strided 'valid' convolution with a known output of at most MAX_PATCH_OUTPUT_PIXELS pixels."""
  h, w = input_shape[1], input_shape[2]
  if tuple(strides) == (1, 1) or h is None or w is None:
    return False
  ho = (h - kernel_shape[0]) // strides[0] + 1
  wo = (w - kernel_shape[1]) // strides[1] + 1
  return ho * wo <= MAX_PATCH_OUTPUT_PIXELS


@keras.saving.register_keras_serializable(package="i2i")
class FastConv2D(keras.layers.Conv2D):
  """keras.layers.Conv2D (same weights, same outputs) with faster CPU gradients for 'valid' convolutions:
  stride 1 through conv2d_valid (TensorFlow's own gradients when oneDNN is on), strided ones with small outputs
  through conv2d_patches.

  Every other configuration (larger strided outputs, 'same' padding, dilation, groups, channels_first) is
  Keras' own.
  """

  def convolution_op(self, inputs, kernel):
    if (self.padding == "valid" and self.dilation_rate == (1, 1) and self.groups == 1
        and self.data_format == "channels_last"):
      if self.strides == (1, 1):
        return conv2d_valid(inputs, kernel)
      if use_patches(inputs.shape, kernel.shape, self.strides):
        return conv2d_patches(inputs, kernel, self.strides)
    return super().convolution_op(inputs, kernel)


# Row (and column) phase matrices of a 5-tap filter on a nearest-upsampled signal: output 2m + p reads
# up2(e)[2m + p .. 2m + p + 4] = taps of e[m], e[m + 1], e[m + 2] (e = x edge-padded by 1) with these sums.
_PHASES_5 = np.array([[[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]],
                      [[1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]]], np.float32)  # [phase, tap3, tap5]
# Both axes at once: row (a, b, p, q) sums the 5x5 taps (t, s) of kernel tap (a, b) of output phase (p, q).
_PHASE_TAPS_5 = np.einsum("pat,qbs->abpqts", _PHASES_5, _PHASES_5).reshape(36, 25)


def _phase_kernel(taps, kernel, dtype):
  """The four output phases' kernels of a conv on a nearest-upsampled image, `[k', k', Ci, 4 Co]` (phase blocks
  of Co channels), from the `[k, k, Ci, Co]` kernel and a `[k'^2 * 4, k^2]` tap-sum matrix (rows (a, b, p, q)).

  One matrix product with the constant, then (a, b, phase, i, o) -> (a, b, i, phase, o): half the time of the
  equivalent einsum (MUNIT's 256 -> 128 channels: 1.2 vs 3.5 ms forward).
  """
  k_in, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
  k_out = math.isqrt(taps.shape[0] // 4)
  phase = tf.matmul(taps, tf.reshape(kernel, [k_in * k_in, c_in * c_out]))
  phase = tf.transpose(tf.reshape(phase, [k_out, k_out, 4, c_in, c_out]), [0, 1, 3, 2, 4])
  return tf.cast(tf.reshape(phase, [k_out, k_out, c_in, 4 * c_out]), dtype)


# A 3-tap filter on a nearest-upsampled, reflect-padded-by-1 signal: output 2m + p reads e[m + p] and e[m + p + 1]
# (e = x edge-padded by 1) with these tap sums. Output phase p is stored in channel block a = 1 - p (see
# upsample2x_reflect_conv3), so the rows are ordered by a.
_PHASES_3 = np.array([[[1, 1, 0], [0, 0, 1]],    # a = 0: phase p = 1
                      [[1, 0, 0], [0, 1, 1]]], np.float32)  # a = 1: phase p = 0; [a, tap2, tap3]
_PHASE_TAPS_3 = np.einsum("atk,bsl->tsabkl", _PHASES_3, _PHASES_3).reshape(16, 9)


def upsample2x_reflect_conv3(x, kernel):
  """conv3x3_valid(reflect_pad(nearest_upsample_2x(x), 1), kernel) without building the upsampled image.

  x `[B, H, W, Ci]`, kernel `[3, 3, Ci, Co]` -> `[B, 2H, 2W, Co]` (no bias); U-GAT-IT's up-sampling blocks.
  Let U = nearest_upsample_2x(x). Reflect-padding U by 1 repeats its border pixel, which is x's: it equals
  U(E)[1:-1] with E = x edge-padded by 1. Output row 2m + p then reads E rows m + p and m + p + 1 with the tap
  sums of `_PHASES_3` (p = 0: w0 | w1 + w2; p = 1: w0 + w1 | w2), and columns likewise, so every output phase
  (p, q) is a 2x2 convolution of E at offset (p, q): 16/36 of the multiply-adds. One 2x2 'valid' convolution of E
  with all four phase kernels (4 Co channels, block (a, b) = phase (1 - a, 1 - b)) gives R `[B, H + 1, W + 1,
  4 Co]`. Row 2i + a of depth_to_space(R) is phase p = 1 - a at E offset i = m + p, i.e. output row
  2(i - p) + p = 2i + a - 1 (columns likewise): the output is depth_to_space(R) cropped by one pixel per side.
  """
  kernel = tf.cast(tf.convert_to_tensor(kernel), tf.float32)
  phase_kernel = _phase_kernel(_PHASE_TAPS_3, kernel, x.dtype)
  edge = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC")
  return crop2d(tf.nn.depth_to_space(conv2d_valid(edge, phase_kernel), 2), 1, 1, 1, 1)


def _crop_axis(t, axis: int, start: int, end: int):
  """t[:, start:H - end] (axis 1) or t[:, :, start:W - end] (axis 2) of `[B, H, W, C]`, by crop2d (one Slice)."""
  return crop2d(t, start, end, 0, 0) if axis == 1 else crop2d(t, 0, 0, start, end)


def upsample2x_reflect_conv5(x, kernel):
  """conv5x5_valid(reflect_pad(nearest_upsample_2x(x), 2), kernel) without building the upsampled image.

  x `[B, H, W, Ci]` (H, W >= 2, static), kernel `[5, 5, Ci, Co]` -> `[B, 2H, 2W, Co]` (no bias).
  Let U = nearest_upsample_2x(x). Edge padding U by 2 is U of x edge-padded by 1, and on it each of the four
  output phases (row parity, column parity) is a 3x3 convolution of x with summed taps (`_PHASES_5`): one 3x3
  conv with 4 Co channels and depth_to_space, 9/25 of the multiply-adds ("main"). Reflection differs from edge
  padding only in the outermost padded row (and column) on each side, which holds U[2] - U[0] = x[1] - x[0] more
  (top; x[H-2] - x[H-1] at the bottom). With R = E + D per axis (reflect = edge + that difference),
  R_h R_w U = E_h E_w U + D_h R_w U + E_h D_w U, and the convolution is linear: the two correction terms are a
  single difference row (column) convolved with one kernel row (column), which only the outermost output row
  (column) sees; they are added to main.
  """
  h, w = x.shape[1], x.shape[2]
  kernel = tf.cast(tf.convert_to_tensor(kernel), tf.float32)
  phase_kernel = _phase_kernel(_PHASE_TAPS_5, kernel, x.dtype)
  kernel = tf.cast(kernel, x.dtype)
  main = tf.nn.depth_to_space(conv2d_valid(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC"), phase_kernel), 2)
  # The difference lines: x[1] - x[0] and x[n-2] - x[n-1] along H (rows) or W (columns), from one 2-line crop at
  # each end (each crop's gradient is one Pad to x's size).
  def edge_differences(axis):
    n = x.shape[axis]
    crop = lambda t, start, end: _crop_axis(t, axis, start, end)  # noqa: E731
    first, last = crop(x, 0, n - 2), crop(x, n - 2, 0)
    return crop(first, 1, 0) - crop(first, 0, 1), crop(last, 0, 1) - crop(last, 1, 0)

  kernel_row = lambda t: tf.slice(kernel, [t, 0, 0, 0], [1, -1, -1, -1])  # noqa: E731
  kernel_col = lambda s: tf.slice(kernel, [0, s, 0, 0], [-1, 1, -1, -1])  # noqa: E731
  # D_h R_w U: the difference rows, upsampled and reflect-padded along W (`[B, 1, 2W + 4, Ci]`).
  reflect_w = lambda d: tf.pad(tf.repeat(d, 2, axis=2), [[0, 0], [0, 0], [2, 2], [0, 0]], "REFLECT")  # noqa: E731
  d_top, d_bottom = edge_differences(1)
  top = tf.nn.conv2d(reflect_w(d_top), kernel_row(0), 1, "VALID")  # [B, 1, 2W, Co]
  bottom = tf.nn.conv2d(reflect_w(d_bottom), kernel_row(4), 1, "VALID")
  # E_h D_w U: the difference columns, upsampled and edge-padded along H (`[B, 2H + 4, 1, Ci]`).
  edge_h = lambda d: tf.repeat(tf.pad(d, [[0, 0], [1, 1], [0, 0], [0, 0]], "SYMMETRIC"), 2, axis=1)  # noqa: E731
  d_left, d_right = edge_differences(2)
  left = tf.nn.conv2d(edge_h(d_left), kernel_col(0), 1, "VALID")  # [B, 2H, 1, Co]
  right = tf.nn.conv2d(edge_h(d_right), kernel_col(4), 1, "VALID")
  rows_h, cols_w = 2 * h - 1, 2 * w - 1
  place = lambda t, before_h, after_h, before_w, after_w: tf.pad(  # noqa: E731
      t, [[0, 0], [before_h, after_h], [before_w, after_w], [0, 0]])
  return (main + place(top, 0, rows_h, 0, 0) + place(bottom, rows_h, 0, 0, 0) + place(left, 0, 0, 0, cols_w)
          + place(right, 0, 0, cols_w, 0))
