"""Spectral normalization exactly as `torch.nn.utils.spectral_norm` (Miyato et al., ICLR 2018), for Dense and Conv2D.

torch keeps the raw weight (`weight_orig`, the trainable parameter) and two buffers `weight_u` [out] and
`weight_v` [in * kh * kw]. Before every forward:

  W_mat = weight_orig reshaped to a matrix [out, in * kh * kw]
  training only, without gradient, u and v updated in place (one power iteration by default):
      v <- normalize(W_mat^T u)        u <- normalize(W_mat v)        normalize(x) = x / max(||x||_2, eps)
  sigma = u . (W_mat v)                 WITH gradient (u, v constants): d sigma / d W_mat = u v^T
  W     = weight_orig / sigma           the layer runs with W

So the gradient flows through sigma into weight_orig, the optimizer (and its weight decay) acts on
weight_orig, and in eval mode u, v are left as they are. `keras.layers.SpectralNormalization` differs: it writes
W / sigma back into the kernel at each training call and passes no gradient through sigma.

Here the raw weight is the wrapped layer's own `kernel` (Keras layout: Dense [in, out], Conv2D
[kh, kw, in, out]) and the matrix is taken in that layout: W_k = reshape(kernel, [K, out]) with K = kh kw in,
i.e. W_mat^T with its rows permuted from torch's (in, kh, kw) order to Keras' (kh, kw, in) order. `u` [out] is
torch's `weight_u`; `v` [K] is torch's `weight_v` permuted to (kh, kw, in) order (`torch_v_to_keras`), so that

  v <- normalize(W_k u)      u <- normalize(W_k^T v)      sigma = v . (W_k u)

are torch's formulas term by term. u and v are non-trainable variables that every replica updates locally
(synchronization ON_READ, aggregation ONLY_FIRST_REPLICA: the power iteration depends on the weights only, which
are the same on every replica, so all replicas hold the same u, v; a checkpoint saves the first replica's).
Each call in training mode runs its own power iteration, as each torch forward does.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

EPSILON = 1e-12  # torch.nn.utils.spectral_norm's default eps


def _normalize(x: tf.Tensor, epsilon: float) -> tf.Tensor:
  """x / max(||x||_2, epsilon) for a vector (torch.nn.functional.normalize(x, dim=0, eps))."""
  return x / tf.maximum(tf.norm(x), epsilon)


def torch_v_to_keras(v: np.ndarray, kernel_shape) -> np.ndarray:
  """torch's `weight_v` [in * kh * kw] (order in, kh, kw) -> our `v` [kh * kw * in] for a Keras kernel shape.

  Dense kernels [in, out] keep the order (v has `in` entries).
  """
  v = np.asarray(v).reshape(-1)
  if len(kernel_shape) == 2:
    return v
  kh, kw, c_in = kernel_shape[0], kernel_shape[1], kernel_shape[2]
  return np.transpose(v.reshape(c_in, kh, kw), (1, 2, 0)).reshape(-1)


@keras.saving.register_keras_serializable(package="i2i")
class RandomUnitVector(keras.initializers.Initializer):
  """A N(0, I) draw divided by its norm (torch's initial u and v: `normalize(new_empty(n).normal_(0, 1))`)."""

  def __init__(self, seed=None):
    self.seed = seed

  def __call__(self, shape, dtype=None):
    x = keras.random.normal(shape, dtype=dtype, seed=self.seed)
    return x / keras.ops.maximum(keras.ops.norm(keras.ops.reshape(x, [-1])), EPSILON)

  def get_config(self):
    return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="i2i")
class SpectralNorm(keras.layers.Wrapper):
  """torch-style spectral normalization of a Dense or Conv2D layer: `SpectralNorm(keras.layers.Dense(1))`.

  Input and output are those of the wrapped layer. Variables: the wrapped layer's kernel (= torch's
  `weight_orig`) and bias, and the non-trainable `u` [out], `v` [kh * kw * in] (see the module docstring).

  Args:
    layer: a keras.layers.Dense or keras.layers.Conv2D (any subclass, e.g. FastConv2D).
    power_iterations: power iterations per training call (torch's n_power_iterations, default 1).
    epsilon: the normalization's eps (torch's default 1e-12).
  """

  def __init__(self, layer, power_iterations: int = 1, epsilon: float = EPSILON, **kwargs):
    super().__init__(layer, **kwargs)
    if not isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
      raise ValueError(f"SpectralNorm wraps a keras.layers.Dense or Conv2D; got {type(layer).__name__}.")
    if power_iterations < 1:
      raise ValueError(f"SpectralNorm needs power_iterations >= 1, got {power_iterations}.")
    self.power_iterations = int(power_iterations)
    self.epsilon = float(epsilon)

  def build(self, input_shape):
    if not self.layer.built:
      self.layer.build(input_shape)
    kernel_shape = tuple(self.layer.kernel.shape)
    if len(kernel_shape) not in (2, 4):
      raise ValueError(f"SpectralNorm expects a Dense [in, out] or Conv2D [kh, kw, in, out] kernel; got shape "
                       f"{kernel_shape}.")
    out = kernel_shape[-1]
    k = int(np.prod(kernel_shape[:-1]))
    with keras.name_scope(self.name, caller=self):
      self.u = keras.Variable(RandomUnitVector(), shape=(out,), dtype=self.layer.kernel.dtype, trainable=False,
                              name="u", aggregation="only_first_replica", synchronization="on_read")
      self.v = keras.Variable(RandomUnitVector(), shape=(k,), dtype=self.layer.kernel.dtype, trainable=False,
                              name="v", aggregation="only_first_replica", synchronization="on_read")
    self.built = True

  def normalized_kernel(self, training: bool = False) -> tf.Tensor:
    """W = kernel / sigma (kernel's shape and dtype); in training, first updates u, v by power iteration."""
    kernel = tf.convert_to_tensor(self.layer.kernel.value)
    matrix = tf.reshape(kernel, [-1, kernel.shape[-1]])  # W_k [K, out] = W_mat^T (rows in Keras order)
    u = tf.convert_to_tensor(self.u.value)
    v = tf.convert_to_tensor(self.v.value)
    if training:
      fixed = tf.stop_gradient(matrix)
      for _ in range(self.power_iterations):
        v = _normalize(tf.linalg.matvec(fixed, u), self.epsilon)
        u = _normalize(tf.linalg.matvec(fixed, v, transpose_a=True), self.epsilon)
      self.u.assign(u)
      self.v.assign(v)
    sigma = tf.tensordot(v, tf.linalg.matvec(matrix, u), 1)  # v . (W_k u) = u . (W_mat v)
    return kernel / sigma

  def call(self, inputs, training=None):
    layer = self.layer
    kernel = tf.cast(self.normalized_kernel(bool(training)), layer.compute_dtype)
    inputs = tf.cast(inputs, layer.compute_dtype)
    if isinstance(layer, keras.layers.Dense):
      outputs = tf.linalg.matmul(inputs, kernel) if inputs.shape.rank == 2 else tf.tensordot(inputs, kernel, 1)
    else:
      if layer.data_format != "channels_last":
        raise ValueError("SpectralNorm supports channels_last convolutions only.")
      outputs = layer.convolution_op(inputs, kernel)
    if layer.use_bias:
      outputs = outputs + tf.cast(layer.bias, layer.compute_dtype)
    if layer.activation is not None:
      outputs = layer.activation(outputs)
    return outputs

  def compute_output_shape(self, input_shape):
    return self.layer.compute_output_shape(input_shape)

  def get_config(self):
    return {**super().get_config(), "power_iterations": self.power_iterations, "epsilon": self.epsilon}
