"""Optimizers and learning-rate policies of the official UNIT, MUNIT and U-GAT-IT trainers.

The PyTorch references use `torch.optim.Adam(..., weight_decay=wd)`, which adds an L2 term to the gradient
(g <- g + wd * w) before the Adam moments, unlike Keras' decoupled (AdamW-style) `weight_decay`. `AdamL2`
reproduces the torch behaviour. Learning-rate policies (by optimizer iteration t = 0, 1, ...):
  * "constant": lr (UNIT v02).
  * "step": lr * gamma ** floor((t + 1) / step_size) (MUNIT `lr_policy: step`: train.py steps torch's StepLR at
    the start of every iteration, before that iteration's update, so iteration t runs with StepLR epoch t + 1).
  * "linear": lr until max_iter // 2, then linearly to 0 at max_iter (U-GAT-IT `decay_flag`: after iteration
    s > max_iter // 2 the lr is lowered by lr / (max_iter // 2) before each update).
`build_optimizers(config)` reads the config fields `lr, beta1, beta2, weight_decay, lr_policy` and, per policy,
`step_size, gamma` ("step") or `max_iter` ("linear"), and is shared by all families.
"""

from __future__ import annotations

import keras
import tensorflow as tf

LR_POLICIES = ("constant", "step", "linear")


@keras.saving.register_keras_serializable(package="i2i")
class LinearDecayToZero(keras.optimizers.schedules.LearningRateSchedule):
  """lr(t) = lr for t + 1 <= half, then lr * (1 - (t + 1 - half) / half), never below 0; half = max_iter // 2.

  t is the 0-based optimizer iteration; t + 1 is U-GAT-IT's 1-based `step`, whose decrement happens before
  that step's update, so lr reaches 0 at the last iteration.
  """

  def __init__(self, initial_learning_rate: float, max_iter: int):
    if max_iter < 2:
      raise ValueError(f"LinearDecayToZero needs max_iter >= 2, got {max_iter}.")
    self.initial_learning_rate = float(initial_learning_rate)
    self.max_iter = int(max_iter)

  def __call__(self, step):
    half = float(self.max_iter // 2)
    t = tf.cast(step, tf.float32) + 1.0
    frac = tf.clip_by_value((t - half) / half, 0.0, 1.0)
    return self.initial_learning_rate * (1.0 - frac)

  def get_config(self):
    return {"initial_learning_rate": self.initial_learning_rate, "max_iter": self.max_iter}


@keras.saving.register_keras_serializable(package="i2i")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
  """lr(t) = lr * gamma ** floor((t + 1) / step_size) for the 0-based optimizer iteration t.

  NVlabs/MUNIT train.py calls `trainer.update_learning_rate()` (torch `StepLR.step()`, created with
  last_epoch=-1, i.e. at epoch 0) at the start of every iteration, before the update: iteration t trains with
  StepLR's epoch t + 1, so the first decayed iteration is t = step_size - 1.
  """

  def __init__(self, initial_learning_rate: float, step_size: int, gamma: float):
    if step_size < 1:
      raise ValueError(f"StepDecay needs step_size >= 1, got {step_size}.")
    self.initial_learning_rate = float(initial_learning_rate)
    self.step_size = int(step_size)
    self.gamma = float(gamma)

  def __call__(self, step):
    epochs = tf.floor((tf.cast(step, tf.float32) + 1.0) / float(self.step_size))
    return self.initial_learning_rate * tf.pow(self.gamma, epochs)

  def get_config(self):
    return {"initial_learning_rate": self.initial_learning_rate, "step_size": self.step_size, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="i2i")
class AdamL2(keras.optimizers.Adam):
  """Adam with torch-style L2 weight decay: the gradient used is g + l2_weight_decay * w (torch.optim.Adam).

  Args:
    l2_weight_decay: coefficient of the L2 term added to every gradient (0 disables it).
    **kwargs: keras.optimizers.Adam arguments (learning_rate, beta_1, beta_2, epsilon, ...). Keras'
      own decoupled `weight_decay` is rejected to avoid decaying twice.
  """

  def __init__(self, l2_weight_decay: float = 0.0, **kwargs):
    if kwargs.get("weight_decay"):
      raise ValueError("AdamL2 takes l2_weight_decay (torch-style, added to the gradient); "
                       "do not also pass Keras' decoupled weight_decay.")
    kwargs.pop("weight_decay", None)
    super().__init__(**kwargs)
    if l2_weight_decay < 0:
      raise ValueError(f"l2_weight_decay must be >= 0, got {l2_weight_decay}.")
    self.l2_weight_decay = float(l2_weight_decay)

  def update_step(self, gradient, variable, learning_rate):
    """Adds l2_weight_decay * variable to the gradient, then takes torch's Adam step.

    torch.optim.Adam: w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), eps added after the bias
    correction of the second moment. Dense float gradients take it as one fused kernel (`ResourceApplyAdam`:
    m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); w -= alpha m / (sqrt(v) + eps'), alpha = lr sqrt(1 - b2^t) /
    (1 - b1^t)) with eps' = eps sqrt(1 - b2^t), which is torch's formula exactly (Keras/TF add eps before the
    correction: an effective eps sqrt(1 - b2^t) times larger early on, 30x at t = 1 with b2 = 0.999).
    Anything else (amsgrad, sparse gradients) uses Keras' own step.
    """
    if self.l2_weight_decay:
      gradient = gradient + tf.cast(self.l2_weight_decay, gradient.dtype) * tf.cast(variable, gradient.dtype)
    var = variable.value if isinstance(variable, keras.Variable) else variable
    if self.amsgrad or isinstance(gradient, tf.IndexedSlices) or not hasattr(var, "handle"):
      super().update_step(gradient, variable, learning_rate)
      return
    index = self._get_variable_index(variable)
    m, v = self._momentums[index], self._velocities[index]
    dtype = var.dtype
    local_step = tf.cast(self.iterations + 1, dtype)
    beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=var.handle, m=m.value.handle, v=v.value.handle, beta1_power=tf.pow(beta_1, local_step),
        beta2_power=tf.pow(beta_2, local_step), lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(self.epsilon, dtype) * tf.sqrt(1.0 - tf.pow(beta_2, local_step)),
        grad=tf.cast(gradient, dtype), use_locking=False)

  def get_config(self):
    return {**super().get_config(), "l2_weight_decay": self.l2_weight_decay}


def _require(config, name: str, policy: str):
  """Returns config.<name> or raises a ValueError naming the field the policy needs."""
  if not hasattr(config, name):
    raise ValueError(f"lr_policy={policy!r} needs the config field {name!r}, which "
                     f"{type(config).__name__} does not have.")
  return getattr(config, name)


def learning_rate_schedule(config):
  """Returns the learning rate (float or LearningRateSchedule) for `config.lr_policy`."""
  policy = config.lr_policy
  if policy == "constant":
    return float(config.lr)
  if policy == "step":
    step_size, gamma = int(_require(config, "step_size", policy)), float(_require(config, "gamma", policy))
    if step_size < 1:
      raise ValueError(f"step_size must be >= 1 for lr_policy='step', got {step_size}.")
    return StepDecay(float(config.lr), step_size, gamma)
  if policy == "linear":
    return LinearDecayToZero(float(config.lr), int(_require(config, "max_iter", policy)))
  raise ValueError(f"Unknown lr_policy {policy!r}; choose one of {', '.join(LR_POLICIES)}.")


def build_optimizer(config, name: str) -> AdamL2:
  """Builds one AdamL2 from config.lr/beta1/beta2/weight_decay/lr_policy (+ policy params)."""
  return AdamL2(learning_rate=learning_rate_schedule(config), beta_1=float(config.beta1),
                beta_2=float(config.beta2), epsilon=1e-8, l2_weight_decay=float(config.weight_decay), name=name)


def build_optimizers(config) -> tuple[AdamL2, AdamL2]:
  """Returns (gen_optimizer, dis_optimizer), both Adam with the paper's betas, L2 decay and lr policy."""
  return build_optimizer(config, "gen_optimizer"), build_optimizer(config, "dis_optimizer")


def minimize(tape: tf.GradientTape, scaled_loss: tf.Tensor, optimizer, variables: list) -> None:
  """Applies the gradients of `scaled_loss` to `variables` (one replica's view, inside `strategy.run`).

  `scaled_loss` must be `optimizer.scale_loss(loss)` computed inside `tape`, so that a
  `keras.optimizers.LossScaleOptimizer` (mixed precision) works: its `apply` unscales the gradients.
  """
  grads = tape.gradient(scaled_loss, variables)
  optimizer.apply(grads, variables)
