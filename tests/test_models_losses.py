"""Tests of models/losses.py (golden values from the formulas), models/optim.py (torch-style Adam L2, lr
policies) and models/configs.py (dict round trips)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from models import configs, losses, optim


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _bce(p, t):
  return -(t * np.log(p) + (1 - t) * np.log(1 - p))


# Losses ------------------------------------------------------------------------------------------------------------

def test_lsgan_losses_golden_any_rank_and_scales():
  real = np.array([[[[0.5]], [[1.5]]], [[[1.0]], [[2.0]]]], np.float32)  # [2, 2, 1, 1]
  fake = np.array([[0.2, -0.2], [1.0, 0.0]], np.float32)  # [2, 2] (rank may differ per scale)
  d = losses.lsgan_discriminator_loss(real, fake).numpy()
  expected = ((real.reshape(2, -1) - 1) ** 2).mean(1) + (fake ** 2).mean(1)
  np.testing.assert_allclose(d, expected, rtol=1e-6)
  g = losses.lsgan_generator_loss([fake, real]).numpy()  # two scales are summed
  np.testing.assert_allclose(g, ((fake - 1) ** 2).mean(1) + ((real.reshape(2, -1) - 1) ** 2).mean(1), rtol=1e-6)


def test_bce_losses_golden():
  real = np.array([[0.3, -1.2], [2.0, 0.1]], np.float32)
  fake = np.array([[-0.4, 0.8], [0.0, -3.0]], np.float32)
  d = losses.bce_discriminator_loss([real], [fake]).numpy()
  expected = _bce(_sigmoid(real), 1).mean(1) + _bce(_sigmoid(fake), 0).mean(1)
  np.testing.assert_allclose(d, expected, rtol=1e-5)
  g = losses.bce_generator_loss(fake).numpy()
  np.testing.assert_allclose(g, _bce(_sigmoid(fake), 1).mean(1), rtol=1e-5)
  np.testing.assert_allclose(losses.sigmoid_cross_entropy(fake, 0.3).numpy(),
                             _bce(_sigmoid(fake), 0.3).mean(1), rtol=1e-5)


def test_l1_mse_kl_golden_and_float16_inputs():
  a = np.array([[[1.0, -2.0], [0.5, 0.0]], [[3.0, 3.0], [3.0, 3.0]]], np.float32)  # [2, 2, 2]
  b = np.zeros_like(a)
  np.testing.assert_allclose(losses.l1_loss(a, b).numpy(), [0.875, 3.0])
  np.testing.assert_allclose(losses.mse_loss(a, b).numpy(), [(1 + 4 + 0.25) / 4, 9.0])
  np.testing.assert_allclose(losses.kl_unit_gaussian_loss(a).numpy(), [(1 + 4 + 0.25) / 4, 9.0])
  out = losses.l1_loss(tf.cast(a, tf.float16), b)
  assert out.dtype == tf.float32 and out.shape == (2,)


def test_losses_reject_bad_input():
  with pytest.raises(ValueError, match="shapes differ"):
    losses.l1_loss(np.zeros([2, 3], np.float32), np.zeros([2, 4], np.float32))
  with pytest.raises(ValueError, match="2 real outputs but 1 fake"):
    losses.lsgan_discriminator_loss([np.zeros([1, 1])] * 2, [np.zeros([1, 1])])
  with pytest.raises(ValueError, match="empty list"):
    losses.lsgan_generator_loss([])
  with pytest.raises(ValueError, match="batch axis"):
    losses.kl_unit_gaussian_loss(tf.constant(1.0))


def test_per_example_losses_average_to_the_batch_mean():
  x = np.random.default_rng(0).normal(size=(4, 3, 3, 1)).astype(np.float32)
  per_example = losses.lsgan_generator_loss(x)
  np.testing.assert_allclose(tf.nn.compute_average_loss(per_example, global_batch_size=4).numpy(),
                             ((x - 1) ** 2).mean(), rtol=1e-6)


# Optimizers and schedules ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _OptConfig(configs.ConfigMixin):
  lr: float = 0.1
  beta1: float = 0.5
  beta2: float = 0.999
  weight_decay: float = 0.01
  lr_policy: str = "constant"
  step_size: int = 2
  gamma: float = 0.5
  max_iter: int = 10
  sizes: tuple[int, ...] = (1, 2)
  name: str = "x"
  flag: bool = False


def test_adam_l2_matches_torch_adam_weight_decay():
  # torch.optim.Adam(weight_decay=wd): g <- g + wd * w; m, v moments; w -= lr * m_hat / (sqrt(v_hat) + eps).
  lr, b1, b2, wd, eps = 0.1, 0.5, 0.999, 0.01, 1e-8
  opt = optim.AdamL2(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps, l2_weight_decay=wd)
  var = tf.Variable([1.0, -2.0, 0.0])
  w, m, v = np.array([1.0, -2.0, 0.0]), np.zeros(3), np.zeros(3)
  for t, grad in enumerate([np.array([0.5, 0.0, -1.0]), np.array([0.0, 0.2, 0.3])], start=1):
    opt.apply([tf.constant(grad, tf.float32)], [var])
    g = grad + wd * w
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-6)
  assert optim.AdamL2.from_config(opt.get_config()).l2_weight_decay == wd
  with pytest.raises(ValueError, match="decoupled weight_decay"):
    optim.AdamL2(weight_decay=0.1, l2_weight_decay=0.1)


def test_adam_l2_adds_eps_after_the_bias_correction_like_torch():
  # Gradients near eps tell the two eps placements apart: torch's first step is lr * g / (|g| + eps) = 0.0909 for
  # g = 1e-7, eps = 1e-8; adding eps before the bias correction (TF/Keras Adam) gives lr * g / (|g| + eps /
  # sqrt(1 - b2)) = 0.0240.
  lr, b1, b2, eps = 0.1, 0.5, 0.999, 1e-8
  opt = optim.AdamL2(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
  var = tf.Variable([0.0, 0.0])
  opt.apply([tf.constant([1e-7, -1e-6], tf.float32)], [var])
  np.testing.assert_allclose(var.numpy(), [-lr * 1e-7 / (1e-7 + eps), lr * 1e-6 / (1e-6 + eps)], rtol=1e-4)


def test_step_policy_halves_every_step_size_iterations():
  # MUNIT train.py steps StepLR before each update: iteration t (0-based) uses lr * gamma ** floor((t + 1) / 2).
  gen, dis = optim.build_optimizers(_OptConfig(lr_policy="step", step_size=2, gamma=0.5))
  schedule = optim.learning_rate_schedule(_OptConfig(lr_policy="step", step_size=2, gamma=0.5))
  np.testing.assert_allclose([float(schedule(i)) for i in range(6)], [0.1, 0.05, 0.05, 0.025, 0.025, 0.0125],
                             rtol=1e-6)
  var = tf.Variable(1.0)
  for _ in range(3):
    gen.apply([tf.constant(0.0)], [var])
  assert float(gen.learning_rate) == pytest.approx(0.025)  # the optimizer reads the schedule at its iteration (3)
  assert optim.StepDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
  assert gen.name == "gen_optimizer" and dis.name == "dis_optimizer"
  assert gen.l2_weight_decay == 0.01 and gen.beta_1 == 0.5


def test_linear_policy_is_constant_to_half_then_linear_to_zero():
  schedule = optim.learning_rate_schedule(_OptConfig(lr_policy="linear", lr=1.0, max_iter=10))
  # U-GAT-IT: at 1-based step s > 5 the lr drops by lr / 5 before the update.
  np.testing.assert_allclose([float(schedule(i)) for i in range(10)],
                             [1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0.0], atol=1e-6)
  assert optim.learning_rate_schedule(_OptConfig()) == 0.1


def test_bad_policy_and_missing_fields_are_explained():
  with pytest.raises(ValueError, match="Unknown lr_policy 'cosine'"):
    optim.learning_rate_schedule(_OptConfig(lr_policy="cosine"))

  @dataclasses.dataclass(frozen=True)
  class NoStep:
    lr: float = 0.1
    lr_policy: str = "step"

  with pytest.raises(ValueError, match="needs the config field 'step_size'"):
    optim.learning_rate_schedule(NoStep())


def test_minimize_applies_scaled_gradients():
  var = tf.Variable(3.0)
  opt = optim.AdamL2(learning_rate=0.5)
  with tf.GradientTape() as tape:
    loss = var * var
    scaled = opt.scale_loss(loss)
  optim.minimize(tape, scaled, opt, [var])
  assert var.numpy() == pytest.approx(2.5, abs=1e-5)  # first Adam step moves by lr * sign(g)


# Configs -----------------------------------------------------------------------------------------------------------

def test_config_dict_round_trip_and_coercion():
  config = _OptConfig(sizes=(3, 4))
  as_dict = config.to_dict()
  assert as_dict["sizes"] == [3, 4]
  assert _OptConfig.from_dict(as_dict) == config
  assert config.replace(lr="0.5", step_size=3.0, flag="true") == dataclasses.replace(
      config, lr=0.5, step_size=3, flag=True)


def test_config_errors_name_the_field():
  with pytest.raises(ValueError, match="Unknown _OptConfig field.*bogus"):
    _OptConfig.from_dict({"bogus": 1})
  with pytest.raises(ValueError, match="step_size must be an integer"):
    _OptConfig().replace(step_size=2.5)
  with pytest.raises(ValueError, match="flag must be true or false"):
    _OptConfig().replace(flag="maybe")
  with pytest.raises(TypeError):
    configs.to_dict(_OptConfig)
