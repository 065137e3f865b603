"""The shared block vocabulary (models/layers/blocks.py) in U-GAT-IT's uses: torch init, bias-free, ILN and
spectral-normalized ConvBlocks, ResBlock and AdaLINResBlock built for known channels, and the variable order the
trainer's positional checkpoints (`model_variables`) rely on.

Expected values are written out here in numpy from the formulas of znxlwm/UGATIT-pytorch networks.py (ILN, adaILN,
ResnetBlock, ResnetAdaILNBlock) and torch.nn.utils.spectral_norm, never from another implementation.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import layers as L

RNG = np.random.default_rng(16)
EPS = 1e-5


def _np_reflect(x, p):
  return np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)], mode="reflect")


def _np_conv(x, kernel, stride=1):
  """'Valid' cross-correlation [B, H, W, Ci] x [kh, kw, Ci, Co] (torch Conv2d without padding)."""
  kh, kw = kernel.shape[:2]
  ho, wo = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
  out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
  for i in range(ho):
    for j in range(wo):
      patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
      out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, kernel)
  return out


def _np_instance_norm(x):
  return (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + EPS)


def _np_iln_mix(x, rho):
  """rho * IN(x) + (1 - rho) * LN(x) with torch.var's unbiased variances (UGATIT-pytorch adaILN / ILN)."""
  x_in = (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(x.var(axis=(1, 2), keepdims=True, ddof=1) + EPS)
  x_ln = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(1, 2, 3), keepdims=True, ddof=1) + EPS)
  return rho * x_in + (1 - rho) * x_ln


def _leaf_names(layer):
  return [v.path.rsplit("/", 1)[-1] for v in layer.variables]


def _assign_random(variable, scale=0.3):
  value = RNG.normal(0.0, scale, size=variable.shape).astype(np.float32)
  variable.assign(value)
  return value.astype(np.float64)


def test_conv_block_torch_init_without_bias_exists_before_build():
  keras.utils.set_random_seed(0)
  block = L.ConvBlock(6, 3, 1, 1, init="torch", use_bias=False, in_channels=4)
  assert block.conv is not None and not block.conv.use_bias  # created in __init__, like torch's nn.Conv2d(4, 6, 3)
  block.build((None, 8, 8, 4))
  assert _leaf_names(block) == ["kernel"]
  kernel = np.abs(block.conv.kernel.numpy())
  bound = 1 / np.sqrt(4 * 3 * 3)  # torch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in k k
  assert kernel.max() <= bound + 1e-7 and kernel.max() > 0.9 * bound
  biased = L.ConvBlock(256, 3, init="torch", in_channels=4)
  biased.build((None, 8, 8, 4))
  bias = np.abs(biased.conv.bias.numpy())
  assert bias.max() <= bound + 1e-7 and bias.max() > 0.9 * bound


def test_conv_block_made_for_other_channels_says_so():
  block = L.ConvBlock(6, 3, 1, 1, init="torch", in_channels=4, name="down0")
  with pytest.raises(ValueError, match=r"ConvBlock down0 was made for 4 input channels, got input shape "
                                       r"\(None, 8, 8, 3\)"):
    block.build((None, 8, 8, 3))
  with pytest.raises(ValueError, match="Unknown init 'xavier'"):
    L.ConvBlock(6, 3, init="xavier")


def test_conv_block_iln_relu_golden():
  x = RNG.normal(size=(2, 5, 6, 2)).astype(np.float32)
  block = L.ConvBlock(3, 3, 1, 1, "reflect", "iln", "relu", init="torch", use_bias=False, in_channels=2)
  block.build(x.shape)
  kernel = _assign_random(block.conv.kernel)
  rho = np.array([0.0, 0.4, 1.0])
  block.norm_layer.rho.assign(rho)
  gamma, beta = _assign_random(block.norm_layer.gamma), _assign_random(block.norm_layer.beta)
  expected = np.maximum(_np_iln_mix(_np_conv(_np_reflect(x, 1), kernel), rho) * gamma + beta, 0.0)
  np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_conv_block_spectral_norm_eval_and_one_power_iteration_in_training():
  x = RNG.normal(size=(2, 8, 8, 3)).astype(np.float32)
  block = L.ConvBlock(4, 4, 2, 1, "reflect", "none", "leaky_relu", 0.2, init="torch", spectral_norm=True,
                      in_channels=3)
  block.build(x.shape)
  sn = block.conv
  kernel, bias = sn.layer.kernel.numpy().astype(np.float64), sn.layer.bias.numpy().astype(np.float64)
  matrix = kernel.reshape(-1, 4)  # W_k [kh kw Ci, Co] = torch's W_mat^T with rows in Keras order
  u, v = sn.u.numpy().astype(np.float64), sn.v.numpy().astype(np.float64)

  def expected(sigma):
    y = _np_conv(_np_reflect(x, 1), kernel / sigma, stride=2) + bias
    return np.where(y > 0, y, 0.2 * y)

  np.testing.assert_allclose(block(x, training=False).numpy(), expected(v @ matrix @ u), rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(sn.u.numpy(), u.astype(np.float32))  # eval: u, v stay
  v1 = matrix @ u / np.linalg.norm(matrix @ u)  # torch: v <- normalize(W^T u), u <- normalize(W v)
  u1 = matrix.T @ v1 / np.linalg.norm(matrix.T @ v1)
  np.testing.assert_allclose(block(x, training=True).numpy(), expected(v1 @ matrix @ u1), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(sn.u.numpy(), u1, rtol=1e-5, atol=1e-6)


def test_res_block_for_known_channels_is_ugatit_resnet_block():
  x = RNG.normal(size=(2, 5, 5, 3)).astype(np.float32)
  block = L.ResBlock("reflect", "torch", use_bias=False, channels=3)
  assert block.block1 is not None and block.block2 is not None  # created in __init__
  block.build(x.shape)
  assert _leaf_names(block) == ["kernel", "kernel"]
  k1, k2 = _assign_random(block.block1.conv.kernel), _assign_random(block.block2.conv.kernel)
  # UGATIT-pytorch ResnetBlock: x + IN(conv(pad(ReLU(IN(conv(pad(x))))))), convs without bias.
  h = np.maximum(_np_instance_norm(_np_conv(_np_reflect(x, 1), k1)), 0.0)
  expected = x + _np_instance_norm(_np_conv(_np_reflect(h, 1), k2))
  np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_adalin_res_block_golden_and_config():
  x = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
  gamma, beta = RNG.normal(size=(2, 3)).astype(np.float32), RNG.normal(size=(2, 3)).astype(np.float32)
  block = L.AdaLINResBlock(3)
  block.build([x.shape, gamma.shape, beta.shape])
  assert _leaf_names(block) == ["kernel", "rho", "kernel", "rho"]  # conv1, norm1, conv2, norm2
  k1, k2 = _assign_random(block.conv1.conv.kernel), _assign_random(block.conv2.conv.kernel)
  rho1, rho2 = np.array([0.1, 0.5, 0.9]), np.array([1.0, 0.3, 0.0])
  block.norm1.rho.assign(rho1)
  block.norm2.rho.assign(rho2)
  g, b = gamma[:, None, None, :], beta[:, None, None, :]
  # UGATIT-pytorch ResnetAdaILNBlock: gamma, beta shared by both adaILN layers.
  h = np.maximum(_np_iln_mix(_np_conv(_np_reflect(x, 1), k1), rho1) * g + b, 0.0)
  expected = x + _np_iln_mix(_np_conv(_np_reflect(h, 1), k2), rho2) * g + b
  np.testing.assert_allclose(block([x, gamma, beta]).numpy(), expected, rtol=1e-4, atol=1e-4)
  clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(block))
  assert clone.get_config() == block.get_config()


def test_variable_order_is_what_positional_checkpoints_saved():
  # model_dir_lib.model_checkpoint saves model.variables by position: a block must keep listing its variables in the
  # order checkpoints were written with. With in_channels (U-GAT-IT) the conv comes first, as its [pad, conv,
  # norm] layer list did; without (MUNIT, UNIT) the conv is created in build, after the norm.
  eager = L.ConvBlock(4, 3, 1, 1, norm="iln", init="torch", use_bias=False, in_channels=2)
  eager.build((1, 6, 6, 2))
  assert _leaf_names(eager) == ["kernel", "rho", "gamma", "beta"]
  lazy = L.ConvBlock(4, 3, 1, 1, norm="ln")
  lazy.build((1, 6, 6, 2))
  assert _leaf_names(lazy) == ["gamma", "beta", "kernel", "bias"]
  sn = L.ConvBlock(4, 4, 2, 1, spectral_norm=True, init="torch", in_channels=2)
  sn.build((1, 6, 6, 2))
  assert _leaf_names(sn) == ["u", "v", "kernel", "bias"]
  clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(sn))
  assert clone.get_config() == sn.get_config()


def test_seeded_weights_do_not_depend_on_build_order():
  # Keras draws an unseeded initializer's seed when the initializer is made: a ConvBlock given in_channels makes
  # them in __init__, so its weights under a global seed depend on construction order only.
  def kernels(build_reversed):
    keras.utils.set_random_seed(3)
    blocks = [L.ConvBlock(4, 3, init="torch", in_channels=2) for _ in range(2)]
    for block in (blocks[::-1] if build_reversed else blocks):
      block.build((1, 6, 6, 2))
    return [tf.identity(block.conv.kernel).numpy() for block in blocks]

  in_order, reversed_ = kernels(False), kernels(True)
  for a, b in zip(in_order, reversed_):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(in_order[0], in_order[1])
