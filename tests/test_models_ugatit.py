"""Tests of U-GAT-IT: AdaLIN/ILN/CAM layers, networks, parameter counts, config, train step, translation.

Golden values come from the formulas of znxlwm/UGATIT-pytorch networks.py written out in numpy here; the
parameter counts come from instantiating that repository's networks.py (CPU PyTorch, outside this project):
  ResnetGenerator(3, 3, ngf=64, n_blocks=4, img_size=256, light=False) -> 278,959,808
  ResnetGenerator(3, 3, ngf=64, n_blocks=4, img_size=256, light=True)  ->  10,589,888
  Discriminator(3, ndf=64, n_layers=7) (global) -> 53,130,176;  Discriminator(3, 64, n_layers=5) (local) -> 3,290,560
  ResnetGenerator(3, 3, ngf=8, n_blocks=2, img_size=32, light=True) -> 94,040 (light=False: 158,552)
  Discriminator(3, 8, n_layers=5) -> 52,920;  Discriminator(3, 8, n_layers=4) -> 13,336
(torch counts `parameters()`: spectral norm's weight_orig and bias, not its u/v buffers.)
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from components import model_dir as model_dir_lib
from models.layers.adalin import ILN, AdaLIN, RhoClipper
from models.layers.cam import CAM
from models.optim import AdamL2
from models.ugatit import FAMILY, UGATIT, UGATITConfig
from models.ugatit.config import PRESETS, discriminator_output_size
from models.ugatit.model import normalize_heatmap
from models.ugatit.networks import Discriminator, Generator
from models.ugatit.train import heatmap_to_rgb
from tests.call_log import record_calls

EPS = 1e-5


def _count(net) -> int:
  return int(sum(np.prod(v.shape) for v in net.trainable_variables))


def _np_in(x, eps=EPS):
  """Instance norm with torch.var's unbiased variance, [B, H, W, C]."""
  n = x.shape[1] * x.shape[2]
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = ((x - mean) ** 2).sum(axis=(1, 2), keepdims=True) / (n - 1)
  return (x - mean) / np.sqrt(var + eps)


def _np_ln(x, eps=EPS):
  """Layer norm over H, W, C with unbiased variance, [B, H, W, C]."""
  n = x.shape[1] * x.shape[2] * x.shape[3]
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  var = ((x - mean) ** 2).sum(axis=(1, 2, 3), keepdims=True) / (n - 1)
  return (x - mean) / np.sqrt(var + eps)


@pytest.fixture(name="rng")
def _rng():
  keras.utils.set_random_seed(7)
  return np.random.default_rng(7)


@pytest.fixture(scope="module", name="tiny_model")
def _tiny_model():
  keras.utils.set_random_seed(3)
  return FAMILY.build_model(PRESETS["tiny"])


# ----------------------------------------------------------------------------------------------- layers

def test_adalin_two_pixel_analytic_golden():
  # One channel with pixels [0, 2]: mean 1, unbiased var 2 (biased would be 1) -> IN = -+1/sqrt(2 + eps).
  x = np.array([0.0, 2.0], np.float32).reshape(1, 1, 2, 1)
  layer = AdaLIN()
  out = layer([x, np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32)]).numpy().ravel()
  expected = np.array([-1.0, 1.0]) / math.sqrt(2.0 + EPS)
  np.testing.assert_allclose(out, expected, rtol=1e-6)
  # gamma = 3, beta = -1 scale and shift the normalized values.
  out = layer([x, np.full((1, 1), 3.0, np.float32), np.full((1, 1), -1.0, np.float32)]).numpy().ravel()
  np.testing.assert_allclose(out, 3.0 * expected - 1.0, rtol=1e-6)


def test_adalin_golden_values_from_formula(rng):
  x = rng.normal(size=(2, 3, 2, 4)).astype(np.float32) * 3 + 1
  gamma = rng.normal(size=(2, 4)).astype(np.float32)
  beta = rng.normal(size=(2, 4)).astype(np.float32)
  layer = AdaLIN()
  layer.build([x.shape, gamma.shape, beta.shape])
  np.testing.assert_allclose(layer.rho.numpy(), np.full(4, 0.9), rtol=1e-7)  # reference init 0.9
  rho = np.array([0.0, 0.25, 0.8, 1.0], np.float32)
  layer.rho.assign(rho)
  expected = (rho * _np_in(x) + (1 - rho) * _np_ln(x)) * gamma[:, None, None, :] + beta[:, None, None, :]
  np.testing.assert_allclose(layer([x, gamma, beta]).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_adalin_gradients_equal_float64_autodiff_of_the_two_norm_formula(rng):
  # The layer computes the mix as one affine map with layer statistics derived from the instance ones; its
  # gradients (x, rho, gamma, beta) must equal autodiff of the plain formula, normalized twice, in float64.
  # Channel 1 is nearly constant over the image (mean 20, spread 0.05): un-centred x * s - mu * s loses
  # float32 accuracy there (the U-GAT-IT official training step caught a 1% gradient error that way).
  x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32) * 2 + 3
  x[..., 1] = 20 + 0.05 * rng.normal(size=x.shape[:3])
  gamma, beta = (rng.normal(size=(2, 5)).astype(np.float32) for _ in range(2))
  rho = np.array([0.0, 0.3, 0.5, 0.9, 1.0], np.float32)
  dy = rng.normal(size=x.shape).astype(np.float32)

  def plain(x, rho, gamma, beta):
    def norm(axes):
      n = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
      mean = tf.reduce_mean(x, axes, keepdims=True)
      var = tf.reduce_sum(tf.square(x - mean), axes, keepdims=True) / (n - 1)
      return (x - mean) / tf.sqrt(var + EPS)
    return (rho * norm([1, 2]) + (1 - rho) * norm([1, 2, 3])) * gamma[:, None, None] + beta[:, None, None]

  layer = AdaLIN()
  layer.build([x.shape, gamma.shape, beta.shape])
  layer.rho.assign(rho)
  results = []
  for fn, dtype in ((lambda x, rho, g, b: layer([x, g, b]), np.float32), (plain, np.float64)):
    args = [tf.constant(a.astype(dtype)) for a in (x, rho, gamma, beta)]
    if dtype == np.float32:
      args[1] = layer.rho.value  # the layer reads its own rho (assigned above)
    with tf.GradientTape() as tape:
      tape.watch(args)
      y = fn(*args)
      loss = tf.reduce_sum(y * tf.cast(dy, y.dtype))
    results.append([y.numpy(), *(g.numpy() for g in tape.gradient(loss, args))])
  for name, ours, expected in zip(("y", "dx", "drho", "dgamma", "dbeta"), *results):
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4, err_msg=name)


def test_adalin_rho_one_is_instance_norm_rho_zero_is_layer_norm(rng):
  x = rng.normal(size=(2, 4, 3, 5)).astype(np.float32) * 2 - 0.5
  ones, zeros = np.ones((2, 5), np.float32), np.zeros((2, 5), np.float32)
  layer = AdaLIN()
  layer.build([x.shape, ones.shape, zeros.shape])
  # Keras' built-ins use the biased variance: unbiased = biased * n / (n - 1), hence the rescaling.
  for rho, n, builtin in ((1.0, 4 * 3, keras.layers.GroupNormalization), (0.0, 4 * 3 * 5, None)):
    layer.rho.assign(np.full(5, rho, np.float32))
    k = (n - 1) / n
    if builtin is None:
      norm = keras.layers.LayerNormalization(axis=[1, 2, 3], epsilon=EPS * k, center=False, scale=False)
    else:
      norm = builtin(groups=-1, epsilon=EPS * k, center=False, scale=False)
    np.testing.assert_allclose(layer([x, ones, zeros]).numpy(), math.sqrt(k) * norm(x).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_iln_golden_values_and_init(rng):
  x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  layer = ILN()
  out = layer(x).numpy()
  np.testing.assert_allclose(layer.rho.numpy(), np.zeros(4))  # reference init: rho 0, gamma 1, beta 0
  np.testing.assert_allclose(layer.gamma.numpy(), np.ones(4))
  np.testing.assert_allclose(layer.beta.numpy(), np.zeros(4))
  np.testing.assert_allclose(out, _np_ln(x), rtol=1e-5, atol=1e-5)
  rho, gamma, beta = (np.array(v, np.float32) for v in ([1.0, 0.5, 0.1, 0.0], [2, 1, -1, 0.5], [0, 1, 2, 3]))
  layer.rho.assign(rho), layer.gamma.assign(gamma), layer.beta.assign(beta)
  expected = (rho * _np_in(x) + (1 - rho) * _np_ln(x)) * gamma + beta
  np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("optimizer", [lambda: keras.optimizers.SGD(2.0), lambda: AdamL2(1e-4, learning_rate=2.0)])
def test_rho_constraint_holds_after_optimizer_update(optimizer):
  adalin, iln = AdaLIN(), ILN()
  x = np.random.default_rng(0).normal(size=(1, 2, 2, 2)).astype(np.float32)
  adalin.build([x.shape, (1, 2), (1, 2)])
  iln.build(x.shape)
  opt = optimizer()
  # A step that would move rho by about +-2 (SGD: +-10): out of [0, 1] from 0.9 (AdaLIN) and 0 (ILN).
  grads = [tf.constant([-5.0, 5.0]), tf.constant([-5.0, 5.0])]
  opt.apply_gradients(zip(grads, [adalin.rho, iln.rho]))
  np.testing.assert_allclose(adalin.rho.numpy(), [1.0, 0.0])
  np.testing.assert_allclose(iln.rho.numpy(), [1.0, 0.0])
  assert isinstance(adalin.rho.constraint, RhoClipper)


def test_rho_clipper_values_config_and_bad_range():
  clip = RhoClipper(0.0, 1.0)
  np.testing.assert_allclose(clip(tf.constant([-0.5, 0.3, 1.7])).numpy(), [0.0, 0.3, 1.0])
  again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(clip))
  assert isinstance(again, RhoClipper) and again.get_config() == clip.get_config()
  with pytest.raises(ValueError, match="min_value < max_value"):
    RhoClipper(1.0, 0.0)


def test_layer_configs_round_trip():
  for layer in (AdaLIN(epsilon=1e-3, rho_init=0.5), ILN(epsilon=1e-4, rho_init=0.2),
                CAM(leaky_relu_slope=0.2, spectral_norm=True)):
    again = layer.__class__.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def test_layer_shape_errors_name_the_shape():
  with pytest.raises(ValueError, match=r"gamma of shape \[B, 4\].*\(2, 3\)"):
    AdaLIN()([np.zeros((2, 3, 3, 4), np.float32), np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32)])
  with pytest.raises(ValueError, match="at least 2 spatial positions"):
    ILN()(np.zeros((1, 1, 1, 4), np.float32))


def _np_cam(x, w_gap_logit, w_gmp_logit, w_gap_feat, w_gmp_feat, conv_k, conv_b, slope):
  """The CAM formula of networks.py in numpy: x [B, H, W, C]."""
  gap_logit = x.mean(axis=(1, 2)) @ w_gap_logit
  gmp_logit = x.max(axis=(1, 2)) @ w_gmp_logit
  cat = np.concatenate([x * w_gap_feat, x * w_gmp_feat], axis=-1)
  f = np.einsum("bhwi,io->bhwo", cat, conv_k) + conv_b
  f = np.where(f > 0, f, slope * f)
  return f, np.stack([gap_logit, gmp_logit], axis=1), f.sum(axis=-1, keepdims=True)


def test_cam_golden_values_generator(rng):
  x = rng.normal(size=(2, 3, 2, 4)).astype(np.float32)
  cam = CAM()
  cam.build(x.shape)
  w_gap, w_gmp = (rng.normal(size=(4, 1)).astype(np.float32) for _ in range(2))
  conv_k = rng.normal(size=(1, 1, 8, 4)).astype(np.float32)
  conv_b = rng.normal(size=(4,)).astype(np.float32)
  cam.gap_fc.kernel.assign(w_gap), cam.gmp_fc.kernel.assign(w_gmp)
  cam.conv1x1.kernel.assign(conv_k), cam.conv1x1.bias.assign(conv_b)
  features, cam_logit, heatmap = cam(x)
  ef, el, eh = _np_cam(x, w_gap[:, 0], w_gmp[:, 0], w_gap[:, 0], w_gmp[:, 0], conv_k[0, 0], conv_b, 0.0)
  np.testing.assert_allclose(features.numpy(), ef, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(cam_logit.numpy(), el, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(heatmap.numpy(), eh, rtol=1e-5, atol=1e-4)
  assert heatmap.shape == (2, 3, 2, 1) and cam_logit.shape == (2, 2)


def test_cam_golden_values_discriminator_spectral_norm(rng):
  # Logits use w / ||w|| (the spectral norm of a C x 1 matrix), the re-weighting uses the stored w
  # (torch's weight_orig), the activation is LeakyReLU(0.2) and the 1x1 conv is not normalized.
  x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  cam = CAM(leaky_relu_slope=0.2, spectral_norm=True)
  cam.build(x.shape)
  w_gap, w_gmp = (rng.normal(size=(4, 1)).astype(np.float32) * 3 for _ in range(2))
  conv_k = rng.normal(size=(1, 1, 8, 4)).astype(np.float32)
  conv_b = rng.normal(size=(4,)).astype(np.float32)
  cam.gap_fc.layer.kernel.assign(w_gap), cam.gmp_fc.layer.kernel.assign(w_gmp)
  cam.conv1x1.kernel.assign(conv_k), cam.conv1x1.bias.assign(conv_b)
  features, cam_logit, heatmap = cam(x, training=True)
  gap_sn, gmp_sn = w_gap[:, 0] / np.linalg.norm(w_gap), w_gmp[:, 0] / np.linalg.norm(w_gmp)
  ef, el, eh = _np_cam(x, gap_sn, gmp_sn, w_gap[:, 0], w_gmp[:, 0], conv_k[0, 0], conv_b, 0.2)
  np.testing.assert_allclose(cam_logit.numpy(), el, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(features.numpy(), ef, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(heatmap.numpy(), eh, rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------------------------- networks

def test_parameter_counts_match_ugatit_pytorch():
  keras.utils.set_random_seed(0)
  light = Generator(ch=64, n_res=4, image_size=256, light=True)
  light.build((None, None, None, 3))
  assert _count(light) == 10_589_888
  # Full at 256 px holds ~1.1 GB of float32 weights: build it at 32 px and add the size-dependent part
  # of the first MLP layer, (S/4)^2 * 4ch * 4ch, analytically.
  full32 = Generator(ch=64, n_res=4, image_size=32, light=False)
  full32.build((None, 32, 32, 3))
  assert _count(full32) + (64 * 64 - 8 * 8) * 256 * 256 == 278_959_808
  local = Discriminator(ch=64, n_layers=5)
  local.build((None, None, None, 3))
  assert _count(local) == 3_290_560
  global_ = Discriminator(ch=64, n_layers=7)
  global_.build((None, None, None, 3))
  assert _count(global_) == 53_130_176


def test_tiny_parameter_counts_match_ugatit_pytorch(tiny_model):
  assert _count(tiny_model.gen_a2b) == _count(tiny_model.gen_b2a) == 94_040
  assert _count(tiny_model.dis_global_a) == 52_920
  assert _count(tiny_model.dis_local_b) == 13_336
  full = Generator(ch=8, n_res=2, image_size=32, light=False)
  full.build((None, 32, 32, 3))
  assert _count(full) == 158_552


def test_discriminator_output_sizes_match_reference():
  x = tf.zeros([1, 256, 256, 3])
  for n_layers, size in ((7, 6), (5, 30)):
    logit, cam_logit, heatmap = Discriminator(ch=2, n_layers=n_layers)(x)
    assert logit.shape == (1, size, size, 1) and cam_logit.shape == (1, 2)
    assert heatmap.shape == (1, size + 1, size + 1, 1)
    assert discriminator_output_size(256, n_layers) == size


def test_torch_default_initialization(tiny_model):
  gen = tiny_model.gen_a2b
  for variable, fan_in in ((gen.down_sampling[0].conv.kernel, 3 * 7 * 7), (gen.fc[0].kernel, 32),
                           (gen.cam.conv1x1.kernel, 64), (gen.cam.conv1x1.bias, 64),
                           (tiny_model.dis_local_a.blocks[0].conv.layer.bias, 3 * 4 * 4)):
    values = np.abs(variable.numpy())
    bound = 1 / math.sqrt(fan_in)
    assert values.max() <= bound + 1e-7, variable.path
    assert values.max() > 0.5 * bound, variable.path  # uniform over the whole range, not a narrow init


def test_full_generator_rejects_other_sizes_naming_them():
  gen = Generator(ch=4, n_res=1, image_size=32, light=False)
  gen.build((None, 32, 32, 3))
  with pytest.raises(ValueError, match="needs 32x32 images.*got 64x64"):
    gen(tf.zeros([1, 64, 64, 3]))
  fn = tf.function(lambda x: gen(x)[0], input_signature=[tf.TensorSpec([None, None, None, 3])])
  with pytest.raises(tf.errors.InvalidArgumentError, match="needs 32x32 images"):
    fn(tf.zeros([1, 48, 48, 3]))
  assert fn(tf.zeros([1, 32, 32, 3])).shape == (1, 32, 32, 3)


def test_light_generator_is_fully_convolutional(tiny_model):
  x = tf.random.uniform([2, 24, 40, 3], -1, 1, seed=1)
  image, cam_logit, heatmap = tiny_model.gen_b2a(x)
  assert image.shape == (2, 24, 40, 3) and cam_logit.shape == (2, 2) and heatmap.shape == (2, 6, 10, 1)
  assert np.all(np.abs(image.numpy()) <= 1.0)
  with pytest.raises(ValueError, match="multiples of 4"):
    tiny_model.gen_b2a(tf.zeros([1, 30, 32, 3]))


def test_networks_run_under_mixed_float16(rng):
  x = rng.uniform(-1, 1, size=(1, 32, 32, 3)).astype(np.float32)
  keras.utils.set_random_seed(1)
  gen32, dis32 = Generator(ch=8, n_res=1, image_size=32, light=False), Discriminator(ch=8, n_layers=4)
  # One training call runs the spectral norms' power iteration: from torch's random initial u, v the eval-mode
  # sigma = u . (W v) can be tiny and W / sigma overflow float16 (torch's eval before any training call too).
  dis32(x, training=True)
  ref_image, ref_cam, _ = gen32(x)
  ref_logit = dis32(x)[0]
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    gen16, dis16 = Generator(ch=8, n_res=1, image_size=32, light=False), Discriminator(ch=8, n_layers=4)
    gen16.build((None, 32, 32, 3)), dis16.build((None, None, None, 3))
    gen16.set_weights(gen32.get_weights()), dis16.set_weights(dis32.get_weights())
    image, cam_logit, heatmap = gen16(x)
    logit = dis16(x)[0]
    adalin = gen16.decoder_blocks[0].norm1
    assert adalin.compute_dtype == "float16" and adalin.rho.dtype == "float32"
  finally:
    keras.mixed_precision.set_global_policy("float32")
  for out in (image, cam_logit, heatmap, logit):
    assert out.dtype == tf.float32 and np.all(np.isfinite(out.numpy()))
  np.testing.assert_allclose(image.numpy(), ref_image.numpy(), atol=0.05)
  np.testing.assert_allclose(cam_logit.numpy(), ref_cam.numpy(), atol=0.05, rtol=0.02)
  np.testing.assert_allclose(logit.numpy(), ref_logit.numpy(), atol=0.05, rtol=0.02)


def test_keras_save_load_round_trip(tiny_model, tmp_path):
  path = str(tmp_path / "ugatit.keras")
  tiny_model.save(path)
  loaded = keras.saving.load_model(path)
  assert isinstance(loaded, UGATIT) and loaded.config == tiny_model.config
  x = tf.random.uniform([2, 32, 32, 3], -1, 1, seed=5)
  for direction in ("a2b", "b2a"):
    want, got = tiny_model.translate(x, direction), loaded.translate(x, direction)
    np.testing.assert_array_equal(got["images"].numpy(), want["images"].numpy())
    np.testing.assert_array_equal(got["attention"].numpy(), want["attention"].numpy())
  for name in ("dis_global_a", "dis_local_b"):
    for want, got in zip(getattr(tiny_model, name)(x), getattr(loaded, name)(x)):
      np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_tf_checkpoint_restores_every_variable(tiny_model, tmp_path):
  # components.train checkpoints model_dir_lib.model_checkpoint(model): every variable must come back, also those of
  # blocks held in Python lists (which TF's object graph does not follow; the layout saves them by position).
  path = model_dir_lib.model_checkpoint(tiny_model).save(str(tmp_path / "ckpt"))
  keras.utils.set_random_seed(99)
  other = FAMILY.build_model(PRESETS["tiny"])
  model_dir_lib.model_checkpoint(other).restore(path).assert_existing_objects_matched()
  assert len(other.variables) == len(tiny_model.variables) == 164  # incl. u and v of 26 spectral norms
  for want, got in zip(tiny_model.variables, other.variables):
    np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)


# ------------------------------------------------------------------------------------ model and training

def test_translate_and_attention(tiny_model):
  x = tf.random.uniform([2, 32, 32, 3], -1, 1, seed=2)
  out = tiny_model.translate(x, "a2b")
  assert out["images"].shape == (2, 32, 32, 3) and out["attention"].shape == (2, 32, 32)
  attention = out["attention"].numpy()
  assert attention.min() >= 0.0 and attention.max() <= 1.0
  np.testing.assert_array_equal(out["images"].numpy(), tiny_model.gen_a2b(x)[0].numpy())
  with pytest.raises(ValueError, match="direction"):
    tiny_model.translate(x, "a2a")
  with pytest.raises(ValueError, match="unimodal"):
    tiny_model.translate(x, "a2b", style=tf.zeros([2, 8]))
  assert tiny_model.size_multiple == 4


def test_normalize_heatmap_and_jet_rendering():
  heatmap = tf.constant([[[0.0], [1.0]], [[2.0], [4.0]]])[None]  # [1, 2, 2, 1]
  np.testing.assert_allclose(normalize_heatmap(heatmap, (2, 2)).numpy()[0], [[0, 0.25], [0.5, 1.0]])
  np.testing.assert_array_equal(normalize_heatmap(tf.ones([1, 2, 2, 1]), (4, 4)).numpy(), np.zeros((1, 4, 4)))
  rgb = heatmap_to_rgb(tf.constant([[[0.0, 0.5, 1.0]]])).numpy()[0, 0]
  np.testing.assert_allclose(rgb, [[-1, -1, 0], [0, 1, 0], [0, -1, -1]], atol=1e-6)  # jet: blue, green, red


def test_sample_rows(tiny_model):
  x_a = tf.random.uniform([1, 32, 32, 3], -1, 1, seed=3)
  x_b = tf.random.uniform([1, 32, 32, 3], -1, 1, seed=4)
  rows = FAMILY.sample_rows(tiny_model, x_a, x_b)
  assert list(rows) == ["real_a", "a2a_cam", "a2a", "a2b_cam", "a2b", "a2b2a_cam", "a2b2a",
                        "real_b", "b2b_cam", "b2b", "b2a_cam", "b2a", "b2a2b_cam", "b2a2b"]
  for name, row in rows.items():
    assert row.shape == (1, 32, 32, 3), name
    assert np.all(np.abs(row.numpy()) <= 1.0), name
  a2b = tiny_model.translate(x_a, "a2b")
  np.testing.assert_array_equal(rows["a2b"].numpy(), a2b["images"].numpy())
  np.testing.assert_array_equal(rows["a2b_cam"].numpy(), heatmap_to_rgb(a2b["attention"]).numpy())
  b2b = tiny_model.translate(x_b, "a2b")  # identity of domain b: G_a2b(real_b)
  np.testing.assert_array_equal(rows["b2b"].numpy(), b2b["images"].numpy())


def test_train_step_changes_variables_and_keeps_losses_finite():
  keras.utils.set_random_seed(11)
  # lr 1 makes Adam move every variable by about 1, so AdaLIN's rho (0.9) and ILN's rho (0) would leave
  # [0, 1] without the constraint; the losses of a first step do not depend on the lr.
  config = dataclasses.replace(PRESETS["tiny"], n_res=1, lr=1.0)
  model = FAMILY.build_model(config)
  gen_opt, dis_opt = FAMILY.build_optimizers(config)
  x_a = tf.random.uniform([2, 32, 32, 3], -1, 1, seed=6)
  x_b = tf.random.uniform([2, 32, 32, 3], -1, 1, seed=7)
  before_g = [v.numpy() for v in model.generator_variables]
  before_d = [v.numpy() for v in model.discriminator_variables]
  sn_u = model.dis_global_a.blocks[0].conv.u.numpy()
  losses = FAMILY.train_step(model, gen_opt, dis_opt, x_a, x_b, global_batch_size=2)
  expected = {"d/total_a", "d/total_b", "d/total", "g/adv_a", "g/adv_b", "g/cycle_a", "g/cycle_b", "g/identity_a",
              "g/identity_b", "g/cam_a", "g/cam_b", "g/total_a", "g/total_b", "g/total"}
  assert set(losses) == expected
  for name, value in losses.items():
    assert value.shape == () and np.isfinite(value.numpy()), name
    assert value.numpy() > 0, name  # every term is a positive mean (LSGAN, L1, BCE)
  g_a = (config.adv_weight * losses["g/adv_a"] + config.cycle_weight * losses["g/cycle_a"]
         + config.identity_weight * losses["g/identity_a"] + config.cam_weight * losses["g/cam_a"])
  np.testing.assert_allclose(losses["g/total_a"].numpy(), g_a.numpy(), rtol=1e-6)
  for before, v in zip(before_d, model.discriminator_variables):
    assert not np.array_equal(before, v.numpy()), v.path
  rhos = []
  for before, v in zip(before_g, model.generator_variables):
    if v.path.endswith("rho"):
      rhos.append(v.numpy())
    else:
      assert not np.array_equal(before, v.numpy()), v.path
  rhos = np.concatenate(rhos)
  assert rhos.min() >= 0.0 and rhos.max() <= 1.0
  assert np.any(rhos == 1.0) and np.any(rhos == 0.0)  # clipped, not merely small steps
  assert not np.array_equal(sn_u, model.dis_global_a.blocks[0].conv.u.numpy())  # power iteration ran
  assert int(gen_opt.iterations.numpy()) == 1 and int(dis_opt.iterations.numpy()) == 1


# --------------------------------------------------------------------------------------------- config

def test_presets_and_family():
  assert models.get_family("ugatit") is FAMILY
  paper = PRESETS["paper"]
  assert (paper.ch, paper.n_res, paper.light, paper.image_size) == (64, 4, False, 256)
  assert (paper.adv_weight, paper.cycle_weight, paper.identity_weight, paper.cam_weight) == (1, 10, 10, 1000)
  assert (paper.lr, paper.beta1, paper.beta2, paper.weight_decay) == (1e-4, 0.5, 0.999, 1e-4)
  assert (paper.lr_policy, paper.max_iter, paper.batch_size) == ("linear", 1_000_000, 1)
  assert (paper.global_dis_layers, paper.local_dis_layers) == (7, 5)
  assert PRESETS["paper_light"] == dataclasses.replace(paper, light=True)
  assert PRESETS["tiny"].light and PRESETS["tiny"].image_size == 32
  gen_opt, dis_opt = FAMILY.build_optimizers(paper)
  for opt in (gen_opt, dis_opt):
    assert opt.get_config()["learning_rate"]["class_name"] == "LinearDecayToZero"
    assert opt.l2_weight_decay == 1e-4 and (opt.beta_1, opt.beta_2) == (0.5, 0.999)


def test_config_round_trip_and_validation():
  config = models.get_config("ugatit", "tiny", cam_weight=500.0)
  assert UGATITConfig.from_dict(config.to_dict()) == config
  with pytest.raises(ValueError, match="global_dis_layers=7 needs image_size >= .*got image_size=64"):
    UGATITConfig(image_size=64)
  with pytest.raises(ValueError, match="multiple of 4"):
    UGATITConfig(image_size=258)
  with pytest.raises(ValueError, match="lr_policy"):
    UGATITConfig(lr_policy="step")
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.ch = 3


def test_train_step_runs_each_generator_twice_translation_and_identity_stacked():
  # UGATIT.train runs genA2B(real_A) in the D step and again in the G step with the same weights; ours runs it
  # once, and stacks each generator's translation with its identity mapping: genA2B on [real_A; real_B]
  # (2B), then on fake_B2A (B) for the cycle; the same for genB2A.
  keras.utils.set_random_seed(3)
  config = dataclasses.replace(PRESETS["tiny"], n_res=1)
  model = FAMILY.build_model(config)
  gen_opt, dis_opt = FAMILY.build_optimizers(config)
  log = []
  for gen in (model.gen_a2b, model.gen_b2a):
    record_calls(gen, log, gen.name)
  x_a = tf.random.uniform([3, 32, 32, 3], -1, 1, seed=6)
  x_b = tf.random.uniform([3, 32, 32, 3], -1, 1, seed=7)
  FAMILY.train_step(model, gen_opt, dis_opt, x_a, x_b, global_batch_size=3)
  for gen in (model.gen_a2b, model.gen_b2a):
    assert [b for n, b in log if n == gen.name] == [6, 3], log
